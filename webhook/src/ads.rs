//! The ADS publisher: serves snapshots of xDS resources to Envoy over gRPC, state of the world and delta.
//!
//! Whoever builds configuration (the compiler's Envoy back end) publishes a [`Snapshot`]
//! through a `tokio::sync::watch` channel; every connected Envoy is brought to the latest
//! snapshot, sending only what changed for it, in make-before-break order (see
//! `session::Session::next_push`).
//!
//! ```no_run
//! # async fn run() -> Result<(), ambassador_webhook::ads::Error> {
//! use std::sync::Arc;
//! use ambassador_webhook::ads::{serve, Publisher, Snapshot};
//!
//! let (tx, rx) = tokio::sync::watch::channel(Arc::new(Snapshot::new()));
//! let publisher = Publisher::new(rx);
//! tokio::spawn(serve(publisher.clone(), "127.0.0.1:18000".parse().unwrap()));
//! tx.send_replace(Arc::new(Snapshot::new() /* .with(Resource::pack(...)) */));
//! # Ok(()) }
//! ```

mod delta;
mod grpc;
mod session;
mod snapshot;
mod sotw;
mod status;
mod stream;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::{
    AggregatedDiscoveryService, AggregatedDiscoveryServiceServer,
};
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{Request, Response, Status, Streaming};

pub use snapshot::{type_url, Resource, Snapshot};
pub use status::{
    Nack, NodeStatus, Protocol, Reason, Sent, Subscription, TypeStatus, RECENT_LIMIT,
};

use session::Session;

/// The largest request the publisher accepts. Envoy's requests are small, but tonic's 4 MB
/// default is too close for comfort once a NACK's `error_detail` or a long list of
/// subscribed names comes along.
pub const MAX_DECODING_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// Failures of the ADS server itself (never of Envoy's configuration: those are NACKs,
/// reported by [`Publisher::status`]).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The listening socket could not be opened.
    #[error("cannot listen for ADS on {addr}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// The gRPC server stopped with an error.
    #[error("ADS server failed")]
    Transport(#[from] tonic::transport::Error),
}

/// State shared by the publisher handle and the stream tasks.
pub(crate) struct Shared {
    snapshots: watch::Receiver<Arc<Snapshot>>,
    sessions: Mutex<BTreeMap<u64, Arc<Mutex<Session>>>>,
    next_stream: AtomicU64,
    shutdown: watch::Sender<bool>,
}

/// The ADS server. Cheap to clone; clones share the connected streams.
#[derive(Clone)]
pub struct Publisher {
    shared: Arc<Shared>,
    ack_timeout: Duration,
}

/// How long a push waits for Envoy to answer a response before it goes on anyway (see
/// [`Publisher::with_ack_timeout`]). Envoy answers in milliseconds, even for 100,000 routes
/// it takes a third of a second.
pub const DEFAULT_ACK_TIMEOUT: Duration = Duration::from_secs(30);

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("streams", &lock(&self.shared.sessions).len())
            .finish()
    }
}

impl Publisher {
    /// A publisher that serves whatever snapshot `snapshots` holds, and follows its changes.
    pub fn new(snapshots: watch::Receiver<Arc<Snapshot>>) -> Self {
        Self {
            shared: Arc::new(Shared {
                snapshots,
                sessions: Mutex::new(BTreeMap::new()),
                next_stream: AtomicU64::new(1),
                shutdown: watch::Sender::new(false),
            }),
            ack_timeout: DEFAULT_ACK_TIMEOUT,
        }
    }

    /// Sets how long each make-before-break stage waits for Envoy's ACK or NACK before it
    /// goes on without it (and logs a warning). Applies to streams opened afterwards.
    pub fn with_ack_timeout(mut self, timeout: Duration) -> Self {
        self.ack_timeout = timeout;
        self
    }

    /// The tonic-generated service, to add to a `tonic::transport::Server` of one's own.
    /// [`serve`] runs its own (`ads/grpc.rs`), which frames each response in a buffer of its
    /// own instead of one per stream sized by its largest response.
    pub fn service(&self) -> AggregatedDiscoveryServiceServer<Publisher> {
        AggregatedDiscoveryServiceServer::new(self.clone())
            .max_decoding_message_size(MAX_DECODING_MESSAGE_BYTES)
    }

    /// The state of every connected stream, in the order they connected.
    pub fn status(&self) -> Vec<NodeStatus> {
        let sessions: Vec<_> = lock(&self.shared.sessions).values().cloned().collect();
        sessions.iter().map(|s| lock(s).status()).collect()
    }

    /// Ends every stream with `UNAVAILABLE` (Envoy reconnects, to whoever listens then),
    /// and refuses new ones. Used by [`serve_with_shutdown`]: ADS streams never end by
    /// themselves, so a graceful server shutdown would wait for them forever.
    pub fn shutdown(&self) {
        self.shared.shutdown.send_replace(true);
    }
}

#[tonic::async_trait]
impl AggregatedDiscoveryService for Publisher {
    type StreamAggregatedResourcesStream = ReceiverStream<Result<DiscoveryResponse, Status>>;
    type DeltaAggregatedResourcesStream = ReceiverStream<Result<DeltaDiscoveryResponse, Status>>;

    async fn stream_aggregated_resources(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamAggregatedResourcesStream>, Status> {
        Ok(Response::new(stream::open::<sotw::Sotw>(
            &self.shared,
            self.ack_timeout,
            request.into_inner(),
        )))
    }

    async fn delta_aggregated_resources(
        &self,
        request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaAggregatedResourcesStream>, Status> {
        Ok(Response::new(stream::open::<delta::Delta>(
            &self.shared,
            self.ack_timeout,
            request.into_inner(),
        )))
    }
}

/// Serves ADS on `addr` until the task is dropped.
pub async fn serve(publisher: Publisher, addr: SocketAddr) -> Result<(), Error> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Bind { addr, source })?;
    serve_with_shutdown(publisher, listener, std::future::pending()).await
}

/// Serves ADS on an open listener until `signal` completes, then ends every stream (see
/// [`Publisher::shutdown`]) and returns once the connections are closed.
pub async fn serve_with_shutdown(
    publisher: Publisher,
    listener: TcpListener,
    signal: impl Future<Output = ()> + Send,
) -> Result<(), Error> {
    let service = grpc::AdsService::new(publisher.clone());
    // No Nagle: a response larger than one segment would otherwise wait for the delayed
    // ACK of its first part (40 ms on Linux) before its last frames go out.
    let incoming = tokio_stream::StreamExt::map(TcpListenerStream::new(listener), |conn| {
        if let Ok(stream) = &conn {
            let _ = stream.set_nodelay(true);
        }
        conn
    });
    tonic::transport::Server::builder()
        // An Envoy whose pod vanished never closes its stream; HTTP/2 pings find out, so
        // that its session leaves the status instead of lingering until TCP gives up.
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .add_service(service)
        .serve_with_incoming_shutdown(incoming, async move {
            signal.await;
            publisher.shutdown();
        })
        .await?;
    Ok(())
}

/// Locks a mutex, going on after a panic elsewhere: the state behind these locks is
/// bookkeeping that stays consistent between statements.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

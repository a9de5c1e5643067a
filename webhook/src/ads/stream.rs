//! Drives one ADS stream: reads requests and snapshots, feeds the session, writes its responses.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use envoy_types::pb::envoy::config::core::v3::Node;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};

use super::session::{Incoming, Outgoing, Session};
use super::status::Protocol;
use super::{lock, Shared};

/// How many responses may wait in the channel between a stream's task and its transport.
///
/// One. A response is built only once there is room for it (see `drive`), from the latest
/// snapshot at that moment, so an Envoy that reads slowly or not at all costs at most this
/// response, plus the one tonic is encoding and the part of it HTTP/2 flow control holds
/// back: its snapshots are coalesced in the `watch` channel instead of queued here as
/// responses (state of the world only ever needs the latest; delta's next push covers
/// every change since the last one sent). A deeper queue would hold older, superseded
/// responses, each a copy of every resource it carries.
const SEND_BUFFER: usize = 1;

/// The translation between one ADS variant's wire types and the session.
pub(crate) trait Wire: 'static {
    type Request: prost::Message + Default + Send + 'static;
    type Response: prost::Message + Send + 'static;
    const PROTOCOL: Protocol;
    fn node(req: &Self::Request) -> Option<&Node>;
    fn incoming(req: Self::Request) -> Incoming;
    fn outgoing(out: Outgoing) -> Self::Response;
}

/// Registers a session for a new stream and spawns the task that serves it.
pub(crate) fn open<W: Wire>(
    shared: &Arc<Shared>,
    ack_timeout: Duration,
    requests: Streaming<W::Request>,
) -> ReceiverStream<Result<W::Response, Status>> {
    let id = shared
        .next_stream
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let session = Arc::new(Mutex::new(Session::new(W::PROTOCOL, id, SystemTime::now())));
    lock(&shared.sessions).insert(id, Arc::clone(&session));
    let (tx, rx) = mpsc::channel(SEND_BUFFER);
    tokio::spawn(drive::<W>(
        Arc::clone(shared),
        id,
        session,
        ack_timeout,
        requests,
        tx,
    ));
    ReceiverStream::new(rx)
}

async fn drive<W: Wire>(
    shared: Arc<Shared>,
    id: u64,
    session: Arc<Mutex<Session>>,
    ack_timeout: Duration,
    mut requests: Streaming<W::Request>,
    tx: mpsc::Sender<Result<W::Response, Status>>,
) {
    let mut snapshots = shared.snapshots.clone();
    let mut shutdown = shared.shutdown.subscribe();
    // When the sender of snapshots is gone, the stream goes on serving the last one.
    let mut watching = true;
    'stream: loop {
        // Pushes wait for Envoy to answer what was sent; not forever.
        let patience = lock(&session).oldest_in_flight().map(|sent| {
            let waited = SystemTime::now().duration_since(sent).unwrap_or_default();
            ack_timeout.saturating_sub(waited)
        });
        tokio::select! {
            msg = requests.message() => match msg {
                Ok(Some(req)) => {
                    // Room first, so that the answer is built from the snapshot of the
                    // moment it can go out.
                    let Some(permit) = room(&tx, &mut shutdown).await else {
                        break 'stream;
                    };
                    let snap = Arc::clone(&snapshots.borrow_and_update());
                    let answer = {
                        let mut s = lock(&session);
                        if let Some(node) = W::node(&req) {
                            if s.node_id().is_empty() {
                                tracing::info!(node = %node.id, cluster = %node.cluster, stream = id, protocol = ?W::PROTOCOL, "Envoy connected");
                            }
                            s.set_node(&node.id, &node.cluster);
                        }
                        s.on_request(W::incoming(req), &snap, SystemTime::now())
                    };
                    if let Some(answer) = answer {
                        permit.send(Ok(W::outgoing(answer)));
                    }
                }
                Ok(None) => break 'stream,
                Err(status) => {
                    tracing::debug!(stream = id, %status, "ADS stream ended with an error");
                    break 'stream;
                }
            },
            changed = snapshots.changed(), if watching => {
                if changed.is_err() {
                    watching = false;
                    continue 'stream;
                }
            }
            () = tokio::time::sleep(patience.unwrap_or_default()), if patience.is_some() => {
                let cutoff = SystemTime::now().checked_sub(ack_timeout);
                lock(&session).give_up_waiting(cutoff.unwrap_or(SystemTime::UNIX_EPOCH));
            }
            () = shut_down(&mut shutdown) => {
                // UNAVAILABLE makes Envoy reconnect with its usual back-off. An Envoy that
                // does not read gets no say in how long the shutdown takes.
                let bye = tx.send(Err(Status::unavailable("ADS publisher shutting down")));
                let _ = tokio::time::timeout(Duration::from_secs(1), bye).await;
                break 'stream;
            }
        }
        // Whatever happened, the next push (if any) is built from the latest snapshot once
        // the transport has room for it: a client that stopped reading makes this task
        // wait here, holding no response, while newer snapshots replace older ones in the
        // `watch` channel. What it gets when it reads again is the latest.
        let Some(permit) = room(&tx, &mut shutdown).await else {
            break 'stream;
        };
        let snap = Arc::clone(&snapshots.borrow_and_update());
        let push = lock(&session).next_push(&snap, SystemTime::now());
        if let Some(push) = push {
            permit.send(Ok(W::outgoing(push)));
        }
    }
    let node = lock(&session).node_id().to_owned();
    tracing::info!(%node, stream = id, "Envoy disconnected");
    lock(&shared.sessions).remove(&id);
}

/// Room for one response in the stream's channel; `None` once the stream is gone or the
/// publisher shuts down.
async fn room<'a, T>(
    tx: &'a mpsc::Sender<T>,
    shutdown: &mut tokio::sync::watch::Receiver<bool>,
) -> Option<mpsc::Permit<'a, T>> {
    tokio::select! {
        // Room, when there is some, wins: the loop answers a shutdown with UNAVAILABLE.
        biased;
        permit = tx.reserve() => permit.ok(),
        () = shut_down(shutdown) => None,
    }
}

/// Completes once the publisher is shutting down (at once if it already is).
async fn shut_down(shutdown: &mut tokio::sync::watch::Receiver<bool>) {
    // The guard `wait_for` returns is not `Send`; drop it here rather than in `select!`.
    let _ = shutdown.wait_for(|down| *down).await.map(|_| ());
}

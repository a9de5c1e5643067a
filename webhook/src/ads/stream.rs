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

/// How many responses may wait for Envoy to read them before the stream stops reading
/// requests. One push is at most one response per stage, so a handful is plenty.
const SEND_BUFFER: usize = 16;

/// The translation between one ADS variant's wire types and the session.
pub(crate) trait Wire: 'static {
    type Request: prost::Message + Default + Send + 'static;
    type Response: Send + 'static;
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
        let out: Vec<Outgoing> = tokio::select! {
            msg = requests.message() => match msg {
                Ok(Some(req)) => {
                    // Every step pushes from the latest snapshot, so a change seen here
                    // needs no second look from the `changed` branch.
                    let snap = Arc::clone(&snapshots.borrow_and_update());
                    let now = SystemTime::now();
                    let mut s = lock(&session);
                    if let Some(node) = W::node(&req) {
                        if s.node_id().is_empty() {
                            tracing::info!(node = %node.id, cluster = %node.cluster, stream = id, protocol = ?W::PROTOCOL, "Envoy connected");
                        }
                        s.set_node(&node.id, &node.cluster);
                    }
                    let answer = s.on_request(W::incoming(req), &snap, now);
                    answer.into_iter().chain(s.next_push(&snap, now)).collect()
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
                let snap = Arc::clone(&snapshots.borrow_and_update());
                lock(&session).next_push(&snap, SystemTime::now()).into_iter().collect()
            }
            () = tokio::time::sleep(patience.unwrap_or_default()), if patience.is_some() => {
                let snap = Arc::clone(&snapshots.borrow_and_update());
                let now = SystemTime::now();
                let mut s = lock(&session);
                s.give_up_waiting(now.checked_sub(ack_timeout).unwrap_or(SystemTime::UNIX_EPOCH));
                s.next_push(&snap, now).into_iter().collect()
            }
            () = shut_down(&mut shutdown) => {
                // UNAVAILABLE makes Envoy reconnect with its usual back-off.
                let _ = tx.send(Err(Status::unavailable("ADS publisher shutting down"))).await;
                break 'stream;
            }
        };
        for o in out {
            if tx.send(Ok(W::outgoing(o))).await.is_err() {
                break 'stream;
            }
        }
    }
    let node = lock(&session).node_id().to_owned();
    tracing::info!(%node, stream = id, "Envoy disconnected");
    lock(&shared.sessions).remove(&id);
}

/// Completes once the publisher is shutting down (at once if it already is).
async fn shut_down(shutdown: &mut tokio::sync::watch::Receiver<bool>) {
    // The guard `wait_for` returns is not `Send`; drop it here rather than in `select!`.
    let _ = shutdown.wait_for(|down| *down).await.map(|_| ());
}

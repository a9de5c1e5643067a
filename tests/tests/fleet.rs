//! A fleet of simulated Envoys on one publisher: 100 ADS clients (state of the world and delta) follow a changed Mapping, while one client that never reads holds nobody back.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ambassador_e2e::poll;
use ambassador_e2e::stack::options;
use ambassador_e2e::xds_client::{digests, Stalled, XdsClient};
use ambassador_webhook::ads::{serve_with_shutdown, type_url, Protocol, Publisher, Snapshot};
use ambassador_webhook::pipeline::Pipeline;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};

/// Simulated Envoys, half of them state of the world, half delta.
const CLIENTS: usize = 100;
/// Mappings in the configuration, each with its own upstream (so its own cluster).
const MAPPINGS: usize = 20;
/// Changes to one Mapping, one after the other.
const CHANGES: usize = 8;
/// How long the publisher waits for an ACK before it pushes on regardless. Short, so that
/// between two changes the publisher gives up on the client that never reads and would
/// push it the next change if nothing held it back.
const ACK_TIMEOUT: Duration = Duration::from_millis(100);
/// Bound on any wait for the fleet: generous for a loaded 2-core machine (it takes
/// milliseconds). A bound, not a measurement: timings belong to `benches/fleet.rs`.
const CONVERGED: Duration = Duration::from_secs(60);
/// The types every client holds in full.
const TYPES: [&str; 3] = [type_url::CLUSTER, type_url::LISTENER, type_url::ROUTE];

/// The configuration: `MAPPINGS` Mappings, the first one with a prefix that names `version`.
fn config(version: usize) -> Vec<(String, String)> {
    (0..MAPPINGS)
        .map(|i| {
            let prefix = if i == 0 {
                format!("/m0/v{version}/")
            } else {
                format!("/m{i}/")
            };
            (
                format!("m{i:02}.yaml"),
                format!(
                    "apiVersion: getambassador.io/v3alpha1\nkind: Mapping\nmetadata:\n  name: m{i}\n  namespace: fleet\nspec:\n  hostname: \"*\"\n  prefix: {prefix}\n  service: \"127.0.0.1:{}\"\n",
                    20_000 + i
                ),
            )
        })
        .collect()
}

/// Serves `snapshots` on a free loopback port with a short ACK timeout.
async fn serve(
    snapshots: watch::Receiver<Arc<Snapshot>>,
) -> (Publisher, SocketAddr, oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let publisher = Publisher::new(snapshots).with_ack_timeout(ACK_TIMEOUT);
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(serve_with_shutdown(publisher.clone(), listener, async {
        let _ = stopped.await;
    }));
    (publisher, addr, stop)
}

/// Waits (bounded) until every client holds exactly `snapshot`'s resources of `TYPES`.
async fn wait_converged(clients: &[XdsClient], snapshot: &Snapshot, what: &str) {
    let want: Vec<(&str, BTreeMap<String, u64>)> =
        TYPES.iter().map(|t| (*t, digests(snapshot, t))).collect();
    let done = poll(CONVERGED, Duration::from_millis(5), || {
        let all = clients
            .iter()
            .all(|c| want.iter().all(|(t, w)| c.holds_exactly(t, w).is_some()));
        async move { all.then_some(()) }
    })
    .await;
    if done.is_none() {
        let behind: Vec<String> = clients
            .iter()
            .filter(|c| want.iter().any(|(t, w)| c.holds_exactly(t, w).is_none()))
            .map(|c| format!("{} ({:?}, ended: {:?})", c.node(), c.protocol(), c.ended()))
            .collect();
        panic!(
            "{what}: {} of {CLIENTS} clients never held the snapshot: {behind:?}",
            behind.len()
        );
    }
}

fn responses(c: &XdsClient) -> [usize; 4] {
    [
        c.responses(type_url::CLUSTER),
        c.responses(type_url::ENDPOINT),
        c.responses(type_url::LISTENER),
        c.responses(type_url::ROUTE),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_clients_ack_each_changed_route_and_a_stalled_one_holds_nobody_back() {
    let (mut pipeline, snapshots) = Pipeline::new(options());
    let first = pipeline.update(config(0));
    assert_eq!(first.errors().count(), 0, "{:?}", first.findings);
    let (publisher, addr, _stop) = serve(snapshots).await;
    let snapshot = pipeline.current();
    assert!(!snapshot.resources(type_url::ROUTE).is_empty());
    assert!(snapshot.resources(type_url::CLUSTER).len() >= MAPPINGS);

    // The client that never reads comes first and asks for everything at once.
    let names = |t: &str| snapshot.resources(t).keys().cloned().collect::<Vec<_>>();
    let _stalled = Stalled::connect(
        addr,
        "stalled",
        names(type_url::ENDPOINT),
        names(type_url::ROUTE),
    )
    .await
    .unwrap();

    let mut clients = Vec::with_capacity(CLIENTS);
    for i in 0..CLIENTS {
        let protocol = if i % 2 == 0 {
            Protocol::StateOfTheWorld
        } else {
            Protocol::Delta
        };
        clients.push(
            XdsClient::connect(addr, &format!("envoy-{i}"), protocol)
                .await
                .unwrap(),
        );
    }
    wait_converged(&clients, &snapshot, "initial configuration").await;
    let before: Vec<[usize; 4]> = clients.iter().map(responses).collect();
    let stalled_built = |publisher: &Publisher| {
        publisher
            .status()
            .into_iter()
            .find(|s| s.node_id == "stalled")
            .map(|s| s.recent.len())
    };
    let stalled_at_start = stalled_built(&publisher).expect("the stalled stream is connected");

    for k in 1..=CHANGES {
        let changed_at = Instant::now();
        let report = pipeline.update(config(k));
        assert!(report.published, "change {k}: {report:?}");
        // The contract: a change to a Mapping's prefix changes route configurations only.
        assert!(
            !report.changes.is_empty()
                && report.changes.iter().all(|c| c.type_url == type_url::ROUTE),
            "change {k} touched more than routes: {:?}",
            report.changes
        );
        wait_converged(&clients, &pipeline.current(), &format!("change {k}")).await;
        // Let the publisher give up waiting on the stalled client before the next change.
        tokio::time::sleep(
            (changed_at + 2 * ACK_TIMEOUT).saturating_duration_since(Instant::now()),
        )
        .await;
    }

    for (c, before) in clients.iter().zip(&before) {
        assert_eq!(c.ended(), None, "{}", c.node());
        for t in TYPES {
            assert_eq!(c.seen(t).nacks, 0, "{} NACKed {t}", c.node());
        }
        let [clusters, endpoints, listeners, routes] = responses(c);
        // Nothing but route configurations was sent again, one response per change.
        assert_eq!(
            [clusters, endpoints, listeners],
            [before[0], before[1], before[2]],
            "{} ({:?}) was sent more than routes",
            c.node(),
            c.protocol()
        );
        assert_eq!(
            routes,
            before[3] + CHANGES,
            "{} ({:?}): one route response per change",
            c.node(),
            c.protocol()
        );
    }

    // The stalled stream is still open, and the publisher built nothing for it while the
    // fleet took every change: its task waits for room in the transport, holding no
    // response, instead of queueing one per change.
    let stalled_now = stalled_built(&publisher).expect("the stalled stream is still connected");
    assert!(
        stalled_at_start <= 4 && stalled_now == stalled_at_start,
        "responses built for a client that never reads: {stalled_at_start} before the changes, \
         {stalled_now} after {CHANGES} of them"
    );
}

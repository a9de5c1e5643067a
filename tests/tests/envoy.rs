//! End-to-end: a real Envoy against the ADS publisher, with HTTP through it to loopback backends.

use std::time::{Duration, Instant};

use ambassador_e2e::backend::{Backend, Echo};
use ambassador_e2e::control_plane::ControlPlane;
use ambassador_e2e::envoy::Envoy;
use ambassador_e2e::http::Client;
use ambassador_e2e::xds::{
    eds_cluster, endpoints, listener, prefix_route, regex_route, route_config,
};
use ambassador_e2e::{free_port, poll};
use ambassador_webhook::ads::{type_url, NodeStatus, Protocol, Snapshot};
use ambassador_webhook::bootstrap::ApiType;
use envoy_types::pb::envoy::config::route::v3::Route;

/// Bound on waiting for Envoy to apply something it was sent (it takes about a millisecond).
const APPLIED: Duration = Duration::from_secs(10);

/// Two backends, two listeners (`edge-a` with routes `routes-a`, `edge-b` with `routes-b`),
/// and a control plane.
struct World {
    a: Backend,
    b: Backend,
    port_a: u16,
    port_b: u16,
    http: Client,
}

impl World {
    async fn new() -> Self {
        Self {
            a: Backend::start("a").await.unwrap(),
            b: Backend::start("b").await.unwrap(),
            port_a: free_port(),
            port_b: free_port(),
            http: Client::new(),
        }
    }

    /// Clusters `backend-a` and `backend-b` over EDS, both listeners, and the given routes.
    fn snapshot(&self, routes_a: Vec<Route>, routes_b: Vec<Route>) -> Snapshot {
        Snapshot::new()
            .with(eds_cluster("backend-a"))
            .with(eds_cluster("backend-b"))
            .with(endpoints("backend-a", &[self.a.addr()]))
            .with(endpoints("backend-b", &[self.b.addr()]))
            .with(listener("edge-a", self.port_a, "routes-a"))
            .with(listener("edge-b", self.port_b, "routes-b"))
            .with(route_config("routes-a", routes_a))
            .with(route_config("routes-b", routes_b))
    }

    /// `routes-a` sends everything to backend a, `routes-b` to backend b.
    fn initial(&self) -> Snapshot {
        self.snapshot(
            vec![prefix_route("/", "backend-a")],
            vec![prefix_route("/", "backend-b")],
        )
    }

    async fn get(&self, port: u16, path: &str) -> Option<(u16, Option<Echo>)> {
        let r = self
            .http
            .request(
                "GET",
                &format!("http://127.0.0.1:{port}{path}"),
                &[("x-test", "yes")],
            )
            .await
            .ok()?;
        Some((
            r.status,
            r.json().ok().and_then(|v| serde_json::from_value(v).ok()),
        ))
    }

    /// Which backend answers on `port` (None on an error or a non-200).
    async fn backend_on(&self, port: u16) -> Option<String> {
        match self.get(port, "/probe").await {
            Some((200, Some(echo))) => Some(echo.backend),
            _ => None,
        }
    }

    /// Polls (every millisecond, bounded) until `backend` answers on `port`; returns how long it took.
    async fn wait_backend(&self, port: u16, backend: &str) -> Duration {
        poll(APPLIED, Duration::from_millis(1), || async {
            (self.backend_on(port).await.as_deref() == Some(backend)).then_some(())
        })
        .await
        .unwrap_or_else(|| panic!("backend {backend} never answered on port {port}"))
        .1
    }
}

/// Waits until `node` ACKed the latest of every type, or fails with the publisher's status.
async fn converged(cp: &ControlPlane, node: &str) -> NodeStatus {
    cp.wait_node(node, APPLIED, all_acked)
        .await
        .unwrap_or_else(|| panic!("{node} did not ACK everything: {:#?}", cp.status()))
}

fn all_acked(s: &NodeStatus) -> bool {
    [
        type_url::CLUSTER,
        type_url::ENDPOINT,
        type_url::LISTENER,
        type_url::ROUTE,
    ]
    .iter()
    .all(|t| s.type_status(t).is_some_and(|t| t.is_acked()))
}

fn protocol(api: ApiType) -> Protocol {
    match api {
        ApiType::Grpc => Protocol::StateOfTheWorld,
        ApiType::DeltaGrpc => Protocol::Delta,
    }
}

/// (a) Envoy connects, ACKs everything, and HTTP through it reaches the right backend.
async fn serves_through_envoy(api: ApiType) {
    let world = World::new().await;
    let cp = ControlPlane::start(world.initial()).await.unwrap();
    let envoy = Envoy::start(&cp.bootstrap("edge-1", api)).await.unwrap();

    let status = converged(&cp, "edge-1").await;
    assert_eq!(status.protocol, protocol(api));
    assert_eq!(status.node_cluster, "e2e");

    let (status_code, echo) = world
        .get(world.port_a, "/some/path?q=1&r=two")
        .await
        .unwrap();
    assert_eq!(status_code, 200);
    let echo = echo.unwrap();
    assert_eq!(echo.backend, "a");
    assert_eq!(echo.method, "GET");
    assert_eq!(echo.path, "/some/path");
    assert_eq!(echo.query, "q=1&r=two");
    assert_eq!(echo.headers.get("x-test").map(String::as_str), Some("yes"));
    assert!(
        echo.headers.contains_key("x-request-id"),
        "Envoy adds a request id: {echo:?}"
    );
    assert_eq!(world.backend_on(world.port_b).await.as_deref(), Some("b"));

    // Envoy's own view agrees with what the publisher says it ACKed.
    let routes = envoy.config_dump("dynamic_route_configs").await.unwrap();
    let names: Vec<&str> = routes
        .iter()
        .filter_map(|c| c.pointer("/route_config/name").and_then(|v| v.as_str()))
        .collect();
    assert_eq!(names.len(), 2, "{routes:#?}");
    if api == ApiType::Grpc {
        let sent = status
            .type_status(type_url::ROUTE)
            .unwrap()
            .acked_version
            .clone()
            .unwrap();
        for c in &routes {
            assert_eq!(c["version_info"].as_str(), Some(sent.as_str()), "{c:#}");
        }
    }
    let accepted = envoy
        .stat("cluster_manager.cds.update_success")
        .await
        .unwrap();
    assert!(accepted >= Some(1), "{accepted:?}");
}

#[tokio::test]
async fn serves_through_envoy_sotw() {
    serves_through_envoy(ApiType::Grpc).await;
}

#[tokio::test]
async fn serves_through_envoy_delta() {
    serves_through_envoy(ApiType::DeltaGrpc).await;
}

/// (b) A route change is applied within milliseconds, and only that route configuration is sent.
async fn route_change(api: ApiType) {
    let world = World::new().await;
    let cp = ControlPlane::start(world.initial()).await.unwrap();
    let _envoy = Envoy::start(&cp.bootstrap("edge-1", api)).await.unwrap();
    let before = converged(&cp, "edge-1").await.recent.len();
    world.wait_backend(world.port_a, "a").await;

    let pushed = Instant::now();
    cp.publish(world.snapshot(
        vec![prefix_route("/", "backend-b")],
        vec![prefix_route("/", "backend-b")],
    ));
    world.wait_backend(world.port_a, "b").await;
    let applied = pushed.elapsed();
    let status = converged(&cp, "edge-1").await;
    let acked = status
        .type_status(type_url::ROUTE)
        .unwrap()
        .acked_at
        .unwrap();
    eprintln!("{api:?}: route change served after {applied:?} (polling every 1 ms)");
    assert!(applied < Duration::from_secs(1), "took {applied:?}");

    let since: Vec<(&str, &[String])> = status.recent[before..]
        .iter()
        .map(|s| (s.type_url.as_str(), s.resource_names.as_slice()))
        .collect();
    assert_eq!(since, [(type_url::ROUTE, &["routes-a".to_owned()][..])]);
    assert!(acked >= status.recent[before].at);
}

#[tokio::test]
async fn route_change_sotw() {
    route_change(ApiType::Grpc).await;
}

#[tokio::test]
async fn route_change_delta() {
    route_change(ApiType::DeltaGrpc).await;
}

/// (c) Envoy refuses a look-ahead regex: the old route keeps serving, the NACK is reported,
/// and the next valid push recovers.
async fn nack(api: ApiType) {
    let world = World::new().await;
    let cp = ControlPlane::start(world.initial()).await.unwrap();
    let envoy = Envoy::start(&cp.bootstrap("edge-1", api)).await.unwrap();
    converged(&cp, "edge-1").await;

    cp.publish(world.snapshot(
        vec![
            regex_route("/(?=x).*", "backend-b"),
            prefix_route("/", "backend-b"),
        ],
        vec![prefix_route("/", "backend-b")],
    ));
    let status = cp
        .wait_node("edge-1", APPLIED, |s| {
            s.type_status(type_url::ROUTE)
                .is_some_and(|t| t.last_nack.is_some())
        })
        .await
        .unwrap_or_else(|| panic!("no NACK recorded: {:#?}", cp.status()));
    let rds = status.type_status(type_url::ROUTE).unwrap();
    let nack = rds.last_nack.as_ref().unwrap();
    eprintln!(
        "{api:?}: Envoy's NACK: {:?} for {:?}",
        nack.error, nack.resource_names
    );
    assert!(nack.error.contains("(?="), "{nack:?}");
    assert_eq!(nack.resource_names, ["routes-a"]);
    assert_ne!(
        rds.acked_version.as_deref(),
        Some(nack.rejected_version.as_str())
    );
    // Envoy keeps its last good configuration.
    assert_eq!(world.backend_on(world.port_a).await.as_deref(), Some("a"));
    let rejected = envoy
        .stat("http.edge-a.rds.routes-a.update_rejected")
        .await
        .unwrap();
    assert_eq!(rejected, Some(1));

    cp.publish(world.snapshot(
        vec![
            regex_route("/x.*", "backend-b"),
            prefix_route("/", "backend-b"),
        ],
        vec![prefix_route("/", "backend-b")],
    ));
    world.wait_backend(world.port_a, "b").await;
    let status = converged(&cp, "edge-1").await;
    assert!(status
        .type_status(type_url::ROUTE)
        .unwrap()
        .last_nack
        .is_some());
}

#[tokio::test]
async fn nack_keeps_the_old_route_sotw() {
    nack(ApiType::Grpc).await;
}

#[tokio::test]
async fn nack_keeps_the_old_route_delta() {
    nack(ApiType::DeltaGrpc).await;
}

/// (e) Two Envoys on one publisher, one of each protocol, both converge on every push.
#[tokio::test]
async fn two_envoys_at_once() {
    let world = World::new().await;
    let other = World::new().await;
    let cp = ControlPlane::start(world.initial()).await.unwrap();
    let _one = Envoy::start(&cp.bootstrap("edge-1", ApiType::Grpc))
        .await
        .unwrap();
    // The second Envoy needs listeners on other ports: give it its own node and the same
    // clusters, so both share CDS and EDS but not ports. The snapshot carries both sets.
    let both = |w: &World, o: &World, to: &str| {
        let mut s = w.snapshot(
            vec![prefix_route("/", to)],
            vec![prefix_route("/", "backend-b")],
        );
        s.insert(listener("edge-a2", o.port_a, "routes-a"));
        s
    };
    cp.publish(both(&world, &other, "backend-a"));
    let _two = Envoy::start(&cp.bootstrap("edge-2", ApiType::DeltaGrpc))
        .await
        .unwrap();
    for node in ["edge-1", "edge-2"] {
        converged(&cp, node).await;
    }
    assert_eq!(cp.status().len(), 2);
    world.wait_backend(world.port_a, "a").await;
    world.wait_backend(other.port_a, "a").await;

    cp.publish(both(&world, &other, "backend-b"));
    world.wait_backend(world.port_a, "b").await;
    world.wait_backend(other.port_a, "b").await;
}

/// (f) The publisher restarts: Envoy keeps serving meanwhile, reconnects by itself and
/// converges on the new publisher's snapshot.
async fn publisher_restart(api: ApiType) {
    let world = World::new().await;
    let cp = ControlPlane::start(world.initial()).await.unwrap();
    let addr = cp.addr();
    let envoy = Envoy::start(&cp.bootstrap("edge-1", api)).await.unwrap();
    converged(&cp, "edge-1").await;
    cp.stop().await.unwrap();

    assert_eq!(
        world.backend_on(world.port_a).await.as_deref(),
        Some("a"),
        "Envoy serves without its control plane"
    );
    let disconnected = poll(APPLIED, Duration::from_millis(10), || async {
        (envoy.stat("control_plane.connected_state").await.ok()? == Some(0)).then_some(())
    })
    .await;
    assert!(
        disconnected.is_some(),
        "Envoy never noticed the publisher went away"
    );

    let restarted = Instant::now();
    let cp = ControlPlane::start_on(
        addr.port(),
        world.snapshot(
            vec![prefix_route("/", "backend-b")],
            vec![prefix_route("/", "backend-a")],
        ),
    )
    .await
    .unwrap();
    // Envoy retries with back-off (base 500 ms, with jitter), so allow for a few attempts.
    let (_, waited) = poll(
        Duration::from_secs(30),
        Duration::from_millis(5),
        || async { (world.backend_on(world.port_a).await.as_deref() == Some("b")).then_some(()) },
    )
    .await
    .unwrap_or_else(|| {
        panic!(
            "Envoy never converged after the restart: {:#?}",
            cp.status()
        )
    });
    world.wait_backend(world.port_b, "a").await;
    eprintln!(
        "{api:?}: converged {waited:?} after the publisher came back ({:?} since restart)",
        restarted.elapsed()
    );
    converged(&cp, "edge-1").await;
}

#[tokio::test]
async fn publisher_restart_converges_sotw() {
    publisher_restart(ApiType::Grpc).await;
}

#[tokio::test]
async fn publisher_restart_converges_delta() {
    publisher_restart(ApiType::DeltaGrpc).await;
}

/// Make-before-break, measured: a route moves to a new cluster and the old cluster goes in
/// the same snapshot, while a client keeps sending requests. None may fail.
async fn cluster_swap(api: ApiType) {
    let world = World::new().await;
    let blue = |w: &World| {
        let mut s = w.snapshot(
            vec![prefix_route("/", "blue")],
            vec![prefix_route("/", "backend-b")],
        );
        s.insert(eds_cluster("blue"));
        s.insert(endpoints("blue", &[w.a.addr()]));
        s
    };
    let green = |w: &World| {
        let mut s = w.snapshot(
            vec![prefix_route("/", "green")],
            vec![prefix_route("/", "backend-b")],
        );
        s.insert(eds_cluster("green"));
        s.insert(endpoints("green", &[w.b.addr()]));
        s
    };
    let cp = ControlPlane::start(blue(&world)).await.unwrap();
    let envoy = Envoy::start(&cp.bootstrap("edge-1", api)).await.unwrap();
    converged(&cp, "edge-1").await;
    world.wait_backend(world.port_a, "a").await;

    let (tx, mut rx) = tokio::sync::oneshot::channel::<()>();
    let client = world.http.clone();
    let port = world.port_a;
    let hammer = tokio::spawn(async move {
        let mut codes = Vec::new();
        let start = Instant::now();
        // Bounded in count and time; stops early when told to.
        while codes.len() < 20_000 && start.elapsed() < Duration::from_secs(10) {
            if rx.try_recv().is_ok() {
                break;
            }
            let r = client.get(&format!("http://127.0.0.1:{port}/swap")).await;
            codes.push(r.map(|r| r.status).unwrap_or(0));
        }
        codes
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    cp.publish(green(&world));
    world.wait_backend(world.port_a, "b").await;
    converged(&cp, "edge-1").await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let _ = tx.send(());
    let codes = hammer.await.unwrap();
    let failed = codes.iter().filter(|c| **c != 200).count();
    eprintln!(
        "{api:?}: {} requests during the swap, {failed} failed",
        codes.len()
    );
    assert!(
        codes.len() > 10,
        "too few requests to tell: {}",
        codes.len()
    );
    assert_eq!(
        failed,
        0,
        "codes other than 200: {:?}",
        codes.iter().filter(|c| **c != 200).collect::<Vec<_>>()
    );

    let clusters = envoy.config_dump("dynamic_active_clusters").await.unwrap();
    let names: Vec<&str> = clusters
        .iter()
        .filter_map(|c| c.pointer("/cluster/name").and_then(|v| v.as_str()))
        .collect();
    assert!(
        names.contains(&"green") && !names.contains(&"blue"),
        "{names:?}"
    );
}

#[tokio::test]
async fn cluster_swap_drops_no_request_sotw() {
    cluster_swap(ApiType::Grpc).await;
}

#[tokio::test]
async fn cluster_swap_drops_no_request_delta() {
    cluster_swap(ApiType::DeltaGrpc).await;
}

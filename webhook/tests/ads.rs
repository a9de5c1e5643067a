//! In-process ADS protocol tests: a tonic client plays Envoy against the publisher on loopback.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ambassador_webhook::ads::{
    serve_with_shutdown, type_url, Protocol, Publisher, Reason, Resource, Snapshot, Subscription,
};
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::config::route::v3::{RouteConfiguration, VirtualHost};
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use envoy_types::pb::google::protobuf::Duration as PbDuration;
use envoy_types::pb::google::rpc::Status as RpcStatus;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;

/// How long a response may take to arrive on loopback before the test fails.
const ARRIVES: Duration = Duration::from_secs(5);
/// How long to wait to be confident that nothing more is coming.
const QUIET: Duration = Duration::from_millis(300);

fn cluster(name: &str, timeout_s: i64) -> Resource {
    Resource::pack(
        name,
        Cluster {
            name: name.to_owned(),
            connect_timeout: Some(PbDuration {
                seconds: timeout_s,
                nanos: 0,
            }),
            ..Default::default()
        },
    )
}

fn endpoints(name: &str) -> Resource {
    Resource::pack(
        name,
        ClusterLoadAssignment {
            cluster_name: name.to_owned(),
            ..Default::default()
        },
    )
}

fn listener(name: &str, stat_prefix: &str) -> Resource {
    Resource::pack(
        name,
        Listener {
            name: name.to_owned(),
            stat_prefix: stat_prefix.to_owned(),
            ..Default::default()
        },
    )
}

fn route(name: &str, vhost: &str) -> Resource {
    Resource::pack(
        name,
        RouteConfiguration {
            name: name.to_owned(),
            virtual_hosts: vec![VirtualHost {
                name: vhost.to_owned(),
                domains: vec!["*".to_owned()],
                ..Default::default()
            }],
            ..Default::default()
        },
    )
}

struct Server {
    snapshots: watch::Sender<Arc<Snapshot>>,
    publisher: Publisher,
    addr: SocketAddr,
    _stop: oneshot::Sender<()>,
}

impl Server {
    async fn start(snapshot: Snapshot) -> Self {
        Self::start_with(snapshot, ambassador_webhook::ads::DEFAULT_ACK_TIMEOUT).await
    }

    async fn start_with(snapshot: Snapshot, ack_timeout: Duration) -> Self {
        let (snapshots, rx) = watch::channel(Arc::new(snapshot));
        let publisher = Publisher::new(rx).with_ack_timeout(ack_timeout);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(serve_with_shutdown(publisher.clone(), listener, async {
            let _ = stopped.await;
        }));
        Self {
            snapshots,
            publisher,
            addr,
            _stop: stop,
        }
    }

    fn publish(&self, snapshot: Snapshot) {
        self.snapshots.send_replace(Arc::new(snapshot));
    }

    async fn client(&self) -> AggregatedDiscoveryServiceClient<tonic::transport::Channel> {
        AggregatedDiscoveryServiceClient::connect(format!("http://{}", self.addr))
            .await
            .unwrap()
    }

    /// Waits, bounded, until exactly `n` streams are open.
    async fn wait_streams(&self, n: usize) {
        for _ in 0..100 {
            if self.publisher.status().len() == n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("expected {n} streams: {:#?}", self.publisher.status());
    }

    /// Waits, bounded, until `check` holds for the status of the only stream of `node`.
    async fn wait_status(
        &self,
        node: &str,
        check: impl Fn(&ambassador_webhook::ads::NodeStatus) -> bool,
    ) -> ambassador_webhook::ads::NodeStatus {
        for _ in 0..100 {
            if let Some(s) = self
                .publisher
                .status()
                .into_iter()
                .find(|s| s.node_id == node)
            {
                if check(&s) {
                    return s;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "status of {node} never matched: {:#?}",
            self.publisher.status()
        );
    }
}

/// A state-of-the-world client that sends what the test tells it to, like Envoy would.
struct Sotw {
    tx: mpsc::Sender<DiscoveryRequest>,
    rx: Streaming<DiscoveryResponse>,
    node_sent: bool,
    node: String,
}

impl Sotw {
    async fn connect(server: &Server, node: &str) -> Self {
        let (tx, rx) = mpsc::channel(16);
        let rx = server
            .client()
            .await
            .stream_aggregated_resources(ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        Self {
            tx,
            rx,
            node_sent: false,
            node: node.to_owned(),
        }
    }

    async fn send(
        &mut self,
        type_url: &str,
        names: &[&str],
        version: &str,
        nonce: &str,
        error: Option<&str>,
    ) {
        let node = (!self.node_sent).then(|| Node {
            id: self.node.clone(),
            cluster: "test".to_owned(),
            ..Default::default()
        });
        self.node_sent = true;
        self.tx
            .send(DiscoveryRequest {
                version_info: version.to_owned(),
                node,
                resource_names: names.iter().map(|n| (*n).to_owned()).collect(),
                type_url: type_url.to_owned(),
                response_nonce: nonce.to_owned(),
                error_detail: error.map(|message| RpcStatus {
                    code: 3,
                    message: message.to_owned(),
                    details: Vec::new(),
                }),
                ..Default::default()
            })
            .await
            .unwrap();
    }

    async fn ack(&mut self, r: &DiscoveryResponse, names: &[&str]) {
        self.send(&r.type_url, names, &r.version_info, &r.nonce, None)
            .await;
    }

    async fn recv(&mut self) -> DiscoveryResponse {
        tokio::time::timeout(ARRIVES, self.rx.message())
            .await
            .expect("a response in time")
            .expect("stream open")
            .expect("a response")
    }

    async fn expect_nothing(&mut self) {
        if let Ok(msg) = tokio::time::timeout(QUIET, self.rx.message()).await {
            panic!("expected no response, got {msg:?}");
        }
    }
}

fn names(r: &DiscoveryResponse) -> Vec<String> {
    r.resources
        .iter()
        .map(|any| {
            // Every test resource carries its name in field 1.
            use prost::Message;
            match any.type_url.as_str() {
                type_url::CLUSTER => Cluster::decode(&any.value[..]).unwrap().name,
                type_url::ENDPOINT => {
                    ClusterLoadAssignment::decode(&any.value[..])
                        .unwrap()
                        .cluster_name
                }
                type_url::LISTENER => Listener::decode(&any.value[..]).unwrap().name,
                type_url::ROUTE => RouteConfiguration::decode(&any.value[..]).unwrap().name,
                other => panic!("unexpected type {other}"),
            }
        })
        .collect()
}

fn base() -> Snapshot {
    Snapshot::new()
        .with(cluster("c1", 1))
        .with(cluster("c2", 1))
        .with(endpoints("c1"))
        .with(endpoints("c2"))
        .with(listener("l1", "r1"))
        .with(route("r1", "one"))
}

/// Subscribes to everything in Envoy's start-up order and ACKs each answer; returns the
/// EDS and RDS answers, whose nonces Envoy repeats when it changes those subscriptions.
async fn subscribe_all(
    c: &mut Sotw,
    eds: &[&str],
    rds: &[&str],
) -> (DiscoveryResponse, DiscoveryResponse) {
    c.send(type_url::CLUSTER, &[], "", "", None).await;
    let r = c.recv().await;
    c.send(type_url::ENDPOINT, eds, "", "", None).await;
    let e = c.recv().await;
    c.ack(&e, eds).await;
    c.ack(&r, &[]).await;
    c.send(type_url::LISTENER, &[], "", "", None).await;
    let l = c.recv().await;
    c.send(type_url::ROUTE, rds, "", "", None).await;
    let rr = c.recv().await;
    c.ack(&rr, rds).await;
    c.ack(&l, &[]).await;
    c.expect_nothing().await;
    (e, rr)
}

#[tokio::test]
async fn sotw_first_requests_are_answered_and_acks_recorded() {
    let server = Server::start(base()).await;
    let mut c = Sotw::connect(&server, "n1").await;
    c.send(type_url::CLUSTER, &[], "", "", None).await;
    let r = c.recv().await;
    assert_eq!(names(&r), ["c1", "c2"]);
    assert_eq!(r.version_info, base().version(type_url::CLUSTER));
    c.send(type_url::ENDPOINT, &["c2"], "", "", None).await;
    let e = c.recv().await;
    assert_eq!(names(&e), ["c2"], "EDS sends only what was subscribed");
    c.ack(&e, &["c2"]).await;
    c.ack(&r, &[]).await;
    let status = server
        .wait_status("n1", |s| {
            s.types.values().all(|t| t.is_acked()) && s.types.len() == 2
        })
        .await;
    assert_eq!(status.protocol, Protocol::StateOfTheWorld);
    assert_eq!(status.node_cluster, "test");
    let cds = status.type_status(type_url::CLUSTER).unwrap();
    assert_eq!(cds.acked_version.as_deref(), Some(r.version_info.as_str()));
    assert_eq!(cds.subscription, Subscription::Wildcard);
}

#[tokio::test]
async fn empty_wildcard_is_answered_and_missing_names_are_not() {
    let server = Server::start(Snapshot::new()).await;
    let mut c = Sotw::connect(&server, "n").await;
    c.send(type_url::LISTENER, &[], "", "", None).await;
    let l = c.recv().await;
    assert!(
        l.resources.is_empty(),
        "Envoy waits for a first LDS answer, even an empty one"
    );
    c.ack(&l, &[]).await;
    c.send(type_url::ROUTE, &["nowhere"], "", "", None).await;
    c.expect_nothing().await;
    // Once it exists, it is sent.
    server.publish(Snapshot::new().with(route("nowhere", "v")));
    let r = c.recv().await;
    assert_eq!(names(&r), ["nowhere"]);
}

#[tokio::test]
async fn stale_nonce_is_ignored() {
    let server = Server::start(base()).await;
    let mut c = Sotw::connect(&server, "n").await;
    c.send(type_url::ROUTE, &["r1"], "", "", None).await;
    let first = c.recv().await;
    c.ack(&first, &["r1"]).await;
    server.publish(base().with(route("r1", "changed")).with(route("r2", "two")));
    let second = c.recv().await;
    assert_eq!(names(&second), ["r1"]);
    // A subscription change that answers the first response only is stale: Envoy repeats
    // its names when it answers the second one.
    c.send(
        type_url::ROUTE,
        &["r1", "r2"],
        &first.version_info,
        &first.nonce,
        None,
    )
    .await;
    c.expect_nothing().await;
    c.ack(&second, &["r1", "r2"]).await;
    let third = c.recv().await;
    assert_eq!(
        names(&third),
        ["r2"],
        "only the newly subscribed route is sent"
    );
    assert_ne!(third.nonce, second.nonce);
    c.ack(&third, &["r1", "r2"]).await;
    c.expect_nothing().await;
}

#[tokio::test]
async fn nack_is_recorded_and_a_later_push_recovers() {
    let server = Server::start(base()).await;
    let mut c = Sotw::connect(&server, "n").await;
    c.send(type_url::ROUTE, &["r1"], "", "", None).await;
    let good = c.recv().await;
    c.ack(&good, &["r1"]).await;

    server.publish(base().with(route("r1", "bad")));
    let bad = c.recv().await;
    c.send(
        type_url::ROUTE,
        &["r1"],
        &good.version_info,
        &bad.nonce,
        Some("invalid perl operator: (?="),
    )
    .await;
    let status = server
        .wait_status("n", |s| s.types[type_url::ROUTE].last_nack.is_some())
        .await;
    let rds = &status.types[type_url::ROUTE];
    let nack = rds.last_nack.as_ref().unwrap();
    assert_eq!(nack.error, "invalid perl operator: (?=");
    assert_eq!(nack.resource_names, ["r1"]);
    assert_eq!(nack.rejected_version, bad.version_info);
    assert_eq!(
        rds.acked_version.as_deref(),
        Some(good.version_info.as_str())
    );
    assert!(!rds.is_acked());
    // The refused version is not resent in a loop.
    c.expect_nothing().await;

    server.publish(base().with(route("r1", "fixed")));
    let fixed = c.recv().await;
    assert_eq!(names(&fixed), ["r1"]);
    c.ack(&fixed, &["r1"]).await;
    let status = server
        .wait_status("n", |s| s.types[type_url::ROUTE].is_acked())
        .await;
    assert!(
        status.types[type_url::ROUTE].last_nack.is_some(),
        "the last NACK stays visible"
    );
}

#[tokio::test]
async fn route_change_resends_only_that_route() {
    let server = Server::start(base().with(route("r2", "two")).with(listener("l2", "r2"))).await;
    let mut c = Sotw::connect(&server, "n").await;
    subscribe_all(&mut c, &["c1", "c2"], &["r1", "r2"]).await;
    server.publish(
        base()
            .with(route("r2", "two, changed"))
            .with(listener("l2", "r2")),
    );
    let r = c.recv().await;
    assert_eq!(r.type_url, type_url::ROUTE);
    assert_eq!(names(&r), ["r2"]);
    c.ack(&r, &["r1", "r2"]).await;
    c.expect_nothing().await;
}

#[tokio::test]
async fn make_before_break_order_with_acks_between_stages() {
    let server = Server::start(base()).await;
    let mut c = Sotw::connect(&server, "n").await;
    let (last_eds, last_rds) = subscribe_all(&mut c, &["c1", "c2"], &["r1"]).await;

    // c1 goes, c3 comes; the listener now names r3, which routes to c3.
    let next = Snapshot::new()
        .with(cluster("c2", 1))
        .with(cluster("c3", 1))
        .with(endpoints("c2"))
        .with(endpoints("c3"))
        .with(listener("l1", "r3"))
        .with(route("r3", "three"));
    server.publish(next);

    let cds = c.recv().await;
    assert_eq!(cds.type_url, type_url::CLUSTER);
    assert_eq!(
        names(&cds),
        ["c1", "c2", "c3"],
        "old and new clusters together first"
    );
    // Like Envoy, ask for the new cluster's endpoints before ACKing CDS.
    c.send(
        type_url::ENDPOINT,
        &["c1", "c2", "c3"],
        &last_eds.version_info,
        &last_eds.nonce,
        None,
    )
    .await;
    let eds = c.recv().await;
    assert_eq!(names(&eds), ["c3"]);
    c.ack(&eds, &["c1", "c2", "c3"]).await;
    c.expect_nothing().await; // CDS is not ACKed yet: nothing moves.
    c.ack(&cds, &[]).await;

    let lds = c.recv().await;
    assert_eq!(
        lds.type_url,
        type_url::LISTENER,
        "listeners come after clusters"
    );
    c.send(
        type_url::ROUTE,
        &["r3"],
        &last_rds.version_info,
        &last_rds.nonce,
        None,
    )
    .await;
    let rds = c.recv().await;
    assert_eq!(names(&rds), ["r3"]);
    c.ack(&rds, &["r3"]).await;
    c.expect_nothing().await;
    c.ack(&lds, &[]).await;

    let last = c.recv().await;
    assert_eq!(last.type_url, type_url::CLUSTER, "stale clusters go last");
    assert_eq!(names(&last), ["c2", "c3"]);
    c.ack(&last, &[]).await;
    c.expect_nothing().await;

    let status = server
        .wait_status("n", |s| s.types.values().all(|t| t.in_flight == 0))
        .await;
    let order: Vec<(&str, Reason)> = status
        .recent
        .iter()
        .rev()
        .take(5)
        .rev()
        .map(|s| (s.type_url.as_str(), s.reason))
        .collect();
    assert_eq!(
        order,
        [
            (type_url::CLUSTER, Reason::Snapshot),
            (type_url::ENDPOINT, Reason::Request),
            (type_url::LISTENER, Reason::Snapshot),
            (type_url::ROUTE, Reason::Request),
            (type_url::CLUSTER, Reason::Snapshot),
        ]
    );
}

#[tokio::test]
async fn reconnect_gets_the_whole_current_state() {
    let server = Server::start(base()).await;
    let mut c = Sotw::connect(&server, "n").await;
    subscribe_all(&mut c, &["c1"], &["r1"]).await;
    drop(c);
    server.wait_streams(0).await;
    server.publish(base().with(route("r1", "while away")));
    let mut c = Sotw::connect(&server, "n").await;
    // Envoy sends the versions it holds; the publisher answers with everything anyway.
    c.send(type_url::CLUSTER, &[], "old", "", None).await;
    assert_eq!(names(&c.recv().await), ["c1", "c2"]);
    c.send(type_url::ROUTE, &["r1"], "old", "", None).await;
    let r = c.recv().await;
    assert_eq!(names(&r), ["r1"]);
    assert_eq!(r.version_info, {
        let mut only_r1 = Snapshot::new();
        only_r1.insert(route("r1", "while away"));
        only_r1.version(type_url::ROUTE)
    });
}

#[tokio::test]
async fn status_lists_every_stream_and_forgets_closed_ones() {
    let server = Server::start(base()).await;
    let mut a = Sotw::connect(&server, "a").await;
    let mut b = Sotw::connect(&server, "b").await;
    a.send(type_url::CLUSTER, &[], "", "", None).await;
    b.send(type_url::CLUSTER, &[], "", "", None).await;
    let ra = a.recv().await;
    let rb = b.recv().await;
    assert_eq!(ra.version_info, rb.version_info);
    server.wait_streams(2).await;
    let mut ids: Vec<String> = server
        .publisher
        .status()
        .into_iter()
        .map(|s| s.node_id)
        .collect();
    ids.sort();
    assert_eq!(ids, ["a", "b"]);
    drop(a);
    server.wait_streams(1).await;
    assert_eq!(server.publisher.status()[0].node_id, "b");
    // The other stream goes on being served.
    b.ack(&rb, &[]).await;
    server.publish(base().with(cluster("c9", 2)));
    assert_eq!(names(&b.recv().await), ["c1", "c2", "c9"]);
}

/// A delta client.
struct Delta {
    tx: mpsc::Sender<DeltaDiscoveryRequest>,
    rx: Streaming<DeltaDiscoveryResponse>,
}

impl Delta {
    async fn connect(server: &Server) -> Self {
        let (tx, rx) = mpsc::channel(16);
        let rx = server
            .client()
            .await
            .delta_aggregated_resources(ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        Self { tx, rx }
    }

    async fn send(&mut self, req: DeltaDiscoveryRequest) {
        self.tx.send(req).await.unwrap();
    }

    async fn subscribe(&mut self, type_url: &str, names: &[&str]) {
        self.send(DeltaDiscoveryRequest {
            node: Some(Node {
                id: "delta".to_owned(),
                ..Default::default()
            }),
            type_url: type_url.to_owned(),
            resource_names_subscribe: names.iter().map(|n| (*n).to_owned()).collect(),
            ..Default::default()
        })
        .await;
    }

    async fn ack(&mut self, r: &DeltaDiscoveryResponse) {
        self.send(DeltaDiscoveryRequest {
            type_url: r.type_url.clone(),
            response_nonce: r.nonce.clone(),
            ..Default::default()
        })
        .await;
    }

    async fn recv(&mut self) -> DeltaDiscoveryResponse {
        tokio::time::timeout(ARRIVES, self.rx.message())
            .await
            .expect("a response in time")
            .expect("stream open")
            .expect("a response")
    }

    async fn expect_nothing(&mut self) {
        if let Ok(msg) = tokio::time::timeout(QUIET, self.rx.message()).await {
            panic!("expected no response, got {msg:?}");
        }
    }
}

fn delta_names(r: &DeltaDiscoveryResponse) -> Vec<(&str, &str)> {
    r.resources
        .iter()
        .map(|r| (r.name.as_str(), r.version.as_str()))
        .collect()
}

#[tokio::test]
async fn delta_sends_changes_then_removals_with_per_resource_versions() {
    let server = Server::start(base()).await;
    let mut c = Delta::connect(&server).await;
    c.subscribe(type_url::CLUSTER, &[]).await;
    let first = c.recv().await;
    let c1 = cluster("c1", 1);
    assert_eq!(
        delta_names(&first),
        [("c1", c1.version()), ("c2", cluster("c2", 1).version())]
    );
    c.ack(&first).await;

    // c1 changes, c2 goes, c3 comes.
    let next = Snapshot::new()
        .with(cluster("c1", 5))
        .with(cluster("c3", 1))
        .with(endpoints("c1"))
        .with(listener("l1", "r1"))
        .with(route("r1", "one"));
    server.publish(next);
    let add = c.recv().await;
    assert_eq!(
        delta_names(&add),
        [
            ("c1", cluster("c1", 5).version()),
            ("c3", cluster("c3", 1).version())
        ],
        "only what changed, no removal yet"
    );
    assert!(add.removed_resources.is_empty());
    c.expect_nothing().await;
    c.ack(&add).await;
    let remove = c.recv().await;
    assert!(remove.resources.is_empty());
    assert_eq!(remove.removed_resources, ["c2"]);
    c.ack(&remove).await;

    // Named types: a removed route is announced too.
    c.subscribe(type_url::ROUTE, &["r1"]).await;
    let r = c.recv().await;
    assert_eq!(delta_names(&r).len(), 1);
    c.ack(&r).await;
    server.publish(
        Snapshot::new()
            .with(cluster("c1", 5))
            .with(cluster("c3", 1))
            .with(listener("l1", "r1")),
    );
    let gone = c.recv().await;
    assert_eq!(gone.type_url, type_url::ROUTE);
    assert_eq!(gone.removed_resources, ["r1"]);
    c.ack(&gone).await;
    c.expect_nothing().await;
    let status = server
        .wait_status("delta", |s| s.types.values().all(|t| t.is_acked()))
        .await;
    assert_eq!(status.protocol, Protocol::Delta);
}

#[tokio::test]
async fn delta_reconnect_sends_only_what_differs_from_what_envoy_holds() {
    let server = Server::start(base()).await;
    let mut c = Delta::connect(&server).await;
    c.send(DeltaDiscoveryRequest {
        type_url: type_url::CLUSTER.to_owned(),
        initial_resource_versions: [
            ("c1".to_owned(), cluster("c1", 1).version().to_owned()),
            ("c2".to_owned(), "older".to_owned()),
            ("gone".to_owned(), "whatever".to_owned()),
        ]
        .into_iter()
        .collect(),
        ..Default::default()
    })
    .await;
    let r = c.recv().await;
    assert_eq!(delta_names(&r), [("c2", cluster("c2", 1).version())]);
    assert!(
        r.removed_resources.is_empty(),
        "removals wait for the last stage"
    );
    c.ack(&r).await;
    let last = c.recv().await;
    assert_eq!(last.removed_resources, ["gone"]);
}

#[tokio::test]
async fn delta_unsubscribe_forgets_and_resubscribe_resends() {
    let server = Server::start(base()).await;
    let mut c = Delta::connect(&server).await;
    c.subscribe(type_url::ENDPOINT, &["c1", "c2"]).await;
    let r = c.recv().await;
    assert_eq!(r.resources.len(), 2);
    c.ack(&r).await;
    c.send(DeltaDiscoveryRequest {
        type_url: type_url::ENDPOINT.to_owned(),
        resource_names_unsubscribe: vec!["c2".to_owned()],
        ..Default::default()
    })
    .await;
    c.expect_nothing().await;
    c.subscribe(type_url::ENDPOINT, &["c2"]).await;
    let again = c.recv().await;
    assert_eq!(delta_names(&again), [("c2", endpoints("c2").version())]);
}

#[tokio::test]
async fn a_client_that_never_answers_stalls_pushes_only_until_the_ack_timeout() {
    let server = Server::start_with(base(), Duration::from_millis(400)).await;
    let mut c = Sotw::connect(&server, "n").await;
    c.send(type_url::CLUSTER, &[], "", "", None).await;
    let cds = c.recv().await;
    c.ack(&cds, &[]).await;
    c.send(type_url::ROUTE, &["r1"], "", "", None).await;
    let rds = c.recv().await;
    c.ack(&rds, &["r1"]).await;
    c.expect_nothing().await;

    server.publish(base().with(cluster("c9", 1)).with(route("r1", "changed")));
    let sent = std::time::Instant::now();
    let cds = c.recv().await;
    assert_eq!(cds.type_url, type_url::CLUSTER);
    // No ACK: routes wait for the timeout, then go.
    let next = c.recv().await;
    let waited = sent.elapsed();
    assert_eq!(next.type_url, type_url::ROUTE);
    assert!(waited >= Duration::from_millis(400), "{waited:?}");
    assert!(waited < Duration::from_secs(3), "{waited:?}");
}

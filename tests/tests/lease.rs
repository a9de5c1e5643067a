//! One writer of status and Events among two replicas, elected on a Lease, against the
//! stand-in API server: exactly one writes; when it dies the other takes over and writes
//! within 15 s; a lost lease stops writing; a stopped leader hands over at once. Both
//! replicas keep their admission view. Everything runs on loopback, and every wait is
//! bounded.

use std::sync::Arc;
use std::time::Duration;

use ::kube::api::{Api, ApiResource, DynamicObject, PostParams};
use ambassador_e2e::apiserver::{ApiServer, Config};
use ambassador_webhook::admission::Validate;
use ambassador_webhook::lease::{self, Elector, Leadership, LeaseOptions};
use ambassador_webhook::metrics::Metrics;
use ambassador_webhook::run;
use ambassador_webhook::server::Readiness;
use ambassador_webhook::validator::CompilerValidator;
use ambassador_webhook::view::kube::{self, KubeOptions, Reporter};
use ambassador_webhook::view::View;
use hyper::header::{HeaderName, HeaderValue};
use serde_json::{json, Value};
use tokio::task::JoinHandle;
use tokio::time::Instant;

const NAMESPACE: &str = "ambassador-system";
const LEASE: &str = "ambassador-webhook";
/// What the brief promises: the other replica writes within 15 s of the leader's death.
const TAKEOVER: Duration = Duration::from_secs(15);

fn client(server: &ApiServer, name: &str) -> ::kube::Client {
    let mut config = ::kube::Config::new(server.url().parse().unwrap());
    // The stand-in records who sent each request.
    config.headers.push((
        HeaderName::from_static("x-client"),
        HeaderValue::from_str(name).unwrap(),
    ));
    ::kube::Client::try_from(config).unwrap()
}

fn bad_mapping(name: &str) -> Value {
    json!({
        "apiVersion": "getambassador.io/v3alpha1", "kind": "Mapping",
        "metadata": {"name": name, "namespace": "a"},
        "spec": {"hostname": "*", "prefix": format!("/{name}/"), "service": "backend", "timout_ms": 5},
    })
}

async fn seeded() -> ApiServer {
    let server = ApiServer::start(Config::default()).await;
    server.apply(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "backend", "namespace": "a"},
        "spec": {"ports": [{"port": 80}]},
    }));
    server.apply(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "annotated", "namespace": "a", "annotations": {
            "getambassador.io/config": "apiVersion: getambassador.io/v2\nkind: Mapping\nname: ann\nprefix: ann/\nservice: backend\n"
        }},
        "spec": {"ports": [{"port": 80}]},
    }));
    server.apply(bad_mapping("bad1"));
    server
}

/// One replica of `serve --kube`, as `main.rs` wires it: a view, the validator it
/// feeds, and a reporter that writes only while this replica holds the Lease.
struct Replica {
    name: &'static str,
    leadership: Leadership,
    readiness: Readiness,
    validator: Arc<CompilerValidator>,
    elector: Option<Elector>,
    tasks: Vec<JoinHandle<()>>,
}

impl Replica {
    fn start(server: &ApiServer, name: &'static str) -> Replica {
        let client = client(server, name);
        let view = View::new();
        let options = KubeOptions {
            namespace: None,
            reprobe: Duration::from_millis(500),
            max_backoff: Duration::from_millis(300),
        };
        let watch = kube::spawn(client.clone(), view.clone(), options);
        // The production timing: an 8 s lease, renewed every 2 s.
        let (leadership, elector) =
            lease::spawn(client.clone(), LeaseOptions::new(NAMESPACE, LEASE, name));
        let reporter = Reporter::new(client, "getambassador.io/ambassador-webhook", name)
            .with_leadership(leadership.clone());
        let validator = Arc::new(CompilerValidator::new("default"));
        let readiness = Readiness::new();
        let feed = run::feed_validator(
            &view,
            Arc::clone(&validator),
            readiness.clone(),
            Arc::new(Metrics::new()),
            Some(Arc::new(reporter)),
        );
        Replica {
            name,
            leadership,
            readiness,
            validator,
            elector: Some(elector),
            tasks: vec![watch, feed],
        }
    }

    /// Still serves admission: ready, and a bad object is refused with its finding.
    fn serves_admission(&self) -> bool {
        self.readiness.is_ready() && !self.validator.validate(&bad_mapping("probe")).is_empty()
    }
}

impl Drop for Replica {
    /// Dies as a killed pod does: nothing is released.
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        drop(self.elector.take());
    }
}

/// Status patches and Events posted, as `(client, request line)`.
fn writes(server: &ApiServer) -> Vec<(String, String)> {
    server
        .requests_by_client()
        .into_iter()
        .filter(|(_, line)| {
            (line.starts_with("PATCH ") && line.contains("/status"))
                || (line.starts_with("POST ") && line.contains("/events"))
        })
        .collect()
}

fn status_writes(server: &ApiServer, mapping: &str) -> Vec<String> {
    let path = format!("/namespaces/a/mappings/{mapping}/status");
    writes(server)
        .into_iter()
        .filter(|(_, line)| line.split('?').next().is_some_and(|p| p.ends_with(&path)))
        .map(|(client, _)| client)
        .collect()
}

fn holder(server: &ApiServer) -> Option<String> {
    server
        .object("coordination.k8s.io", "leases", NAMESPACE, LEASE)
        .and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_string))
}

/// Polls `f` every 100 ms until it holds or `limit` has passed.
async fn until(limit: Duration, what: &str, mut f: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    loop {
        if f() {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replica_writes_and_the_other_takes_over_when_it_dies() {
    let server = seeded().await;
    let mut replicas = vec![
        Replica::start(&server, "pod-a"),
        Replica::start(&server, "pod-b"),
    ];

    until(Duration::from_secs(20), "a status and an Event", || {
        !status_writes(&server, "bad1").is_empty() && !server.events().is_empty()
    })
    .await;
    let writer = status_writes(&server, "bad1")[0].clone();
    assert_eq!(holder(&server).as_deref(), Some(writer.as_str()));
    let lease = server
        .object("coordination.k8s.io", "leases", NAMESPACE, LEASE)
        .unwrap();
    assert!(lease["spec"]["leaseDurationSeconds"].as_i64().unwrap() <= 15);

    // A change while both run: written once, by the leader.
    server.apply(bad_mapping("bad2"));
    until(Duration::from_secs(10), "bad2's status", || {
        !status_writes(&server, "bad2").is_empty()
    })
    .await;
    // Two renewals' worth of time for a second writer to show itself.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let before = writes(&server);
    assert!(
        before.iter().all(|(client, _)| *client == writer),
        "only {writer} writes: {before:#?}"
    );
    assert_eq!(status_writes(&server, "bad1").len(), 1, "{before:#?}");
    assert_eq!(status_writes(&server, "bad2").len(), 1, "{before:#?}");
    assert_eq!(server.events().len(), 1, "{:#?}", server.events());
    for r in &replicas {
        assert_eq!(r.leadership.is_leader(), r.name == writer, "{}", r.name);
        assert!(r.serves_admission(), "{} serves admission", r.name);
    }

    // The writer dies without releasing the Lease; a change arrives meanwhile.
    let at = replicas.iter().position(|r| r.name == writer).unwrap();
    drop(replicas.remove(at));
    let died = Instant::now();
    let other = replicas[0].name;
    server.apply(bad_mapping("bad3"));
    until(TAKEOVER, "the other replica to write bad3's status", || {
        status_writes(&server, "bad3") == [other]
    })
    .await;
    let took = died.elapsed();
    assert!(took < TAKEOVER, "took over after {took:?}");
    eprintln!("{other} took over and wrote {:?} after {writer} died", took);
    assert_eq!(holder(&server).as_deref(), Some(other));
    assert!(replicas[0].leadership.is_leader());
    assert!(replicas[0].serves_admission());

    // Everything before the death was the dead writer's, everything after the other's.
    let all = writes(&server);
    let (old, new) = all.split_at(before.len());
    assert!(old.iter().all(|(c, _)| *c == writer), "{all:#?}");
    assert!(new.iter().all(|(c, _)| c == other), "{all:#?}");
    // Statuses already right are not written again by the new leader; the Event on the
    // Service is, once (a new leader cannot know which Events the old one posted).
    assert_eq!(status_writes(&server, "bad1").len(), 1, "{all:#?}");
    assert_eq!(status_writes(&server, "bad2").len(), 1, "{all:#?}");
    assert!(server.events().len() <= 2, "{:#?}", server.events());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_lease_stops_writing_and_a_stopped_leader_hands_over() {
    let server = seeded().await;
    let mut a = Replica::start(&server, "pod-a");
    until(Duration::from_secs(10), "pod-a to lead and write", || {
        a.leadership.is_leader() && status_writes(&server, "bad1") == ["pod-a"]
    })
    .await;

    // Someone else takes the Lease (as a replica that won it would): pod-a sees it at its
    // next renewal and stops writing.
    let mut lease = server
        .object("coordination.k8s.io", "leases", NAMESPACE, LEASE)
        .unwrap();
    lease["spec"]["holderIdentity"] = json!("intruder");
    lease["spec"]["leaseDurationSeconds"] = json!(3600);
    server.apply(lease.clone());
    until(Duration::from_secs(6), "pod-a to stop leading", || {
        !a.leadership.is_leader()
    })
    .await;
    server.apply(bad_mapping("bad2"));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        status_writes(&server, "bad2").is_empty(),
        "{:#?}",
        writes(&server)
    );
    assert!(a.serves_admission());

    // The intruder lets go: pod-a takes the Lease again at its next attempt and writes
    // what it held back.
    lease["spec"]["holderIdentity"] = Value::Null;
    server.apply(lease);
    until(
        Duration::from_secs(8),
        "pod-a to write bad2's status",
        || status_writes(&server, "bad2") == ["pod-a"],
    )
    .await;

    // A leader stopped on purpose (SIGTERM) releases the Lease: the other replica takes
    // over at its next attempt, well before the lease would have expired.
    let b = Replica::start(&server, "pod-b");
    until(Duration::from_secs(10), "pod-b to sync", || {
        b.readiness.is_ready()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!b.leadership.is_leader());
    a.elector.take().unwrap().stop().await;
    assert!(!a.leadership.is_leader());
    assert_eq!(holder(&server), None);
    let took = until(Duration::from_secs(5), "pod-b to lead", || {
        b.leadership.is_leader()
    })
    .await;
    eprintln!("pod-b led {took:?} after pod-a released the lease");
    server.apply(bad_mapping("bad3"));
    until(
        Duration::from_secs(5),
        "pod-b to write bad3's status",
        || status_writes(&server, "bad3") == ["pod-b"],
    )
    .await;
    assert!(status_writes(&server, "bad1") == ["pod-a"]);
}

/// The stand-in's Lease semantics, which the election relies on: create once, and an
/// update from a stale resourceVersion answers 409.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stand_in_answers_409_on_conflicts() {
    let server = ApiServer::start(Config::default()).await;
    let ar = ApiResource {
        group: "coordination.k8s.io".into(),
        version: "v1".into(),
        api_version: "coordination.k8s.io/v1".into(),
        kind: "Lease".into(),
        plural: "leases".into(),
    };
    let api: Api<DynamicObject> = Api::namespaced_with(client(&server, "t"), NAMESPACE, &ar);
    let lease: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": LEASE},
        "spec": {"holderIdentity": "x", "leaseDurationSeconds": 8},
    }))
    .unwrap();
    let created = api.create(&PostParams::default(), &lease).await.unwrap();
    let code = |e: ::kube::Error| match e {
        ::kube::Error::Api(s) => s.code,
        other => panic!("{other}"),
    };
    let again = api
        .create(&PostParams::default(), &lease)
        .await
        .unwrap_err();
    assert_eq!(code(again), 409);
    let mut renewed = created.clone();
    renewed.data["spec"]["holderIdentity"] = json!("y");
    let renewed = api
        .replace(LEASE, &PostParams::default(), &renewed)
        .await
        .unwrap();
    assert_ne!(
        renewed.metadata.resource_version,
        created.metadata.resource_version
    );
    // `created` carries the old resourceVersion.
    let stale = api
        .replace(LEASE, &PostParams::default(), &created)
        .await
        .unwrap_err();
    assert_eq!(code(stale), 409);
    assert_eq!(
        api.get(LEASE).await.unwrap().data["spec"]["holderIdentity"],
        "y"
    );
    let mismatched = api
        .replace("other", &PostParams::default(), &lease)
        .await
        .unwrap_err();
    assert_eq!(code(mismatched), 400); // name on the URL differs from the body's
}

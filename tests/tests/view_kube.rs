//! The cluster view against the stand-in API server: sync, changes, restarts, reports, and
//! TLS Secrets through the pipeline to SDS.

use std::time::Duration;

use ambassador_e2e::apiserver::{ApiServer, Config};
use ambassador_webhook::ads::{self, type_url};
use ambassador_webhook::certs::{self, Generated};
use ambassador_webhook::pipeline::{
    follow, Change, ChangeKind, Pipeline, PipelineOptions, UpdateReport,
};
use ambassador_webhook::run::ViewFeed;
use ambassador_webhook::view::kube::{self, KubeOptions, Reported, Reporter, Verdict};
use ambassador_webhook::view::{Key, Origin, Snapshot, View};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(10);

fn mapping(ns: &str, name: &str, prefix: &str) -> Value {
    json!({
        "apiVersion": "getambassador.io/v3alpha1",
        "kind": "Mapping",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"hostname": "*", "prefix": prefix, "service": "backend"},
    })
}

fn key(kind: &str, ns: &str, name: &str) -> Key {
    let group = match kind {
        "Service" => "",
        "EndpointSlice" => "discovery.k8s.io",
        _ => "getambassador.io",
    };
    Key::new(group, kind, ns, name)
}

async fn until(view: &View, what: &str, f: impl FnMut(&Snapshot) -> bool) -> Snapshot {
    match tokio::time::timeout(WAIT, view.wait_for(f)).await {
        Ok(s) => s,
        Err(_) => panic!(
            "timed out after {WAIT:?} waiting for {what}; view: {:?}",
            view.snapshot()
        ),
    }
}

async fn client(server: &ApiServer) -> ::kube::Client {
    let config = ::kube::Config::new(server.url().parse().unwrap());
    ::kube::Client::try_from(config).unwrap()
}

fn options() -> KubeOptions {
    KubeOptions {
        namespace: None,
        reprobe: Duration::from_millis(500),
        max_backoff: Duration::from_millis(300),
    }
}

async fn seeded() -> ApiServer {
    let server = ApiServer::start(
        Config::default()
            .serve_versions("hosts", &["v2"])
            .serve_versions("devportals", &[]),
    )
    .await;
    server.apply(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "backend", "namespace": "a",
            "managedFields": [{"manager": "kubectl"}]},
        "spec": {"ports": [{"port": 80}]},
    }));
    server.apply(json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "backend-x1", "namespace": "a",
            "labels": {"kubernetes.io/service-name": "backend"}},
        "endpoints": [{"addresses": ["10.0.0.1"], "conditions": {"ready": true}}],
        "ports": [{"port": 8080}],
    }));
    server.apply(mapping("a", "one", "/one/"));
    server.apply(json!({
        "apiVersion": "getambassador.io/v2", "kind": "Host",
        "metadata": {"name": "h", "namespace": "a"},
        "spec": {"hostname": "example.com"},
    }));
    server
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syncs_then_follows_changes() {
    let server = seeded().await;
    let view = View::new();
    // Services are required: while they cannot be listed the view is not synced.
    server.forbid("services");
    let task = kube::spawn(client(&server).await, view.clone(), options());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        !view.snapshot().is_synced(),
        "synced without Services: {:?}",
        view.snapshot()
    );
    server.allow("services");

    let s = tokio::time::timeout(WAIT, view.synced())
        .await
        .expect("the view syncs once Services can be listed");
    assert!(s.get(&key("Service", "a", "backend")).is_some(), "{s:?}");
    assert!(s.get(&key("EndpointSlice", "a", "backend-x1")).is_some());
    assert_eq!(
        s.get(&key("Mapping", "a", "one")).unwrap()["spec"]["prefix"],
        "/one/"
    );
    // Host is served at v2 only; the object keeps that version.
    assert_eq!(
        s.get(&key("Host", "a", "h")).unwrap()["apiVersion"],
        "getambassador.io/v2"
    );
    // Bookkeeping that would wake the compiler for nothing is gone.
    let svc = s.get(&key("Service", "a", "backend")).unwrap();
    assert!(svc["metadata"].get("managedFields").is_none(), "{svc}");
    assert!(svc["metadata"].get("resourceVersion").is_none(), "{svc}");

    // Add, modify, delete.
    server.apply(mapping("b", "two", "/two/"));
    until(&view, "the new Mapping", |s| {
        s.get(&key("Mapping", "b", "two")).is_some()
    })
    .await;
    server.apply(mapping("a", "one", "/uno/"));
    until(&view, "the modified Mapping", |s| {
        s.get(&key("Mapping", "a", "one"))
            .is_some_and(|m| m["spec"]["prefix"] == "/uno/")
    })
    .await;
    server.delete("getambassador.io/v3alpha1", "Mapping", "b", "two");
    until(&view, "the deleted Mapping to go", |s| {
        s.get(&key("Mapping", "b", "two")).is_none()
    })
    .await;

    // Watches break, requests fail, history is compacted (410 Gone on the old version):
    // the view re-lists and converges, including a delete it never saw as an event.
    server.fail_next(5);
    server.close_watches();
    server.delete("getambassador.io/v3alpha1", "Mapping", "a", "one");
    server.compact();
    server.apply(mapping("c", "three", "/three/"));
    let s = until(&view, "convergence after errors", |s| {
        s.get(&key("Mapping", "a", "one")).is_none()
            && s.get(&key("Mapping", "c", "three")).is_some()
    })
    .await;
    assert!(s.is_synced());
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_namespace_only() {
    let server = seeded().await;
    server.apply(mapping("b", "elsewhere", "/x/"));
    let view = View::new();
    let options = KubeOptions {
        namespace: Some("a".into()),
        ..options()
    };
    let task = kube::spawn(client(&server).await, view.clone(), options);
    let s = tokio::time::timeout(WAIT, view.synced()).await.unwrap();
    assert!(s.get(&key("Mapping", "a", "one")).is_some());
    assert!(s.get(&key("Mapping", "b", "elsewhere")).is_none());
    assert!(server
        .requests()
        .iter()
        .all(|r| !r.contains("/mappings") || r.contains("/namespaces/a/")));
    task.abort();
}

fn compile(s: &Snapshot) -> Vec<(Key, Verdict)> {
    let (mut pipeline, _) = Pipeline::new(PipelineOptions::default());
    kube::verdicts(s, &pipeline.update(s.sources()).findings)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn findings_go_to_status_and_events_once() {
    let server = seeded().await;
    server.apply(json!({
        "apiVersion": "getambassador.io/v3alpha1", "kind": "Mapping",
        "metadata": {"name": "bad", "namespace": "a"},
        "spec": {"hostname": "*", "prefix": "/bad/", "service": "backend", "timout_ms": 5},
    }));
    server.apply(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "annotated", "namespace": "a", "annotations": {
            "getambassador.io/config": "apiVersion: getambassador.io/v2\nkind: Mapping\nname: ann\nprefix: /ann/\nservice: backend:http\n"
        }},
        "spec": {"ports": [{"port": 80}]},
    }));
    let view = View::new();
    let c = client(&server).await;
    let task = kube::spawn(c.clone(), view.clone(), options());
    let s = tokio::time::timeout(WAIT, view.synced()).await.unwrap();
    let reporter = Reporter::new(c, "getambassador.io/ambassador-webhook", "test-pod");

    let verdicts = compile(&s);
    let mut written = Vec::new();
    for (k, verdict) in &verdicts {
        let outcome = kube::report_status(&reporter, &s.get(k).unwrap(), verdict)
            .await
            .unwrap();
        match outcome {
            Reported::Status | Reported::Event => written.push((k.to_string(), outcome)),
            // EndpointSlices have no place for findings; the rest was already right.
            Reported::Unsupported => assert_eq!(k.kind, "EndpointSlice"),
            Reported::Unchanged => {}
        }
    }
    written.sort();
    assert_eq!(
        written,
        [
            ("a/Mapping/bad".to_string(), Reported::Status),
            ("a/Service/annotated".to_string(), Reported::Event),
        ]
    );
    let patches = server.status_patches();
    assert_eq!(patches.len(), 1, "{patches:?}");
    assert_eq!(
        patches[0].0,
        "/apis/getambassador.io/v3alpha1/namespaces/a/mappings/bad/status"
    );
    let reason = patches[0].1["status"]["reason"].as_str().unwrap();
    assert_eq!(patches[0].1["status"]["state"], "Error");
    assert!(reason.starts_with("AMB105 "), "{reason}");
    assert!(reason.contains("timout_ms"), "{reason}");
    assert!(reason.ends_with(":3)"), "{reason}");
    let events = server.events();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["regarding"]["name"], "annotated");
    assert_eq!(events[0]["type"], "Warning");
    assert_eq!(
        events[0]["reportingController"],
        "getambassador.io/ambassador-webhook"
    );

    // The status write comes back through the watch; the verdicts are the same, and
    // nothing is written again.
    let s = until(&view, "the status in the view", |s| {
        s.get(&key("Mapping", "a", "bad"))
            .is_some_and(|m| m["status"]["state"] == "Error")
    })
    .await;
    for (k, verdict) in compile(&s) {
        let shown = verdict.clone();
        let outcome = kube::report_status(&reporter, &s.get(&k).unwrap(), &verdict)
            .await
            .unwrap();
        assert!(
            matches!(outcome, Reported::Unchanged | Reported::Unsupported),
            "{k}: {outcome:?} {shown:?} {}",
            s.get(&k).unwrap()
        );
    }
    assert_eq!(server.status_patches().len(), 1);
    assert_eq!(server.events().len(), 1);

    // Fixed: the status says so once.
    server.apply(mapping("a", "bad", "/bad/"));
    let s = until(&view, "the fixed Mapping", |s| {
        s.get(&key("Mapping", "a", "bad"))
            .is_some_and(|m| m["spec"].get("timout_ms").is_none())
    })
    .await;
    let fixed = compile(&s)
        .into_iter()
        .find(|(k, _)| k.name == "bad")
        .unwrap();
    assert_eq!(fixed.1, Verdict::Valid);
    // The object as re-applied carries no status, and a valid object without status
    // needs none written; the reporter remembers it wrote an error, so it clears it.
    let outcome = kube::report_status(&reporter, &s.get(&fixed.0).unwrap(), &fixed.1)
        .await
        .unwrap();
    assert_eq!(outcome, Reported::Status);
    assert_eq!(
        server.status_patches()[1].1,
        json!({"status": {"state": "Ok", "reason": null}})
    );
    task.abort();
}

/// A Secret as the API server returns it: `data` in base64, with what the view must drop.
fn secret(ns: &str, name: &str, kind: &str, g: &Generated) -> Value {
    let b64 = |s: &str| ambassador_compiler::base64::encode(s.as_bytes());
    json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "namespace": ns, "labels": {"team": "shop"},
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{\"data\":{}}"}},
        "type": kind,
        "data": {"tls.crt": b64(&g.cert_pem), "tls.key": b64(&g.key_pem), "extra": b64("not for the view")},
    })
}

fn tls_host(ns: &str, name: &str, hostname: &str, secret: &str) -> Value {
    json!({
        "apiVersion": "getambassador.io/v3alpha1", "kind": "Host",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"hostname": hostname, "tlsSecret": {"name": secret}},
    })
}

fn cert(name: &str) -> Generated {
    certs::generate(&certs::Request {
        names: vec![name.to_owned()],
        valid_days: 2,
    })
    .unwrap()
}

/// The certificate chain and key of the SDS Secret `name`, if the snapshot serves it.
fn sds(snapshot: &ads::Snapshot, name: &str) -> Option<(String, String)> {
    use envoy_types::pb::envoy::config::core::v3::data_source::Specifier;
    use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{secret, Secret};
    let r = snapshot.get(type_url::SECRET, name)?;
    let s = <Secret as prost::Message>::decode(r.any().value.as_slice()).unwrap();
    let Some(secret::Type::TlsCertificate(c)) = s.r#type else {
        panic!("{name} is not a TLS certificate");
    };
    let text = |d: Option<envoy_types::pb::envoy::config::core::v3::DataSource>| match d
        .and_then(|d| d.specifier)
    {
        Some(Specifier::InlineBytes(b)) => String::from_utf8(b).unwrap(),
        other => panic!("not inline bytes: {}", other.is_some()),
    };
    Some((text(c.certificate_chain), text(c.private_key)))
}

async fn next_report(
    reports: &mut tokio::sync::mpsc::UnboundedReceiver<UpdateReport>,
    what: &str,
    mut f: impl FnMut(&UpdateReport) -> bool,
) -> UpdateReport {
    let found = tokio::time::timeout(WAIT, async {
        while let Some(r) = reports.recv().await {
            if f(&r) {
                return Some(r);
            }
        }
        None
    })
    .await;
    match found {
        Ok(Some(r)) => r,
        _ => panic!("no pipeline update with {what} within {WAIT:?}"),
    }
}

/// TLS Secrets reach the view (and nothing but what TLS uses of them), the pipeline serves
/// them over SDS for the Hosts that name them, an Opaque Secret is never read, a rotated
/// Secret is resent alone, and admission's input holds no Secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_secrets_reach_the_pipeline() {
    let server = ApiServer::start(Config::default()).await;
    let (shop, other, rotated) = (
        cert("shop.example.com"),
        cert("other.example.com"),
        cert("shop.example.com"),
    );
    server.apply(mapping("a", "app", "/app/"));
    server.apply(tls_host("a", "shop", "shop.example.com", "shop-cert"));
    server.apply(tls_host("a", "other", "other.example.com", "other-cert"));
    server.apply(secret("a", "shop-cert", "kubernetes.io/tls", &shop));
    // Holds a usable certificate, but is not of the TLS type: never read.
    server.apply(secret("a", "other-cert", "Opaque", &other));

    let view = View::new();
    let task = kube::spawn(client(&server).await, view.clone(), options());
    let (mut pipeline, mut snapshots) = Pipeline::new(PipelineOptions::default());
    let (tx, mut reports) = tokio::sync::mpsc::unbounded_channel();
    let mut feed = ViewFeed::new(&view);
    let follower = tokio::spawn(async move {
        let _ = follow(&mut pipeline, &mut feed, |r| {
            let _ = tx.send(r.clone());
        })
        .await;
    });

    let s = tokio::time::timeout(WAIT, view.synced()).await.unwrap();
    // Only name, namespace, type and the TLS keys of `data` are kept.
    let b64 = |s: &str| ambassador_compiler::base64::encode(s.as_bytes());
    assert_eq!(
        s.get(&Key::new("", "Secret", "a", "shop-cert")),
        Some(json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "shop-cert", "namespace": "a"},
            "type": "kubernetes.io/tls",
            "data": {"tls.crt": b64(&shop.cert_pem), "tls.key": b64(&shop.key_pem)},
        }))
    );
    assert!(s.get(&Key::new("", "Secret", "a", "other-cert")).is_none());
    // Every Secrets request asked the server for TLS Secrets only.
    let secret_requests: Vec<String> = server
        .requests()
        .into_iter()
        .filter(|r| r.contains("/secrets"))
        .collect();
    assert!(!secret_requests.is_empty());
    for r in &secret_requests {
        assert!(
            r.contains("fieldSelector=type%3Dkubernetes.io%2Ftls"),
            "a Secrets request without the field selector: {r}"
        );
    }
    // Admission compiles the view without its Secrets.
    let (_, origins) = s.compile_input();
    assert!(origins
        .iter()
        .all(|o| !matches!(o, Origin::Object(k) if k.kind == "Secret")));
    assert!(origins.len() < s.len());

    // The publisher serves the TLS Secret over SDS; the Host whose Secret is Opaque loses
    // its TLS, reported.
    let served = tokio::time::timeout(
        WAIT,
        snapshots.wait_for(|snap| sds(snap, "a/shop-cert").is_some()),
    )
    .await
    .expect("the SDS Secret of the Host `shop`")
    .unwrap()
    .clone();
    assert_eq!(
        sds(&served, "a/shop-cert"),
        Some((shop.cert_pem.clone(), shop.key_pem.clone()))
    );
    assert!(sds(&served, "a/other-cert").is_none());
    assert_eq!(served.resources(type_url::SECRET).len(), 1);
    let report = next_report(&mut reports, "the SDS Secret", |r| {
        r.changes.iter().any(|c| c.type_url == type_url::SECRET)
    })
    .await;
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.code == "AMB417" && f.object.as_ref().is_some_and(|o| o.name == "other")),
        "{:#?}",
        report.findings
    );

    // Rotation: the updated Secret is resent, and nothing else.
    server.apply(secret("a", "shop-cert", "kubernetes.io/tls", &rotated));
    let report = next_report(&mut reports, "the rotated Secret", |r| {
        r.changes.iter().any(|c| c.type_url == type_url::SECRET)
    })
    .await;
    assert_eq!(
        report.changes,
        [Change {
            type_url: type_url::SECRET,
            name: "a/shop-cert".into(),
            kind: ChangeKind::Changed,
        }]
    );
    let now = snapshots.borrow_and_update().clone();
    assert_eq!(
        sds(&now, "a/shop-cert"),
        Some((rotated.cert_pem.clone(), rotated.key_pem.clone()))
    );

    // Deleted: no longer served, the Host's TLS left out.
    server.delete("v1", "Secret", "a", "shop-cert");
    let report = next_report(&mut reports, "the deleted Secret", |r| {
        r.changes.iter().any(|c| c.type_url == type_url::SECRET)
    })
    .await;
    assert!(report.changes.iter().any(|c| c.type_url == type_url::SECRET
        && c.name == "a/shop-cert"
        && c.kind == ChangeKind::Removed));
    follower.abort();
    task.abort();
}

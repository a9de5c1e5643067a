use serde_json::json;

use super::*;

fn mapping(ns: &str, name: &str, prefix: &str) -> Value {
    json!({
        "apiVersion": "getambassador.io/v3alpha1",
        "kind": "Mapping",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"prefix": prefix, "service": "s", "hostname": "*"},
    })
}

#[test]
fn keys_ignore_the_version() {
    let a = Key::of(&mapping("n", "m", "/")).unwrap();
    let mut v2 = mapping("n", "m", "/");
    v2["apiVersion"] = "getambassador.io/v2".into();
    assert_eq!(Key::of(&v2).unwrap(), a);
    assert_eq!(a.source_name(), "cluster:n/Mapping/m");
    let svc =
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s", "namespace": "n"}});
    assert_eq!(Key::of(&svc).unwrap().group, "");
    assert!(Key::of(&json!({"kind": "Service"})).is_none());
}

#[test]
fn unchanged_batches_wake_nobody() {
    let view = View::new();
    let mut rx = view.subscribe();
    assert!(view.update(|b| {
        b.upsert(mapping("n", "a", "/a/"));
    }));
    assert!(rx.has_changed().unwrap());
    let first = rx.borrow_and_update().clone();
    assert_eq!(first.generation(), 1);
    // The same object again changes nothing.
    assert!(!view.update(|b| {
        b.upsert(mapping("n", "a", "/a/"));
    }));
    assert!(!rx.has_changed().unwrap());
    assert_eq!(view.snapshot().generation(), 1);
}

#[test]
fn snapshots_do_not_see_later_changes() {
    let view = View::new();
    view.update(|b| {
        b.upsert(mapping("n", "a", "/a/"));
    });
    let old = view.snapshot();
    view.update(|b| {
        b.upsert(mapping("n", "a", "/changed/"));
        b.upsert(mapping("n", "b", "/b/"));
    });
    let key = Key::new("getambassador.io", "Mapping", "n", "a");
    assert_eq!(old.get(&key).unwrap()["spec"]["prefix"], "/a/");
    assert_eq!(old.len(), 1);
    let new = view.snapshot();
    assert_eq!(new.get(&key).unwrap()["spec"]["prefix"], "/changed/");
    assert_eq!(new.len(), 2);
    assert_eq!(new.generation(), 2);
}

#[test]
fn replace_kind_removes_what_a_relist_no_longer_has() {
    let view = View::new();
    let svc =
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s", "namespace": "n"}});
    view.update(|b| {
        b.upsert(mapping("n", "a", "/a/"));
        b.upsert(mapping("n", "b", "/b/"));
        b.upsert(svc.clone());
    });
    view.update(|b| {
        b.replace_kind(
            "getambassador.io",
            "Mapping",
            vec![mapping("n", "b", "/b2/")],
        )
    });
    let s = view.snapshot();
    let names: Vec<String> = s.objects().map(|(k, _)| k.to_string()).collect();
    // Key order: the core group ("") sorts first.
    assert_eq!(names, ["n/Service/s", "n/Mapping/b"]);
}

#[test]
fn sources_render_objects_as_yaml_after_files() {
    let view = View::new();
    let mut svc = json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "s", "namespace": "n",
            "annotations": {"getambassador.io/config": "apiVersion: getambassador.io/v2\nkind: Mapping\nname: m\nprefix: /m/\nservice: s\n"}}});
    svc["spec"] = json!({"ports": [{"port": 80}]});
    view.update(|b| {
        b.upsert(svc);
        b.set_file("/etc/a.yaml", "kind: Foo\n");
    });
    let sources = view.snapshot().sources();
    assert_eq!(&*sources[0].0, "/etc/a.yaml");
    assert_eq!(&*sources[1].0, "cluster:n/Service/s");
    assert!(
        sources[1]
            .1
            .contains("    getambassador.io/config: |\n      apiVersion: getambassador.io/v2\n"),
        "{}",
        sources[1].1
    );
    let (compiler_sources, origins) = view.snapshot().compile_input();
    assert_eq!(compiler_sources.len(), 2);
    assert_eq!(origins[0], Origin::File("/etc/a.yaml".into()));
    assert_eq!(
        origins[1],
        Origin::Object(Key::new("", "Service", "n", "s"))
    );
}

#[test]
fn findings_land_on_their_object() {
    let view = View::new();
    let mut bad = mapping("n", "bad", "/b/");
    bad["spec"]["timout_ms"] = json!(5);
    view.update(|b| {
        b.upsert(mapping("n", "good", "/g/"));
        b.upsert(bad);
    });
    let snapshot = view.snapshot();
    let (mut pipeline, _) = crate::pipeline::Pipeline::new(Default::default());
    let report = pipeline.update(snapshot.sources());
    let verdicts = kube::verdicts(&snapshot, &report.findings);
    assert_eq!(verdicts.len(), 2);
    let (key, verdict) = &verdicts[0];
    assert_eq!(key.name, "bad");
    let kube::Verdict::Invalid(reason) = verdict else {
        panic!("expected an error for `bad`, got {verdict:?}")
    };
    assert!(reason.starts_with("AMB105 "), "{reason}");
    // `timout_ms` is the last line of the rendered object.
    assert!(reason.contains("timout_ms"), "{reason}");
    assert!(reason.ends_with(":3)"), "{reason}");
    assert_eq!(verdicts[1].1, kube::Verdict::Valid);
}

#[test]
fn counts_by_kind_feed_the_gauge() {
    let view = View::new();
    view.update(|b| {
        b.upsert(mapping("n", "a", "/a/"));
        b.upsert(mapping("m", "a", "/a/"));
    });
    let s = view.snapshot();
    assert_eq!(s.counts_by_kind().get("Mapping"), Some(&2));
}

#[tokio::test]
async fn waiting_for_sync() {
    let view = View::new();
    let waiter = {
        let view = view.clone();
        tokio::spawn(async move { view.synced().await.generation() })
    };
    tokio::task::yield_now().await;
    view.update(|b| {
        b.upsert(mapping("n", "a", "/a/"));
        b.set_synced();
    });
    let generation = tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
        .await
        .expect("synced within 5 s")
        .unwrap();
    assert_eq!(generation, 1);
}

#[tokio::test]
async fn health_follows_the_view() {
    let view = View::new();
    let readiness = crate::server::Readiness::new();
    let metrics = Arc::new(crate::metrics::Metrics::new());
    let task = publish_health(&view, readiness.clone(), metrics.clone());
    view.update(|b| {
        b.upsert(mapping("n", "a", "/a/"));
    });
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert!(!readiness.is_ready(), "ready before the view synced");
    assert!(metrics
        .render()
        .contains("ambassador_watched_objects{kind=\"Mapping\"} 1\n"));
    view.update(|b| {
        b.remove(&Key::new("getambassador.io", "Mapping", "n", "a"));
        b.set_synced();
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !readiness.is_ready() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(readiness.is_ready());
    assert!(metrics
        .render()
        .contains("ambassador_watched_objects{kind=\"Mapping\"} 0\n"));
    task.abort();
}

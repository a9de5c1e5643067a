use std::sync::Arc;

use super::*;

fn mapping(name: &str, prefix: &str, service: &str) -> String {
    format!(
        "apiVersion: getambassador.io/v3alpha1\nkind: Mapping\nmetadata:\n  name: {name}\nspec:\n  hostname: \"*\"\n  prefix: {prefix}\n  service: {service}\n"
    )
}

fn sources(files: &[(&str, String)]) -> Vec<(String, String)> {
    files
        .iter()
        .map(|(n, t)| ((*n).to_owned(), t.clone()))
        .collect()
}

fn options() -> PipelineOptions {
    PipelineOptions::default().listen("127.0.0.1", 18080)
}

#[test]
fn first_update_publishes_and_unchanged_texts_compile_nothing() {
    let (mut p, rx) = Pipeline::new(options());
    let files = sources(&[
        ("a.yaml", mapping("a", "/a/", "127.0.0.1:9001")),
        ("b.yaml", mapping("b", "/b/", "127.0.0.1:9002")),
    ]);
    let first = p.update(files.clone());
    assert!(first.compiled && first.published, "{first:?}");
    assert_eq!(first.files_read, 2);
    assert_eq!(first.errors().count(), 0, "{:?}", first.findings);
    let snap = rx.borrow().clone();
    assert_eq!(snap.resources(type_url::LISTENER).len(), 1);
    assert_eq!(snap.resources(type_url::ROUTE).len(), 1);
    assert_eq!(snap.resources(type_url::CLUSTER).len(), 2);

    let again = p.update(files);
    assert!(!again.compiled && !again.published, "{again:?}");
    assert_eq!(again.files_read, 0);
    assert!(Arc::ptr_eq(&snap, &rx.borrow()));
}

#[test]
fn a_change_to_one_mapping_shares_everything_else() {
    let (mut p, rx) = Pipeline::new(options());
    p.update(sources(&[
        ("a.yaml", mapping("a", "/a/", "127.0.0.1:9001")),
        ("b.yaml", mapping("b", "/b/", "127.0.0.1:9002")),
    ]));
    let before = rx.borrow().clone();
    let r = p.update(sources(&[
        ("a.yaml", mapping("a", "/a/", "127.0.0.1:9001")),
        ("b.yaml", mapping("b", "/b/", "127.0.0.1:9003")),
    ]));
    assert!(r.published);
    assert_eq!(r.files_read, 1, "only the edited file is read again");
    let after = rx.borrow().clone();
    let listener = |s: &Snapshot| s.resources(type_url::LISTENER).values().next().cloned();
    assert!(Arc::ptr_eq(
        &listener(&before).unwrap(),
        &listener(&after).unwrap()
    ));
    let kinds: Vec<(&str, ChangeKind)> = r
        .changes
        .iter()
        .map(|c| (c.type_url.rsplit('.').next().unwrap(), c.kind))
        .collect();
    assert_eq!(
        kinds,
        // In type, then name order: `..._9002` went, `..._9003` came.
        [
            ("Cluster", ChangeKind::Removed),
            ("Cluster", ChangeKind::Added),
            ("RouteConfiguration", ChangeKind::Changed)
        ],
        "{:?}",
        r.changes
    );
    let unchanged: Vec<_> = before
        .resources(type_url::CLUSTER)
        .iter()
        .filter(|(name, old)| {
            after
                .get(type_url::CLUSTER, name)
                .is_some_and(|new| Arc::ptr_eq(old, new))
        })
        .collect();
    assert_eq!(unchanged.len(), 1);
}

#[test]
fn objects_with_errors_are_left_out_and_reported_with_positions() {
    let (mut p, rx) = Pipeline::new(options());
    let bad = "apiVersion: getambassador.io/v3alpha1\nkind: Mapping\nmetadata:\n  name: bad\nspec:\n  hostname: \"*\"\n  prefix: /bad/\n  service: 127.0.0.1:99999\n";
    let r = p.update(sources(&[
        ("good.yaml", mapping("good", "/good/", "127.0.0.1:9001")),
        ("bad.yaml", bad.to_owned()),
    ]));
    let errors: Vec<&Finding> = r.errors().collect();
    assert_eq!(errors.len(), 1, "{:?}", r.findings);
    let e = errors[0];
    assert_eq!(e.code, "AMB205");
    assert_eq!(e.file.as_deref(), Some("bad.yaml"));
    assert_eq!(e.line, Some(8));
    assert_eq!(e.object.as_ref().map(|o| o.name.as_str()), Some("bad"));
    assert!(e.to_string().starts_with("bad.yaml:8:"), "{e}");
    // The good Mapping is served regardless.
    let snap = rx.borrow().clone();
    assert_eq!(snap.resources(type_url::CLUSTER).len(), 1);
}

#[test]
fn positions_stay_right_when_other_files_change() {
    let (mut p, _rx) = Pipeline::new(options());
    let bad = "# one\n# two\napiVersion: getambassador.io/v3alpha1\nkind: Mapping\nmetadata:\n  name: bad\nspec:\n  hostname: \"*\"\n  prefix: nope\n  service: 127.0.0.1:9\n";
    let first = p.update(sources(&[
        ("a.yaml", mapping("a", "/a/", "127.0.0.1:9001")),
        ("bad.yaml", bad.to_owned()),
    ]));
    let before: Vec<String> = first.errors().map(ToString::to_string).collect();
    assert_eq!(before.len(), 1, "{:?}", first.findings);
    for port in 9100..9110 {
        let r = p.update(sources(&[
            ("a.yaml", mapping("a", "/a/", &format!("127.0.0.1:{port}"))),
            ("bad.yaml", bad.to_owned()),
        ]));
        assert_eq!(r.files_read, 1);
        let now: Vec<String> = r.errors().map(ToString::to_string).collect();
        assert_eq!(now, before);
    }
}

#[test]
fn duplicates_follow_input_order() {
    let (mut p, rx) = Pipeline::new(options());
    let one = mapping("same", "/x/", "127.0.0.1:9001");
    let two = mapping("same", "/x/", "127.0.0.1:9002");
    p.update(sources(&[("1.yaml", one.clone()), ("2.yaml", two.clone())]));
    let clusters = |rx: &watch::Receiver<Arc<Snapshot>>| -> Vec<String> {
        rx.borrow()
            .resources(type_url::CLUSTER)
            .keys()
            .cloned()
            .collect()
    };
    let first = clusters(&rx);
    p.update(sources(&[("2.yaml", two), ("1.yaml", one)]));
    let second = clusters(&rx);
    assert_eq!(first.len(), 1);
    assert_ne!(first, second, "the later file wins, whichever it is");
}

#[test]
fn removed_files_are_removed_and_compaction_keeps_results() {
    let (mut p, rx) = Pipeline::new(options());
    let padding = format!("# {}\n", "x".repeat(1 << 20));
    let a = format!("{padding}{}", mapping("a", "/a/", "127.0.0.1:9001"));
    for i in 0..12 {
        let b = format!("# {i}\n{}", mapping("b", "/b/", "127.0.0.1:9002"));
        let r = p.update(sources(&[("a.yaml", a.clone()), ("b.yaml", b)]));
        assert_eq!(r.errors().count(), 0);
    }
    assert_eq!(rx.borrow().resources(type_url::CLUSTER).len(), 2);
    let r = p.update(sources(&[("a.yaml", a)]));
    assert!(r.published);
    assert_eq!(rx.borrow().resources(type_url::CLUSTER).len(), 1);
    assert!(r.changes.iter().any(|c| c.kind == ChangeKind::Removed));
}

#[test]
fn eds_endpoints_come_from_the_manifests() {
    let (mut p, rx) = Pipeline::new(options());
    let text = r#"apiVersion: v1
kind: Service
metadata:
  name: echo
  namespace: default
  annotations:
    getambassador.io/config: |
      apiVersion: getambassador.io/v2
      kind: Mapping
      name: echo
      prefix: /echo/
      service: echo:80
      resolver: kubernetes-endpoint
spec:
  ports:
  - port: 80
    targetPort: 8080
---
apiVersion: v1
kind: Endpoints
metadata:
  name: echo
  namespace: default
subsets:
- addresses:
  - ip: 127.0.0.1
  ports:
  - port: 9005
"#;
    let r = p.update(sources(&[("echo.yaml", text.to_owned())]));
    assert_eq!(r.errors().count(), 0, "{:?}", r.findings);
    let snap = rx.borrow().clone();
    let eds = snap.resources(type_url::ENDPOINT);
    assert_eq!(eds.len(), 1);
    let (name, res) = eds.iter().next().unwrap();
    assert_eq!(name, "default/echo:80");
    let cla = <envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment as prost::Message>::decode(
        res.any().value.as_slice(),
    )
    .unwrap();
    assert_eq!(cla.endpoints[0].lb_endpoints.len(), 1);
}

#[test]
fn extra_resources_are_added_and_removed() {
    let (mut p, rx) = Pipeline::new(options());
    let files = sources(&[("a.yaml", mapping("a", "/a/", "127.0.0.1:9001"))]);
    p.update(files.clone());
    p.set_extra(vec![Resource::new(
        "extra",
        envoy_types::pb::google::protobuf::Any {
            type_url: type_url::ROUTE.to_owned(),
            value: Vec::new(),
        },
    )]);
    let r = p.update(files.clone());
    assert!(r.published);
    assert_eq!(r.changes.len(), 1, "{:?}", r.changes);
    assert!(rx.borrow().get(type_url::ROUTE, "extra").is_some());
    p.set_extra(Vec::new());
    let r = p.update(files);
    assert_eq!(r.changes.len(), 1, "{:?}", r.changes);
    assert_eq!(r.changes[0].kind, ChangeKind::Removed);
    assert!(rx.borrow().get(type_url::ROUTE, "extra").is_none());
}

#[test]
fn a_misconfigured_auth_service_is_reported_as_refusing_until_fixed() {
    let (mut p, rx) = Pipeline::new(options());
    let auth = |extra: &str| {
        format!(
            "apiVersion: getambassador.io/v3alpha1\nkind: AuthService\nmetadata:\n  name: auth\n  namespace: default\nspec:\n  auth_service: 127.0.0.1:9100\n{extra}"
        )
    };
    let files = |extra: &str| {
        sources(&[
            ("a.yaml", mapping("a", "/a/", "127.0.0.1:9001")),
            ("auth.yaml", auth(extra)),
        ])
    };
    // gRPC without `protocol_version: v3`: an error, and the configuration refuses.
    let broken = p.update(files("  proto: grpc\n"));
    assert!(broken.published);
    assert_eq!(broken.auth_refusing, vec!["default/auth".to_owned()]);
    assert!(
        broken.errors().any(|f| f.code == "AMB502"),
        "{:?}",
        broken.findings
    );
    let listener = |rx: &tokio::sync::watch::Receiver<Arc<Snapshot>>| {
        let snap = rx.borrow().clone();
        let l = snap
            .resources(type_url::LISTENER)
            .values()
            .next()
            .cloned()
            .unwrap();
        l.any().value.clone()
    };
    let refusing = listener(&rx);
    // The listener carries the ext_authz filter (its name is in the encoded bytes).
    let has = |bytes: &[u8], s: &str| bytes.windows(s.len()).any(|w| w == s.as_bytes());
    assert!(has(&refusing, "envoy.filters.http.ext_authz"));
    assert!(has(&refusing, "ambassador.auth.misconfigured"));

    // Nothing changed: still said.
    let again = p.update(files("  proto: grpc\n"));
    assert!(!again.compiled);
    assert_eq!(again.auth_refusing, vec!["default/auth".to_owned()]);

    // Fixed: no longer refusing, and the filter now checks.
    let fixed = p.update(files("  proto: grpc\n  protocol_version: v3\n"));
    assert!(fixed.auth_refusing.is_empty());
    let checking = listener(&rx);
    assert!(has(&checking, "envoy.filters.http.ext_authz"));
    assert!(!has(&checking, "ambassador.auth.misconfigured"));
}

//! The compiler-backed validator over real TLS: lint passes on an object if and only if the
//! webhook admits it (findings another object can settle aside), and conflicts with the
//! watched view are warnings (or denials).

use std::path::Path;

use ambassador_compiler::admission::{awaits_others, is_ambassador_object};
use ambassador_compiler::diag::Severity;
use ambassador_compiler::source::Sources;
use ambassador_webhook::validator::CompilerValidator;
use serde_json::{json, Value};

use crate::support::*;

/// Every Ambassador object of `examples/`, as `(its YAML text, its JSON)`.
fn example_objects() -> Vec<(String, String, Value)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut out = Vec::new();
    let mut files = Vec::new();
    for dir in ["good", "broken"] {
        for e in std::fs::read_dir(root.join(dir)).unwrap().flatten() {
            files.push(e.path());
        }
    }
    files.sort();
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        for doc in serde_yaml_ng::Deserializer::from_str(&text) {
            let Ok(v) = <Value as serde::Deserialize>::deserialize(doc) else {
                continue;
            };
            let items = if v["kind"] == "List" {
                v["items"].as_array().cloned().unwrap_or_default()
            } else {
                vec![v]
            };
            for item in items {
                if item.is_object() && is_ambassador_object(&item) {
                    let yaml = serde_yaml_ng::to_string(&item).unwrap();
                    out.push((path.display().to_string(), yaml, item));
                }
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lint_passes_on_an_object_if_and_only_if_the_webhook_admits_it() {
    let server = TestServer::start_with(CompilerValidator::new("default"), test_limits()).await;
    let objects = example_objects();
    assert!(
        objects.len() >= 20,
        "examples hold at least 20 Ambassador objects"
    );
    let (mut admitted, mut denied) = (0, 0);
    for (i, (file, yaml, obj)) in objects.iter().enumerate() {
        let lint = ambassador_compiler::compile_one("object.yaml", yaml);
        // A finding another object can settle (an undefined reference, a canary group not
        // complete yet) does not deny: the object may be waiting for one not applied yet.
        let lint_passes = !lint
            .diagnostics
            .iter()
            .any(|d| d.severity == Severity::Error && !awaits_others(d.code));
        let reply = server
            .post_review(&review(
                &format!("uid-{i}"),
                "CREATE",
                obj.clone(),
                Value::Null,
            ))
            .await;
        let body = reply.json();
        let allowed = body["response"]["allowed"].as_bool().unwrap();
        assert_eq!(
            allowed,
            lint_passes,
            "{file}: {}\nlint: {:?}\nwebhook: {body}",
            obj["metadata"]["name"],
            lint.diagnostics
                .iter()
                .map(|d| d.code.as_str())
                .collect::<Vec<_>>()
        );
        if allowed {
            admitted += 1;
        } else {
            denied += 1;
        }
    }
    assert!(
        admitted >= 5 && denied >= 5,
        "admitted {admitted}, denied {denied}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denial_names_the_object_field_position_and_code() {
    let server = TestServer::start_with(CompilerValidator::new("default"), test_limits()).await;
    let annotation = "---\napiVersion: getambassador.io/v2\nkind: Mapping\nname: billing\nprefix: /billing/\nservice: billing:8080\ntimout_ms: 10000\n";
    let obj = service("billing", Some(annotation));
    let body = server
        .post_review(&review("u", "CREATE", obj, Value::Null))
        .await
        .json();
    assert_eq!(body["response"]["allowed"], false);
    let message = body["response"]["status"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("Service default/billing: 1 error"),
        "{message}"
    );
    assert!(
        message.contains("timout_ms at 7:1: [AMB105] unknown field `timout_ms` in Mapping; did you mean `timeout_ms`?"),
        "{message}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicts_with_the_view_warn_by_default_and_deny_when_asked() {
    let view = {
        let mut s = Sources::new();
        s.add(
            "cluster",
            "apiVersion: getambassador.io/v3alpha1\nkind: Mapping\nmetadata: {name: api, namespace: default}\nspec: {hostname: '*', prefix: /api/, service: api}\n",
        );
        s
    };
    let candidate = json!({
        "apiVersion": "getambassador.io/v3alpha1", "kind": "Mapping",
        "metadata": {"name": "api-two", "namespace": "default"},
        "spec": {"hostname": "*", "prefix": "/api/", "service": "api-two"}
    });
    for reject in [false, true] {
        let validator = CompilerValidator::new("default").reject_conflicts(reject);
        validator.set_view(&view);
        assert_eq!(validator.view_size(), 1);
        let server = TestServer::start_with(validator, test_limits()).await;
        let body = server
            .post_review(&review("u", "CREATE", candidate.clone(), Value::Null))
            .await
            .json();
        let response = &body["response"];
        assert_eq!(response["allowed"], !reject, "{body}");
        let text = if reject {
            response["status"]["message"].to_string()
        } else {
            response["warnings"].to_string()
        };
        assert!(text.contains("AMB307"), "{text}");
        server.stop().await;
    }
}

/// A watched directory feeds the validator: not ready before the first synced view, and a
/// Mapping written later is seen by the next review.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watched_directory_feeds_the_validator() {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use ambassador_webhook::run::{self, Source};

    let dir = TempDir::new("view");
    std::fs::write(
        dir.path().join("api.yaml"),
        "apiVersion: getambassador.io/v3alpha1\nkind: Mapping\nmetadata: {name: api, namespace: default}\nspec: {hostname: '*', prefix: /api/, service: api}\n",
    )
    .unwrap();
    let validator = Arc::new(CompilerValidator::new("default"));
    let server = TestServer::start_with(Arc::clone(&validator), test_limits()).await;
    server.readiness.set_ready(false);
    let source = Source::Dir {
        path: dir.path().to_path_buf(),
        recursive: false,
        debounce: Duration::from_millis(10),
    };
    let running = run::start(&source).await.unwrap();
    let _feed = run::feed_validator(
        &running.view,
        Arc::clone(&validator),
        server.readiness.clone(),
        Arc::clone(&server.metrics),
        None,
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server.readiness.is_ready() {
        assert!(Instant::now() < deadline, "not ready after the view synced");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(validator.view_size(), 1);

    let candidate = json!({
        "apiVersion": "getambassador.io/v3alpha1", "kind": "Mapping",
        "metadata": {"name": "late", "namespace": "default"},
        "spec": {"hostname": "*", "prefix": "/late/", "service": "late"}
    });
    // Another object with the same name arrives in the directory: the review now warns.
    std::fs::write(
        dir.path().join("late.yaml"),
        "apiVersion: getambassador.io/v3alpha1\nkind: Mapping\nmetadata: {name: late, namespace: other}\nspec: {hostname: '*', prefix: /late/, service: late.other}\n",
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let body = server
            .post_review(&review("u", "CREATE", candidate.clone(), Value::Null))
            .await
            .json();
        if body["response"]["warnings"].to_string().contains("AMB307") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new file never reached the validator: {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.stop().await;
}

/// A canary Service joining a route another Service serves is judged with its whole group.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_service_joining_a_route_of_the_view_is_admitted() {
    let view = {
        let mut s = Sources::new();
        s.add(
            "cluster",
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: checkout\n  namespace: shop\n  annotations:\n    getambassador.io/config: |\n      apiVersion: getambassador.io/v3alpha1\n      kind: Mapping\n      name: checkout\n      hostname: \"*\"\n      prefix: /checkout/\n      service: checkout.shop:80\nspec:\n  ports:\n  - port: 80\n",
        );
        s
    };
    let validator = CompilerValidator::new("default");
    validator.set_view(&view);
    let server = TestServer::start_with(validator, test_limits()).await;
    let annotation = "apiVersion: getambassador.io/v3alpha1\nkind: Mapping\nname: checkout-v2\nhostname: \"*\"\nprefix: /checkout/\nservice: checkout-v2.shop:80\nweight: 10\n";
    let mut canary = service("checkout-v2", Some(annotation));
    canary["metadata"]["namespace"] = json!("shop");
    let body = server
        .post_review(&review("u", "CREATE", canary, Value::Null))
        .await
        .json();
    assert_eq!(body["response"]["allowed"], true, "{body}");
    server.stop().await;
}

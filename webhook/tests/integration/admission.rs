//! AdmissionReviews of the real shape, answered over TLS.

use std::time::Duration;

use ambassador_webhook::metrics::RequestVerdict;
use http::StatusCode;
use serde_json::{json, Value};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mapping_of_each_version_is_denied_or_admitted() {
    let server = TestServer::start().await;
    for version in ["v2", "v3alpha1"] {
        let reply = server
            .post_review(&review(
                "uid-bad",
                "CREATE",
                mapping(version, "quote", "quote/"),
                Value::Null,
            ))
            .await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.headers["content-type"], "application/json");
        let body = reply.json();
        assert_eq!(body["apiVersion"], "admission.k8s.io/v1");
        assert_eq!(body["kind"], "AdmissionReview");
        assert_eq!(body["response"]["uid"], "uid-bad");
        assert_eq!(body["response"]["allowed"], false, "{version}");
        assert_eq!(body["response"]["status"]["code"], 422);
        assert_eq!(
            body["response"]["status"]["message"],
            "Mapping default/quote: 1 error\n  spec.prefix: [E0101] `prefix` must start with `/`"
        );

        let reply = server
            .post_review(&review(
                "uid-ok",
                "CREATE",
                mapping(version, "quote", "/quote/"),
                Value::Null,
            ))
            .await;
        let body = reply.json();
        assert_eq!(body["response"]["uid"], "uid-ok");
        assert_eq!(body["response"]["allowed"], true, "{version}");
        assert!(body["response"].get("status").is_none());
        assert!(body["response"].get("warnings").is_none());
    }
    assert_eq!(server.metrics.requests(RequestVerdict::Denied), 2);
    assert_eq!(server.metrics.requests(RequestVerdict::Allowed), 2);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn annotated_service_errors_point_into_the_annotation() {
    let server = TestServer::start().await;
    let annotation = "---\napiVersion: getambassador.io/v2\nkind: Mapping\nname: quote\nprefix: quote/\nservice: quote\n";
    let reply = server
        .post_review(&review(
            "u1",
            "CREATE",
            service("quote", Some(annotation)),
            Value::Null,
        ))
        .await;
    let body = reply.json();
    assert_eq!(body["response"]["allowed"], false);
    assert_eq!(
        body["response"]["status"]["message"],
        "Service default/quote: 1 error in annotation `getambassador.io/config`\n  prefix at 5:9: [E0101] `prefix` must start with `/`"
    );

    // Warnings only: admitted, one warning line naming the object.
    let annotation = "apiVersion: getambassador.io/v2\nkind: Mapping\nname: quote\nprefix: /quote/\nservice: quote\ntimout_ms: 10\n";
    let body = server
        .post_review(&review(
            "u2",
            "CREATE",
            service("quote", Some(annotation)),
            Value::Null,
        ))
        .await
        .json();
    assert_eq!(body["response"]["allowed"], true);
    assert_eq!(
        body["response"]["warnings"],
        json!(["Service default/quote: timout_ms at 6:1: [W0001] unknown field `timout_ms`; did you mean `timeout_ms`?"])
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_scope_requests_are_admitted_without_validation() {
    let server = TestServer::start().await;
    // A Service without the annotation: the validator would reject nothing here
    // anyway, so check the verdict counter to see it was skipped.
    let body = server
        .post_review(&review("s1", "CREATE", service("plain", None), Value::Null))
        .await
        .json();
    assert_eq!(body["response"], json!({"uid": "s1", "allowed": true}));

    // DELETE of a broken Mapping: object is null, oldObject holds it.
    let body = server
        .post_review(&review(
            "d1",
            "DELETE",
            Value::Null,
            mapping("v3alpha1", "quote", "broken"),
        ))
        .await
        .json();
    assert_eq!(body["response"], json!({"uid": "d1", "allowed": true}));

    // An object of another group that happens to have a bad `prefix`.
    let mut other = mapping("v1", "x", "broken");
    other["apiVersion"] = json!("example.com/v1");
    let body = server
        .post_review(&review("o1", "CREATE", other, Value::Null))
        .await
        .json();
    assert_eq!(body["response"]["allowed"], true);

    assert_eq!(server.metrics.requests(RequestVerdict::Skipped), 3);
    assert_eq!(server.metrics.requests(RequestVerdict::Allowed), 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_with_old_object_denies_only_new_errors() {
    let server = TestServer::start().await;
    let body = server
        .post_review(&review(
            "up1",
            "UPDATE",
            mapping("v3alpha1", "quote", "broken"),
            mapping("v3alpha1", "quote", "/fine/"),
        ))
        .await
        .json();
    assert_eq!(body["response"]["allowed"], false);

    let mut relabelled = mapping("v3alpha1", "quote", "broken");
    relabelled["metadata"]["labels"] = json!({"team": "a"});
    let body = server
        .post_review(&review(
            "up2",
            "UPDATE",
            relabelled,
            mapping("v3alpha1", "quote", "broken"),
        ))
        .await
        .json();
    assert_eq!(body["response"]["allowed"], true);
    let warning = body["response"]["warnings"][0].as_str().unwrap();
    assert!(
        warning.starts_with("Mapping default/quote: spec.prefix: [E0101]"),
        "{warning}"
    );
    assert!(warning.len() < 120);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_is_answered_exactly_like_a_real_request() {
    let server = TestServer::start().await;
    let real = review(
        "dr",
        "CREATE",
        mapping("v3alpha1", "quote", "broken"),
        Value::Null,
    );
    let mut dry = real.clone();
    dry["request"]["dryRun"] = json!(true);
    let a = server.post_review(&real).await;
    let b = server.post_review(&dry).await;
    assert_eq!(a.status, b.status);
    assert_eq!(a.json(), b.json());
    assert_eq!(b.json()["response"]["allowed"], false);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_reviews_get_400_with_a_clear_message() {
    let server = TestServer::start().await;
    let good = review("m", "CREATE", mapping("v2", "quote", "/q/"), Value::Null);
    let mut wrong_version = good.clone();
    wrong_version["apiVersion"] = json!("admission.k8s.io/v1beta1");
    let mut no_uid = good.clone();
    no_uid["request"].as_object_mut().unwrap().remove("uid");
    let mut no_request = good.clone();
    no_request.as_object_mut().unwrap().remove("request");
    let mut wrong_kind = good.clone();
    wrong_kind["kind"] = json!("ConversionReview");
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"{\"apiVersion\": ".to_vec(), "not a valid AdmissionReview"),
        (b"".to_vec(), "not a valid AdmissionReview"),
        (
            serde_json::to_vec(&wrong_version).unwrap(),
            "apiVersion must be `admission.k8s.io/v1`",
        ),
        (
            serde_json::to_vec(&wrong_kind).unwrap(),
            "kind must be `AdmissionReview`",
        ),
        (
            serde_json::to_vec(&no_uid).unwrap(),
            "`request.uid` is missing",
        ),
        (serde_json::to_vec(&no_request).unwrap(), "has no `request`"),
    ];
    for (body, expected) in cases {
        let reply = server.request("POST", "/validate", body).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text());
        assert!(
            reply.text().contains(expected),
            "{:?} lacks {expected:?}",
            reply.text()
        );
    }
    assert_eq!(server.metrics.requests(RequestVerdict::Malformed), 6);
    // The server is unaffected.
    assert_eq!(
        server.post_review(&good).await.json()["response"]["allowed"],
        true
    );

    assert_eq!(
        server.request("GET", "/validate", Vec::new()).await.status,
        StatusCode::METHOD_NOT_ALLOWED
    );
    assert_eq!(
        server.request("GET", "/nope", Vec::new()).await.status,
        StatusCode::NOT_FOUND
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_validator_fails_only_its_own_request() {
    let server = TestServer::start().await;
    let panicking = review(
        "p",
        "CREATE",
        mapping("v3alpha1", "panic", "/x/"),
        Value::Null,
    );
    let fine = review(
        "f",
        "CREATE",
        mapping("v3alpha1", "fine", "/x/"),
        Value::Null,
    );
    let (bad, good) = tokio::join!(server.post_review(&panicking), server.post_review(&fine));
    assert_eq!(bad.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(bad.text().contains("validator failed"));
    assert_eq!(good.status, StatusCode::OK);
    assert_eq!(good.json()["response"]["uid"], "f");
    // Still serving afterwards, on a connection opened after the panic.
    assert_eq!(server.post_review(&fine).await.status, StatusCode::OK);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_and_metrics() {
    let server = TestServer::start().await;
    let health = server.request("GET", "/healthz", Vec::new()).await;
    assert_eq!(health.status, StatusCode::OK);

    let ready = server.request("GET", "/readyz", Vec::new()).await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    server.readiness.set_ready(true);
    assert_eq!(
        server.request("GET", "/readyz", Vec::new()).await.status,
        StatusCode::OK
    );

    server
        .post_review(&review(
            "x",
            "CREATE",
            mapping("v2", "q", "bad"),
            Value::Null,
        ))
        .await;
    server.metrics.set_view_size("Mapping", 42);
    let metrics = server.request("GET", "/metrics", Vec::new()).await;
    assert_eq!(metrics.status, StatusCode::OK);
    assert!(metrics.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let text = metrics.text();
    for expected in [
        "ambassador_webhook_admission_requests_total{verdict=\"denied\"} 1\n",
        "ambassador_webhook_admission_denials_total{kind=\"Mapping\"} 1\n",
        "ambassador_webhook_admission_duration_seconds_count 1\n",
        "ambassador_watched_objects{kind=\"Mapping\"} 42\n",
        "# TYPE ambassador_webhook_admission_duration_seconds histogram\n",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in\n{text}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_is_negotiated_and_served() {
    let server = TestServer::start().await;
    let connector = connector_for(&server.ca.ca_cert_pem, &[b"h2", b"http/1.1"]);
    let stream = connect_with(server.addr, &connector).await.unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let body = serde_json::to_vec(&review(
        "h2",
        "CREATE",
        mapping("v2", "q", "bad"),
        Value::Null,
    ))
    .unwrap();
    let request = http::Request::post("https://localhost/validate")
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(5), sender.send_request(request))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    use http_body_util::BodyExt as _;
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["response"]["uid"], "h2");
    assert_eq!(body["response"]["allowed"], false);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_trusts_another_ca_is_refused() {
    let server = TestServer::start().await;
    let other = generate_certs();
    let connector = connector_for(&other.ca_cert_pem, &[b"http/1.1"]);
    let error = connect_with(server.addr, &connector).await.unwrap_err();
    assert!(error.to_string().contains("certificate"), "{error}");
    // Plain HTTP to the TLS port gets no HTTP answer.
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut buf)).await;
    assert!(
        !buf.starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&buf)
    );
    server.stop().await;
}

/// Order-independent admission: `kubectl apply -f` sends a file's objects one at a time, and
/// the watched view catches up after each is stored. The compiler-backed validator is driven
/// exactly that way here, over real TLS, in file order and in reverse order.
mod order {
    use std::path::{Path, PathBuf};
    use std::sync::Arc;

    use ambassador_compiler::admission::{as_written, awaits_others, is_group_finding};
    use ambassador_compiler::diag::Severity;
    use ambassador_compiler::source::Sources;
    use ambassador_webhook::validator::CompilerValidator;
    use ambassador_webhook::view::View;
    use serde_json::{json, Value};

    use crate::support::*;

    fn repo() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
    }

    /// The objects of `files`, in the order `kubectl apply -f` sends them (files in the order
    /// given, documents in file order, `List` items in order), each as the API server hands
    /// it to the webhook: with its namespace.
    fn objects(files: &[PathBuf]) -> Vec<Value> {
        let mut out = Vec::new();
        for path in files {
            let text = std::fs::read_to_string(path).unwrap();
            for doc in serde_yaml_ng::Deserializer::from_str(&text) {
                let Ok(v) = <Value as serde::Deserialize>::deserialize(doc) else {
                    continue;
                };
                let items = if v["kind"] == "List" {
                    v["items"].as_array().cloned().unwrap_or_default()
                } else {
                    vec![v]
                };
                for mut item in items {
                    if !item.is_object() || item["kind"].as_str().is_none() {
                        continue;
                    }
                    if item["metadata"]["namespace"].is_null() {
                        item["metadata"]["namespace"] = json!("default");
                    }
                    out.push(item);
                }
            }
        }
        out
    }

    /// What lint says about `files` as a whole.
    fn lint(files: &[PathBuf]) -> Vec<ambassador_compiler::diag::Diagnostic> {
        let mut sources = Sources::new();
        for path in files {
            sources.add(
                path.display().to_string(),
                std::fs::read_to_string(path).unwrap(),
            );
        }
        ambassador_compiler::compile(&sources, &Default::default(), &Default::default()).diagnostics
    }

    fn has_errors(files: &[PathBuf]) -> bool {
        lint(files).iter().any(|d| d.severity == Severity::Error)
    }

    /// The clean configurations of the examples and the test data: `examples/good/` and
    /// `examples/demo/` (without `broken.yaml`) as directories and file by file, and each
    /// golden input of the compiler that lints without errors.
    fn clean_configurations() -> Vec<(String, Vec<PathBuf>)> {
        let root = repo();
        let mut out = Vec::new();
        for dir in [
            "examples/good",
            "examples/demo",
            "examples/auth",
            "examples/ratelimit",
        ] {
            let mut files: Vec<PathBuf> = std::fs::read_dir(root.join(dir))
                .unwrap()
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
                .filter(|p| !p.ends_with("demo/broken.yaml"))
                .collect();
            files.sort();
            for f in &files {
                out.push((f.display().to_string(), vec![f.clone()]));
            }
            out.push((dir.to_string(), files));
        }
        let mut golden: Vec<PathBuf> = std::fs::read_dir(root.join("compiler/test_data/golden"))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .collect();
        golden.sort();
        for f in golden {
            if !has_errors(std::slice::from_ref(&f)) {
                out.push((f.display().to_string(), vec![f]));
            }
        }
        out
    }

    /// Configurations holding objects with errors of their own.
    fn broken_configurations() -> Vec<(String, Vec<PathBuf>)> {
        let root = repo();
        let mut out = Vec::new();
        for dir in ["examples/broken", "compiler/test_data/lint"] {
            let mut files: Vec<PathBuf> = std::fs::read_dir(root.join(dir))
                .unwrap()
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
                .collect();
            files.sort();
            out.extend(
                files
                    .into_iter()
                    .map(|f| (f.display().to_string(), vec![f])),
            );
        }
        let demo = root.join("examples/demo/broken.yaml");
        out.push((demo.display().to_string(), vec![demo]));
        out
    }

    /// What the view stores of an object once it is admitted: the kinds the cluster view
    /// watches, as it cleans them.
    fn stored(object: &Value) -> Option<Value> {
        let api_version = object["apiVersion"].as_str()?;
        let kind = object["kind"].as_str()?;
        let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
        let ours = group == "getambassador.io";
        let watched = ours
            || (group.is_empty() && kind == "Service")
            || (group == "discovery.k8s.io" && kind == "EndpointSlice");
        watched.then(|| as_written(api_version, kind, object.clone(), ours))
    }

    fn codes_in(text: &str) -> Vec<String> {
        text.match_indices("[AMB")
            .map(|(i, _)| text[i + 1..i + 7].to_string())
            .collect()
    }

    fn name_of(object: &Value) -> String {
        format!(
            "{} {}/{}",
            object["kind"].as_str().unwrap_or_default(),
            object["metadata"]["namespace"].as_str().unwrap_or_default(),
            object["metadata"]["name"].as_str().unwrap_or_default()
        )
    }

    /// Sends `objects` one at a time, the view catching up after each admitted one; returns
    /// each object's answer.
    async fn apply(
        server: &TestServer,
        validator: &CompilerValidator,
        objects: &[Value],
    ) -> (View, Vec<Value>) {
        let view = View::new();
        validator.set_view(&view.snapshot().compile_input().0);
        let mut answers = Vec::new();
        for (i, object) in objects.iter().enumerate() {
            let body = server
                .post_review(&review(
                    &format!("apply-{i}"),
                    "CREATE",
                    object.clone(),
                    Value::Null,
                ))
                .await
                .json();
            let response = body["response"].clone();
            if response["allowed"] == true {
                if let Some(v) = stored(object) {
                    view.update(|b| {
                        b.upsert(v);
                    });
                    validator.set_view(&view.snapshot().compile_input().0);
                }
            }
            answers.push(response);
        }
        (view, answers)
    }

    fn orders(objects: Vec<Value>) -> [(&'static str, Vec<Value>); 2] {
        let mut reversed = objects.clone();
        reversed.reverse();
        [("file order", objects), ("reverse order", reversed)]
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_object_of_a_clean_configuration_is_admitted_in_any_order() {
        let validator = Arc::new(CompilerValidator::new("default"));
        let server = TestServer::start_with(Arc::clone(&validator), test_limits()).await;
        let configurations = clean_configurations();
        assert!(
            configurations.len() >= 14,
            "{:?}",
            configurations.iter().map(|c| &c.0).collect::<Vec<_>>()
        );
        let (mut sent, mut waiting) = (0, 0);
        for (name, files) in &configurations {
            let whole = lint(files);
            let lint_codes: Vec<&str> = whole.iter().map(|d| d.code.as_str()).collect();
            for (order, objects) in orders(objects(files)) {
                let (_, answers) = apply(&server, &validator, &objects).await;
                for (object, answer) in objects.iter().zip(&answers) {
                    sent += 1;
                    assert_eq!(
                        answer["allowed"],
                        true,
                        "{name}, {order}: {} denied: {answer}",
                        name_of(object)
                    );
                    waiting += answer["warnings"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter(|w| {
                            w.as_str()
                                .unwrap()
                                .contains("may be waiting for another object")
                        })
                        .count();
                }
                // With everything in the view, each object is judged on the whole set:
                // what it is warned about is what lint finds in the whole set.
                for (i, object) in objects.iter().enumerate() {
                    let answer = server
                        .post_review(&review(
                            &format!("again-{i}"),
                            "UPDATE",
                            object.clone(),
                            object.clone(),
                        ))
                        .await
                        .json();
                    let response = &answer["response"];
                    assert_eq!(response["allowed"], true, "{name}: {response}");
                    let warnings = response["warnings"].to_string();
                    for code in codes_in(&warnings) {
                        assert!(
                            lint_codes.contains(&code.as_str()),
                            "{name}, {order}, once applied: {} is warned about {code}, which lint of the whole set does not report: {warnings}",
                            name_of(object)
                        );
                    }
                }
            }
        }
        assert!(sent >= 100, "{sent} objects sent");
        // Some object did arrive before what it waits for (a canary before its group).
        assert!(waiting > 0);
        server.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_object_with_an_error_of_its_own_is_denied_in_any_order() {
        let validator = Arc::new(CompilerValidator::new("default"));
        let server = TestServer::start_with(Arc::clone(&validator), test_limits()).await;
        let (mut denied, mut admitted) = (0, 0);
        let mut configurations = broken_configurations();
        // Clean configurations with one error added to one object: a typo'd field.
        for (name, files) in clean_configurations() {
            configurations.push((format!("{name} (with a typo)"), files));
        }
        for (name, files) in &configurations {
            let mut all = objects(files);
            if name.ends_with("(with a typo)") {
                let Some(m) = all.iter_mut().rfind(|o| o["kind"] == "Mapping") else {
                    continue;
                };
                m["spec"]["timout_ms"] = json!(10);
            }
            for (order, objects) in orders(all) {
                let (_, answers) = apply(&server, &validator, &objects).await;
                for (object, answer) in objects.iter().zip(&answers) {
                    // The object's own errors: lint of the object alone, without the
                    // findings another object could settle or that involve a group.
                    let yaml = serde_yaml_ng::to_string(object).unwrap();
                    let alone = ambassador_compiler::compile_one("object.yaml", &yaml);
                    let errors: Vec<_> = alone
                        .diagnostics
                        .iter()
                        .filter(|d| d.severity == Severity::Error)
                        .collect();
                    let own: Vec<&str> = errors
                        .iter()
                        .filter(|d| !awaits_others(d.code) && !is_group_finding(d.code))
                        .map(|d| d.code.as_str())
                        .collect();
                    let who = name_of(object);
                    if !own.is_empty() {
                        assert_eq!(answer["allowed"], false, "{name}, {order}: {who}: {answer}");
                        let message = answer["status"]["message"].as_str().unwrap();
                        for code in &own {
                            assert!(
                                message.contains(code),
                                "{name}, {order}: {who}: {code} not in {message}"
                            );
                        }
                        denied += 1;
                    } else if errors.iter().all(|d| awaits_others(d.code)) {
                        assert_eq!(answer["allowed"], true, "{name}, {order}: {who}: {answer}");
                        admitted += 1;
                    }
                }
            }
        }
        assert!(
            denied >= 30 && admitted >= 30,
            "denied {denied}, admitted {admitted}"
        );
        server.stop().await;
    }

    /// The cases of the issue: a canary before the Mapping it joins, references to a
    /// TLSContext, a resolver and a Host's TLSContext defined later in the file; and what
    /// `--reject-conflicts` does with them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn objects_that_wait_for_later_ones_are_admitted_with_a_warning() {
        let resource = |kind: &str, name: &str, spec: Value| {
            json!({
                "apiVersion": "getambassador.io/v3alpha1", "kind": kind,
                "metadata": {"name": name, "namespace": "default"},
                "spec": spec
            })
        };
        let service = |name: &str| {
            json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": name, "namespace": "default"},
                "spec": {"ports": [{"port": 80}]}
            })
        };
        let objects = vec![
            resource(
                "Mapping",
                "quote-canary",
                json!({"hostname": "*", "prefix": "/quote/", "service": "quote-v2", "weight": 10}),
            ),
            resource(
                "Mapping",
                "quote",
                json!({"hostname": "*", "prefix": "/quote/", "service": "quote", "tls": "upstream", "resolver": "endpoints"}),
            ),
            resource(
                "Host",
                "www",
                json!({"hostname": "www.example.com", "tlsSecret": {"name": "www-cert"}, "tlsContext": {"name": "www-tls"}}),
            ),
            resource("TLSContext", "upstream", json!({"secret": "upstream-cert"})),
            resource("TLSContext", "www-tls", json!({"secret": "www-cert"})),
            resource("KubernetesEndpointResolver", "endpoints", json!({})),
            service("quote"),
            service("quote-v2"),
        ];
        // What each object waits for when the file is applied in order.
        let waits: [&[&str]; 3] = [&["AMB303", "AMB409"], &["AMB407", "AMB408"], &["AMB407"]];
        for reject in [false, true] {
            let validator = Arc::new(CompilerValidator::new("default").reject_conflicts(reject));
            let server = TestServer::start_with(Arc::clone(&validator), test_limits()).await;
            let (_, answers) = apply(&server, &validator, &objects).await;
            for (answer, codes) in answers.iter().zip(waits) {
                let text = answer.to_string();
                for code in codes {
                    assert!(
                        text.contains(&format!("[{code}] may be waiting for another object: ")),
                        "{code}: {text}"
                    );
                }
                // With `--reject-conflicts`, what lint calls an error denies (an incomplete
                // canary group, an undefined TLSContext); a Service not seen yet never does.
                assert_eq!(answer["allowed"], !reject, "{text}");
                if reject {
                    assert!(!answer["status"]["message"].to_string().contains("AMB409"));
                }
            }
            for answer in &answers[3..] {
                assert_eq!(answer["allowed"], true, "{answer}");
            }
            if !reject {
                // Everything is in the view now: applied again, nothing to say.
                for (i, object) in objects.iter().enumerate() {
                    let body = server
                        .post_review(&review(
                            &format!("u{i}"),
                            "UPDATE",
                            object.clone(),
                            object.clone(),
                        ))
                        .await
                        .json();
                    assert_eq!(
                        body["response"],
                        json!({"uid": format!("u{i}"), "allowed": true}),
                        "{body}"
                    );
                }
            }
            // In reverse order nothing waits, whatever the flag.
            let mut reversed = objects.clone();
            reversed.reverse();
            let (_, answers) = apply(&server, &validator, &reversed).await;
            for answer in answers {
                assert_eq!(answer["allowed"], true, "{answer}");
                assert!(answer.get("warnings").is_none(), "{answer}");
            }
            server.stop().await;
        }
    }
}

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

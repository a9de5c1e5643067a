//! Serving-certificate rotation through a kubelet-style `..data` symlink swap.

use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::support::*;

/// Handshakes until the server presents `want`, for at most 10 seconds.
async fn wait_for_leaf(
    server: &TestServer,
    connector: &tokio_rustls::TlsConnector,
    want: &[u8],
) -> Duration {
    let started = Instant::now();
    loop {
        if let Ok(stream) = connect_with(server.addr, connector).await {
            if peer_leaf(&stream) == want {
                return started.elapsed();
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "server never presented the new certificate"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_handshakes_see_the_new_certificate_while_in_flight_requests_finish() {
    let mut limits = test_limits();
    // The in-flight request below waits for the rotation mid-body.
    limits.body_read_timeout = Duration::from_secs(15);
    let server = TestServer::start_with(TestValidator, limits).await;
    let old_leaf = leaf_der(&server.ca.cert_pem);

    // An in-flight request: head and half the body sent on the old certificate.
    let body = serde_json::to_vec(&review(
        "inflight",
        "CREATE",
        mapping("v3alpha1", "q", "/q/"),
        Value::Null,
    ))
    .unwrap();
    let mut inflight = server.connect().await;
    assert_eq!(peer_leaf(&inflight), old_leaf);
    let head = format!(
        "POST /validate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    inflight.write_all(head.as_bytes()).await.unwrap();
    let (first, rest) = body.split_at(body.len() / 2);
    inflight.write_all(first).await.unwrap();
    inflight.flush().await.unwrap();

    // Rotate: a new CA and certificate, published as the kubelet does.
    let rotated = generate_certs();
    kubelet_publish(server.dir.path(), &rotated);
    let new_leaf = leaf_der(&rotated.cert_pem);
    assert_ne!(new_leaf, old_leaf);

    // New handshakes see the new certificate, validated against the new CA only.
    let new_connector = connector_for(&rotated.ca_cert_pem, &[b"http/1.1"]);
    let took = wait_for_leaf(&server, &new_connector, &new_leaf).await;
    assert!(
        took < Duration::from_secs(5),
        "rotation took {took:?}; the poll fallback is 60 s, so inotify did not fire"
    );
    // Clients still trusting only the old CA are now refused.
    assert!(connect_with(server.addr, &server.connector())
        .await
        .is_err());

    // The in-flight request finishes on its old session.
    inflight.write_all(rest).await.unwrap();
    inflight.flush().await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), inflight.read_to_end(&mut response))
        .await
        .expect("in-flight request answered")
        .unwrap();
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("\"uid\":\"inflight\""), "{response}");

    // And a full request over a new connection works with the new CA.
    let stream = connect_with(server.addr, &new_connector).await.unwrap();
    let reply = send(
        stream,
        "POST",
        "/validate",
        serde_json::to_vec(&review(
            "after",
            "CREATE",
            mapping("v2", "q", "/q/"),
            Value::Null,
        ))
        .unwrap(),
    )
    .await;
    assert_eq!(reply.json()["response"]["uid"], "after");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_update_keeps_the_current_certificate() {
    let server = TestServer::start().await;
    let old_leaf = leaf_der(&server.ca.cert_pem);

    // A key that does not belong to the certificate.
    let mut broken = generate_certs();
    broken.key_pem = generate_certs().key_pem;
    kubelet_publish(server.dir.path(), &broken);
    // Give the watcher time to see the swap and reject it.
    let started = Instant::now();
    while server
        .metrics
        .render()
        .contains("tls_reloads_total{result=\"error\"} 0")
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "broken certificate never noticed"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let stream = server.connect().await;
    assert_eq!(peer_leaf(&stream), old_leaf);
    assert!(server.resolver.reload().is_err());

    // The next good update is picked up.
    let good = generate_certs();
    kubelet_publish(server.dir.path(), &good);
    let connector = connector_for(&good.ca_cert_pem, &[b"http/1.1"]);
    wait_for_leaf(&server, &connector, &leaf_der(&good.cert_pem)).await;
    server.stop().await;
}

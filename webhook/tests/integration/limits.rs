//! Body limits, slow clients, stalled handshakes and a bounded flood.

use std::time::{Duration, Instant};

use ambassador_webhook::metrics::RequestVerdict;
use bytes::Bytes;
use http::StatusCode;
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::support::*;

/// Reads whatever the server sends until it closes (or resets) the connection,
/// for at most `limit`.
async fn read_until_closed<R: tokio::io::AsyncRead + Unpin>(
    reader: &mut R,
    limit: Duration,
) -> (Vec<u8>, Duration) {
    let started = Instant::now();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(
            limit.saturating_sub(started.elapsed()),
            reader.read(&mut buf),
        )
        .await
        {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => panic!(
                "connection still open after {limit:?}; got {:?}",
                String::from_utf8_lossy(&out)
            ),
        }
    }
    (out, started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_of_more_than_three_mib_is_accepted() {
    let server = TestServer::start().await;
    let mut new = mapping("v3alpha1", "big", "/big/");
    let mut old = new.clone();
    // Two objects of ~1.5 MiB each, as etcd allows: old and new on UPDATE.
    new["spec"]["docs"] = json!("n".repeat(1_600_000));
    old["spec"]["docs"] = json!("o".repeat(1_600_000));
    let body = serde_json::to_vec(&review("big", "UPDATE", new, old)).unwrap();
    assert!(body.len() > 3 * 1024 * 1024, "{}", body.len());
    let reply = server.request("POST", "/validate", body).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.json()["response"]["allowed"], true);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declared_oversize_body_is_refused_before_it_is_sent() {
    let server = TestServer::start().await;
    let mut stream = server.connect().await;
    let head = "POST /validate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: 5242880\r\n\r\n";
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&[b' '; 1024]).await.unwrap();
    stream.flush().await.unwrap();
    let (response, _) = read_until_closed(&mut stream, Duration::from_secs(5)).await;
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    assert!(response.contains("4194304-byte limit"), "{response}");
    assert_eq!(server.metrics.requests(RequestVerdict::Failed), 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_body_over_the_limit_gets_413() {
    let server = TestServer::start().await;
    let stream = server.connect().await;
    let (mut reader, mut writer) = tokio::io::split(stream);
    let head = "POST /validate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
    let writer_task = tokio::spawn(async move {
        writer.write_all(head.as_bytes()).await?;
        let chunk = vec![b' '; 64 * 1024];
        // 6 MiB in total, past the 4 MiB limit; stops early once the server hangs up.
        for _ in 0..96 {
            writer
                .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                .await?;
            writer.write_all(&chunk).await?;
            writer.write_all(b"\r\n").await?;
        }
        writer.write_all(b"0\r\n\r\n").await?;
        writer.flush().await
    });
    let (response, _) = read_until_closed(&mut reader, Duration::from_secs(10)).await;
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 413"), "{response:?}");
    let _ = writer_task.await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off_while_others_are_served_promptly() {
    let server = TestServer::start().await;
    let good = serde_json::to_vec(&review(
        "fast",
        "CREATE",
        mapping("v2", "q", "/q/"),
        Value::Null,
    ))
    .unwrap();

    // Clients that trickle the body, one byte every 100 ms.
    let mut slow = Vec::new();
    for _ in 0..4 {
        let stream = server.connect().await;
        let body = good.clone();
        slow.push(tokio::spawn(async move {
            let (mut reader, mut writer) = tokio::io::split(stream);
            let head = format!(
                "POST /validate HTTP/1.1\r\nhost: localhost\r\ncontent-length: {}\r\n\r\n",
                body.len()
            );
            writer.write_all(head.as_bytes()).await.unwrap();
            let trickle = tokio::spawn(async move {
                for byte in body {
                    if writer.write_all(&[byte]).await.is_err() || writer.flush().await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            });
            let result = read_until_closed(&mut reader, Duration::from_secs(5)).await;
            trickle.abort();
            result
        }));
    }
    // Clients that trickle the request head.
    for _ in 0..4 {
        let stream = server.connect().await;
        slow.push(tokio::spawn(async move {
            let (mut reader, mut writer) = tokio::io::split(stream);
            let trickle = tokio::spawn(async move {
                for byte in b"POST /validate HTTP/1.1\r\nhost: localhost\r\nx-slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".iter() {
                    if writer.write_all(&[*byte]).await.is_err() || writer.flush().await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            });
            let result = read_until_closed(&mut reader, Duration::from_secs(5)).await;
            trickle.abort();
            result
        }));
    }

    // Meanwhile a normal client is answered at once.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let reply = server.request("POST", "/validate", good.clone()).await;
    let fast = started.elapsed();
    assert_eq!(reply.status, StatusCode::OK);
    assert!(
        fast < Duration::from_millis(750),
        "normal request took {fast:?} while slow clients were connected"
    );

    for (i, task) in slow.into_iter().enumerate() {
        let (response, took) = task.await.unwrap();
        let response = String::from_utf8_lossy(&response);
        // Cut off by the 1 s body or header timeout, long before the trickle ends.
        assert!(
            took < Duration::from_secs(3),
            "slow client {i} held on for {took:?}"
        );
        assert!(
            !response.contains(" 200 "),
            "slow client {i} got {response:?}"
        );
        if i < 4 {
            assert!(
                response.starts_with("HTTP/1.1 408"),
                "slow body client {i} got {response:?}"
            );
        }
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_tls_handshake_is_dropped() {
    let server = TestServer::start().await;
    let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let (_, took) = read_until_closed(&mut tcp, Duration::from_secs(5)).await;
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "{took:?}"
    );
    assert!(server
        .metrics
        .render()
        .contains("ambassador_webhook_tls_handshake_failures_total 1\n"));
    // The server still serves.
    assert_eq!(
        server.request("GET", "/healthz", Vec::new()).await.status,
        StatusCode::OK
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bounded_flood_is_answered_in_full() {
    const CONNECTIONS: usize = 100;
    const PER_CONNECTION: usize = 4;
    let server = TestServer::start().await;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..CONNECTIONS {
        let stream = server.connect().await;
        tasks.push(tokio::spawn(async move {
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .unwrap();
            tokio::spawn(conn);
            let mut answers = Vec::new();
            for r in 0..PER_CONNECTION {
                let uid = format!("flood-{c}-{r}");
                // Every 10th connection sends one malformed review among good ones.
                let body = if c % 10 == 0 && r == 1 {
                    b"{ not json".to_vec()
                } else {
                    let prefix = if r % 2 == 0 { "/ok/" } else { "bad" };
                    serde_json::to_vec(&review(
                        &uid,
                        "CREATE",
                        mapping("v3alpha1", &uid, prefix),
                        Value::Null,
                    ))
                    .unwrap()
                };
                sender.ready().await.unwrap();
                let request = http::Request::post("/validate")
                    .header("host", "localhost")
                    .body(Full::new(Bytes::from(body)))
                    .unwrap();
                let response = sender.send_request(request).await.unwrap();
                let status = response.status();
                let body = response.into_body().collect().await.unwrap().to_bytes();
                answers.push((uid, status, body));
            }
            answers
        }));
    }
    let mut answered = 0;
    for task in tasks {
        let answers = tokio::time::timeout(Duration::from_secs(60), task)
            .await
            .expect("flood answered within 60 s")
            .unwrap();
        for (uid, status, body) in answers {
            answered += 1;
            if status == StatusCode::BAD_REQUEST {
                assert!(uid.ends_with("-1"), "{uid} got 400");
                continue;
            }
            assert_eq!(status, StatusCode::OK, "{uid}");
            let body: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(body["response"]["uid"], uid);
            let expect_allowed = uid.ends_with("-0") || uid.ends_with("-2");
            assert_eq!(body["response"]["allowed"], expect_allowed, "{uid}");
        }
    }
    assert_eq!(answered, CONNECTIONS * PER_CONNECTION);
    assert_eq!(
        server.metrics.requests(RequestVerdict::Malformed),
        (CONNECTIONS / 10) as u64
    );
    eprintln!(
        "flood of {answered} requests answered in {:?}",
        started.elapsed()
    );
    server.stop().await;
}

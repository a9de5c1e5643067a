//! The harness's own pieces against real Envoy: the shipped bootstrap, streaming and websocket backends through Envoy.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use ambassador_e2e::backend::Backend;
use ambassador_e2e::control_plane::ControlPlane;
use ambassador_e2e::envoy::{validate, Envoy};
use ambassador_e2e::xds::{eds_cluster, endpoints, listener, prefix_route, route_config};
use ambassador_e2e::{free_port, poll};
use ambassador_webhook::ads::Snapshot;
use ambassador_webhook::bootstrap::{ApiType, Bootstrap};
use futures_util::{SinkExt, StreamExt};
use http_body_util::BodyExt;
use tokio_tungstenite::tungstenite::Message;

fn shipped_bootstrap() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../manifests/envoy/bootstrap.yaml")
}

/// `manifests/envoy/bootstrap.yaml` is what `Bootstrap::in_cluster()` produces, and Envoy
/// accepts it. `UPDATE_MANIFESTS=1` rewrites the file.
#[test]
fn shipped_bootstrap_is_generated_and_valid() {
    let path = shipped_bootstrap();
    let want = Bootstrap::in_cluster().to_yaml();
    if std::env::var_os("UPDATE_MANIFESTS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &want).unwrap();
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "{} differs from Bootstrap::in_cluster(); run `UPDATE_MANIFESTS=1 cargo test -p ambassador-e2e --test harness`",
        path.display()
    );
    let (ok, output) = validate(&path).unwrap();
    assert!(
        ok,
        "envoy --mode validate refused the shipped bootstrap:\n{output}"
    );
}

#[test]
fn generated_bootstraps_validate_and_broken_ones_do_not() {
    let dir = tempfile::tempdir().unwrap();
    for api in [ApiType::Grpc, ApiType::DeltaGrpc] {
        let path = dir.path().join(format!("{api:?}.yaml"));
        std::fs::write(
            &path,
            Bootstrap::new("n", "127.0.0.1", 18000, 9901)
                .with_api_type(api)
                .to_yaml(),
        )
        .unwrap();
        let (ok, output) = validate(&path).unwrap();
        assert!(ok, "{api:?}: {output}");
    }
    // The oracle can say no.
    let path = dir.path().join("broken.yaml");
    let broken = Bootstrap::new("n", "127.0.0.1", 18000, 9901)
        .to_yaml()
        .replace("type: STATIC", "type: NOT_A_TYPE");
    std::fs::write(&path, broken).unwrap();
    assert!(!validate(&path).unwrap().0);
}

/// An Envoy with one listener that routes everything to one backend.
async fn one_route(api: ApiType) -> (Backend, ControlPlane, Envoy, u16) {
    let backend = Backend::start("s").await.unwrap();
    let port = free_port();
    let cp = ControlPlane::start(
        Snapshot::new()
            .with(eds_cluster("s"))
            .with(endpoints("s", &[backend.addr()]))
            .with(listener("edge", port, "routes"))
            .with(route_config("routes", vec![prefix_route("/", "s")])),
    )
    .await
    .unwrap();
    let envoy = Envoy::start(&cp.bootstrap("edge-s", api)).await.unwrap();
    (backend, cp, envoy, port)
}

/// The streaming endpoint holds the response open for the time asked, chunk by chunk, through Envoy.
#[tokio::test]
async fn streaming_response_through_envoy() {
    let (_backend, _cp, _envoy, port) = one_route(ApiType::Grpc).await;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let start = Instant::now();
    let uri = format!("http://127.0.0.1:{port}/_stream?seconds=1&interval_ms=200");
    let response = tokio::time::timeout(Duration::from_secs(10), client.get(uri.parse().unwrap()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let mut chunks = Vec::new();
    while let Some(frame) = tokio::time::timeout(Duration::from_secs(10), body.frame())
        .await
        .unwrap()
    {
        if let Ok(data) = frame.unwrap().into_data() {
            chunks.push((start.elapsed(), data));
        }
    }
    let text: String = chunks
        .iter()
        .map(|(_, d)| String::from_utf8_lossy(d))
        .collect();
    assert_eq!(text.lines().count(), 5, "{text}");
    assert!(text.lines().all(|l| l.contains("\"backend\":\"s\"")));
    assert!(
        chunks.len() >= 3,
        "the body arrives in pieces, not at once: {chunks:?}"
    );
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(750) && took < Duration::from_secs(5),
        "{took:?}"
    );
}

/// The websocket endpoint echoes through Envoy (the listener allows upgrades).
#[tokio::test]
async fn websocket_echo_through_envoy() {
    let (_backend, _cp, envoy, port) = one_route(ApiType::DeltaGrpc).await;
    let (mut ws, response) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/_ws")),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(response.status(), 101);
    for i in 0..3 {
        ws.send(Message::text(format!("hello {i}"))).await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(got, Message::text(format!("hello {i}")));
    }
    ws.send(Message::binary(vec![0u8, 1, 2])).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(got, Message::binary(vec![0u8, 1, 2]));
    let upgrades = poll(
        Duration::from_secs(5),
        Duration::from_millis(20),
        || async {
            envoy
                .stat("http.edge.downstream_cx_upgrades_total")
                .await
                .ok()
                .flatten()
                .filter(|n| *n >= 1)
        },
    )
    .await;
    assert!(upgrades.is_some(), "Envoy counted no upgrade");
    ws.close(None).await.unwrap();
}

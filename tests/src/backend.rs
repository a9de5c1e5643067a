//! HTTP backends on loopback that say who they are and what they received, stream, and echo websockets.
//!
//! Paths:
//! - `/_stream?seconds=N&interval_ms=M`: a chunked response that stays open for N seconds
//!   (default 5, at most [`MAX_STREAM`]), one JSON line every M ms (default 100).
//! - `/_ws`: a websocket that echoes text and binary messages (closed after [`MAX_STREAM`]).
//! - `/_slow?ms=N`: the echo, after N ms (at most [`MAX_STREAM`]).
//! - `/_flaky?key=K&fail=N`: 503 for the first N requests with this key, then the echo.
//! - anything else: a JSON echo, see [`Echo`].
//!
//! Backends speak HTTP/1.1 and HTTP/2 without TLS (h2c with prior knowledge, as Envoy
//! speaks to a `grpc: true` upstream), and keep a log of the last requests they echoed
//! ([`Backend::seen`]). [`TcpEcho`] is a raw TCP echo server for TCPMappings.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::{io, Result};

/// The longest a streaming response or a websocket stays open, so that no test can hang on one.
pub const MAX_STREAM: Duration = Duration::from_secs(120);

/// What the echo endpoint answers (as JSON), and the header `x-backend`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Echo {
    /// The backend's name.
    pub backend: String,
    /// The request method.
    pub method: String,
    /// The path as received (after any rewrite by Envoy).
    pub path: String,
    /// The raw query string, empty when there is none.
    pub query: String,
    /// Request headers, names in lower case; repeated headers joined with `, `.
    pub headers: BTreeMap<String, String>,
    /// The HTTP version the request arrived in, e.g. `HTTP/1.1` or `HTTP/2.0`.
    #[serde(default)]
    pub version: String,
}

/// How many echoed requests a backend remembers.
pub const SEEN_LIMIT: usize = 10_000;

/// What the handlers share: the name, the log of echoed requests, the flaky counters.
#[derive(Debug)]
struct Shared {
    name: Arc<str>,
    seen: Mutex<VecDeque<Echo>>,
    flaky: Mutex<HashMap<String, u32>>,
}

type AppState = Arc<Shared>;

/// A running backend; dropping it stops it.
#[derive(Debug)]
pub struct Backend {
    name: String,
    addr: SocketAddr,
    shared: AppState,
    task: JoinHandle<()>,
}

impl Backend {
    /// Starts a backend called `name` on a free loopback port.
    pub async fn start(name: &str) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(io("binding a backend"))?;
        let addr = listener
            .local_addr()
            .map_err(io("reading a backend address"))?;
        let shared = Arc::new(Shared {
            name: Arc::from(name),
            seen: Mutex::new(VecDeque::new()),
            flaky: Mutex::new(HashMap::new()),
        });
        let app = Router::new()
            .route("/_stream", get(stream))
            .route("/_ws", get(websocket))
            .route("/_slow", get(slow))
            .route("/_flaky", get(flaky))
            .fallback(echo)
            .with_state(Arc::clone(&shared));
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::warn!(error = %e, "backend stopped");
            }
        });
        Ok(Self {
            name: name.to_owned(),
            addr,
            shared,
            task,
        })
    }

    /// The requests echoed so far (the last [`SEEN_LIMIT`]), oldest first.
    pub fn seen(&self) -> Vec<Echo> {
        lock(&self.shared.seen).iter().cloned().collect()
    }

    /// Forgets the requests echoed so far.
    pub fn clear_seen(&self) {
        lock(&self.shared.seen).clear();
    }

    /// Its name, as echoed.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn echo(
    State(shared): State<AppState>,
    method: Method,
    version: axum::http::Version,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let mut joined: BTreeMap<String, String> = BTreeMap::new();
    for (n, v) in &headers {
        let v = String::from_utf8_lossy(v.as_bytes());
        joined
            .entry(n.as_str().to_owned())
            .and_modify(|acc| {
                acc.push_str(", ");
                acc.push_str(&v);
            })
            .or_insert_with(|| v.into_owned());
    }
    let body = Echo {
        backend: shared.name.to_string(),
        method: method.to_string(),
        path: uri.path().to_owned(),
        query: uri.query().unwrap_or_default().to_owned(),
        headers: joined,
        version: format!("{version:?}"),
    };
    {
        let mut seen = lock(&shared.seen);
        if seen.len() >= SEEN_LIMIT {
            seen.pop_front();
        }
        seen.push_back(body.clone());
    }
    ([("x-backend", shared.name.to_string())], Json(body)).into_response()
}

#[derive(Deserialize)]
struct SlowParams {
    ms: Option<u64>,
}

async fn slow(
    State(shared): State<AppState>,
    Query(p): Query<SlowParams>,
    method: Method,
    version: axum::http::Version,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let wait = Duration::from_millis(p.ms.unwrap_or(1000)).min(MAX_STREAM);
    tokio::time::sleep(wait).await;
    echo(State(shared), method, version, uri, headers).await
}

#[derive(Deserialize)]
struct FlakyParams {
    key: String,
    fail: u32,
}

async fn flaky(
    State(shared): State<AppState>,
    Query(p): Query<FlakyParams>,
    method: Method,
    version: axum::http::Version,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let failed = {
        let mut counts = lock(&shared.flaky);
        let n = counts.entry(p.key).or_insert(0);
        *n += 1;
        *n <= p.fail
    };
    if failed {
        return (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            [("x-backend", shared.name.to_string())],
            "flaky: failing on purpose\n",
        )
            .into_response();
    }
    echo(State(shared), method, version, uri, headers).await
}

#[derive(Deserialize)]
struct StreamParams {
    seconds: Option<u64>,
    interval_ms: Option<u64>,
}

async fn stream(State(shared): State<AppState>, Query(p): Query<StreamParams>) -> Response {
    let name = Arc::clone(&shared.name);
    let total = Duration::from_secs(p.seconds.unwrap_or(5)).min(MAX_STREAM);
    let interval = Duration::from_millis(p.interval_ms.unwrap_or(100).max(10));
    let ticks = (total.as_millis() / interval.as_millis()).max(1) as u64;
    let lines = futures_util::stream::unfold(0u64, move |tick| {
        let name = Arc::clone(&name);
        async move {
            if tick >= ticks {
                return None;
            }
            if tick > 0 {
                tokio::time::sleep(interval).await;
            }
            let line = format!(
                "{{\"backend\":{},\"tick\":{tick}}}\n",
                serde_json::Value::from(&*name)
            );
            Some((Ok::<_, std::convert::Infallible>(line), tick + 1))
        }
    });
    Body::from_stream(lines).into_response()
}

async fn websocket(ws: WebSocketUpgrade) -> Response {
    ws.on_upgrade(|socket| async move {
        let _ = tokio::time::timeout(MAX_STREAM, echo_socket(socket)).await;
    })
}

async fn echo_socket(mut socket: WebSocket) {
    while let Some(Ok(msg)) = socket.recv().await {
        let reply = match msg {
            Message::Text(_) | Message::Binary(_) => msg,
            Message::Close(_) => break,
            // axum answers pings by itself.
            Message::Ping(_) | Message::Pong(_) => continue,
        };
        if socket.send(reply).await.is_err() {
            break;
        }
    }
}

/// A raw TCP echo server on a free loopback port: every byte read is written back.
#[derive(Debug)]
pub struct TcpEcho {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl TcpEcho {
    /// Starts the server; each connection is echoed for at most [`MAX_STREAM`].
    pub async fn start() -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(io("binding a TCP echo server"))?;
        let addr = listener
            .local_addr()
            .map_err(io("reading the TCP echo address"))?;
        let task = tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = socket.split();
                    let _ = tokio::time::timeout(MAX_STREAM, tokio::io::copy(&mut r, &mut w)).await;
                });
            }
        });
        Ok(Self { addr, task })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for TcpEcho {
    fn drop(&mut self) {
        self.task.abort();
    }
}

//! HTTP backends on loopback that say who they are and what they received, stream, and echo websockets.
//!
//! Paths:
//! - `/_stream?seconds=N&interval_ms=M`: a chunked response that stays open for N seconds
//!   (default 5, at most [`MAX_STREAM`]), one JSON line every M ms (default 100).
//! - `/_ws`: a websocket that echoes text and binary messages (closed after [`MAX_STREAM`]).
//! - anything else: a JSON echo, see [`Echo`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
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
}

/// A running backend; dropping it stops it.
#[derive(Debug)]
pub struct Backend {
    name: String,
    addr: SocketAddr,
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
        let app = Router::new()
            .route("/_stream", get(stream))
            .route("/_ws", get(websocket))
            .fallback(echo)
            .with_state(Arc::<str>::from(name));
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::warn!(error = %e, "backend stopped");
            }
        });
        Ok(Self {
            name: name.to_owned(),
            addr,
            task,
        })
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

async fn echo(
    State(name): State<Arc<str>>,
    method: Method,
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
        backend: name.to_string(),
        method: method.to_string(),
        path: uri.path().to_owned(),
        query: uri.query().unwrap_or_default().to_owned(),
        headers: joined,
    };
    ([("x-backend", name.to_string())], Json(body)).into_response()
}

#[derive(Deserialize)]
struct StreamParams {
    seconds: Option<u64>,
    interval_ms: Option<u64>,
}

async fn stream(State(name): State<Arc<str>>, Query(p): Query<StreamParams>) -> Response {
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

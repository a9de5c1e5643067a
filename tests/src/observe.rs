//! Observability receivers on loopback: a gRPC access log service (`envoy.service.accesslog.v3`) and a zipkin collector (HTTP JSON spans), each recording what Envoy sent.
//!
//! The access log service keeps every HTTP entry it is streamed (path, status, the
//! additional request and response headers Envoy logged) and the log name of each stream.
//! The collector accepts `POST /api/v2/spans` with a JSON list of zipkin v2 spans and keeps
//! each span.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use envoy_types::pb::envoy::service::accesslog::v3::access_log_service_server::{
    AccessLogService, AccessLogServiceServer,
};
use envoy_types::pb::envoy::service::accesslog::v3::stream_access_logs_message::LogEntries;
use envoy_types::pb::envoy::service::accesslog::v3::{
    StreamAccessLogsMessage, StreamAccessLogsResponse,
};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::{io, Result};

/// One HTTP access log entry as Envoy streamed it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogEntry {
    /// The log name of the stream it came on (`logservice`).
    pub log_name: String,
    pub path: String,
    pub status: u32,
    /// The additional request headers logged, names in lower case.
    pub request_headers: BTreeMap<String, String>,
    /// The additional response headers logged.
    pub response_headers: BTreeMap<String, String>,
}

#[derive(Debug, Default)]
struct LogState {
    entries: Vec<LogEntry>,
    /// Connection entries (`tcp` driver) received.
    tcp_entries: usize,
}

/// A running gRPC access log service; dropping it stops it.
#[derive(Debug)]
pub struct AccessLogServer {
    addr: SocketAddr,
    state: Arc<Mutex<LogState>>,
    task: JoinHandle<()>,
}

struct Service {
    state: Arc<Mutex<LogState>>,
}

impl AccessLogServer {
    /// A service on a free loopback port.
    pub async fn start() -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(io("binding the access log service"))?;
        let addr = listener
            .local_addr()
            .map_err(io("reading the access log service's address"))?;
        let state: Arc<Mutex<LogState>> = Arc::default();
        let service = AccessLogServiceServer::new(Service {
            state: state.clone(),
        });
        let task = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
                .await;
        });
        Ok(Self { addr, state, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every HTTP entry received so far, oldest first.
    pub fn entries(&self) -> Vec<LogEntry> {
        self.state.lock().expect("not poisoned").entries.clone()
    }

    /// How many connection (`tcp` driver) entries were received.
    pub fn tcp_entries(&self) -> usize {
        self.state.lock().expect("not poisoned").tcp_entries
    }
}

impl Drop for AccessLogServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tonic::async_trait]
impl AccessLogService for Service {
    async fn stream_access_logs(
        &self,
        request: tonic::Request<tonic::Streaming<StreamAccessLogsMessage>>,
    ) -> std::result::Result<tonic::Response<StreamAccessLogsResponse>, tonic::Status> {
        let mut stream = request.into_inner();
        // Envoy names the log in the first message of a stream only.
        let mut log_name = String::new();
        while let Some(message) = stream.message().await? {
            if let Some(id) = message.identifier {
                log_name = id.log_name;
            }
            let mut state = self.state.lock().expect("not poisoned");
            match message.log_entries {
                Some(LogEntries::HttpLogs(logs)) => {
                    for e in logs.log_entry {
                        let request = e.request.unwrap_or_default();
                        let response = e.response.unwrap_or_default();
                        state.entries.push(LogEntry {
                            log_name: log_name.clone(),
                            path: request.path,
                            status: response.response_code.map_or(0, |c| c.value),
                            request_headers: request.request_headers.into_iter().collect(),
                            response_headers: response.response_headers.into_iter().collect(),
                        });
                    }
                }
                Some(LogEntries::TcpLogs(logs)) => state.tcp_entries += logs.log_entry.len(),
                None => {}
            }
        }
        Ok(tonic::Response::new(StreamAccessLogsResponse {}))
    }
}

/// One zipkin span as the collector received it (the fields the tests read).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Span {
    pub trace_id: String,
    pub id: String,
    pub name: String,
    /// `SERVER`, `CLIENT`, or empty.
    pub kind: String,
    pub tags: BTreeMap<String, String>,
}

/// A running zipkin collector; dropping it stops it.
#[derive(Debug)]
pub struct ZipkinCollector {
    addr: SocketAddr,
    spans: Arc<Mutex<Vec<Span>>>,
    task: JoinHandle<()>,
}

impl ZipkinCollector {
    /// A collector on a free loopback port, taking spans at `POST /api/v2/spans`.
    pub async fn start() -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(io("binding the zipkin collector"))?;
        let addr = listener
            .local_addr()
            .map_err(io("reading the zipkin collector's address"))?;
        let spans: Arc<Mutex<Vec<Span>>> = Arc::default();
        let shared = spans.clone();
        let app = Router::new().route(
            "/api/v2/spans",
            post(move |body: Bytes| {
                let spans = shared.clone();
                async move {
                    let Ok(Value::Array(items)) = serde_json::from_slice::<Value>(&body) else {
                        return StatusCode::BAD_REQUEST;
                    };
                    let s = |v: &Value, k: &str| {
                        v.get(k)
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_owned()
                    };
                    let mut spans = spans.lock().expect("not poisoned");
                    for v in &items {
                        let tags = v
                            .get("tags")
                            .and_then(Value::as_object)
                            .map(|t| {
                                t.iter()
                                    .map(|(k, v)| {
                                        (k.clone(), v.as_str().unwrap_or_default().to_owned())
                                    })
                                    .collect()
                            })
                            .unwrap_or_default();
                        spans.push(Span {
                            trace_id: s(v, "traceId"),
                            id: s(v, "id"),
                            name: s(v, "name"),
                            kind: s(v, "kind"),
                            tags,
                        });
                    }
                    StatusCode::ACCEPTED
                }
            }),
        );
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, spans, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every span received so far, in arrival order.
    pub fn spans(&self) -> Vec<Span> {
        self.spans.lock().expect("not poisoned").clone()
    }
}

impl Drop for ZipkinCollector {
    fn drop(&mut self) {
        self.task.abort();
    }
}

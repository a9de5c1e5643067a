//! Authorization services on loopback for Envoy's `ext_authz`: HTTP and gRPC (`envoy.service.auth.v3`), deciding by a request header and recording every check.
//!
//! Both decide by the header `x-auth` of the request Envoy asks about:
//!
//! - `deny`: 403 with the body [`DENY_BODY`] (gRPC: [`GRPC_DENY_BODY`]) and the headers
//!   `x-auth-reason` and `www-authenticate`;
//! - `redirect` (HTTP only): 302 to [`LOGIN`];
//! - anything else, or no header: allowed, adding `x-user` (and, HTTP only, `x-other`,
//!   which Envoy passes on only if it is an allowed authorization header).
//!
//! Envoy sends `x-auth` to an HTTP service only when the AuthService allows it
//! (`allowed_request_headers`); gRPC checks carry every header.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use envoy_types::pb::envoy::config::core::v3::{HeaderValue, HeaderValueOption};
use envoy_types::pb::envoy::r#type::v3::HttpStatus;
use envoy_types::pb::envoy::service::auth::v3::authorization_server::{
    Authorization, AuthorizationServer,
};
use envoy_types::pb::envoy::service::auth::v3::{
    check_response, CheckRequest, CheckResponse, DeniedHttpResponse, OkHttpResponse,
};
use envoy_types::pb::google::rpc::Status as RpcStatus;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::{io, Result};

/// The body of an HTTP denial.
pub const DENY_BODY: &str = "denied by the auth service";
/// The body of a gRPC denial.
pub const GRPC_DENY_BODY: &str = "denied by the grpc auth service";
/// Where the HTTP service redirects.
pub const LOGIN: &str = "https://login.example/start";

/// One check the service answered.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Check {
    pub method: String,
    /// The path the service was asked on (HTTP: `path_prefix` + the request's path).
    pub path: String,
    /// Headers, names in lower case.
    pub headers: BTreeMap<String, String>,
    /// The request body forwarded with the check, if any.
    pub body: Vec<u8>,
    /// gRPC only: the route's `context_extensions`.
    pub context_extensions: BTreeMap<String, String>,
}

type Log = Arc<Mutex<Vec<Check>>>;

/// A running authorization service; dropping it stops it.
#[derive(Debug)]
pub struct AuthServer {
    addr: SocketAddr,
    log: Log,
    task: JoinHandle<()>,
}

impl AuthServer {
    /// An HTTP authorization service on a free loopback port.
    pub async fn http() -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(io("binding the auth service"))?;
        let addr = listener
            .local_addr()
            .map_err(io("reading the auth service's address"))?;
        let log: Log = Arc::default();
        let shared = log.clone();
        let app = Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let log = shared.clone();
                async move { http_check(&log, method, uri, headers, body) }
            },
        );
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, log, task })
    }

    /// A gRPC `envoy.service.auth.v3.Authorization` service on a free loopback port.
    pub async fn grpc() -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(io("binding the gRPC auth service"))?;
        let addr = listener
            .local_addr()
            .map_err(io("reading the gRPC auth service's address"))?;
        let log: Log = Arc::default();
        let service = AuthorizationServer::new(GrpcAuth { log: log.clone() });
        let task = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
                .await;
        });
        Ok(Self { addr, log, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every check answered so far, oldest first.
    pub fn checks(&self) -> Vec<Check> {
        self.log.lock().expect("not poisoned").clone()
    }

    /// How many checks were answered.
    pub fn count(&self) -> usize {
        self.log.lock().expect("not poisoned").len()
    }
}

impl Drop for AuthServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lower_headers(headers: &HeaderMap) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for (n, v) in headers {
        let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
        out.entry(n.as_str().to_ascii_lowercase())
            .and_modify(|e| {
                e.push_str(", ");
                e.push_str(&v);
            })
            .or_insert(v);
    }
    out
}

fn http_check(log: &Log, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let headers = lower_headers(&headers);
    let decision = headers.get("x-auth").cloned().unwrap_or_default();
    log.lock().expect("not poisoned").push(Check {
        method: method.to_string(),
        path: uri.path().to_owned(),
        headers,
        body: body.to_vec(),
        context_extensions: BTreeMap::new(),
    });
    match decision.as_str() {
        "deny" => (
            StatusCode::FORBIDDEN,
            [
                ("x-auth-reason", "nope"),
                ("www-authenticate", "Bearer realm=\"edge\""),
            ],
            DENY_BODY,
        )
            .into_response(),
        "redirect" => (StatusCode::FOUND, [("location", LOGIN)], "").into_response(),
        _ => (
            StatusCode::OK,
            [("x-user", "alice"), ("x-other", "not-passed")],
            "",
        )
            .into_response(),
    }
}

struct GrpcAuth {
    log: Log,
}

fn header(key: &str, value: &str) -> HeaderValueOption {
    HeaderValueOption {
        header: Some(HeaderValue {
            key: key.to_owned(),
            value: value.to_owned(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[tonic::async_trait]
impl Authorization for GrpcAuth {
    async fn check(
        &self,
        request: tonic::Request<CheckRequest>,
    ) -> std::result::Result<tonic::Response<CheckResponse>, tonic::Status> {
        let attributes = request.into_inner().attributes.unwrap_or_default();
        let http = attributes.request.and_then(|r| r.http).unwrap_or_default();
        let headers: BTreeMap<String, String> = http
            .headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .collect();
        let deny = headers.get("x-auth").is_some_and(|v| v == "deny");
        self.log.lock().expect("not poisoned").push(Check {
            method: http.method.clone(),
            path: http.path.clone(),
            headers,
            body: http.body.into_bytes(),
            context_extensions: attributes.context_extensions.into_iter().collect(),
        });
        let response = if deny {
            CheckResponse {
                // PERMISSION_DENIED
                status: Some(RpcStatus {
                    code: 7,
                    ..Default::default()
                }),
                http_response: Some(check_response::HttpResponse::DeniedResponse(
                    DeniedHttpResponse {
                        status: Some(HttpStatus { code: 403 }),
                        headers: vec![header("x-auth-reason", "grpc-nope")],
                        body: GRPC_DENY_BODY.to_owned(),
                    },
                )),
                ..Default::default()
            }
        } else {
            CheckResponse {
                status: Some(RpcStatus::default()),
                http_response: Some(check_response::HttpResponse::OkResponse(OkHttpResponse {
                    headers: vec![header("x-user", "grpc-alice")],
                    ..Default::default()
                })),
                ..Default::default()
            }
        };
        Ok(tonic::Response::new(response))
    }
}

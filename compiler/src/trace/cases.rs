//! Route tests: each case is a request and what should become of it, checked with the
//! tracer; coverage counts the routes (as `routes` lists them) that some case reached.
//!
//! Test files are read by [`crate::front::cases`]. The configuration is compiled once and
//! every case is replayed through one [`Tracer`] ([`Tracer::brief`]: the outcome without
//! describing every route that misses).

use std::collections::BTreeSet;

use serde::Serialize;

use super::rows::{rows, RouteRow};
use super::{request_for_url, Backend, Brief, Outcome, Tracer};
use crate::ir::{Ir, SourceRef};
use crate::matcher::{Request, Table};
use crate::source::{Sources, Span};

/// One test: a request and its expectations.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RouteCase {
    pub name: String,
    /// The test's `name` in its file.
    pub span: Span,
    pub input: CaseInput,
    pub expect: Expect,
}

/// The request of a test.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct CaseInput {
    pub method: String,
    pub url: Option<String>,
    pub authority: Option<String>,
    pub path: Option<String>,
    pub tls: bool,
    pub sni: Option<String>,
    pub port: Option<u16>,
    pub headers: Vec<(String, String)>,
    /// 0–99: which member of a canary split takes the request (Envoy's random number
    /// modulo 100); without it, any member may satisfy the expectations.
    pub random_value: Option<u32>,
}

/// What should become of the request; unset fields are not checked.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Expect {
    /// The Mapping that takes the request: `namespace/name` or `name`.
    pub mapping: Option<String>,
    /// The upstream, `host:port`, `host`, or the Service's short name.
    pub service: Option<String>,
    pub cluster: Option<String>,
    /// The path (and query) the upstream receives.
    pub path: Option<String>,
    /// The `Host` the upstream receives.
    pub host: Option<String>,
    /// The status Envoy answers itself with (redirects, direct responses, 404).
    pub status: Option<u32>,
    /// A redirect's `Location`.
    pub location: Option<String>,
    /// No route takes the request.
    pub no_route: bool,
}

/// One expectation that did not hold.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Mismatch {
    pub field: &'static str,
    pub expected: String,
    pub actual: String,
}

/// The result of one test.
#[derive(Clone, Debug, Serialize)]
pub struct CaseResult {
    pub name: String,
    pub span: Span,
    /// Empty when the test passed.
    pub mismatches: Vec<Mismatch>,
    /// The request could not be built (a bad URL).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub outcome: Option<Outcome>,
}

impl CaseResult {
    pub fn passed(&self) -> bool {
        self.mismatches.is_empty() && self.error.is_none()
    }
}

/// Routes reached, out of all routes.
#[derive(Clone, Debug, Serialize)]
pub struct Coverage {
    pub total: usize,
    pub exercised: usize,
    /// The routes no test reached, as `routes` lists them.
    pub missed: Vec<RouteRow>,
}

impl Coverage {
    pub fn percent(&self) -> f64 {
        if self.total == 0 {
            100.0
        } else {
            100.0 * self.exercised as f64 / self.total as f64
        }
    }
}

/// Every test's result and the coverage.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub results: Vec<CaseResult>,
    pub coverage: Coverage,
}

impl Report {
    pub fn failed(&self) -> usize {
        self.results.iter().filter(|r| !r.passed()).count()
    }
}

/// Runs every case through `table`.
pub fn run(table: &Table, ir: &Ir, sources: &Sources, cases: &[RouteCase]) -> Report {
    let tracer = Tracer::new(table, ir);
    let mut reached: BTreeSet<(String, String)> = BTreeSet::new();
    let results = cases
        .iter()
        .map(|c| {
            let req = match request(table, &c.input) {
                Ok(r) => r,
                Err(e) => {
                    return CaseResult {
                        name: c.name.clone(),
                        span: c.span,
                        mismatches: Vec::new(),
                        error: Some(e),
                        outcome: None,
                    }
                }
            };
            let brief = tracer.brief(&req);
            if let Some(vh) = &brief.virtual_host {
                for t in &brief.taken {
                    reached.insert((vh.clone(), t.ir_route.clone()));
                }
            }
            CaseResult {
                name: c.name.clone(),
                span: c.span,
                mismatches: check(&c.expect, c.input.random_value, &brief),
                error: None,
                outcome: Some(brief.outcome),
            }
        })
        .collect();
    Report {
        results,
        coverage: coverage(ir, sources, &reached),
    }
}

fn request(table: &Table, input: &CaseInput) -> Result<Request, String> {
    let mut req = match (&input.url, &input.authority, &input.path) {
        (Some(url), _, _) => request_for_url(table, &input.method, url, input.headers.clone())
            .map_err(|e| e.to_string())?,
        (None, Some(authority), Some(path)) => {
            let scheme = if input.tls { "https" } else { "http" };
            let path = if path.starts_with('/') {
                path.clone()
            } else {
                format!("/{path}")
            };
            let mut r = request_for_url(
                table,
                &input.method,
                &format!("{scheme}://{authority}{path}"),
                input.headers.clone(),
            )
            .map_err(|e| e.to_string())?;
            // An authority's port is the Host header's, not a listener's.
            if input.port.is_none() {
                r.port = super::default_port(table, input.tls);
            }
            r
        }
        _ => return Err("the input needs `url`, or `authority` and `path`".to_owned()),
    };
    if let Some(p) = input.port {
        req.port = p;
    }
    if let Some(s) = &input.sni {
        req.sni = Some(s.clone());
    }
    Ok(req)
}

/// `namespace/name` or `name` against a Mapping reference.
fn names(expected: &str, s: &SourceRef) -> bool {
    match expected.split_once('/') {
        Some((ns, name)) => s.namespace == ns && s.name == name,
        None => s.name == expected,
    }
}

fn source_list(list: &[SourceRef]) -> String {
    if list.is_empty() {
        return "none".to_owned();
    }
    list.iter()
        .map(|s| format!("{}/{}", s.namespace, s.name))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether the upstream `service` (`host:port`) is what the test names.
fn same_service(expected: &str, service: &str) -> bool {
    let host = service.rsplit_once(':').map_or(service, |(h, _)| h);
    expected == service
        || expected == host
        || host.split('.').next() == Some(expected)
        || expected.trim_start_matches("https://") == service
}

/// The expectations that do not hold.
fn check(e: &Expect, random: Option<u32>, brief: &Brief) -> Vec<Mismatch> {
    let mut out = Vec::new();
    let mut mismatch = |field, expected: &str, actual: String| {
        out.push(Mismatch {
            field,
            expected: expected.to_owned(),
            actual,
        })
    };
    let outcome = &brief.outcome;
    let summary = outcome_summary(outcome);
    if e.no_route && outcome.is_routed() {
        mismatch("no_route", "no route", summary.clone());
    }
    if let Some(status) = e.status {
        match outcome.status() {
            Some(s) if s == status => {}
            _ => mismatch("status", &status.to_string(), summary.clone()),
        }
    }
    if let Some(loc) = &e.location {
        match outcome {
            Outcome::Redirect { location, .. } if location == loc => {}
            Outcome::Redirect { location, .. } => mismatch("location", loc, location.clone()),
            _ => mismatch("location", loc, summary.clone()),
        }
    }
    let wants_backend = e.service.is_some()
        || e.cluster.is_some()
        || e.path.is_some()
        || e.host.is_some()
        || (e.mapping.is_some() && matches!(outcome, Outcome::Forward { .. }));
    if let (Some(m), Outcome::Redirect { .. } | Outcome::Direct { .. }) = (&e.mapping, outcome) {
        let sources: Vec<SourceRef> = brief.taken.iter().flat_map(|t| t.sources.clone()).collect();
        if !sources.iter().any(|s| names(m, s)) {
            mismatch("mapping", m, source_list(&sources));
        }
    }
    if !wants_backend {
        return out;
    }
    let Outcome::Forward { backends } = outcome else {
        for (field, v) in [
            ("mapping", &e.mapping),
            ("service", &e.service),
            ("cluster", &e.cluster),
            ("path", &e.path),
            ("host", &e.host),
        ] {
            if let Some(v) = v {
                mismatch(field, v, summary.clone());
            }
        }
        return out;
    };
    let candidates: Vec<&Backend> = match random {
        Some(r) => pick(backends, r).into_iter().collect(),
        None => backends.iter().collect(),
    };
    let misses = |b: &Backend| {
        let mut m: Vec<(&'static str, &String, String)> = Vec::new();
        if let Some(v) = &e.mapping {
            if !b.source.as_ref().is_some_and(|s| names(v, s)) {
                m.push(("mapping", v, source_list(b.source.as_slice())));
            }
        }
        if let Some(v) = &e.service {
            let actual = b.service.clone().unwrap_or_else(|| b.cluster.clone());
            if !same_service(v, &actual) {
                m.push(("service", v, actual));
            }
        }
        if let Some(v) = &e.cluster {
            if *v != b.cluster {
                m.push(("cluster", v, b.cluster.clone()));
            }
        }
        if let Some(v) = &e.path {
            if *v != b.path {
                m.push(("path", v, b.path.clone()));
            }
        }
        if let Some(v) = &e.host {
            if *v != b.host {
                m.push(("host", v, b.host.clone()));
            }
        }
        m
    };
    // Passes when one candidate meets every expectation; else the closest one is shown.
    let all: Vec<_> = candidates.iter().map(|b| (b, misses(b))).collect();
    if all.iter().any(|(_, m)| m.is_empty()) {
        return out;
    }
    if let Some((b, m)) = all.iter().min_by_key(|(_, m)| m.len()) {
        for (field, expected, actual) in m {
            let share = if b.percent < 100.0 {
                format!(" ({}% of requests)", b.percent)
            } else {
                String::new()
            };
            mismatch(field, expected, format!("{actual}{share}"));
        }
    }
    out
}

/// The backend a request with Envoy's random number `r` (mod 100) reaches: backends take
/// consecutive shares in order, as the cumulative fractions of a canary's routes do.
fn pick(backends: &[Backend], r: u32) -> Option<&Backend> {
    let r = f64::from(r % 100);
    let mut upto = 0.0;
    for b in backends {
        upto += b.percent;
        if r < upto - 1e-9 {
            return Some(b);
        }
    }
    backends.last()
}

fn outcome_summary(o: &Outcome) -> String {
    match o {
        Outcome::Forward { backends } => {
            let list: Vec<String> = backends
                .iter()
                .map(|b| {
                    let target = b.service.clone().unwrap_or_else(|| b.cluster.clone());
                    if b.percent < 100.0 {
                        format!("{target} ({}%)", b.percent)
                    } else {
                        target
                    }
                })
                .collect();
            format!("forwarded to {}", list.join(", "))
        }
        Outcome::Redirect {
            status, location, ..
        } => format!("{status} redirect to {location}"),
        Outcome::Direct { status, .. } => format!("direct response {status}"),
        Outcome::NoRoute { .. } => "no route (404)".to_owned(),
        Outcome::NoVirtualHost { .. } => "no virtual host (404)".to_owned(),
        Outcome::NoListener { port } => format!("nothing listens on port {port}"),
        Outcome::NoFilterChain => "no filter chain takes the connection".to_owned(),
        Outcome::BadRequest { status, reason } => format!("refused with {status}: {reason}"),
        Outcome::TlsRefused { reason } => format!("TLS handshake fails: {reason}"),
        Outcome::Tcp { .. } => "proxied as TCP".to_owned(),
        Outcome::Unknown { what } => format!("not predicted: {what}"),
    }
}

/// Every route of every virtual host a listener serves, less those reached.
fn coverage(ir: &Ir, sources: &Sources, reached: &BTreeSet<(String, String)>) -> Coverage {
    let served: BTreeSet<&str> = ir
        .listeners
        .iter()
        .flat_map(|l| &l.chains)
        .flat_map(|c| c.virtual_hosts.iter().map(String::as_str))
        .collect();
    let rows: Vec<RouteRow> = rows(ir, sources)
        .into_iter()
        .filter(|r| served.contains(r.ids.0.as_str()))
        .collect();
    let total = rows.len();
    let missed: Vec<RouteRow> = rows
        .into_iter()
        .filter(|r| !reached.contains(&r.ids))
        .collect();
    Coverage {
        total,
        exercised: total - missed.len(),
        missed,
    }
}

//! The tracer: replays one request through the routing table the back end emitted and says
//! where it goes, and why every other route of its virtual host does not take it.
//!
//! It walks a [`Table`] (decoded from the emitted Listeners and RouteConfigurations, see
//! [`crate::envoy::table`]) with Envoy's rules from [`crate::matcher`]: the listener by
//! port, the filter chain by SNI and transport, the connection manager (path normalisation,
//! `x-forwarded-proto`), the virtual host by domain, then the routes in order. The IR is
//! read only to name what a route came from (the Mappings and their positions) and the
//! service behind a cluster; it never decides anything.
//!
//! **Architecture invariant:** the tracer knows no proto and no YAML. Whatever it predicts,
//! it predicts from what Envoy is sent.

use std::collections::HashMap;

use serde::Serialize;

use crate::envoy::table::route_origin;
use crate::ir::{Ir, SourceRef};
use crate::matcher::{
    path_only, select_virtual_host, Action, ChainPick, DomainPick, HeaderCond, HostRewrite, Miss,
    PathCond, QueryCond, Redirect, RedirectPath, Request, Route, Routed, Serves, Table, ValueTest,
};

/// Everything the tracer found, step by step.
#[derive(Clone, Debug, Serialize)]
pub struct Trace {
    pub request: Request,
    /// The listener on the request's port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listener: Option<ListenerStep>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chain: Option<ChainStep>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection_manager: Option<HcmStep>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub virtual_host: Option<VirtualHostStep>,
    /// Every route of the virtual host, in evaluation order, with its verdict.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<RouteVerdict>,
    pub outcome: Outcome,
    /// When no route takes the request: the routes it came closest to (1-based), nearest
    /// first (the path matched but another condition failed; then the longest shared
    /// path prefix).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub nearest: Vec<usize>,
    /// When the request is not routed: Mappings that would have taken it but were left out
    /// of the configuration ([`left_out::left_out`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub left_out: Vec<left_out::LeftOut>,
}

/// The listener step.
#[derive(Clone, Debug, Serialize)]
pub struct ListenerStep {
    pub name: String,
    pub port: u16,
    /// The Listener resource, or `None` for a default listener.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<SourceRef>,
}

/// The filter chain step.
#[derive(Clone, Debug, Serialize)]
pub struct ChainStep {
    pub name: String,
    pub pick: ChainPick,
    /// The chain terminates TLS.
    pub terminates_tls: bool,
}

/// What the connection manager makes of the request before routing.
#[derive(Clone, Debug, Serialize)]
pub struct HcmStep {
    pub route_config: String,
    /// `x-forwarded-proto` as the routes see it.
    pub forwarded_proto: String,
    /// The path after `normalize_path`, when it differs from the request's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub normalized_path: Option<String>,
    /// The HTTP filters in order (auth and rate limiting run before the router).
    pub http_filters: Vec<String>,
}

/// The virtual host step.
#[derive(Clone, Debug, Serialize)]
pub struct VirtualHostStep {
    pub name: String,
    pub domains: Vec<String>,
    pub pick: DomainPick,
    /// The Host resource, or `None` for the catch-all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<SourceRef>,
}

/// One route of the chosen virtual host and what it made of the request.
#[derive(Clone, Debug, Serialize)]
pub struct RouteVerdict {
    /// 1-based position in the virtual host.
    pub index: usize,
    pub name: String,
    /// The route's conditions in words.
    pub conditions: String,
    /// The Mappings the route came from (for a canary member, that member's).
    pub sources: Vec<SourceRef>,
    /// The route is the https redirect an insecure request gets (the Host's
    /// `requestPolicy.insecure.action: Redirect`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub https_redirect: bool,
    pub verdict: Verdict,
}

/// Why a route took the request or not.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Verdict {
    /// The route takes this share of such requests (100 unless a canary split).
    Taken { percent: f64 },
    /// The first condition the request fails.
    Missed { condition: String },
    /// The route would match, but an earlier route (1-based index) takes the request.
    Shadowed { by: usize },
}

/// Where the request ends.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Outcome {
    /// Proxied to these backends (several for a canary split).
    Forward { backends: Vec<Backend> },
    /// Envoy answers with a redirect.
    Redirect {
        route: usize,
        status: u16,
        location: String,
    },
    /// Envoy answers itself.
    Direct { route: usize, status: u32 },
    /// No route of the virtual host matches: 404.
    NoRoute { status: u16 },
    /// No virtual host takes the `Host`: 404.
    NoVirtualHost { status: u16 },
    /// Nothing listens on the port: the connection is refused.
    NoListener { port: u16 },
    /// No filter chain takes the connection: Envoy closes it.
    NoFilterChain,
    /// The connection manager refuses the request before routing (a fragment in the path,
    /// a byte that is not visible ASCII).
    BadRequest { status: u16, reason: String },
    /// The TLS handshake fails.
    TlsRefused { reason: String },
    /// A TCP listener: bytes are proxied as they are.
    Tcp { clusters: Vec<(String, u32)> },
    /// Something the tracer does not model; the prediction stops here.
    Unknown { what: String },
}

impl Outcome {
    /// Whether the request reaches a backend or a redirect (the trace command's exit code).
    pub fn is_routed(&self) -> bool {
        matches!(
            self,
            Outcome::Forward { .. } | Outcome::Redirect { .. } | Outcome::Tcp { .. }
        )
    }

    /// The HTTP status Envoy answers with itself, if it does.
    pub fn status(&self) -> Option<u32> {
        match self {
            Outcome::Redirect { status, .. }
            | Outcome::NoRoute { status }
            | Outcome::NoVirtualHost { status } => Some(u32::from(*status)),
            Outcome::Direct { status, .. } => Some(*status),
            Outcome::BadRequest { status, .. } => Some(u32::from(*status)),
            _ => None,
        }
    }
}

/// One backend of a forwarded request.
#[derive(Clone, Debug, Serialize)]
pub struct Backend {
    /// 1-based index of the route.
    pub route: usize,
    pub cluster: String,
    /// `host:port` of the upstream, from the IR cluster.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// The share of such requests this backend gets, in percent.
    pub percent: f64,
    /// The path the upstream receives (query included).
    pub path: String,
    /// The `Host` header the upstream receives.
    pub host: String,
    /// The Mapping that sends traffic here.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<SourceRef>,
}

/// A URL that cannot be traced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadUrl(pub String);

impl std::fmt::Display for BadUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadUrl {}

/// The request a client sends for `url` (`http://` or `https://`): `Host` is the URL's
/// authority as written, the SNI its host name (for https), and the port the URL's, else
/// the listener the scheme usually reaches ([`default_port`]).
pub fn request_for_url(
    table: &Table,
    method: &str,
    url: &str,
    headers: Vec<(String, String)>,
) -> Result<Request, BadUrl> {
    let (scheme, rest) = url.split_once("://").ok_or_else(|| {
        BadUrl(format!(
            "`{url}` is not a URL: expected http://host/path or https://host/path"
        ))
    })?;
    let tls = match scheme.to_ascii_lowercase().as_str() {
        "http" => false,
        "https" => true,
        other => {
            return Err(BadUrl(format!(
                "unsupported scheme `{other}`: expected http or https"
            )))
        }
    };
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_owned()),
        Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
        None => (rest, "/".to_owned()),
    };
    let path = path.split('#').next().unwrap_or("/").to_owned();
    if authority.is_empty() {
        return Err(BadUrl(format!("`{url}` has no host")));
    }
    let (host, port) = split_port(authority).map_err(|p| {
        BadUrl(format!(
            "`{p}` in `{url}` is not a port number or an IPv6 address in brackets"
        ))
    })?;
    // A `Host` header from the command line wins over the URL's.
    let mut headers = headers;
    let authority = match headers
        .iter()
        .position(|(k, _)| k.eq_ignore_ascii_case("host"))
    {
        Some(i) => headers.remove(i).1,
        None => authority.to_owned(),
    };
    Ok(Request {
        tls,
        sni: tls.then(|| host.to_owned()),
        port: port.unwrap_or_else(|| default_port(table, tls)),
        method: method.to_ascii_uppercase(),
        authority,
        path,
        headers,
    })
}

/// Host and port of an authority (`[v6]:port` included).
fn split_port(authority: &str) -> Result<(&str, Option<u16>), String> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        match rest.split_once(']') {
            Some((h, "")) => (h, None),
            Some((h, p)) => (h, Some(p.strip_prefix(':').ok_or_else(|| p.to_owned())?)),
            None => return Err(authority.to_owned()),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    match port {
        None => Ok((host, None)),
        Some(p) => p.parse().map(|p| (host, Some(p))).map_err(|_| p.to_owned()),
    }
}

/// The listener port a URL without a port reaches: Emissary's defaults, 8080 for
/// cleartext and 8443 for TLS, when the table listens there; else the first listener that
/// serves that transport; else the default.
pub fn default_port(table: &Table, tls: bool) -> u16 {
    let default = if tls { 8443 } else { 8080 };
    if table.listener_on(default).is_some() {
        return default;
    }
    table
        .listeners
        .iter()
        .find(|l| {
            l.chains
                .iter()
                .any(|c| matches!(c.serves, Serves::Http(_)) && (c.tls.is_some() == tls))
        })
        .map_or(default, |l| l.port)
}

/// Names what routes and clusters came from, from the IR.
struct Origins<'a> {
    ir: &'a Ir,
    routes: HashMap<(&'a str, &'a str), &'a crate::ir::Route>,
}

impl<'a> Origins<'a> {
    fn new(ir: &'a Ir) -> Origins<'a> {
        let mut routes = HashMap::new();
        for vh in &ir.virtual_hosts {
            for r in vh.routes.iter() {
                routes.insert((vh.name.as_str(), r.name.as_str()), r);
            }
        }
        Origins { ir, routes }
    }

    /// The Mappings of an Envoy route of virtual host `vh`.
    fn sources(&self, vh: &str, route: &str) -> Vec<SourceRef> {
        let o = route_origin(route);
        let Some(r) = self.routes.get(&(vh, o.ir_route)) else {
            return Vec::new();
        };
        match (o.member, &r.action) {
            (Some(m), crate::ir::RouteAction::Forward(f)) => f
                .clusters
                .get(m)
                .map(|c| vec![c.source.clone()])
                .unwrap_or_else(|| r.sources.clone()),
            _ => r.sources.clone(),
        }
    }

    /// The Mapping behind `cluster` on an Envoy route.
    fn source_of_cluster(&self, vh: &str, route: &str, cluster: &str) -> Option<SourceRef> {
        let o = route_origin(route);
        let r = self.routes.get(&(vh, o.ir_route))?;
        match &r.action {
            crate::ir::RouteAction::Forward(f) => {
                let members = &f.clusters;
                o.member
                    .and_then(|m| members.get(m))
                    .or_else(|| members.iter().find(|c| c.cluster == cluster))
                    .map(|c| c.source.clone())
            }
            crate::ir::RouteAction::Redirect(_) => r.sources.first().cloned(),
        }
    }

    fn service(&self, cluster: &str) -> Option<String> {
        self.ir
            .clusters
            .get(cluster)
            .map(|c| format!("{}:{}", c.host, c.port))
    }
}

/// Replays `req` through `table`; `ir` names the origins. To trace many requests through
/// one configuration, build a [`Tracer`] once.
pub fn trace(table: &Table, ir: &Ir, req: &Request) -> Trace {
    Tracer::new(table, ir).trace(req)
}

/// A table and what names its origins, ready to trace any number of requests.
pub struct Tracer<'a> {
    table: &'a Table,
    origins: Origins<'a>,
}

/// Where a request ends up, without the verdict of every route (what `test` needs).
#[derive(Clone, Debug, Serialize)]
pub struct Brief {
    pub outcome: Outcome,
    /// The virtual host chosen, by name.
    pub virtual_host: Option<String>,
    /// The routes that take the request (1-based), with the IR route each came from.
    pub taken: Vec<TakenRoute>,
}

/// A route that takes (a share of) the request.
#[derive(Clone, Debug, Serialize)]
pub struct TakenRoute {
    pub index: usize,
    /// The IR route it was emitted for (`routes` lists those).
    pub ir_route: String,
    pub percent: f64,
    /// The Mappings it came from.
    pub sources: Vec<SourceRef>,
}

/// How far the request got before routing: the chosen virtual host's routes and the
/// request as the router sees it, or the outcome that ended it earlier.
struct Reached<'t, 'r> {
    vh: &'t crate::matcher::VirtualHost,
    routed: Routed<'r>,
    xfp: String,
}

impl<'a> Tracer<'a> {
    pub fn new(table: &'a Table, ir: &'a Ir) -> Tracer<'a> {
        Tracer {
            table,
            origins: Origins::new(ir),
        }
    }

    /// The full trace: every step, and every route's verdict.
    pub fn trace(&self, req: &Request) -> Trace {
        let mut t = Trace {
            request: req.clone(),
            listener: None,
            chain: None,
            connection_manager: None,
            virtual_host: None,
            routes: Vec::new(),
            outcome: Outcome::NoListener { port: req.port },
            nearest: Vec::new(),
            left_out: Vec::new(),
        };
        let reached = match self.reach(req, Some(&mut t)) {
            Ok(r) => r,
            Err(outcome) => {
                t.outcome = outcome;
                return t;
            }
        };
        let vh = reached.vh;
        let verdicts = route_verdicts(&vh.routes, &reached.routed);
        let mut taken: Vec<(usize, f64)> = Vec::new();
        for (i, (r, v)) in vh.routes.iter().zip(&verdicts).enumerate() {
            if let Verdict::Taken { percent } = v {
                taken.push((i, *percent));
            }
            t.routes.push(RouteVerdict {
                index: i + 1,
                name: r.name.clone(),
                conditions: describe_conditions(r),
                sources: self.origins.sources(&vh.name, &r.name),
                https_redirect: route_origin(&r.name).https_redirect,
                verdict: v.clone(),
            });
        }
        t.outcome = outcome(
            &vh.name,
            &vh.routes,
            &taken,
            &reached.routed,
            req,
            &reached.xfp,
            &self.origins,
        );
        if matches!(t.outcome, Outcome::NoRoute { .. }) {
            t.nearest = nearest(&vh.routes, &reached.routed);
        }
        t
    }

    /// Where the request ends, computed without describing the routes that miss.
    pub fn brief(&self, req: &Request) -> Brief {
        let reached = match self.reach(req, None) {
            Ok(r) => r,
            Err(outcome) => {
                return Brief {
                    outcome,
                    virtual_host: None,
                    taken: Vec::new(),
                }
            }
        };
        let vh = reached.vh;
        let taken = taken_routes(&vh.routes, &reached.routed);
        Brief {
            outcome: outcome(
                &vh.name,
                &vh.routes,
                &taken,
                &reached.routed,
                req,
                &reached.xfp,
                &self.origins,
            ),
            virtual_host: Some(vh.name.clone()),
            taken: taken
                .iter()
                .map(|&(i, percent)| TakenRoute {
                    index: i + 1,
                    ir_route: route_origin(&vh.routes[i].name).ir_route.to_owned(),
                    percent,
                    sources: self.origins.sources(&vh.name, &vh.routes[i].name),
                })
                .collect(),
        }
    }

    /// Listener, chain, connection manager and virtual host; each step is written into
    /// `t` when given. `Err` is the outcome when the request stops before the routes.
    fn reach<'r>(
        &self,
        req: &'r Request,
        mut t: Option<&mut Trace>,
    ) -> Result<Reached<'a, 'r>, Outcome> {
        let table = self.table;
        let ir = self.origins.ir;
        let listener = table
            .listener_on(req.port)
            .ok_or(Outcome::NoListener { port: req.port })?;
        if let Some(t) = t.as_deref_mut() {
            t.listener = Some(ListenerStep {
                name: listener.name.clone(),
                port: listener.port,
                source: ir
                    .listeners
                    .iter()
                    .find(|l| l.name == listener.name)
                    .and_then(|l| l.source.clone()),
            });
        }
        if listener.proxy_protocol {
            return Err(Outcome::Unknown {
                what: "the listener expects the PROXY protocol header, which a plain request lacks"
                    .to_owned(),
            });
        }
        let (ci, pick) = listener
            .chain_for(req.tls, req.sni.as_deref())
            .ok_or(Outcome::NoFilterChain)?;
        let chain = &listener.chains[ci];
        if let Some(t) = t.as_deref_mut() {
            t.chain = Some(ChainStep {
                name: chain.name.clone(),
                pick,
                terminates_tls: chain.tls.is_some(),
            });
        }
        match (&chain.tls, req.tls) {
            (None, true) => return Err(Outcome::TlsRefused {
                reason: format!(
                    "no filter chain terminates TLS for SNI `{}`; the cleartext chain takes the connection and answers in plain HTTP",
                    req.sni.as_deref().unwrap_or("")
                ),
            }),
            (Some(_), false) => return Err(Outcome::TlsRefused {
                reason: "the chain expects TLS but the request is cleartext".to_owned(),
            }),
            (Some(term), true) if term.require_client_certificate => return Err(Outcome::TlsRefused {
                reason: "the chain requires a client certificate (`cert_required`), which the traced request does not present".to_owned(),
            }),
            _ => {}
        }
        let hcm = match &chain.serves {
            Serves::Http(h) => h,
            Serves::Tcp { clusters } => {
                return Err(Outcome::Tcp {
                    clusters: clusters.clone(),
                })
            }
            Serves::Other { filters } => {
                return Err(Outcome::Unknown {
                    what: format!("a filter chain with filters {}", filters.join(", ")),
                })
            }
        };
        // Envoy 1.40 answers 400 to a path with a fragment unless the runtime flag
        // `http_reject_path_with_fragment` is off (RFC 3986 section 3.5: a fragment is
        // never sent).
        if req.path.contains('#') {
            return Err(Outcome::BadRequest {
                status: 400,
                reason: "the path has a fragment (`#`), which Envoy refuses".to_owned(),
            });
        }
        // The HTTP/1 codec refuses a request target with a byte outside visible ASCII
        // (RFC 9112 section 3.2: such bytes are sent percent-encoded).
        if req.path.bytes().any(|b| b <= b' ' || b >= 0x7f) {
            return Err(Outcome::BadRequest {
                status: 400,
                reason: "the path has a byte that is not visible ASCII; send it percent-encoded"
                    .to_owned(),
            });
        }
        let routed = hcm.prepare(req);
        let xfp = routed
            .header("x-forwarded-proto")
            .unwrap_or_else(|| "http".to_owned());
        if let Some(t) = t.as_deref_mut() {
            t.connection_manager = Some(HcmStep {
                route_config: hcm.route_config.clone(),
                forwarded_proto: xfp.clone(),
                normalized_path: (routed.path != req.path).then(|| routed.path.clone()),
                http_filters: hcm.http_filters.clone(),
            });
        }
        let rc = table
            .route_configs
            .get(&hcm.route_config)
            .ok_or_else(|| Outcome::Unknown {
                what: format!("route configuration `{}` was not emitted", hcm.route_config),
            })?;
        let (vi, dpick) = select_virtual_host(&rc.virtual_hosts, &req.authority)
            .ok_or(Outcome::NoVirtualHost { status: 404 })?;
        let vh = &rc.virtual_hosts[vi];
        if let Some(t) = t {
            t.virtual_host = Some(VirtualHostStep {
                name: vh.name.clone(),
                domains: vh.domains.clone(),
                pick: dpick,
                source: ir
                    .virtual_hosts
                    .iter()
                    .find(|v| v.name == vh.name)
                    .and_then(|v| v.source.clone()),
            });
        }
        Ok(Reached { vh, routed, xfp })
    }
}

/// The three routes a request that no route takes came closest to, nearest first.
fn nearest(routes: &[Route], req: &Routed<'_>) -> Vec<usize> {
    let path = path_only(&req.path);
    let mut scored: Vec<(usize, usize)> = routes
        .iter()
        .enumerate()
        .filter_map(|(i, r)| {
            let score = match r.first_miss(req, 0)? {
                // The path matched: closer the more conditions held.
                Miss::Header { index } => 1_000_000 + index,
                Miss::Query { index } => 1_000_000 + r.headers.len() + index,
                Miss::Fraction => 1_000_000 + r.headers.len() + r.query.len(),
                Miss::Path => match &r.path {
                    PathCond::Prefix(p) | PathCond::Exact(p) => path
                        .bytes()
                        .zip(p.bytes())
                        .take_while(|(a, b)| a.eq_ignore_ascii_case(b))
                        .count(),
                    _ => 0,
                },
            };
            // A shared `/` alone says nothing.
            (score > 1).then_some((i, score))
        })
        .collect();
    scored.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    scored.into_iter().take(3).map(|(i, _)| i + 1).collect()
}

/// The routes that take the request and their shares, stopping at the first route that
/// takes whatever is left.
fn taken_routes(routes: &[Route], req: &Routed<'_>) -> Vec<(usize, f64)> {
    let mut taken = Vec::new();
    // Below `covered` (ppm), requests went to earlier routes.
    let mut covered = 0u32;
    for (i, r) in routes.iter().enumerate() {
        if !matches!(r.first_miss(req, 0), None | Some(Miss::Fraction)) {
            continue;
        }
        let upto = r.fraction_ppm.unwrap_or(1_000_000);
        if upto > covered {
            taken.push((i, f64::from(upto - covered) / 10_000.0));
            covered = upto;
        }
        if covered >= 1_000_000 {
            break;
        }
    }
    taken
}

/// The verdict of every route: first match wins; a canary split is one random number per
/// request compared with each route's cumulative share.
fn route_verdicts(routes: &[Route], req: &Routed<'_>) -> Vec<Verdict> {
    let misses: Vec<Option<Miss>> = routes.iter().map(|r| r.first_miss(req, 0)).collect();
    // Which routes match when the fraction is left aside.
    let matches_aside: Vec<bool> = misses
        .iter()
        .map(|m| matches!(m, None | Some(Miss::Fraction)))
        .collect();
    // Shares: for each random number (ppm), the first route that takes it. Only the
    // thresholds matter, so walk them.
    let mut share = vec![0u32; routes.len()];
    let mut thresholds: Vec<u32> = routes
        .iter()
        .zip(&matches_aside)
        .filter(|(_, m)| **m)
        .filter_map(|(r, _)| r.fraction_ppm)
        .collect();
    thresholds.push(0);
    thresholds.push(1_000_000);
    thresholds.sort_unstable();
    thresholds.dedup();
    for w in thresholds.windows(2) {
        let (lo, hi) = (w[0], w[1]);
        let winner = routes
            .iter()
            .zip(&matches_aside)
            .position(|(r, m)| *m && r.fraction_ppm.is_none_or(|f| lo < f));
        if let Some(i) = winner {
            share[i] += hi - lo;
        }
    }
    let mut last_taken = None;
    routes
        .iter()
        .enumerate()
        .map(|(i, r)| {
            if share[i] > 0 {
                last_taken = Some(i);
                return Verdict::Taken {
                    percent: f64::from(share[i]) / 10_000.0,
                };
            }
            if matches_aside[i] {
                // Matches, but every request it would take went to an earlier route.
                if let Some(by) = last_taken {
                    return Verdict::Shadowed { by: by + 1 };
                }
                return Verdict::Missed {
                    condition: "its share of the traffic is 0%".to_owned(),
                };
            }
            Verdict::Missed {
                condition: describe_miss(r, misses[i].as_ref(), req),
            }
        })
        .collect()
}

fn outcome(
    vh: &str,
    routes: &[Route],
    taken: &[(usize, f64)],
    req: &Routed<'_>,
    original: &Request,
    xfp: &str,
    origins: &Origins<'_>,
) -> Outcome {
    let Some(&(first, _)) = taken.first() else {
        return Outcome::NoRoute { status: 404 };
    };
    match &routes[first].action {
        Action::Redirect(rd) => Outcome::Redirect {
            route: first + 1,
            status: rd.status,
            location: location(rd, &routes[first], req, original, xfp),
        },
        Action::Direct { status } => Outcome::Direct {
            route: first + 1,
            status: *status,
        },
        Action::Unsupported { what } => Outcome::Unknown { what: what.clone() },
        Action::Forward(_) => {
            let mut backends = Vec::new();
            for &(i, percent) in taken {
                let Action::Forward(f) = &routes[i].action else {
                    continue;
                };
                let total: u32 = f.clusters.iter().map(|(_, w)| *w).sum();
                let consumed = routes[i].path_matches(&req.path).unwrap_or(0);
                let path = rewritten_path(
                    &req.path,
                    consumed,
                    f.prefix_rewrite.as_deref(),
                    f.regex_rewrite.as_ref(),
                );
                for (cluster, w) in &f.clusters {
                    let host = match &f.host_rewrite {
                        HostRewrite::Keep => original.authority.clone(),
                        HostRewrite::Literal(h) => h.clone(),
                        HostRewrite::Auto => origins
                            .ir
                            .clusters
                            .get(cluster)
                            .map(|c| c.host.clone())
                            .unwrap_or_else(|| original.authority.clone()),
                    };
                    backends.push(Backend {
                        route: i + 1,
                        cluster: cluster.clone(),
                        service: origins.service(cluster),
                        percent: if total == 0 {
                            0.0
                        } else {
                            percent * f64::from(*w) / f64::from(total)
                        },
                        path: path.clone(),
                        host,
                        source: origins.source_of_cluster(vh, &routes[i].name, cluster),
                    });
                }
            }
            Outcome::Forward { backends }
        }
    }
}

/// The `:path` sent upstream: the matched part replaced by `prefix_rewrite`, or the path
/// (without query) through `regex_rewrite`; the query is kept.
fn rewritten_path(
    path: &str,
    consumed: usize,
    prefix_rewrite: Option<&str>,
    regex_rewrite: Option<&(crate::matcher::Pattern, String)>,
) -> String {
    if let Some((re, sub)) = regex_rewrite {
        let p = path_only(path);
        return format!("{}{}", re.replace_all(p, sub), &path[p.len()..]);
    }
    match prefix_rewrite {
        Some(prefix) => format!("{prefix}{}", &path[consumed.min(path.len())..]),
        None => path.to_owned(),
    }
}

/// Envoy's redirect URL (`Http::Utility::newUri`): the scheme (https when switched, else
/// the request's `x-forwarded-proto`), the host (the redirect's, or the request's with a default port dropped
/// when the scheme changes), the port, and the path with its rewrite and query.
fn location(
    rd: &Redirect,
    route: &Route,
    req: &Routed<'_>,
    original: &Request,
    xfp: &str,
) -> String {
    // Without a scheme of its own, the redirect keeps the request's as the router sees it:
    // `x-forwarded-proto` (a trusted hop's, or the connection's), not the connection's.
    let scheme = match (&rd.scheme, rd.https) {
        (Some(s), _) => s.as_str(),
        (None, true) => "https",
        (None, false) => xfp,
    };
    let port = rd.port.map(|p| format!(":{p}")).unwrap_or_default();
    let host = match &rd.host {
        Some(h) => h.clone(),
        None => {
            let authority = original.authority.as_str();
            match authority.rfind(':').filter(|_| !authority.ends_with(']')) {
                Some(end) => {
                    let request_port = &authority[end..];
                    let mut strip = !port.is_empty();
                    if scheme != xfp {
                        strip |= xfp == "https" && request_port == ":443";
                        strip |= xfp == "http" && request_port == ":80";
                    }
                    if strip {
                        authority[..end].to_owned()
                    } else {
                        authority.to_owned()
                    }
                }
                None => authority.to_owned(),
            }
        }
    };
    let consumed = route.path_matches(&req.path).unwrap_or(0);
    let mut path = match &rd.path {
        Some(RedirectPath::Path(p)) => {
            if p.contains('?') {
                p.clone()
            } else {
                match crate::matcher::query_of(&req.path) {
                    Some(q) => format!("{p}?{q}"),
                    None => p.clone(),
                }
            }
        }
        Some(RedirectPath::Prefix(p)) => rewritten_path(&req.path, consumed, Some(p), None),
        Some(RedirectPath::Regex(re, sub)) => {
            // Envoy keeps the path when the rewrite leaves nothing of it.
            let p = path_only(&req.path);
            match re.replace_all(p, sub) {
                r if r.is_empty() => req.path.clone(),
                r => format!("{r}{}", &req.path[p.len()..]),
            }
        }
        Some(RedirectPath::Unsupported(_)) | None => req.path.clone(),
    };
    if !path.starts_with('/') {
        path.insert(0, '/');
    }
    if rd.strip_query && !matches!(&rd.path, Some(RedirectPath::Path(p)) if p.contains('?')) {
        path.truncate(path_only(&path).len());
    }
    format!("{scheme}://{host}{port}{path}")
}

/// The route's conditions in words, path first.
pub fn describe_conditions(r: &Route) -> String {
    let mut parts = vec![describe_path(r)];
    parts.extend(r.headers.iter().map(describe_header));
    parts.extend(r.query.iter().map(describe_query));
    if let Some(f) = r.fraction_ppm {
        parts.push(format!(
            "{}% of requests (cumulative)",
            f64::from(f) / 10_000.0
        ));
    }
    parts.join(", ")
}

fn describe_path(r: &Route) -> String {
    let case = if r.case_sensitive || matches!(r.path, PathCond::Regex(_)) {
        ""
    } else {
        " (any case)"
    };
    match &r.path {
        PathCond::Prefix(p) => format!("path starts with `{p}`{case}"),
        PathCond::Exact(p) => format!("path is `{p}`{case}"),
        PathCond::Regex(re) => format!("path matches `{}`", re.text),
        PathCond::Unsupported(what) => format!("path matcher not modelled ({what})"),
    }
}

fn describe_test(what: &str, test: &ValueTest) -> String {
    let case = |ic: &bool| if *ic { " (any case)" } else { "" };
    match test {
        ValueTest::Exact { value, ignore_case } => {
            format!("{what} is `{value}`{}", case(ignore_case))
        }
        ValueTest::Prefix { value, ignore_case } => {
            format!("{what} starts with `{value}`{}", case(ignore_case))
        }
        ValueTest::Suffix { value, ignore_case } => {
            format!("{what} ends with `{value}`{}", case(ignore_case))
        }
        ValueTest::Contains { value, ignore_case } => {
            format!("{what} contains `{value}`{}", case(ignore_case))
        }
        ValueTest::Regex { pattern } => format!("{what} matches `{}`", pattern.text),
        ValueTest::Present { present: true } => format!("{what} is present"),
        ValueTest::Present { present: false } => format!("{what} is absent"),
        ValueTest::Unsupported { what: w } => format!("{what}: matcher not modelled ({w})"),
    }
}

fn header_label(name: &str) -> String {
    match name {
        ":authority" => "Host".to_owned(),
        ":method" => "method".to_owned(),
        n => format!("header `{n}`"),
    }
}

fn describe_header(h: &HeaderCond) -> String {
    let text = describe_test(&header_label(&h.name), &h.test);
    if h.invert {
        format!("not ({text})")
    } else {
        text
    }
}

fn describe_query(q: &QueryCond) -> String {
    describe_test(&format!("query parameter `{}`", q.name), &q.test)
}

/// Why a request fails a condition, with what the request has.
fn describe_miss(r: &Route, miss: Option<&Miss>, req: &Routed<'_>) -> String {
    match miss {
        None => "matches".to_owned(),
        Some(Miss::Path) => format!(
            "{}; the path is `{}`",
            describe_path(r),
            path_only(&req.path)
        ),
        Some(Miss::Header { index }) => {
            let h = &r.headers[*index];
            let has = match req.header(&h.name) {
                Some(v) => format!("the request has `{v}`"),
                None => "the request has none".to_owned(),
            };
            format!("{}; {has}", describe_header(h))
        }
        Some(Miss::Query { index }) => {
            let q = &r.query[*index];
            let has = match req.query.iter().find(|(k, _)| *k == q.name) {
                Some((_, v)) => format!("the request has `{v}`"),
                None => "the request has none".to_owned(),
            };
            format!("{}; {has}", describe_query(q))
        }
        Some(Miss::Fraction) => "outside its share of the traffic".to_owned(),
    }
}

pub mod cases;
pub mod left_out;
pub mod rows;
#[cfg(test)]
mod tests;

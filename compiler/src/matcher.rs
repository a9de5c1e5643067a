//! The routing table as Envoy holds it, in plain types, and Envoy's rules for walking it.
//!
//! A [`Table`] is what the Envoy back end emitted, decoded back out of the protos
//! ([`crate::envoy::table`]): listeners and their filter chains, the connection manager of
//! each chain, route configurations, virtual hosts, and routes with their conditions and
//! actions. Nothing here is read from the Ambassador resources, so whatever walks the table
//! (the tracer in [`crate::trace`]) predicts what Envoy does with what it was sent.
//!
//! The rules are Envoy 1.40's, each with the behaviour it reproduces:
//! - a listener is chosen by port; a filter chain by SNI (exact name, then the longest
//!   `*.suffix`, then a chain without names), then by transport (`tls` or cleartext);
//! - the connection manager normalises the path (`normalize_path`: RFC 3986 dot segments,
//!   percent-encoded unreserved characters decoded) and sets `x-forwarded-proto` from the
//!   connection unless proxies in front are trusted;
//! - a virtual host is chosen by the lowercased `Host` (exact domain, then the longest
//!   `*suffix`, then the longest `prefix*`, then `*`); the port is part of the value;
//! - routes are tried in order, first match wins; path conditions see the path without its
//!   query; regexes match the whole value with RE2's semantics (bytes, Latin-1).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::OnceLock;

use serde::Serialize;

/// Every listener and route configuration, as Envoy would hold them.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Table {
    pub listeners: Vec<Listener>,
    /// Route configurations by name (what a connection manager names in `rds`).
    pub route_configs: BTreeMap<String, RouteConfig>,
}

/// A listener: where it listens and its filter chains in order.
#[derive(Clone, Debug, Serialize)]
pub struct Listener {
    pub name: String,
    pub address: String,
    pub port: u16,
    /// A TLS inspector reads the SNI and tells TLS from cleartext; without one, every
    /// connection counts as cleartext without SNI.
    pub tls_inspector: bool,
    /// The PROXY protocol header is expected before anything else.
    pub proxy_protocol: bool,
    pub chains: Vec<Chain>,
}

/// A filter chain: what connections it takes and what serves them.
#[derive(Clone, Debug, Serialize)]
pub struct Chain {
    pub name: String,
    /// `filter_chain_match.server_names`: exact names or `*.suffix`; empty takes any SNI.
    pub server_names: Vec<String>,
    /// `filter_chain_match.transport_protocol`: `tls`, `raw_buffer`, or empty for any.
    pub transport_protocol: String,
    /// TLS termination on this chain.
    pub tls: Option<Termination>,
    pub serves: Serves,
}

/// TLS termination settings a tracer needs.
#[derive(Clone, Debug, Serialize)]
pub struct Termination {
    /// SDS names of the certificates served.
    pub certificates: Vec<String>,
    /// Clients must present a certificate.
    pub require_client_certificate: bool,
}

/// What a filter chain does with a connection.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Serves {
    Http(Hcm),
    /// `tcp_proxy` to one cluster, or weighted clusters.
    Tcp {
        clusters: Vec<(String, u32)>,
    },
    /// Something this table does not model.
    Other {
        filters: Vec<String>,
    },
}

/// The settings of an HTTP connection manager that decide routing.
#[derive(Clone, Debug, Serialize)]
pub struct Hcm {
    /// The route configuration from RDS.
    pub route_config: String,
    pub use_remote_address: bool,
    pub xff_num_trusted_hops: u32,
    pub normalize_path: bool,
    pub merge_slashes: bool,
    /// The HTTP filters in order, by name.
    pub http_filters: Vec<String>,
}

/// One route configuration.
#[derive(Clone, Debug, Serialize)]
pub struct RouteConfig {
    pub name: String,
    pub virtual_hosts: Vec<VirtualHost>,
}

/// A virtual host and its routes in evaluation order.
#[derive(Clone, Debug, Serialize)]
pub struct VirtualHost {
    pub name: String,
    pub domains: Vec<String>,
    pub routes: Vec<Route>,
}

/// One Envoy route.
#[derive(Clone, Debug, Serialize)]
pub struct Route {
    pub name: String,
    pub path: PathCond,
    /// Path conditions compare case-sensitively (Envoy ignores this on a regex).
    pub case_sensitive: bool,
    pub headers: Vec<HeaderCond>,
    pub query: Vec<QueryCond>,
    /// `runtime_fraction`: the route takes the request when the request's random number,
    /// in parts per million, is below this.
    pub fraction_ppm: Option<u32>,
    pub action: Action,
}

/// The path condition.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum PathCond {
    Prefix(String),
    Exact(String),
    Regex(Pattern),
    /// A path specifier this table does not model (it never matches here).
    Unsupported(String),
}

/// A condition on a header (pseudo-headers `:authority`, `:method` and `:path` included).
#[derive(Clone, Debug, Serialize)]
pub struct HeaderCond {
    /// Lowercase.
    pub name: String,
    pub test: ValueTest,
    pub invert: bool,
}

/// A condition on a query parameter.
#[derive(Clone, Debug, Serialize)]
pub struct QueryCond {
    pub name: String,
    pub test: ValueTest,
}

/// How a header or query value is tested.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ValueTest {
    Exact {
        value: String,
        ignore_case: bool,
    },
    Prefix {
        value: String,
        ignore_case: bool,
    },
    Suffix {
        value: String,
        ignore_case: bool,
    },
    Contains {
        value: String,
        ignore_case: bool,
    },
    Regex {
        pattern: Pattern,
    },
    /// `present_match`: the header is there (`true`) or absent (`false`).
    Present {
        present: bool,
    },
    /// A matcher this table does not model (it never matches here).
    Unsupported {
        what: String,
    },
}

/// What a route does.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Action {
    // Boxed: a table holds a decoded route per Envoy route, and most of one was room for
    // the larger of these.
    Forward(Box<Forward>),
    Redirect(Box<Redirect>),
    Direct { status: u32 },
    Unsupported { what: String },
}

/// Proxy to a cluster, with the rewrites applied on the way.
#[derive(Clone, Debug, Serialize)]
pub struct Forward {
    /// The cluster, or the weighted clusters with their weights.
    pub clusters: Vec<(String, u32)>,
    pub prefix_rewrite: Option<String>,
    pub regex_rewrite: Option<(Pattern, String)>,
    pub host_rewrite: HostRewrite,
    /// Clusters that receive a copy of the request, with the share mirrored in percent.
    pub mirrors: Vec<(String, u32)>,
}

/// How the `Host` header sent upstream is rewritten.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum HostRewrite {
    Keep,
    Literal(String),
    /// `auto_host_rewrite`: the host name of the upstream endpoint.
    Auto,
}

/// A redirect answered by Envoy.
#[derive(Clone, Debug, Serialize)]
pub struct Redirect {
    pub https: bool,
    pub scheme: Option<String>,
    pub host: Option<String>,
    pub port: Option<u32>,
    pub path: Option<RedirectPath>,
    pub status: u16,
    pub strip_query: bool,
}

/// How a redirect rewrites the path.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum RedirectPath {
    Path(String),
    Prefix(String),
    Regex(Pattern, String),
    /// A path rewrite this table does not model.
    Unsupported(String),
}

/// An RE2 regular expression, compiled the first time it is matched, with the meaning
/// Envoy gives it ([`crate::re2::Regex`]: bytes, Latin-1, whole-value matches).
#[derive(Clone, Debug, Serialize)]
#[serde(into = "String")]
pub struct Pattern {
    pub text: String,
    /// Boxed: a compiled regex is large, and most patterns of a table are never compiled
    /// (a table's every route and condition carries the pattern's size).
    #[serde(skip)]
    compiled: OnceLock<Option<Box<crate::re2::Regex>>>,
}

impl From<Pattern> for String {
    fn from(p: Pattern) -> String {
        p.text
    }
}

impl Pattern {
    pub fn new(text: impl Into<String>) -> Pattern {
        Pattern {
            text: text.into(),
            compiled: OnceLock::new(),
        }
    }

    fn compiled(&self) -> Option<&crate::re2::Regex> {
        self.compiled
            .get_or_init(|| crate::re2::Regex::new(&self.text).ok().map(Box::new))
            .as_deref()
    }

    /// Whether the whole of `subject` matches (RE2's `FullMatch`). A pattern RE2 refuses
    /// matches nothing (Envoy would have refused the configuration).
    pub fn full_match(&self, subject: &str) -> bool {
        self.compiled()
            .is_some_and(|re| re.is_full_match(subject.as_bytes()))
    }

    /// Every match replaced by `substitution` (`\0`–`\9` name groups), as RE2's
    /// `GlobalReplace` does for Envoy's `regex_rewrite`.
    pub fn replace_all(&self, subject: &str, substitution: &str) -> String {
        match self.compiled() {
            Some(re) => String::from_utf8_lossy(&re.replace_all(subject.as_bytes(), substitution))
                .into_owned(),
            None => subject.to_owned(),
        }
    }
}

/// A request as it reaches a listener.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Request {
    /// The connection is TLS.
    pub tls: bool,
    /// The SNI the client sends (TLS only).
    pub sni: Option<String>,
    /// The listener port the connection reaches.
    pub port: u16,
    pub method: String,
    /// The `Host` header (`:authority`), port included when the client sends one.
    pub authority: String,
    /// The path with its query, as sent.
    pub path: String,
    /// Other headers, names lowercase, in order.
    pub headers: Vec<(String, String)>,
}

/// How a filter chain was chosen.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChainPick {
    /// The SNI equals one of the chain's names.
    ExactName(String),
    /// The SNI ends in the chain's `*.suffix`.
    WildcardName(String),
    /// The chain takes any SNI (and any connection without one).
    AnyName,
}

impl Listener {
    /// The filter chain Envoy gives a connection, and why; `None` when no chain takes it
    /// (Envoy closes the connection).
    pub fn chain_for(&self, tls: bool, sni: Option<&str>) -> Option<(usize, ChainPick)> {
        // Without a TLS inspector Envoy sees neither SNI nor TLS.
        let (tls, sni) = if self.tls_inspector {
            (tls, sni.filter(|s| tls && !s.is_empty()))
        } else {
            (false, None)
        };
        let transport = if tls { "tls" } else { "raw_buffer" };
        // Envoy's order of criteria: server name before transport protocol. Among chains
        // of the most specific name, one of the exact transport wins over one of any.
        let by_transport = |candidates: Vec<usize>| {
            candidates
                .iter()
                .copied()
                .find(|&i| self.chains[i].transport_protocol == transport)
                .or_else(|| {
                    candidates
                        .iter()
                        .copied()
                        .find(|&i| self.chains[i].transport_protocol.is_empty())
                })
        };
        if let Some(sni) = sni {
            let sni = sni.to_ascii_lowercase();
            let exact: Vec<usize> = (0..self.chains.len())
                .filter(|&i| self.chains[i].server_names.contains(&sni))
                .collect();
            if !exact.is_empty() {
                return by_transport(exact).map(|i| (i, ChainPick::ExactName(sni.clone())));
            }
            // `*.example.com` takes `a.example.com` and `a.b.example.com`; the longest wins.
            let mut rest = sni.as_str();
            while let Some(dot) = rest.find('.') {
                rest = &rest[dot..];
                let wildcard = format!("*{rest}");
                let hits: Vec<usize> = (0..self.chains.len())
                    .filter(|&i| self.chains[i].server_names.contains(&wildcard))
                    .collect();
                if !hits.is_empty() {
                    return by_transport(hits).map(|i| (i, ChainPick::WildcardName(wildcard)));
                }
                rest = &rest[1..];
            }
        }
        let any: Vec<usize> = (0..self.chains.len())
            .filter(|&i| self.chains[i].server_names.is_empty())
            .collect();
        by_transport(any).map(|i| (i, ChainPick::AnyName))
    }
}

/// How a virtual host was chosen.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "domain", rename_all = "snake_case")]
pub enum DomainPick {
    Exact(String),
    Suffix(String),
    Prefix(String),
    Any,
}

/// The virtual host Envoy picks for `authority`, by Envoy's domain rules: the lowercased
/// value equals a domain; else the longest `*suffix` (the `*` standing for at least one
/// character); else the longest `prefix*`; else `*`.
pub fn select_virtual_host(hosts: &[VirtualHost], authority: &str) -> Option<(usize, DomainPick)> {
    let host = authority.to_ascii_lowercase();
    let domains = || {
        hosts
            .iter()
            .enumerate()
            .flat_map(|(i, v)| v.domains.iter().map(move |d| (i, d.to_ascii_lowercase())))
    };
    if let Some((i, d)) = domains().find(|(_, d)| *d == host) {
        return Some((i, DomainPick::Exact(d)));
    }
    let best = |pick: &dyn Fn(&str) -> Option<usize>| {
        let mut best: Option<(usize, usize, String)> = None;
        for (i, d) in domains() {
            if let Some(len) = pick(&d) {
                if best.as_ref().is_none_or(|(_, l, _)| len > *l) {
                    best = Some((i, len, d));
                }
            }
        }
        best
    };
    let suffix = |d: &str| {
        let s = d.strip_prefix('*')?;
        (!s.is_empty() && host.len() > s.len() && host.ends_with(s)).then_some(s.len())
    };
    if let Some((i, _, d)) = best(&suffix) {
        return Some((i, DomainPick::Suffix(d)));
    }
    let prefix = |d: &str| {
        let p = d.strip_suffix('*')?;
        (!p.is_empty() && host.len() > p.len() && host.starts_with(p)).then_some(p.len())
    };
    if let Some((i, _, d)) = best(&prefix) {
        return Some((i, DomainPick::Prefix(d)));
    }
    domains()
        .find(|(_, d)| d == "*")
        .map(|(i, _)| (i, DomainPick::Any))
}

/// The path without its query or fragment, as Envoy's path conditions see it.
pub fn path_only(path: &str) -> &str {
    let end = path.find(['?', '#']).unwrap_or(path.len());
    &path[..end]
}

/// The query string (without `?`), if any.
pub fn query_of(path: &str) -> Option<&str> {
    let path = path.split('#').next().unwrap_or(path);
    path.split_once('?').map(|(_, q)| q)
}

/// Envoy's `normalize_path` (Chromium's URL path canonicalizer, `url::CanonicalizePath`):
/// percent-encoded unreserved characters decoded, other escapes kept exactly as written
/// (`%2f` stays lowercase), a backslash turned into `/`, spaces, controls, non-ASCII bytes
/// and ``"<>^`{|}`` escaped, and RFC 3986 dot segments (`.` and `..`, also written `%2e`)
/// resolved. Only the path is normalised; the query is kept as it
/// is. Checked against Envoy 1.40 by `tests/tests/agreement.rs`.
pub fn normalize_path(path: &str) -> String {
    let (p, rest) = match path.find(['?', '#']) {
        Some(i) => (&path[..i], &path[i..]),
        None => (path, ""),
    };
    // Decode unreserved escapes, uppercase the others.
    let bytes = p.as_bytes();
    let mut decoded = String::with_capacity(p.len());
    let mut i = 0;
    while i < bytes.len() {
        if let Some(v) = hex_escape(bytes, i) {
            let c = v as char;
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~') {
                decoded.push(c);
            } else {
                // The canonicalizer copies an escape it does not decode as it is.
                decoded.push_str(&p[i..i + 3]);
            }
            i += 3;
            continue;
        }
        // Chromium reads a backslash as a path separator in a standard URL.
        if bytes[i] == b'\\' {
            decoded.push('/');
            i += 1;
            continue;
        }
        // Bytes the canonicalizer escapes (`kPathCharLookup`'s ESCAPE class, uppercase hex).
        let b = bytes[i];
        if b <= b' '
            || b >= 0x7f
            || matches!(b, b'"' | b'<' | b'>' | b'^' | b'`' | b'{' | b'|' | b'}')
        {
            let _ = write!(decoded, "%{b:02X}");
            i += 1;
            continue;
        }
        decoded.push(b as char);
        i += 1;
    }
    // Remove dot segments (RFC 3986 section 5.2.4) on `/`-separated segments.
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = decoded.split('/').collect();
    let last = segments.len().saturating_sub(1);
    for (n, seg) in segments.iter().enumerate().skip(1) {
        match *seg {
            "." => {
                if n == last {
                    out.push("");
                }
            }
            ".." => {
                out.pop();
                if n == last {
                    out.push("");
                }
            }
            s => out.push(s),
        }
    }
    let mut normalised = String::with_capacity(decoded.len());
    for s in &out {
        normalised.push('/');
        normalised.push_str(s);
    }
    if normalised.is_empty() {
        normalised.push('/');
    }
    normalised.push_str(rest);
    normalised
}

/// The byte of the escape `%XX` at `i`, if there is one.
fn hex_escape(bytes: &[u8], i: usize) -> Option<u8> {
    let digit = |b: u8| (b as char).to_digit(16);
    match bytes.get(i..i + 3)? {
        [b'%', h, l] => Some((digit(*h)? * 16 + digit(*l)?) as u8),
        _ => None,
    }
}

/// The query parameters of a path, in order, as written: Envoy 1.40's route matching reads
/// them with `QueryParamsMulti::parseQueryString`, which does not percent-decode (`debug=%31`
/// is not `debug=1`; checked against Envoy by `tests/tests/agreement.rs`).
pub fn query_parameters(path: &str) -> Vec<(String, String)> {
    let Some(q) = query_of(path) else {
        return Vec::new();
    };
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (k.to_owned(), v.to_owned()),
            None => (p.to_owned(), String::new()),
        })
        .collect()
}

/// A request after its connection manager: the headers the router sees.
#[derive(Clone, Debug, Serialize)]
pub struct Routed<'a> {
    /// `:path` after normalisation, query included.
    pub path: String,
    pub authority: &'a str,
    pub method: &'a str,
    /// Headers with `x-forwarded-proto` as Envoy sets it.
    pub headers: Vec<(String, String)>,
    pub query: Vec<(String, String)>,
}

impl Hcm {
    /// The request as the router sees it.
    pub fn prepare<'a>(&self, req: &'a Request) -> Routed<'a> {
        let path = if self.normalize_path {
            normalize_path(&req.path)
        } else {
            req.path.clone()
        };
        let scheme = if req.tls { "https" } else { "http" };
        let mut headers: Vec<(String, String)> = req
            .headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .collect();
        // Envoy overwrites `x-forwarded-proto` unless the hop in front is trusted and sent
        // one (`ConnectionManagerUtility::mutateRequestHeaders`).
        let has_xfp = headers.iter().any(|(k, _)| k == "x-forwarded-proto");
        let trusted = !self.use_remote_address || self.xff_num_trusted_hops > 0;
        if !(trusted && has_xfp) {
            headers.retain(|(k, _)| k != "x-forwarded-proto");
            headers.push(("x-forwarded-proto".to_owned(), scheme.to_owned()));
        }
        let query = query_parameters(&path);
        Routed {
            path,
            authority: &req.authority,
            method: &req.method,
            headers,
            query,
        }
    }
}

impl Routed<'_> {
    /// The value a header condition sees: pseudo-headers, or every value of the header
    /// joined by `,` (Envoy's `getAllOfHeaderAsString`); `None` when absent.
    pub fn header(&self, name: &str) -> Option<String> {
        let values = self.header_values(name);
        (!values.is_empty()).then(|| values.join(","))
    }

    /// Every value of a header as a header condition tests it: pseudo-headers have one; a
    /// header Envoy keeps inline (`x-forwarded-proto` and the like) has its repeated values
    /// joined by `,` by the codec; any other header has one value per line it was sent on.
    pub fn header_values(&self, name: &str) -> Vec<String> {
        match name {
            ":authority" | "host" => return vec![self.authority.to_owned()],
            ":method" => return vec![self.method.to_owned()],
            ":path" => return vec![self.path.clone()],
            _ => {}
        }
        let values: Vec<String> = self
            .headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .collect();
        if values.len() > 1 && INLINE_HEADERS.contains(&name) {
            return vec![values.join(",")];
        }
        values
    }
}

/// Request headers Envoy's header map keeps inline (a few of `HeaderMapImpl`'s O(1) headers,
/// those a route may test): their repeated values are joined into one.
const INLINE_HEADERS: [&str; 6] = [
    "x-forwarded-proto",
    "x-forwarded-for",
    "x-request-id",
    "user-agent",
    "content-type",
    "te",
];

/// The first condition of a route a request fails.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "condition", rename_all = "snake_case")]
pub enum Miss {
    Path,
    Header {
        index: usize,
    },
    Query {
        index: usize,
    },
    /// The request's random number falls outside the route's share.
    Fraction,
}

impl ValueTest {
    /// Whether a present value passes.
    pub fn test(&self, value: &str) -> bool {
        let cmp = |a: &str, b: &str, ic: bool, f: fn(&str, &str) -> bool| {
            if ic {
                f(&a.to_ascii_lowercase(), &b.to_ascii_lowercase())
            } else {
                f(a, b)
            }
        };
        match self {
            ValueTest::Exact {
                value: v,
                ignore_case,
            } => cmp(value, v, *ignore_case, |a, b| a == b),
            ValueTest::Prefix {
                value: v,
                ignore_case,
            } => cmp(value, v, *ignore_case, |a, b| a.starts_with(b)),
            ValueTest::Suffix {
                value: v,
                ignore_case,
            } => cmp(value, v, *ignore_case, |a, b| a.ends_with(b)),
            ValueTest::Contains {
                value: v,
                ignore_case,
            } => cmp(value, v, *ignore_case, |a, b| a.contains(b)),
            ValueTest::Regex { pattern } => pattern.full_match(value),
            ValueTest::Present { present } => *present,
            ValueTest::Unsupported { .. } => false,
        }
    }
}

impl HeaderCond {
    /// Envoy 1.40's header condition: an absent header passes only `present_match: false`
    /// (or `true` inverted); a header sent on several lines passes when one of its values
    /// does (each line tested alone, never the values joined: checked against Envoy by
    /// `tests/tests/agreement.rs`).
    pub fn matches(&self, req: &Routed<'_>) -> bool {
        let values = req.header_values(&self.name);
        if values.is_empty() {
            return match &self.test {
                ValueTest::Present { present } => *present == self.invert,
                _ => false,
            };
        }
        values.iter().any(|v| self.test.test(v)) != self.invert
    }
}

impl QueryCond {
    /// Envoy tests the first value of the parameter; an absent parameter fails.
    pub fn matches(&self, req: &Routed<'_>) -> bool {
        match req.query.iter().find(|(k, _)| *k == self.name) {
            None => matches!(self.test, ValueTest::Present { present: false }),
            Some((_, v)) => self.test.test(v),
        }
    }
}

impl Route {
    /// The length of the path prefix this route's path condition consumes when it matches
    /// (the whole path for exact and regex conditions).
    pub fn path_matches(&self, path: &str) -> Option<usize> {
        let p = path_only(path);
        match &self.path {
            PathCond::Prefix(prefix) => {
                let ok = if self.case_sensitive {
                    p.starts_with(prefix.as_str())
                } else {
                    p.len() >= prefix.len()
                        && p.is_char_boundary(prefix.len())
                        && p[..prefix.len()].eq_ignore_ascii_case(prefix)
                };
                ok.then_some(prefix.len())
            }
            PathCond::Exact(exact) => {
                let ok = if self.case_sensitive {
                    p == exact
                } else {
                    p.eq_ignore_ascii_case(exact)
                };
                ok.then_some(p.len())
            }
            PathCond::Regex(re) => re.full_match(p).then_some(p.len()),
            PathCond::Unsupported(_) => None,
        }
    }

    /// The first condition `req` fails, in Envoy's order (the route's own conditions —
    /// headers, query, fraction — are checked before the path); `random_ppm` is the
    /// request's random number in parts per million.
    pub fn first_miss(&self, req: &Routed<'_>, random_ppm: u32) -> Option<Miss> {
        // Reported path first: it is what users look at first, and the verdict is the same.
        if self.path_matches(&req.path).is_none() {
            return Some(Miss::Path);
        }
        if let Some(index) = self.headers.iter().position(|h| !h.matches(req)) {
            return Some(Miss::Header { index });
        }
        if let Some(index) = self.query.iter().position(|q| !q.matches(req)) {
            return Some(Miss::Query { index });
        }
        if self.fraction_ppm.is_some_and(|f| random_ppm >= f) {
            return Some(Miss::Fraction);
        }
        None
    }
}

impl Table {
    /// The listener on `port`.
    pub fn listener_on(&self, port: u16) -> Option<&Listener> {
        self.listeners.iter().find(|l| l.port == port)
    }
}

#[cfg(test)]
mod tests;

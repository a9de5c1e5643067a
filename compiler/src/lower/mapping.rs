//! A Mapping resource read into typed fields, with per-field checks that need no other object.

use std::collections::BTreeMap;

use crate::diag::{Code, Diagnostic};
use crate::front::yaml::Node;
use crate::front::{ApiVersion, Resource};
use crate::ir::{
    CircuitBreaker, Cors, Empty, HashPolicy, HeaderMatch, HeaderValue, LbPolicy, MemberSettings,
    PathMatch, QueryMatch, RedirectPath, RegexRewrite, RetryPolicy, RouteAuth, RouteSettings,
    Sparse, ValueMatch,
};
use crate::lower::service::{self, Upstream};
use crate::re2;
use crate::source::Span;

/// Everything of a Mapping that decides which requests it takes.
#[derive(Clone, Debug)]
pub struct Mapping<'a> {
    pub r: &'a Resource,
    pub path: PathMatch,
    pub path_span: Span,
    /// `case_sensitive` as written: a member that leaves it out takes its group's.
    pub case_sensitive: Option<bool>,
    pub method: Option<ValueMatch>,
    /// Header conditions in Emissary's order: exact ones by name, then regex ones by name
    /// (Emissary's Go side hands them over as JSON objects, whose keys it sorts).
    pub headers: Vec<HeaderMatch>,
    /// Query conditions, in the same order.
    pub query: Vec<QueryMatch>,
    /// The `:authority` condition Emissary adds: the host glob (`hostname`, else `host`, or
    /// an exact `:authority` header) as [`ValueMatch::Host`], or `host` with `host_regex`.
    pub authority: Option<ValueMatch>,
    /// The DNS glob that picks Hosts, lower case: `hostname`, else `host`, else `*` before
    /// v3alpha1 (and for a regex `host`, which Emissary attaches to every Host).
    pub hostname: Option<String>,
    pub precedence: i64,
    pub weight: Option<u32>,
    pub weight_span: Option<Span>,
    pub shadow: bool,
    pub service: Upstream,
    pub service_span: Span,
    /// Settings of the group's route (shared by a canary group in one Envoy route).
    pub route: Sparse<RouteSettings>,
    /// Settings the member keeps on its own Envoy route.
    pub member: MemberSettings,
    pub cluster: Sparse<ClusterSettings>,
    pub redirect: Option<Box<RedirectSettings>>,
    /// The keys whose values must agree across a canary group, as canonical text.
    pub core: CoreKeys,
    /// Where the keys that findings after reading point at are ([`CORE_KEYS`],
    /// [`LATER_KEYS`]): the Mapping's fields may be gone by then (see
    /// [`super::lower_releasing`]).
    pub key_spans: Box<[(&'static str, Span)]>,
    /// `labels`, read (see [`super::ratelimit`]); `None` when the Mapping has none.
    pub labels: Option<Box<super::ratelimit::Labels>>,
}

impl Empty for ClusterSettings {
    const EMPTY: &'static ClusterSettings = &ClusterSettings {
        tls_context: None,
        tls_context_span: None,
        grpc: false,
        connect_timeout_ms: None,
        idle_timeout_ms: None,
        max_connection_lifetime_ms: None,
        lb_policy: None,
        lb_span: None,
        circuit_breakers: Vec::new(),
        resolver: None,
        tls_true: false,
    };
}

/// The keys that must agree across a canary group (Emissary's core keys).
/// `bypass_auth` comes first (see [`CoreKeys`]).
const CORE_KEYS: [&str; 9] = [
    "bypass_auth",
    "circuit_breakers",
    "cluster_idle_timeout_ms",
    "cluster_max_connection_lifetime_ms",
    "labels",
    "load_balancer",
    "connect_timeout_ms",
    "prefix_regex",
    "prefix_exact",
];

/// Besides [`CORE_KEYS`], the keys whose positions findings report after a Mapping is read:
/// `host_redirect` (a canary member that differs), `precedence`, `host`, and `hostname`,
/// kept only when it is set and not null.
const LATER_KEYS: [&str; 4] = ["host_redirect", "precedence", "host", "hostname"];

impl Mapping<'_> {
    /// The position of a key of the Mapping (one of [`CORE_KEYS`] and [`LATER_KEYS`]), or of
    /// the Mapping when it does not have it.
    pub fn key_span(&self, key: &str) -> Span {
        self.set_key_span(key).unwrap_or(self.r.span)
    }

    /// The position of a key of [`CORE_KEYS`] and [`LATER_KEYS`] the Mapping has.
    pub fn set_key_span(&self, key: &str) -> Option<Span> {
        debug_assert!(
            CORE_KEYS.contains(&key) || LATER_KEYS.contains(&key),
            "`{key}` is not recorded"
        );
        self.key_spans
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, s)| *s)
    }
}

/// The core keys a Mapping sets, in key order. Every Mapping has `bypass_auth` (false by
/// default), held apart so that the common Mapping, which sets no other, allocates nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CoreKeys {
    bypass_auth: bool,
    /// The others it sets, as canonical text, in key order.
    rest: Box<[(&'static str, String)]>,
}

impl CoreKeys {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// The keys and their values, in key order (`bypass_auth` sorts first).
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &str)> {
        let bypass = if self.bypass_auth { "true" } else { "false" };
        std::iter::once(("bypass_auth", bypass)).chain(self.rest.iter().map(|(k, v)| (*k, &**v)))
    }
}

/// Settings that belong to the upstream cluster.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ClusterSettings {
    pub tls_context: Option<String>,
    pub tls_context_span: Option<Span>,
    pub grpc: bool,
    pub connect_timeout_ms: Option<u64>,
    pub idle_timeout_ms: Option<u64>,
    pub max_connection_lifetime_ms: Option<u64>,
    pub lb_policy: Option<LbPolicy>,
    pub lb_span: Option<Span>,
    pub circuit_breakers: Vec<CircuitBreaker>,
    pub resolver: Option<(String, Span)>,
    /// `tls: true`: originate TLS without a TLSContext.
    pub tls_true: bool,
}

/// `host_redirect: true` and its companions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedirectSettings {
    pub path: Option<RedirectPath>,
    pub response_code: u16,
}

/// Reads fields of one resource, collecting diagnostics.
pub struct Reader<'a> {
    pub r: &'a Resource,
    /// The fields: `r`'s own, or its tree held apart (see [`super::lower_releasing`]).
    spec: &'a Node,
    pub diags: Vec<Diagnostic>,
    /// One bit per key present (see [`key_bit`]): most of the fields a Mapping may have are
    /// absent, and a clear bit says so without comparing the name with every key.
    keys: u64,
}

/// A bit for a key name, from its length and its first and last bytes.
fn key_bit(name: &str) -> u64 {
    let b = name.as_bytes();
    let (first, last) = (
        b.first().copied().unwrap_or(0),
        b.last().copied().unwrap_or(0),
    );
    let h = (b.len() as u32).wrapping_mul(0x9e37_79b9).rotate_left(7)
        ^ (first as u32).wrapping_mul(0x85eb_ca6b)
        ^ (last as u32).wrapping_mul(0xc2b2_ae35);
    1 << (h.wrapping_mul(0x27d4_eb2f) >> 26)
}

impl<'a> Reader<'a> {
    pub fn new(r: &'a Resource) -> Reader<'a> {
        Reader::with_spec(r, &r.spec)
    }

    /// Reads the fields of `spec` as those of `r`.
    pub fn with_spec(r: &'a Resource, spec: &'a Node) -> Reader<'a> {
        let keys = spec
            .as_map()
            .unwrap_or_default()
            .iter()
            .filter_map(|(k, _)| k.scalar())
            .fold(0, |acc, k| acc | key_bit(k));
        Reader {
            r,
            spec,
            diags: Vec::new(),
            keys,
        }
    }

    pub fn node(&self, name: &str) -> Option<&'a Node> {
        if self.keys & key_bit(name) == 0 {
            return None;
        }
        self.spec.field(name)
    }

    /// Whether the key is there (with any value, null included).
    pub fn has_key(&self, name: &str) -> bool {
        self.keys & key_bit(name) != 0 && self.spec.get_entry(name).is_some()
    }

    /// The position of a field's key, or of the object.
    pub fn key_span(&self, name: &str) -> Span {
        self.spec.key_span_or(name, self.r.span)
    }

    pub fn str(&self, name: &str) -> Option<&'a str> {
        let n = self.node(name)?;
        if n.is_plain() && (n.as_bool().is_some() || n.as_float().is_some()) {
            return None; // reported by the schema check
        }
        n.as_str()
    }

    pub fn bool(&self, name: &str) -> Option<bool> {
        let n = self.node(name)?;
        n.as_bool().or_else(|| n.yaml11_bool())
    }

    pub fn int(&self, name: &str) -> Option<i64> {
        self.node(name)?.as_int()
    }

    /// A non-negative integer, reported when negative.
    pub fn uint(&mut self, name: &str) -> Option<u64> {
        let n = self.node(name)?;
        let v = n.as_int()?;
        if v < 0 {
            self.invalid(
                n.span,
                name,
                format!("`{}` must not be negative", self.r.path(name)),
            );
            return None;
        }
        Some(v as u64)
    }

    pub fn span(&self, name: &str) -> Span {
        self.node(name).map_or(self.r.span, |n| n.span)
    }

    pub fn push(&mut self, code: Code, span: Span, field: &str, message: String) {
        self.diags.push(
            Diagnostic::at(code, span, message)
                .with_object(&self.r.id)
                .with_field(self.r.path(field)),
        );
    }

    /// `weight` (of a Mapping or a TCPMapping), if set; `Err` when it is negative, which is
    /// reported.
    pub(crate) fn weight(&mut self) -> Result<Option<u32>, ()> {
        match self.int("weight") {
            Some(w) if w < 0 => {
                self.invalid(
                    self.span("weight"),
                    "weight",
                    format!("`weight: {w}` is negative"),
                );
                Err(())
            }
            Some(w) => Ok(Some(w.min(i64::from(u32::MAX)) as u32)),
            None => Ok(None),
        }
    }

    fn invalid(&mut self, span: Span, field: &str, message: String) {
        self.push(Code::InvalidValue, span, field, message);
    }

    /// Checks a regex as Envoy's RE2 will compile it.
    pub fn regex(&mut self, pattern: &str, span: Span, field: &str) -> bool {
        match re2::check(pattern) {
            Ok(report) => {
                for note in report.notes {
                    self.push(
                        Code::RegexDiffers,
                        span,
                        field,
                        format!("in `{pattern}`: {}", note.message),
                    );
                }
                true
            }
            Err(re2::Re2Error::TooLarge { size, limit }) => {
                self.push(
                    Code::RegexTooLarge,
                    span,
                    field,
                    format!("`{pattern}` compiles to an RE2 program of {size} instructions; Envoy refuses more than {limit}"),
                );
                false
            }
            Err(e) => {
                self.push(Code::InvalidRegex, span, field, format!("`{pattern}`: {e}"));
                false
            }
        }
    }

    /// A string-or-list field as a list.
    pub fn str_list(&self, name: &str) -> Vec<String> {
        list_of(self.node(name))
    }
}

/// A string-or-list value as a list; a string is split at commas, as Ambassador does.
fn list_of(n: Option<&Node>) -> Vec<String> {
    match n {
        Some(n) => match n.as_seq() {
            Some(items) => items
                .iter()
                .filter_map(Node::scalar)
                .map(str::to_string)
                .collect(),
            None => n
                .scalar()
                .map(|s| {
                    s.split(',')
                        .map(|p| p.trim().to_string())
                        .filter(|p| !p.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
        },
        None => Vec::new(),
    }
}

/// Reads a Mapping. Returns `None` when a required part is missing or unusable; the
/// reasons are in `reader.diags`.
///
/// `r` is the resource `reader` reads, for as long as the Mapping is kept: the fields may be
/// held apart from it for less time (see [`super::lower_releasing`]).
pub fn read<'r>(reader: &mut Reader<'_>, r: &'r Resource) -> Option<Mapping<'r>> {
    let mut ok = true;

    // The path.
    let prefix = reader.str("prefix");
    let prefix_span = reader.span("prefix");
    let prefix_regex = reader.bool("prefix_regex").unwrap_or(false);
    let prefix_exact = reader.bool("prefix_exact").unwrap_or(false);
    let path = match prefix {
        None => {
            ok = false;
            PathMatch::Prefix(String::new())
        }
        Some(p) if prefix_regex => {
            ok &= reader.regex(p, prefix_span, "prefix");
            PathMatch::Regex(p.to_string())
        }
        Some(p) => {
            if !p.starts_with('/') {
                reader.push(
                    Code::PrefixWithoutSlash,
                    prefix_span,
                    "prefix",
                    format!(
                        "prefix `{p}` does not start with `/`, so no request path can match it"
                    ),
                );
            }
            if prefix_exact {
                PathMatch::Exact(p.to_string())
            } else {
                PathMatch::Prefix(p.to_string())
            }
        }
    };
    let case_sensitive = reader.bool("case_sensitive");
    if prefix_regex && case_sensitive == Some(false) {
        reader.push(
            Code::RegexCaseIgnored,
            reader.key_span("case_sensitive"),
            "case_sensitive",
            "`case_sensitive: false` has no effect on a `prefix_regex` Mapping: Emissary writes it beside the regex, where Envoy ignores it, so the path is matched case-sensitively".into(),
        );
    }
    // Before v3alpha1, Emissary's Go side converts the Mapping first: `headers` and
    // `query_parameters` values of `true` become the regex `.*`, and `host` becomes
    // `hostname`, a glob.
    let converted = r.version < ApiVersion::V3alpha1;

    // Method, headers, query parameters, host.
    let method = match reader.str("method") {
        Some(m) if reader.bool("method_regex") == Some(true) => {
            ok &= reader.regex(m, reader.span("method"), "method");
            Some(ValueMatch::Regex(m.to_string()))
        }
        Some(m) => Some(ValueMatch::Exact(m.to_ascii_uppercase())),
        None => None,
    };
    // An exact `:authority` header is the Mapping's host (Emissary moves it there).
    let mut authority_header: Option<(String, Span)> = None;
    let mut headers = Vec::new();
    ok &= read_matches(
        reader,
        "headers",
        "regex_headers",
        converted,
        &mut |name, value, span| match value {
            ValueMatch::Exact(v) if name.eq_ignore_ascii_case(":authority") => {
                authority_header = Some((v, span));
            }
            value => headers.push(HeaderMatch { name, value }),
        },
    );
    let mut query = Vec::new();
    ok &= read_matches(
        reader,
        "query_parameters",
        "regex_query_parameters",
        converted,
        &mut |name, value, _| query.push(QueryMatch { name, value }),
    );
    // Kept by the Mapping to the end of lowering, and usually one or two: without the room
    // the first push makes (four), a Mapping with one header holds 56 bytes, not 224.
    headers.shrink_to_fit();
    query.shrink_to_fit();

    let host = reader.str("host");
    let host_regex = reader.bool("host_regex").unwrap_or(false);
    // Emissary checks an exact `host` even when `hostname` wins over it, and refuses the
    // whole Mapping for a `*` in it.
    if let (Some(h), true, false, true) = (
        host,
        !host_regex,
        converted,
        reader.str("hostname").is_some(),
    ) {
        if h.contains('*') {
            reader.push(
                Code::HostWildcard,
                reader.span("host"),
                "host",
                format!("`host: {h}` is matched exactly, so the `*` can never match; Emissary refuses the Mapping even though `hostname` is set"),
            );
            ok = false;
        }
    }
    // The glob Emissary matches against `:authority` and the Hosts: `hostname` wins over
    // everything, then `host`, then an exact `:authority` header.
    let (authority, hostname) = match (reader.str("hostname"), host) {
        (Some(h), _) => (Some(ValueMatch::Host(h.to_string())), Some(h)),
        (None, Some(h)) if host_regex => {
            ok &= reader.regex(h, reader.span("host"), "host");
            // A regex host is matched by Envoy only; every Host takes the Mapping.
            (Some(ValueMatch::Regex(h.to_string())), Some("*"))
        }
        (None, Some(h)) => {
            if h.contains('*') && !converted {
                reader.push(
                    Code::HostWildcard,
                    reader.span("host"),
                    "host",
                    format!("`host: {h}` is matched exactly, so the `*` can never match"),
                );
                ok = false;
            }
            (Some(ValueMatch::Host(h.to_string())), Some(h))
        }
        (None, None) => match &authority_header {
            Some((h, span)) => {
                if h.contains('*') {
                    reader.push(
                        Code::HostWildcard,
                        *span,
                        "headers",
                        format!("the `:authority` header `{h}` is matched exactly, so the `*` can never match"),
                    );
                    ok = false;
                }
                (Some(ValueMatch::Host(h.clone())), Some(h.as_str()))
            }
            None if converted => (Some(ValueMatch::Host("*".into())), Some("*")),
            None => (None, None),
        },
    };
    let hostname = hostname.map(str::to_ascii_lowercase);

    // Weight and precedence.
    let precedence = reader.int("precedence").unwrap_or(0);
    let weight_span = reader.node("weight").map(|n| n.span);
    let weight = reader.weight().unwrap_or_else(|()| {
        ok = false;
        None
    });
    let shadow = reader.bool("shadow").unwrap_or(false);

    // The service.
    let service_span = reader.span("service");
    let service = match reader.str("service").map(service::parse) {
        Some(Ok(u)) => u,
        Some(Err(message)) => {
            reader.push(
                Code::InvalidService,
                service_span,
                "service",
                format!("invalid `service`: {message}"),
            );
            return None;
        }
        None => return None,
    };

    if reader.node("outlier_detection").is_some() {
        reader.push(
            Code::UnsupportedOutlierDetection,
            reader.key_span("outlier_detection"),
            "outlier_detection",
            "`outlier_detection` is not supported".into(),
        );
        ok = false;
    }

    let (route, member) = read_route_settings(reader, &mut ok);
    let cluster = read_cluster_settings(reader, &mut ok);
    let redirect = read_redirect(reader, &mut ok);
    if redirect.is_some() && !query.is_empty() {
        let key = if reader.node("query_parameters").is_some() {
            "query_parameters"
        } else {
            "regex_query_parameters"
        };
        reader.push(
            Code::RedirectQueryIgnored,
            reader.key_span(key),
            key,
            format!("`{key}` of a `host_redirect` Mapping are left out of its match by Emissary: the redirect also answers requests without them"),
        );
    }

    // Every Emissary Mapping has `bypass_auth` (false by default), so a group's members must
    // agree on it whether they set it or not.
    let mut rest: Vec<(&'static str, String)> = CORE_KEYS[1..]
        .iter()
        .filter_map(|&key| Some((key, canonical(reader.node(key)?))))
        .collect();
    rest.sort_unstable_by_key(|(k, _)| *k);
    let core = CoreKeys {
        bypass_auth: reader.bool("bypass_auth") == Some(true),
        rest: rest.into_boxed_slice(),
    };
    // Sized to what is set: most Mappings record one key or none.
    let mut spans = [("", Span::default()); CORE_KEYS.len() + LATER_KEYS.len()];
    let mut n = 0;
    for k in CORE_KEYS.into_iter().chain(LATER_KEYS) {
        let set = if k == "hostname" {
            reader.node(k).is_some()
        } else {
            reader.has_key(k)
        };
        if set {
            spans[n] = (k, reader.key_span(k));
            n += 1;
        }
    }
    let key_spans = Box::from(&spans[..n]);

    let labels = super::ratelimit::read_labels(reader);
    ok.then_some(Mapping {
        labels,
        r,
        path,
        path_span: prefix_span,
        case_sensitive,
        method,
        headers,
        query,
        authority,
        hostname,
        precedence,
        weight,
        weight_span,
        shadow,
        service,
        service_span,
        route: Sparse::new(route),
        member,
        cluster: Sparse::new(cluster),
        redirect: redirect.map(Box::new),
        core,
        key_spans,
    })
}

/// A node as compact canonical text, for comparing values across Mappings.
pub fn canonical(n: &Node) -> String {
    match (n.as_map(), n.as_seq()) {
        (Some(entries), _) => {
            let mut parts: Vec<String> = entries
                .iter()
                .map(|(k, v)| format!("{}:{}", k.scalar().unwrap_or("?"), canonical(v)))
                .collect();
            parts.sort();
            format!("{{{}}}", parts.join(","))
        }
        (_, Some(items)) => format!(
            "[{}]",
            items.iter().map(canonical).collect::<Vec<_>>().join(",")
        ),
        _ => n.scalar().unwrap_or_default().to_string(),
    }
}

/// Reads exact and regex conditions (headers or query parameters) in Emissary's order:
/// the exact ones by name, then the regex ones by name. A value of `true` (or none) means
/// "present"; before v3alpha1 Emissary's conversion makes it the regex `.*`.
fn read_matches(
    reader: &mut Reader,
    exact_field: &str,
    regex_field: &str,
    converted: bool,
    push: &mut dyn FnMut(String, ValueMatch, Span),
) -> bool {
    let mut ok = true;
    let mut exact: Vec<(String, ValueMatch, Span)> = Vec::new();
    let mut regex: Vec<(String, ValueMatch, Span)> = Vec::new();
    if let Some(entries) = reader.node(exact_field).and_then(Node::as_map) {
        for (k, v) in entries {
            let Some(name) = k.scalar() else { continue };
            if v.is_null() || v.as_bool() == Some(true) {
                if converted {
                    // The conversion keeps a regex the Mapping sets for the same name.
                    regex.push((name.to_string(), ValueMatch::Regex(".*".into()), v.span));
                } else {
                    exact.push((name.to_string(), ValueMatch::Present, v.span));
                }
            } else if converted && v.as_bool() == Some(false) {
                // Emissary's conversion drops `false`.
            } else {
                let value = v.scalar().unwrap_or_default().to_string();
                exact.push((name.to_string(), ValueMatch::Exact(value), v.span));
            }
        }
    }
    if let Some(entries) = reader.node(regex_field).and_then(Node::as_map) {
        for (k, v) in entries {
            let (Some(name), Some(pattern)) = (k.scalar(), v.scalar()) else {
                continue;
            };
            ok &= reader.regex(pattern, v.span, &format!("{regex_field}.{name}"));
            regex.retain(|(n, _, _)| n != name);
            regex.push((
                name.to_string(),
                ValueMatch::Regex(pattern.to_string()),
                v.span,
            ));
        }
    }
    exact.sort_by(|a, b| a.0.cmp(&b.0));
    regex.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, value, span) in exact.into_iter().chain(regex) {
        push(name, value, span);
    }
    ok
}

const RETRY_ON: &[&str] = &[
    "5xx",
    "gateway-error",
    "connect-failure",
    "retriable-4xx",
    "refused-stream",
    "retriable-status-codes",
    "reset",
    "retriable-headers",
    "envoy-ratelimited",
    "http3-post-connect-failure",
];

fn read_route_settings(reader: &mut Reader, ok: &mut bool) -> (RouteSettings, MemberSettings) {
    let mut s = RouteSettings::default();
    let mut m = MemberSettings {
        prefix_rewrite: reader
            .node("rewrite")
            .and_then(Node::scalar)
            .map(Into::into),
        auth: read_route_auth(reader, ok),
        ..MemberSettings::default()
    };
    if let Some(rr) = reader.node("regex_rewrite") {
        let pattern = rr.get("pattern").and_then(Node::scalar);
        let substitution = rr
            .get("substitution")
            .and_then(Node::scalar)
            .unwrap_or_default();
        match pattern {
            Some(p) => {
                let span = rr.get("pattern").map_or(rr.span, |n| n.span);
                *ok &= reader.regex(p, span, "regex_rewrite.pattern");
                s.regex_rewrite = Some(RegexRewrite {
                    pattern: p.to_string(),
                    substitution: substitution.to_string(),
                });
            }
            None => {
                reader.push(
                    Code::MissingField,
                    rr.span,
                    "regex_rewrite",
                    "`regex_rewrite` has no `pattern`".into(),
                );
                *ok = false;
            }
        }
        if reader.node("rewrite").is_some() {
            reader.push(
                Code::RewriteConflict,
                reader.key_span("rewrite"),
                "rewrite",
                "both `rewrite` and `regex_rewrite` are set; `regex_rewrite` wins".into(),
            );
        }
        // Emissary drops the Mapping's `rewrite` when it has a `regex_rewrite`.
        m.prefix_rewrite = None;
    } else if reader.node("rewrite").is_none() {
        // Ambassador's default `rewrite` is `/`: the matched prefix is replaced by `/`. On a
        // `prefix_regex` Mapping too, where Envoy replaces the whole path the regex matched.
        m.prefix_rewrite = Some("/".into());
    }
    if m.prefix_rewrite.as_deref() == Some("") {
        m.prefix_rewrite = None; // `rewrite: ""` keeps the path
    }
    m.timeout_ms = reader.uint("timeout_ms");
    m.idle_timeout_ms = reader.uint("idle_timeout_ms");
    if let Some(rp) = reader.node("retry_policy") {
        let retry_on = rp
            .get("retry_on")
            .and_then(Node::scalar)
            .map(str::to_string);
        if let Some(on) = &retry_on {
            for part in on.split(',').map(str::trim) {
                if !RETRY_ON.contains(&part) {
                    let span = rp.get("retry_on").map_or(rp.span, |n| n.span);
                    reader.invalid(
                        span,
                        "retry_policy.retry_on",
                        format!(
                            "`retry_on: {part}` is not a retry condition; use one of {}",
                            RETRY_ON[..6].join(", ")
                        ),
                    );
                    *ok = false;
                }
            }
        }
        s.retry =
            Some(Box::new(RetryPolicy {
                retry_on,
                num_retries: rp
                    .get("num_retries")
                    .and_then(Node::as_int)
                    .and_then(|n| u32::try_from(n).ok()),
                per_try_timeout_ms: rp.get("per_try_timeout").and_then(Node::scalar).and_then(
                    |t| {
                        let ms = parse_duration_ms(t);
                        if ms.is_none() {
                            let span = rp.get("per_try_timeout").map_or(rp.span, |n| n.span);
                            reader.invalid(
                        span,
                        "retry_policy.per_try_timeout",
                        format!("`per_try_timeout: {t}` is not a duration such as `500ms` or `2s`"),
                    );
                        }
                        ms
                    },
                ),
            }));
    }
    if let Some(c) = reader.node("cors") {
        s.cors = Some(Box::new(read_cors(c)));
    }
    m.host_rewrite = reader.str("host_rewrite").map(Into::into);
    m.auto_host_rewrite = reader.bool("auto_host_rewrite").unwrap_or(false);
    s.upgrades = reader
        .str_list("allow_upgrade")
        .into_iter()
        .map(|u| u.to_ascii_lowercase())
        .collect();
    if reader.bool("use_websocket") == Some(true) && !s.upgrades.iter().any(|u| u == "websocket") {
        s.upgrades.push("websocket".into());
    }
    s.hash_policy = hash_policy(reader).map(Box::new);
    s.request_headers_to_add = read_add_headers(reader.node("add_request_headers"));
    s.response_headers_to_add = read_add_headers(reader.node("add_response_headers"));
    s.request_headers_to_remove = reader.str_list("remove_request_headers");
    s.response_headers_to_remove = reader.str_list("remove_response_headers");
    // Envoy refuses a whole route configuration that modifies pseudo-headers (or `host` on
    // the request side): ":-prefixed or host headers may not be modified".
    let checks: [(&str, Vec<&str>, bool); 4] = [
        (
            "add_request_headers",
            s.request_headers_to_add
                .iter()
                .map(|h| h.name.as_str())
                .collect(),
            true,
        ),
        (
            "remove_request_headers",
            s.request_headers_to_remove
                .iter()
                .map(String::as_str)
                .collect(),
            true,
        ),
        (
            "add_response_headers",
            s.response_headers_to_add
                .iter()
                .map(|h| h.name.as_str())
                .collect(),
            false,
        ),
        (
            "remove_response_headers",
            s.response_headers_to_remove
                .iter()
                .map(String::as_str)
                .collect(),
            false,
        ),
    ];
    for (field, names, request) in checks {
        for name in names {
            let token = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
            let reason =
                if name.starts_with(':') || (request && name.eq_ignore_ascii_case("host")) {
                    Some(format!(
                    "`{field}` cannot change `{name}`: Envoy refuses to modify pseudo-headers{}",
                    if request { " and `host` (use `host_rewrite`)" } else { "" }
                ))
                } else if !token {
                    Some(format!(
                        "`{field}` names `{name}`, which is not a valid header name"
                    ))
                } else {
                    None
                };
            if let Some(message) = reason {
                let span = reader.span(field);
                reader.invalid(span, field, message);
                *ok = false;
            }
        }
    }
    (s, m)
}

/// Parses Envoy-style durations: `250ms`, `2s`, `1.5s`, `1m`.
pub fn parse_duration_ms(t: &str) -> Option<u64> {
    let t = t.trim();
    let (num, unit) = t
        .find(|c: char| c.is_ascii_alphabetic())
        .map_or((t, "s"), |i| (&t[..i], &t[i..]));
    let v: f64 = num.parse().ok()?;
    let factor = match unit {
        "ms" => 1.0,
        "s" => 1000.0,
        "m" => 60_000.0,
        "h" => 3_600_000.0,
        _ => return None,
    };
    (v >= 0.0).then_some((v * factor).round() as u64)
}

pub fn read_cors(c: &Node) -> Cors {
    Cors {
        origins: list_of(c.get("origins")),
        methods: list_of(c.get("methods")),
        headers: list_of(c.get("headers")),
        exposed_headers: list_of(c.get("exposed_headers")),
        credentials: c.get("credentials").and_then(Node::as_bool),
        max_age: c.get("max_age").and_then(Node::scalar).map(str::to_string),
    }
}

fn read_add_headers(n: Option<&Node>) -> Vec<HeaderValue> {
    let Some(entries) = n.and_then(Node::as_map) else {
        return Vec::new();
    };
    entries
        .iter()
        .filter_map(|(k, v)| {
            let name = k.scalar()?.to_string();
            if v.as_map().is_some() {
                Some(HeaderValue {
                    name,
                    value: v
                        .get("value")
                        .and_then(Node::scalar)
                        .unwrap_or_default()
                        .to_string(),
                    append: v.get("append").and_then(Node::as_bool).unwrap_or(true),
                })
            } else {
                Some(HeaderValue {
                    name,
                    value: v.scalar()?.to_string(),
                    append: true,
                })
            }
        })
        .collect()
}

/// `bypass_auth` and `auth_context_extensions`. As in Emissary, a bypass wins and the
/// context extensions only matter on a route that is checked.
fn read_route_auth(reader: &mut Reader, ok: &mut bool) -> RouteAuth {
    if reader.bool("bypass_auth") == Some(true) {
        return RouteAuth::Bypass;
    }
    let Some(n) = reader.node("auth_context_extensions") else {
        return RouteAuth::Check;
    };
    let mut map = BTreeMap::new();
    let mut good = n.as_map().is_some();
    for (k, v) in n.as_map().unwrap_or_default() {
        match (k.scalar(), v.scalar()) {
            (Some(k), Some(v)) => {
                map.insert(k.to_string(), v.to_string());
            }
            _ => good = false,
        }
    }
    if !good {
        reader.invalid(
            n.span,
            "auth_context_extensions",
            "`auth_context_extensions` must map names to strings".into(),
        );
        *ok = false;
    }
    if map.is_empty() {
        RouteAuth::Check
    } else {
        RouteAuth::Context(Box::new(map))
    }
}

pub(super) fn read_cluster_settings(reader: &mut Reader, ok: &mut bool) -> ClusterSettings {
    let mut s = ClusterSettings {
        grpc: reader.bool("grpc").unwrap_or(false),
        connect_timeout_ms: reader.uint("connect_timeout_ms"),
        idle_timeout_ms: reader.uint("cluster_idle_timeout_ms"),
        max_connection_lifetime_ms: reader.uint("cluster_max_connection_lifetime_ms"),
        resolver: reader
            .str("resolver")
            .map(|s| (s.to_string(), reader.span("resolver"))),
        tls_true: reader.node("tls").and_then(Node::as_bool) == Some(true),
        ..ClusterSettings::default()
    };
    if let Some(tls) = reader.node("tls") {
        if let Some(name) = tls.as_str().filter(|_| tls.as_bool().is_none()) {
            s.tls_context = Some(name.to_string());
            s.tls_context_span = Some(tls.span);
        }
    }
    if let Some(lb) = reader.node("load_balancer") {
        s.lb_span = Some(lb.span);
        let policy = lb.get("policy").and_then(Node::scalar);
        s.lb_policy = match policy {
            Some("round_robin") => Some(LbPolicy::RoundRobin),
            Some("least_request") => Some(LbPolicy::LeastRequest),
            Some("ring_hash") => Some(LbPolicy::RingHash),
            Some("maglev") => Some(LbPolicy::Maglev),
            Some(other) => {
                let span = lb.get("policy").map_or(lb.span, |n| n.span);
                reader.invalid(
                    span,
                    "load_balancer.policy",
                    format!("`policy: {other}` is not one of round_robin, least_request, ring_hash, maglev"),
                );
                *ok = false;
                None
            }
            None => {
                reader.push(
                    Code::MissingField,
                    lb.span,
                    "load_balancer",
                    "`load_balancer` has no `policy`".into(),
                );
                *ok = false;
                None
            }
        };
    }
    if let Some(items) = reader.node("circuit_breakers").and_then(Node::as_seq) {
        for item in items {
            let int = |k: &str| {
                item.get(k)
                    .and_then(Node::as_int)
                    .and_then(|v| u32::try_from(v).ok())
            };
            let priority = item
                .get("priority")
                .and_then(Node::scalar)
                .unwrap_or("default")
                .to_string();
            if priority != "default" && priority != "high" {
                let span = item.get("priority").map_or(item.span, |n| n.span);
                reader.invalid(
                    span,
                    "circuit_breakers.priority",
                    format!("`priority: {priority}` must be `default` or `high`"),
                );
                *ok = false;
            }
            s.circuit_breakers.push(CircuitBreaker {
                priority,
                max_connections: int("max_connections"),
                max_pending_requests: int("max_pending_requests"),
                max_requests: int("max_requests"),
                max_retries: int("max_retries"),
            });
        }
    }
    s
}

/// Reads the hash policy for ring_hash and maglev into the route settings.
pub fn hash_policy(reader: &Reader) -> Option<HashPolicy> {
    let lb = reader.node("load_balancer")?;
    if let Some(c) = lb.get("cookie") {
        return Some(HashPolicy::Cookie {
            name: c
                .get("name")
                .and_then(Node::scalar)
                .unwrap_or("ambassador-session")
                .to_string(),
            ttl: c.get("ttl").and_then(Node::scalar).map(str::to_string),
            path: c.get("path").and_then(Node::scalar).map(str::to_string),
        });
    }
    if let Some(h) = lb.get("header").and_then(Node::scalar) {
        return Some(HashPolicy::Header {
            name: h.to_string(),
        });
    }
    if lb.get("source_ip").and_then(Node::as_bool) == Some(true) {
        return Some(HashPolicy::SourceIp);
    }
    None
}

fn read_redirect(reader: &mut Reader, ok: &mut bool) -> Option<RedirectSettings> {
    let kinds: Vec<&str> = ["path_redirect", "prefix_redirect", "regex_redirect"]
        .into_iter()
        .filter(|k| reader.node(k).is_some())
        .collect();
    let enabled = reader.bool("host_redirect") == Some(true);
    if !enabled {
        let stray: Vec<&str> = kinds
            .iter()
            .copied()
            .chain(
                reader
                    .node("redirect_response_code")
                    .map(|_| "redirect_response_code"),
            )
            .collect();
        if let Some(first) = stray.first() {
            reader.push(
                Code::RedirectWithoutHostRedirect,
                reader.key_span(first),
                first,
                format!("`{first}` has no effect without `host_redirect: true`"),
            );
        }
        return None;
    }
    if kinds.len() > 1 {
        reader.push(
            Code::RedirectConflict,
            reader.key_span(kinds[1]),
            kinds[1],
            format!("`{}` and `{}` cannot both be set", kinds[0], kinds[1]),
        );
        *ok = false;
    }
    let path = match kinds.first() {
        Some(&"path_redirect") => reader
            .str("path_redirect")
            .map(|p| RedirectPath::Path(p.to_string())),
        Some(&"prefix_redirect") => reader
            .str("prefix_redirect")
            .map(|p| RedirectPath::Prefix(p.to_string())),
        Some(_) => {
            let rr = reader.node("regex_redirect")?;
            let pattern = rr
                .get("pattern")
                .and_then(Node::scalar)
                .unwrap_or_default()
                .to_string();
            let span = rr.get("pattern").map_or(rr.span, |n| n.span);
            *ok &= reader.regex(&pattern, span, "regex_redirect.pattern");
            let substitution = rr
                .get("substitution")
                .and_then(Node::scalar)
                .unwrap_or_default()
                .to_string();
            Some(RedirectPath::Regex(RegexRewrite {
                pattern,
                substitution,
            }))
        }
        None => None,
    };
    let response_code = match reader.int("redirect_response_code") {
        None => 301,
        Some(c @ (301 | 302 | 303 | 307 | 308)) => c as u16,
        Some(c) => {
            reader.invalid(
                reader.span("redirect_response_code"),
                "redirect_response_code",
                format!("`redirect_response_code: {c}` must be one of 301, 302, 303, 307, 308"),
            );
            *ok = false;
            301
        }
    };
    Some(RedirectSettings {
        path,
        response_code,
    })
}

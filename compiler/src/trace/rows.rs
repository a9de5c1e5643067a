//! The route table as `kubectl ambassador routes` lists it: one typed row per route of each
//! virtual host, in evaluation order. `routes` renders these rows (as a table, JSON or YAML)
//! and `test` reports the routes no test reached with them, so a route reads the same way
//! everywhere.

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

use crate::ir::{
    InsecureAction, Ir, PathMatch, Route, RouteAction, SecurityModel, SourceRef, ValueMatch,
    VirtualHost,
};
use crate::lower::redirect_path_text;
use crate::source::Sources;

/// One route of one virtual host.
#[derive(Clone, Debug, Serialize)]
pub struct RouteRow {
    /// The virtual host's domains, joined by `,`.
    pub virtual_host: String,
    /// The IR name of the virtual host and of the route (not shown; for lookups).
    #[serde(skip)]
    pub ids: (String, String),
    /// 1-based position in the virtual host.
    pub order: usize,
    #[serde(rename = "match")]
    pub matcher: RowMatch,
    pub backends: Vec<RowBackend>,
    /// `301 https://host:port path` for a redirect.
    pub redirect: Option<String>,
    /// The rewrite of every backend when they agree, else `per backend`.
    pub rewrite: Option<String>,
    pub precedence: i64,
    /// What secure and insecure requests get on each listener serving the virtual host.
    pub listeners: Vec<RowListener>,
    pub sources: Vec<RowSource>,
}

/// A route's conditions.
#[derive(Clone, Debug, Serialize)]
pub struct RowMatch {
    pub path: RowPath,
    pub case_sensitive: bool,
    #[serde(serialize_with = "option_value_json")]
    pub method: Option<ValueMatch>,
    pub headers: Vec<RowCondition>,
    pub query_parameters: Vec<RowCondition>,
}

/// The path condition, serialised as `{"prefix": "/x/"}`, `{"exact": ...}` or `{"regex": ...}`.
#[derive(Clone, Debug)]
pub struct RowPath(pub PathMatch);

impl Serialize for RowPath {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (k, v) = match &self.0 {
            PathMatch::Prefix(p) => ("prefix", p),
            PathMatch::Exact(p) => ("exact", p),
            PathMatch::Regex(p) => ("regex", p),
        };
        let mut m = s.serialize_map(Some(1))?;
        m.serialize_entry(k, v)?;
        m.end()
    }
}

/// A header or query condition; its value serialised as `{"exact": ...}`, `{"regex": ...}`,
/// `{"present": true}` or `{"host": ...}`.
#[derive(Clone, Debug, Serialize)]
pub struct RowCondition {
    pub name: String,
    #[serde(rename = "match", serialize_with = "value_json")]
    pub value: ValueMatch,
}

fn value_json<S: Serializer>(v: &ValueMatch, s: S) -> Result<S::Ok, S::Error> {
    let mut m = s.serialize_map(Some(1))?;
    match v {
        ValueMatch::Exact(x) => m.serialize_entry("exact", x)?,
        ValueMatch::Regex(x) => m.serialize_entry("regex", x)?,
        ValueMatch::Present => m.serialize_entry("present", &true)?,
        ValueMatch::Host(x) => m.serialize_entry("host", x)?,
    }
    m.end()
}

fn option_value_json<S: Serializer>(v: &Option<ValueMatch>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => value_json(v, s),
        None => s.serialize_none(),
    }
}

/// A backend: a cluster with its share, or a shadow.
#[derive(Clone, Debug, Serialize)]
pub struct RowBackend {
    pub cluster: String,
    /// `host:port` (`https://` when the cluster originates TLS).
    pub service: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
    /// The member's own rewrite, when the members of a group differ.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rewrite: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shadow_percent: Option<u32>,
}

/// What a listener does with the route's secure and insecure requests: `route`, `301` or
/// `no route`.
#[derive(Clone, Debug, Serialize)]
pub struct RowListener {
    pub listener: String,
    pub port: u16,
    pub https: &'static str,
    pub http: &'static str,
}

/// Where a route came from.
#[derive(Clone, Debug, Serialize)]
pub struct RowSource {
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub file: String,
    pub line: u32,
}

impl RowSource {
    fn of(s: &SourceRef, sources: &Sources) -> RowSource {
        RowSource {
            kind: s.kind.to_string(),
            namespace: s.namespace.to_string(),
            name: s.name.to_string(),
            file: sources.name(s.span.file).to_owned(),
            line: s.span.start.line,
        }
    }
}

/// One TCPMapping's chain on a TCP listener, as `routes` lists it after the HTTP routes.
#[derive(Clone, Debug, Serialize)]
pub struct TcpRow {
    pub listener: String,
    pub port: u16,
    /// The SNI the chain takes (the TCPMapping's `host`); none takes every connection.
    pub sni: Option<String>,
    /// The certificate TLS is terminated with for that SNI.
    pub tls: Option<RowTcpTls>,
    pub backends: Vec<RowBackend>,
    pub sources: Vec<RowSource>,
}

/// TLS terminated on a TCP chain: the Secret and the TLSContext that named it, if one did.
#[derive(Clone, Debug, Serialize)]
pub struct RowTcpTls {
    pub secret: String,
    pub context: Option<String>,
}

/// Every TCP chain, listener by listener (by port), chains in the order Envoy has them.
pub fn tcp_rows(ir: &Ir, sources: &Sources) -> Vec<TcpRow> {
    let mut rows = Vec::new();
    for l in &ir.tcp_listeners {
        for r in &l.routes {
            rows.push(TcpRow {
                listener: l.name.clone(),
                port: l.port,
                sni: r.sni.clone(),
                tls: r.tls.as_ref().map(|t| RowTcpTls {
                    secret: t.secret.clone(),
                    context: r.tls_context.clone(),
                }),
                backends: {
                    // Envoy's `tcp_proxy` shares connections by relative weight, and the
                    // weights are Emissary's running totals: the share is each one's part
                    // of their sum.
                    let total: u64 = r.clusters.iter().map(|c| u64::from(c.weight)).sum();
                    r.clusters
                        .iter()
                        .map(|c| RowBackend {
                            cluster: c.cluster.clone(),
                            service: service_of(ir, &c.cluster),
                            weight: Some(
                                (u64::from(c.weight) * 100 + total / 2)
                                    .checked_div(total)
                                    .unwrap_or(0) as u32,
                            ),
                            rewrite: None,
                            shadow_percent: None,
                        })
                        .collect()
                },
                // Every member of the group, in the order of its backends.
                sources: {
                    let mut out: Vec<RowSource> = Vec::new();
                    for src in r.clusters.iter().map(|c| &c.source).chain([&r.source]) {
                        let row = RowSource::of(src, sources);
                        if !out.iter().any(|o| {
                            (&o.kind, &o.namespace, &o.name)
                                == (&row.kind, &row.namespace, &row.name)
                        }) {
                            out.push(row);
                        }
                    }
                    out
                },
            });
        }
    }
    rows
}

impl TcpRow {
    /// The TLS column: `terminate <secret>` (with the TLSContext), or `-`.
    pub fn tls_text(&self) -> String {
        match &self.tls {
            Some(t) => match &t.context {
                Some(c) => format!("terminate {} (TLSContext {c})", t.secret),
                None => format!("terminate {}", t.secret),
            },
            None => "-".to_owned(),
        }
    }

    /// The BACKENDS column: `service share%` (of the connections), comma-separated.
    pub fn backends_text(&self) -> String {
        self.backends
            .iter()
            .map(|b| format!("{} {}%", b.service, b.weight.unwrap_or(0)))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The SOURCE column, as for HTTP routes.
    pub fn sources_text(&self) -> String {
        sources_text(&self.sources)
    }
}

/// Every row, virtual host by virtual host, routes in evaluation order.
pub fn rows(ir: &Ir, sources: &Sources) -> Vec<RouteRow> {
    let mut rows = Vec::new();
    for vh in &ir.virtual_hosts {
        let listeners = listeners_of(ir, vh);
        for (i, r) in vh.routes.iter().enumerate() {
            rows.push(row(ir, vh, &listeners, i, r, sources));
        }
    }
    rows
}

fn row(
    ir: &Ir,
    vh: &VirtualHost,
    listeners: &[(&str, u16, SecurityModel)],
    i: usize,
    r: &Route,
    sources: &Sources,
) -> RouteRow {
    let m = &r.matcher;
    let method = m
        .headers
        .iter()
        .find(|h| h.name == ":method")
        .map(|h| h.value.clone());
    let condition = |name: &str, value: &ValueMatch| RowCondition {
        name: name.to_owned(),
        value: value.clone(),
    };
    let headers = m
        .headers
        .iter()
        // The host glob `*` is no condition.
        .filter(|h| h.name != ":method" && h.value != ValueMatch::Host("*".into()))
        .map(|h| condition(&h.name, &h.value))
        .collect();
    let query_parameters = m
        .query_parameters
        .iter()
        .map(|q| condition(&q.name, &q.value))
        .collect();
    let (backends, rewrite, redirect) = match &r.action {
        RouteAction::Forward(f) => {
            // Each member of a canary group keeps its own rewrite; the route's is shown
            // when they agree, else each backend shows its own.
            let rewrite_of = |p: &Option<crate::ir::Name>| match (&f.settings.regex_rewrite, p) {
                (Some(rr), _) => Some(format!("regex {} -> {}", rr.pattern, rr.substitution)),
                (None, Some(p)) => Some(p.to_string()),
                (None, None) => None,
            };
            let rewrites: Vec<Option<String>> = f
                .clusters
                .iter()
                .map(|c| rewrite_of(&c.settings.prefix_rewrite))
                .collect();
            let same = rewrites.windows(2).all(|w| w[0] == w[1]);
            let mut b: Vec<RowBackend> = f
                .clusters
                .iter()
                .zip(&rewrites)
                .map(|(c, rw)| RowBackend {
                    cluster: c.cluster.clone(),
                    service: service_of(ir, &c.cluster),
                    weight: Some(c.weight),
                    rewrite: (!same).then(|| rw.clone()),
                    shadow_percent: None,
                })
                .collect();
            if let Some(s) = &f.shadow {
                b.push(RowBackend {
                    cluster: s.cluster.clone(),
                    service: service_of(ir, &s.cluster),
                    weight: None,
                    rewrite: None,
                    shadow_percent: Some(s.percent),
                });
            }
            let rewrite = if same {
                rewrites.into_iter().next().flatten()
            } else {
                Some("per backend".to_owned())
            };
            (b, rewrite, None)
        }
        RouteAction::Redirect(rd) => {
            let scheme = if rd.https { "https" } else { "http" };
            let port = rd.port.map(|p| format!(":{p}")).unwrap_or_default();
            let path = rd.path.as_ref().map(redirect_path_text).unwrap_or_default();
            let target = format!("{} {scheme}://{}{port} {path}", rd.response_code, rd.host);
            (Vec::new(), None, Some(target.trim_end().to_owned()))
        }
    };
    RouteRow {
        virtual_host: vh.domains.join(","),
        ids: (vh.name.clone(), r.name.clone()),
        order: i + 1,
        matcher: RowMatch {
            path: RowPath(m.path.clone()),
            case_sensitive: m.case_sensitive,
            method,
            headers,
            query_parameters,
        },
        backends,
        redirect,
        rewrite,
        precedence: r.precedence,
        listeners: schemes(listeners, vh, r),
        sources: r
            .sources
            .iter()
            .map(|s| RowSource::of(s, sources))
            .collect(),
    }
}

impl RouteRow {
    /// The MATCH column: `/api/*`, `GET /exact`, `~regex`, `(i)` when case-insensitive,
    /// then `name=value` conditions and `?name=value` query conditions.
    pub fn match_text(&self) -> String {
        let m = &self.matcher;
        let mut mt = match &m.path.0 {
            PathMatch::Prefix(p) => format!("{p}*"),
            PathMatch::Exact(p) => p.clone(),
            PathMatch::Regex(p) => format!("~{p}"),
        };
        if !m.case_sensitive {
            mt.push_str(" (i)");
        }
        if let Some(method) = &m.method {
            mt = format!("{} {mt}", value_text(method));
        }
        for h in &m.headers {
            mt.push_str(&format!(" {}={}", h.name, value_text(&h.value)));
        }
        for q in &m.query_parameters {
            mt.push_str(&format!(" ?{}={}", q.name, value_text(&q.value)));
        }
        mt
    }

    /// The BACKENDS column.
    pub fn backends_text(&self) -> String {
        if let Some(rd) = &self.redirect {
            return format!("redirect {rd}");
        }
        self.backends
            .iter()
            .map(|b| match (b.shadow_percent, &b.rewrite, b.weight) {
                (Some(p), _, _) => format!("{} (shadow {p}%)", b.service),
                (None, Some(rw), w) => format!(
                    "{} {}% (rewrite {})",
                    b.service,
                    w.unwrap_or(0),
                    rw.as_deref().unwrap_or("-")
                ),
                (None, None, w) => format!("{} {}%", b.service, w.unwrap_or(0)),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The SCHEMES column: `https route, http 301` when every listener agrees (the common
    /// case), else per listener (`edge-8080:8080 ...; edge-8443:8443 ...`).
    pub fn schemes_text(&self) -> String {
        let per: Vec<(String, String)> = self
            .listeners
            .iter()
            .map(|l| {
                (
                    format!("{}:{}", l.listener, l.port),
                    format!("https {}, http {}", l.https, l.http),
                )
            })
            .collect();
        match per.as_slice() {
            [] => "no listener".into(),
            [(_, first), rest @ ..] if rest.iter().all(|(_, t)| t == first) => first.clone(),
            _ => per
                .iter()
                .map(|(l, t)| format!("{l} {t}"))
                .collect::<Vec<_>>()
                .join("; "),
        }
    }

    /// The SOURCE column: `Kind/namespace/name file:line`, comma-separated.
    pub fn sources_text(&self) -> String {
        sources_text(&self.sources)
    }
}

fn sources_text(sources: &[RowSource]) -> String {
    sources
        .iter()
        .map(|s| {
            format!(
                "{}/{}/{} {}:{}",
                s.kind, s.namespace, s.name, s.file, s.line
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn value_text(v: &ValueMatch) -> String {
    match v {
        ValueMatch::Exact(s) | ValueMatch::Host(s) => s.clone(),
        ValueMatch::Regex(s) => format!("~{s}"),
        ValueMatch::Present => "*".to_owned(),
    }
}

/// The listeners whose filter chains serve `vh`: name, port and security model, each once.
fn listeners_of<'a>(ir: &'a Ir, vh: &VirtualHost) -> Vec<(&'a str, u16, SecurityModel)> {
    let mut out: Vec<(&str, u16, SecurityModel)> = Vec::new();
    for l in &ir.listeners {
        let serves = l.chains.iter().any(|c| c.virtual_hosts.contains(&vh.name));
        if serves && !out.iter().any(|(n, _, _)| *n == l.name) {
            out.push((l.name.as_str(), l.port, l.security));
        }
    }
    out
}

/// What secure and insecure requests get from this route on each listener serving its
/// virtual host.
fn schemes(
    listeners: &[(&str, u16, SecurityModel)],
    vh: &VirtualHost,
    r: &Route,
) -> Vec<RowListener> {
    let acme =
        matches!(&r.matcher.path, PathMatch::Prefix(p) if p == "/.well-known/acme-challenge/");
    let insecure = match (acme, vh.insecure) {
        (true, _) | (false, InsecureAction::Route) => "route",
        (false, InsecureAction::Redirect) => "301",
        (false, InsecureAction::Reject) => "no route",
    };
    listeners
        .iter()
        .map(|(name, port, security)| {
            let (https, http) = match security {
                SecurityModel::Xfp => ("route", insecure),
                SecurityModel::Secure => ("route", "route"),
                SecurityModel::Insecure => (insecure, insecure),
            };
            RowListener {
                listener: (*name).to_owned(),
                port: *port,
                https,
                http,
            }
        })
        .collect()
}

fn service_of(ir: &Ir, cluster: &str) -> String {
    ir.clusters
        .get(cluster)
        .map(|c| {
            let scheme = if c.tls.is_some() { "https://" } else { "" };
            format!("{scheme}{}:{}", c.host, c.port)
        })
        .unwrap_or_else(|| cluster.to_string())
}

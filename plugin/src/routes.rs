//! `kubectl ambassador routes`: the route table in the order Envoy evaluates it.

use ambassador_compiler::ir::{
    InsecureAction, Ir, PathMatch, RouteAction, SecurityModel, ValueMatch, VirtualHost,
};
use ambassador_compiler::lower::redirect_path_text;
use ambassador_compiler::source::Sources;
use serde_json::{json, Value};

/// One row per route, in evaluation order within each virtual host.
pub fn rows(ir: &Ir, sources: &Sources) -> Vec<Value> {
    let mut rows = Vec::new();
    for vh in &ir.virtual_hosts {
        let listeners = listeners_of(ir, vh);
        for (i, r) in vh.routes.iter().enumerate() {
            let m = &r.matcher;
            let (path_kind, path) = match &m.path {
                PathMatch::Prefix(p) => ("prefix", p),
                PathMatch::Exact(p) => ("exact", p),
                PathMatch::Regex(p) => ("regex", p),
            };
            let value = |v: &ValueMatch| match v {
                ValueMatch::Exact(s) => json!({"exact": s}),
                ValueMatch::Regex(s) => json!({"regex": s}),
                ValueMatch::Present => json!({"present": true}),
                ValueMatch::Host(s) => json!({"host": s}),
            };
            let method = m
                .headers
                .iter()
                .find(|h| h.name == ":method")
                .map(|h| value(&h.value));
            let headers: Vec<Value> = m
                .headers
                .iter()
                // The host glob `*` is no condition.
                .filter(|h| h.name != ":method" && h.value != ValueMatch::Host("*".into()))
                .map(|h| json!({"name": h.name, "match": value(&h.value)}))
                .collect();
            let query: Vec<Value> = m
                .query_parameters
                .iter()
                .map(|q| json!({"name": q.name, "match": value(&q.value)}))
                .collect();
            let (backends, rewrite, redirect) = match &r.action {
                RouteAction::Forward(f) => {
                    // Each member of a canary group keeps its own rewrite; the route's is
                    // shown when they agree, else each backend shows its own.
                    let rewrite_of = |p: &Option<String>| match (&f.settings.regex_rewrite, p) {
                        (Some(rr), _) => {
                            Value::from(format!("regex {} -> {}", rr.pattern, rr.substitution))
                        }
                        (None, Some(p)) => Value::from(p.clone()),
                        (None, None) => Value::Null,
                    };
                    let rewrites: Vec<Value> = f
                        .clusters
                        .iter()
                        .map(|c| rewrite_of(&c.settings.prefix_rewrite))
                        .collect();
                    let same = rewrites.windows(2).all(|w| w[0] == w[1]);
                    let mut b: Vec<Value> = f
                        .clusters
                        .iter()
                        .zip(&rewrites)
                        .map(|(c, rw)| {
                            let mut b = json!({"cluster": c.cluster, "service": service_of(ir, &c.cluster), "weight": c.weight});
                            if !same {
                                b["rewrite"] = rw.clone();
                            }
                            b
                        })
                        .collect();
                    if let Some(s) = &f.shadow {
                        b.push(json!({"cluster": s.cluster, "service": service_of(ir, &s.cluster), "shadow_percent": s.percent}));
                    }
                    let rewrite = if same {
                        rewrites.into_iter().next().unwrap_or(Value::Null)
                    } else {
                        Value::from("per backend")
                    };
                    (b, rewrite, Value::Null)
                }
                RouteAction::Redirect(rd) => {
                    let scheme = if rd.https { "https" } else { "http" };
                    let port = rd.port.map(|p| format!(":{p}")).unwrap_or_default();
                    let path = rd.path.as_ref().map(redirect_path_text).unwrap_or_default();
                    let target =
                        format!("{} {scheme}://{}{port} {path}", rd.response_code, rd.host);
                    (
                        Vec::new(),
                        Value::Null,
                        Value::from(target.trim_end().to_string()),
                    )
                }
            };
            let sources_json: Vec<Value> = r
                .sources
                .iter()
                .map(|s| {
                    json!({
                        "kind": s.kind,
                        "namespace": s.namespace,
                        "name": s.name,
                        "file": sources.name(s.span.file),
                        "line": s.span.start.line,
                    })
                })
                .collect();
            rows.push(json!({
                "virtual_host": vh.domains.join(","),
                "order": i + 1,
                "match": {
                    "path": {path_kind: path},
                    "case_sensitive": m.case_sensitive,
                    "method": method,
                    "headers": headers,
                    "query_parameters": query,
                },
                "backends": backends,
                "redirect": redirect,
                "rewrite": rewrite,
                "precedence": r.precedence,
                "listeners": schemes(&listeners, vh, r),
                "sources": sources_json,
            }));
        }
    }
    rows
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
/// virtual host: `route`, `301` (to https) or `no route`.
fn schemes(
    listeners: &[(&str, u16, SecurityModel)],
    vh: &VirtualHost,
    r: &ambassador_compiler::ir::Route,
) -> Vec<Value> {
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
            let (secure, cleartext) = match security {
                SecurityModel::Xfp => ("route", insecure),
                SecurityModel::Secure => ("route", "route"),
                SecurityModel::Insecure => (insecure, insecure),
            };
            json!({"listener": name, "port": port, "https": secure, "http": cleartext})
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

fn value_text(v: &Value) -> String {
    if let Some(s) = v.get("exact").and_then(Value::as_str) {
        s.to_string()
    } else if let Some(s) = v.get("regex").and_then(Value::as_str) {
        format!("~{s}")
    } else if let Some(s) = v.get("host").and_then(Value::as_str) {
        s.to_string()
    } else {
        "*".to_string()
    }
}

/// `https route, http 301` when every listener agrees (the common case), else per listener
/// (`edge-8080: ...; edge-8443: ...`).
fn scheme_text(listeners: &Value) -> String {
    let per: Vec<(String, String)> = listeners
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| {
            (
                format!(
                    "{}:{}",
                    l["listener"].as_str().unwrap_or_default(),
                    l["port"]
                ),
                format!(
                    "https {}, http {}",
                    l["https"].as_str().unwrap_or_default(),
                    l["http"].as_str().unwrap_or_default()
                ),
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

/// The table for people: aligned columns, one line per route.
pub fn table(rows: &[Value]) -> String {
    let header = [
        "VIRTUAL HOST",
        "#",
        "MATCH",
        "BACKENDS",
        "REWRITE",
        "PREC",
        "SCHEMES",
        "SOURCE",
    ];
    let mut cells: Vec<[String; 8]> = Vec::new();
    for r in rows {
        let m = &r["match"];
        let (kind, path) = m["path"]
            .as_object()
            .and_then(|o| o.iter().next())
            .map_or(("", ""), |(k, v)| {
                (k.as_str(), v.as_str().unwrap_or_default())
            });
        let mut mt = match kind {
            "prefix" => format!("{path}*"),
            "exact" => path.to_string(),
            _ => format!("~{path}"),
        };
        if m["case_sensitive"] == Value::Bool(false) {
            mt.push_str(" (i)");
        }
        if !m["method"].is_null() {
            mt = format!("{} {mt}", value_text(&m["method"]));
        }
        for h in m["headers"].as_array().into_iter().flatten() {
            mt.push_str(&format!(
                " {}={}",
                h["name"].as_str().unwrap_or_default(),
                value_text(&h["match"])
            ));
        }
        for q in m["query_parameters"].as_array().into_iter().flatten() {
            mt.push_str(&format!(
                " ?{}={}",
                q["name"].as_str().unwrap_or_default(),
                value_text(&q["match"])
            ));
        }
        let backends = if let Some(rd) = r["redirect"].as_str() {
            format!("redirect {rd}")
        } else {
            r["backends"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|b| match b.get("shadow_percent") {
                    Some(p) => format!(
                        "{} (shadow {p}%)",
                        b["service"].as_str().unwrap_or_default()
                    ),
                    None => match b.get("rewrite") {
                        Some(rw) => format!(
                            "{} {}% (rewrite {})",
                            b["service"].as_str().unwrap_or_default(),
                            b["weight"],
                            rw.as_str().unwrap_or("-")
                        ),
                        None => format!(
                            "{} {}%",
                            b["service"].as_str().unwrap_or_default(),
                            b["weight"]
                        ),
                    },
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        let rewrite = r["rewrite"].as_str().unwrap_or("-").to_string();
        let source = r["sources"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| {
                format!(
                    "{}/{}/{} {}:{}",
                    s["kind"].as_str().unwrap_or_default(),
                    s["namespace"].as_str().unwrap_or_default(),
                    s["name"].as_str().unwrap_or_default(),
                    s["file"].as_str().unwrap_or_default(),
                    s["line"]
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        cells.push([
            r["virtual_host"].as_str().unwrap_or_default().to_string(),
            r["order"].to_string(),
            mt,
            backends,
            rewrite,
            r["precedence"].to_string(),
            scheme_text(&r["listeners"]),
            source,
        ]);
    }
    let mut widths = header.map(str::len);
    for row in &cells {
        for (i, c) in row.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    let line = |cols: &[String], out: &mut String| {
        let mut l = String::new();
        for (i, c) in cols.iter().enumerate() {
            if i + 1 == cols.len() {
                l.push_str(c);
            } else {
                l.push_str(c);
                l.push_str(&" ".repeat(widths[i] - c.chars().count() + 2));
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&header.map(str::to_string), &mut out);
    for row in &cells {
        line(row, &mut out);
    }
    out
}

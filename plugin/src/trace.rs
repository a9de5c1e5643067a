//! `kubectl ambassador trace`: where one request goes, and why no other route takes it.

use ambassador_compiler::ir::SourceRef;
use ambassador_compiler::matcher::{ChainPick, DomainPick};
use ambassador_compiler::source::Sources;
use ambassador_compiler::trace::{Outcome, Trace, Verdict};
use serde_json::Value;

/// `kind namespace/name file:line`.
pub fn source_text(s: &SourceRef, sources: &Sources) -> String {
    format!(
        "{} {}/{} {}:{}",
        s.kind,
        s.namespace,
        s.name,
        sources.name(s.span.file),
        s.span.start.line
    )
}

fn sources_text(list: &[SourceRef], sources: &Sources) -> String {
    list.iter()
        .map(|s| source_text(s, sources))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The trace in words, step by step.
pub fn text(t: &Trace, sources: &Sources) -> String {
    let mut out = String::new();
    let r = &t.request;
    let scheme = if r.tls { "https" } else { "http" };
    out.push_str(&format!(
        "{} {scheme}://{}{}\n",
        r.method, r.authority, r.path
    ));
    let mut line = |label: &str, text: String| out.push_str(&format!("  {label:<18}{text}\n"));
    match &t.listener {
        Some(l) => line(
            "listener",
            format!(
                "{} on port {}{}",
                l.name,
                l.port,
                l.source
                    .as_ref()
                    .map(|s| format!(" ({})", source_text(s, sources)))
                    .unwrap_or_else(|| " (default)".to_owned())
            ),
        ),
        None => line("listener", format!("none on port {}", r.port)),
    }
    if let Some(c) = &t.chain {
        let why = match &c.pick {
            ChainPick::ExactName(n) => format!("SNI `{n}`"),
            ChainPick::WildcardName(n) => format!("SNI matches `{n}`"),
            ChainPick::AnyName if r.tls => format!(
                "no chain names SNI `{}`; the chain for any name",
                r.sni.as_deref().unwrap_or("")
            ),
            ChainPick::AnyName => "cleartext".to_owned(),
        };
        let tls = if c.terminates_tls {
            ", terminates TLS"
        } else {
            ""
        };
        line("filter chain", format!("{} ({why}{tls})", c.name));
    }
    if let Some(h) = &t.connection_manager {
        line("route config", h.route_config.clone());
        line(
            "x-forwarded-proto",
            format!(
                "{}{}",
                h.forwarded_proto,
                if h.forwarded_proto == scheme {
                    ""
                } else {
                    " (from a trusted hop in front)"
                }
            ),
        );
        if let Some(p) = &h.normalized_path {
            line("path", format!("{p} (normalised from {})", r.path));
        }
    }
    if let Some(v) = &t.virtual_host {
        let why = match &v.pick {
            DomainPick::Exact(d) => format!("Host is `{d}`"),
            DomainPick::Suffix(d) | DomainPick::Prefix(d) => format!("Host matches `{d}`"),
            DomainPick::Any => "`*`: no other domain matches the Host".to_owned(),
        };
        let host = v
            .source
            .as_ref()
            .map(|s| format!(", {}", source_text(s, sources)))
            .unwrap_or_default();
        line(
            "virtual host",
            format!("{} ({why}{host})", v.domains.join(", ")),
        );
    }
    if !t.routes.is_empty() {
        out.push_str(&format!(
            "  routes, first match wins ({}):\n",
            t.routes.len()
        ));
        for rv in &t.routes {
            let (mark, why) = match &rv.verdict {
                Verdict::Taken { percent } if *percent >= 100.0 => {
                    ("→", "takes the request".to_owned())
                }
                Verdict::Taken { percent } => {
                    ("→", format!("takes {} of such requests", pct(*percent)))
                }
                Verdict::Missed { condition } => ("✗", condition.clone()),
                Verdict::Shadowed { by } => (
                    "=",
                    format!("would match, but route {by} takes the request first"),
                ),
            };
            let redirect = if rv.https_redirect {
                " [https redirect]"
            } else {
                ""
            };
            out.push_str(&format!(
                "    {mark} {:>3}  {}{redirect}\n",
                rv.index, rv.conditions
            ));
            out.push_str(&format!("           {why}\n"));
            if !rv.sources.is_empty() {
                out.push_str(&format!(
                    "           from {}\n",
                    sources_text(&rv.sources, sources)
                ));
            }
        }
    }
    out.push_str(&format!("result: {}\n", outcome_text(&t.outcome, sources)));
    if !t.nearest.is_empty() {
        out.push_str("nearest misses:\n");
        for i in &t.nearest {
            if let Some(rv) = t.routes.get(i - 1) {
                let why = match &rv.verdict {
                    Verdict::Missed { condition } => condition.as_str(),
                    _ => "",
                };
                out.push_str(&format!("  route {i}: {why}"));
                if !rv.sources.is_empty() {
                    out.push_str(&format!(" ({})", sources_text(&rv.sources, sources)));
                }
                out.push('\n');
            }
        }
    }
    if !t.left_out.is_empty() {
        out.push_str("left out of the configuration, would have matched:\n");
        for l in &t.left_out {
            let code = l
                .code
                .map(|c| format!("{}: ", c.as_str()))
                .unwrap_or_default();
            let at = l
                .span
                .map(|s| {
                    format!(
                        " ({}:{}:{})",
                        sources.name(s.file),
                        s.start.line,
                        s.start.column
                    )
                })
                .unwrap_or_default();
            out.push_str(&format!(
                "  {}\n    {code}{}{at}\n",
                source_text(&l.mapping, sources),
                l.reason
            ));
        }
    }
    out
}

fn pct(p: f64) -> String {
    if (p - p.round()).abs() < 1e-9 {
        format!("{}%", p.round())
    } else {
        format!("{p:.2}%")
    }
}

fn outcome_text(o: &Outcome, sources: &Sources) -> String {
    match o {
        Outcome::Forward { backends } => {
            let mut s = String::from("routed");
            for b in backends {
                s.push_str(&format!(
                    "\n  {} to {} (cluster {}): path `{}`, Host `{}`",
                    pct(b.percent),
                    b.service.as_deref().unwrap_or(&b.cluster),
                    b.cluster,
                    b.path,
                    b.host
                ));
                if let Some(src) = &b.source {
                    s.push_str(&format!(" ({})", source_text(src, sources)));
                }
            }
            s
        }
        Outcome::Redirect {
            route,
            status,
            location,
        } => format!("{status} redirect to {location} (route {route})"),
        Outcome::Direct { route, status } => {
            format!("Envoy answers {status} itself (route {route})")
        }
        Outcome::NoRoute { status } => {
            format!("no route: Envoy answers {status}")
        }
        Outcome::NoVirtualHost { status } => {
            format!("no virtual host takes this Host: Envoy answers {status}")
        }
        Outcome::NoListener { port } => {
            format!("nothing listens on port {port}: the connection is refused")
        }
        Outcome::NoFilterChain => {
            "no filter chain takes the connection: Envoy closes it".to_owned()
        }
        Outcome::TlsRefused { reason } => format!("the TLS handshake fails: {reason}"),
        Outcome::BadRequest { status, reason } => {
            format!("Envoy answers {status} before routing: {reason}")
        }
        Outcome::Tcp { clusters } => format!(
            "proxied as TCP to {}",
            clusters
                .iter()
                .map(|(c, w)| format!("{c} ({w})"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Outcome::Unknown { what } => format!("not predicted: {what}"),
    }
}

/// The trace as data, every source with its file name and line instead of a file index.
pub fn data(t: &Trace, sources: &Sources) -> Value {
    with_files(serde_json::to_value(t).unwrap_or(Value::Null), sources)
}

/// `v` with every span replaced by the `file` and `line` it points at.
pub fn with_files(mut v: Value, sources: &Sources) -> Value {
    name_files(&mut v, sources);
    v
}

fn name_files(v: &mut Value, sources: &Sources) {
    match v {
        Value::Object(map) => {
            let span = map.get("span").and_then(|s| {
                Some((
                    s.get("file")?.as_u64()?,
                    s.get("start")?.get("line")?.as_u64()?,
                ))
            });
            if let Some((file, line)) = span {
                map.remove("span");
                let id = ambassador_compiler::source::FileId(file as u32);
                map.insert("file".into(), Value::from(sources.name(id)));
                map.insert("line".into(), Value::from(line));
            }
            for (_, child) in map.iter_mut() {
                name_files(child, sources);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| name_files(i, sources)),
        _ => {}
    }
}

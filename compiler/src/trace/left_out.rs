//! Mappings that would have taken a request but are not in what Envoy was sent: left out
//! for an error, for another `ambassador_id`, or only in virtual hosts no Listener serves.
//!
//! This is the one place the tracer looks at resources rather than at the emitted table:
//! what was left out was, by definition, never emitted. The test is deliberately coarse
//! (the path prefix or regex and the host glob), since it only points at candidates; each
//! comes with the finding that explains why it is missing.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::diag::{Code, Severity};
use crate::front::Kind;
use crate::ir::{SourceObject, SourceRef};
use crate::matcher::{path_only, Pattern, Request};
use crate::source::Span;
use crate::Compilation;

/// A Mapping that would have matched but is not served.
#[derive(Clone, Debug, Serialize)]
pub struct LeftOut {
    pub mapping: SourceRef,
    /// Why it is not served: the finding's code and message, with its position.
    pub code: Option<Code>,
    pub reason: String,
    pub span: Option<Span>,
}

/// Mappings whose prefix and host would take `req` (path after normalisation) but that no
/// served route came from.
pub fn left_out(c: &Compilation, req: &Request, path: &str) -> Vec<LeftOut> {
    // Mappings behind routes of served virtual hosts, and of any virtual host.
    let served_vhs: BTreeSet<&str> =
        c.ir.listeners
            .iter()
            .flat_map(|l| &l.chains)
            .flat_map(|ch| ch.virtual_hosts.iter().map(String::as_str))
            .collect();
    let mut served: BTreeSet<(&str, &str)> = BTreeSet::new();
    let mut unserved: BTreeSet<(&str, &str)> = BTreeSet::new();
    for vh in &c.ir.virtual_hosts {
        let set = if served_vhs.contains(vh.name.as_str()) {
            &mut served
        } else {
            &mut unserved
        };
        for r in vh.routes.iter() {
            for s in &r.sources {
                set.insert((s.namespace.as_str(), s.name.as_str()));
            }
            if let crate::ir::RouteAction::Forward(f) = &r.action {
                for m in &f.clusters {
                    set.insert((m.source.namespace.as_str(), m.source.name.as_str()));
                }
            }
        }
    }
    let path = path_only(path);
    let mut out = Vec::new();
    let candidates = c.manifests.resources.iter().chain(&c.manifests.excluded);
    for r in candidates.filter(|r| r.kind == Kind::Mapping) {
        let key = (r.id.namespace.as_str(), r.id.name.as_str());
        if served.contains(&key) {
            continue;
        }
        let Some(prefix) = r.field("prefix").and_then(|n| n.as_str()) else {
            continue;
        };
        let flag = |name: &str| r.field(name).and_then(|n| n.as_bool());
        let path_ok = if flag("prefix_regex") == Some(true) {
            Pattern::new(prefix).full_match(path)
        } else if flag("case_sensitive") == Some(false) {
            path.to_ascii_lowercase()
                .starts_with(&prefix.to_ascii_lowercase())
        } else {
            path.starts_with(prefix)
        };
        let host = ["hostname", "host"]
            .iter()
            .find_map(|k| r.field(k).and_then(|n| n.as_str()))
            .unwrap_or("*");
        if !path_ok || !glob_matches(host, &req.authority) {
            continue;
        }
        let mapping = SourceRef::new(SourceObject {
            kind: "Mapping".into(),
            namespace: r.id.namespace.as_str().into(),
            name: r.id.name.as_str().into(),
            span: r.span,
        });
        // The most severe finding about the object says why it is missing.
        let finding = c
            .diagnostics
            .iter()
            .filter(|d| {
                d.object.as_ref().is_some_and(|o| {
                    o.kind == "Mapping" && o.namespace == r.id.namespace && o.name == r.id.name
                })
            })
            .max_by_key(|d| d.severity);
        let (code, reason, span) = match finding {
            Some(d) if d.severity == Severity::Error || !unserved.contains(&key) => {
                (Some(d.code), d.message.clone(), d.span)
            }
            _ if unserved.contains(&key) => (
                None,
                "its routes are only in virtual hosts of Hosts no Listener serves".to_owned(),
                None,
            ),
            _ => (None, "it is not in the configuration".to_owned(), None),
        };
        out.push(LeftOut {
            mapping,
            code,
            reason,
            span,
        });
    }
    out
}

/// Ambassador's host glob (`*`, `*.x`, `x.*`, or exact) against a `Host`, without its port,
/// case-insensitively.
fn glob_matches(glob: &str, authority: &str) -> bool {
    let host = match authority.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => authority,
    }
    .to_ascii_lowercase();
    let glob = glob.to_ascii_lowercase();
    if glob == "*" {
        return true;
    }
    if let Some(suffix) = glob.strip_prefix('*') {
        return host.ends_with(suffix) && host.len() > suffix.len();
    }
    if let Some(prefix) = glob.strip_suffix('*') {
        return host.starts_with(prefix) && host.len() > prefix.len();
    }
    host == glob
}

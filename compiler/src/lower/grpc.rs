//! The service of an edge-wide object (RateLimitService, LogService, TracingService): its `service`, its `protocol_version` and its cluster.

use foldhash::HashMap;

use crate::diag::{Code, Diagnostic};
use crate::front::Resource;
use crate::ir::{Cluster, Discovery, LbPolicy, UpstreamTls};

use super::cluster::{cluster_hash, context_tls, sanitize};
use super::mapping::Reader;
use super::service::Upstream;
use super::source_ref;

/// The one object of a kind Emissary supports once: `None` when there is none, and when
/// there are several, each reported with `code` naming all of them (Emissary then uses
/// none, and `consequence` says what that means).
pub(super) fn only_one<'r>(
    services: impl Iterator<Item = &'r Resource>,
    code: Code,
    kind: &str,
    consequence: &str,
    diags: &mut Vec<Diagnostic>,
) -> Option<&'r Resource> {
    let all: Vec<&Resource> = services.collect();
    match all.as_slice() {
        [] => None,
        [one] => Some(*one),
        many => {
            let names: Vec<String> = many
                .iter()
                .map(|r| format!("`{}/{}`", r.id.namespace, r.id.name))
                .collect();
            for r in many {
                let mut d = Diagnostic::at(
                    code,
                    r.span,
                    format!(
                        "{} {kind}s ({}): Emissary supports one and then uses none, so {consequence}",
                        many.len(),
                        names.join(", ")
                    ),
                )
                .with_object(&r.id);
                for other in many.iter().filter(|o| o.id != r.id) {
                    d = d.with_related(other.span, format!("another {kind}"));
                }
                diags.push(d);
            }
            None
        }
    }
}

/// The cluster for `upstream`, named `<prefix>_<host>_<port>_<hash>`: `tls` (`true`, or a
/// TLSContext's name) or `https://` originate TLS, the Mapping cluster settings
/// (`circuit_breakers`) apply. `http2` for gRPC. An undefined TLSContext is reported with
/// `consequence` and clears `ok`.
pub(super) fn service_cluster(
    reader: &mut Reader,
    upstream: &Upstream,
    tls_contexts: &HashMap<String, Resource>,
    prefix: &str,
    http2: bool,
    consequence: &str,
    ok: &mut bool,
) -> Cluster {
    let r = reader.r;
    let host = upstream.dns_name(&r.id.namespace);
    let sni = (!upstream.is_ip()).then(|| host.clone());
    let plain = |sni: Option<String>| UpstreamTls {
        sni,
        context: None,
        client_secret: None,
        ca_secret: None,
        alpn_protocols: Vec::new(),
    };
    let tls = match reader.node("tls") {
        Some(t) if t.as_bool().is_some() => {
            (t.as_bool() == Some(true) || upstream.https).then(|| plain(sni.clone()))
        }
        Some(t) => match t.as_str().and_then(|n| tls_contexts.get(n).map(|c| (n, c))) {
            Some((_, ctx)) => Some(context_tls(ctx, sni.clone())),
            None => {
                let span = t.span;
                reader.push(
                    Code::UndefinedTlsContext,
                    span,
                    "tls",
                    format!(
                        "TLSContext `{}` named by {} `{}` is not defined{consequence}",
                        t.scalar().unwrap_or("?"),
                        r.kind.as_str(),
                        r.id.name
                    ),
                );
                *ok = false;
                None
            }
        },
        None => upstream.https.then(|| plain(sni)),
    };
    // Without a port, 443 when the cluster originates TLS (`service::Upstream::port_for`).
    let port = upstream.port_for(tls.is_some());
    let settings = super::mapping::read_cluster_settings(reader, ok);
    let mut cluster = Cluster {
        name: String::new(),
        host: host.clone(),
        port,
        more_endpoints: Vec::new(),
        discovery: if upstream.is_ip() {
            Discovery::Static
        } else {
            Discovery::Dns
        },
        tls: tls.map(Box::new),
        http2,
        connect_timeout_ms: 3000,
        idle_timeout_ms: None,
        max_connection_lifetime_ms: None,
        lb_policy: LbPolicy::RoundRobin,
        circuit_breakers: settings.circuit_breakers,
        sources: vec![source_ref(r)],
    };
    // Named with the hash of its settings, as a Mapping's gRPC cluster.
    cluster.name = format!(
        "{prefix}_{}_{port}_{:08x}",
        sanitize(&host),
        cluster_hash(&cluster) as u32
    );
    cluster
}

/// Reads `service`, reporting (with `code`) a missing or unparsable one with `consequence`.
pub(super) fn read_service(reader: &mut Reader, code: Code, consequence: &str) -> Option<Upstream> {
    let r = reader.r;
    let (kind, name) = (r.kind.as_str(), &r.id.name);
    match reader.node("service") {
        None => {
            reader.push(
                code,
                r.span,
                "service",
                format!(
                    "{kind} `{name}` has no `{}`{consequence}",
                    r.path("service")
                ),
            );
            None
        }
        Some(n) => match reader.str("service").map(super::service::parse) {
            Some(Ok(u)) => Some(u),
            Some(Err(message)) => {
                reader.push(
                    code,
                    n.span,
                    "service",
                    format!("invalid `service` in {kind} `{name}`: {message}{consequence}"),
                );
                None
            }
            None => {
                reader.push(
                    code,
                    n.span,
                    "service",
                    format!("`service` of {kind} `{name}` must be a string{consequence}"),
                );
                None
            }
        },
    }
}

/// Checks `protocol_version: v3`, reporting (with `code`) anything else with `consequence`.
pub(super) fn require_v3(reader: &mut Reader, code: Code, serves: &str, consequence: &str) -> bool {
    let r = reader.r;
    match reader.str("protocol_version") {
        Some("v3") => true,
        other => {
            let (span, said) = match other {
                Some(v) => (
                    reader.span("protocol_version"),
                    format!("`protocol_version: {v}`"),
                ),
                None => (
                    r.span,
                    "no `protocol_version` (Emissary's default is v2)".to_string(),
                ),
            };
            reader.push(
                code,
                span,
                "protocol_version",
                format!(
                    "{} `{}` has {said}; only v3 ({serves}) is served{consequence}",
                    r.kind.as_str(),
                    r.id.name
                ),
            );
            false
        }
    }
}

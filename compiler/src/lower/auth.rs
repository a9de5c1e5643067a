//! AuthServices to the IR's external authorization: every AuthService merged into one, as Emissary merges them.
//!
//! Emissary (`ir/irauth.py`) loads every AuthService into one `ext_authz` filter:
//! `path_prefix` keeps the first value, `proto`, `timeout_ms`, `allow_request_body`,
//! `include_body`, `add_auth_headers`, `status_on_error` and `failure_mode_allow` take the
//! last, the header lists are unions, and each `auth_service` is one more endpoint of a
//! single cluster, `cluster_extauth_…`. Clusters that differ in anything but the service
//! ("auth canary … can only change service!") and any other error leave the filter
//! misconfigured, and Emissary then answers 500 on every route.
//!
//! Here an AuthService with an error still yields an [`Auth`], with no check: the back end
//! installs a filter that refuses what it would have checked, so protected routes never
//! open because their AuthService is broken. Routes that bypass auth keep working.

use std::collections::{BTreeMap, BTreeSet};

use foldhash::HashMap;

use crate::diag::{Code, Diagnostic};
use crate::front::yaml::Node;
use crate::front::Resource;
use crate::ir::{
    Auth, AuthBody, AuthCheck, AuthProtocol, Cluster, Discovery, LbPolicy, UpstreamTls,
};

use super::cluster::{cluster_hash, sanitize};
use super::mapping::{read_cluster_settings, Reader};
use super::{service, source_ref};

/// Request headers Emissary always lets through to an HTTP authorization service.
const DEFAULT_REQUEST_HEADERS: [&str; 8] = [
    "authorization",
    "cookie",
    "from",
    "proxy-authorization",
    "user-agent",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
];

/// Headers of the authorization answer Emissary always passes on.
const DEFAULT_AUTHORIZATION_HEADERS: [&str; 5] = [
    "location",
    "authorization",
    "proxy-authenticate",
    "set-cookie",
    "www-authenticate",
];

/// The statuses Envoy's `envoy.type.v3.StatusCode` defines: it refuses any other in
/// `status_on_error`, and a refused listener would keep the old configuration.
const STATUS_CODES: [i64; 56] = [
    100, 200, 201, 202, 203, 204, 205, 206, 207, 208, 226, 300, 301, 302, 303, 304, 305, 307, 308,
    400, 401, 402, 403, 404, 405, 406, 407, 408, 409, 410, 411, 412, 413, 414, 415, 416, 417, 421,
    422, 423, 424, 426, 428, 429, 431, 500, 501, 502, 503, 504, 505, 506, 507, 508, 510, 511,
];

/// `allow_request_body: true` without `include_body`: 4096 bytes, a partial body allowed.
const DEFAULT_BODY: AuthBody = AuthBody {
    max_bytes: 4096,
    allow_partial: true,
};

/// One AuthService as read, before merging.
struct One<'r> {
    r: &'r Resource,
    /// `(host, port, https)` of `auth_service`.
    service: (String, u16, bool),
    grpc: bool,
    tls: Option<UpstreamTls>,
    path_prefix: Option<String>,
    timeout_ms: Option<u64>,
    allow_request_body: Option<bool>,
    include_body: Option<AuthBody>,
    request_headers: Vec<String>,
    authorization_headers: Vec<String>,
    add_auth_headers: Option<BTreeMap<String, String>>,
    status_on_error: Option<u32>,
    failure_mode_allow: Option<bool>,
    circuit_breakers: Vec<crate::ir::CircuitBreaker>,
}

/// The merged authorization of `services` (in input order) and the cluster it checks
/// with. `None` without AuthServices; an [`Auth`] without a check (and no cluster) when any
/// of them has an error, which is reported in `diags`.
pub(super) fn auth<'r>(
    services: impl Iterator<Item = &'r Resource>,
    tls_contexts: &HashMap<String, Resource>,
    diags: &mut Vec<Diagnostic>,
) -> Option<(Auth, Option<Cluster>)> {
    let mut sources = Vec::new();
    let mut read = Vec::new();
    let mut broken = false;
    for r in services {
        sources.push(source_ref(r));
        let mut reader = Reader::new(r);
        let one = read_one(&mut reader, tls_contexts);
        broken |= one.is_none();
        diags.append(&mut reader.diags);
        read.extend(one);
    }
    if sources.is_empty() {
        return None;
    }
    if broken {
        return Some((
            Auth {
                sources,
                check: None,
            },
            None,
        ));
    }
    match merge(&read, diags) {
        Some((check, cluster)) => Some((
            Auth {
                sources,
                check: Some(check),
            },
            Some(cluster),
        )),
        None => Some((
            Auth {
                sources,
                check: None,
            },
            None,
        )),
    }
}

/// Reads one AuthService; `None` (reported) when it cannot be compiled.
fn read_one<'r>(
    reader: &mut Reader<'r>,
    tls_contexts: &HashMap<String, Resource>,
) -> Option<One<'r>> {
    let r = reader.r;
    let mut ok = true;
    let name = &r.id.name;
    let refuse = "; the routes it protects answer 500 until it is fixed";

    let service = match reader.node("auth_service") {
        None => {
            reader.push(
                Code::AuthServiceMissing,
                r.span,
                "auth_service",
                format!(
                    "AuthService `{name}` has no `{}`{refuse}",
                    r.path("auth_service")
                ),
            );
            None
        }
        Some(n) => match reader.str("auth_service").map(service::parse) {
            Some(Ok(u)) => {
                // The port is settled below, once it is known whether TLS is originated.
                Some((u.dns_name(&r.id.namespace), u.port, u.https))
            }
            Some(Err(message)) => {
                reader.push(
                    Code::AuthServiceMissing,
                    n.span,
                    "auth_service",
                    format!("invalid `auth_service` in AuthService `{name}`: {message}{refuse}"),
                );
                None
            }
            None => {
                reader.push(
                    Code::AuthServiceMissing,
                    n.span,
                    "auth_service",
                    format!("`auth_service` of AuthService `{name}` must be a string{refuse}"),
                );
                None
            }
        },
    };

    let invalid = |reader: &mut Reader, field: &str, message: String| {
        let span = reader.span(field);
        reader.push(Code::AuthInvalid, span, field, format!("{message}{refuse}"));
    };

    let grpc = match reader.node("proto") {
        None => false,
        Some(_) => match reader.str("proto") {
            Some("http") => false,
            Some("grpc") => true,
            other => {
                invalid(
                    reader,
                    "proto",
                    format!(
                        "`proto: {}` of AuthService `{name}` is neither `http` nor `grpc`",
                        other.unwrap_or("?")
                    ),
                );
                ok = false;
                false
            }
        },
    };
    let version = reader.str("protocol_version");
    if grpc && version != Some("v3") {
        let (span, said) = match version {
            Some(v) => (
                reader.span("protocol_version"),
                format!("`protocol_version: {v}`"),
            ),
            None => (
                reader.r.key_span("proto"),
                "no `protocol_version` (Emissary's default is v2)".to_string(),
            ),
        };
        reader.push(
            Code::AuthProtocolVersion,
            span,
            "protocol_version",
            format!("gRPC AuthService `{name}` has {said}; only v3 is served{refuse}"),
        );
        ok = false;
    } else if let Some(v) = version.filter(|v| *v != "v2" && *v != "v3") {
        invalid(
            reader,
            "protocol_version",
            format!("`protocol_version: {v}` of AuthService `{name}` is neither `v2` nor `v3`"),
        );
        ok = false;
    }

    let path_prefix = reader.str("path_prefix").map(str::to_string);
    if let Some(p) = &path_prefix {
        if !p.is_empty() && !p.starts_with('/') {
            invalid(
                reader,
                "path_prefix",
                format!("`path_prefix: {p}` of AuthService `{name}` must start with `/`"),
            );
            ok = false;
        }
    }
    if reader.node("path_prefix").is_some() && path_prefix.is_none() {
        invalid(
            reader,
            "path_prefix",
            format!("`path_prefix` of AuthService `{name}` must be a string"),
        );
        ok = false;
    }

    let timeout_ms = match reader.node("timeout_ms") {
        None => None,
        Some(n) => match n.as_int() {
            Some(v) if v > 0 => Some(v as u64),
            _ => {
                invalid(
                    reader,
                    "timeout_ms",
                    format!("`timeout_ms` of AuthService `{name}` must be a positive integer"),
                );
                ok = false;
                None
            }
        },
    };

    let flag = |reader: &mut Reader, field: &str, ok: &mut bool| match reader.node(field) {
        None => None,
        Some(_) => match reader.bool(field) {
            Some(b) => Some(b),
            None => {
                invalid(
                    reader,
                    field,
                    format!("`{field}` of AuthService `{name}` must be a boolean"),
                );
                *ok = false;
                None
            }
        },
    };
    let allow_request_body = flag(reader, "allow_request_body", &mut ok);
    let failure_mode_allow = flag(reader, "failure_mode_allow", &mut ok);

    let include_body = match reader.node("include_body") {
        None => None,
        Some(n) => {
            let max = n.get("max_bytes").and_then(Node::as_int);
            let partial = n
                .get("allow_partial")
                .map(|p| p.as_bool().or_else(|| p.yaml11_bool()));
            match (max, partial) {
                (Some(m), Some(Some(p))) if (1..=i64::from(u32::MAX)).contains(&m) => {
                    Some(AuthBody {
                        max_bytes: m as u32,
                        allow_partial: p,
                    })
                }
                _ => {
                    invalid(
                        reader,
                        "include_body",
                        format!("`include_body` of AuthService `{name}` must be `{{max_bytes: <positive integer>, allow_partial: <boolean>}}`"),
                    );
                    ok = false;
                    None
                }
            }
        }
    };

    let status_on_error = match reader.node("status_on_error") {
        None => None,
        Some(n) => match n.get("code").and_then(Node::as_int) {
            Some(c) if STATUS_CODES.contains(&c) => Some(c as u32),
            _ => {
                invalid(
                    reader,
                    "status_on_error",
                    format!("`status_on_error` of AuthService `{name}` must be `{{code: <HTTP status>}}` with a status Envoy knows (e.g. 403, 500, 503)"),
                );
                ok = false;
                None
            }
        },
    };

    let add_auth_headers = match reader.node("add_auth_headers") {
        None => None,
        Some(n) => {
            let mut map = BTreeMap::new();
            let entries = n.as_map().unwrap_or_default();
            let mut good = n.as_map().is_some();
            for (k, v) in entries {
                match (k.scalar(), v.scalar()) {
                    (Some(k), Some(v)) => {
                        map.insert(k.to_ascii_lowercase(), v.to_string());
                    }
                    _ => good = false,
                }
            }
            if !good {
                invalid(
                    reader,
                    "add_auth_headers",
                    format!("`add_auth_headers` of AuthService `{name}` must map header names to strings"),
                );
                ok = false;
            }
            Some(map)
        }
    };

    let lower = |v: Vec<String>| v.into_iter().map(|h| h.to_ascii_lowercase()).collect();
    let request_headers = lower(reader.str_list("allowed_request_headers"));
    let authorization_headers = lower(reader.str_list("allowed_authorization_headers"));

    // `tls: true` or a TLSContext; `https://` originates TLS too.
    let https = service.as_ref().is_some_and(|s| s.2);
    let sni = service
        .as_ref()
        .filter(|s| s.0.parse::<std::net::IpAddr>().is_err())
        .map(|s| s.0.clone());
    let tls = match reader.node("tls") {
        Some(t) if t.as_bool().is_some() || t.yaml11_bool().is_some() => {
            (t.as_bool().or_else(|| t.yaml11_bool()) == Some(true) || https).then(|| UpstreamTls {
                sni: sni.clone(),
                context: None,
                client_secret: None,
                ca_secret: None,
                alpn_protocols: Vec::new(),
            })
        }
        Some(t) => match t.as_str().and_then(|n| tls_contexts.get(n).map(|c| (n, c))) {
            Some((_, ctx)) => Some(super::cluster::context_tls(ctx, sni.clone())),
            None => {
                let span = t.span;
                reader.push(
                    Code::UndefinedTlsContext,
                    span,
                    "tls",
                    format!(
                        "TLSContext `{}` named by AuthService `{name}` is not defined{refuse}",
                        t.scalar().unwrap_or("?")
                    ),
                );
                ok = false;
                None
            }
        },
        None => https.then(|| UpstreamTls {
            sni: sni.clone(),
            context: None,
            client_secret: None,
            ca_secret: None,
            alpn_protocols: Vec::new(),
        }),
    };

    let cluster = read_cluster_settings(reader, &mut ok);
    // Without a port, 443 when the cluster originates TLS (`tls: true`, a TLSContext or
    // `https://`), else 80, as Emissary's `IRCluster` decides.
    let service = service.map(|(host, port, https)| {
        (
            host,
            port.unwrap_or(if tls.is_some() { 443 } else { 80 }),
            https,
        )
    })?;
    ok.then_some(One {
        r,
        service,
        grpc,
        tls,
        path_prefix,
        timeout_ms,
        allow_request_body,
        include_body,
        request_headers,
        authorization_headers,
        add_auth_headers,
        status_on_error,
        failure_mode_allow,
        circuit_breakers: cluster.circuit_breakers,
    })
}

/// Merges the AuthServices read as Emissary does. `None` (reported) when they disagree on
/// the cluster.
fn merge(all: &[One], diags: &mut Vec<Diagnostic>) -> Option<(AuthCheck, Cluster)> {
    let first = all.first()?;
    // Settings where a second value is reported: the one that wins, by Emissary's rules.
    fn conflict<T: PartialEq + std::fmt::Debug>(
        all: &[One],
        field: &str,
        get: impl Fn(&One) -> Option<T>,
        keep_first: bool,
        diags: &mut Vec<Diagnostic>,
    ) -> Option<T> {
        let set: Vec<(&One, T)> = all.iter().filter_map(|o| get(o).map(|v| (o, v))).collect();
        let (winner, _) = if keep_first {
            set.first()?
        } else {
            set.last()?
        };
        let winner_name = winner.r.id.name.clone();
        let winner_span = winner.r.key_span(field);
        for (o, v) in &set {
            if std::ptr::eq(*o, *winner) {
                continue;
            }
            let w = set
                .iter()
                .find(|(x, _)| std::ptr::eq(*x, *winner))
                .map(|(_, v)| v)?;
            if v != w {
                diags.push(
                    Diagnostic::at(
                        Code::AuthSettingsConflict,
                        o.r.key_span(field),
                        format!(
                            "AuthService `{}` sets `{field}` differently from AuthService `{winner_name}`; the merged filter takes `{winner_name}`'s",
                            o.r.id.name
                        ),
                    )
                    .with_object(&o.r.id)
                    .with_field(o.r.path(field))
                    .with_related(winner_span, "the value used"),
                );
            }
        }
        let idx = if keep_first { 0 } else { set.len() - 1 };
        set.into_iter().nth(idx).map(|(_, v)| v)
    }

    // What the cluster is made of must agree: Emissary's "auth canary can only change
    // service".
    let mut ok = true;
    for o in &all[1..] {
        let differs = if o.grpc != first.grpc {
            Some("proto")
        } else if o.tls != first.tls || o.service.2 != first.service.2 {
            Some("tls")
        } else if o.circuit_breakers != first.circuit_breakers {
            Some("circuit_breakers")
        } else {
            None
        };
        if let Some(field) = differs {
            diags.push(
                Diagnostic::at(
                    Code::AuthClusterConflict,
                    o.r.key_span(field),
                    format!(
                        "AuthService `{}` and AuthService `{}` reach their services differently (`{field}`), so they cannot merge into one filter; the routes they protect answer 500 until it is fixed",
                        o.r.id.name, first.r.id.name
                    ),
                )
                .with_object(&o.r.id)
                .with_field(o.r.path(field))
                .with_related(first.r.span, "the first AuthService"),
            );
            ok = false;
        }
    }
    if !ok {
        return None;
    }

    let path_prefix = conflict(all, "path_prefix", |o| o.path_prefix.clone(), true, diags);
    let timeout_ms = conflict(all, "timeout_ms", |o| o.timeout_ms, false, diags);
    let allow_body = conflict(
        all,
        "allow_request_body",
        |o| o.allow_request_body,
        false,
        diags,
    );
    let include_body = conflict(
        all,
        "include_body",
        |o| o.include_body.clone(),
        false,
        diags,
    );
    let status_on_error = conflict(all, "status_on_error", |o| o.status_on_error, false, diags);
    let failure_mode_allow = conflict(
        all,
        "failure_mode_allow",
        |o| o.failure_mode_allow,
        false,
        diags,
    );
    let add_auth_headers = conflict(
        all,
        "add_auth_headers",
        |o| o.add_auth_headers.clone(),
        false,
        diags,
    );

    fn union(
        all: &[One],
        defaults: &[&str],
        get: for<'a> fn(&'a One<'_>) -> &'a [String],
    ) -> Vec<String> {
        let mut set: BTreeSet<String> = defaults.iter().map(|h| h.to_string()).collect();
        for o in all {
            set.extend(get(o).iter().cloned());
        }
        set.into_iter().collect()
    }
    let protocol = if first.grpc {
        AuthProtocol::Grpc
    } else {
        AuthProtocol::Http {
            path_prefix: path_prefix.unwrap_or_default(),
            allowed_request_headers: union(all, &DEFAULT_REQUEST_HEADERS, |o| &o.request_headers),
            allowed_authorization_headers: union(all, &DEFAULT_AUTHORIZATION_HEADERS, |o| {
                &o.authorization_headers
            }),
            add_auth_headers: add_auth_headers.unwrap_or_default().into_iter().collect(),
        }
    };

    // One cluster; each distinct service one more endpoint of it.
    let (host, port, https) = first.service.clone();
    let mut more: Vec<(String, u16)> = Vec::new();
    for o in &all[1..] {
        let e = (o.service.0.clone(), o.service.1);
        if e != (host.clone(), port) && !more.contains(&e) {
            more.push(e);
        }
    }
    let is_ip = |h: &str| h.parse::<std::net::IpAddr>().is_ok();
    let discovery = if is_ip(&host) && more.iter().all(|(h, _)| is_ip(h)) {
        Discovery::Static
    } else {
        Discovery::Dns
    };
    let mut cluster = Cluster {
        name: String::new(),
        host: host.clone(),
        port,
        more_endpoints: more,
        discovery,
        tls: first.tls.clone().map(Box::new),
        http2: first.grpc,
        connect_timeout_ms: 3000,
        idle_timeout_ms: None,
        max_connection_lifetime_ms: None,
        lb_policy: LbPolicy::RoundRobin,
        circuit_breakers: first.circuit_breakers.clone(),
        sources: all.iter().map(|o| source_ref(o.r)).collect(),
    };
    // Emissary's `cluster_extauth_<service>_<namespace>`: here the service's DNS name (which
    // holds the namespace) and port, and for anything but a plain cluster a hash of its
    // settings, as for the clusters of Mappings.
    let mut name = format!("cluster_extauth_{}_{port}", sanitize(&host));
    if cluster.tls.is_some()
        || cluster.http2
        || !cluster.more_endpoints.is_empty()
        || !cluster.circuit_breakers.is_empty()
    {
        name.push_str(&format!("_{:08x}", cluster_hash(&cluster) as u32));
    }
    cluster.name = name.clone();

    let scheme = if https || first.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let host_port = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let body = include_body.or(allow_body.filter(|b| *b).map(|_| DEFAULT_BODY));
    let check = AuthCheck {
        cluster: name,
        uri: format!("{scheme}://{host_port}"),
        protocol,
        timeout_ms: timeout_ms.unwrap_or(5000),
        body,
        status_on_error,
        failure_mode_allow: failure_mode_allow.unwrap_or(false),
    };
    Some((check, cluster))
}

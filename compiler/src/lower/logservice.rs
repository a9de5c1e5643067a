//! The LogService: gRPC access logs (`envoy.access_loggers.http_grpc` / `tcp_grpc`) on every HTTP connection manager.
//!
//! Emissary (`ir/irlogservice.py`, `V3Listener.access_log`): `service` is required;
//! `protocol_version` must be `v3` (its default, v2, leaves nothing); `driver` is `http`
//! (one entry per request, with `driver_config.additional_log_headers`) or `tcp` (connection
//! entries, still on the HTTP connection manager); `flush_interval_time` (seconds, one
//! unless set) is `buffer_flush_interval` and `flush_interval_byte_size` (default 16384) is
//! `buffer_size_bytes`. Every LogService is named `logservice` inside Emissary, so a
//! second one is "Duplicate LogService" and only one works.
//!
//! Deliberate differences: of several usable LogServices the first by namespace and name is
//! used (Emissary's first depends on its load order), and the cluster always speaks HTTP/2
//! (Emissary follows `grpc`, default false, and a gRPC service over HTTP/1.1 gets nothing;
//! `logservice-not-grpc` says so).

use foldhash::HashMap;

use crate::diag::{Code, Diagnostic};
use crate::front::Resource;
use crate::ir::{AccessLog, AccessLogDriver, Cluster};

use super::grpc::{read_service, require_v3, service_cluster};
use super::mapping::Reader;
use super::source_ref;

const NOTHING: &str = "; no access log is sent until it is fixed";

/// The LogService in use and its cluster, from the LogServices given. `None` (reported)
/// without a usable one.
pub(super) fn access_log<'r>(
    services: impl Iterator<Item = &'r Resource>,
    tls_contexts: &HashMap<String, Resource>,
    diags: &mut Vec<Diagnostic>,
) -> Option<(AccessLog, Cluster)> {
    let mut all: Vec<&Resource> = services.collect();
    all.sort_by(|a, b| (&a.id.namespace, &a.id.name).cmp(&(&b.id.namespace, &b.id.name)));
    // Each is checked; the first usable one is used, as only a usable LogService takes
    // Emissary's one slot.
    let mut used: Option<(&Resource, (AccessLog, Cluster))> = None;
    for r in all.iter().copied() {
        let mut reader = Reader::new(r);
        let out = read(&mut reader, tls_contexts);
        diags.append(&mut reader.diags);
        let Some(out) = out else { continue };
        let Some((first, _)) = used else {
            used = Some((r, out));
            continue;
        };
        diags.push(
            Diagnostic::at(
                Code::SeveralLogServices,
                r.span,
                format!(
                    "{} LogServices: only `{}/{}` is used (Emissary keeps one), so `{}/{}` sends nothing",
                    all.len(),
                    first.id.namespace,
                    first.id.name,
                    r.id.namespace,
                    r.id.name
                ),
            )
            .with_object(&r.id)
            .with_related(first.span, "the LogService in use"),
        );
    }
    used.map(|(_, out)| out)
}

fn read(
    reader: &mut Reader,
    tls_contexts: &HashMap<String, Resource>,
) -> Option<(AccessLog, Cluster)> {
    let r = reader.r;
    let name = &r.id.name;
    let upstream = read_service(reader, Code::LogServiceMissing, NOTHING);
    let mut ok = require_v3(
        reader,
        Code::LogServiceProtocolVersion,
        "`envoy.service.accesslog.v3.AccessLogService`",
        NOTHING,
    );
    let driver = match reader.str("driver") {
        Some("http") => Some(AccessLogDriver::Http),
        Some("tcp") => Some(AccessLogDriver::Tcp),
        other => {
            let (span, said) = match other {
                Some(d) => (reader.span("driver"), format!("`driver: {d}`")),
                None => (r.span, "no `driver`".to_owned()),
            };
            reader.push(
                Code::LogServiceDriver,
                span,
                "driver",
                format!("LogService `{name}` has {said}; it must be `http` or `tcp`{NOTHING}"),
            );
            ok = false;
            None
        }
    };
    if reader.bool("grpc") != Some(true) {
        let span = reader.span("grpc");
        reader.push(
            Code::LogServiceNotGrpc,
            span,
            "grpc",
            format!(
                "LogService `{name}` does not say `grpc: true`: Emissary would reach the access log service over HTTP/1.1 and gRPC would fail; this compiler uses HTTP/2"
            ),
        );
    }
    let mut positive = |reader: &mut Reader, field: &str, default: u64, max: u64| match reader
        .node(field)
    {
        None => default,
        Some(n) => match n.as_int() {
            Some(v) if v > 0 && (v as u64) <= max => v as u64,
            _ => {
                let span = n.span;
                reader.push(
                        Code::LogServiceInvalid,
                        span,
                        field,
                        format!(
                            "`{field}` of LogService `{name}` must be a positive integer (at most {max}){NOTHING}"
                        ),
                    );
                ok = false;
                default
            }
        },
    };
    let flush_interval_s = positive(reader, "flush_interval_time", 1, 86_400);
    let buffer_size_bytes =
        positive(reader, "flush_interval_byte_size", 16384, u32::MAX as u64) as u32;
    let (mut request_headers, mut response_headers, mut response_trailers) =
        (Vec::new(), Vec::new(), Vec::new());
    if let Some(headers) = reader
        .node("driver_config")
        .and_then(|c| c.get("additional_log_headers"))
        .filter(|n| !n.is_null())
    {
        let field = "driver_config.additional_log_headers";
        if driver == Some(AccessLogDriver::Tcp) {
            reader.push(
                Code::InvalidLogHeader,
                headers.span,
                field,
                format!(
                    "`{}` of LogService `{name}` is for the `http` driver; the `tcp` driver logs connections, so they are left out",
                    r.path(field)
                ),
            );
        } else if let Some(items) = headers.as_seq() {
            for item in items {
                let header = item
                    .get("header_name")
                    .and_then(|h| h.as_str())
                    .map(|h| h.trim().to_ascii_lowercase())
                    .filter(|h| valid_header_name(h));
                let Some(header) = header else {
                    reader.push(
                        Code::InvalidLogHeader,
                        item.span,
                        field,
                        format!(
                            "an entry of `{}` of LogService `{name}` has no valid `header_name` (a mapping with a header name, without spaces or colons after the first character); it is left out",
                            r.path(field)
                        ),
                    );
                    continue;
                };
                let mut during = |key: &str| -> bool {
                    match item.get(key).filter(|n| !n.is_null()) {
                        None => true,
                        Some(n) => match n.as_bool().or_else(|| n.yaml11_bool()) {
                            Some(b) => b,
                            None => {
                                reader.push(
                                    Code::InvalidLogHeader,
                                    n.span,
                                    field,
                                    format!("`{key}` of header `{header}` must be a boolean; it is taken as true"),
                                );
                                true
                            }
                        },
                    }
                };
                if during("during_request") {
                    request_headers.push(header.clone());
                }
                if during("during_response") {
                    response_headers.push(header.clone());
                }
                if during("during_trailer") {
                    response_trailers.push(header);
                }
            }
        } else {
            reader.push(
                Code::InvalidLogHeader,
                headers.span,
                field,
                format!("`{}` of LogService `{name}` must be a list of `{{header_name, during_request, during_response, during_trailer}}`; it is left out", r.path(field)),
            );
        }
    }
    let upstream = upstream?;
    let cluster = service_cluster(
        reader,
        &upstream,
        tls_contexts,
        "cluster_logging",
        true,
        NOTHING,
        &mut ok,
    );
    let driver = driver?;
    if !ok {
        return None;
    }
    Some((
        AccessLog {
            source: source_ref(r),
            cluster: cluster.name.clone(),
            driver,
            flush_interval_s,
            buffer_size_bytes,
            request_headers,
            response_headers,
            response_trailers,
        },
        cluster,
    ))
}

/// A header name Envoy accepts in a header list: a token, or a pseudo-header.
fn valid_header_name(h: &str) -> bool {
    let body = h.strip_prefix(':').unwrap_or(h);
    !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

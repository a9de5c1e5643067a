//! The TracingService: the `tracing` of every HTTP connection manager, its provider inline (zipkin, datadog, opentelemetry).
//!
//! Emissary (`ir/irtracing.py`, `v3/v3tracing.py`): exactly one TracingService ("only one
//! TracingService is supported" leaves none); `service` and `driver` are required; `zipkin`
//! defaults to `collector_endpoint: /api/v2/spans`, `collector_endpoint_version:
//! HTTP_JSON` and `trace_id_128bit: true`; `datadog`'s `service_name` defaults to
//! `ambassador`; `opentelemetry` reaches its collector over gRPC; `lightstep` was removed
//! in 3.4. `sampling.{client,random,overall}` are percentages; `custom_tags` are literal,
//! environment or request header tags.
//!
//! Deliberate differences: Emissary puts the provider and its cluster in Envoy's bootstrap;
//! here the provider is inline in each connection manager (`tracing.provider`), so it travels
//! over ADS and a change needs no restart. Emissary parses `tag_headers` and does not use
//! them; here each becomes a request header tag of the same name (unless `custom_tags`
//! already names that tag), which is what the field says.

use foldhash::HashMap;

use crate::diag::{Code, Diagnostic};
use crate::front::yaml::Node;
use crate::front::Resource;
use crate::ir::{Cluster, CustomTag, Tracing, TracingDriver};

use super::grpc::{read_service, service_cluster};
use super::mapping::Reader;
use super::source_ref;

const NOTHING: &str = "; no span is sent until it is fixed";

/// The TracingService in use and its collector's cluster. `None` (reported) without one,
/// with several, or when the one cannot be used.
pub(super) fn tracing<'r>(
    services: impl Iterator<Item = &'r Resource>,
    tls_contexts: &HashMap<String, Resource>,
    diags: &mut Vec<Diagnostic>,
) -> Option<(Tracing, Cluster)> {
    let r = super::grpc::only_one(
        services,
        Code::SeveralTracingServices,
        "TracingService",
        "no request is traced",
        diags,
    )?;
    let mut reader = Reader::new(r);
    let out = read(&mut reader, tls_contexts);
    diags.append(&mut reader.diags);
    out
}

fn read(
    reader: &mut Reader,
    tls_contexts: &HashMap<String, Resource>,
) -> Option<(Tracing, Cluster)> {
    let r = reader.r;
    let name = &r.id.name;
    let upstream = read_service(reader, Code::TracingServiceMissing, NOTHING);
    let mut ok = true;
    let config = reader.node("config").filter(|c| c.as_map().is_some());
    let cfg_str = |key: &str| config.and_then(|c| c.get(key)).and_then(Node::as_str);
    let cfg_bool = |key: &str| {
        config
            .and_then(|c| c.get(key))
            .and_then(|n| n.as_bool().or_else(|| n.yaml11_bool()))
    };
    let driver = match reader.str("driver") {
        Some("zipkin") => {
            let version = cfg_str("collector_endpoint_version").unwrap_or("HTTP_JSON");
            if !matches!(version, "HTTP_JSON" | "HTTP_PROTO") {
                let span = config
                    .and_then(|c| c.get("collector_endpoint_version"))
                    .map_or(r.span, |n| n.span);
                reader.push(
                    Code::TracingInvalid,
                    span,
                    "config.collector_endpoint_version",
                    format!(
                        "`collector_endpoint_version: {version}` of TracingService `{name}`: only `HTTP_JSON` and `HTTP_PROTO` are accepted{NOTHING}"
                    ),
                );
                ok = false;
            }
            Some(TracingDriver::Zipkin {
                collector_endpoint: cfg_str("collector_endpoint")
                    .unwrap_or("/api/v2/spans")
                    .to_owned(),
                collector_endpoint_version: version.to_owned(),
                trace_id_128bit: cfg_bool("trace_id_128bit").unwrap_or(true),
                shared_span_context: cfg_bool("shared_span_context"),
            })
        }
        Some("datadog") => Some(TracingDriver::Datadog {
            service_name: cfg_str("service_name").unwrap_or("ambassador").to_owned(),
        }),
        Some("opentelemetry") => Some(TracingDriver::OpenTelemetry {
            service_name: cfg_str("service_name").unwrap_or("ambassador").to_owned(),
        }),
        other => {
            let (span, said) = match other {
                Some("lightstep") => (
                    reader.span("driver"),
                    "`driver: lightstep`, which Emissary 3.4 removed (Envoy dropped it)".to_owned(),
                ),
                Some(d) => (reader.span("driver"), format!("`driver: {d}`")),
                None => (r.span, "no `driver`".to_owned()),
            };
            reader.push(
                Code::TracingDriver,
                span,
                "driver",
                format!(
                    "TracingService `{name}` has {said}; it must be `zipkin`, `datadog` or `opentelemetry`{NOTHING}"
                ),
            );
            None
        }
    };
    let mut sampling = |reader: &mut Reader, key: &str| -> Option<f64> {
        let n = reader.node("sampling")?.get(key).filter(|n| !n.is_null())?;
        match n.as_float() {
            Some(v) if (0.0..=100.0).contains(&v) => Some(v),
            _ => {
                reader.push(
                    Code::TracingInvalid,
                    n.span,
                    "sampling",
                    format!(
                        "`sampling.{key}` of TracingService `{name}` must be a percentage from 0 to 100{NOTHING}"
                    ),
                );
                ok = false;
                None
            }
        }
    };
    let client_sampling = sampling(reader, "client");
    let random_sampling = sampling(reader, "random");
    let overall_sampling = sampling(reader, "overall");
    let custom_tags = tags(reader);
    let upstream = upstream?;
    let http2 = matches!(driver, Some(TracingDriver::OpenTelemetry { .. }));
    let cluster = service_cluster(
        reader,
        &upstream,
        tls_contexts,
        "cluster_tracing",
        http2,
        NOTHING,
        &mut ok,
    );
    let driver = driver?;
    if !ok {
        return None;
    }
    Some((
        Tracing {
            source: source_ref(r),
            cluster: cluster.name.clone(),
            authority: format!("{}:{}", cluster.host, cluster.port),
            driver,
            client_sampling,
            random_sampling,
            overall_sampling,
            custom_tags,
        },
        cluster,
    ))
}

/// `custom_tags`, then `tag_headers` as request header tags. Malformed entries are reported
/// (`invalid-custom-tag`) and left out.
fn tags(reader: &mut Reader) -> Vec<CustomTag> {
    let r = reader.r;
    let mut out = Vec::new();
    if let Some(n) = reader.node("custom_tags") {
        let Some(items) = n.as_seq() else {
            let span = n.span;
            reader.push(
                Code::InvalidCustomTag,
                span,
                "custom_tags",
                format!("`{}` must be a list of tags", r.path("custom_tags")),
            );
            return out;
        };
        for item in items {
            match custom_tag(item) {
                Ok(t) => out.push(t),
                Err(why) => reader.push(
                    Code::InvalidCustomTag,
                    item.span,
                    "custom_tags",
                    format!("a tag of `{}` {why}; it is left out", r.path("custom_tags")),
                ),
            }
        }
    }
    if let Some(n) = reader.node("tag_headers") {
        for item in n.as_seq().unwrap_or_default() {
            match item.as_str().map(str::trim).filter(|h| !h.is_empty()) {
                Some(h) => {
                    let taken = out.iter().any(|t| tag_name(t) == h);
                    if !taken {
                        out.push(CustomTag::RequestHeader {
                            tag: h.to_owned(),
                            name: h.to_owned(),
                            default_value: String::new(),
                        });
                    }
                }
                None => reader.push(
                    Code::InvalidCustomTag,
                    item.span,
                    "tag_headers",
                    format!(
                        "an entry of `{}` is not a header name; it is left out",
                        r.path("tag_headers")
                    ),
                ),
            }
        }
        if n.as_seq().is_none() {
            let span = n.span;
            reader.push(
                Code::InvalidCustomTag,
                span,
                "tag_headers",
                format!("`{}` must be a list of header names", r.path("tag_headers")),
            );
        }
    }
    out
}

fn tag_name(t: &CustomTag) -> &str {
    match t {
        CustomTag::Literal { tag, .. }
        | CustomTag::Environment { tag, .. }
        | CustomTag::RequestHeader { tag, .. } => tag,
    }
}

fn custom_tag(item: &Node) -> Result<CustomTag, String> {
    let tag = item
        .get("tag")
        .and_then(Node::as_str)
        .filter(|t| !t.is_empty())
        .ok_or("has no `tag`")?
        .to_owned();
    let s = |n: &Node, k: &str| n.get(k).and_then(Node::as_str).map(str::to_owned);
    let kinds: Vec<(&str, &Node)> = ["literal", "environment", "request_header"]
        .into_iter()
        .filter_map(|k| item.get(k).filter(|n| !n.is_null()).map(|n| (k, n)))
        .collect();
    match kinds.as_slice() {
        [("literal", n)] => Ok(CustomTag::Literal {
            tag,
            value: s(n, "value").ok_or("`literal` has no `value`")?,
        }),
        [("environment", n)] => Ok(CustomTag::Environment {
            tag,
            name: s(n, "name").ok_or("`environment` has no `name`")?,
            default_value: s(n, "default_value").unwrap_or_default(),
        }),
        [("request_header", n)] => Ok(CustomTag::RequestHeader {
            tag,
            name: s(n, "name").ok_or("`request_header` has no `name`")?,
            default_value: s(n, "default_value").unwrap_or_default(),
        }),
        [] => Err("has none of `literal`, `environment` and `request_header`".to_owned()),
        _ => Err("has more than one of `literal`, `environment` and `request_header`".to_owned()),
    }
}

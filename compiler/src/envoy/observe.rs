//! Access logs and tracing: the LogService's gRPC access logger and the TracingService's provider, both in every HTTP connection manager.
//!
//! As in Emissary (`V3Listener.access_log`, `v3/v3tracing.py`): the access logger is
//! `envoy.access_loggers.http_grpc` (or `tcp_grpc`, still on the connection manager) with
//! `log_name: logservice` and the v3 transport; tracing sets `generate_request_id`, the
//! sampling percentages and custom tags, and the router's upstream call gets a span. Unlike
//! Emissary, the provider is inline (`tracing.provider`) rather than in the bootstrap, so it
//! reaches Envoy over ADS.

use envoy_types::pb::envoy::config::accesslog::v3::{access_log, AccessLog};
use envoy_types::pb::envoy::config::core::v3::{grpc_service, ApiVersion, GrpcService};
use envoy_types::pb::envoy::config::trace::v3::{
    tracing, zipkin_config, DatadogConfig, OpenTelemetryConfig, ZipkinConfig,
};
use envoy_types::pb::envoy::extensions::access_loggers::grpc::v3::{
    CommonGrpcAccessLogConfig, HttpGrpcAccessLogConfig, TcpGrpcAccessLogConfig,
};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_connection_manager;
use envoy_types::pb::envoy::r#type::tracing::v3::{custom_tag, CustomTag};
use envoy_types::pb::envoy::r#type::v3::Percent;

use super::common::{any, bool_value, millis, u32_value};
use crate::ir::{
    AccessLog as IrAccessLog, AccessLogDriver, CustomTag as IrCustomTag, Tracing, TracingDriver,
};

fn envoy_grpc(cluster: &str) -> GrpcService {
    GrpcService {
        target_specifier: Some(grpc_service::TargetSpecifier::EnvoyGrpc(
            grpc_service::EnvoyGrpc {
                cluster_name: cluster.to_owned(),
                ..Default::default()
            },
        )),
        ..Default::default()
    }
}

/// The connection manager's gRPC access logger for the LogService in use.
pub(crate) fn access_log(log: &IrAccessLog) -> AccessLog {
    let common = CommonGrpcAccessLogConfig {
        log_name: "logservice".to_owned(),
        grpc_service: Some(envoy_grpc(&log.cluster)),
        transport_api_version: ApiVersion::V3 as i32,
        buffer_flush_interval: Some(millis(log.flush_interval_s * 1000)),
        buffer_size_bytes: Some(u32_value(log.buffer_size_bytes)),
        ..Default::default()
    };
    let (name, config) = match log.driver {
        AccessLogDriver::Http => (
            "envoy.access_loggers.http_grpc",
            any(HttpGrpcAccessLogConfig {
                common_config: Some(common),
                additional_request_headers_to_log: log.request_headers.clone(),
                additional_response_headers_to_log: log.response_headers.clone(),
                additional_response_trailers_to_log: log.response_trailers.clone(),
            }),
        ),
        AccessLogDriver::Tcp => (
            "envoy.access_loggers.tcp_grpc",
            any(TcpGrpcAccessLogConfig {
                common_config: Some(common),
            }),
        ),
    };
    AccessLog {
        name: name.to_owned(),
        config_type: Some(access_log::ConfigType::TypedConfig(config)),
        ..Default::default()
    }
}

/// The connection manager's `tracing`, its provider inline.
pub(crate) fn tracing(t: &Tracing) -> http_connection_manager::Tracing {
    let (name, config) = match &t.driver {
        TracingDriver::Zipkin {
            collector_endpoint,
            collector_endpoint_version,
            trace_id_128bit,
            shared_span_context,
        } => (
            "envoy.tracers.zipkin",
            any(ZipkinConfig {
                collector_cluster: t.cluster.clone(),
                collector_endpoint: collector_endpoint.clone(),
                trace_id_128bit: *trace_id_128bit,
                shared_span_context: shared_span_context.map(bool_value),
                collector_endpoint_version: if collector_endpoint_version == "HTTP_PROTO" {
                    zipkin_config::CollectorEndpointVersion::HttpProto
                } else {
                    zipkin_config::CollectorEndpointVersion::HttpJson
                } as i32,
                collector_hostname: t.authority.clone(),
                ..Default::default()
            }),
        ),
        TracingDriver::Datadog { service_name } => (
            "envoy.tracers.datadog",
            any(DatadogConfig {
                collector_cluster: t.cluster.clone(),
                service_name: service_name.clone(),
                collector_hostname: t.authority.clone(),
                ..Default::default()
            }),
        ),
        TracingDriver::OpenTelemetry { service_name } => (
            "envoy.tracers.opentelemetry",
            any(OpenTelemetryConfig {
                grpc_service: Some(envoy_grpc(&t.cluster)),
                service_name: service_name.clone(),
                ..Default::default()
            }),
        ),
    };
    let percent = |v: Option<f64>| v.map(|value| Percent { value });
    http_connection_manager::Tracing {
        client_sampling: percent(t.client_sampling),
        random_sampling: percent(t.random_sampling),
        overall_sampling: percent(t.overall_sampling),
        custom_tags: t.custom_tags.iter().map(custom_tag).collect(),
        // Emissary's `start_child_span: true` on the router, which Envoy deprecated for this.
        spawn_upstream_span: Some(bool_value(true)),
        provider: Some(tracing::Http {
            name: name.to_owned(),
            config_type: Some(tracing::http::ConfigType::TypedConfig(config)),
        }),
        ..Default::default()
    }
}

fn custom_tag(t: &IrCustomTag) -> CustomTag {
    use custom_tag::Type;
    let (tag, kind) = match t {
        IrCustomTag::Literal { tag, value } => (
            tag,
            Type::Literal(custom_tag::Literal {
                value: value.clone(),
            }),
        ),
        IrCustomTag::Environment {
            tag,
            name,
            default_value,
        } => (
            tag,
            Type::Environment(custom_tag::Environment {
                name: name.clone(),
                default_value: default_value.clone(),
            }),
        ),
        IrCustomTag::RequestHeader {
            tag,
            name,
            default_value,
        } => (
            tag,
            Type::RequestHeader(custom_tag::Header {
                name: name.clone(),
                default_value: default_value.clone(),
            }),
        ),
    };
    CustomTag {
        tag: tag.clone(),
        r#type: Some(kind),
    }
}

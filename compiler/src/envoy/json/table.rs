//! The renderer's table: for every message the back end emits, its fields' numbers, proto
//! names, kinds and cardinalities ([`fields`]).

use envoy_types::pb::envoy::config::cluster::v3::cluster;
use envoy_types::pb::envoy::config::core::v3::{
    header_value_option, socket_address, ApiVersion, RoutingPriority,
};
use envoy_types::pb::envoy::config::route::v3::{redirect_action, virtual_host};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_connection_manager;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::tls_parameters;
use envoy_types::pb::envoy::r#type::v3::fractional_percent;

/// How a field is laid out.
#[derive(Clone, Copy)]
pub(super) enum Card {
    One,
    Many,
    /// `map<string, V>`: repeated entries with the key in field 1 and the value in field 2.
    Map,
}

/// What a field holds.
#[derive(Clone, Copy)]
pub(super) enum Kind {
    Str,
    /// `bytes`: base64 in proto3 JSON.
    Bytes,
    Bool,
    U32,
    Double,
    /// An enum, with the function that names its values.
    Enum(fn(i32) -> Option<&'static str>),
    /// A message, by full proto name.
    Msg(&'static str),
}

pub(super) struct Field {
    pub(super) number: u32,
    pub(super) name: &'static str,
    pub(super) kind: Kind,
    pub(super) card: Card,
}

const fn one(number: u32, name: &'static str, kind: Kind) -> Field {
    Field {
        number,
        name,
        kind,
        card: Card::One,
    }
}

const fn many(number: u32, name: &'static str, kind: Kind) -> Field {
    Field {
        number,
        name,
        kind,
        card: Card::Many,
    }
}

const fn map(number: u32, name: &'static str, kind: Kind) -> Field {
    Field {
        number,
        name,
        kind,
        card: Card::Map,
    }
}

use Kind::{Bool, Msg, Str, U32};

const ANY: Kind = Msg("google.protobuf.Any");
const DURATION: Kind = Msg("google.protobuf.Duration");
const BOOL_VALUE: Kind = Msg("google.protobuf.BoolValue");
const U32_VALUE: Kind = Msg("google.protobuf.UInt32Value");
const ADDRESS: Kind = Msg("envoy.config.core.v3.Address");
const CONFIG_SOURCE: Kind = Msg("envoy.config.core.v3.ConfigSource");
const HEADER_OPTION: Kind = Msg("envoy.config.core.v3.HeaderValueOption");
const TRANSPORT_SOCKET: Kind = Msg("envoy.config.core.v3.TransportSocket");
const REGEX: Kind = Msg("envoy.type.matcher.v3.RegexMatcher");
const STRING_MATCHER: Kind = Msg("envoy.type.matcher.v3.StringMatcher");
const REGEX_SUBSTITUTE: Kind = Msg("envoy.type.matcher.v3.RegexMatchAndSubstitute");
const SDS: Kind = Msg("envoy.extensions.transport_sockets.tls.v3.SdsSecretConfig");

/// Names the values of a prost enum with its `as_str_name`.
macro_rules! enum_names {
    ($($f:ident: $t:ty;)*) => {
        $(fn $f(v: i32) -> Option<&'static str> {
            <$t>::try_from(v).ok().map(|e| e.as_str_name())
        })*
    };
}

enum_names! {
    api_version: ApiVersion;
    append_action: header_value_option::HeaderAppendAction;
    codec_type: http_connection_manager::CodecType;
    denominator: fractional_percent::DenominatorType;
    discovery_type: cluster::DiscoveryType;
    lb_policy: cluster::LbPolicy;
    protocol: socket_address::Protocol;
    redirect_code: redirect_action::RedirectResponseCode;
    routing_priority: RoutingPriority;
    status_code: envoy_types::pb::envoy::r#type::v3::StatusCode;
    tls_protocol: tls_parameters::TlsProtocol;
    tls_requirement: virtual_host::TlsRequirementType;
    zipkin_version: envoy_types::pb::envoy::config::trace::v3::zipkin_config::CollectorEndpointVersion;
}

/// The fields the back end sets, per message. Numbers are the proto field numbers of the
/// Envoy API (as in envoy-types' generated code); names are the proto names.
pub(super) fn fields(message: &str) -> Option<&'static [Field]> {
    let table: &'static [Field] = match message {
        // envoy.config.listener.v3
        "envoy.config.listener.v3.Listener" => const { &[
            one(2, "address", ADDRESS),
            many(3, "filter_chains", Msg("envoy.config.listener.v3.FilterChain")),
            many(9, "listener_filters", Msg("envoy.config.listener.v3.ListenerFilter")),
            one(1, "name", Str),
        ] },
        "envoy.config.listener.v3.FilterChain" => const { &[
            one(1, "filter_chain_match", Msg("envoy.config.listener.v3.FilterChainMatch")),
            many(3, "filters", Msg("envoy.config.listener.v3.Filter")),
            one(7, "name", Str),
            one(6, "transport_socket", TRANSPORT_SOCKET),
        ] },
        "envoy.config.listener.v3.FilterChainMatch" => const { &[
            many(11, "server_names", Str),
            one(9, "transport_protocol", Str),
        ] },
        "envoy.config.listener.v3.Filter" => const { &[one(1, "name", Str), one(4, "typed_config", ANY)] },
        "envoy.config.listener.v3.ListenerFilter" => const { &[one(1, "name", Str), one(3, "typed_config", ANY)] },

        // envoy.config.core.v3 and envoy.type
        "envoy.config.core.v3.Address" => const { &[one(1, "socket_address", Msg("envoy.config.core.v3.SocketAddress"))] },
        "envoy.config.core.v3.SocketAddress" => const { &[
            one(2, "address", Str),
            one(3, "port_value", U32),
            one(1, "protocol", Kind::Enum(protocol)),
        ] },
        "envoy.config.core.v3.TransportSocket" => const { &[one(1, "name", Str), one(3, "typed_config", ANY)] },
        "envoy.config.core.v3.ConfigSource" => const { &[
            one(3, "ads", Msg("envoy.config.core.v3.AggregatedConfigSource")),
            one(4, "initial_fetch_timeout", DURATION),
            one(6, "resource_api_version", Kind::Enum(api_version)),
        ] },
        "envoy.config.core.v3.AggregatedConfigSource"
        | "envoy.config.core.v3.Http1ProtocolOptions"
        | "envoy.config.core.v3.Http2ProtocolOptions"
        | "envoy.extensions.filters.http.router.v3.Router"
        | "envoy.extensions.filters.http.cors.v3.Cors"
        | "envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"
        | "envoy.extensions.filters.listener.proxy_protocol.v3.ProxyProtocol" => const { &[] },
        "envoy.config.core.v3.HeaderValueOption" => const { &[
            one(3, "append_action", Kind::Enum(append_action)),
            one(1, "header", Msg("envoy.config.core.v3.HeaderValue")),
        ] },
        "envoy.config.core.v3.HeaderValue" => const { &[one(1, "key", Str), one(2, "value", Str)] },
        "envoy.config.core.v3.RuntimeFractionalPercent" => const { &[
            one(1, "default_value", Msg("envoy.type.v3.FractionalPercent")),
            one(2, "runtime_key", Str),
        ] },
        "envoy.type.v3.FractionalPercent" => const { &[one(2, "denominator", Kind::Enum(denominator)), one(1, "numerator", U32)] },
        "envoy.config.core.v3.HttpProtocolOptions" => const { &[
            one(1, "idle_timeout", DURATION),
            one(3, "max_connection_duration", DURATION),
        ] },
        "envoy.type.matcher.v3.StringMatcher" => const { &[
            one(1, "exact", Str),
            one(6, "ignore_case", Bool),
            one(2, "prefix", Str),
            one(5, "safe_regex", REGEX),
            one(3, "suffix", Str),
        ] },
        "envoy.type.matcher.v3.RegexMatcher" => const { &[one(2, "regex", Str)] },
        "envoy.type.matcher.v3.RegexMatchAndSubstitute" => const { &[one(1, "pattern", REGEX), one(2, "substitution", Str)] },

        // SDS.
        "envoy.extensions.transport_sockets.tls.v3.Secret" => const { &[
            one(1, "name", Str),
            one(2, "tls_certificate", Msg("envoy.extensions.transport_sockets.tls.v3.TlsCertificate")),
            one(4, "validation_context", Msg("envoy.extensions.transport_sockets.tls.v3.CertificateValidationContext")),
        ] },
        "envoy.extensions.transport_sockets.tls.v3.CertificateValidationContext" => const { &[
            one(1, "trusted_ca", Msg("envoy.config.core.v3.DataSource")),
        ] },
        "envoy.extensions.transport_sockets.tls.v3.TlsCertificate" => const { &[
            one(1, "certificate_chain", Msg("envoy.config.core.v3.DataSource")),
            one(2, "private_key", Msg("envoy.config.core.v3.DataSource")),
        ] },
        "envoy.config.core.v3.DataSource" => const { &[
            one(1, "filename", Str),
            one(2, "inline_bytes", Kind::Bytes),
            one(3, "inline_string", Str),
        ] },

        // The HTTP connection manager.
        "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager" => const { &[
            many(13, "access_log", Msg("envoy.config.accesslog.v3.AccessLog")),
            one(1, "codec_type", Kind::Enum(codec_type)),
            one(15, "generate_request_id", BOOL_VALUE),
            many(5, "http_filters", Msg("envoy.extensions.filters.network.http_connection_manager.v3.HttpFilter")),
            one(30, "normalize_path", BOOL_VALUE),
            one(3, "rds", Msg("envoy.extensions.filters.network.http_connection_manager.v3.Rds")),
            one(10, "server_name", Str),
            one(2, "stat_prefix", Str),
            one(7, "tracing", Msg("envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.Tracing")),
            many(
                23,
                "upgrade_configs",
                Msg("envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.UpgradeConfig"),
            ),
            one(14, "use_remote_address", BOOL_VALUE),
            one(19, "xff_num_trusted_hops", U32),
        ] },
        // Access logs and tracing (`envoy::observe`).
        "envoy.config.accesslog.v3.AccessLog" => const { &[one(1, "name", Str), one(4, "typed_config", ANY)] },
        "envoy.extensions.access_loggers.grpc.v3.HttpGrpcAccessLogConfig" => const { &[
            many(2, "additional_request_headers_to_log", Str),
            many(3, "additional_response_headers_to_log", Str),
            many(4, "additional_response_trailers_to_log", Str),
            one(1, "common_config", Msg("envoy.extensions.access_loggers.grpc.v3.CommonGrpcAccessLogConfig")),
        ] },
        "envoy.extensions.access_loggers.grpc.v3.TcpGrpcAccessLogConfig" => const { &[
            one(1, "common_config", Msg("envoy.extensions.access_loggers.grpc.v3.CommonGrpcAccessLogConfig")),
        ] },
        "envoy.extensions.access_loggers.grpc.v3.CommonGrpcAccessLogConfig" => const { &[
            one(3, "buffer_flush_interval", DURATION),
            one(4, "buffer_size_bytes", U32_VALUE),
            one(2, "grpc_service", Msg("envoy.config.core.v3.GrpcService")),
            one(1, "log_name", Str),
            one(6, "transport_api_version", Kind::Enum(api_version)),
        ] },
        "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.Tracing" => const { &[
            one(3, "client_sampling", Msg("envoy.type.v3.Percent")),
            many(8, "custom_tags", Msg("envoy.type.tracing.v3.CustomTag")),
            one(5, "overall_sampling", Msg("envoy.type.v3.Percent")),
            one(9, "provider", Msg("envoy.config.trace.v3.Tracing.Http")),
            one(4, "random_sampling", Msg("envoy.type.v3.Percent")),
            one(10, "spawn_upstream_span", BOOL_VALUE),
        ] },
        "envoy.type.v3.Percent" => const { &[one(1, "value", Kind::Double)] },
        "envoy.config.trace.v3.Tracing.Http" => const { &[one(1, "name", Str), one(3, "typed_config", ANY)] },
        "envoy.config.trace.v3.ZipkinConfig" => const { &[
            one(1, "collector_cluster", Str),
            one(2, "collector_endpoint", Str),
            one(5, "collector_endpoint_version", Kind::Enum(zipkin_version)),
            one(6, "collector_hostname", Str),
            one(4, "shared_span_context", BOOL_VALUE),
            one(3, "trace_id_128bit", Bool),
        ] },
        "envoy.config.trace.v3.DatadogConfig" => const { &[
            one(1, "collector_cluster", Str),
            one(3, "collector_hostname", Str),
            one(2, "service_name", Str),
        ] },
        "envoy.config.trace.v3.OpenTelemetryConfig" => const { &[
            one(1, "grpc_service", Msg("envoy.config.core.v3.GrpcService")),
            one(2, "service_name", Str),
        ] },
        "envoy.type.tracing.v3.CustomTag" => const { &[
            one(3, "environment", Msg("envoy.type.tracing.v3.CustomTag.Environment")),
            one(2, "literal", Msg("envoy.type.tracing.v3.CustomTag.Literal")),
            one(4, "request_header", Msg("envoy.type.tracing.v3.CustomTag.Header")),
            one(1, "tag", Str),
        ] },
        "envoy.type.tracing.v3.CustomTag.Literal" => const { &[one(1, "value", Str)] },
        "envoy.type.tracing.v3.CustomTag.Environment" | "envoy.type.tracing.v3.CustomTag.Header" => const { &[
            one(2, "default_value", Str),
            one(1, "name", Str),
        ] },
        "envoy.extensions.filters.network.http_connection_manager.v3.Rds" => const { &[
            one(1, "config_source", CONFIG_SOURCE),
            one(2, "route_config_name", Str),
        ] },
        "envoy.extensions.filters.network.http_connection_manager.v3.HttpFilter" => const { &[
            one(1, "name", Str),
            one(4, "typed_config", ANY),
        ] },
        "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.UpgradeConfig" => const { &[
            one(3, "enabled", BOOL_VALUE),
            one(1, "upgrade_type", Str),
        ] },

        // TLS.
        "envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext" => const { &[
            one(1, "common_tls_context", Msg("envoy.extensions.transport_sockets.tls.v3.CommonTlsContext")),
            one(2, "require_client_certificate", BOOL_VALUE),
        ] },
        "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext" => const { &[
            one(1, "common_tls_context", Msg("envoy.extensions.transport_sockets.tls.v3.CommonTlsContext")),
            one(2, "sni", Str),
        ] },
        "envoy.extensions.transport_sockets.tls.v3.CommonTlsContext" => const { &[
            many(4, "alpn_protocols", Str),
            many(6, "tls_certificate_sds_secret_configs", SDS),
            one(1, "tls_params", Msg("envoy.extensions.transport_sockets.tls.v3.TlsParameters")),
            one(7, "validation_context_sds_secret_config", SDS),
        ] },
        "envoy.extensions.transport_sockets.tls.v3.TlsParameters" => const { &[
            many(3, "cipher_suites", Str),
            many(4, "ecdh_curves", Str),
            one(2, "tls_maximum_protocol_version", Kind::Enum(tls_protocol)),
            one(1, "tls_minimum_protocol_version", Kind::Enum(tls_protocol)),
        ] },
        "envoy.extensions.transport_sockets.tls.v3.SdsSecretConfig" => const { &[
            one(1, "name", Str),
            one(2, "sds_config", CONFIG_SOURCE),
        ] },

        // tcp_proxy.
        "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy" => const { &[
            one(2, "cluster", Str),
            one(8, "idle_timeout", DURATION),
            one(1, "stat_prefix", Str),
            one(10, "weighted_clusters", Msg("envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy.WeightedCluster")),
        ] },
        "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy.WeightedCluster" => const { &[many(
            1,
            "clusters",
            Msg("envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy.WeightedCluster.ClusterWeight"),
        )] },
        "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy.WeightedCluster.ClusterWeight" => const { &[
            one(1, "name", Str),
            one(2, "weight", U32),
        ] },

        // envoy.config.route.v3
        "envoy.config.route.v3.RouteConfiguration" => const { &[
            one(1, "name", Str),
            many(2, "virtual_hosts", Msg("envoy.config.route.v3.VirtualHost")),
        ] },
        "envoy.config.route.v3.VirtualHost" => const { &[
            many(2, "domains", Str),
            one(1, "name", Str),
            one(4, "require_tls", Kind::Enum(tls_requirement)),
            many(3, "routes", Msg("envoy.config.route.v3.Route")),
            map(15, "typed_per_filter_config", ANY),
        ] },
        "envoy.config.route.v3.Route" => const { &[
            one(7, "direct_response", Msg("envoy.config.route.v3.DirectResponseAction")),
            one(1, "match", Msg("envoy.config.route.v3.RouteMatch")),
            one(14, "name", Str),
            one(3, "redirect", Msg("envoy.config.route.v3.RedirectAction")),
            many(9, "request_headers_to_add", HEADER_OPTION),
            many(12, "request_headers_to_remove", Str),
            many(10, "response_headers_to_add", HEADER_OPTION),
            many(11, "response_headers_to_remove", Str),
            one(2, "route", Msg("envoy.config.route.v3.RouteAction")),
            map(13, "typed_per_filter_config", ANY),
        ] },
        "envoy.config.route.v3.RouteMatch" => const { &[
            one(4, "case_sensitive", BOOL_VALUE),
            many(6, "headers", Msg("envoy.config.route.v3.HeaderMatcher")),
            one(2, "path", Str),
            one(1, "prefix", Str),
            many(7, "query_parameters", Msg("envoy.config.route.v3.QueryParameterMatcher")),
            one(9, "runtime_fraction", Msg("envoy.config.core.v3.RuntimeFractionalPercent")),
            one(10, "safe_regex", REGEX),
        ] },
        "envoy.config.route.v3.HeaderMatcher" => const { &[
            one(1, "name", Str),
            one(7, "present_match", Bool),
            one(13, "string_match", STRING_MATCHER),
        ] },
        "envoy.config.route.v3.QueryParameterMatcher" => const { &[
            one(1, "name", Str),
            one(6, "present_match", Bool),
            one(5, "string_match", STRING_MATCHER),
        ] },
        "envoy.config.route.v3.RouteAction" => const { &[
            one(7, "auto_host_rewrite", BOOL_VALUE),
            one(1, "cluster", Str),
            many(15, "hash_policy", Msg("envoy.config.route.v3.RouteAction.HashPolicy")),
            one(6, "host_rewrite_literal", Str),
            one(24, "idle_timeout", DURATION),
            one(5, "prefix_rewrite", Str),
            many(13, "rate_limits", Msg("envoy.config.route.v3.RateLimit")),
            one(32, "regex_rewrite", REGEX_SUBSTITUTE),
            many(30, "request_mirror_policies", Msg("envoy.config.route.v3.RouteAction.RequestMirrorPolicy")),
            one(9, "retry_policy", Msg("envoy.config.route.v3.RetryPolicy")),
            one(8, "timeout", DURATION),
            many(25, "upgrade_configs", Msg("envoy.config.route.v3.RouteAction.UpgradeConfig")),
            one(3, "weighted_clusters", Msg("envoy.config.route.v3.WeightedCluster")),
        ] },
        "envoy.config.route.v3.WeightedCluster" => const { &[many(
            1,
            "clusters",
            Msg("envoy.config.route.v3.WeightedCluster.ClusterWeight"),
        )] },
        "envoy.config.route.v3.WeightedCluster.ClusterWeight" => const { &[one(1, "name", Str), one(2, "weight", U32_VALUE)] },
        "envoy.config.route.v3.RetryPolicy" => const { &[
            one(2, "num_retries", U32_VALUE),
            one(3, "per_try_timeout", DURATION),
            one(1, "retry_on", Str),
        ] },
        "envoy.config.route.v3.RouteAction.RequestMirrorPolicy" => const { &[
            one(1, "cluster", Str),
            one(3, "runtime_fraction", Msg("envoy.config.core.v3.RuntimeFractionalPercent")),
        ] },
        "envoy.config.route.v3.RouteAction.HashPolicy" => const { &[
            one(3, "connection_properties", Msg("envoy.config.route.v3.RouteAction.HashPolicy.ConnectionProperties")),
            one(2, "cookie", Msg("envoy.config.route.v3.RouteAction.HashPolicy.Cookie")),
            one(1, "header", Msg("envoy.config.route.v3.RouteAction.HashPolicy.Header")),
            one(4, "terminal", Bool),
        ] },
        "envoy.config.route.v3.RouteAction.HashPolicy.Header" => const { &[one(1, "header_name", Str)] },
        "envoy.config.route.v3.RouteAction.HashPolicy.Cookie" => const { &[
            one(1, "name", Str),
            one(3, "path", Str),
            one(2, "ttl", DURATION),
        ] },
        "envoy.config.route.v3.RouteAction.HashPolicy.ConnectionProperties" => const { &[one(1, "source_ip", Bool)] },
        "envoy.config.route.v3.RouteAction.UpgradeConfig" => const { &[one(2, "enabled", BOOL_VALUE), one(1, "upgrade_type", Str)] },
        "envoy.config.route.v3.RedirectAction" => const { &[
            one(1, "host_redirect", Str),
            one(4, "https_redirect", Bool),
            one(2, "path_redirect", Str),
            one(8, "port_redirect", U32),
            one(5, "prefix_rewrite", Str),
            one(9, "regex_rewrite", REGEX_SUBSTITUTE),
            one(3, "response_code", Kind::Enum(redirect_code)),
        ] },
        "envoy.config.route.v3.DirectResponseAction" => const { &[one(1, "status", U32)] },
        // Rate limiting (`envoy::ratelimit`).
        "envoy.extensions.filters.http.ratelimit.v3.RateLimit" => const { &[
            one(1, "domain", Str),
            one(5, "failure_mode_deny", Bool),
            one(7, "rate_limit_service", Msg("envoy.config.ratelimit.v3.RateLimitServiceConfig")),
            one(3, "request_type", Str),
            one(4, "timeout", DURATION),
        ] },
        "envoy.config.ratelimit.v3.RateLimitServiceConfig" => const { &[
            one(2, "grpc_service", Msg("envoy.config.core.v3.GrpcService")),
            one(4, "transport_api_version", Kind::Enum(api_version)),
        ] },
        "envoy.config.route.v3.RateLimit" => const { &[
            many(3, "actions", Msg("envoy.config.route.v3.RateLimit.Action")),
            one(1, "stage", U32_VALUE),
        ] },
        "envoy.config.route.v3.RateLimit.Action" => const { &[
            one(2, "destination_cluster", Msg("envoy.config.route.v3.RateLimit.Action.DestinationCluster")),
            one(5, "generic_key", Msg("envoy.config.route.v3.RateLimit.Action.GenericKey")),
            one(4, "remote_address", Msg("envoy.config.route.v3.RateLimit.Action.RemoteAddress")),
            one(3, "request_headers", Msg("envoy.config.route.v3.RateLimit.Action.RequestHeaders")),
            one(1, "source_cluster", Msg("envoy.config.route.v3.RateLimit.Action.SourceCluster")),
        ] },
        "envoy.config.route.v3.RateLimit.Action.SourceCluster"
        | "envoy.config.route.v3.RateLimit.Action.DestinationCluster"
        | "envoy.config.route.v3.RateLimit.Action.RemoteAddress" => const { &[] },
        "envoy.config.route.v3.RateLimit.Action.RequestHeaders" => const { &[
            one(2, "descriptor_key", Str),
            one(1, "header_name", Str),
        ] },
        "envoy.config.route.v3.RateLimit.Action.GenericKey" => const { &[
            one(2, "descriptor_key", Str),
            one(1, "descriptor_value", Str),
        ] },

        // External authorization (`envoy::auth`).
        "envoy.extensions.filters.http.ext_authz.v3.ExtAuthz" => const { &[
            one(17, "allowed_headers", Msg("envoy.type.matcher.v3.ListStringMatcher")),
            one(6, "clear_route_cache", Bool),
            one(11, "deny_at_disable", Msg("envoy.config.core.v3.RuntimeFeatureFlag")),
            one(2, "failure_mode_allow", Bool),
            one(9, "filter_enabled", Msg("envoy.config.core.v3.RuntimeFractionalPercent")),
            one(1, "grpc_service", Msg("envoy.config.core.v3.GrpcService")),
            one(3, "http_service", Msg("envoy.extensions.filters.http.ext_authz.v3.HttpService")),
            one(7, "status_on_error", Msg("envoy.type.v3.HttpStatus")),
            one(12, "transport_api_version", Kind::Enum(api_version)),
            one(5, "with_request_body", Msg("envoy.extensions.filters.http.ext_authz.v3.BufferSettings")),
        ] },
        "envoy.extensions.filters.http.ext_authz.v3.HttpService" => const { &[
            one(7, "authorization_request", Msg("envoy.extensions.filters.http.ext_authz.v3.AuthorizationRequest")),
            one(8, "authorization_response", Msg("envoy.extensions.filters.http.ext_authz.v3.AuthorizationResponse")),
            one(2, "path_prefix", Str),
            one(1, "server_uri", Msg("envoy.config.core.v3.HttpUri")),
        ] },
        "envoy.extensions.filters.http.ext_authz.v3.AuthorizationRequest" => const { &[
            many(2, "headers_to_add", Msg("envoy.config.core.v3.HeaderValue")),
        ] },
        "envoy.extensions.filters.http.ext_authz.v3.AuthorizationResponse" => const { &[
            one(2, "allowed_client_headers", Msg("envoy.type.matcher.v3.ListStringMatcher")),
            one(1, "allowed_upstream_headers", Msg("envoy.type.matcher.v3.ListStringMatcher")),
        ] },
        "envoy.extensions.filters.http.ext_authz.v3.BufferSettings" => const { &[
            one(2, "allow_partial_message", Bool),
            one(1, "max_request_bytes", U32),
        ] },
        "envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute" => const { &[
            one(2, "check_settings", Msg("envoy.extensions.filters.http.ext_authz.v3.CheckSettings")),
            one(1, "disabled", Bool),
        ] },
        "envoy.extensions.filters.http.ext_authz.v3.CheckSettings" => const { &[
            map(1, "context_extensions", Str),
        ] },
        "envoy.config.core.v3.GrpcService" => const { &[
            one(1, "envoy_grpc", Msg("envoy.config.core.v3.GrpcService.EnvoyGrpc")),
            one(3, "timeout", DURATION),
        ] },
        "envoy.config.core.v3.GrpcService.EnvoyGrpc" => const { &[one(1, "cluster_name", Str)] },
        "envoy.config.core.v3.HttpUri" => const { &[
            one(2, "cluster", Str),
            one(3, "timeout", DURATION),
            one(1, "uri", Str),
        ] },
        "envoy.config.core.v3.RuntimeFeatureFlag" => const { &[
            one(1, "default_value", BOOL_VALUE),
            one(2, "runtime_key", Str),
        ] },
        "envoy.type.v3.HttpStatus" => const { &[one(1, "code", Kind::Enum(status_code))] },
        "envoy.type.matcher.v3.ListStringMatcher" => const { &[many(1, "patterns", STRING_MATCHER)] },
        "envoy.extensions.filters.http.cors.v3.CorsPolicy" => const { &[
            one(6, "allow_credentials", BOOL_VALUE),
            one(3, "allow_headers", Str),
            one(2, "allow_methods", Str),
            many(1, "allow_origin_string_match", STRING_MATCHER),
            one(4, "expose_headers", Str),
            one(5, "max_age", Str),
        ] },

        // envoy.config.cluster.v3 and envoy.config.endpoint.v3
        "envoy.config.cluster.v3.Cluster" => const { &[
            one(10, "circuit_breakers", Msg("envoy.config.cluster.v3.CircuitBreakers")),
            one(4, "connect_timeout", DURATION),
            one(3, "eds_cluster_config", Msg("envoy.config.cluster.v3.Cluster.EdsClusterConfig")),
            one(6, "lb_policy", Kind::Enum(lb_policy)),
            one(33, "load_assignment", Msg("envoy.config.endpoint.v3.ClusterLoadAssignment")),
            one(1, "name", Str),
            one(24, "transport_socket", TRANSPORT_SOCKET),
            one(2, "type", Kind::Enum(discovery_type)),
            map(36, "typed_extension_protocol_options", ANY),
        ] },
        "envoy.config.cluster.v3.Cluster.EdsClusterConfig" => const { &[
            one(1, "eds_config", CONFIG_SOURCE),
            one(2, "service_name", Str),
        ] },
        "envoy.config.cluster.v3.CircuitBreakers" => const { &[many(
            1,
            "thresholds",
            Msg("envoy.config.cluster.v3.CircuitBreakers.Thresholds"),
        )] },
        "envoy.config.cluster.v3.CircuitBreakers.Thresholds" => const { &[
            one(2, "max_connections", U32_VALUE),
            one(3, "max_pending_requests", U32_VALUE),
            one(4, "max_requests", U32_VALUE),
            one(5, "max_retries", U32_VALUE),
            one(1, "priority", Kind::Enum(routing_priority)),
        ] },
        "envoy.config.endpoint.v3.ClusterLoadAssignment" => const { &[
            one(1, "cluster_name", Str),
            many(2, "endpoints", Msg("envoy.config.endpoint.v3.LocalityLbEndpoints")),
        ] },
        "envoy.config.endpoint.v3.LocalityLbEndpoints" => const { &[many(
            2,
            "lb_endpoints",
            Msg("envoy.config.endpoint.v3.LbEndpoint"),
        )] },
        "envoy.config.endpoint.v3.LbEndpoint" => const { &[one(1, "endpoint", Msg("envoy.config.endpoint.v3.Endpoint"))] },
        "envoy.config.endpoint.v3.Endpoint" => const { &[one(1, "address", ADDRESS)] },
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions" => const { &[
            one(1, "common_http_protocol_options", Msg("envoy.config.core.v3.HttpProtocolOptions")),
            one(
                3,
                "explicit_http_config",
                Msg("envoy.extensions.upstreams.http.v3.HttpProtocolOptions.ExplicitHttpConfig"),
            ),
        ] },
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions.ExplicitHttpConfig" => const { &[
            one(2, "http2_protocol_options", Msg("envoy.config.core.v3.Http2ProtocolOptions")),
            one(1, "http_protocol_options", Msg("envoy.config.core.v3.Http1ProtocolOptions")),
        ] },
        _ => return None,
    };
    Some(table)
}

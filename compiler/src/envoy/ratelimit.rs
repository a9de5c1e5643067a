//! Global rate limiting: the `envoy.filters.http.ratelimit` filter of every HTTP connection manager, and each route's rate limit actions.
//!
//! As in Emissary (`v3/v3ratelimit.py`, `v3/v3ratelimitaction.py`): the domain, the timeout,
//! `request_type: both`, `failure_mode_deny`, and the v3 gRPC service; each route's label
//! groups become `rate_limits` of its route action, stage 0, one descriptor entry per label.

use envoy_types::pb::envoy::config::core::v3::{grpc_service, ApiVersion, GrpcService};
use envoy_types::pb::envoy::config::ratelimit::v3::RateLimitServiceConfig;
use envoy_types::pb::envoy::config::route::v3::rate_limit::{action, Action};
use envoy_types::pb::envoy::config::route::v3::RateLimit as RouteRateLimit;
use envoy_types::pb::envoy::extensions::filters::http::ratelimit::v3::RateLimit;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_filter, HttpFilter,
};

use super::common::{any, millis, u32_value};
use crate::ir::{RateLimit as IrRateLimit, RateLimitAction, RateLimitGroup};

/// The filter's name.
pub(crate) const RATE_LIMIT_FILTER: &str = "envoy.filters.http.ratelimit";

/// The `ratelimit` filter for the RateLimitService in use.
pub(crate) fn filter(rl: &IrRateLimit) -> HttpFilter {
    let config = RateLimit {
        domain: rl.domain.clone(),
        request_type: "both".to_owned(),
        timeout: Some(millis(rl.timeout_ms)),
        failure_mode_deny: rl.failure_mode_deny,
        rate_limit_service: Some(RateLimitServiceConfig {
            grpc_service: Some(GrpcService {
                target_specifier: Some(grpc_service::TargetSpecifier::EnvoyGrpc(
                    grpc_service::EnvoyGrpc {
                        cluster_name: rl.cluster.clone(),
                        ..Default::default()
                    },
                )),
                ..Default::default()
            }),
            transport_api_version: ApiVersion::V3 as i32,
        }),
        ..Default::default()
    };
    HttpFilter {
        name: RATE_LIMIT_FILTER.to_owned(),
        config_type: Some(http_filter::ConfigType::TypedConfig(any(config))),
        ..Default::default()
    }
}

/// A route's rate limits: one per label group, stage 0.
pub(crate) fn route_rate_limits(groups: &[RateLimitGroup]) -> Vec<RouteRateLimit> {
    groups
        .iter()
        .map(|g| RouteRateLimit {
            stage: Some(u32_value(0)),
            actions: g.actions.iter().map(action).collect(),
            ..Default::default()
        })
        .collect()
}

fn action(a: &RateLimitAction) -> Action {
    use action::ActionSpecifier as S;
    let specifier = match a {
        RateLimitAction::SourceCluster => S::SourceCluster(action::SourceCluster {}),
        RateLimitAction::DestinationCluster => S::DestinationCluster(action::DestinationCluster {}),
        RateLimitAction::RemoteAddress => S::RemoteAddress(action::RemoteAddress {}),
        RateLimitAction::GenericKey { key, value } => S::GenericKey(action::GenericKey {
            descriptor_value: value.clone(),
            descriptor_key: key.clone(),
            ..Default::default()
        }),
        RateLimitAction::RequestHeaders { key, header } => {
            S::RequestHeaders(action::RequestHeaders {
                header_name: header.clone(),
                descriptor_key: key.clone(),
                ..Default::default()
            })
        }
    };
    Action {
        action_specifier: Some(specifier),
    }
}

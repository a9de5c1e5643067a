//! External authorization: the `envoy.filters.http.ext_authz` filter of every HTTP connection manager, and its per-route settings.
//!
//! As in Emissary (`v3/v3httpfilter.py:V3HTTPFilter_authv1`): HTTP or gRPC (v3), the
//! allowed headers as case-insensitive exact matchers, `clear_route_cache` always on (the
//! service may add headers that change the route), the body when asked.
//!
//! An AuthService that could not be compiled ([`Auth::check`] is `None`) still installs
//! the filter, switched off with `filter_enabled: 0%` and `deny_at_disable: true`: Envoy then
//! answers every request the filter would have checked with `status_on_error` (500)
//! without calling anything, while routes that disable the filter (`bypass_auth`,
//! redirects) keep working. Routes are the same bytes as with a working AuthService, so a
//! fix changes only the listeners.

use envoy_types::pb::envoy::config::core::v3::{
    grpc_service, http_uri, ApiVersion, GrpcService, HeaderValue, HttpUri, RuntimeFeatureFlag,
    RuntimeFractionalPercent,
};
use envoy_types::pb::envoy::extensions::filters::http::ext_authz::v3::{
    ext_authz, ext_authz_per_route, AuthorizationRequest, AuthorizationResponse, BufferSettings,
    CheckSettings, ExtAuthz, ExtAuthzPerRoute, HttpService,
};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_filter, HttpFilter,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{
    string_matcher::MatchPattern, ListStringMatcher, StringMatcher,
};
use envoy_types::pb::envoy::r#type::v3::{fractional_percent, FractionalPercent, HttpStatus};
use envoy_types::pb::google::protobuf::Any;
use prost::encoding::{encode_key, encode_varint, WireType};
use prost::{Message, Name};
use std::collections::{BTreeMap, HashMap};

use super::common::{any, bool_value, millis};
use crate::ir::{Auth, AuthCheck, AuthProtocol, RouteAuth};

/// The filter's name, and the key of its per-route settings.
pub(crate) const EXT_AUTHZ_FILTER: &str = "envoy.filters.http.ext_authz";

/// The status of a request refused because its AuthService is misconfigured, as Emissary
/// answers it.
const MISCONFIGURED_STATUS: i32 = 500;

/// The `ext_authz` filter for `auth`.
pub(crate) fn filter(auth: &Auth) -> HttpFilter {
    let config = match &auth.check {
        Some(check) => ext_authz(check),
        None => refuse(),
    };
    HttpFilter {
        name: EXT_AUTHZ_FILTER.to_owned(),
        config_type: Some(http_filter::ConfigType::TypedConfig(any(config))),
        ..Default::default()
    }
}

fn ext_authz(c: &AuthCheck) -> ExtAuthz {
    let (services, allowed_headers) = match &c.protocol {
        AuthProtocol::Http {
            path_prefix,
            allowed_request_headers,
            allowed_authorization_headers,
            add_auth_headers,
        } => {
            let answer = Some(matchers(allowed_authorization_headers));
            let service = HttpService {
                server_uri: Some(HttpUri {
                    uri: c.uri.clone(),
                    timeout: Some(millis(c.timeout_ms)),
                    http_upstream_type: Some(http_uri::HttpUpstreamType::Cluster(
                        c.cluster.clone(),
                    )),
                }),
                path_prefix: path_prefix.clone(),
                authorization_request: (!add_auth_headers.is_empty()).then(|| {
                    AuthorizationRequest {
                        headers_to_add: add_auth_headers
                            .iter()
                            .map(|(k, v)| HeaderValue {
                                key: k.clone(),
                                value: v.clone(),
                                ..Default::default()
                            })
                            .collect(),
                        ..Default::default()
                    }
                }),
                authorization_response: Some(AuthorizationResponse {
                    allowed_upstream_headers: answer.clone(),
                    allowed_client_headers: answer,
                    ..Default::default()
                }),
                ..Default::default()
            };
            (
                ext_authz::Services::HttpService(service),
                Some(matchers(allowed_request_headers)),
            )
        }
        AuthProtocol::Grpc => (
            ext_authz::Services::GrpcService(GrpcService {
                timeout: Some(millis(c.timeout_ms)),
                target_specifier: Some(grpc_service::TargetSpecifier::EnvoyGrpc(
                    grpc_service::EnvoyGrpc {
                        cluster_name: c.cluster.clone(),
                        ..Default::default()
                    },
                )),
                ..Default::default()
            }),
            None,
        ),
    };
    ExtAuthz {
        services: Some(services),
        transport_api_version: ApiVersion::V3 as i32,
        failure_mode_allow: c.failure_mode_allow,
        with_request_body: c.body.as_ref().map(|b| BufferSettings {
            max_request_bytes: b.max_bytes,
            allow_partial_message: b.allow_partial,
            ..Default::default()
        }),
        clear_route_cache: true,
        status_on_error: c
            .status_on_error
            .map(|code| HttpStatus { code: code as i32 }),
        allowed_headers,
        ..Default::default()
    }
}

/// The filter of a misconfigured AuthService: never enabled, and denying when disabled,
/// so every request it would have checked gets 500 and no check is sent anywhere.
fn refuse() -> ExtAuthz {
    ExtAuthz {
        // A service is required; it is never called.
        services: Some(ext_authz::Services::HttpService(HttpService {
            server_uri: Some(HttpUri {
                uri: "http://ambassador-auth-misconfigured".to_owned(),
                timeout: Some(millis(1000)),
                http_upstream_type: Some(http_uri::HttpUpstreamType::Cluster(
                    "ambassador_auth_misconfigured".to_owned(),
                )),
            }),
            ..Default::default()
        })),
        transport_api_version: ApiVersion::V3 as i32,
        filter_enabled: Some(RuntimeFractionalPercent {
            default_value: Some(FractionalPercent {
                numerator: 0,
                denominator: fractional_percent::DenominatorType::Hundred as i32,
            }),
            runtime_key: "ambassador.auth.misconfigured.enabled".to_owned(),
        }),
        deny_at_disable: Some(RuntimeFeatureFlag {
            default_value: Some(bool_value(true)),
            runtime_key: "ambassador.auth.misconfigured.deny".to_owned(),
        }),
        status_on_error: Some(HttpStatus {
            code: MISCONFIGURED_STATUS,
        }),
        ..Default::default()
    }
}

/// Header names as Emissary lists them: exact, case-insensitive, in the order given
/// (sorted by lowering).
fn matchers(names: &[String]) -> ListStringMatcher {
    ListStringMatcher {
        patterns: names
            .iter()
            .map(|n| StringMatcher {
                match_pattern: Some(MatchPattern::Exact(n.clone())),
                ignore_case: true,
            })
            .collect(),
    }
}

/// The per-route settings of a route that forwards, when they differ from the filter's.
pub(crate) fn per_route(auth: &RouteAuth) -> Option<Any> {
    match auth {
        RouteAuth::Check => None,
        RouteAuth::Bypass => Some(disabled()),
        RouteAuth::Context(extensions) => Some(check_settings(extensions)),
    }
}

/// `check_settings.context_extensions`, encoded in key order. Prost writes a map in the
/// order of its `HashMap`, which changes from run to run; a map's entries are repeated
/// elements on the wire, so the encodings of one-entry maps, concatenated in key order,
/// are the same map with one encoding (and one version) for the same extensions.
fn check_settings(extensions: &BTreeMap<String, String>) -> Any {
    let mut settings = Vec::new();
    for (k, v) in extensions {
        CheckSettings {
            context_extensions: HashMap::from([(k.clone(), v.clone())]),
            ..Default::default()
        }
        .encode(&mut settings)
        .expect("a vector grows as it is written");
    }
    // `ExtAuthzPerRoute.check_settings` is field 2.
    let mut value = Vec::with_capacity(settings.len() + 6);
    encode_key(2, WireType::LengthDelimited, &mut value);
    encode_varint(settings.len() as u64, &mut value);
    value.extend_from_slice(&settings);
    Any {
        type_url: ExtAuthzPerRoute::type_url(),
        value,
    }
}

/// The filter switched off on a route: redirects answer before authorization, as in
/// Emissary, and `bypass_auth` routes are public.
pub(crate) fn disabled() -> Any {
    any(ExtAuthzPerRoute {
        r#override: Some(ext_authz_per_route::Override::Disabled(true)),
    })
}

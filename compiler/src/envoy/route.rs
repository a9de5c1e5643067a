//! Route configurations: one per HTTP listener, one virtual host per IR virtual host, routes in IR order.

use std::collections::{BTreeSet, HashMap};

use envoy_types::pb::envoy::config::core::v3::RuntimeFractionalPercent;
use envoy_types::pb::envoy::config::route::v3::RetryPolicy as EnvoyRetryPolicy;
use envoy_types::pb::envoy::config::route::v3::{
    header_matcher, query_parameter_matcher, redirect_action, route, route_action, route_match,
    virtual_host, weighted_cluster, DirectResponseAction, HeaderMatcher, QueryParameterMatcher,
    RedirectAction, Route as EnvoyRoute, RouteAction, RouteConfiguration,
    RouteMatch as EnvoyRouteMatch, VirtualHost as EnvoyVirtualHost, WeightedCluster,
};
use envoy_types::pb::envoy::extensions::filters::http::cors::v3::CorsPolicy;
use envoy_types::pb::envoy::r#type::matcher::v3::{RegexMatchAndSubstitute, StringMatcher};
use envoy_types::pb::envoy::r#type::v3::{fractional_percent, FractionalPercent};
use envoy_types::pb::google::protobuf::Any;

use super::common::{
    any, bool_value, exact_string, header_option, millis, parse_duration, regex, regex_escape,
    regex_string, u32_value, CORS_FILTER,
};
use crate::ir::{
    Cors, Forward, HashPolicy, InsecureAction, Ir, PathMatch, Redirect, RedirectPath, RegexRewrite,
    Route, RouteAction as IrAction, RouteMatch, ValueMatch, VirtualHost,
};

/// One RouteConfiguration per distinct `route_config` name of the HTTP listeners. Two
/// listeners naming the same configuration share it, built for the first of them.
pub(crate) fn route_configurations(ir: &Ir) -> Vec<RouteConfiguration> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for l in &ir.listeners {
        if !seen.insert(l.route_config.as_str()) {
            continue;
        }
        // A listener that terminates TLS serves only secure requests; a cleartext one is
        // where a Host's `requestPolicy.insecure.action` applies.
        let secure = !l.tls.is_empty();
        out.push(RouteConfiguration {
            name: l.route_config.clone(),
            virtual_hosts: ir
                .virtual_hosts
                .iter()
                .map(|vh| virtual_host(vh, secure, ir))
                .collect(),
            ..Default::default()
        });
    }
    out
}

pub(crate) fn virtual_host(vh: &VirtualHost, secure: bool, ir: &Ir) -> EnvoyVirtualHost {
    virtual_host_with(vh, secure, ir.settings.cors.as_ref())
}

/// A virtual host when the Module's CORS policy is `module_cors`.
pub(crate) fn virtual_host_with(
    vh: &VirtualHost,
    secure: bool,
    module_cors: Option<&Cors>,
) -> EnvoyVirtualHost {
    let insecure = if secure {
        InsecureAction::Route
    } else {
        vh.insecure
    };
    let routes = match insecure {
        InsecureAction::Route | InsecureAction::Redirect => vh.routes.iter().map(route).collect(),
        // No routes: Envoy answers 404 (no route matched) to every cleartext request.
        InsecureAction::Reject => Vec::new(),
    };
    let require_tls = match insecure {
        // Envoy answers 301 to the https:// URL of the same request.
        InsecureAction::Redirect => virtual_host::TlsRequirementType::All,
        InsecureAction::Route | InsecureAction::Reject => virtual_host::TlsRequirementType::None,
    };
    // The Module's CORS policy is the virtual host's default; a route's own policy wins over
    // it because Envoy takes the most specific per-filter configuration.
    let cors = vh.cors.as_ref().or(module_cors);
    EnvoyVirtualHost {
        name: vh.name.clone(),
        domains: vh.domains.clone(),
        routes,
        require_tls: require_tls as i32,
        typed_per_filter_config: cors_config(cors),
        ..Default::default()
    }
}

/// The per-filter configuration map holding at most one entry. Prost encodes a map in its
/// iteration order, so a map with more than one entry would make the encoding (and the
/// version) nondeterministic: keep it to one.
fn cors_config(cors: Option<&Cors>) -> HashMap<String, Any> {
    let mut map = HashMap::new();
    if let Some(c) = cors {
        map.insert(CORS_FILTER.to_owned(), any(cors_policy(c)));
    }
    map
}

/// Envoy 1.40 style CORS: the policy is the typed per-filter configuration of the
/// `envoy.filters.http.cors` filter (the `cors` field of routes and virtual hosts is gone).
fn cors_policy(c: &Cors) -> CorsPolicy {
    CorsPolicy {
        allow_origin_string_match: c.origins.iter().map(|o| origin_matcher(o)).collect(),
        allow_methods: c.methods.join(","),
        allow_headers: c.headers.join(","),
        expose_headers: c.exposed_headers.join(","),
        max_age: c.max_age.clone().unwrap_or_default(),
        allow_credentials: c.credentials.map(bool_value),
        ..Default::default()
    }
}

/// `*` allows any origin and a `*` inside an origin is a wildcard (as in
/// `https://*.example.com`); anything else is compared exactly.
fn origin_matcher(origin: &str) -> StringMatcher {
    if origin == "*" {
        return regex_string(".*");
    }
    if origin.contains('*') {
        let pattern: Vec<String> = origin.split('*').map(regex_escape).collect();
        return regex_string(&pattern.join("[^/]*"));
    }
    exact_string(origin)
}

pub(crate) fn route(r: &Route) -> EnvoyRoute {
    let mut out = EnvoyRoute {
        name: r.name.clone(),
        r#match: Some(route_match(&r.matcher)),
        ..Default::default()
    };
    match &r.action {
        IrAction::Forward(f) => {
            out.action = Some(forward(f));
            out.request_headers_to_add = f
                .settings
                .request_headers_to_add
                .iter()
                .map(header_option)
                .collect();
            out.request_headers_to_remove = f.settings.request_headers_to_remove.clone();
            out.response_headers_to_add = f
                .settings
                .response_headers_to_add
                .iter()
                .map(header_option)
                .collect();
            out.response_headers_to_remove = f.settings.response_headers_to_remove.clone();
            out.typed_per_filter_config = cors_config(f.settings.cors.as_deref());
        }
        IrAction::Redirect(rd) => out.action = Some(route::Action::Redirect(redirect(rd))),
    }
    out
}

fn route_match(m: &RouteMatch) -> EnvoyRouteMatch {
    let path = match &m.path {
        PathMatch::Prefix(p) => route_match::PathSpecifier::Prefix(p.clone()),
        PathMatch::Exact(p) => route_match::PathSpecifier::Path(p.clone()),
        // `case_sensitive` does not apply to `safe_regex` in Envoy: the regex carries the
        // flag itself.
        PathMatch::Regex(re) if !m.case_sensitive => {
            route_match::PathSpecifier::SafeRegex(regex(&format!("(?i){re}")))
        }
        PathMatch::Regex(re) => route_match::PathSpecifier::SafeRegex(regex(re)),
    };
    let case_sensitive = match (&m.path, m.case_sensitive) {
        (PathMatch::Prefix(_) | PathMatch::Exact(_), false) => Some(bool_value(false)),
        _ => None,
    };
    EnvoyRouteMatch {
        path_specifier: Some(path),
        case_sensitive,
        headers: m
            .headers
            .iter()
            .map(|h| header_matcher(&h.name, &h.value))
            .collect(),
        query_parameters: m
            .query_parameters
            .iter()
            .map(|q| query_matcher(&q.name, &q.value))
            .collect(),
        ..Default::default()
    }
}

fn header_matcher(name: &str, value: &ValueMatch) -> HeaderMatcher {
    use header_matcher::HeaderMatchSpecifier as S;
    let specifier = match value {
        ValueMatch::Exact(v) => S::StringMatch(exact_string(v)),
        ValueMatch::Regex(re) => S::StringMatch(regex_string(re)),
        ValueMatch::Present => S::PresentMatch(true),
    };
    HeaderMatcher {
        name: name.to_owned(),
        header_match_specifier: Some(specifier),
        ..Default::default()
    }
}

fn query_matcher(name: &str, value: &ValueMatch) -> QueryParameterMatcher {
    use query_parameter_matcher::QueryParameterMatchSpecifier as S;
    let specifier = match value {
        ValueMatch::Exact(v) => S::StringMatch(exact_string(v)),
        ValueMatch::Regex(re) => S::StringMatch(regex_string(re)),
        ValueMatch::Present => S::PresentMatch(true),
    };
    QueryParameterMatcher {
        name: name.to_owned(),
        query_parameter_match_specifier: Some(specifier),
    }
}

fn forward(f: &Forward) -> route::Action {
    let cluster = match f.clusters.as_slice() {
        // The IR promises at least one backend; should a route arrive without one, answer
        // 503 as Envoy does for an unknown cluster instead of emitting an invalid route.
        [] => {
            return route::Action::DirectResponse(DirectResponseAction {
                status: 503,
                ..Default::default()
            });
        }
        [one] => route_action::ClusterSpecifier::Cluster(one.cluster.clone()),
        many => route_action::ClusterSpecifier::WeightedClusters(WeightedCluster {
            clusters: many
                .iter()
                .map(|c| weighted_cluster::ClusterWeight {
                    name: c.cluster.clone(),
                    weight: Some(u32_value(c.weight)),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }),
    };
    let mut a = RouteAction {
        cluster_specifier: Some(cluster),
        // `None` leaves Envoy's default; lowering always sets one (the Module's default
        // where the Mapping sets none).
        timeout: f.settings.timeout_ms.map(millis),
        idle_timeout: f.settings.idle_timeout_ms.map(millis),
        retry_policy: f.settings.retry.as_ref().map(|r| EnvoyRetryPolicy {
            retry_on: r.retry_on.clone().unwrap_or_default(),
            num_retries: r.num_retries.map(u32_value),
            per_try_timeout: r.per_try_timeout_ms.map(millis),
            ..Default::default()
        }),
        request_mirror_policies: f
            .shadow
            .iter()
            .map(|s| route_action::RequestMirrorPolicy {
                cluster: s.cluster.clone(),
                runtime_fraction: Some(RuntimeFractionalPercent {
                    default_value: Some(FractionalPercent {
                        numerator: s.percent.min(100),
                        denominator: fractional_percent::DenominatorType::Hundred as i32,
                    }),
                    runtime_key: String::new(),
                }),
                ..Default::default()
            })
            .collect(),
        upgrade_configs: f
            .settings
            .upgrades
            .iter()
            .map(|u| route_action::UpgradeConfig {
                upgrade_type: u.clone(),
                enabled: Some(bool_value(true)),
                ..Default::default()
            })
            .collect(),
        hash_policy: f
            .settings
            .hash_policy
            .as_deref()
            .map(hash_policy)
            .into_iter()
            .collect(),
        ..Default::default()
    };
    if let Some(rr) = &f.settings.regex_rewrite {
        // `regex_rewrite` wins over `rewrite` (Ambassador's rule, and Envoy refuses both).
        a.regex_rewrite = Some(regex_substitute(rr));
    } else if let Some(prefix) = &f.settings.prefix_rewrite {
        // On a regex route the "prefix" Envoy replaces is the whole path the regex matched,
        // which is Ambassador's meaning of `rewrite` with `prefix_regex: true`.
        a.prefix_rewrite = prefix.clone();
    }
    if let Some(host) = &f.settings.host_rewrite {
        a.host_rewrite_specifier = Some(route_action::HostRewriteSpecifier::HostRewriteLiteral(
            host.clone(),
        ));
    } else if f.settings.auto_host_rewrite {
        a.host_rewrite_specifier = Some(route_action::HostRewriteSpecifier::AutoHostRewrite(
            bool_value(true),
        ));
    }
    route::Action::Route(a)
}

fn regex_substitute(rr: &RegexRewrite) -> RegexMatchAndSubstitute {
    RegexMatchAndSubstitute {
        pattern: Some(regex(&rr.pattern)),
        substitution: rr.substitution.clone(),
    }
}

fn hash_policy(h: &HashPolicy) -> route_action::HashPolicy {
    use route_action::hash_policy::{ConnectionProperties, Cookie, Header, PolicySpecifier};
    let specifier = match h {
        HashPolicy::Header { name } => PolicySpecifier::Header(Header {
            header_name: name.clone(),
            regex_rewrite: None,
        }),
        HashPolicy::Cookie { name, ttl, path } => PolicySpecifier::Cookie(Cookie {
            name: name.clone(),
            ttl: ttl.as_deref().and_then(parse_duration),
            path: path.clone().unwrap_or_default(),
            ..Default::default()
        }),
        HashPolicy::SourceIp => {
            PolicySpecifier::ConnectionProperties(ConnectionProperties { source_ip: true })
        }
    };
    route_action::HashPolicy {
        policy_specifier: Some(specifier),
        terminal: false,
    }
}

fn redirect(r: &Redirect) -> RedirectAction {
    use redirect_action::{PathRewriteSpecifier, RedirectResponseCode, SchemeRewriteSpecifier};
    let response_code = match r.response_code {
        302 => RedirectResponseCode::Found,
        303 => RedirectResponseCode::SeeOther,
        307 => RedirectResponseCode::TemporaryRedirect,
        308 => RedirectResponseCode::PermanentRedirect,
        _ => RedirectResponseCode::MovedPermanently,
    };
    RedirectAction {
        host_redirect: r.host.clone(),
        port_redirect: r.port.map(u32::from).unwrap_or(0),
        response_code: response_code as i32,
        scheme_rewrite_specifier: r
            .https
            .then_some(SchemeRewriteSpecifier::HttpsRedirect(true)),
        path_rewrite_specifier: r.path.as_ref().map(|p| match p {
            RedirectPath::Path(path) => PathRewriteSpecifier::PathRedirect(path.clone()),
            RedirectPath::Prefix(prefix) => PathRewriteSpecifier::PrefixRewrite(prefix.clone()),
            RedirectPath::Regex(rr) => PathRewriteSpecifier::RegexRewrite(regex_substitute(rr)),
        }),
        strip_query: false,
    }
}

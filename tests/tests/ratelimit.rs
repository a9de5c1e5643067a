//! RateLimitService and Mapping labels through the real pipeline, the publisher and a real
//! Envoy: a gRPC rate limit service that lets each descriptor pass N times; the limited
//! route answers 429 once its descriptor is over, a route with another descriptor and a
//! route without labels are not limited, and a RateLimitService without v3 limits nothing.

use ambassador_e2e::backend::{Backend, Echo};
use ambassador_e2e::http::{Client, Response};
use ambassador_e2e::ratelimit::RateLimitServer;
use ambassador_e2e::stack::{options, sources, Stack};
use ambassador_webhook::bootstrap::ApiType;

fn rate_limit_service(spec: &str) -> String {
    format!(
        "---\napiVersion: getambassador.io/v3alpha1\nkind: RateLimitService\nmetadata: {{name: ratelimit, namespace: default}}\nspec:\n{spec}"
    )
}

fn mapping(name: &str, prefix: &str, backend: &Backend, extra: &str) -> String {
    format!(
        "---\napiVersion: getambassador.io/v3alpha1\nkind: Mapping\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  hostname: \"*\"\n  prefix: {prefix}\n  rewrite: \"\"\n  service: \"{}\"\n{extra}",
        backend.addr()
    )
}

/// The backend that answered, or the status.
fn who(r: &Response) -> String {
    let echo: Option<Echo> = r.json().ok().and_then(|v| serde_json::from_value(v).ok());
    match (r.status, echo) {
        (200, Some(e)) => format!("200 {}", e.backend),
        (s, _) => s.to_string(),
    }
}

async fn get(stack: &Stack, path: &str, headers: &[(&str, &str)]) -> String {
    let r = Client::new()
        .request("GET", &stack.url(path), headers)
        .await
        .unwrap();
    who(&r)
}

const LIMIT: u32 = 3;

fn files(
    rls: &RateLimitServer,
    version: &str,
    app: &Backend,
    other: &Backend,
) -> Vec<(String, String)> {
    sources([
        (
            "module.yaml",
            "---\napiVersion: getambassador.io/v3alpha1\nkind: Module\nmetadata: {name: ambassador, namespace: default}\nspec:\n  config:\n    default_label_domain: edge\n".to_owned(),
        ),
        (
            "ratelimit.yaml",
            rate_limit_service(&format!(
                "  service: \"{}\"\n  timeout_ms: 2000\n{version}",
                rls.addr()
            )),
        ),
        (
            "app.yaml",
            mapping(
                "app",
                "/app/",
                app,
                "  labels:\n    edge:\n    - per_user:\n      - request_headers:\n          key: user\n          header_name: x-user\n      - generic_key:\n          value: app\n",
            ),
        ),
        (
            "legacy.yaml",
            // The v2 shorthand: a bare string is a generic key.
            mapping(
                "legacy",
                "/legacy/",
                other,
                "  labels:\n    edge:\n    - legacy:\n      - legacy-api\n",
            ),
        ),
        ("free.yaml", mapping("free", "/free/", other, "")),
    ])
}

#[tokio::test]
async fn a_route_over_its_limit_answers_429_and_others_do_not() {
    let app = Backend::start("app").await.unwrap();
    let other = Backend::start("other").await.unwrap();
    let rls = RateLimitServer::start(LIMIT).await.unwrap();
    let (stack, report) = Stack::start_with(
        options(),
        files(&rls, "  protocol_version: v3\n", &app, &other),
        ApiType::Grpc,
    )
    .await
    .unwrap();
    assert_eq!(report.errors().count(), 0, "{:?}", report.findings);

    // alice's descriptor passes LIMIT times, then 429.
    let mut got = Vec::new();
    for _ in 0..LIMIT + 2 {
        got.push(get(&stack, "/app/x", &[("x-user", "alice")]).await);
    }
    let mut want = vec!["200 app".to_owned(); LIMIT as usize];
    want.extend(["429".to_owned(), "429".to_owned()]);
    assert_eq!(got, want);
    // Another user is another descriptor.
    assert_eq!(get(&stack, "/app/x", &[("x-user", "bob")]).await, "200 app");
    // Envoy sent the domain and the descriptor in the label's order.
    let asked = rls.asked();
    assert!(asked.iter().all(|a| a.domain == "edge"), "{asked:?}");
    assert_eq!(
        asked.last().unwrap().descriptors,
        vec!["user=bob,generic_key=app".to_owned()]
    );
    // A request without the header fills no descriptor: Envoy does not ask.
    let before = rls.asked().len();
    assert_eq!(get(&stack, "/app/x", &[]).await, "200 app");
    assert_eq!(rls.asked().len(), before);

    // The v2 shorthand on another route: its own descriptor, its own count.
    for _ in 0..LIMIT {
        assert_eq!(get(&stack, "/legacy/x", &[]).await, "200 other");
    }
    assert_eq!(get(&stack, "/legacy/x", &[]).await, "429");
    assert_eq!(
        rls.asked().last().unwrap().descriptors,
        vec!["generic_key=legacy-api".to_owned()]
    );

    // A route without labels is never limited and never asked about.
    let before = rls.asked().len();
    for _ in 0..LIMIT + 2 {
        assert_eq!(get(&stack, "/free/x", &[]).await, "200 other");
    }
    assert_eq!(rls.asked().len(), before);
}

#[tokio::test]
async fn a_rate_limit_service_without_v3_limits_nothing_and_says_so() {
    let app = Backend::start("app").await.unwrap();
    let other = Backend::start("other").await.unwrap();
    let rls = RateLimitServer::start(LIMIT).await.unwrap();
    let (stack, report) =
        Stack::start_with(options(), files(&rls, "", &app, &other), ApiType::Grpc)
            .await
            .unwrap();
    assert!(
        report.errors().any(|f| f.code == "AMB522"),
        "{:?}",
        report.findings
    );
    for _ in 0..LIMIT + 2 {
        assert_eq!(
            get(&stack, "/app/x", &[("x-user", "alice")]).await,
            "200 app"
        );
    }
    assert!(rls.asked().is_empty());
}

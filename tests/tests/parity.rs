//! Route-for-route parity with Emissary, through the real pipeline and a real Envoy: each
//! test is one of the places where this compiler used to route a request elsewhere than
//! Emissary does (issue 14), with the requests that tell the two apart.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use ambassador_e2e::backend::{Backend, Echo};
use ambassador_e2e::http::Response;
use ambassador_e2e::stack::Stack;
use ambassador_webhook::bootstrap::ApiType;

/// A v3alpha1 Mapping in `default`; `fields` are spec lines (`key: value`).
fn mapping(name: &str, fields: &[&str]) -> String {
    let mut out = format!(
        "---\napiVersion: getambassador.io/v3alpha1\nkind: Mapping\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n"
    );
    for f in fields {
        let _ = writeln!(out, "  {f}");
    }
    out
}

/// A v2 Mapping in the `getambassador.io/config` annotation of a Service.
fn annotated(name: &str, fields: &[&str]) -> String {
    let mut out = format!(
        "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: default\n  annotations:\n    getambassador.io/config: |\n      apiVersion: getambassador.io/v2\n      kind: Mapping\n      name: {name}\n"
    );
    for f in fields {
        let _ = writeln!(out, "      {f}");
    }
    out.push_str("spec:\n  ports:\n  - port: 80\n");
    out
}

fn host(name: &str, hostname: &str) -> String {
    format!(
        "---\napiVersion: getambassador.io/v3alpha1\nkind: Host\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  hostname: {hostname}\n  requestPolicy:\n    insecure:\n      action: Route\n"
    )
}

fn echo_of(r: &Response) -> Option<Echo> {
    r.json().ok().and_then(|v| serde_json::from_value(v).ok())
}

/// Named backends on loopback; `service: NAME` in a Mapping line becomes its address.
struct Backends(BTreeMap<String, Backend>);

impl Backends {
    async fn start(names: &[&str]) -> Backends {
        let mut m = BTreeMap::new();
        for n in names {
            m.insert(n.to_string(), Backend::start(n).await.unwrap());
        }
        Backends(m)
    }

    fn svc(&self, name: &str) -> String {
        format!("service: \"{}\"", self.0[name].addr())
    }
}

/// What a request got: `backend path` when a backend answered, else the status.
async fn outcome(stack: &Stack, method: &str, path: &str, headers: &[(&str, &str)]) -> String {
    let r = stack.request(method, path, headers).await.unwrap();
    match (r.status, echo_of(&r)) {
        (200, Some(e)) => format!("{} {}", e.backend, e.path),
        (status, _) if (300..400).contains(&status) => format!(
            "{status} {}",
            r.headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case("location"))
                .map(|(_, v)| v.as_str())
                .unwrap_or("")
        ),
        (status, _) => status.to_string(),
    }
}

/// Causes 1, 2, 6, 7 and 8: rewrites, path normalisation and the group's path flags.
#[tokio::test]
async fn paths_rewrites_and_group_flags() {
    let b = Backends::start(&["shop", "app", "root", "health", "health2", "ci", "cs"]).await;
    let files = vec![(
        "parity.yaml".to_string(),
        [
            // 1: the default `rewrite: /` on a regex prefix replaces the whole path.
            mapping(
                "shop",
                &[
                    "hostname: \"*\"",
                    "prefix: \"/shop(/.*)?\"",
                    "prefix_regex: true",
                    &b.svc("shop"),
                ],
            ),
            // 2: paths are normalised before routing.
            mapping(
                "app",
                &[
                    "hostname: \"*\"",
                    "prefix: /app/",
                    "rewrite: \"\"",
                    &b.svc("app"),
                ],
            ),
            mapping(
                "root",
                &[
                    "hostname: \"*\"",
                    "prefix: /",
                    "rewrite: \"\"",
                    &b.svc("root"),
                ],
            ),
            // 6: a plain prefix grouped with an exact one is exact.
            mapping(
                "health",
                &[
                    "hostname: \"*\"",
                    "prefix: /health",
                    "prefix_exact: true",
                    "weight: 50",
                    &b.svc("health"),
                ],
            ),
            mapping(
                "health2",
                &["hostname: \"*\"", "prefix: /health", &b.svc("health2")],
            ),
            // 6: one case-insensitive member makes a member that sets nothing insensitive.
            mapping(
                "ci",
                &[
                    "hostname: \"*\"",
                    "prefix: /ci/",
                    "case_sensitive: false",
                    "weight: 50",
                    &b.svc("ci"),
                ],
            ),
            mapping("cs", &["hostname: \"*\"", "prefix: /ci/", &b.svc("cs")]),
            // 7: `case_sensitive: false` on a regex is ignored.
            mapping(
                "regex-ci",
                &[
                    "hostname: \"*\"",
                    "prefix: \"/rx/[a-z]+\"",
                    "prefix_regex: true",
                    "case_sensitive: false",
                    &b.svc("shop"),
                ],
            ),
            // 8: query conditions on a redirect are left out of its match.
            mapping(
                "old",
                &[
                    "hostname: \"*\"",
                    "prefix: /old/",
                    "service: new.example.com",
                    "host_redirect: true",
                    "query_parameters: {legacy: \"1\"}",
                ],
            ),
        ]
        .concat(),
    )];
    let (stack, report) = Stack::start(files, ApiType::Grpc).await.unwrap();
    assert_eq!(report.errors().count(), 0, "{:#?}", report.findings);

    let cases: &[(&str, &str)] = &[
        ("/shop/q/r", "shop /"),
        ("/shop", "shop /"),
        ("/./app/x", "app /app/x"),
        ("/app/%2e%2e/x", "root /x"),
        ("/app/./y/../z", "app /app/z"),
        ("/health", "health /"),
        ("/health/x", "root /health/x"),
        ("/rx/abc", "shop /"),
        ("/RX/abc", "root /RX/abc"),
        ("/old/", "301 http://new.example.com/old/"),
        ("/old/?legacy=1", "301 http://new.example.com/old/?legacy=1"),
    ];
    let mut failures = Vec::new();
    for (path, want) in cases {
        let got = outcome(&stack, "GET", path, &[]).await;
        // `/health` is a 50/50 canary of two exact members: either may answer.
        let ok = got == *want || (*path == "/health" && got == "health2 /");
        if !ok {
            failures.push(format!("GET {path}: expected {want}, got {got}"));
        }
    }
    // Both members of the `/ci/` group match case-insensitively, whichever takes it.
    for _ in 0..20 {
        let got = outcome(&stack, "GET", "/CI/x", &[]).await;
        if got != "ci /x" && got != "cs /x" {
            failures.push(format!("GET /CI/x: expected ci or cs, got {got}"));
            break;
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Cause 3: canary members keep their own rewrite (one Envoy route per member).
#[tokio::test]
async fn canary_members_keep_their_rewrite() {
    let b = Backends::start(&["main", "canary"]).await;
    let files = vec![(
        "canary.yaml".to_string(),
        [
            mapping(
                "main",
                &[
                    "hostname: \"*\"",
                    "prefix: /users/",
                    "rewrite: \"\"",
                    "weight: 50",
                    &b.svc("main"),
                ],
            ),
            mapping(
                "canary",
                &["hostname: \"*\"", "prefix: /users/", &b.svc("canary")],
            ),
        ]
        .concat(),
    )];
    let (stack, _) = Stack::start(files, ApiType::Grpc).await.unwrap();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..200 {
        *seen
            .entry(outcome(&stack, "GET", "/users/x", &[]).await)
            .or_default() += 1;
    }
    let keys: Vec<&str> = seen.keys().map(String::as_str).collect();
    assert_eq!(keys, ["canary /x", "main /users/x"], "{seen:?}");
    // 50/50 over 200 requests: each side within 100 ± 40 (about 5.7 standard deviations).
    for n in seen.values() {
        assert!((60..=140).contains(n), "{seen:?}");
    }
}

/// Causes 4, 5 and 9: every Mapping's host glob is an `:authority` condition in its group
/// key, its order and its match; v2 `host` is a glob.
#[tokio::test]
async fn host_globs() {
    let b = Backends::start(&["exact", "star", "glob", "v2glob", "v2exact"]).await;
    let files = vec![(
        "hosts.yaml".to_string(),
        [
            host("a", "a.example.com"),
            host("wild", "\"*.example.com\""),
            // 4: the exact hostname and `*` on one prefix are two routes, exact first.
            mapping(
                "exact",
                &["hostname: a.example.com", "prefix: /h/", &b.svc("exact")],
            ),
            mapping("star", &["hostname: \"*\"", "prefix: /h/", &b.svc("star")]),
            // 9: a glob is a suffix match on the whole Host header.
            mapping(
                "glob",
                &["hostname: \"*.example.com\"", "prefix: /g/", &b.svc("glob")],
            ),
            // 5: a v2 `host` is a glob, and joins the group of the same v3 `hostname`.
            annotated(
                "v2glob",
                &["host: \"*.example.com\"", "prefix: /v2/", &b.svc("v2glob")],
            ),
            annotated(
                "v2exact",
                &[
                    "host: a.example.com",
                    "prefix: /h/",
                    "weight: 0",
                    &b.svc("v2exact"),
                ],
            ),
        ]
        .concat(),
    )];
    let (stack, report) = Stack::start(files, ApiType::Grpc).await.unwrap();
    assert_eq!(report.errors().count(), 0, "{:#?}", report.findings);
    let cases: &[(&str, &str, &str)] = &[
        ("a.example.com", "/h/x", "exact /x"),
        // The exact match is case-sensitive: the `*` Mapping takes it.
        ("A.example.com", "/h/x", "star /x"),
        ("q.example.com", "/h/x", "star /x"),
        ("q.example.com", "/g/x", "glob /x"),
        // A port in the Host header is part of what the suffix is compared with.
        ("q.example.com:8080", "/g/x", "404"),
        ("q.example.com", "/v2/x", "v2glob /x"),
        ("a.example.com", "/v2/x", "v2glob /x"),
    ];
    let mut failures = Vec::new();
    for (authority, path, want) in cases {
        for _ in 0..5 {
            let got = outcome(&stack, "GET", path, &[("host", authority)]).await;
            if got != *want {
                failures.push(format!("GET {authority}{path}: expected {want}, got {got}"));
                break;
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

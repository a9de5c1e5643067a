//! Mapping features through the real pipeline and a real Envoy, in the spirit of Ambassador's KAT suite.
//!
//! [`generated_matrix`] crosses four path matches, four rewrites and four extra conditions
//! (64 Mappings, half as annotations, half as custom resources, a third of them through
//! EDS) and checks, for each, the request that must reach the backend with the path it
//! must arrive with, and the request that must not match. [`features`] checks the features
//! that need their own backend behaviour: canaries, shadows, timeouts, retries, CORS,
//! header edits, host rewrite, websockets, HTTP/2 upstreams, redirects, precedence, Hosts,
//! TCPMappings.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ambassador_e2e::backend::{Backend, Echo, TcpEcho};
use ambassador_e2e::http::Response;
use ambassador_e2e::stack::Stack;
use ambassador_e2e::{free_port, poll};
use ambassador_webhook::bootstrap::ApiType;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

/// A YAML scalar: JSON strings are valid YAML and need no thought about quoting.
fn q(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

/// One Mapping as YAML: a `getambassador.io/v3alpha1` custom resource, or a v2 document in
/// the `getambassador.io/config` annotation of a Service.
fn mapping(name: &str, annotation: bool, fields: &[(&str, String)]) -> String {
    let mut out = String::new();
    if annotation {
        let _ = writeln!(
            out,
            "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  annotations:\n    getambassador.io/config: |\n      apiVersion: getambassador.io/v2\n      kind: Mapping\n      name: {name}"
        );
        for (k, v) in fields {
            let _ = writeln!(out, "      {k}: {v}");
        }
        let _ = writeln!(out, "spec:\n  ports:\n  - port: 80");
    } else {
        let _ = writeln!(
            out,
            "---\napiVersion: getambassador.io/v3alpha1\nkind: Mapping\nmetadata:\n  name: {name}\nspec:\n  hostname: \"*\""
        );
        for (k, v) in fields {
            let _ = writeln!(out, "  {k}: {v}");
        }
    }
    out
}

/// A Service and its Endpoints listing loopback ports, for `resolver: kubernetes-endpoint`.
/// The Service names no `targetPort`: the ports are the Endpoints' own, one subset each
/// (see the report on `endpoints_of` preferring a numeric `targetPort`).
fn eds_service(name: &str, addrs: &[SocketAddr]) -> String {
    let mut out = format!(
        "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n  ports:\n  - port: 80\n---\napiVersion: v1\nkind: Endpoints\nmetadata:\n  name: {name}\nsubsets:\n"
    );
    for a in addrs {
        let _ = writeln!(
            out,
            "- addresses:\n  - ip: {}\n  ports:\n  - port: {}",
            a.ip(),
            a.port()
        );
    }
    out
}

fn echo_of(r: &Response) -> Option<Echo> {
    r.json().ok().and_then(|v| serde_json::from_value(v).ok())
}

#[derive(Clone, Copy, Debug)]
enum PathKind {
    Prefix,
    Exact,
    Regex,
    CaseInsensitive,
}

#[derive(Clone, Copy, Debug)]
enum Rewrite {
    /// No `rewrite`: Ambassador's default `/`.
    Default,
    /// `rewrite: ""`: the path is kept.
    Keep,
    /// `rewrite: /new/`.
    Custom,
    /// `regex_rewrite` dropping the first segment.
    Regex,
}

#[derive(Clone, Copy, Debug)]
enum Extra {
    None,
    Header,
    Query,
    Method,
}

#[derive(Clone, Copy, Debug)]
struct Case {
    id: usize,
    path: PathKind,
    rewrite: Rewrite,
    extra: Extra,
    annotation: bool,
    eds: bool,
}

/// A request through Envoy and what must come of it: `Some(path)` the backend must see, or
/// `None` for a 404 from Envoy.
struct Probe {
    method: &'static str,
    path: String,
    headers: Vec<(&'static str, String)>,
    expect: Option<String>,
}

impl Case {
    fn name(&self) -> String {
        format!("c{}", self.id)
    }

    fn yaml(&self, static_backend: SocketAddr) -> String {
        let n = self.name();
        let mut f: Vec<(&str, String)> = Vec::new();
        match self.path {
            PathKind::Prefix => f.push(("prefix", q(&format!("/{n}/")))),
            PathKind::Exact => {
                f.push(("prefix", q(&format!("/{n}/exact"))));
                f.push(("prefix_exact", "true".into()));
            }
            PathKind::Regex => {
                f.push(("prefix", q(&format!("/{n}/[0-9]+/r"))));
                f.push(("prefix_regex", "true".into()));
            }
            PathKind::CaseInsensitive => {
                f.push(("prefix", q(&format!("/{n}/ci/"))));
                f.push(("case_sensitive", "false".into()));
            }
        }
        if self.eds {
            f.push(("service", q("matrix-eds:80")));
            f.push(("resolver", q("kubernetes-endpoint")));
        } else {
            f.push(("service", q(&static_backend.to_string())));
        }
        match self.rewrite {
            Rewrite::Default => {}
            Rewrite::Keep => f.push(("rewrite", q(""))),
            Rewrite::Custom => f.push(("rewrite", q("/new/"))),
            Rewrite::Regex => f.push((
                "regex_rewrite",
                format!(
                    "{{pattern: {}, substitution: {}}}",
                    q("^/[^/]+/(.*)$"),
                    q("/rx/\\1")
                ),
            )),
        }
        match self.extra {
            Extra::None => {}
            Extra::Header => f.push(("headers", format!("{{x-case: {}}}", q(&n)))),
            Extra::Query => f.push(("query_parameters", format!("{{q: {}}}", q(&n)))),
            Extra::Method => f.push(("method", "POST".into())),
        }
        mapping(&n, self.annotation, &f)
    }

    fn probes(&self) -> Vec<Probe> {
        let n = self.name();
        // The request that must match, the path without the matched prefix, and one that
        // must not match on the path.
        let (path, rest, miss) = match self.path {
            PathKind::Prefix => (format!("/{n}/rest/x"), "rest/x".to_owned(), format!("/{n}")),
            PathKind::Exact => (
                format!("/{n}/exact"),
                String::new(),
                format!("/{n}/exact/more"),
            ),
            PathKind::Regex => (format!("/{n}/42/r"), String::new(), format!("/{n}/ab/r")),
            PathKind::CaseInsensitive => (
                format!("/{}/CI/rest", n.to_uppercase()),
                "rest".to_owned(),
                format!("/{n}/cj/rest"),
            ),
        };
        let upstream = match self.rewrite {
            // Ambassador's default `rewrite: /` applies to regex prefixes too, where Envoy
            // replaces the whole path the regex matched.
            Rewrite::Default if matches!(self.path, PathKind::Regex) => "/".to_owned(),
            Rewrite::Default => format!("/{rest}"),
            Rewrite::Keep => path.clone(),
            Rewrite::Custom => format!("/new/{rest}"),
            Rewrite::Regex => format!("/rx/{}", path.splitn(3, '/').nth(2).unwrap()),
        };
        let (method, headers, query): (&str, Vec<(&str, String)>, String) = match self.extra {
            Extra::None => ("GET", vec![], String::new()),
            Extra::Header => ("GET", vec![("x-case", n.clone())], String::new()),
            Extra::Query => ("GET", vec![], format!("?q={n}")),
            Extra::Method => ("POST", vec![], String::new()),
        };
        let mut probes = vec![
            Probe {
                method,
                path: format!("{path}{query}"),
                headers: headers.clone(),
                expect: Some(upstream),
            },
            Probe {
                method,
                path: format!("{miss}{query}"),
                headers: headers.clone(),
                expect: None,
            },
        ];
        // Without the extra condition, the right path must not match either.
        let unconditioned = match self.extra {
            Extra::None => None,
            Extra::Header | Extra::Query => Some(("GET", vec![])),
            Extra::Method => Some(("GET", headers)),
        };
        if let Some((method, headers)) = unconditioned {
            probes.push(Probe {
                method,
                path: path.clone(),
                headers,
                expect: None,
            });
        }
        probes
    }
}

fn matrix() -> Vec<Case> {
    let paths = [
        PathKind::Prefix,
        PathKind::Exact,
        PathKind::Regex,
        PathKind::CaseInsensitive,
    ];
    let rewrites = [
        Rewrite::Default,
        Rewrite::Keep,
        Rewrite::Custom,
        Rewrite::Regex,
    ];
    let extras = [Extra::None, Extra::Header, Extra::Query, Extra::Method];
    let mut out = Vec::new();
    for path in paths {
        for rewrite in rewrites {
            for extra in extras {
                let id = out.len();
                out.push(Case {
                    id,
                    path,
                    rewrite,
                    extra,
                    annotation: id % 2 == 1,
                    eds: id % 3 == 0,
                });
            }
        }
    }
    out
}

/// Every combination of path match, rewrite and extra condition routes what it must, with
/// the path it must, and nothing else.
#[tokio::test]
async fn generated_matrix() {
    let backend = Backend::start("matrix").await.unwrap();
    let eds_backend = Backend::start("matrix-eds").await.unwrap();
    let cases = matrix();
    let mut files: Vec<(String, String)> = cases
        .iter()
        .map(|c| (format!("{}.yaml", c.name()), c.yaml(backend.addr())))
        .collect();
    files.push((
        "eds.yaml".into(),
        eds_service("matrix-eds", &[eds_backend.addr()]),
    ));
    let (stack, report) = Stack::start(files, ApiType::Grpc).await.unwrap();
    assert_eq!(report.errors().count(), 0, "{:#?}", report.findings);

    let mut failures = Vec::new();
    let mut checked = 0;
    for case in &cases {
        for probe in case.probes() {
            let headers: Vec<(&str, &str)> = probe
                .headers
                .iter()
                .map(|(k, v)| (*k, v.as_str()))
                .collect();
            let r = stack
                .request(probe.method, &probe.path, &headers)
                .await
                .unwrap();
            checked += 1;
            let got = match (&probe.expect, r.status, echo_of(&r)) {
                (Some(want), 200, Some(echo)) => {
                    let backend = if case.eds { "matrix-eds" } else { "matrix" };
                    if echo.path == *want && echo.backend == backend && echo.method == probe.method
                    {
                        continue;
                    }
                    format!("{} {} {}", echo.backend, echo.method, echo.path)
                }
                (None, 404, _) => continue,
                (_, status, _) => format!("{status} {}", r.text()),
            };
            failures.push(format!(
                "{case:?}: {} {} {:?} expected {:?}, got {got}",
                probe.method, probe.path, probe.headers, probe.expect
            ));
        }
    }
    eprintln!("{} cases, {checked} requests", cases.len());
    assert!(checked >= 3 * cases.len() - 16);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The backends of [`features`].
struct Backends {
    a: Backend,
    b: Backend,
    shadow: Backend,
    h2: Backend,
    eds1: Backend,
    eds2: Backend,
    tcp: TcpEcho,
    /// A second TCPMapping on the same port: one group, one filter chain with both.
    tcp2: TcpEcho,
    tcp_port: u16,
}

fn features_config(k: &Backends) -> Vec<(String, String)> {
    let a = q(&k.a.addr().to_string());
    let b = q(&k.b.addr().to_string());
    let mut files = Vec::new();
    let mut add = |name: &str, text: String| files.push((format!("{name}.yaml"), text));

    // Hosts: a catch-all that routes cleartext, and one for a.example.com only.
    add(
        "hosts",
        "---\napiVersion: getambassador.io/v3alpha1\nkind: Host\nmetadata:\n  name: any\nspec:\n  hostname: \"*\"\n  requestPolicy:\n    insecure:\n      action: Route\n---\napiVersion: getambassador.io/v3alpha1\nkind: Host\nmetadata:\n  name: host-a\nspec:\n  hostname: a.example.com\n  requestPolicy:\n    insecure:\n      action: Route\n".to_owned(),
    );
    add(
        "canary",
        mapping(
            "canary-main",
            false,
            &[("prefix", q("/f-canary/")), ("service", b.clone())],
        ) + &mapping(
            "canary-new",
            true,
            &[
                ("prefix", q("/f-canary/")),
                ("service", a.clone()),
                ("weight", "30".into()),
            ],
        ),
    );
    add(
        "shadow",
        mapping(
            "shadow-main",
            false,
            &[("prefix", q("/f-shadow/")), ("service", a.clone())],
        ) + &mapping(
            "shadow-copy",
            false,
            &[
                ("prefix", q("/f-shadow/")),
                ("service", q(&k.shadow.addr().to_string())),
                ("shadow", "true".into()),
            ],
        ),
    );
    add(
        "timeout",
        mapping(
            "timeout",
            false,
            &[
                ("prefix", q("/f-timeout/")),
                ("rewrite", q("/_slow")),
                ("service", a.clone()),
                ("timeout_ms", "300".into()),
            ],
        ),
    );
    add(
        "retry",
        mapping(
            "retry",
            true,
            &[
                ("prefix", q("/f-retry/")),
                ("rewrite", q("/_flaky")),
                ("service", a.clone()),
                ("retry_policy", "{retry_on: 5xx, num_retries: 2}".into()),
            ],
        ) + &mapping(
            "noretry",
            false,
            &[
                ("prefix", q("/f-noretry/")),
                ("rewrite", q("/_flaky")),
                ("service", a.clone()),
            ],
        ),
    );
    add(
        "cors",
        mapping(
            "cors",
            false,
            &[
                ("prefix", q("/f-cors/")),
                ("service", a.clone()),
                (
                    "cors",
                    "{origins: [\"https://ok.example\"], methods: [GET, POST], headers: [x-custom], max_age: \"600\"}".into(),
                ),
            ],
        ),
    );
    add(
        "headers",
        mapping(
            "headers",
            true,
            &[
                ("prefix", q("/f-headers/")),
                ("service", a.clone()),
                (
                    "add_request_headers",
                    "{x-added: \"yes\", x-appended: {value: \"two\", append: true}}".into(),
                ),
                ("remove_request_headers", "[x-remove-me]".into()),
                ("add_response_headers", "{x-resp: \"r\"}".into()),
                ("remove_response_headers", "[x-backend]".into()),
            ],
        ),
    );
    add(
        "hostrw",
        mapping(
            "hostrw",
            false,
            &[
                ("prefix", q("/f-hostrw/")),
                ("service", a.clone()),
                ("host_rewrite", q("rewritten.example")),
            ],
        ),
    );
    add(
        "ws",
        mapping(
            "ws",
            false,
            &[
                ("prefix", q("/f-ws/")),
                ("rewrite", q("/_ws")),
                ("service", a.clone()),
                ("allow_upgrade", "[websocket]".into()),
                ("timeout_ms", "0".into()),
            ],
        ) + &mapping(
            "nows",
            false,
            &[
                ("prefix", q("/f-nows/")),
                ("rewrite", q("/_ws")),
                ("service", a.clone()),
            ],
        ),
    );
    add(
        "grpc",
        mapping(
            "grpc",
            false,
            &[
                ("prefix", q("/f-grpc/")),
                ("service", q(&k.h2.addr().to_string())),
                ("grpc", "true".into()),
            ],
        ),
    );
    let mut redirects = String::new();
    for (i, code) in [301u16, 302, 303, 307, 308].into_iter().enumerate() {
        let kinds: [(&str, String); 3] = [
            ("path_redirect", q("/new/path")),
            ("prefix_redirect", q("/p2/")),
            (
                "regex_redirect",
                format!(
                    "{{pattern: {}, substitution: {}}}",
                    q("^/f-redir-[0-9]+/(.*)$"),
                    q("/rx/\\1")
                ),
            ),
        ];
        for (j, (kind, value)) in kinds.into_iter().enumerate() {
            let n = i * 3 + j;
            redirects += &mapping(
                &format!("redir-{n}"),
                n % 2 == 0,
                &[
                    ("prefix", q(&format!("/f-redir-{n}/"))),
                    ("service", q("redirect.example")),
                    ("host_redirect", "true".into()),
                    (kind, value),
                    ("redirect_response_code", code.to_string()),
                ],
            );
        }
    }
    add("redirects", redirects);
    add(
        "precedence",
        mapping(
            "prec-short",
            false,
            &[
                ("prefix", q("/f-prec/")),
                ("service", a.clone()),
                ("precedence", "10".into()),
            ],
        ) + &mapping(
            "prec-long",
            false,
            &[("prefix", q("/f-prec/long/")), ("service", b.clone())],
        ) + &mapping(
            "order-short",
            true,
            &[("prefix", q("/f-order/")), ("service", a.clone())],
        ) + &mapping(
            "order-long",
            true,
            &[("prefix", q("/f-order/long/")), ("service", b.clone())],
        ),
    );
    add(
        "hostnames",
        "---\napiVersion: getambassador.io/v3alpha1\nkind: Mapping\nmetadata:\n  name: only-a\nspec:\n  hostname: a.example.com\n  prefix: /f-only-a/\n  service: "
            .to_owned()
            + &a
            + "\n"
            + &mapping(
                "host-header",
                true,
                &[
                    ("prefix", q("/f-host-header/")),
                    ("host", q("h.example.com")),
                    ("service", b.clone()),
                ],
            ),
    );
    add(
        "eds",
        eds_service("eds-one", &[k.eds1.addr()])
            + &eds_service("eds-two", &[k.eds1.addr(), k.eds2.addr()])
            + &mapping(
                "eds-one",
                false,
                &[
                    ("prefix", q("/f-eds-one/")),
                    ("service", q("eds-one:80")),
                    ("resolver", q("kubernetes-endpoint")),
                ],
            )
            + &mapping(
                "eds-two",
                true,
                &[
                    ("prefix", q("/f-eds-two/")),
                    ("service", q("eds-two.default:80")),
                    ("resolver", q("kubernetes-endpoint")),
                ],
            ),
    );
    add(
        "tcp",
        format!(
            "---\napiVersion: getambassador.io/v3alpha1\nkind: TCPMapping\nmetadata:\n  name: tcp\nspec:\n  port: {}\n  service: {}\n",
            k.tcp_port,
            q(&k.tcp.addr().to_string())
        ),
    );
    // Two TCPMappings on one port are one group (Envoy refuses two identical filter chains).
    add(
        "tcp2",
        format!(
            "---\napiVersion: getambassador.io/v3alpha1\nkind: TCPMapping\nmetadata:\n  name: tcp2\nspec:\n  port: {}\n  service: {}\n  weight: 50\n",
            k.tcp_port,
            q(&k.tcp2.addr().to_string())
        ),
    );
    files
}

/// Collects failures instead of stopping at the first, so one run shows every broken feature.
#[derive(Default)]
struct Checks {
    failures: Vec<String>,
    passed: usize,
}

impl Checks {
    fn check(&mut self, ok: bool, what: impl FnOnce() -> String) {
        if ok {
            self.passed += 1;
        } else {
            self.failures.push(what());
        }
    }
}

/// Everything that needs its own backend behaviour, in one configuration on one Envoy.
#[tokio::test]
async fn features() {
    let k = Backends {
        a: Backend::start("a").await.unwrap(),
        b: Backend::start("b").await.unwrap(),
        shadow: Backend::start("shadow").await.unwrap(),
        h2: Backend::start("h2").await.unwrap(),
        eds1: Backend::start("eds1").await.unwrap(),
        eds2: Backend::start("eds2").await.unwrap(),
        tcp: TcpEcho::start().await.unwrap(),
        tcp2: TcpEcho::start().await.unwrap(),
        tcp_port: free_port(),
    };
    let (stack, report) = Stack::start(features_config(&k), ApiType::DeltaGrpc)
        .await
        .unwrap();
    assert_eq!(report.errors().count(), 0, "{:#?}", report.findings);
    let mut c = Checks::default();
    let get = |path: &'static str| stack.request("GET", path, &[]);

    // Canary: 30 % to a, the rest to b. Envoy picks with its own random numbers (it takes
    // no seed), so the bounds are five standard deviations of the binomial: a failure by
    // chance is a one in a million event.
    let n = 400;
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..n {
        let r = get("/f-canary/x").await.unwrap();
        let who = echo_of(&r).map_or_else(|| format!("status {}", r.status), |e| e.backend);
        *counts.entry(who).or_default() += 1;
    }
    let share_a = counts.get("a").copied().unwrap_or(0) as f64;
    let sd = (n as f64 * 0.3 * 0.7).sqrt();
    c.check(
        (share_a - 0.3 * n as f64).abs() <= 5.0 * sd
            && counts.get("b").copied().unwrap_or(0) + share_a as usize == n,
        || format!("canary 30/70 over {n} requests: {counts:?}"),
    );
    eprintln!("canary 30/70 over {n} requests: {counts:?}");

    // Shadow: the main backend answers, the shadow one sees the same request (with
    // Envoy's `-shadow` suffix on the host), and its answer is dropped.
    k.shadow.clear_seen();
    for i in 0..5 {
        let id = format!("mirror-{i}");
        let r = stack
            .request("GET", "/f-shadow/m", &[("x-mirror-id", &id)])
            .await
            .unwrap();
        let echo = echo_of(&r);
        c.check(echo.as_ref().is_some_and(|e| e.backend == "a"), || {
            format!("shadow: the main backend must answer, got {echo:?}")
        });
    }
    let mirrored = poll(Duration::from_secs(5), Duration::from_millis(20), || {
        let seen = k.shadow.seen();
        async move { (seen.len() >= 5).then_some(seen) }
    })
    .await
    .map(|(s, _)| s)
    .unwrap_or_else(|| k.shadow.seen());
    c.check(
        mirrored.len() == 5
            && mirrored.iter().all(|e| {
                e.path == "/m"
                    && e.headers.get("host").is_some_and(|h| h.contains("-shadow"))
                    && e.headers
                        .get("x-mirror-id")
                        .is_some_and(|v| v.starts_with("mirror-"))
            }),
        || format!("shadow: the mirror must see 5 copies: {mirrored:#?}"),
    );

    // Timeout: 300 ms route timeout, a backend that takes 1 s → 504; 10 ms → 200.
    let started = Instant::now();
    let slow = get("/f-timeout/?ms=1500").await.unwrap();
    let took = started.elapsed();
    c.check(
        slow.status == 504 && took < Duration::from_millis(1400),
        || {
            format!(
                "timeout: expected 504 after ~300 ms, got {} after {took:?}",
                slow.status
            )
        },
    );
    let fast = get("/f-timeout/?ms=10").await.unwrap();
    c.check(fast.status == 200, || {
        format!("timeout: a fast answer must pass, got {}", fast.status)
    });

    // Retries: two failures then success is a 200 with retries, one failure is a 503 without.
    let retried = get("/f-retry/?key=r1&fail=2").await.unwrap();
    c.check(retried.status == 200, || {
        format!(
            "retries: expected 200 after 2 retries, got {}",
            retried.status
        )
    });
    let not_retried = get("/f-noretry/?key=r2&fail=1").await.unwrap();
    c.check(not_retried.status == 503, || {
        format!("no retries: expected 503, got {}", not_retried.status)
    });

    // CORS preflight: the allowed origin gets the policy, another origin does not.
    let stack_ref = &stack;
    let preflight = |origin: &'static str| async move {
        stack_ref
            .request(
                "OPTIONS",
                "/f-cors/",
                &[
                    ("origin", origin),
                    ("access-control-request-method", "POST"),
                ],
            )
            .await
    };
    let ok = preflight("https://ok.example").await.unwrap();
    c.check(
        ok.status == 200
            && ok.header("access-control-allow-origin") == Some("https://ok.example")
            && ok
                .header("access-control-allow-methods")
                .is_some_and(|m| m.contains("POST"))
            && ok.header("access-control-max-age") == Some("600"),
        || {
            format!(
                "cors: preflight from an allowed origin: {} {:?}",
                ok.status, ok.headers
            )
        },
    );
    let bad = preflight("https://evil.example").await.unwrap();
    c.check(bad.header("access-control-allow-origin").is_none(), || {
        format!(
            "cors: a foreign origin must not be allowed: {:?}",
            bad.headers
        )
    });

    // Header edits, both ways.
    let r = stack
        .request(
            "GET",
            "/f-headers/h",
            &[("x-remove-me", "1"), ("x-appended", "one")],
        )
        .await
        .unwrap();
    let echo = echo_of(&r);
    c.check(
        echo.as_ref().is_some_and(|e| {
            e.headers.get("x-added").map(String::as_str) == Some("yes")
                && !e.headers.contains_key("x-remove-me")
                && e.headers.get("x-appended").map(String::as_str) == Some("one, two")
        }) && r.header("x-resp") == Some("r")
            && r.header("x-backend").is_none(),
        || format!("headers: {echo:?} / response {:?}", r.headers),
    );

    // host_rewrite.
    let r = get("/f-hostrw/").await.unwrap();
    let host = echo_of(&r).and_then(|e| e.headers.get("host").cloned());
    c.check(host.as_deref() == Some("rewritten.example"), || {
        format!("host_rewrite: the backend saw host {host:?}")
    });

    // Websockets: upgraded where allowed, refused elsewhere.
    let url = format!("ws://127.0.0.1:{}/f-ws/", stack.http_port);
    match tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async(url),
    )
    .await
    {
        Ok(Ok((mut ws, _))) => {
            ws.send(Message::text("ping through envoy")).await.unwrap();
            let got = tokio::time::timeout(Duration::from_secs(5), ws.next()).await;
            let ok = matches!(&got, Ok(Some(Ok(m))) if *m == Message::text("ping through envoy"));
            c.check(ok, || format!("websocket echo: {got:?}"));
            let _ = ws.close(None).await;
        }
        other => c.check(false, || format!("websocket upgrade: {other:?}")),
    }
    let refused = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{}/f-nows/", stack.http_port)),
    )
    .await;
    c.check(matches!(refused, Ok(Err(_))), || {
        format!("websocket without allow_upgrade must be refused: {refused:?}")
    });

    // gRPC: the upstream speaks HTTP/2.
    let r = get("/f-grpc/svc.Method").await.unwrap();
    let echo = echo_of(&r);
    c.check(
        echo.as_ref().is_some_and(|e| {
            e.version == "HTTP/2.0" && e.backend == "h2" && e.path == "/svc.Method"
        }),
        || format!("grpc: upstream must be HTTP/2: {echo:?}"),
    );

    // Redirects: every kind with every response code.
    for (i, code) in [301u16, 302, 303, 307, 308].into_iter().enumerate() {
        let wanted = ["/new/path", "/p2/abc", "/rx/abc"];
        for (j, path) in wanted.into_iter().enumerate() {
            let n = i * 3 + j;
            let r = stack
                .request("GET", &format!("/f-redir-{n}/abc"), &[])
                .await
                .unwrap();
            let location = r.header("location").unwrap_or_default().to_owned();
            c.check(
                r.status == code
                    && location.starts_with("http://redirect.example")
                    && location.ends_with(path),
                || {
                    format!(
                        "redirect {n}: expected {code} to ...{path}, got {} {location:?}",
                        r.status
                    )
                },
            );
        }
    }

    // Precedence wins over prefix length; without it the longer prefix wins.
    for (path, who) in [
        ("/f-prec/long/x", "a"),
        ("/f-prec/x", "a"),
        ("/f-order/long/x", "b"),
        ("/f-order/x", "a"),
    ] {
        let r = get(path).await.unwrap();
        let got = echo_of(&r).map(|e| e.backend);
        c.check(got.as_deref() == Some(who), || {
            format!("order: {path} must reach {who}, got {got:?} ({})", r.status)
        });
    }

    // Hosts and `host`: the virtual host of a.example.com, and an exact authority match.
    for (path, host, want) in [
        ("/f-only-a/", "a.example.com", Some("a")),
        ("/f-only-a/", "b.example.com", None),
        ("/f-host-header/", "h.example.com", Some("b")),
        ("/f-host-header/", "other.example.com", None),
        ("/f-canary/", "a.example.com", Some("either")),
    ] {
        let r = stack.request("GET", path, &[("host", host)]).await.unwrap();
        let got = echo_of(&r).map(|e| e.backend);
        let ok = match want {
            None => r.status == 404,
            Some("either") => r.status == 200,
            Some(w) => got.as_deref() == Some(w),
        };
        c.check(ok, || {
            format!(
                "host {host} {path}: expected {want:?}, got {} {got:?}",
                r.status
            )
        });
    }

    // EDS: endpoints from Endpoints objects; two endpoints share the load.
    let r = get("/f-eds-one/").await.unwrap();
    let got = echo_of(&r).map(|e| e.backend);
    c.check(got.as_deref() == Some("eds1"), || {
        format!("eds-one: {got:?}")
    });
    let mut seen = BTreeMap::new();
    for _ in 0..40 {
        let r = get("/f-eds-two/").await.unwrap();
        *seen
            .entry(echo_of(&r).map_or_else(|| r.status.to_string(), |e| e.backend))
            .or_insert(0) += 1;
    }
    c.check(
        seen.len() == 2 && seen.contains_key("eds1") && seen.contains_key("eds2"),
        || format!("eds-two: both endpoints must answer: {seen:?}"),
    );

    // TCPMapping: raw bytes echoed through Envoy's tcp_proxy.
    let echoed = async {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", k.tcp_port)).await?;
        s.write_all(b"raw tcp through envoy").await?;
        let mut buf = [0u8; 21];
        s.read_exact(&mut buf).await?;
        Ok::<_, std::io::Error>(buf.to_vec())
    };
    let echoed = tokio::time::timeout(Duration::from_secs(5), echoed).await;
    c.check(
        matches!(&echoed, Ok(Ok(b)) if b == b"raw tcp through envoy"),
        || format!("tcp mapping: {echoed:?}"),
    );

    eprintln!("{} checks passed", c.passed);
    assert!(
        c.failures.is_empty(),
        "{} failed:\n{}",
        c.failures.len(),
        c.failures.join("\n")
    );
}

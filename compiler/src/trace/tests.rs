use super::*;
use crate::{compile_one, envoy_resources};

/// Compiles `yaml` and traces `method url` with `headers`.
fn run(yaml: &str, method: &str, url: &str, headers: &[(&str, &str)]) -> Trace {
    let c = compile_one("t.yaml", yaml);
    let table = crate::envoy::table::table(&envoy_resources(&c));
    let headers = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let req = request_for_url(&table, method, url, headers).expect("a valid URL");
    trace(&table, &c.ir, &req)
}

const SERVICES: &str = r#"
---
apiVersion: v1
kind: Service
metadata: {name: quote, namespace: default}
spec: {ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: quote-v2, namespace: default}
spec: {ports: [{port: 80}]}
"#;

fn mapping(name: &str, spec: &str) -> String {
    format!(
        "---\napiVersion: getambassador.io/v3alpha1\nkind: Mapping\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  hostname: \"*\"\n{spec}\n"
    )
}

fn backends(t: &Trace) -> Vec<(String, f64, String)> {
    match &t.outcome {
        Outcome::Forward { backends } => backends
            .iter()
            .map(|b| {
                (
                    b.service.clone().unwrap_or_default(),
                    b.percent,
                    b.path.clone(),
                )
            })
            .collect(),
        other => panic!("expected a forward, got {other:?}"),
    }
}

#[test]
fn a_prefix_mapping_forwards_with_the_default_rewrite() {
    let yaml = mapping("quote", "  prefix: /quote/\n  service: quote") + SERVICES;
    let t = run(&yaml, "GET", "http://example.com/quote/a?x=1", &[]);
    assert_eq!(t.listener.as_ref().unwrap().port, 8080);
    assert_eq!(
        backends(&t),
        vec![("quote.default:80".into(), 100.0, "/a?x=1".into())]
    );
    let Outcome::Forward { backends } = &t.outcome else {
        unreachable!()
    };
    assert_eq!(backends[0].host, "example.com");
    let source = backends[0].source.as_ref().expect("the Mapping");
    assert_eq!(
        (source.kind.as_str(), source.name.as_str()),
        ("Mapping", "quote")
    );
    assert_eq!(source.span.start.line, 4);
    assert!(t.outcome.is_routed());
}

#[test]
fn a_request_no_route_takes_is_a_404_with_each_route_s_first_failed_condition() {
    let yaml = mapping("quote", "  prefix: /quote/\n  service: quote")
        + &mapping(
            "hdr",
            "  prefix: /other/\n  headers: {x-team: blue}\n  service: quote-v2",
        )
        + SERVICES;
    let t = run(&yaml, "GET", "http://example.com/other/1", &[]);
    assert!(matches!(t.outcome, Outcome::NoRoute { status: 404 }));
    assert!(!t.outcome.is_routed());
    let misses: Vec<String> = t
        .routes
        .iter()
        .map(|r| match &r.verdict {
            Verdict::Missed { condition } => condition.clone(),
            v => panic!("expected a miss, got {v:?}"),
        })
        .collect();
    assert!(
        misses.contains(&"header `x-team` is `blue`; the request has none".to_owned()),
        "{misses:?}"
    );
    assert!(
        misses.contains(&"path starts with `/quote/`; the path is `/other/1`".to_owned()),
        "{misses:?}"
    );
    // With the header, the same request is routed.
    let t = run(
        &yaml,
        "GET",
        "http://example.com/other/1",
        &[("x-team", "blue")],
    );
    assert_eq!(backends(&t)[0].0, "quote-v2.default:80");
}

#[test]
fn a_canary_split_gives_each_member_its_share_and_its_own_rewrite() {
    let yaml = mapping("main", "  prefix: /q/\n  service: quote")
        + &mapping(
            "canary",
            "  prefix: /q/\n  weight: 10\n  rewrite: /v2/\n  service: quote-v2",
        )
        + SERVICES;
    let t = run(&yaml, "GET", "http://example.com/q/x", &[]);
    let mut b = backends(&t);
    b.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        b,
        vec![
            ("quote-v2.default:80".into(), 10.0, "/v2/x".into()),
            ("quote.default:80".into(), 90.0, "/x".into()),
        ]
    );
    // Both member routes are taken; each names its own Mapping.
    let taken: Vec<&RouteVerdict> = t
        .routes
        .iter()
        .filter(|r| matches!(r.verdict, Verdict::Taken { .. }))
        .collect();
    assert_eq!(taken.len(), 2);
    for r in taken {
        assert_eq!(r.sources.len(), 1, "{r:?}");
    }
}

#[test]
fn an_earlier_route_shadows_a_later_one_that_also_matches() {
    let yaml = mapping("wide", "  prefix: /a/\n  precedence: 10\n  service: quote")
        + &mapping("narrow", "  prefix: /a/b/\n  service: quote-v2")
        + SERVICES;
    let t = run(&yaml, "GET", "http://example.com/a/b/c", &[]);
    assert_eq!(backends(&t)[0].0, "quote.default:80");
    let narrow = t
        .routes
        .iter()
        .find(|r| r.sources.iter().any(|s| s.name == "narrow"))
        .expect("the narrow route");
    assert_eq!(narrow.verdict, Verdict::Shadowed { by: 1 });
}

#[test]
fn a_host_redirect_answers_with_its_location() {
    let yaml = mapping(
        "moved",
        "  prefix: /old/\n  host_redirect: true\n  path_redirect: /new\n  redirect_response_code: 302\n  service: elsewhere.example.org",
    );
    let t = run(&yaml, "GET", "http://example.com/old/x?q=1", &[]);
    match &t.outcome {
        Outcome::Redirect {
            status, location, ..
        } => {
            assert_eq!(*status, 302);
            assert_eq!(location, "http://elsewhere.example.org/new?q=1");
        }
        other => panic!("expected a redirect, got {other:?}"),
    }
}

#[test]
fn dot_segments_are_resolved_before_routing() {
    let yaml = mapping("quote", "  prefix: /quote/\n  service: quote") + SERVICES;
    let t = run(&yaml, "GET", "http://example.com/x/../quote/%61", &[]);
    assert_eq!(
        t.connection_manager
            .as_ref()
            .unwrap()
            .normalized_path
            .as_deref(),
        Some("/quote/a")
    );
    assert_eq!(backends(&t)[0].2, "/a");
}

#[test]
fn nothing_listens_on_an_unknown_port() {
    let yaml = mapping("quote", "  prefix: /quote/\n  service: quote") + SERVICES;
    let t = run(&yaml, "GET", "http://example.com:9999/quote/", &[]);
    assert!(matches!(t.outcome, Outcome::NoListener { port: 9999 }));
}

#[test]
fn an_insecure_request_to_a_tls_host_is_redirected_to_https() {
    let yaml = r#"
---
apiVersion: getambassador.io/v3alpha1
kind: Host
metadata: {name: shop, namespace: default}
spec:
  hostname: shop.example.com
  tlsSecret: {name: shop-cert}
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
metadata: {name: shop, namespace: default}
spec:
  hostname: shop.example.com
  prefix: /cart/
  service: quote
"#
    .to_owned()
        + SERVICES;
    let t = run(&yaml, "GET", "http://shop.example.com/cart/1?a=b", &[]);
    match &t.outcome {
        Outcome::Redirect {
            status, location, ..
        } => {
            assert_eq!(*status, 301);
            assert_eq!(location, "https://shop.example.com/cart/1?a=b");
        }
        other => panic!("expected the https redirect, got {other:?}"),
    }
    assert!(t.routes.iter().any(|r| r.https_redirect));
}

#[test]
fn a_regex_rewrite_is_applied_to_the_path_and_the_query_kept() {
    let yaml = mapping(
        "re",
        "  prefix: /users/\n  regex_rewrite: {pattern: '/users/([0-9]+)', substitution: '/u/\\1'}\n  service: quote",
    ) + SERVICES;
    let t = run(&yaml, "GET", "http://example.com/users/42?x", &[]);
    assert_eq!(backends(&t)[0].2, "/u/42?x");
}

#[test]
fn urls_are_read_as_a_client_sends_them() {
    let table = Table::default();
    let r = request_for_url(
        &table,
        "get",
        "https://Shop.example.com:443/a?b",
        Vec::new(),
    )
    .unwrap();
    assert!(r.tls);
    assert_eq!(r.sni.as_deref(), Some("Shop.example.com"));
    assert_eq!(r.port, 443);
    assert_eq!(r.authority, "Shop.example.com:443");
    assert_eq!(r.path, "/a?b");
    assert_eq!(r.method, "GET");
    let r = request_for_url(&table, "GET", "http://h", Vec::new()).unwrap();
    assert_eq!((r.port, r.path.as_str()), (8080, "/"));
    assert!(request_for_url(&table, "GET", "ftp://h/", Vec::new()).is_err());
    assert!(request_for_url(&table, "GET", "h/x", Vec::new()).is_err());
    assert!(request_for_url(&table, "GET", "http://h:port/", Vec::new()).is_err());
    assert!(request_for_url(&table, "GET", "http://[::1/x", Vec::new()).is_err());
    assert!(request_for_url(&table, "GET", "http://[::1]x/", Vec::new()).is_err());
    let v6 = request_for_url(&table, "GET", "http://[::1]:8080/x", Vec::new()).unwrap();
    assert_eq!((v6.authority.as_str(), v6.port), ("[::1]:8080", 8080));
}

/// Found by `tests/tests/agreement.rs`: Envoy 1.40 answers 400 to a request target with a
/// fragment (`http_reject_path_with_fragment`) or a raw non-ASCII byte, before any routing;
/// the tracer routed both.
#[test]
fn a_path_with_a_fragment_is_refused_before_routing() {
    let yaml = mapping("quote", "  prefix: /quote/\n  service: quote") + SERVICES;
    let c = compile_one("t.yaml", &yaml);
    let table = crate::envoy::table::table(&envoy_resources(&c));
    let mut req = request_for_url(&table, "GET", "http://example.com/quote/a", Vec::new())
        .expect("a valid URL");
    for path in ["/quote/a#top", "/quote/\u{e9}"] {
        req.path = path.to_owned();
        let t = trace(&table, &c.ir, &req);
        assert!(
            matches!(t.outcome, Outcome::BadRequest { status: 400, .. }),
            "{path}: {:?}",
            t.outcome
        );
        assert_eq!(t.outcome.status(), Some(400));
        assert!(!t.outcome.is_routed());
    }
}

/// Found by `tests/tests/agreement.rs`: the path Envoy forwards keeps an escape it does not
/// decode as the client wrote it (`%2f`, not `%2F`), and reads `\` as `/`.
#[test]
fn the_forwarded_path_keeps_escapes_as_written_and_reads_backslashes_as_slashes() {
    let yaml = mapping("quote", "  prefix: /quote/\n  service: quote") + SERVICES;
    let t = run(&yaml, "GET", "http://example.com/quote/a%2fb%5c", &[]);
    assert_eq!(backends(&t)[0].2, "/a%2fb%5c");
    let t = run(&yaml, "GET", "http://example.com/quote\\a", &[]);
    assert_eq!(backends(&t)[0].2, "/a");
}

/// Found by `tests/tests/agreement.rs`: behind a trusted hop (`l7Depth: 1`), a cleartext
/// request that says `x-forwarded-proto: https` is redirected to an https `Location`: Envoy
/// keeps the scheme the router sees, not the connection's.
#[test]
fn a_redirect_keeps_the_scheme_of_a_trusted_x_forwarded_proto() {
    let yaml = "---\napiVersion: getambassador.io/v3alpha1\nkind: Listener\nmetadata: {name: lb, namespace: default}\nspec:\n  port: 8080\n  protocol: HTTP\n  securityModel: XFP\n  l7Depth: 1\n  hostBinding: {namespace: {from: ALL}}\n---\napiVersion: getambassador.io/v3alpha1\nkind: Host\nmetadata: {name: h, namespace: default}\nspec:\n  hostname: \"*\"\n  requestPolicy: {insecure: {action: Route}}\n".to_owned()
        + &mapping(
            "moved",
            "  prefix: /old/\n  host_redirect: true\n  service: new.example.net",
        );
    let location = |xfp: &str| match run(
        &yaml,
        "GET",
        "http://example.com/old/x",
        &[("x-forwarded-proto", xfp)],
    )
    .outcome
    {
        Outcome::Redirect { location, .. } => location,
        other => panic!("expected a redirect, got {other:?}"),
    };
    assert_eq!(location("https"), "https://new.example.net/old/x");
    assert_eq!(location("http"), "http://new.example.net/old/x");
}

/// The table `trace` builds from the IR is the one decoded from the packed resources the
/// publisher sends, for every golden configuration.
#[test]
fn the_table_for_the_ir_is_the_table_of_the_emitted_resources() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("test_data/golden");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let c = compile_one("g.yaml", &text);
        let packed = crate::envoy::table::table(&envoy_resources(&c));
        let direct = crate::envoy::table::table_for(&c.ir);
        assert_eq!(
            serde_json::to_value(&packed).unwrap(),
            serde_json::to_value(&direct).unwrap(),
            "{}",
            path.display()
        );
        n += 1;
    }
    assert!(n >= 13, "golden inputs are missing");
}

/// A Listener whose name sorts after the TCP listeners' (`ambassador-tcp-*`): the table is
/// in the order the listeners are sent in, whatever order lowering made them in.
#[test]
fn the_table_lists_listeners_as_they_are_sent() {
    let c = compile_one(
        "g.yaml",
        "apiVersion: getambassador.io/v3alpha1\nkind: Listener\nmetadata: {name: zz-edge, namespace: default}\nspec: {port: 8080, protocol: HTTP, securityModel: XFP, hostBinding: {namespace: {from: ALL}}}\n---\napiVersion: getambassador.io/v3alpha1\nkind: TCPMapping\nmetadata: {name: db, namespace: default}\nspec: {port: 9000, service: db:5432}\n",
    );
    let packed = crate::envoy::table::table(&envoy_resources(&c));
    let direct = crate::envoy::table::table_for(&c.ir);
    let names = |t: &crate::trace::Table| -> Vec<String> {
        t.listeners.iter().map(|l| l.name.clone()).collect()
    };
    assert_eq!(names(&direct), ["ambassador-tcp-9000", "zz-edge"]);
    assert_eq!(names(&packed), names(&direct));
}

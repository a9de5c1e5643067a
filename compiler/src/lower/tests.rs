//! Lowering tests: small manifests in, IR and diagnostics out.

use crate::ir::{PathMatch, RouteAction};
use crate::{compile_one, Compilation};

fn compile(text: &str) -> Compilation {
    compile_one("t.yaml", text)
}

fn codes(c: &Compilation) -> Vec<&'static str> {
    c.diagnostics.iter().map(|d| d.code.as_str()).collect()
}

fn svc(name: &str, annotation: &str) -> String {
    let body: String = annotation.lines().map(|l| format!("      {l}\n")).collect();
    format!(
        "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  annotations:\n    getambassador.io/config: |\n{body}spec:\n  ports: [{{port: 80}}]\n"
    )
}

#[test]
fn canary_weights_follow_ambassador() {
    let text = svc(
        "a",
        "---\napiVersion: getambassador.io/v2\nkind: Mapping\nname: a\nprefix: /x/\nservice: a\n---\napiVersion: getambassador.io/v2\nkind: Mapping\nname: b\nprefix: /x/\nservice: b\nweight: 10\n---\napiVersion: getambassador.io/v2\nkind: Mapping\nname: c\nprefix: /x/\nservice: c\n",
    ) + &svc("b", "") + &svc("c", "");
    let c = compile(&text);
    let routes = &c.ir.virtual_hosts[0].routes;
    assert_eq!(routes.len(), 1);
    let RouteAction::Forward(f) = &routes[0].action else {
        panic!()
    };
    let ws: Vec<(String, u32)> = f
        .clusters
        .iter()
        .map(|w| (w.source.name.to_string(), w.weight))
        .collect();
    assert_eq!(
        ws,
        vec![
            ("b".to_string(), 10),
            ("a".to_string(), 45),
            ("c".to_string(), 45)
        ]
    );
}

/// Weights over 100 in total: Emissary's cumulative fractions (capped at 100 by Envoy) give
/// the members listed first all the traffic; a weight over 100 counts as 100.
#[test]
fn weights_over_100_leave_the_last_members_without_traffic() {
    let shares = |annotation: &str| -> Vec<(String, u32)> {
        let c = compile(&svc("a", annotation));
        assert!(codes(&c).contains(&"AMB302"), "{:?}", codes(&c));
        let RouteAction::Forward(f) = &c.ir.virtual_hosts[0].routes[0].action else {
            panic!()
        };
        f.clusters
            .iter()
            .map(|w| (w.source.name.to_string(), w.weight))
            .collect()
    };
    let m = |name: &str, weight: &str| {
        format!("---\napiVersion: getambassador.io/v2\nkind: Mapping\nname: {name}\nprefix: /x/\nservice: {name}\n{weight}")
    };
    let s = |n: &str, w: u32| (n.to_string(), w);
    assert_eq!(
        shares(&(m("a", "weight: 60\n") + &m("b", "weight: 60\n") + &m("c", ""))),
        [s("a", 60), s("b", 40), s("c", 0)]
    );
    assert_eq!(
        shares(&(m("a", "weight: 50\n") + &m("b", "weight: 150\n"))),
        [s("a", 50), s("b", 50)]
    );
}

#[test]
fn three_unweighted_split_33_33_34() {
    let mut ann = String::new();
    for n in ["a", "b", "c"] {
        ann.push_str(&format!("---\napiVersion: getambassador.io/v2\nkind: Mapping\nname: {n}\nprefix: /x/\nservice: {n}\n"));
    }
    let c = compile(&(svc("a", &ann) + &svc("b", "") + &svc("c", "")));
    let RouteAction::Forward(f) = &c.ir.virtual_hosts[0].routes[0].action else {
        panic!()
    };
    let ws: Vec<u32> = f.clusters.iter().map(|w| w.weight).collect();
    assert_eq!(ws, vec![33, 33, 34]);
    assert!(codes(&c).contains(&"AMB307"), "{:?}", codes(&c));
}

#[test]
fn precedence_then_prefix_length_orders_routes() {
    let ann = "---\napiVersion: getambassador.io/v2\nkind: Mapping\nname: short\nprefix: /a/\nservice: a\nprecedence: 1\n---\napiVersion: getambassador.io/v2\nkind: Mapping\nname: long\nprefix: /a/b/c/\nservice: a\n---\napiVersion: getambassador.io/v2\nkind: Mapping\nname: mid\nprefix: /a/b/\nservice: a\n";
    let c = compile(&svc("a", ann));
    let order: Vec<&str> = c.ir.virtual_hosts[0]
        .routes
        .iter()
        .map(|r| r.sources[0].name.as_str())
        .collect();
    assert_eq!(order, vec!["short", "long", "mid"]);
}

#[test]
fn v3_mapping_without_hostname_is_not_routed() {
    let ann =
        "apiVersion: getambassador.io/v3alpha1\nkind: Mapping\nname: m\nprefix: /m/\nservice: a\n";
    let c = compile(&svc("a", ann));
    assert!(c.ir.virtual_hosts[0].routes.is_empty());
    assert!(codes(&c).contains(&"AMB405"));
}

#[test]
fn invalid_service_leaves_the_mapping_out_and_keeps_the_rest() {
    let ann = "---\napiVersion: getambassador.io/v2\nkind: Mapping\nname: bad\nprefix: /bad/\nservice: a:99999\n---\napiVersion: getambassador.io/v2\nkind: Mapping\nname: good\nprefix: /good/\nservice: a\n";
    let c = compile(&svc("a", ann));
    let routes = &c.ir.virtual_hosts[0].routes;
    assert_eq!(routes.len(), 1);
    assert_eq!(routes[0].matcher.path, PathMatch::Prefix("/good/".into()));
    let d = c
        .diagnostics
        .iter()
        .find(|d| d.code.as_str() == "AMB205")
        .expect("invalid-service");
    let span = d.span.unwrap();
    // `service: a:99999` is on line 13 of the file, the value at column 16.
    assert_eq!((span.start.line, span.start.column), (13, 16));
}

#[test]
fn hostname_glob_attaches_to_matching_hosts_only() {
    let text = "---\napiVersion: getambassador.io/v3alpha1\nkind: Host\nmetadata: {name: one}\nspec: {hostname: one.example.com}\n---\napiVersion: getambassador.io/v3alpha1\nkind: Host\nmetadata: {name: two}\nspec: {hostname: two.example.com}\n---\napiVersion: getambassador.io/v3alpha1\nkind: Mapping\nmetadata: {name: m}\nspec: {prefix: /m/, service: a, hostname: '*.example.com'}\n---\napiVersion: getambassador.io/v3alpha1\nkind: Mapping\nmetadata: {name: n}\nspec: {prefix: /n/, service: a, hostname: three.example.com}\n";
    let c = compile(text);
    let counts: Vec<usize> = c.ir.virtual_hosts.iter().map(|v| v.routes.len()).collect();
    assert_eq!(counts, vec![1, 1]);
    assert!(codes(&c).contains(&"AMB404"));
}

#[test]
fn default_rewrite_is_slash() {
    let ann = "apiVersion: getambassador.io/v2\nkind: Mapping\nname: m\nprefix: /m/\nservice: a\n";
    let c = compile(&svc("a", ann));
    let RouteAction::Forward(f) = &c.ir.virtual_hosts[0].routes[0].action else {
        panic!()
    };
    assert_eq!(f.clusters[0].settings.prefix_rewrite.as_deref(), Some("/"));
    assert_eq!(f.clusters[0].settings.timeout_ms, Some(3000));
}

#[test]
fn headers_envoy_refuses_to_modify_leave_the_mapping_out() {
    let text = "apiVersion: getambassador.io/v3alpha1\nkind: Mapping\nmetadata: {name: m}\nspec:\n  hostname: '*'\n  prefix: /m/\n  service: a\n  add_request_headers: {':path': /x}\n  remove_request_headers: [host]\n";
    let c = compile(text);
    assert!(c.ir.virtual_hosts[0].routes.is_empty());
    let bad: Vec<&str> = c
        .diagnostics
        .iter()
        .filter(|d| d.code.as_str() == "AMB109")
        .map(|d| d.message.as_str())
        .collect();
    assert_eq!(bad.len(), 2, "{bad:?}");
}

#[test]
fn endpoints_carry_the_port_to_connect_to() {
    let text = "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {ports: [{port: 80, targetPort: 8080}]}\n---\napiVersion: v1\nkind: Endpoints\nmetadata: {name: a}\nsubsets: [{addresses: [{ip: 10.0.0.7}], ports: [{port: 9000}]}]\n";
    let c = compile(text);
    assert_eq!(
        crate::endpoints_of(&c.manifests, "default", "a", 80),
        vec![("10.0.0.7".to_string(), 9000)]
    );
}

#[test]
fn a_finding_in_several_virtual_hosts_is_said_once() {
    let host = |n: &str| {
        format!("---\napiVersion: getambassador.io/v3alpha1\nkind: Host\nmetadata: {{name: {n}}}\nspec: {{hostname: {n}.example.com}}\n")
    };
    let m = |n: &str, extra: &str| {
        format!("---\napiVersion: getambassador.io/v3alpha1\nkind: Mapping\nmetadata: {{name: {n}}}\nspec: {{hostname: '*', service: a, {extra}}}\n")
    };
    let text = host("one")
        + &host("two")
        + &m("all", "prefix: /api/, precedence: 5")
        + &m("v1", "prefix: /api/v1/");
    let c = compile(&text);
    assert_eq!(c.ir.virtual_hosts.len(), 2);
    assert_eq!(
        codes(&c).iter().filter(|c| **c == "AMB402").count(),
        1,
        "{:?}",
        codes(&c)
    );
}

#[test]
fn names_of_clusters_with_settings_stay_the_same_across_builds() {
    let c = compile(&svc(
        "q",
        "---\napiVersion: getambassador.io/v3alpha1\nkind: Mapping\nname: q\nhostname: \"*\"\nprefix: /q/\nservice: https://quote:8443\nconnect_timeout_ms: 5000\n---\napiVersion: getambassador.io/v3alpha1\nkind: Mapping\nname: r\nhostname: \"*\"\nprefix: /r/\nservice: https://quote:8443\nconnect_timeout_ms: 6000\n",
    ));
    let names: Vec<&str> = c.ir.clusters.keys().map(String::as_str).collect();
    // The hash covers the settings through an explicit encoding (not `Debug`): this name
    // changes only when that encoding does, which renames clusters in every Envoy.
    assert_eq!(
        names,
        [
            "cluster_quote_default_8443_tls_12f613d1",
            "cluster_quote_default_8443_tls_c536de3d"
        ],
        "{:?}",
        codes(&c)
    );
}

fn auth_service(name: &str, spec: &str) -> String {
    format!("---\napiVersion: getambassador.io/v3alpha1\nkind: AuthService\nmetadata: {{name: {name}, namespace: default}}\nspec:\n{spec}")
}

/// Emissary's merge: `path_prefix` from the first, `timeout_ms` from the last (both
/// reported), header lists united with the defaults, each service one endpoint.
#[test]
fn auth_services_merge_as_emissary_merges_them() {
    let text = auth_service(
        "a",
        "  auth_service: auth-a:3000\n  path_prefix: /first\n  timeout_ms: 1000\n  allowed_request_headers: [X-One]\n",
    ) + &auth_service(
        "b",
        "  auth_service: auth-b:3000\n  path_prefix: /second\n  timeout_ms: 3000\n  allowed_request_headers: [x-two]\n",
    );
    let c = compile(&text);
    let auth = c.ir.auth.as_ref().unwrap();
    let check = auth.check.as_ref().unwrap();
    assert_eq!(check.timeout_ms, 3000);
    let crate::ir::AuthProtocol::Http {
        path_prefix,
        allowed_request_headers,
        ..
    } = &check.protocol
    else {
        panic!("{:?}", check.protocol)
    };
    assert_eq!(path_prefix, "/first");
    assert!(allowed_request_headers.contains(&"x-one".to_owned()));
    assert!(allowed_request_headers.contains(&"x-two".to_owned()));
    assert!(allowed_request_headers.contains(&"authorization".to_owned()));
    let cluster = &c.ir.clusters[&check.cluster];
    assert_eq!(cluster.host, "auth-a.default");
    assert_eq!(
        cluster.more_endpoints,
        vec![("auth-b.default".to_owned(), 3000)]
    );
    assert_eq!(
        codes(&c).iter().filter(|c| **c == "AMB504").count(),
        2,
        "{:?}",
        c.diagnostics
    );
}

/// AuthServices that cannot share a cluster, or one that is broken, leave a filter that
/// refuses, and no auth cluster; no AMB412 for AuthService any more.
#[test]
fn broken_auth_services_close_instead_of_opening() {
    for (text, code) in [
        (
            auth_service("a", "  auth_service: auth-a:3000\n")
                + &auth_service(
                    "b",
                    "  auth_service: auth-b:50051\n  proto: grpc\n  protocol_version: v3\n",
                ),
            "AMB505",
        ),
        (
            auth_service("a", "  auth_service: auth-a:3000\n  proto: grpc\n"),
            "AMB502",
        ),
        (auth_service("a", "  path_prefix: /x\n"), "AMB501"),
        (
            auth_service("a", "  auth_service: auth-a:3000\n  tls: missing-context\n"),
            "AMB407",
        ),
    ] {
        let c = compile(&text);
        assert!(codes(&c).contains(&code), "{code}: {:?}", c.diagnostics);
        assert!(!codes(&c).contains(&"AMB412"));
        let auth = c.ir.auth.as_ref().unwrap();
        assert!(auth.check.is_none(), "{code}");
        assert!(
            !c.ir.clusters.keys().any(|k| k.contains("extauth")),
            "{code}: {:?}",
            c.ir.clusters.keys()
        );
    }
}

/// Several RateLimitServices: each reported, naming the others; none used, and routes
/// carry no rate limits.
#[test]
fn several_rate_limit_services_leave_none() {
    let rls = |name: &str| {
        format!("---\napiVersion: getambassador.io/v3alpha1\nkind: RateLimitService\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  service: rl:8081\n  protocol_version: v3\n")
    };
    let mapping = "---\napiVersion: getambassador.io/v3alpha1\nkind: Mapping\nmetadata: {name: m, namespace: default}\nspec:\n  hostname: \"*\"\n  prefix: /m/\n  service: m\n  labels:\n    ambassador:\n    - g:\n      - remote_address\n";
    let c = compile(&(rls("one") + &rls("two") + mapping));
    assert_eq!(codes(&c).iter().filter(|c| **c == "AMB523").count(), 2);
    assert!(c.ir.rate_limit.is_none());
    let RouteAction::Forward(f) = &c.ir.virtual_hosts[0].routes[0].action else {
        panic!()
    };
    assert!(f.settings.rate_limits.is_empty());
    let c = compile(&(rls("one") + mapping));
    let RouteAction::Forward(f) = &c.ir.virtual_hosts[0].routes[0].action else {
        panic!()
    };
    assert_eq!(f.settings.rate_limits.len(), 1);
}

fn observe(kind: &str, name: &str, spec: &str) -> String {
    format!(
        "---\napiVersion: getambassador.io/v3alpha1\nkind: {kind}\nmetadata: {{name: {name}, namespace: default}}\nspec:\n{spec}"
    )
}

const LOG_OK: &str = "  service: als:9001\n  driver: http\n  protocol_version: v3\n  grpc: true\n";

/// A LogService: its defaults, headers by when they are logged, a gRPC cluster; no AMB412.
#[test]
fn a_log_service_becomes_a_grpc_access_log() {
    let c = compile(&observe(
        "LogService",
        "als",
        &format!("{LOG_OK}  flush_interval_byte_size: 512\n  driver_config:\n    additional_log_headers:\n    - header_name: X-User\n      during_trailer: false\n"),
    ));
    assert!(c.diagnostics.is_empty(), "{:?}", c.diagnostics);
    let log = c.ir.access_log.as_ref().unwrap();
    assert_eq!(log.flush_interval_s, 1);
    assert_eq!(log.buffer_size_bytes, 512);
    assert_eq!(log.request_headers, ["x-user"]);
    assert_eq!(log.response_headers, ["x-user"]);
    assert!(log.response_trailers.is_empty());
    assert!(c.ir.clusters[&log.cluster].http2);
    assert!(log.cluster.starts_with("cluster_logging_als_default_9001_"));
}

/// Several usable LogServices: the first by namespace and name is used, the others are
/// reported; broken ones are reported and do not take the slot; `tcp` takes no headers.
#[test]
fn log_services_one_used_the_others_reported() {
    let c = compile(
        &(observe("LogService", "b", LOG_OK)
            + &observe("LogService", "a", LOG_OK)
            + &observe(
                "LogService",
                "0-broken",
                "  service: als:9001\n  driver: udp\n",
            )),
    );
    assert_eq!(
        codes(&c).iter().filter(|c| **c == "AMB543").count(),
        1,
        "{:?}",
        c.diagnostics
    );
    assert!(codes(&c).contains(&"AMB544"));
    assert!(codes(&c).contains(&"AMB542"));
    assert_eq!(c.ir.access_log.as_ref().unwrap().source.name.as_str(), "a");

    let c = compile(&observe(
        "LogService",
        "t",
        "  service: als:9001\n  driver: tcp\n  protocol_version: v3\n  grpc: true\n  driver_config:\n    additional_log_headers:\n    - header_name: x\n",
    ));
    assert_eq!(codes(&c), ["AMB545"]);
    let log = c.ir.access_log.as_ref().unwrap();
    assert!(log.request_headers.is_empty());

    let c = compile(&observe(
        "LogService",
        "m",
        "  driver: http\n  protocol_version: v3\n  grpc: true\n",
    ));
    assert_eq!(codes(&c), ["AMB541"]);
    assert!(c.ir.access_log.is_none());
    assert!(c.ir.clusters.is_empty());
}

/// A zipkin TracingService with Emissary's defaults; lightstep and several are errors.
#[test]
fn tracing_services_follow_emissary() {
    let c = compile(&observe(
        "TracingService",
        "t",
        "  service: zipkin:9411\n  driver: zipkin\n  tag_headers: [x-user]\n  sampling: {random: 10}\n",
    ));
    assert!(c.diagnostics.is_empty(), "{:?}", c.diagnostics);
    let t = c.ir.tracing.as_ref().unwrap();
    assert_eq!(
        t.driver,
        crate::ir::TracingDriver::Zipkin {
            collector_endpoint: "/api/v2/spans".into(),
            collector_endpoint_version: "HTTP_JSON".into(),
            trace_id_128bit: true,
            shared_span_context: None,
        }
    );
    assert_eq!(t.random_sampling, Some(10.0));
    assert_eq!(t.custom_tags.len(), 1);
    assert!(!c.ir.clusters[&t.cluster].http2);

    let c = compile(&observe(
        "TracingService",
        "t",
        "  service: ls:443\n  driver: lightstep\n",
    ));
    assert_eq!(codes(&c), ["AMB562"]);
    assert!(c.ir.tracing.is_none() && c.ir.clusters.is_empty());

    let c = compile(
        &(observe(
            "TracingService",
            "a",
            "  service: z:9411\n  driver: zipkin\n",
        ) + &observe(
            "TracingService",
            "b",
            "  service: z:9411\n  driver: zipkin\n",
        )),
    );
    assert_eq!(codes(&c), ["AMB563", "AMB563"]);
    assert!(c.ir.tracing.is_none());
}

/// Route order is applied in place: every permutation of up to six routes puts the route
/// `order[k]` at `k`.
#[test]
fn routes_are_permuted_in_place_as_ordered() {
    for n in 0..=6usize {
        // Every sequence of n digits below n, keeping the permutations.
        for code in 0..n.pow(n as u32) {
            let order: Vec<usize> = (0..n).map(|k| code / n.pow(k as u32) % n).collect();
            let mut seen = vec![false; n];
            if !order
                .iter()
                .all(|&i| !std::mem::replace(&mut seen[i], true))
            {
                continue;
            }
            let mut items: Vec<usize> = (100..100 + n).collect();
            super::order::permute(&mut items, &mut order.clone());
            let want: Vec<usize> = order.iter().map(|&i| 100 + i).collect();
            assert_eq!(items, want, "order {order:?}");
        }
    }
}

#[test]
fn merged_runs_give_the_order_of_one_sort() {
    let mut seed = 11u64;
    let keys: Vec<u32> = (0..500)
        .map(|_| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 40) as u32 % 60
        })
        .collect();
    let before = |a: &(u32, usize), b: &(u32, usize)| a.0.cmp(&b.0).then(a.1.cmp(&b.1));
    let mut whole: Vec<(u32, usize)> = keys.iter().copied().zip(0..).collect();
    whole.sort_by(before);
    let want: Vec<usize> = whole.iter().map(|&(_, i)| i).collect();
    for runs in [1, 2, 3, 5, 8] {
        let len = keys.len().div_ceil(runs);
        let sorted: Vec<Vec<(u32, usize)>> = keys
            .chunks(len)
            .enumerate()
            .map(|(r, c)| {
                let mut v: Vec<(u32, usize)> = c.iter().copied().zip(r * len..).collect();
                v.sort_by(before);
                v
            })
            .collect();
        let mut got = Vec::new();
        super::order::merge_runs(sorted, before, &mut got);
        assert_eq!(got, want, "{runs} runs");
    }
}

/// A large table is built and checked on all cores (runs of groups, runs of routes): the IR
/// and the findings are those of one thread going through it in one run.
#[test]
fn a_large_table_on_all_cores_is_the_same_as_on_one_thread() {
    let mut text = String::new();
    for i in 0..6000 {
        // Every seventh Mapping shares the next one's prefix: groups, canaries and shadowed
        // routes among them.
        let extra = match i % 5 {
            0 => "weight: 10\n".to_owned(),
            1 => "headers:\n  x-tenant: t1\n".to_owned(),
            2 => format!("prefix_regex: true\nprefix: /r{}/[a-z]+\n", i % 50),
            3 => "service: missing-service\n".to_owned(),
            _ => "timeout_ms: 5000\n".to_owned(),
        };
        let prefix = if i % 5 == 2 {
            String::new()
        } else {
            format!("prefix: /p{}/\n", if i % 7 == 0 { i + 1 } else { i })
        };
        text.push_str(&svc(
            &format!("s{i}"),
            &format!(
                "---\napiVersion: getambassador.io/v2\nkind: Mapping\nname: m{i}\n{prefix}service: s{i}\n{extra}"
            ),
        ));
    }
    text.push_str(&svc(
        "catch-all",
        "---\napiVersion: getambassador.io/v2\nkind: Mapping\nname: all\nprefix: /\nservice: catch-all\nprecedence: 10\n",
    ));
    let all_cores = compile(&text);
    crate::par::ONE_THREAD.with(|one| one.set(true));
    let one_thread = compile(&text);
    crate::par::ONE_THREAD.with(|one| one.set(false));
    assert!(all_cores.ir.virtual_hosts[0].routes.len() > 4096);
    let found = |code| all_cores.diagnostics.iter().any(|d| d.code == code);
    assert!(found(crate::diag::Code::ShadowedRoute));
    assert_eq!(all_cores.diagnostics, one_thread.diagnostics);
    assert!(
        serde_json::to_value(&all_cores.ir).unwrap()
            == serde_json::to_value(&one_thread.ir).unwrap(),
        "the IR differs"
    );
}

/// A Host's certificate is read once for the checks of its Secret: expired when the caller
/// gives a time after its `notAfter`, unusable when its PEM block is no X.509 certificate,
/// with the same findings however many Hosts (each with its Secret) are read on all cores.
#[test]
fn certificates_are_checked_against_the_time_given_and_their_names() {
    let golden = include_str!("../../test_data/golden/12-tls-secrets-and-checks.yaml");
    let block = |from: &str, to: &str| {
        let start = golden.find(from).expect("the block") + from.len();
        let end = golden[start..].find(to).expect("its end") + start;
        golden[start..end].to_string()
    };
    let cert = block("  tls.crt: |\n", "  tls.key");
    let key = block("  tls.key: |\n", "\n---\n") + "\n";
    let garbled = "    -----BEGIN CERTIFICATE-----\n    bm90IGEgY2VydGlmaWNhdGU=\n    -----END CERTIFICATE-----\n";
    let host = |i: usize, secret: &str| {
        format!(
            "---\napiVersion: getambassador.io/v3alpha1\nkind: Host\nmetadata: {{name: h{i}, namespace: default}}\nspec:\n  hostname: shop{i}.example.com\n  tlsSecret: {{name: {secret}}}\n---\napiVersion: v1\nkind: Secret\nmetadata: {{name: {secret}, namespace: default}}\ntype: kubernetes.io/tls\nstringData:\n  tls.key: |\n{key}  tls.crt: |\n{}",
            if secret == "garbled" { garbled } else { &cert },
        )
    };
    let compile_at = |n: usize, now: Option<i64>| {
        let mut text: String = (0..n).map(|i| host(i, &format!("cert-{i}"))).collect();
        text.push_str(&host(n, "garbled"));
        let mut sources = crate::source::Sources::new();
        sources.add("t.yaml", text);
        let opts = crate::lower::LowerOptions {
            now,
            secrets_known: true,
            ..Default::default()
        };
        let c = crate::compile(&sources, &crate::front::Options::default(), &opts);
        let mut found: Vec<String> = c
            .diagnostics
            .iter()
            .filter(|d| d.code.as_str().starts_with("AMB4"))
            .map(|d| format!("{} {}", d.code.as_str(), d.message))
            .collect();
        found.sort();
        found
    };
    // 2036-11-30, a day after the certificate's `notAfter`.
    let after = Some(2_111_616_000);
    for n in [1, 100] {
        let found = compile_at(n, after);
        assert!(
            found.iter().any(|f| f.starts_with("AMB422 the certificate in Secret `default/cert-0` of Host `h0` expired on Nov 29 15:26:38 2036")),
            "{found:?}"
        );
        assert!(
            found.iter().any(|f| f.contains("Secret `default/garbled`")
                && f.contains("does not parse as an X.509 certificate")),
            "{found:?}"
        );
        assert!(found.iter().any(|f| f.starts_with("AMB423")), "{found:?}");
        let before = compile_at(n, Some(2_000_000_000));
        assert!(
            !before.iter().any(|f| f.starts_with("AMB422")),
            "{before:?}"
        );
    }
}

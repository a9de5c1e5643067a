use super::*;

fn vhosts(domains: &[&[&str]]) -> Vec<VirtualHost> {
    domains
        .iter()
        .enumerate()
        .map(|(i, d)| VirtualHost {
            name: format!("vh{i}"),
            domains: d.iter().map(|s| s.to_string()).collect(),
            routes: Vec::new(),
        })
        .collect()
}

#[test]
fn virtual_hosts_are_chosen_by_envoy_s_domain_order() {
    let hosts = vhosts(&[
        &["*"],
        &["api.example.com"],
        &["*.example.com"],
        &["*.b.example.com"],
        &["api.*"],
        &["api.ex*"],
    ]);
    let pick = |h: &str| select_virtual_host(&hosts, h).map(|(i, _)| i);
    assert_eq!(pick("API.example.com"), Some(1), "exact, any case");
    assert_eq!(pick("x.b.example.com"), Some(3), "longest suffix");
    assert_eq!(pick("x.example.com"), Some(2));
    assert_eq!(pick("api.exotic.org"), Some(5), "longest prefix");
    assert_eq!(pick("api.other.org"), Some(4));
    assert_eq!(
        pick("example.com"),
        Some(0),
        "a wildcard stands for one character or more"
    );
    assert_eq!(
        pick("api.example.com:8080"),
        Some(5),
        "the port is part of the value"
    );
    assert_eq!(select_virtual_host(&hosts[1..2], "other"), None);
}

fn chain(name: &str, names: &[&str], transport: &str, tls: bool) -> Chain {
    Chain {
        name: name.to_owned(),
        server_names: names.iter().map(|s| s.to_string()).collect(),
        transport_protocol: transport.to_owned(),
        tls: tls.then(|| Termination {
            certificates: Vec::new(),
            require_client_certificate: false,
        }),
        serves: Serves::Other {
            filters: Vec::new(),
        },
    }
}

#[test]
fn filter_chains_are_chosen_by_sni_then_transport() {
    let l = Listener {
        name: "l".into(),
        address: "0.0.0.0".into(),
        port: 8443,
        tls_inspector: true,
        proxy_protocol: false,
        chains: vec![
            chain("exact", &["a.example.com"], "tls", true),
            chain("wild", &["*.example.com"], "tls", true),
            chain("clear", &[], "", false),
        ],
    };
    let pick = |tls, sni| {
        l.chain_for(tls, sni)
            .map(|(i, p)| (l.chains[i].name.clone(), p))
    };
    assert_eq!(
        pick(true, Some("A.example.com")),
        Some(("exact".into(), ChainPick::ExactName("a.example.com".into())))
    );
    assert_eq!(
        pick(true, Some("x.y.example.com")),
        Some((
            "wild".into(),
            ChainPick::WildcardName("*.example.com".into())
        ))
    );
    assert_eq!(
        pick(true, Some("other.org")),
        Some(("clear".into(), ChainPick::AnyName))
    );
    assert_eq!(
        pick(false, None),
        Some(("clear".into(), ChainPick::AnyName))
    );
    let tls_only = Listener {
        chains: vec![chain("exact", &["a.example.com"], "tls", true)],
        ..l.clone()
    };
    assert_eq!(tls_only.chain_for(false, None), None);
}

#[test]
fn normalize_path_resolves_dot_segments_and_unreserved_escapes() {
    for (input, want) in [
        ("/a/./b", "/a/b"),
        ("/a/../b", "/b"),
        ("/../a", "/a"),
        ("/a/b/..", "/a/"),
        ("/a/%2e%2E/b", "/b"),
        // Escapes that stay are kept as written, and a backslash is a separator: what Envoy
        // 1.40 did in the agreement test (the tracer uppercased `%2f` and kept `\`).
        ("/%61%7e%2f", "/a~%2f"),
        ("/a%2fb", "/a%2fb"),
        ("/a%2Fb%5c", "/a%2Fb%5c"),
        ("/a\\b", "/a/b"),
        ("/a/b\\..\\c", "/a/c"),
        ("/{q}|^`", "/%7Bq%7D%7C%5E%60"),
        ("/a\"<>b", "/a%22%3C%3Eb"),
        ("/!$&'()*+,;=:@[]", "/!$&'()*+,;=:@[]"),
        ("/\u{e9}", "/%C3%A9"),
        ("/a//b", "/a//b"),
        ("/a/../b?x=/../y", "/b?x=/../y"),
        ("/%zz", "/%zz"),
        ("/", "/"),
    ] {
        assert_eq!(normalize_path(input), want, "{input}");
    }
}

fn routed(headers: &[(&str, &str)], path: &str) -> Routed<'static> {
    Routed {
        path: path.to_owned(),
        authority: "h",
        method: "GET",
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        query: query_parameters(path),
    }
}

#[test]
fn header_conditions_follow_envoy_for_absent_and_repeated_headers() {
    // Found by `tests/tests/agreement.rs`: Envoy 1.40 tests each line of a repeated header
    // alone and passes when one does; the tracer tested the values joined by `,`.
    let exact = HeaderCond {
        name: "x-a".into(),
        test: ValueTest::Exact {
            value: "1".into(),
            ignore_case: false,
        },
        invert: false,
    };
    assert!(exact.matches(&routed(&[("x-a", "1"), ("X-A", "2")], "/")));
    assert!(exact.matches(&routed(&[("x-a", "2"), ("x-b", "0"), ("x-a", "1")], "/")));
    assert!(
        !exact.matches(&routed(&[("x-a", "1,2")], "/")),
        "one line is never split at commas"
    );
    assert!(!exact.matches(&routed(&[], "/")));
    let regex = HeaderCond {
        name: "x-user".into(),
        test: ValueTest::Regex {
            pattern: Pattern::new("^[0-9]+$"),
        },
        invert: false,
    };
    assert!(regex.matches(&routed(&[("x-user", "bob"), ("x-user", "42")], "/")));
    assert!(!regex.matches(&routed(&[("x-user", "42,43")], "/")));
    // An inline header's lines are joined by the codec.
    let xfp = HeaderCond {
        name: "x-forwarded-proto".into(),
        ..exact.clone()
    };
    assert!(!xfp.matches(&routed(
        &[("x-forwarded-proto", "1"), ("x-forwarded-proto", "2")],
        "/"
    )));
    let absent = HeaderCond {
        name: "x-a".into(),
        test: ValueTest::Present { present: false },
        invert: false,
    };
    assert!(absent.matches(&routed(&[], "/")));
    let inverted = HeaderCond {
        invert: true,
        ..exact.clone()
    };
    assert!(
        !inverted.matches(&routed(&[], "/")),
        "an absent header fails an inverted string match"
    );
    assert!(inverted.matches(&routed(&[("x-a", "3")], "/")));
}

#[test]
fn query_parameters_are_not_decoded_and_the_first_value_counts() {
    let q = QueryCond {
        name: "a".into(),
        test: ValueTest::Exact {
            value: "1".into(),
            ignore_case: false,
        },
    };
    assert!(q.matches(&routed(&[], "/?a=1&a=2")));
    assert!(!q.matches(&routed(&[], "/?a=2&a=1")));
    // Found by `tests/tests/agreement.rs`: Envoy 1.40 compares the value as written, so
    // `%31` is not `1` (the tracer decoded it and predicted a match Envoy did not make).
    assert!(!q.matches(&routed(&[], "/?a=%31")));
    assert!(!q.matches(&routed(&[], "/?%61=1")));
    assert_eq!(
        query_parameters("/p?x&y=&z=3#f"),
        vec![
            ("x".to_owned(), String::new()),
            ("y".to_owned(), String::new()),
            ("z".to_owned(), "3".to_owned()),
        ]
    );
}

#[test]
fn x_forwarded_proto_is_the_connection_s_unless_a_trusted_hop_sent_one() {
    let hcm = |hops| Hcm {
        route_config: "r".into(),
        use_remote_address: true,
        xff_num_trusted_hops: hops,
        normalize_path: true,
        merge_slashes: false,
        http_filters: Vec::new(),
    };
    let req = Request {
        tls: false,
        path: "/".into(),
        headers: vec![("X-Forwarded-Proto".into(), "https".into())],
        ..Default::default()
    };
    assert_eq!(
        hcm(0).prepare(&req).header("x-forwarded-proto").as_deref(),
        Some("http")
    );
    assert_eq!(
        hcm(1).prepare(&req).header("x-forwarded-proto").as_deref(),
        Some("https")
    );
    let bare = Request {
        headers: Vec::new(),
        ..req
    };
    assert_eq!(
        hcm(1).prepare(&bare).header("x-forwarded-proto").as_deref(),
        Some("http")
    );
}

#[test]
fn path_conditions_ignore_the_query_and_honour_case() {
    let route = |path: PathCond, case_sensitive| Route {
        name: "r".into(),
        path,
        case_sensitive,
        headers: Vec::new(),
        query: Vec::new(),
        fraction_ppm: None,
        action: Action::Direct { status: 200 },
    };
    assert_eq!(
        route(PathCond::Prefix("/A".into()), false).path_matches("/a/b?x"),
        Some(2)
    );
    assert_eq!(
        route(PathCond::Prefix("/A".into()), true).path_matches("/a/b"),
        None
    );
    assert_eq!(
        route(PathCond::Exact("/a".into()), true).path_matches("/a?x=1"),
        Some(2)
    );
    assert_eq!(
        route(PathCond::Prefix("/a?".into()), true).path_matches("/a?x"),
        None
    );
    let re = route(PathCond::Regex(Pattern::new("/a/[0-9]+")), true);
    assert_eq!(re.path_matches("/a/12?q"), Some(5));
    assert_eq!(re.path_matches("/a/12x"), None, "the whole path must match");
}

#[test]
fn regexes_have_envoy_s_meaning_bytes_and_whole_values() {
    // Envoy's RE2 reads bytes: `.` is one byte of a UTF-8 character.
    assert!(!Pattern::new("/a.c").full_match("/aéc"));
    assert!(Pattern::new("/a..c").full_match("/aéc"));
    // `\Q...\E` is literal text in RE2 (Rust's `regex` refuses it).
    assert!(Pattern::new(r"/\Q.*\E").full_match("/.*"));
    assert!(!Pattern::new(r"/\Q.*\E").full_match("/ab"));
    // A pattern RE2 refuses matches nothing.
    assert!(!Pattern::new("(?=x)").full_match("x"));
    assert_eq!(
        Pattern::new("/u/([0-9]+)").replace_all("/u/42/u/7", r"/user/\1"),
        "/user/42/user/7"
    );
}

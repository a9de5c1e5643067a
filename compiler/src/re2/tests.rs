use super::*;

/// One line of `test_data/re2/corpus.txt`.
struct Case<'a> {
    line: usize,
    accepted: bool,
    /// Envoy's `ProgramSize()`, when the pattern parsed.
    size: Option<u32>,
    pattern: &'a str,
}

fn corpus() -> Vec<Case<'static>> {
    let text = include_str!("../../test_data/re2/corpus.txt");
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.starts_with('#') && !l.is_empty())
        .map(|(i, l)| {
            let mut cols = l.splitn(3, '\t');
            let verdict = cols.next().expect("verdict");
            let detail = cols.next().expect("size or error");
            let pattern = cols.next().expect("pattern");
            Case {
                line: i + 1,
                accepted: verdict == "accepted",
                size: detail
                    .strip_prefix("size ")
                    .map(|n| n.parse().expect("a size")),
                pattern,
            }
        })
        .collect()
}

#[test]
fn corpus_agrees_with_recorded_envoy_verdicts_and_sizes() {
    let cases = corpus();
    assert!(cases.len() >= 300, "the corpus shrank to {}", cases.len());
    let mut wrong = Vec::new();
    for case in &cases {
        let ours = check(case.pattern);
        let size = program_size(case.pattern).ok().flatten();
        let verdict_ok = ours.is_ok() == case.accepted;
        let size_ok = case.size.is_none() || size == case.size;
        if !verdict_ok || !size_ok {
            wrong.push(format!(
                "line {}: `{}`: Envoy {} {:?}, we {:?} (size {:?})",
                case.line,
                case.pattern,
                if case.accepted { "accepted" } else { "refused" },
                case.size,
                ours.map(|r| r.program_size),
                size
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} disagreements:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

/// The lists a thread keeps from one program to the next change no size: the corpus
/// measured on one thread, a large program among the small ones, is the corpus measured
/// with each pattern on a thread of its own.
#[test]
fn sizes_do_not_depend_on_the_patterns_measured_before() {
    let large = "[a-c][a-z0-9]{1000}x[a-z0-9]{1000}";
    let mut patterns: Vec<&str> = corpus().iter().map(|c| c.pattern).collect();
    patterns.insert(patterns.len() / 2, large);
    let in_turn: Vec<_> = patterns.iter().map(|p| program_size(p)).collect();
    let fresh: Vec<_> = std::thread::scope(|s| {
        patterns
            .iter()
            .map(|p| s.spawn(move || program_size(p)).join().expect("no panic"))
            .collect()
    });
    assert_eq!(in_turn, fresh);
    // The large program's lists are not kept; a small one's are.
    std::thread::scope(|s| {
        s.spawn(|| {
            assert!(program_size(large).is_ok());
            assert_eq!(compile::kept_instructions(), 0);
            assert!(program_size("/api/[a-z]+/.*").is_ok());
            assert!(compile::kept_instructions() > 0);
        });
    });
}

/// Taking a run of plain bytes at once gives the tree (and notes, and errors) that taking
/// them one by one does: the corpus, and patterns put together from pieces around runs.
#[test]
fn plain_runs_parse_as_bytes_one_by_one() {
    let mut patterns: Vec<String> = corpus().iter().map(|c| c.pattern.to_owned()).collect();
    const PIECES: &[&str] = &[
        "abc", "/", "x", "y*", "[a-z]+", "(?i)", "(?i:ab)", "(?-i)", "de", "|", "(", ")", ".",
        "\\.", "\\d", "{2}", "{,", "}", "\u{e9}", "\\Qa.", "b\\E", "?", "a{2,3}", "-", "^", "$",
        "(?U)", "z+?", "(?:", "[^/]", "]",
    ];
    let mut state = 7u32;
    let mut next = |n: usize| {
        state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        (state >> 16) as usize % n
    };
    for _ in 0..5000 {
        let len = 1 + next(8);
        patterns.push((0..len).map(|_| PIECES[next(PIECES.len())]).collect());
    }
    let mut parsed = 0;
    for p in &patterns {
        let runs = parse::parse(p.as_bytes());
        parsed += usize::from(runs.is_ok());
        assert_eq!(
            format!("{runs:?}"),
            format!("{:?}", parse::parse_bytewise(p.as_bytes())),
            "`{p}`"
        );
    }
    assert!(parsed > 2000, "{parsed} parsed");
}

#[test]
fn size_limit_examples_from_the_reference() {
    assert_eq!(
        check("[a-z]{100}"),
        Err(Re2Error::TooLarge {
            size: 104,
            limit: 100
        })
    );
    assert_eq!(check("[a-z]{50}").map(|r| r.program_size), Ok(54));
    assert_eq!(
        check_with_limit("[a-z]{50}", 50).map_err(|e| e.to_string()),
        Err("RE2 program size 54 is over Envoy's limit of 50".to_string())
    );
}

fn unsupported_construct(pattern: &str) -> (usize, String) {
    match check(pattern) {
        Err(Re2Error::Unsupported {
            offset, construct, ..
        }) => (offset, construct),
        other => panic!("`{pattern}`: expected unsupported, got {other:?}"),
    }
}

#[test]
fn constructs_other_engines_have_are_unsupported() {
    for (pattern, offset, construct) in [
        ("a(?=b)", 1, "(?="),
        ("a(?!b)", 1, "(?!"),
        ("(?<=a)b", 0, "(?<="),
        ("(?<!a)b", 0, "(?<!"),
        ("(a)\\1", 3, "\\1"),
        ("(?P<x>a)(?P=x)", 8, "(?P"),
        ("(?>a)", 0, "(?>"),
        ("(?(1)a|b)", 0, "(?("),
        ("a\\Z", 1, "\\Z"),
        ("\\Ga", 0, "\\G"),
        ("a\\Kb", 1, "\\K"),
        ("a++", 1, "++"),
        ("a*+", 1, "*+"),
        ("(?x)a", 0, "(?x"),
        ("(?u)a", 0, "(?u"),
        ("\\p{Letter}", 0, "\\p{Letter}"),
        ("\\p{Script=Greek}", 0, "\\p{Script=Greek}"),
        ("\\u0041", 0, "\\u"),
        ("\\x{100}", 0, "\\x"),
        ("a{1001}", 1, "{1001}"),
        ("(?:a{10}){101}", 9, "{101}"),
    ] {
        assert_eq!(
            unsupported_construct(pattern),
            (offset, construct.to_string()),
            "{pattern}"
        );
    }
}

#[test]
fn syntax_errors_point_at_the_problem() {
    for (pattern, offset) in [
        ("a**", 1),
        ("[a", 0),
        ("a)", 1),
        ("\\q", 0),
        ("*", 0),
        ("a\\", 1),
    ] {
        match check(pattern) {
            Err(Re2Error::Syntax { offset: got, .. }) => assert_eq!(got, offset, "{pattern}"),
            other => panic!("`{pattern}`: expected a syntax error, got {other:?}"),
        }
    }
}

#[test]
fn accepts_what_rust_regex_rejects() {
    for pattern in ["\\C", "\\Qa.b\\E", "\\012", "x{,3}", "a{01}", "\\_"] {
        assert!(check(pattern).is_ok(), "{pattern}");
    }
}

fn note_offsets(pattern: &str) -> Vec<(usize, String)> {
    check(pattern)
        .expect("accepted")
        .notes
        .into_iter()
        .map(|n| (n.offset, n.message))
        .collect()
}

#[test]
fn notes_for_constructs_rust_reads_differently() {
    let has = |pattern: &str, offset: usize, needle: &str| {
        let notes = note_offsets(pattern);
        assert!(
            notes
                .iter()
                .any(|(o, m)| *o == offset && m.contains(needle)),
            "`{pattern}`: no note at {offset} containing `{needle}` in {notes:?}"
        );
    };
    has("/orders/\\d+", 8, "ASCII-only");
    has("\\w+", 0, "ASCII-only");
    has("\\bword", 0, "ASCII word boundary");
    has("\\<word\\>", 0, "literal `<`");
    has("[a-z&&[^aeiou]]", 4, "no class set operations");
    has("x{,3}", 1, "literal text");
    has("café", 3, "Latin-1");
    has("\\p{Greek}", 0, "Latin-1 members");
    assert!(note_offsets("^/api/v[0-9]+/.*").is_empty());
}

#[test]
fn messages_are_lowercase_without_trailing_period() {
    for case in corpus() {
        let messages: Vec<String> = match check(case.pattern) {
            Ok(r) => r.notes.into_iter().map(|n| n.message).collect(),
            Err(Re2Error::Unsupported { message, .. } | Re2Error::Syntax { message, .. }) => {
                vec![message]
            }
            Err(Re2Error::TooLarge { .. }) => Vec::new(),
        };
        for m in messages {
            let first = m.chars().next().expect("non-empty");
            assert!(
                !first.is_uppercase() && !m.ends_with('.'),
                "`{}`: {m}",
                case.pattern
            );
        }
    }
}

/// A small xorshift generator, so the test needs no dependency and is reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn random_patterns_never_panic() {
    const PIECES: &[&str] = &[
        "a",
        "b",
        "z",
        "A",
        "0",
        "9",
        "_",
        "-",
        "/",
        ".",
        "*",
        "+",
        "?",
        "|",
        "(",
        ")",
        "(?:",
        "(?i)",
        "(?s:",
        "(?P<n>",
        "(?=",
        "[",
        "]",
        "[^",
        "^",
        "$",
        "{",
        "}",
        "{2}",
        "{1,3}",
        "{,4}",
        "{1000}",
        ",",
        "\\",
        "\\d",
        "\\w",
        "\\s",
        "\\b",
        "\\B",
        "\\pL",
        "\\p{",
        "\\P{Lu}",
        "\\p{Greek}",
        "\\x",
        "\\x{",
        "\\xff",
        "\\0",
        "\\7",
        "\\Q",
        "\\E",
        "\\C",
        "\\z",
        "\\A",
        "[:alpha:]",
        "[[:",
        ":]",
        "&&",
        "é",
        "ü",
        "😀",
        "\t",
        "\n",
        " ",
        "\u{0}",
    ];
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let (mut accepted, mut refused) = (0, 0);
    for _ in 0..20_000 {
        let len = rng.below(24);
        let mut pattern = String::new();
        for _ in 0..len {
            if rng.below(8) == 0 {
                // Any Unicode scalar, including ones no piece lists.
                let c = char::from_u32((rng.next() % 0x11_0000) as u32).unwrap_or('\u{FFFD}');
                pattern.push(c);
            } else {
                pattern.push_str(PIECES[rng.below(PIECES.len())]);
            }
        }
        match check(&pattern) {
            Ok(r) => {
                accepted += 1;
                assert!(r.program_size >= 1 && r.program_size <= DEFAULT_MAX_PROGRAM_SIZE);
                for n in &r.notes {
                    assert!(n.offset < pattern.len().max(1), "`{pattern}`: {n:?}");
                }
            }
            Err(Re2Error::Syntax { offset, .. } | Re2Error::Unsupported { offset, .. }) => {
                refused += 1;
                assert!(offset <= pattern.len(), "`{pattern}`: offset {offset}");
            }
            Err(Re2Error::TooLarge { size, limit }) => {
                refused += 1;
                assert!(size > limit);
            }
        }
    }
    // Both outcomes must occur, or the generator tests nothing.
    assert!(
        accepted > 1000 && refused > 1000,
        "{accepted} accepted, {refused} refused"
    );
}

#[test]
fn deep_nesting_is_handled_without_recursion_overflow() {
    let deep_group = format!("{}a{}", "(?:".repeat(5000), ")".repeat(5000));
    assert_eq!(check(&deep_group).map(|r| r.program_size), Ok(5));
    let deep_capture = format!("{}a{}", "(".repeat(5000), ")".repeat(5000));
    assert!(matches!(
        check(&deep_capture),
        Err(Re2Error::TooLarge { .. })
    ));
    let long = "a{1000}".repeat(200);
    assert!(matches!(check(&long), Err(Re2Error::TooLarge { .. })));
}

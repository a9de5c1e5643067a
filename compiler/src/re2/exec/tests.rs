use super::*;

fn re(pattern: &str) -> Regex {
    Regex::new_with_limit(pattern, 100_000).unwrap_or_else(|e| panic!("{pattern}: {e}"))
}

fn full(pattern: &str, subject: &[u8]) -> bool {
    re(pattern).is_full_match(subject)
}

/// `\xHH` back to bytes (the file's escaping of subjects and results).
fn unescape(text: &str) -> Vec<u8> {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && b.get(i + 1) == Some(&b'x') {
            let hex = std::str::from_utf8(&b[i + 2..i + 4]).expect("two hex digits");
            out.push(u8::from_str_radix(hex, 16).expect("hex"));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// Checks the matcher against recorded Envoy results (the format of `matches.txt`):
/// returns the numbers of match and rewrite lines, and the lines we disagree with.
fn check_recorded(text: &str) -> (usize, usize, Vec<String>) {
    let mut wrong = Vec::new();
    let (mut matches, mut rewrites) = (0, 0);
    for (n, line) in text.lines().enumerate() {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let cols: Vec<&str> = line.split('\t').collect();
        let regex = re(cols[2]);
        let subject = unescape(cols[3]);
        match cols[0] {
            "path" | "header" => {
                matches += 1;
                let want = match cols[1] {
                    "match" => true,
                    "nomatch" => false,
                    v => panic!("line {}: verdict {v}", n + 1),
                };
                if regex.is_full_match(&subject) != want {
                    wrong.push(format!("line {}: {line}", n + 1));
                }
            }
            "rewrite" => {
                rewrites += 1;
                let mut got = regex.replace_all(&subject, cols[4]);
                // The recording reads the result from a redirect's `location`: Envoy keeps
                // the original path when the rewritten one is empty, and puts a `/` before
                // one that does not start with it.
                if got.is_empty() {
                    got = subject.clone();
                } else if got.first() != Some(&b'/') {
                    got.insert(0, b'/');
                }
                if got != unescape(cols[1]) {
                    let got = String::from_utf8_lossy(&got).into_owned();
                    wrong.push(format!("line {}: {line} (ours: {got})", n + 1));
                }
            }
            k => panic!("line {}: kind {k}", n + 1),
        }
    }
    (matches, rewrites, wrong)
}

#[test]
fn agrees_with_every_verdict_recorded_from_envoy() {
    let (matches, rewrites, wrong) =
        check_recorded(include_str!("../../../test_data/re2/matches.txt"));
    assert!(
        matches >= 300 && rewrites >= 20,
        "the file shrank: {matches} / {rewrites}"
    );
    assert!(
        wrong.is_empty(),
        "disagreements with Envoy:\n{}",
        wrong.join("\n")
    );
}

/// Differential runs: `record_matches.py --random N SEED` records random patterns and
/// subjects from Envoy; `RE2_MATCHES=file1:file2 cargo test -p ambassador-compiler re2::exec`
/// checks the matcher against them.
#[test]
fn agrees_with_extra_recordings_named_by_re2_matches() {
    let Ok(files) = std::env::var("RE2_MATCHES") else {
        return;
    };
    let mut wrong = Vec::new();
    for file in files.split(':').filter(|f| !f.is_empty()) {
        let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{file}: {e}"));
        let (_, _, w) = check_recorded(&text);
        wrong.extend(w.into_iter().map(|w| format!("{file}: {w}")));
    }
    assert!(
        wrong.is_empty(),
        "{} disagreements with Envoy:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

#[test]
fn full_match_means_the_whole_subject() {
    assert!(full("/foo", b"/foo"));
    assert!(!full("/foo", b"/foo/"));
    assert!(!full("/foo", b"x/foo"));
    // Leftmost-first would pick `a` first; a full match exists all the same.
    assert!(full("a|ab", b"ab"));
    assert!(full("(a|ab)(c|bcd)(d*)", b"abcd"));
    assert!(full("a*?", b"aaa"));
    assert!(full("", b""));
    assert!(!full("", b"a"));
}

#[test]
fn dot_is_one_byte_and_never_a_newline() {
    // Envoy leaves `dot_nl` off.
    assert!(!full("a.b", b"a\nb"));
    assert!(full("(?s)a.b", b"a\nb"));
    assert!(full("a.b", b"a\rb"));
    assert!(!full("a.b", "aéb".as_bytes()));
    assert!(full("a..b", "aéb".as_bytes()));
    assert!(full("a.b", b"a\xffb"));
    assert!(full(r"a\Cb", b"a\nb"));
    assert!(full("[^a]", b"\n"));
    assert!(!full(".*", b"a\nb"));
}

#[test]
fn anchors_and_multi_line() {
    assert!(!full("a$", b"a\n"));
    assert!(full("(?m)a$\n", b"a\n"));
    assert!(full("(?m)a\n^b", b"a\nb"));
    assert!(!full("a\n^b", b"a\nb"));
    assert!(full(r"\Aa\z", b"a"));
    assert!(full("^$", b""));
}

#[test]
fn classes_are_ascii_and_latin1() {
    assert!(!full(r"\d", "١".as_bytes()));
    assert!(!full(r"\w", b"\xe9"));
    assert!(full(r"\W", b"\xe9"));
    assert!(!full(r"\s", b"\x0b"));
    assert!(full(r"\s", b"\x0c"));
    assert!(full(r"\pL", b"\xe9"));
    assert!(!full(r"\p{Greek}", "λ".as_bytes()));
    assert!(!full(r"\p{Greek}", b"\xbb"));
    assert!(full(r"[\x80-\xff]+", "é€".as_bytes()));
    assert!(full("[é]", b"\xc3"));
    assert!(!full("[é]", "é".as_bytes()));
}

#[test]
fn word_boundaries_are_ascii() {
    assert!(full(r".*\bfoo\b.*", b"a foo b"));
    assert!(!full(r".*\bfoo\b.*", b"afoo"));
    // `\xe9` is not a word byte, so there is a boundary before `foo`.
    assert!(full(r".*\bfoo", b"\xe9foo"));
    assert!(!full(r"\b", b""));
    assert!(full(r"\B", b""));
}

#[test]
fn case_folding_is_ascii_only() {
    assert!(full("(?i)abc", b"ABC"));
    assert!(full("(?i)a(?-i)b", b"Ab"));
    assert!(!full("(?i)a(?-i)b", b"AB"));
    assert!(!full("(?i)k", "\u{212a}".as_bytes()));
    assert!(!full(r"(?i)\xc9", b"\xe9"));
    assert!(full("(?i)[a-z]+", b"XyZ"));
}

#[test]
fn constructs_rust_reads_differently() {
    assert!(full(r"\Q.*\E", b".*"));
    assert!(!full(r"\Q.*\E", b"ab"));
    assert!(full(r"\Qa+", b"a+"));
    assert!(full(r"\141\142", b"ab"));
    assert!(full(r"\0", b"\0"));
    assert!(full(r"\01", b"\x01"));
    assert!(full("x{,3}", b"x{,3}"));
    assert!(!full("x{,3}", b"xxx"));
    assert!(full(r"\<a\>", b"<a>"));
    assert!(full("[a-z&&[^aeiou]]", b"b]"));
    assert!(full("[a-z&&[^aeiou]]", b"&]"));
    assert!(!full("[a-z&&[^aeiou]]", b"b"));
    assert!(full("[[a]]", b"[]"));
    assert!(full("(?U)a+", b"aaa"));
    assert!(full(r"\x{ff}", b"\xff"));
    assert!(full("a{0}b", b"b"));
    assert!(full("(a*)*", b""));
}

#[test]
fn refuses_what_envoy_refuses() {
    for p in [
        "a**",
        "a*+",
        "a{2}{3}",
        r"\8",
        r"\1",
        "(?=a)",
        r"\x{100}",
        r"\p{Letter}",
        "(?x)a",
    ] {
        assert!(Regex::new(p).is_err(), "{p}");
    }
    assert!(matches!(
        Regex::new("[a-z]{100}"),
        Err(Re2Error::TooLarge { .. })
    ));
    assert!(Regex::new("[a-z]{50}").is_ok());
    assert!(Regex::new_with_limit("[a-z]{100}", 1000).is_ok());
}

#[test]
fn find_at_sees_what_comes_before() {
    let r = re(r"\bb");
    assert_eq!(r.find_at(b"ab b", 0), Some((3, 4)));
    assert_eq!(r.find_at(b"ab b", 1), Some((3, 4)));
    assert_eq!(re("^a").find_at(b"aa", 1), None);
    assert_eq!(re("a+?").find_at(b"baa", 0), Some((1, 2)));
}

#[test]
fn global_replace_rules() {
    let r = |p: &str, s: &str, sub: &str| {
        String::from_utf8(re(p).replace_all(s.as_bytes(), sub)).expect("utf-8")
    };
    assert_eq!(r("a*", "baaac", "-"), "-b-c-");
    assert_eq!(r("", "ab", "-"), "-a-b-");
    assert_eq!(r("(a)|b", "ab", "[\\1]"), "[a][]");
    assert_eq!(r("a|", "aab", "-"), "--b-");
    // `\\` is a backslash; a group the regex lacks leaves the subject alone.
    assert_eq!(r("a", "xa", "\\\\"), "x\\");
    assert_eq!(r("(a)", "xa", "\\2"), "xa");
    // An invalid escape ends that substitution's text.
    assert_eq!(r("a", "xax", "<\\q>"), "x<x");
    assert_eq!(r("z", "abc", "-"), "abc");
    // An empty match after a match is skipped one byte at a time, even inside a
    // UTF-8 character (Latin-1).
    assert_eq!(re("x*").replace_all("é".as_bytes(), "-"), b"-\xc3-\xa9-");
}

#[test]
fn every_pattern_of_the_corpus_that_parses_compiles() {
    // The rendered pattern must be accepted by the `regex` crate whenever RE2 parses the
    // pattern, or `Regex::new` would refuse what Envoy accepts.
    let text = include_str!("../../../test_data/re2/corpus.txt");
    let mut failed = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let pattern = line.splitn(3, '\t').nth(2).expect("pattern");
        let parses = super::super::program_size(pattern).is_ok();
        let compiles = Regex::without_size_limit(pattern);
        if parses != compiles.is_ok() {
            failed.push(format!("{pattern}: {:?}", compiles.err()));
        }
        if super::super::check(pattern).is_ok() && Regex::new(pattern).is_err() {
            failed.push(format!(
                "{pattern}: accepted by check, refused by Regex::new"
            ));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

use super::*;
use crate::re2::Regex;

fn texts_of(pattern: &str) -> Option<Vec<String>> {
    literal_prefixes(pattern)
        .unwrap_or_else(|e| panic!("{pattern}: {e}"))
        .map(|texts| {
            texts
                .into_iter()
                .map(|t| String::from_utf8(t).expect("ASCII"))
                .collect()
        })
}

fn some(texts: &[&str]) -> Option<Vec<String>> {
    Some(texts.iter().map(|t| t.to_string()).collect())
}

#[test]
fn texts_of_route_regexes() {
    assert_eq!(texts_of("/api/svc-0/[a-z0-9]+/.*"), some(&["/api/svc-0/"]));
    assert_eq!(texts_of("/(foo|bar)/x"), some(&["/bar/x", "/foo/x"]));
    assert_eq!(texts_of("/a(b)?c"), some(&["/abc", "/ac"]));
    assert_eq!(texts_of("/a*b"), some(&["/a", "/b"]));
    assert_eq!(texts_of("[ab]x"), some(&["ax", "bx"]));
    assert_eq!(texts_of("/x[a-z]"), some(&["/x"]));
    assert_eq!(texts_of("/[^/]+"), some(&["/"]));
    assert_eq!(texts_of("/v{2,}"), some(&["/v"]));
    assert_eq!(texts_of("^/x$"), some(&["/x"]));
    // `(?i)` letters match both cases (RE2 lowers ASCII capitals in the text).
    assert_eq!(texts_of("(?i)/ab"), some(&["/AB", "/Ab", "/aB", "/ab"]));
    // No finite set: a large class or any byte first.
    assert_eq!(texts_of(".*"), None);
    assert_eq!(texts_of("[a-z]x"), None);
    // Matches nothing: no text.
    assert_eq!(texts_of("[^\\x00-\\xff]"), some(&[]));
    // Not RE2: an error, as the route itself is refused.
    assert!(literal_prefixes("(?=x)").is_err());
    // Deep nesting is not read, not overflowed.
    let deep = format!("{}a{}", "(".repeat(5000), ")".repeat(5000));
    assert_eq!(texts_of(&deep), None);
}

/// Every full match of a regex starts with one of its texts: checked over every subject
/// Envoy was recorded matching, and over every short subject of a small alphabet for
/// patterns made of the pieces route regexes use.
#[test]
fn every_match_starts_with_a_text() {
    let starts = |texts: &[Vec<u8>], subject: &[u8]| texts.iter().any(|t| subject.starts_with(t));
    let mut recorded = 0;
    for line in include_str!("../../../test_data/re2/matches.txt").lines() {
        let cols: Vec<&str> = line.split('\t').collect();
        if cols.len() < 4 || cols[1] != "match" || line.contains("\\x") {
            continue;
        }
        if let Ok(Some(texts)) = literal_prefixes(cols[2]) {
            recorded += 1;
            assert!(starts(&texts, cols[3].as_bytes()), "{line}: {texts:?}");
        }
    }
    assert!(recorded > 50, "{recorded} recorded matches read");

    const PIECES: &[&str] = &[
        "a", "b", "/", "A", "(?i)", "(", ")", "(?:", "|", "*", "+", "?", "{2}", "{0,2}", "[ab]",
        "[^a]", "[a-z]", ".", "^", "$", "\\b", "(?i:a)", "b?", "a*",
    ];
    let alphabet = [b'a', b'b', b'A', b'/'];
    let mut subjects: Vec<Vec<u8>> = vec![Vec::new()];
    let mut last = subjects.clone();
    for _ in 0..4 {
        last = last
            .iter()
            .flat_map(|s| alphabet.iter().map(move |&c| [s.as_slice(), &[c]].concat()))
            .collect();
        subjects.extend(last.iter().cloned());
    }
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut next = |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    };
    let (mut finite, mut matched) = (0, 0);
    for _ in 0..600 {
        let pattern: String = (0..1 + next(7))
            .map(|_| PIECES[next(PIECES.len())])
            .collect();
        let (Ok(Some(texts)), Ok(re)) = (
            literal_prefixes(&pattern),
            Regex::without_size_limit(&pattern),
        ) else {
            continue;
        };
        finite += 1;
        for s in &subjects {
            if re.is_full_match(s) {
                matched += 1;
                assert!(starts(&texts, s), "`{pattern}` matches {s:?}: {texts:?}");
            }
        }
    }
    // The generator must give patterns with texts that match something.
    assert!(
        finite > 100 && matched > 500,
        "{finite} patterns, {matched} matches"
    );
}

/// A string's texts read at once are those of its literals one after the other: short and
/// long strings (past the length texts stop at), with a rune above `\xff` before or after
/// that length.
#[test]
fn a_string_at_once_is_its_literals_one_after_the_other() {
    let mut strings: Vec<Vec<u32>> = vec![Vec::new()];
    for len in [1, 2, 11, MAX_LEN - 1, MAX_LEN, MAX_LEN + 1, MAX_LEN + 40] {
        let s: Vec<u32> = (0..len as u32).map(|i| u32::from(b'a') + i % 26).collect();
        for at in [0, len / 2, len - 1, MAX_LEN] {
            let mut wide = s.clone();
            if at < len {
                wide[at] = 0x100 + at as u32;
                strings.push(wide);
            }
        }
        strings.push(s);
    }
    for s in strings {
        let one_by_one = concat(s.iter().map(|&r| Some(literal(r, false))));
        assert_eq!(Some(literal_string(&s)), one_by_one, "{} runes", s.len());
    }
}

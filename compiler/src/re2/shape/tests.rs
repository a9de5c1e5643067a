use super::super::compile;
use super::super::parse::parse;
use super::super::regexp::{Op, Regexp};
use super::*;

fn corpus_patterns() -> Vec<&'static str> {
    include_str!("../../../test_data/re2/corpus.txt")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.splitn(3, '\t').nth(2))
        .collect()
}

/// Gives every literal of `re` the values `next` returns, in order.
fn relabel(re: &mut Regexp, next: &mut dyn FnMut() -> u32) {
    match &mut re.op {
        Op::Literal(r) => *r = next(),
        Op::LiteralString(rs) => rs.iter_mut().for_each(|r| *r = next()),
        Op::Concat(subs) | Op::Alternate(subs) => {
            subs.iter_mut().for_each(|s| relabel(s, next));
        }
        Op::Star(sub)
        | Op::Plus(sub)
        | Op::Quest(sub)
        | Op::Repeat { sub, .. }
        | Op::Capture { sub, .. } => relabel(sub, next),
        _ => {}
    }
}

fn shape_of(re: &Regexp) -> Option<Vec<u8>> {
    let mut key = Vec::new();
    write(re, &mut key).then_some(key)
}

#[test]
fn literals_of_other_values_give_programs_of_the_same_size() {
    let mut measured = 0;
    for pattern in corpus_patterns() {
        let Ok((re, _)) = parse(pattern.as_bytes()) else {
            continue;
        };
        if !compile::shallow(&re) {
            continue;
        }
        let Some(key) = shape_of(&re) else {
            continue;
        };
        let size = compile::program_size(re.clone()).ok();
        // Every literal the same (the most neighbours equal), all different, and a
        // pseudo-random byte each.
        let mut same = || u32::from(b'a');
        let mut count = 0u32;
        let mut counting = || {
            count = (count + 1) % 256;
            count
        };
        let mut state = pattern.len() as u32 | 1;
        let mut random = || {
            state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            (state >> 16) % 256
        };
        let rounds: [&mut dyn FnMut() -> u32; 3] = [&mut same, &mut counting, &mut random];
        for next in rounds {
            let mut other = re.clone();
            relabel(&mut other, next);
            assert_eq!(shape_of(&other).as_ref(), Some(&key), "`{pattern}`");
            assert_eq!(
                compile::program_size(other).ok(),
                size,
                "`{pattern}` with other literals"
            );
        }
        measured += 1;
    }
    assert!(measured >= 450, "only {measured} corpus patterns measured");
}

#[test]
fn a_repeated_literal_is_measured_every_time() {
    // `x*x*` is simplified to `x*`, two instructions fewer than `x*y*`: the value counts.
    let size = |p: &str| super::super::check(p).map(|r| r.program_size);
    let (merged, apart) = (size("/a/x*x*"), size("/a/x*y*"));
    assert!(merged.is_ok() && apart.is_ok());
    assert_ne!(merged, apart);
    let (re, _) = parse(b"/a/x*x*").expect("parses");
    assert_eq!(shape_of(&re), None);
    // A repeated class does not depend on the literal after it.
    let (re, _) = parse(b"/a/[xy]*x").expect("parses");
    assert!(shape_of(&re).is_some());
    assert_eq!(size("/a/[xy]*x"), size("/b/[xy]*z"));
}

#[test]
fn shapes_tell_apart_what_changes_the_program() {
    let shape = |p: &str| shape_of(&parse(p.as_bytes()).expect("parses").0);
    assert_eq!(shape("/api/svc-1/[a-z]+/.*"), shape("/api/svc-2/[a-z]+/.*"));
    for (a, b) in [
        ("/api/svc-1/.*", "/api/svc-10/.*"),
        ("/a/[a-z]+", "/a/[a-y]+"),
        ("/a/[a-z]+", "/a/[a-z]*"),
        ("/a/[a-z]{2,3}", "/a/[a-z]{2,4}"),
        ("/a/(b)c", "/a/b(c)"),
        ("(?i)/a/b", "/a/b"),
        ("/a|b", "/ab"),
    ] {
        assert_ne!(shape(a), shape(b), "`{a}` and `{b}`");
    }
}

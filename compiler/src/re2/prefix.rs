//! The literal texts every match of a regex starts with, read from RE2's parse: what the
//! shadowing check files regex routes under, so that a literal path is only probed against
//! the regexes that could match it.
//!
//! The answer only has to be sound (every full match starts with one of the texts); a
//! shorter text or a missing answer costs probes, never a finding. It follows what
//! [`super::Regex`] matches: the same tree, read as `render` in `exec.rs` renders it.

use super::regexp::{Op, Regexp, FOLD_CASE};

/// At most this many texts are kept; a concatenation that would give more stops before.
const MAX_TEXTS: usize = 64;
/// A class of more bytes than this is not spelled out (the texts stop before it).
const MAX_CLASS: usize = 10;
/// Texts stop at this length.
const MAX_LEN: usize = 256;
/// Sub-expressions nested deeper than this are not read (no finite set is claimed).
const MAX_DEPTH: u32 = 64;

/// A text the matches start with; `whole` when the part read so far matches exactly it
/// (so what follows can extend it).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Text {
    bytes: Vec<u8>,
    whole: bool,
}

/// The texts every match of `pattern` (matched as a whole) starts with: `Ok(None)` when
/// there is no finite set (a class or `.` first, say), `Ok(Some(empty))` when the regex
/// matches nothing. The texts are sorted and without repeats; one may be empty.
pub fn literal_prefixes(pattern: &str) -> Result<Option<Vec<Vec<u8>>>, super::Re2Error> {
    let (re, _) = super::parse::parse(pattern.as_bytes())?;
    Ok(texts(&re, 0).map(|texts| {
        let mut out: Vec<Vec<u8>> = texts.into_iter().map(|t| t.bytes).collect();
        out.sort_unstable();
        out.dedup();
        out
    }))
}

/// `None`: no finite set of texts.
fn texts(re: &Regexp, depth: u32) -> Option<Vec<Text>> {
    if depth > MAX_DEPTH {
        return None;
    }
    let depth = depth + 1;
    let empty = || {
        Some(vec![Text {
            bytes: Vec::new(),
            whole: true,
        }])
    };
    match &re.op {
        Op::NoMatch => Some(Vec::new()),
        Op::EmptyMatch
        | Op::BeginLine
        | Op::EndLine
        | Op::WordBoundary
        | Op::NoWordBoundary
        | Op::BeginText
        | Op::EndText => empty(),
        Op::Literal(r) => Some(literal(*r, re.flags & FOLD_CASE != 0)),
        Op::LiteralString(rs) if re.flags & FOLD_CASE == 0 => Some(literal_string(rs)),
        Op::LiteralString(rs) => concat(rs.iter().map(|&r| Some(literal(r, true)))),
        Op::Concat(subs) => concat(subs.iter().map(|s| texts(s, depth))),
        Op::Alternate(subs) => {
            let mut out = Vec::new();
            for s in subs {
                out.extend(texts(s, depth)?);
                if out.len() > MAX_TEXTS {
                    return None;
                }
            }
            Some(out)
        }
        Op::Capture { sub, .. } => texts(sub, depth),
        // May match nothing, or the sub-expression and more.
        Op::Star(sub) | Op::Quest(sub) | Op::Repeat { sub, min: ..=0, .. } => {
            let mut out = texts(sub, depth)?;
            if !matches!(re.op, Op::Quest(_)) {
                out.iter_mut().for_each(|t| t.whole = false);
            }
            out.push(Text {
                bytes: Vec::new(),
                whole: true,
            });
            Some(out)
        }
        // The sub-expression at least once.
        Op::Plus(sub) | Op::Repeat { sub, .. } => {
            let mut out = texts(sub, depth)?;
            out.iter_mut().for_each(|t| t.whole = false);
            Some(out)
        }
        Op::AnyChar | Op::AnyByte => None,
        Op::CharClass { cc, .. } => {
            let bytes: u32 = cc
                .ranges()
                .iter()
                .filter(|&&(lo, _)| lo <= 0xFF)
                .map(|&(lo, hi)| hi.min(0xFF) - lo + 1)
                .sum();
            if bytes as usize > MAX_CLASS {
                return None;
            }
            let mut out = Vec::with_capacity(bytes as usize);
            for &(lo, hi) in cc.ranges() {
                if lo > 0xFF {
                    continue;
                }
                for b in lo..=hi.min(0xFF) {
                    out.push(Text {
                        bytes: vec![b as u8],
                        whole: true,
                    });
                }
            }
            Some(out)
        }
    }
}

/// A literal as `render` matches it: under `(?i)` a lowercase ASCII letter matches either
/// case, an uppercase one nothing; a rune above `\xff` nothing.
fn literal(r: u32, fold: bool) -> Vec<Text> {
    let Ok(b) = u8::try_from(r) else {
        return Vec::new();
    };
    let one = |b: u8| Text {
        bytes: vec![b],
        whole: true,
    };
    if !fold || !b.is_ascii_alphabetic() {
        vec![one(b)]
    } else if b.is_ascii_lowercase() {
        vec![one(b), one(b.to_ascii_uppercase())]
    } else {
        Vec::new()
    }
}

/// A string matched as written: [`concat`] of its [`literal`]s, each one text of one byte
/// (or none), without a list per rune.
fn literal_string(rs: &[u32]) -> Vec<Text> {
    // A rune above `\xff` matches nothing. [`concat`] reads one rune past the length texts
    // stop at (a part that adds no byte does not make a text longer).
    if rs.iter().take(MAX_LEN + 1).any(|&r| r > 0xFF) {
        return Vec::new();
    }
    let read = &rs[..rs.len().min(MAX_LEN)];
    vec![Text {
        bytes: read.iter().map(|&r| r as u8).collect(),
        whole: read.len() == rs.len(),
    }]
}

/// The texts of parts matched one after the other: each whole text so far extended by each
/// text of the next part, until none is whole, a part has no finite set, or the set would
/// grow past the bounds (then the texts so far stand, no longer whole).
fn concat(parts: impl Iterator<Item = Option<Vec<Text>>>) -> Option<Vec<Text>> {
    let mut acc = vec![Text {
        bytes: Vec::new(),
        whole: true,
    }];
    for (i, part) in parts.enumerate() {
        if !acc.iter().any(|t| t.whole) {
            break;
        }
        let Some(part) = part else {
            if i == 0 {
                return None;
            }
            acc.iter_mut().for_each(|t| t.whole = false);
            break;
        };
        if i == 0 && part.len() <= MAX_TEXTS && part.iter().all(|t| t.bytes.len() <= MAX_LEN) {
            // The first part's texts, each after the one empty text: themselves.
            acc = part;
            continue;
        }
        let whole = acc.iter().filter(|t| t.whole).count();
        let longest = acc.iter().map(|t| t.bytes.len()).max().unwrap_or(0)
            + part.iter().map(|t| t.bytes.len()).max().unwrap_or(0);
        if acc.len() - whole + whole * part.len() > MAX_TEXTS || longest > MAX_LEN {
            acc.iter_mut().for_each(|t| t.whole = false);
            break;
        }
        let mut next = Vec::with_capacity(acc.len() - whole + whole * part.len());
        for t in acc {
            if !t.whole {
                next.push(t);
                continue;
            }
            for p in &part {
                let mut bytes = Vec::with_capacity(t.bytes.len() + p.bytes.len());
                bytes.extend_from_slice(&t.bytes);
                bytes.extend_from_slice(&p.bytes);
                next.push(Text {
                    bytes,
                    whole: p.whole,
                });
            }
        }
        acc = next;
    }
    Some(acc)
}

#[cfg(test)]
mod tests;

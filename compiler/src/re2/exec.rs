//! Matching with RE2's meaning as Envoy configures it: Latin-1, bytes, full match.
//!
//! Envoy compiles a `safe_regex` with RE2 in Latin-1 mode and asks `RE2::FullMatch` whether
//! a path, header or query value matches; `regex_rewrite` uses `RE2::GlobalReplace`. The
//! subject is read byte by byte: `.` is one byte (of a UTF-8 character, say) and never
//! `\n` (Envoy does not set `dot_nl`), classes hold bytes up to `\xff`, `(?i)` folds ASCII
//! letters only, and `\d \w \s \b` are ASCII.
//!
//! How: the pattern is parsed by [`super::parse`] (RE2's own parser, so every construct RE2
//! reads differently from other engines — `\Q..\E`, octal escapes, `x{,3}`, literal `\<`
//! and `[a-z&&b]`, flags — has already been resolved into bytes, byte classes and
//! assertions), and that tree is written back as a pattern for the `regex` crate in which
//! nothing is left to interpretation: every literal is a `\xHH` escape, every class a list
//! of byte ranges, every assertion the ASCII one, with Unicode off. The `regex` crate then
//! matches it with a DFA, and the meaning is RE2's. Both engines pick matches the same way
//! (leftmost, then the first alternative and the greedy or lazy repetition order that Perl
//! would), which decides where [`Regex::find_at`] and [`Regex::replace_all`] match.
//!
//! Approximate: the text captured by a group repeated by an operator that can also match
//! empty (`(a*)*`, `(a|)+`) may differ between the engines; RE2 rewrites such loops before
//! compiling them. Whether and where the whole regex matches does not depend on it.

use super::parse;
use super::regexp::{Op, Regexp, FOLD_CASE, NON_GREEDY};
use super::{check_with_limit, Re2Error, DEFAULT_MAX_PROGRAM_SIZE};
use std::fmt::Write as _;
use std::sync::OnceLock;

/// A regex Envoy accepts, with RE2's matching semantics under Envoy's options.
#[derive(Clone, Debug)]
pub struct Regex {
    /// The pattern as the user wrote it.
    pattern: String,
    /// The same regex in the `regex` crate's syntax, every construct spelt out.
    rendered: String,
    /// `\A(?:rendered)\z`: `RE2::FullMatch`.
    full: regex::bytes::Regex,
    /// `rendered` unanchored, for searches; built on first use because the route checks
    /// only ask for full matches.
    search: OnceLock<regex::bytes::Regex>,
    /// `RE2::NumberOfCapturingGroups()`.
    groups: usize,
}

impl Regex {
    /// Compiles `pattern` as Envoy would, refusing what Envoy refuses (syntax RE2 does not
    /// know, and programs larger than Envoy's default limit of
    /// [`DEFAULT_MAX_PROGRAM_SIZE`] instructions).
    pub fn new(pattern: &str) -> Result<Regex, Re2Error> {
        Self::new_with_limit(pattern, DEFAULT_MAX_PROGRAM_SIZE)
    }

    /// [`Regex::new`] with another `max_program_size`.
    pub fn new_with_limit(pattern: &str, limit: u32) -> Result<Regex, Re2Error> {
        check_with_limit(pattern, limit)?;
        Self::parsed(pattern, limit)
    }

    /// A regex RE2 parses, whatever the size of its program: for checks that want the
    /// meaning of a pattern whose size is reported elsewhere, without computing the size.
    pub fn without_size_limit(pattern: &str) -> Result<Regex, Re2Error> {
        Self::parsed(pattern, u32::MAX)
    }

    fn parsed(pattern: &str, limit: u32) -> Result<Regex, Re2Error> {
        let (rendered, groups) = rendered(pattern)?;
        let full = engine(&format!(r"\A(?:{rendered})\z"), limit)?;
        Ok(Regex {
            pattern: pattern.to_owned(),
            rendered,
            full,
            search: OnceLock::new(),
            groups: groups as usize,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    /// `RE2::NumberOfCapturingGroups()`.
    pub fn groups(&self) -> usize {
        self.groups
    }

    /// `RE2::FullMatch(subject, re)`: whether the regex matches the whole subject, as
    /// Envoy decides for a path (without its query), a header or a query parameter value.
    pub fn is_full_match(&self, subject: &[u8]) -> bool {
        self.full.is_match(subject)
    }

    /// The leftmost-first match starting at or after `start` (assertions such as `^` and
    /// `\b` see the bytes before `start`), as `RE2::Match` with `UNANCHORED` finds it.
    pub fn find_at(&self, subject: &[u8], start: usize) -> Option<(usize, usize)> {
        self.searcher()
            .find_at(subject, start)
            .map(|m| (m.start(), m.end()))
    }

    /// `RE2::GlobalReplace(&subject, re, substitution)`, which Envoy's `regex_rewrite`
    /// runs: every non-overlapping leftmost-first match is replaced by `substitution`, in
    /// which `\0` to `\9` stand for the groups and `\\` for a backslash.
    ///
    /// RE2's rules, followed here: an empty match right where the previous match ended is
    /// skipped (one byte is copied instead, Latin-1 being one byte per character); when the
    /// substitution names a group the regex does not have, nothing is replaced and the
    /// subject comes back unchanged; a backslash followed by anything else ends that
    /// substitution's text where it stands (RE2 logs "invalid rewrite pattern" and stops
    /// rewriting, keeping what it wrote).
    pub fn replace_all(&self, subject: &[u8], substitution: &str) -> Vec<u8> {
        let sub = substitution.as_bytes();
        if max_submatch(sub) > self.groups {
            return subject.to_vec();
        }
        let re = self.searcher();
        let mut locs = re.capture_locations();
        let mut out = Vec::with_capacity(subject.len());
        let mut p = 0;
        let mut last_end: Option<usize> = None;
        let mut count = 0usize;
        while p <= subject.len() {
            let Some(m) = re.captures_read_at(&mut locs, subject, p) else {
                break;
            };
            out.extend_from_slice(&subject[p..m.start()]);
            if m.is_empty() && last_end == Some(m.start()) {
                if let Some(&b) = subject.get(p) {
                    out.push(b);
                }
                p += 1;
                continue;
            }
            rewrite(&mut out, sub, subject, &locs);
            p = m.end();
            last_end = Some(p);
            count += 1;
        }
        if count == 0 {
            return subject.to_vec();
        }
        if p < subject.len() {
            out.extend_from_slice(&subject[p..]);
        }
        out
    }

    fn searcher(&self) -> &regex::bytes::Regex {
        self.search.get_or_init(|| {
            engine(&self.rendered, u32::MAX).expect("the anchored form of this regex compiled")
        })
    }
}

/// Compiles a rendered pattern. The `regex` crate's own limits are set far above anything
/// RE2's program size allows, so a failure is a program RE2 would also refuse.
/// `pattern` in the `regex` crate's syntax, and its number of groups.
fn rendered(pattern: &str) -> Result<(String, u32), Re2Error> {
    let (re, _) = parse::parse(pattern.as_bytes())?;
    let mut rendered = String::with_capacity(pattern.len() * 4 + 8);
    let mut groups = 0;
    render(&re, &mut rendered, &mut groups);
    Ok((rendered, groups))
}

fn engine(rendered: &str, limit: u32) -> Result<regex::bytes::Regex, Re2Error> {
    regex::bytes::RegexBuilder::new(rendered)
        .unicode(false)
        .nest_limit(10_000)
        .size_limit(256 << 20)
        .build()
        .map_err(|_| Re2Error::TooLarge {
            size: limit.saturating_add(1),
            limit,
        })
}

/// RE2's `MaxSubmatch`: the highest `\N` in a substitution.
fn max_submatch(sub: &[u8]) -> usize {
    let mut max = 0;
    let mut i = 0;
    while i < sub.len() {
        if sub[i] == b'\\' {
            i += 1;
            if let Some(d @ b'0'..=b'9') = sub.get(i) {
                max = max.max(usize::from(d - b'0'));
            }
        }
        i += 1;
    }
    max
}

/// RE2's `Rewrite`: appends the substitution with its groups filled in.
fn rewrite(out: &mut Vec<u8>, sub: &[u8], subject: &[u8], locs: &regex::bytes::CaptureLocations) {
    let mut i = 0;
    while i < sub.len() {
        let c = sub[i];
        i += 1;
        if c != b'\\' {
            out.push(c);
            continue;
        }
        match sub.get(i) {
            Some(d @ b'0'..=b'9') => {
                if let Some((s, e)) = locs.get(usize::from(d - b'0')) {
                    out.extend_from_slice(&subject[s..e]);
                }
            }
            Some(b'\\') => out.push(b'\\'),
            // RE2 stops here ("invalid rewrite pattern").
            _ => return,
        }
        i += 1;
    }
}

/// A class that matches no byte.
const NOTHING: &str = r"[^\x00-\xFF]";

/// Writes `re` in the `regex` crate's syntax (Unicode off). Counts capture groups.
fn render(re: &Regexp, out: &mut String, groups: &mut u32) {
    let lazy = if re.flags & NON_GREEDY != 0 { "?" } else { "" };
    let fold = re.flags & FOLD_CASE != 0;
    match &re.op {
        Op::NoMatch => out.push_str(NOTHING),
        Op::EmptyMatch => out.push_str("(?:)"),
        Op::Literal(r) => literal(*r, fold, out),
        Op::LiteralString(rs) => {
            for &r in rs {
                literal(r, fold, out);
            }
        }
        Op::Concat(subs) => {
            out.push_str("(?:");
            for s in subs {
                render(s, out, groups);
            }
            out.push(')');
        }
        Op::Alternate(subs) => {
            out.push_str("(?:");
            for (i, s) in subs.iter().enumerate() {
                if i > 0 {
                    out.push('|');
                }
                render(s, out, groups);
            }
            out.push(')');
        }
        Op::Star(s) | Op::Plus(s) | Op::Quest(s) => {
            out.push_str("(?:");
            render(s, out, groups);
            out.push(')');
            out.push(match re.op {
                Op::Star(_) => '*',
                Op::Plus(_) => '+',
                _ => '?',
            });
            out.push_str(lazy);
        }
        Op::Repeat { sub, min, max } => {
            out.push_str("(?:");
            render(sub, out, groups);
            out.push(')');
            let _ = match *max {
                -1 => write!(out, "{{{min},}}"),
                max if max == *min => write!(out, "{{{min}}}"),
                max => write!(out, "{{{min},{max}}}"),
            };
            out.push_str(lazy);
        }
        Op::Capture { sub, cap } => {
            *groups = (*groups).max(*cap);
            out.push('(');
            render(sub, out, groups);
            out.push(')');
        }
        // RE2 compiles both as a range over every byte.
        Op::AnyChar | Op::AnyByte => out.push_str(r"[\x00-\xFF]"),
        // RE2's kEmptyBeginLine / kEmptyEndLine: at an end of the text or next to `\n`.
        Op::BeginLine => out.push_str("(?m:^)"),
        Op::EndLine => out.push_str("(?m:$)"),
        Op::BeginText => out.push_str(r"\A"),
        Op::EndText => out.push_str(r"\z"),
        // Unicode is off, so these are RE2's ASCII word boundaries.
        Op::WordBoundary => out.push_str(r"\b"),
        Op::NoWordBoundary => out.push_str(r"\B"),
        Op::CharClass { cc, .. } => {
            let ranges: Vec<(u8, u8)> = cc
                .ranges()
                .iter()
                .filter(|&&(lo, _)| lo <= 0xFF)
                .map(|&(lo, hi)| (lo as u8, hi.min(0xFF) as u8))
                .collect();
            class(&ranges, out);
        }
    }
}

/// A literal byte; under `(?i)` RE2's byte instruction lowers an ASCII capital in the text
/// before comparing, so the literal (which RE2's parser keeps in lower case) matches both.
fn literal(r: u32, fold: bool, out: &mut String) {
    let Ok(b) = u8::try_from(r) else {
        out.push_str(NOTHING);
        return;
    };
    if !fold || !b.is_ascii_alphabetic() {
        let _ = write!(out, r"\x{b:02X}");
    } else if b.is_ascii_lowercase() {
        let _ = write!(out, r"[\x{b:02X}\x{:02X}]", b.to_ascii_uppercase());
    } else {
        // No text byte lowers to a capital, so RE2 could never match this one (its
        // parser does not produce it).
        out.push_str(NOTHING);
    }
}

fn class(ranges: &[(u8, u8)], out: &mut String) {
    if ranges.is_empty() {
        out.push_str(NOTHING);
        return;
    }
    out.push('[');
    for &(lo, hi) in ranges {
        if lo == hi {
            let _ = write!(out, r"\x{lo:02X}");
        } else {
            let _ = write!(out, r"\x{lo:02X}-\x{hi:02X}");
        }
    }
    out.push(']');
}

#[cfg(test)]
mod tests;

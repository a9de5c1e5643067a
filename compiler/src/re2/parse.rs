//! RE2's parser (`parse.cc`) as Envoy runs it: Perl-like flags, Latin-1 text, so every byte
//! of the pattern is one rune and nothing above `\xff` exists.

use super::class::{self, Class, LATIN1_MAX};
use super::regexp::{
    factor_alternation, Op, Regexp, DOT_NL, FOLD_CASE, NON_GREEDY, ONE_LINE, WAS_DOLLAR,
};
use super::{Note, Re2Error};

/// RE2's `maximum_repeat_count`.
const MAX_REPEAT: i32 = 1000;

enum Item {
    Re(Regexp),
    /// An open group: its capture index (none for `(?:`), the flags to restore at `)`, and
    /// where it opened.
    LeftParen {
        cap: Option<u32>,
        flags: u16,
    },
    Bar,
}

struct Parser<'a> {
    pat: &'a [u8],
    pos: usize,
    flags: u16,
    stack: Vec<Item>,
    ncap: u32,
    notes: Vec<Note>,
    /// Plain bytes after a literal are added to the literal string at once
    /// ([`Parser::push_plain_run`]); tests turn it off to compare.
    runs: bool,
}

/// Parses `pat` as RE2 does; the notes report constructs RE2 reads differently from the
/// engines users usually test with.
pub(super) fn parse(pat: &[u8]) -> Result<(Regexp, Vec<Note>), Re2Error> {
    parse_with(pat, true)
}

fn parse_with(pat: &[u8], runs: bool) -> Result<(Regexp, Vec<Note>), Re2Error> {
    let mut p = Parser {
        pat,
        pos: 0,
        flags: ONE_LINE,
        stack: Vec::new(),
        ncap: 0,
        notes: Vec::new(),
        runs,
    };
    let re = p.run()?;
    Ok((re, p.notes))
}

/// [`parse`] taking every literal byte on its own, as RE2 does (tests).
#[cfg(test)]
pub(super) fn parse_bytewise(pat: &[u8]) -> Result<(Regexp, Vec<Note>), Re2Error> {
    parse_with(pat, false)
}

/// A byte the parser reads as a literal of its own, with no note: ASCII and none of
/// `()|^$.[*+?{\`.
fn is_plain(b: u8) -> bool {
    b.is_ascii()
        && !matches!(
            b,
            b'(' | b')' | b'|' | b'^' | b'$' | b'.' | b'[' | b'*' | b'+' | b'?' | b'{' | b'\\'
        )
}

fn syntax(offset: usize, message: String) -> Re2Error {
    Re2Error::Syntax { offset, message }
}

fn unsupported(offset: usize, construct: &[u8], message: String) -> Re2Error {
    Re2Error::Unsupported {
        offset,
        construct: String::from_utf8_lossy(construct).into_owned(),
        message,
    }
}

fn show(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

impl Parser<'_> {
    fn note(&mut self, offset: usize, message: String) {
        self.notes.push(Note { offset, message });
    }

    fn peek(&self, k: usize) -> Option<u8> {
        self.pat.get(self.pos + k).copied()
    }

    fn run(&mut self) -> Result<Regexp, Re2Error> {
        let mut last_unary: Option<usize> = None;
        while self.pos < self.pat.len() {
            let start = self.pos;
            let mut is_unary = None;
            let c = self.pat[self.pos];
            match c {
                b'(' => {
                    if self.peek(1) == Some(b'?') {
                        self.perl_flags()?;
                    } else {
                        self.ncap += 1;
                        let cap = Some(self.ncap);
                        self.push(Item::LeftParen {
                            cap,
                            flags: self.flags,
                        });
                        self.pos += 1;
                    }
                }
                b'|' => {
                    self.vertical_bar();
                    self.pos += 1;
                }
                b')' => {
                    self.right_paren(start)?;
                    self.pos += 1;
                }
                b'^' => {
                    let op = if self.flags & ONE_LINE != 0 {
                        Op::BeginText
                    } else {
                        Op::BeginLine
                    };
                    self.push_op(op);
                    self.pos += 1;
                }
                b'$' => {
                    if self.flags & ONE_LINE != 0 {
                        self.push_re(Regexp::new(Op::EndText, self.flags | WAS_DOLLAR));
                    } else {
                        self.push_op(Op::EndLine);
                    }
                    self.pos += 1;
                }
                b'.' => {
                    self.push_dot();
                    self.pos += 1;
                }
                b'[' => {
                    let re = self.char_class()?;
                    self.push_re(re);
                }
                b'*' | b'+' | b'?' => {
                    self.pos += 1;
                    let mut nongreedy = false;
                    if self.peek(0) == Some(b'?') {
                        nongreedy = true;
                        self.pos += 1;
                    }
                    if let Some(lu) = last_unary {
                        return Err(self.bad_repeat(lu));
                    }
                    let op = match c {
                        b'*' => RepOp::Star,
                        b'+' => RepOp::Plus,
                        _ => RepOp::Quest,
                    };
                    self.push_repeat_op(op, nongreedy, start)?;
                    is_unary = Some(start);
                }
                b'{' => match self.maybe_repeat() {
                    None => {
                        self.maybe_literal_brace_note(start);
                        self.push_literal(u32::from(b'{'));
                        self.pos += 1;
                    }
                    Some((lo, hi, end)) => {
                        self.pos = end;
                        let mut nongreedy = false;
                        if self.peek(0) == Some(b'?') {
                            nongreedy = true;
                            self.pos += 1;
                        }
                        if let Some(lu) = last_unary {
                            return Err(self.bad_repeat(lu));
                        }
                        self.push_repetition(lo, hi, nongreedy, start)?;
                        is_unary = Some(start);
                    }
                },
                b'\\' => self.escape_top()?,
                _ => {
                    self.literal_note(start);
                    self.push_literal(u32::from(c));
                    self.pos += 1;
                    if self.runs {
                        self.push_plain_run();
                    }
                }
            }
            last_unary = is_unary;
        }
        self.finish()
    }

    fn literal_note(&mut self, at: usize) {
        let c = self.pat[at];
        // Only the first byte of a UTF-8 sequence gets the note.
        if c >= 0xC0 {
            let len = match c {
                0xC0..=0xDF => 2,
                0xE0..=0xEF => 3,
                _ => 4,
            };
            let end = (at + len).min(self.pat.len());
            self.note(
                at,
                format!(
                    "`{}` is {} separate bytes to Envoy's RE2, which reads patterns as Latin-1: a repetition after it applies to its last byte only and `.` matches one byte",
                    show(&self.pat[at..end]),
                    end - at
                ),
            );
        }
    }

    fn maybe_literal_brace_note(&mut self, at: usize) {
        let rest = &self.pat[at..];
        let close = rest.iter().position(|&b| b == b'}');
        if let Some(close) = close {
            let inner = &rest[1..close];
            let looks_like_repeat = !inner.is_empty()
                && inner.iter().all(|b| b.is_ascii_digit() || *b == b',')
                && inner.iter().any(u8::is_ascii_digit);
            if looks_like_repeat {
                self.note(
                    at,
                    format!(
                        "`{}` is literal text in RE2, not a repetition",
                        show(&rest[..=close])
                    ),
                );
            }
        }
    }

    fn bad_repeat(&self, from: usize) -> Re2Error {
        let text = &self.pat[from..self.pos];
        // `a*+`, `a++`, `a?+`, `a{2}+`: a possessive quantifier in PCRE and Java.
        let last = text.last().copied();
        let ops = text.iter().filter(|b| b"*+?}".contains(b)).count();
        if last == Some(b'+') && ops == 2 && !text.starts_with(b"+?") {
            return unsupported(
                from,
                text,
                format!(
                    "possessive quantifier `{}` is not supported by RE2",
                    show(text)
                ),
            );
        }
        syntax(
            from,
            format!(
                "bad repetition operator `{}`: RE2 does not allow a repetition of a repetition without parentheses",
                show(text)
            ),
        )
    }

    // ---- the stack -----------------------------------------------------------------

    fn push(&mut self, item: Item) {
        self.maybe_concat_string(None);
        self.stack.push(item);
    }

    fn push_op(&mut self, op: Op) {
        self.push_re(Regexp::new(op, self.flags));
    }

    /// RE2's `PushRegexp`: a one-rune class becomes a literal, and `[Aa]` a folded literal.
    fn push_re(&mut self, mut re: Regexp) {
        self.maybe_concat_string(None);
        if let Op::CharClass { cc, builder: true } = &mut re.op {
            cc.remove_above(LATIN1_MAX);
            if cc.size() == 1 {
                re = Regexp::new(Op::Literal(cc.ranges()[0].0), self.flags);
            } else if cc.size() == 2 {
                let r = cc.ranges()[0].0;
                if (u32::from(b'A')..=u32::from(b'Z')).contains(&r) && cc.contains(r + 32) {
                    re = Regexp::new(Op::Literal(r + 32), self.flags | FOLD_CASE);
                }
            }
        }
        self.stack.push(Item::Re(re));
    }

    /// RE2's `MaybeConcatString`: merges the two literals on top of the stack. With
    /// `r`, the top one is reused for the new literal `r` and true is returned.
    fn maybe_concat_string(&mut self, r: Option<(u32, u16)>) -> bool {
        let n = self.stack.len();
        if n < 2 {
            return false;
        }
        let (below, top) = self.stack.split_at_mut(n - 1);
        let (Item::Re(re2), Item::Re(re1)) = (&mut below[n - 2], &mut top[0]) else {
            return false;
        };
        let is_lit = |re: &Regexp| matches!(re.op, Op::Literal(_) | Op::LiteralString(_));
        if !is_lit(re1) || !is_lit(re2) || (re1.flags ^ re2.flags) & FOLD_CASE != 0 {
            return false;
        }
        let mut runes = match std::mem::replace(&mut re2.op, Op::EmptyMatch) {
            // Room for a path's words: the string grows a rune at a time.
            Op::Literal(x) => {
                let mut v = Vec::with_capacity(16);
                v.push(x);
                v
            }
            Op::LiteralString(v) => v,
            _ => unreachable!("checked above"),
        };
        match &re1.op {
            Op::Literal(x) => runes.push(*x),
            Op::LiteralString(v) => runes.extend_from_slice(v),
            _ => unreachable!("checked above"),
        }
        re2.op = Op::LiteralString(runes);
        if let Some((r, flags)) = r {
            *re1 = Regexp::new(Op::Literal(r), flags);
            return true;
        }
        self.stack.pop();
        false
    }

    /// The plain bytes at `pos`, right after a literal was pushed, pushed as
    /// [`Parser::push_literal`] would push them one by one once the two literals on top of
    /// the stack merge: each new byte adds the top literal to the string below and takes its
    /// place. So the string gets the top literal and all the run's bytes but the last, which
    /// stays on top (a repetition after the run applies to it alone). Does nothing until the
    /// top two are literals that merge, nor under `(?i)`.
    fn push_plain_run(&mut self) {
        let rest = &self.pat[self.pos..];
        let len = rest.iter().take_while(|&&b| is_plain(b)).count();
        let n = self.stack.len();
        if len == 0 || n < 2 || self.flags & FOLD_CASE != 0 {
            return;
        }
        let (below, top) = self.stack.split_at_mut(n - 1);
        let (Item::Re(re2), Item::Re(re1)) = (&mut below[n - 2], &mut top[0]) else {
            return;
        };
        let Op::Literal(t) = re1.op else {
            return;
        };
        if re1.flags != self.flags || (re1.flags ^ re2.flags) & FOLD_CASE != 0 {
            return;
        }
        if let Op::Literal(x) = re2.op {
            let mut v = Vec::with_capacity(16);
            v.push(x);
            re2.op = Op::LiteralString(v);
        }
        let Op::LiteralString(runes) = &mut re2.op else {
            return;
        };
        runes.push(t);
        runes.extend(rest[..len - 1].iter().map(|&b| u32::from(b)));
        re1.op = Op::Literal(u32::from(rest[len - 1]));
        self.pos += len;
    }

    /// RE2's `PushLiteral`.
    fn push_literal(&mut self, r: u32) {
        if self.flags & FOLD_CASE != 0 && class::has_fold(r) {
            let mut cc = Class::new();
            cc.add_range(r, r);
            cc.add_range(class::other_case(r), class::other_case(r));
            self.push_re(Regexp::new(
                Op::CharClass { cc, builder: true },
                self.flags & !FOLD_CASE,
            ));
            return;
        }
        if self.maybe_concat_string(Some((r, self.flags))) {
            return;
        }
        self.push_re(Regexp::new(Op::Literal(r), self.flags));
    }

    fn push_dot(&mut self) {
        if self.flags & DOT_NL != 0 {
            self.push_op(Op::AnyChar);
            return;
        }
        let mut cc = Class::new();
        cc.add_range(0, u32::from(b'\n') - 1);
        cc.add_range(u32::from(b'\n') + 1, class::RUNE_MAX);
        self.push_re(Regexp::new(
            Op::CharClass { cc, builder: true },
            self.flags & !FOLD_CASE,
        ));
    }

    fn top_is_operand(&self) -> bool {
        matches!(self.stack.last(), Some(Item::Re(_)))
    }

    /// RE2's `PushRepeatOp`, including its squashing of `(?:a*)*` and friends.
    fn push_repeat_op(&mut self, op: RepOp, nongreedy: bool, at: usize) -> Result<(), Re2Error> {
        if !self.top_is_operand() {
            let text = &self.pat[at..self.pos];
            return Err(syntax(
                at,
                format!("missing argument to repetition operator `{}`", show(text)),
            ));
        }
        let mut fl = self.flags;
        if nongreedy {
            fl ^= NON_GREEDY;
        }
        let Some(Item::Re(top)) = self.stack.pop() else {
            unreachable!("checked above")
        };
        let same_op = matches!(
            (&top.op, op),
            (Op::Star(_), RepOp::Star) | (Op::Plus(_), RepOp::Plus) | (Op::Quest(_), RepOp::Quest)
        );
        if same_op && fl == top.flags {
            self.stack.push(Item::Re(top));
            return Ok(());
        }
        if matches!(top.op, Op::Star(_) | Op::Plus(_) | Op::Quest(_)) && fl == top.flags {
            let (Op::Star(sub) | Op::Plus(sub) | Op::Quest(sub)) = top.op else {
                unreachable!("checked above")
            };
            self.stack.push(Item::Re(Regexp::new(Op::Star(sub), fl)));
            return Ok(());
        }
        let sub = Box::new(finish(top));
        let op = match op {
            RepOp::Star => Op::Star(sub),
            RepOp::Plus => Op::Plus(sub),
            RepOp::Quest => Op::Quest(sub),
        };
        self.stack.push(Item::Re(Regexp::new(op, fl)));
        Ok(())
    }

    /// RE2's `MaybeParseRepeat` at `self.pos` (a `{`): `(min, max, end)`, max -1 for `{n,}`.
    fn maybe_repeat(&self) -> Option<(i32, i32, usize)> {
        let s = self.pat;
        let mut i = self.pos + 1;
        let lo = parse_int(s, &mut i)?;
        let hi;
        match s.get(i)? {
            b',' => {
                i += 1;
                if *s.get(i)? == b'}' {
                    hi = -1;
                } else {
                    hi = parse_int(s, &mut i)?;
                }
            }
            _ => hi = lo,
        }
        if s.get(i) != Some(&b'}') {
            return None;
        }
        Some((lo, hi, i + 1))
    }

    /// RE2's `PushRepetition`, with its limit of 1000 on counts and on nested products.
    fn push_repetition(
        &mut self,
        min: i32,
        max: i32,
        nongreedy: bool,
        at: usize,
    ) -> Result<(), Re2Error> {
        let text = &self.pat[at..self.pos];
        if (max != -1 && max < min) || min > MAX_REPEAT || max > MAX_REPEAT {
            if min > MAX_REPEAT || max > MAX_REPEAT {
                return Err(unsupported(
                    at,
                    text,
                    format!(
                        "repetition count in `{}` is over RE2's limit of 1000",
                        show(text)
                    ),
                ));
            }
            return Err(syntax(
                at,
                format!("invalid repetition size `{}`", show(text)),
            ));
        }
        if !self.top_is_operand() {
            return Err(syntax(
                at,
                format!("missing argument to repetition operator `{}`", show(text)),
            ));
        }
        let mut fl = self.flags;
        if nongreedy {
            fl ^= NON_GREEDY;
        }
        let Some(Item::Re(top)) = self.stack.pop() else {
            unreachable!("checked above")
        };
        let re = Regexp::new(
            Op::Repeat {
                sub: Box::new(finish(top)),
                min,
                max,
            },
            fl,
        );
        let ok = (min < 2 && max < 2) || repetition_budget(&re, MAX_REPEAT) > 0;
        self.stack.push(Item::Re(re));
        if !ok {
            return Err(unsupported(
                at,
                text,
                format!(
                    "nested repetition counts multiply to over RE2's limit of 1000 at `{}`",
                    show(text)
                ),
            ));
        }
        Ok(())
    }

    /// RE2's `DoVerticalBar`.
    fn vertical_bar(&mut self) {
        self.maybe_concat_string(None);
        self.do_concatenation();
        let n = self.stack.len();
        if n >= 2 && matches!(self.stack[n - 2], Item::Bar) {
            if n >= 3 {
                let any = |it: &Item| {
                    matches!(
                        it,
                        Item::Re(Regexp {
                            op: Op::AnyChar,
                            ..
                        })
                    )
                };
                let subsumed = |it: &Item| {
                    matches!(
                        it,
                        Item::Re(Regexp {
                            op: Op::Literal(_) | Op::CharClass { .. } | Op::AnyChar,
                            ..
                        })
                    )
                };
                if any(&self.stack[n - 3]) && subsumed(&self.stack[n - 1]) {
                    self.stack.pop();
                    return;
                }
                if any(&self.stack[n - 1]) && subsumed(&self.stack[n - 3]) {
                    let r1 = self.stack.pop().expect("three items");
                    self.stack.pop();
                    self.stack.pop();
                    self.stack.push(r1);
                    self.stack.push(Item::Bar);
                    return;
                }
            }
            // Swap the finished alternative below the bar.
            self.stack.swap(n - 1, n - 2);
            return;
        }
        self.push(Item::Bar);
    }

    fn do_concatenation(&mut self) {
        if !self.top_is_operand() {
            self.push_op(Op::EmptyMatch);
        }
        self.collapse(false);
    }

    fn do_alternation(&mut self) {
        self.vertical_bar();
        // The stack top is now the bar.
        self.stack.pop();
        self.collapse(true);
    }

    /// RE2's `DoCollapse`: builds a concatenation or alternation of everything above the
    /// nearest marker, flattening nested ones of the same kind.
    fn collapse(&mut self, alternate: bool) {
        let mut first = self.stack.len();
        while first > 0 && matches!(self.stack[first - 1], Item::Re(_)) {
            first -= 1;
        }
        if self.stack.len() - first == 1 {
            return;
        }
        let items: Vec<Item> = self.stack.drain(first..).collect();
        let mut subs = Vec::new();
        for item in items {
            let Item::Re(re) = item else {
                unreachable!("no markers above `first`")
            };
            match re.op {
                Op::Alternate(v) if alternate => subs.extend(v),
                Op::Concat(v) if !alternate => subs.extend(v),
                op => subs.push(finish(Regexp::new(op, re.flags))),
            }
        }
        let re = if alternate {
            if subs.is_empty() {
                Regexp::new(Op::NoMatch, self.flags)
            } else if subs.len() == 1 {
                subs.pop().expect("one element")
            } else {
                let subs = factor_alternation(subs, self.flags);
                Regexp::alternate_no_factor(subs, self.flags)
            }
        } else {
            Regexp::concat(subs, self.flags)
        };
        self.stack.push(Item::Re(re));
    }

    fn right_paren(&mut self, at: usize) -> Result<(), Re2Error> {
        self.do_alternation();
        let n = self.stack.len();
        let (r1, paren) = if n >= 2 {
            match (&self.stack[n - 1], &self.stack[n - 2]) {
                (Item::Re(_), Item::LeftParen { .. }) => {
                    let r1 = self.stack.pop().expect("two items");
                    let paren = self.stack.pop().expect("two items");
                    (r1, paren)
                }
                _ => return Err(syntax(at, "unexpected `)`".to_string())),
            }
        } else {
            return Err(syntax(at, "unexpected `)`".to_string()));
        };
        let (Item::Re(r1), Item::LeftParen { cap, flags }) = (r1, paren) else {
            unreachable!("matched above")
        };
        self.flags = flags;
        let re = match cap {
            Some(cap) => Regexp::new(
                Op::Capture {
                    sub: Box::new(finish(r1)),
                    cap,
                },
                flags,
            ),
            None => r1,
        };
        self.push_re(re);
        Ok(())
    }

    fn finish(&mut self) -> Result<Regexp, Re2Error> {
        self.do_alternation();
        let open = self
            .stack
            .iter()
            .filter(|i| matches!(i, Item::LeftParen { .. }))
            .count();
        if open > 0 || self.stack.len() != 1 {
            return Err(syntax(
                self.pat.len(),
                format!("missing `)`: {open} group(s) left open"),
            ));
        }
        let Some(Item::Re(re)) = self.stack.pop() else {
            unreachable!("one item, not a marker")
        };
        Ok(finish(re))
    }

    // ---- (? ... ----------------------------------------------------------------------

    fn perl_flags(&mut self) -> Result<(), Re2Error> {
        let s = &self.pat[self.pos..];
        let at = self.pos;
        let t2 = s.get(2).copied();
        let t3 = s.get(3).copied();
        if s.len() > 3 && matches!(t2, Some(b'=' | b'!')) {
            let kind = if t2 == Some(b'=') {
                "look-ahead"
            } else {
                "negative look-ahead"
            };
            return Err(unsupported(
                at,
                &s[..3],
                format!("{kind} `{}` is not supported by RE2", show(&s[..3])),
            ));
        }
        if s.len() > 4 && t2 == Some(b'<') && matches!(t3, Some(b'=' | b'!')) {
            let kind = if t3 == Some(b'=') {
                "look-behind"
            } else {
                "negative look-behind"
            };
            return Err(unsupported(
                at,
                &s[..4],
                format!("{kind} `{}` is not supported by RE2", show(&s[..4])),
            ));
        }
        if (s.len() > 4 && t2 == Some(b'P') && t3 == Some(b'<'))
            || (s.len() > 3 && t2 == Some(b'<'))
        {
            let begin = if t2 == Some(b'P') { 4 } else { 3 };
            let Some(end) = s[2..].iter().position(|&b| b == b'>').map(|e| e + 2) else {
                return Err(syntax(
                    at,
                    format!("invalid named capture group `{}`", show(s)),
                ));
            };
            let name = &s[begin..end];
            if !valid_capture_name(name) {
                return Err(syntax(
                    at,
                    format!("invalid named capture group `{}`", show(&s[..=end])),
                ));
            }
            self.ncap += 1;
            let cap = Some(self.ncap);
            self.push(Item::LeftParen {
                cap,
                flags: self.flags,
            });
            self.pos += end + 1;
            return Ok(());
        }
        let mut negated = false;
        let mut saw_flag = false;
        let mut nflags = self.flags;
        let mut i = 2;
        loop {
            let Some(&c) = s.get(i) else {
                return Err(self.bad_perl_op(at, i));
            };
            i += 1;
            match c {
                b'i' | b'm' | b's' | b'U' => {
                    saw_flag = true;
                    let (bit, set) = match c {
                        b'i' => (FOLD_CASE, !negated),
                        b'm' => (ONE_LINE, negated),
                        b's' => (DOT_NL, !negated),
                        _ => (NON_GREEDY, !negated),
                    };
                    if set {
                        nflags |= bit;
                    } else {
                        nflags &= !bit;
                    }
                }
                b'-' => {
                    if negated {
                        return Err(self.bad_perl_op(at, i));
                    }
                    negated = true;
                    saw_flag = false;
                }
                b':' => {
                    self.push(Item::LeftParen {
                        cap: None,
                        flags: self.flags,
                    });
                    break;
                }
                b')' => break,
                _ => return Err(self.bad_perl_op(at, i)),
            }
        }
        if negated && !saw_flag {
            return Err(self.bad_perl_op(at, i));
        }
        self.flags = nflags;
        self.pos += i;
        Ok(())
    }

    fn bad_perl_op(&self, at: usize, len: usize) -> Re2Error {
        let len = len.min(self.pat.len() - at);
        let text = &self.pat[at..at + len];
        let what = match (text.get(2), text.last()) {
            (Some(b'>'), _) => Some("atomic group"),
            (Some(b'('), _) => Some("conditional"),
            (Some(b'#'), _) => Some("comment group"),
            (Some(b'|'), _) => Some("branch reset group"),
            (Some(b'P'), _) if matches!(self.pat.get(at + 3), Some(b'=')) => {
                Some("named backreference")
            }
            (Some(b'P'), _) if matches!(self.pat.get(at + 3), Some(b'>')) => {
                Some("subroutine call")
            }
            (Some(b'R' | b'0'..=b'9' | b'&' | b'+'), _) => Some("recursion"),
            (_, Some(b'x')) => Some("flag `x` (extended mode)"),
            (_, Some(b'u')) => Some("flag `u`"),
            (_, Some(b'R')) => Some("flag `R`"),
            (_, Some(b'n')) => Some("flag `n`"),
            (_, Some(b'J')) => Some("flag `J`"),
            _ => None,
        };
        match what {
            Some(what) => unsupported(
                at,
                text,
                format!("{what} `{}` is not supported by RE2", show(text)),
            ),
            None => syntax(at, format!("invalid group or flags `{}`", show(text))),
        }
    }

    // ---- escapes ---------------------------------------------------------------------

    fn escape_top(&mut self) -> Result<(), Re2Error> {
        let at = self.pos;
        match self.peek(1) {
            Some(c @ (b'b' | b'B')) => {
                self.note(
                    at,
                    format!(
                        "`\\{}` is an ASCII word boundary in RE2: only `[0-9A-Za-z_]` are word characters",
                        c as char
                    ),
                );
                self.push_op(if c == b'b' {
                    Op::WordBoundary
                } else {
                    Op::NoWordBoundary
                });
                self.pos += 2;
                return Ok(());
            }
            Some(b'A') => {
                self.push_op(Op::BeginText);
                self.pos += 2;
                return Ok(());
            }
            Some(b'z') => {
                self.push_op(Op::EndText);
                self.pos += 2;
                return Ok(());
            }
            Some(b'C') => {
                self.note(at, "`\\C` matches any single byte".to_string());
                self.push_op(Op::AnyByte);
                self.pos += 2;
                return Ok(());
            }
            Some(b'Q') => {
                self.pos += 2;
                while self.pos < self.pat.len() {
                    if self.pat[self.pos] == b'\\' && self.peek(1) == Some(b'E') {
                        self.pos += 2;
                        break;
                    }
                    let c = self.pat[self.pos];
                    self.literal_note(self.pos);
                    self.push_literal(u32::from(c));
                    self.pos += 1;
                }
                return Ok(());
            }
            Some(b'p' | b'P') => {
                let mut cc = Class::new();
                self.unicode_group(&mut cc)?;
                self.push_re(Regexp::new(
                    Op::CharClass { cc, builder: true },
                    self.flags & !FOLD_CASE,
                ));
                return Ok(());
            }
            Some(c) => {
                if let Some(g) = class::perl_group(c) {
                    self.perl_note(at, c);
                    let mut cc = Class::new();
                    class::add_group(&mut cc, &g, g.negated, self.flags & FOLD_CASE != 0);
                    self.push_re(Regexp::new(
                        Op::CharClass { cc, builder: true },
                        self.flags & !FOLD_CASE,
                    ));
                    self.pos += 2;
                    return Ok(());
                }
            }
            None => {}
        }
        let r = self.escape(false)?;
        self.push_literal(r);
        Ok(())
    }

    fn perl_note(&mut self, at: usize, c: u8) {
        let what = match c.to_ascii_lowercase() {
            b'd' => "`[0-9]`",
            b's' => "`[\\t\\n\\f\\r ]` (no `\\v`, no Unicode spaces)",
            _ => "`[0-9A-Za-z_]`",
        };
        self.note(
            at,
            format!(
                "`\\{}` is ASCII-only in RE2: {}{}",
                c as char,
                if c.is_ascii_uppercase() {
                    "everything but "
                } else {
                    ""
                },
                what
            ),
        );
    }

    /// RE2's `ParseEscape` at `self.pos` (a backslash): the rune it stands for.
    fn escape(&mut self, in_class: bool) -> Result<u32, Re2Error> {
        let at = self.pos;
        let s = self.pat;
        let Some(&c) = s.get(at + 1) else {
            return Err(syntax(at, "trailing backslash `\\`".to_string()));
        };
        let mut i = at + 2;
        let bad = |end: usize| -> Re2Error { bad_escape(s, at, end.min(s.len())) };
        match c {
            b'1'..=b'7' if !matches!(s.get(i), Some(b'0'..=b'7')) => Err(bad(i)),
            b'0'..=b'7' => {
                let mut code = u32::from(c - b'0');
                for _ in 0..2 {
                    match s.get(i) {
                        Some(&d @ b'0'..=b'7') => {
                            code = code * 8 + u32::from(d - b'0');
                            i += 1;
                        }
                        _ => break,
                    }
                }
                if code > LATIN1_MAX {
                    return Err(bad(i));
                }
                self.pos = i;
                Ok(code)
            }
            b'x' => {
                let Some(&c1) = s.get(i) else {
                    return Err(bad(i));
                };
                i += 1;
                if c1 == b'{' {
                    let mut nhex = 0;
                    let mut code = 0u32;
                    loop {
                        let Some(&d) = s.get(i) else {
                            return Err(bad(i));
                        };
                        i += 1;
                        match (d as char).to_digit(16) {
                            Some(v) => {
                                nhex += 1;
                                code = code * 16 + v;
                                if code > LATIN1_MAX {
                                    // Take the rest of the escape for the message.
                                    while s.get(i).is_some_and(u8::is_ascii_hexdigit) {
                                        i += 1;
                                    }
                                    if s.get(i) == Some(&b'}') {
                                        i += 1;
                                    }
                                    return Err(bad(i));
                                }
                            }
                            None if d == b'}' && nhex > 0 => {
                                self.pos = i;
                                return Ok(code);
                            }
                            None => return Err(bad(i)),
                        }
                    }
                }
                let Some(&c2) = s.get(i) else {
                    return Err(bad(i));
                };
                i += 1;
                match ((c1 as char).to_digit(16), (c2 as char).to_digit(16)) {
                    (Some(a), Some(b)) => {
                        self.pos = i;
                        Ok(a * 16 + b)
                    }
                    _ => Err(bad(i)),
                }
            }
            b'n' | b'r' | b't' | b'a' | b'f' | b'v' => {
                self.pos = i;
                Ok(u32::from(match c {
                    b'n' => b'\n',
                    b'r' => b'\r',
                    b't' => b'\t',
                    b'a' => 0x07,
                    b'f' => 0x0C,
                    _ => 0x0B,
                }))
            }
            _ if c < 0x80 && !c.is_ascii_alphanumeric() => {
                if !in_class && (c == b'<' || c == b'>') {
                    self.note(
                        at,
                        format!(
                            "`\\{}` is the literal `{}` in RE2, not a word boundary",
                            c as char, c as char
                        ),
                    );
                }
                self.pos = i;
                Ok(u32::from(c))
            }
            _ => Err(bad(i)),
        }
    }

    // ---- classes ---------------------------------------------------------------------

    /// RE2's `ParseUnicodeGroup` at `self.pos` (`\p` or `\P`), adding to `cc`.
    fn unicode_group(&mut self, cc: &mut Class) -> Result<(), Re2Error> {
        let at = self.pos;
        let s = self.pat;
        let mut negated = s[at + 1] == b'P';
        let Some(&c) = s.get(at + 2) else {
            return Err(syntax(at, "invalid character class `\\p`".to_string()));
        };
        let (name, end) = if c == b'{' {
            match s[at + 3..].iter().position(|&b| b == b'}') {
                Some(close) => (&s[at + 3..at + 3 + close], at + 3 + close + 1),
                None => {
                    return Err(syntax(
                        at,
                        format!("unterminated character class `{}`", show(&s[at..])),
                    ))
                }
            }
        } else {
            (&s[at + 2..at + 3], at + 3)
        };
        let seq = &s[at..end];
        let name = match name.strip_prefix(b"^") {
            Some(rest) => {
                negated = !negated;
                rest
            }
            None => name,
        };
        let text = show(name);
        let group = std::str::from_utf8(name)
            .ok()
            .filter(|n| n.is_ascii())
            .and_then(class::unicode_group);
        let Some(group) = group else {
            if class::other_engines_know(&text) {
                return Err(unsupported(
                    at,
                    seq,
                    format!(
                        "unicode class `{}` is not supported by RE2, which knows only one- and two-letter general categories (`\\pL`, `\\p{{Lu}}`) and script names (`\\p{{Greek}}`)",
                        show(seq)
                    ),
                ));
            }
            return Err(syntax(at, format!("unknown unicode class `{}`", show(seq))));
        };
        self.unicode_note(at, seq);
        class::add_group(cc, &group, negated, self.flags & FOLD_CASE != 0);
        self.pos = end;
        Ok(())
    }

    fn unicode_note(&mut self, at: usize, seq: &[u8]) {
        self.note(
            at,
            format!(
                "`{}` matches only its Latin-1 members (`\\x00`-`\\xff`): Envoy's RE2 reads bytes as Latin-1",
                show(seq)
            ),
        );
    }

    /// RE2's `ParseCharClass` at `self.pos` (a `[`).
    fn char_class(&mut self) -> Result<Regexp, Re2Error> {
        let start = self.pos;
        let s = self.pat;
        let mut cc = Class::new();
        let fold = self.flags & FOLD_CASE != 0;
        self.pos += 1;
        let mut negated = false;
        if self.peek(0) == Some(b'^') {
            negated = true;
            self.pos += 1;
        }
        let missing = |start: usize| {
            syntax(
                start,
                format!("missing `]` to close the class `{}`", show(&s[start..])),
            )
        };
        let mut first = true;
        while self.pos < s.len() && (s[self.pos] != b']' || first) {
            first = false;
            let at = self.pos;
            // Look for [:alnum:].
            if s.len() - at > 2 && s[at] == b'[' && s[at + 1] == b':' {
                let close =
                    (at + 2..s.len().saturating_sub(1)).find(|&q| s[q] == b':' && s[q + 1] == b']');
                if let Some(q) = close {
                    let name = &s[at..q + 2];
                    let Some(g) = class::posix_group(&s[at + 2..q]) else {
                        return Err(syntax(
                            at,
                            format!("invalid character class `{}`", show(name)),
                        ));
                    };
                    class::add_group(&mut cc, &g, g.negated, fold);
                    self.pos = q + 2;
                    continue;
                }
            }
            if s.len() - at > 2 && s[at] == b'\\' && matches!(s[at + 1], b'p' | b'P') {
                self.unicode_group(&mut cc)?;
                continue;
            }
            if s.len() - at >= 2 && s[at] == b'\\' {
                if let Some(g) = class::perl_group(s[at + 1]) {
                    self.perl_note(at, s[at + 1]);
                    class::add_group(&mut cc, &g, g.negated, fold);
                    self.pos += 2;
                    continue;
                }
            }
            self.class_set_note(at, start);
            let lo = self.class_char(start)?;
            let hi = if s.len() - self.pos >= 2 && s[self.pos] == b'-' && s[self.pos + 1] != b']' {
                self.pos += 1;
                let hi = self.class_char(start)?;
                if hi < lo {
                    return Err(syntax(
                        at,
                        format!("invalid character class range `{}`", show(&s[at..self.pos])),
                    ));
                }
                hi
            } else {
                lo
            };
            cc.add_range_flags(lo, hi, fold);
        }
        if self.pos >= s.len() {
            return Err(missing(start));
        }
        self.pos += 1;
        if negated {
            cc.negate();
        }
        Ok(Regexp::new(
            Op::CharClass { cc, builder: true },
            self.flags & !FOLD_CASE,
        ))
    }

    fn class_set_note(&mut self, at: usize, start: usize) {
        let s = self.pat;
        let two = &s[at..(at + 2).min(s.len())];
        if matches!(two, b"&&" | b"--" | b"~~") && at > start + 1 {
            self.note(
                at,
                format!(
                    "`{}` is literal text in an RE2 class: RE2 has no class set operations",
                    show(two)
                ),
            );
        } else if s[at] == b'[' {
            self.note(
                at,
                "`[` is a literal inside an RE2 class: RE2 has no nested classes".to_string(),
            );
        }
    }

    /// RE2's `ParseCCCharacter`.
    fn class_char(&mut self, start: usize) -> Result<u32, Re2Error> {
        let s = self.pat;
        if self.pos >= s.len() {
            return Err(syntax(
                start,
                format!("missing `]` to close the class `{}`", show(&s[start..])),
            ));
        }
        if s[self.pos] == b'\\' {
            return self.escape(true);
        }
        let c = s[self.pos];
        self.literal_note(self.pos);
        self.pos += 1;
        Ok(u32::from(c))
    }
}

#[derive(Clone, Copy)]
enum RepOp {
    Star,
    Plus,
    Quest,
}

fn bad_escape(s: &[u8], at: usize, end: usize) -> Re2Error {
    let text = &s[at..end];
    let c = text.get(1).copied().unwrap_or(b'\\');
    let message = match c {
        b'1'..=b'9' => Some(format!("backreference `{}` is not supported by RE2", show(text))),
        b'k' | b'g' => Some(format!(
            "backreference `\\{}` is not supported by RE2",
            c as char
        )),
        b'Z' => Some("`\\Z` is not supported by RE2: use `\\z` or `$`".to_string()),
        b'G' => Some("`\\G` is not supported by RE2".to_string()),
        b'K' => Some("`\\K` is not supported by RE2".to_string()),
        b'u' | b'U' => Some(format!(
            "`\\{}` escapes are not supported by RE2: use `\\x{{...}}` up to `\\xff`",
            c as char
        )),
        b'x' | b'0'..=b'7' if text.len() > 2 => Some(format!(
            "`{}` is above `\\xff`: Envoy's RE2 reads patterns as Latin-1, so only runes up to `\\xff` exist",
            show(text)
        )),
        b'h' | b'H' | b'R' | b'X' | b'N' | b'e' | b'c' | b'o' | b'V' => Some(format!(
            "escape `\\{}` is not supported by RE2",
            c as char
        )),
        _ => None,
    };
    match message {
        Some(m) => unsupported(at, &text[..text.len().min(2)], m),
        None => syntax(at, format!("invalid escape sequence `{}`", show(text))),
    }
}

/// RE2's `ParseInteger`: decimal digits, no leading zero, below 10^8.
fn parse_int(s: &[u8], i: &mut usize) -> Option<i32> {
    let first = *s.get(*i)?;
    if !first.is_ascii_digit() {
        return None;
    }
    if first == b'0' && s.get(*i + 1).is_some_and(u8::is_ascii_digit) {
        return None;
    }
    let mut n: i32 = 0;
    while let Some(&d) = s.get(*i) {
        if !d.is_ascii_digit() {
            break;
        }
        if n >= 100_000_000 {
            return None;
        }
        n = n * 10 + i32::from(d - b'0');
        *i += 1;
    }
    Some(n)
}

/// RE2's `IsValidCaptureName`: letters, marks, digits and connector punctuation, which in
/// Latin-1 means ASCII word characters plus `ª µ º` and the Latin-1 letters.
fn valid_capture_name(name: &[u8]) -> bool {
    !name.is_empty()
        && name.iter().all(|&b| {
            b.is_ascii_alphanumeric()
                || b == b'_'
                || matches!(b, 0xAA | 0xB5 | 0xBA | 0xC0..=0xD6 | 0xD8..=0xF6 | 0xF8..=0xFF)
        })
}

/// RE2's `FinishRegexp`: a class stops being a builder once it is inside another node.
fn finish(mut re: Regexp) -> Regexp {
    if let Op::CharClass { builder, .. } = &mut re.op {
        *builder = false;
    }
    re
}

/// RE2's `RepetitionWalker`: the budget of 1000 divided by every enclosing count.
fn repetition_budget(re: &Regexp, parent: i32) -> i32 {
    let mut arg = parent;
    if let Op::Repeat { min, max, .. } = re.op {
        let m = if max < 0 { min } else { max };
        if m > 0 {
            arg /= m;
        }
    }
    let mut result = arg;
    let children: Vec<&Regexp> = match &re.op {
        Op::Concat(v) | Op::Alternate(v) => v.iter().collect(),
        _ => re.sub().into_iter().collect(),
    };
    for child in children {
        result = result.min(repetition_budget(child, arg));
    }
    result
}

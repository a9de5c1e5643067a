//! RE2's parsed regular expression (`Regexp`) and the alternation factoring its parser does.

use super::class::Class;

/// `(?i)`.
pub(super) const FOLD_CASE: u16 = 1;
/// Non-greedy repetition (`*?`, or greedy ones under `(?U)`).
pub(super) const NON_GREEDY: u16 = 1 << 1;
/// `^` and `$` match only at the ends of the text (the default; `(?m)` clears it).
pub(super) const ONE_LINE: u16 = 1 << 2;
/// `.` matches `\n` (`(?s)`).
pub(super) const DOT_NL: u16 = 1 << 3;
/// An end-of-text assertion written as `$` rather than `\z`.
pub(super) const WAS_DOLLAR: u16 = 1 << 4;

#[derive(Clone, Debug)]
pub(super) enum Op {
    NoMatch,
    EmptyMatch,
    Literal(u32),
    LiteralString(Vec<u32>),
    Concat(Vec<Regexp>),
    Alternate(Vec<Regexp>),
    Star(Box<Regexp>),
    Plus(Box<Regexp>),
    Quest(Box<Regexp>),
    Repeat {
        sub: Box<Regexp>,
        min: i32,
        max: i32,
    },
    Capture {
        sub: Box<Regexp>,
        cap: u32,
    },
    AnyChar,
    AnyByte,
    BeginLine,
    EndLine,
    WordBoundary,
    NoWordBoundary,
    BeginText,
    EndText,
    /// `builder` is true while RE2 would still hold a `CharClassBuilder` (a class the parser
    /// made and has not yet finished), which is when pushing it may turn it into a literal.
    CharClass {
        cc: Class,
        builder: bool,
    },
}

#[derive(Clone, Debug)]
pub(super) struct Regexp {
    pub(super) op: Op,
    pub(super) flags: u16,
}

impl Regexp {
    pub(super) fn new(op: Op, flags: u16) -> Self {
        Self { op, flags }
    }

    /// RE2's `LiteralString`: empty match, a literal or a string depending on the length.
    pub(super) fn literal_string(runes: &[u32], flags: u16) -> Self {
        match runes {
            [] => Self::new(Op::EmptyMatch, flags),
            [r] => Self::new(Op::Literal(*r), flags),
            _ => Self::new(Op::LiteralString(runes.to_vec()), flags),
        }
    }

    /// RE2's `ConcatOrAlternate` for concatenations: one element is itself.
    pub(super) fn concat(mut subs: Vec<Regexp>, flags: u16) -> Self {
        match subs.len() {
            0 => Self::new(Op::EmptyMatch, flags),
            1 => subs.pop().expect("one element"),
            _ => Self::new(Op::Concat(subs), flags),
        }
    }

    /// RE2's `AlternateNoFactor`.
    pub(super) fn alternate_no_factor(mut subs: Vec<Regexp>, flags: u16) -> Self {
        match subs.len() {
            0 => Self::new(Op::NoMatch, flags),
            1 => subs.pop().expect("one element"),
            _ => Self::new(Op::Alternate(subs), flags),
        }
    }

    pub(super) fn is_empty_match(&self) -> bool {
        matches!(self.op, Op::EmptyMatch)
    }

    pub(super) fn sub(&self) -> Option<&Regexp> {
        match &self.op {
            Op::Star(s) | Op::Plus(s) | Op::Quest(s) => Some(s),
            Op::Repeat { sub, .. } | Op::Capture { sub, .. } => Some(sub),
            _ => None,
        }
    }

    /// RE2's `Regexp::Equal`.
    pub(super) fn equal(&self, other: &Regexp) -> bool {
        let df = self.flags ^ other.flags;
        match (&self.op, &other.op) {
            (Op::NoMatch, Op::NoMatch)
            | (Op::EmptyMatch, Op::EmptyMatch)
            | (Op::AnyChar, Op::AnyChar)
            | (Op::AnyByte, Op::AnyByte)
            | (Op::BeginLine, Op::BeginLine)
            | (Op::EndLine, Op::EndLine)
            | (Op::WordBoundary, Op::WordBoundary)
            | (Op::NoWordBoundary, Op::NoWordBoundary)
            | (Op::BeginText, Op::BeginText) => true,
            (Op::EndText, Op::EndText) => df & WAS_DOLLAR == 0,
            (Op::Literal(a), Op::Literal(b)) => a == b && df & FOLD_CASE == 0,
            (Op::LiteralString(a), Op::LiteralString(b)) => a == b && df & FOLD_CASE == 0,
            (Op::Concat(a), Op::Concat(b)) | (Op::Alternate(a), Op::Alternate(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.equal(y))
            }
            (Op::Star(a), Op::Star(b))
            | (Op::Plus(a), Op::Plus(b))
            | (Op::Quest(a), Op::Quest(b)) => df & NON_GREEDY == 0 && a.equal(b),
            (
                Op::Repeat {
                    sub: a,
                    min: amin,
                    max: amax,
                },
                Op::Repeat {
                    sub: b,
                    min: bmin,
                    max: bmax,
                },
            ) => df & NON_GREEDY == 0 && amin == bmin && amax == bmax && a.equal(b),
            (Op::Capture { sub: a, cap: ac }, Op::Capture { sub: b, cap: bc }) => {
                ac == bc && a.equal(b)
            }
            (Op::CharClass { cc: a, .. }, Op::CharClass { cc: b, .. }) => a == b,
            _ => false,
        }
    }

    /// RE2's `ComputeSimple`: nodes the simplifier leaves alone.
    pub(super) fn simple(&self) -> bool {
        match &self.op {
            Op::Concat(subs) | Op::Alternate(subs) => subs.iter().all(Regexp::simple),
            Op::CharClass { cc, .. } => !cc.is_empty() && !cc.is_full(),
            Op::Capture { sub, .. } => sub.simple(),
            Op::Star(sub) | Op::Plus(sub) | Op::Quest(sub) => {
                sub.simple()
                    && !matches!(
                        sub.op,
                        Op::Star(_) | Op::Plus(_) | Op::Quest(_) | Op::EmptyMatch | Op::NoMatch
                    )
            }
            Op::Repeat { .. } => false,
            _ => true,
        }
    }
}

/// RE2's `LeadingString`: the literal text a regexp starts with, and its fold flag.
fn leading_string(re: &Regexp) -> (&[u32], u16) {
    let mut re = re;
    while let Op::Concat(subs) = &re.op {
        match subs.first() {
            Some(first) => re = first,
            None => break,
        }
    }
    let flags = re.flags & FOLD_CASE;
    match &re.op {
        Op::Literal(r) => (std::slice::from_ref(r), flags),
        Op::LiteralString(rs) => (rs, flags),
        _ => (&[], flags),
    }
}

/// RE2's `RemoveLeadingString`.
fn remove_leading_string(re: &mut Regexp, n: usize) {
    fn remove(re: &mut Regexp, n: usize, depth: usize) {
        if let Op::Concat(subs) = &mut re.op {
            if let Some(first) = subs.first_mut() {
                remove(first, n, depth + 1);
            }
            // RE2 only remembers four levels of concatenation to tidy up.
            if depth < 4 && subs.first().is_some_and(Regexp::is_empty_match) {
                if subs.len() == 2 {
                    let second = subs.pop().expect("two elements");
                    *re = second;
                } else if subs.len() > 2 {
                    subs.remove(0);
                }
            }
            return;
        }
        match &mut re.op {
            Op::Literal(_) => re.op = Op::EmptyMatch,
            Op::LiteralString(rs) => {
                if n >= rs.len() {
                    re.op = Op::EmptyMatch;
                } else if n == rs.len() - 1 {
                    re.op = Op::Literal(rs[rs.len() - 1]);
                } else {
                    rs.drain(..n);
                }
            }
            _ => {}
        }
    }
    remove(re, n, 0);
}

/// RE2's `LeadingRegexp`.
fn leading_regexp(re: &Regexp) -> Option<&Regexp> {
    match &re.op {
        Op::EmptyMatch => None,
        Op::Concat(subs) if subs.len() >= 2 => {
            if subs[0].is_empty_match() {
                None
            } else {
                Some(&subs[0])
            }
        }
        _ => Some(re),
    }
}

/// RE2's `RemoveLeadingRegexp`.
fn remove_leading_regexp(re: Regexp) -> Regexp {
    let flags = re.flags;
    match re.op {
        Op::EmptyMatch => re,
        Op::Concat(mut subs) if subs.len() >= 2 => {
            if subs[0].is_empty_match() {
                return Regexp::new(Op::Concat(subs), flags);
            }
            subs.remove(0);
            if subs.len() == 1 {
                subs.pop().expect("one element")
            } else {
                Regexp::new(Op::Concat(subs), flags)
            }
        }
        _ => Regexp::new(Op::EmptyMatch, flags),
    }
}

/// Whether round 2 may factor out `first`: an empty-width assertion, a class, any
/// character or byte, or a fixed repetition of a literal, class, or any character or byte.
fn factorable(first: &Regexp) -> bool {
    match &first.op {
        Op::BeginLine
        | Op::EndLine
        | Op::WordBoundary
        | Op::NoWordBoundary
        | Op::BeginText
        | Op::EndText
        | Op::CharClass { .. }
        | Op::AnyChar
        | Op::AnyByte => true,
        Op::Repeat { sub, min, max } => {
            min == max
                && matches!(
                    sub.op,
                    Op::Literal(_) | Op::CharClass { .. } | Op::AnyChar | Op::AnyByte
                )
        }
        _ => false,
    }
}

/// RE2's `FactorAlternation`: four rounds over the alternatives, recursing into the
/// suffixes of what rounds 1 and 2 factor out.
pub(super) fn factor_alternation(subs: Vec<Regexp>, flags: u16) -> Vec<Regexp> {
    let subs = round1(subs, flags);
    let subs = round2(subs, flags);
    let subs = round3(subs, flags);
    round4(subs)
}

/// Splits `subs` into runs, `same(prev_state, item)` deciding whether an item continues
/// the current run. Returns (start, end) of each run.
fn round1(mut subs: Vec<Regexp>, flags: u16) -> Vec<Regexp> {
    // Find runs sharing a literal prefix; the prefix shrinks as the run grows.
    let mut runs: Vec<(usize, usize, Vec<u32>, u16)> = Vec::new();
    let mut start = 0;
    let mut prefix: Vec<u32> = Vec::new();
    let mut pflags = 0u16;
    for i in 0..=subs.len() {
        let mut next: Option<(Vec<u32>, u16)> = None;
        if i < subs.len() {
            let (rs, fl) = leading_string(&subs[i]);
            if fl == pflags {
                let same = prefix.iter().zip(rs).take_while(|(a, b)| a == b).count();
                if same > 0 {
                    prefix.truncate(same);
                    continue;
                }
            }
            next = Some((rs.to_vec(), fl));
        }
        if i >= start + 2 {
            runs.push((start, i, prefix.clone(), pflags));
        }
        if let Some((rs, fl)) = next {
            start = i;
            prefix = rs;
            pflags = fl;
        }
    }
    if runs.is_empty() {
        return subs;
    }
    let mut out = Vec::new();
    let mut rest = subs.drain(..).enumerate().peekable();
    for (s, e, prefix, pflags) in runs {
        while rest.peek().is_some_and(|(i, _)| *i < s) {
            out.push(rest.next().expect("peeked").1);
        }
        let mut suffixes = Vec::with_capacity(e - s);
        while rest.peek().is_some_and(|(i, _)| *i < e) {
            let mut sub = rest.next().expect("peeked").1;
            remove_leading_string(&mut sub, prefix.len());
            suffixes.push(sub);
        }
        let suffixes = factor_alternation(suffixes, flags);
        let pre = Regexp::literal_string(&prefix, pflags);
        out.push(Regexp::concat(
            vec![pre, Regexp::alternate_no_factor(suffixes, flags)],
            flags,
        ));
    }
    out.extend(rest.map(|(_, s)| s));
    out
}

fn round2(mut subs: Vec<Regexp>, flags: u16) -> Vec<Regexp> {
    let mut runs: Vec<(usize, usize)> = Vec::new();
    let mut start = 0;
    let mut first: Option<usize> = None;
    for i in 0..=subs.len() {
        if i < subs.len() {
            if let Some(f) = first {
                let fr = leading_regexp(&subs[f]).expect("first is set only when present");
                if factorable(fr) && leading_regexp(&subs[i]).is_some_and(|x| fr.equal(x)) {
                    continue;
                }
            }
        }
        if i >= start + 2 {
            runs.push((start, i));
        }
        if i < subs.len() {
            start = i;
            first = leading_regexp(&subs[i]).map(|_| i);
        }
    }
    if runs.is_empty() {
        return subs;
    }
    let mut out = Vec::new();
    let mut rest = subs.drain(..).enumerate().peekable();
    for (s, e) in runs {
        while rest.peek().is_some_and(|(i, _)| *i < s) {
            out.push(rest.next().expect("peeked").1);
        }
        let mut prefix = None;
        let mut suffixes = Vec::with_capacity(e - s);
        while rest.peek().is_some_and(|(i, _)| *i < e) {
            let sub = rest.next().expect("peeked").1;
            if prefix.is_none() {
                prefix = leading_regexp(&sub).cloned();
            }
            suffixes.push(remove_leading_regexp(sub));
        }
        let suffixes = factor_alternation(suffixes, flags);
        let prefix = prefix.expect("a run has a leading regexp");
        out.push(Regexp::concat(
            vec![prefix, Regexp::alternate_no_factor(suffixes, flags)],
            flags,
        ));
    }
    out.extend(rest.map(|(_, s)| s));
    out
}

fn is_lit_or_class(re: &Regexp) -> bool {
    matches!(re.op, Op::Literal(_) | Op::CharClass { .. })
}

fn round3(subs: Vec<Regexp>, flags: u16) -> Vec<Regexp> {
    let mut out: Vec<Regexp> = Vec::new();
    let mut run: Vec<Regexp> = Vec::new();
    let flush = |run: &mut Vec<Regexp>, out: &mut Vec<Regexp>| {
        if run.len() >= 2 {
            let mut cc = Class::new();
            for re in run.drain(..) {
                match re.op {
                    Op::CharClass { cc: c, .. } => cc.add_class(&c),
                    Op::Literal(r) => {
                        let mut tmp = Class::new();
                        tmp.add_range_flags(r, r, re.flags & FOLD_CASE != 0);
                        cc.add_class(&tmp);
                    }
                    _ => unreachable!("runs hold only literals and classes"),
                }
            }
            out.push(Regexp::new(
                Op::CharClass { cc, builder: false },
                flags & !FOLD_CASE,
            ));
        } else {
            out.append(run);
        }
    };
    for sub in subs {
        if is_lit_or_class(&sub) && run.first().is_some_and(is_lit_or_class) {
            run.push(sub);
            continue;
        }
        flush(&mut run, &mut out);
        run.push(sub);
    }
    flush(&mut run, &mut out);
    out
}

fn round4(subs: Vec<Regexp>) -> Vec<Regexp> {
    let mut out: Vec<Regexp> = Vec::new();
    for sub in subs {
        if sub.is_empty_match() && out.last().is_some_and(Regexp::is_empty_match) {
            continue;
        }
        out.push(sub);
    }
    out
}

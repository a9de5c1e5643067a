//! RE2's simplifier (`simplify.cc`) and compiler (`compile.cc`) for Latin-1, with the
//! `Optimize` and `Flatten` passes of `prog.cc` that decide `ProgramSize()`.

use super::class::LATIN1_MAX;
use super::regexp::{Op, Regexp, FOLD_CASE, NON_GREEDY};

/// Instruction budget after which compilation gives up. RE2 itself fails at about 87,000
/// instructions (two thirds of the default 8 MiB `max_mem`); anything this large is far
/// beyond any program size limit.
pub(super) const MAX_INST: usize = 100_000;

/// The deepest regexp the recursive passes walk. Deeper ones are reported as too large.
pub(super) const MAX_DEPTH: usize = 1000;

// ---- simplification ------------------------------------------------------------------

fn depth(re: &Regexp) -> usize {
    let mut best = 0;
    let mut stack = vec![(re, 1usize)];
    while let Some((re, d)) = stack.pop() {
        best = best.max(d);
        match &re.op {
            Op::Concat(v) | Op::Alternate(v) => stack.extend(v.iter().map(|s| (s, d + 1))),
            _ => stack.extend(re.sub().map(|s| (s, d + 1))),
        }
    }
    best
}

/// Whether the tree is shallow enough for the recursive passes.
pub(super) fn shallow(re: &Regexp) -> bool {
    depth(re) <= MAX_DEPTH
}

fn is_repeat_of_atom(re: &Regexp) -> Option<&Regexp> {
    match &re.op {
        Op::Star(s) | Op::Plus(s) | Op::Quest(s) | Op::Repeat { sub: s, .. }
            if matches!(
                s.op,
                Op::Literal(_) | Op::CharClass { .. } | Op::AnyChar | Op::AnyByte
            ) =>
        {
            Some(s)
        }
        _ => None,
    }
}

fn is_repeat(re: &Regexp) -> bool {
    matches!(
        re.op,
        Op::Star(_) | Op::Plus(_) | Op::Quest(_) | Op::Repeat { .. }
    )
}

/// RE2's `CoalesceWalker::CanCoalesce`.
fn can_coalesce(r1: &Regexp, r2: &Regexp) -> bool {
    let Some(atom) = is_repeat_of_atom(r1) else {
        return false;
    };
    if is_repeat(r2)
        && r2.sub().is_some_and(|s| atom.equal(s))
        && (r1.flags & NON_GREEDY) == (r2.flags & NON_GREEDY)
    {
        return true;
    }
    if atom.equal(r2) {
        return true;
    }
    if let (Op::Literal(r), Op::LiteralString(rs)) = (&atom.op, &r2.op) {
        return rs[0] == *r && (atom.flags & FOLD_CASE) == (r2.flags & FOLD_CASE);
    }
    false
}

fn min_max(re: &Regexp) -> (i32, i32) {
    match re.op {
        Op::Star(_) => (0, -1),
        Op::Plus(_) => (1, -1),
        Op::Quest(_) => (0, 1),
        Op::Repeat { min, max, .. } => (min, max),
        _ => (1, 1),
    }
}

/// RE2's `CoalesceWalker::DoCoalesce`: returns the new (r1, r2).
fn do_coalesce(r1: Regexp, r2: Regexp) -> (Regexp, Regexp) {
    let atom = r1.sub().expect("a repetition").clone();
    let (mut min, mut max) = min_max(&r1);
    let flags = r1.flags;
    let empty = || Regexp::new(Op::EmptyMatch, 0);
    let repeat = |atom: Regexp, min, max| {
        Regexp::new(
            Op::Repeat {
                sub: Box::new(atom),
                min,
                max,
            },
            flags,
        )
    };
    match &r2.op {
        Op::Star(_) => max = -1,
        Op::Plus(_) => {
            min += 1;
            max = -1;
        }
        Op::Quest(_) => {
            if max != -1 {
                max += 1;
            }
        }
        Op::Repeat {
            min: m2, max: x2, ..
        } => {
            min += m2;
            if *x2 == -1 {
                max = -1;
            } else if max != -1 {
                max += x2;
            }
        }
        Op::LiteralString(rs) => {
            let Op::Literal(r) = atom.op else {
                unreachable!("checked by can_coalesce")
            };
            let n = rs.iter().take_while(|&&x| x == r).count().max(1);
            min += n as i32;
            if max != -1 {
                max += n as i32;
            }
            if n == rs.len() {
                return (empty(), repeat(atom, min, max));
            }
            let rest = Regexp::literal_string(&rs[n..], r2.flags);
            return (repeat(atom, min, max), rest);
        }
        _ => {
            min += 1;
            if max != -1 {
                max += 1;
            }
        }
    }
    (empty(), repeat(atom, min, max))
}

/// RE2's `CoalesceWalker`: merges `a*a+`, `\d\d*` and the like into counted repetitions.
fn coalesce(re: Regexp) -> Regexp {
    let flags = re.flags;
    match re.op {
        Op::Concat(subs) => {
            let mut subs: Vec<Regexp> = subs.into_iter().map(coalesce).collect();
            let any = subs.windows(2).any(|w| can_coalesce(&w[0], &w[1]));
            if !any {
                return Regexp::new(Op::Concat(subs), flags);
            }
            for i in 0..subs.len() - 1 {
                if can_coalesce(&subs[i], &subs[i + 1]) {
                    let r1 = std::mem::replace(&mut subs[i], Regexp::new(Op::NoMatch, 0));
                    let r2 = std::mem::replace(&mut subs[i + 1], Regexp::new(Op::NoMatch, 0));
                    let (a, b) = do_coalesce(r1, r2);
                    subs[i] = a;
                    subs[i + 1] = b;
                }
            }
            let subs: Vec<Regexp> = subs.into_iter().filter(|s| !s.is_empty_match()).collect();
            // RE2 builds the concatenation directly, even of fewer than two elements.
            Regexp::new(Op::Concat(subs), flags)
        }
        op => Regexp::new(map_subs(op, coalesce), flags),
    }
}

fn map_subs(op: Op, f: fn(Regexp) -> Regexp) -> Op {
    match op {
        Op::Alternate(v) => Op::Alternate(v.into_iter().map(f).collect()),
        Op::Star(s) => Op::Star(Box::new(f(*s))),
        Op::Plus(s) => Op::Plus(Box::new(f(*s))),
        Op::Quest(s) => Op::Quest(Box::new(f(*s))),
        Op::Repeat { sub, min, max } => Op::Repeat {
            sub: Box::new(f(*sub)),
            min,
            max,
        },
        Op::Capture { sub, cap } => Op::Capture {
            sub: Box::new(f(*sub)),
            cap,
        },
        op => op,
    }
}

/// RE2's `Regexp::StarPlusOrQuest`, which squashes nested repetitions.
fn star_plus_quest(kind: u8, sub: Regexp, flags: u16) -> Regexp {
    let same = matches!(
        (kind, &sub.op),
        (b'*', Op::Star(_)) | (b'+', Op::Plus(_)) | (b'?', Op::Quest(_))
    );
    if same && flags == sub.flags {
        return sub;
    }
    if matches!(sub.op, Op::Star(_) | Op::Plus(_) | Op::Quest(_)) && flags == sub.flags {
        if matches!(sub.op, Op::Star(_)) {
            return sub;
        }
        let inner = sub.sub().expect("a repetition").clone();
        return Regexp::new(Op::Star(Box::new(inner)), flags);
    }
    let b = Box::new(sub);
    let op = match kind {
        b'*' => Op::Star(b),
        b'+' => Op::Plus(b),
        _ => Op::Quest(b),
    };
    Regexp::new(op, flags)
}

fn is_empty_op(re: &Regexp) -> bool {
    matches!(
        re.op,
        Op::BeginLine
            | Op::EndLine
            | Op::WordBoundary
            | Op::NoWordBoundary
            | Op::BeginText
            | Op::EndText
    )
}

/// RE2's `SimplifyWalker::SimplifyRepeat`.
fn simplify_repeat(re: Regexp, mut min: i32, mut max: i32, f: u16) -> Regexp {
    let all_empty = match &re.op {
        Op::Concat(v) | Op::Alternate(v) => v.iter().all(is_empty_op),
        _ => false,
    };
    if is_empty_op(&re) || all_empty {
        min = min.min(1);
        max = max.min(1);
    }
    if max == -1 {
        if min == 0 {
            return star_plus_quest(b'*', re, f);
        }
        if min == 1 {
            return star_plus_quest(b'+', re, f);
        }
        let mut subs: Vec<Regexp> = (0..min - 1).map(|_| re.clone()).collect();
        subs.push(star_plus_quest(b'+', re, f));
        return Regexp::concat(subs, f);
    }
    if min == 0 && max == 0 {
        return Regexp::new(Op::EmptyMatch, f);
    }
    if min == 1 && max == 1 {
        return re;
    }
    let mut nre = None;
    if min > 0 {
        let subs: Vec<Regexp> = (0..min).map(|_| re.clone()).collect();
        nre = Some(Regexp::concat(subs, f));
    }
    if max > min {
        let mut suf = star_plus_quest(b'?', re.clone(), f);
        for _ in min + 1..max {
            suf = star_plus_quest(b'?', Regexp::new(Op::Concat(vec![re.clone(), suf]), f), f);
        }
        nre = Some(match nre {
            None => suf,
            Some(pre) => Regexp::new(Op::Concat(vec![pre, suf]), f),
        });
    }
    nre.unwrap_or_else(|| Regexp::new(Op::NoMatch, f))
}

/// RE2's `SimplifyWalker`: expands counted repetitions and special classes.
fn simplify_walk(re: Regexp) -> Regexp {
    if re.simple() {
        return re;
    }
    let flags = re.flags;
    match re.op {
        Op::Concat(v) => Regexp::new(
            Op::Concat(v.into_iter().map(simplify_walk).collect()),
            flags,
        ),
        Op::Alternate(v) => Regexp::new(
            Op::Alternate(v.into_iter().map(simplify_walk).collect()),
            flags,
        ),
        Op::Capture { sub, cap } => Regexp::new(
            Op::Capture {
                sub: Box::new(simplify_walk(*sub)),
                cap,
            },
            flags,
        ),
        op @ (Op::Star(_) | Op::Plus(_) | Op::Quest(_)) => {
            let (kind, sub) = match op {
                Op::Star(s) => (b'*', s),
                Op::Plus(s) => (b'+', s),
                Op::Quest(s) => (b'?', s),
                _ => unreachable!("matched above"),
            };
            let was_simple = sub.simple();
            let newsub = simplify_walk(*sub);
            if newsub.is_empty_match() {
                return newsub;
            }
            if was_simple {
                return Regexp::new(rebuild(kind, newsub), flags);
            }
            let same = matches!(
                (kind, &newsub.op),
                (b'*', Op::Star(_)) | (b'+', Op::Plus(_)) | (b'?', Op::Quest(_))
            );
            if same && flags == newsub.flags {
                return newsub;
            }
            Regexp::new(rebuild(kind, newsub), flags)
        }
        Op::Repeat { sub, min, max } => {
            let newsub = simplify_walk(*sub);
            if newsub.is_empty_match() {
                return newsub;
            }
            simplify_repeat(newsub, min, max, flags)
        }
        Op::CharClass { cc, builder } => {
            if cc.is_empty() {
                Regexp::new(Op::NoMatch, flags)
            } else if cc.is_full() {
                Regexp::new(Op::AnyChar, flags)
            } else {
                Regexp::new(Op::CharClass { cc, builder }, flags)
            }
        }
        op => Regexp::new(op, flags),
    }
}

fn rebuild(kind: u8, sub: Regexp) -> Op {
    let b = Box::new(sub);
    match kind {
        b'*' => Op::Star(b),
        b'+' => Op::Plus(b),
        _ => Op::Quest(b),
    }
}

/// RE2's `Regexp::Simplify`.
pub(super) fn simplify(re: Regexp) -> Regexp {
    simplify_walk(coalesce(re))
}

// ---- anchors and the required prefix -------------------------------------------------

/// RE2's `RequiredPrefix`: `^literal...` is matched with `memcmp` and only the rest is
/// compiled, without the `^`.
pub(super) fn strip_required_prefix(re: Regexp) -> Regexp {
    let flags = re.flags;
    let Op::Concat(subs) = re.op else {
        return re;
    };
    let anchors = subs
        .iter()
        .take_while(|s| matches!(s.op, Op::BeginText))
        .count();
    let is_prefix = anchors > 0
        && anchors < subs.len()
        && matches!(subs[anchors].op, Op::Literal(_) | Op::LiteralString(_));
    if !is_prefix {
        return Regexp::new(Op::Concat(subs), flags);
    }
    let rest: Vec<Regexp> = subs.into_iter().skip(anchors + 1).collect();
    if rest.is_empty() {
        return Regexp::new(Op::EmptyMatch, flags);
    }
    Regexp::concat(rest, flags)
}

/// RE2's `IsAnchorStart` / `IsAnchorEnd`: removes a leading `^` (trailing `$`) found
/// through at most four levels of concatenation and capture.
fn strip_anchor(re: &mut Regexp, start: bool, depth: usize) -> bool {
    if depth >= 4 {
        return false;
    }
    let flags = re.flags;
    match &mut re.op {
        Op::Concat(subs) if !subs.is_empty() => {
            let i = if start { 0 } else { subs.len() - 1 };
            strip_anchor(&mut subs[i], start, depth + 1)
        }
        Op::Capture { sub, .. } => strip_anchor(sub, start, depth + 1),
        Op::BeginText if start => {
            *re = Regexp::new(Op::EmptyMatch, flags);
            true
        }
        Op::EndText if !start => {
            *re = Regexp::new(Op::EmptyMatch, flags);
            true
        }
        _ => false,
    }
}

// ---- compilation ---------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Alt,
    AltMatch,
    ByteRange(u8, u8),
    Capture,
    EmptyWidth,
    Match,
    Nop,
    Fail,
}

#[derive(Clone, Copy, Debug)]
struct Inst {
    kind: Kind,
    out: u32,
    out1: u32,
}

/// A hole to patch: an instruction and whether it is its `out1`.
type Hole = (u32, bool);

/// A fragment's holes: nearly always one, kept without a list.
#[derive(Clone, Debug)]
enum Holes {
    None,
    One(Hole),
    Many(Vec<Hole>),
}

impl Holes {
    fn as_slice(&self) -> &[Hole] {
        match self {
            Holes::None => &[],
            Holes::One(h) => std::slice::from_ref(h),
            Holes::Many(v) => v,
        }
    }
    fn push(&mut self, h: Hole) {
        *self = match std::mem::replace(self, Holes::None) {
            Holes::None => Holes::One(h),
            Holes::One(a) => Holes::Many(vec![a, h]),
            Holes::Many(mut v) => {
                v.push(h);
                Holes::Many(v)
            }
        };
    }
    fn append(&mut self, other: Holes) {
        match other {
            Holes::None => {}
            Holes::One(h) => self.push(h),
            Holes::Many(v) => {
                if let Holes::Many(mine) = self {
                    mine.extend(v);
                } else {
                    let mut all = self.as_slice().to_vec();
                    all.extend(v);
                    *self = Holes::Many(all);
                }
            }
        }
    }
}

#[derive(Clone, Debug)]
struct Frag {
    begin: u32,
    end: Holes,
    nullable: bool,
}

impl Frag {
    fn no_match() -> Self {
        Frag {
            begin: 0,
            end: Holes::None,
            nullable: false,
        }
    }
    fn is_no_match(&self) -> bool {
        self.begin == 0
    }
}

pub(super) struct TooBig;

struct Compiler {
    inst: Vec<Inst>,
}

impl Compiler {
    fn alloc(&mut self, kind: Kind) -> Result<u32, TooBig> {
        if self.inst.len() >= MAX_INST {
            return Err(TooBig);
        }
        self.inst.push(Inst {
            kind,
            out: 0,
            out1: 0,
        });
        Ok((self.inst.len() - 1) as u32)
    }

    fn patch(&mut self, holes: &[Hole], to: u32) {
        for &(id, one) in holes {
            let inst = &mut self.inst[id as usize];
            if one {
                inst.out1 = to;
            } else {
                inst.out = to;
            }
        }
    }

    fn cat(&mut self, a: Frag, b: Frag) -> Frag {
        if a.is_no_match() || b.is_no_match() {
            return Frag::no_match();
        }
        let begin = self.inst[a.begin as usize];
        if begin.kind == Kind::Nop && a.end.as_slice() == [(a.begin, false)] && begin.out == 0 {
            self.patch(a.end.as_slice(), b.begin);
            return b;
        }
        self.patch(a.end.as_slice(), b.begin);
        Frag {
            begin: a.begin,
            end: b.end,
            nullable: a.nullable && b.nullable,
        }
    }

    fn alt(&mut self, a: Frag, b: Frag) -> Result<Frag, TooBig> {
        if a.is_no_match() {
            return Ok(b);
        }
        if b.is_no_match() {
            return Ok(a);
        }
        let id = self.alloc(Kind::Alt)?;
        self.inst[id as usize].out = a.begin;
        self.inst[id as usize].out1 = b.begin;
        let mut end = a.end;
        end.append(b.end);
        Ok(Frag {
            begin: id,
            end,
            nullable: a.nullable || b.nullable,
        })
    }

    /// The loop instruction of `*`, `+` and `?`: an `Alt` whose preferred branch is `a`.
    fn loop_alt(&mut self, a_begin: u32, nongreedy: bool) -> Result<(u32, Hole), TooBig> {
        let id = self.alloc(Kind::Alt)?;
        if nongreedy {
            self.inst[id as usize].out1 = a_begin;
            Ok((id, (id, false)))
        } else {
            self.inst[id as usize].out = a_begin;
            Ok((id, (id, true)))
        }
    }

    fn plus(&mut self, a: Frag, nongreedy: bool) -> Result<Frag, TooBig> {
        let (id, hole) = self.loop_alt(a.begin, nongreedy)?;
        self.patch(a.end.as_slice(), id);
        Ok(Frag {
            begin: a.begin,
            end: Holes::One(hole),
            nullable: a.nullable,
        })
    }

    fn star(&mut self, a: Frag, nongreedy: bool) -> Result<Frag, TooBig> {
        if a.nullable {
            let p = self.plus(a, nongreedy)?;
            return self.quest(p, nongreedy);
        }
        let (id, hole) = self.loop_alt(a.begin, nongreedy)?;
        self.patch(a.end.as_slice(), id);
        Ok(Frag {
            begin: id,
            end: Holes::One(hole),
            nullable: true,
        })
    }

    fn quest(&mut self, a: Frag, nongreedy: bool) -> Result<Frag, TooBig> {
        if a.is_no_match() {
            return self.nop();
        }
        let (id, hole) = self.loop_alt(a.begin, nongreedy)?;
        let mut end = Holes::One(hole);
        end.append(a.end);
        Ok(Frag {
            begin: id,
            end,
            nullable: true,
        })
    }

    fn nop(&mut self) -> Result<Frag, TooBig> {
        let id = self.alloc(Kind::Nop)?;
        Ok(Frag {
            begin: id,
            end: Holes::One((id, false)),
            nullable: true,
        })
    }

    fn empty_width(&mut self) -> Result<Frag, TooBig> {
        let id = self.alloc(Kind::EmptyWidth)?;
        Ok(Frag {
            begin: id,
            end: Holes::One((id, false)),
            nullable: true,
        })
    }

    fn byte_range(&mut self, lo: u8, hi: u8) -> Result<Frag, TooBig> {
        let id = self.alloc(Kind::ByteRange(lo, hi))?;
        Ok(Frag {
            begin: id,
            end: Holes::One((id, false)),
            nullable: false,
        })
    }

    fn capture(&mut self, a: Frag) -> Result<Frag, TooBig> {
        if a.is_no_match() {
            return Ok(Frag::no_match());
        }
        let id = self.alloc(Kind::Capture)?;
        let id1 = self.alloc(Kind::Capture)?;
        self.inst[id as usize].out = a.begin;
        self.patch(a.end.as_slice(), id1);
        Ok(Frag {
            begin: id,
            end: Holes::One((id1, false)),
            nullable: a.nullable,
        })
    }

    /// RE2's Latin-1 `BeginRange` / `AddRuneRange` / `EndRange`: one byte range per rune
    /// range, chained with `Alt`s.
    fn ranges(&mut self, ranges: &[(u32, u32)]) -> Result<Frag, TooBig> {
        let mut begin = 0u32;
        let mut end = Holes::None;
        for &(lo, hi) in ranges {
            if lo > hi || lo > LATIN1_MAX {
                continue;
            }
            let hi = hi.min(LATIN1_MAX);
            let id = self.alloc(Kind::ByteRange(lo as u8, hi as u8))?;
            end.push((id, false));
            if begin == 0 {
                begin = id;
            } else {
                let alt = self.alloc(Kind::Alt)?;
                self.inst[alt as usize].out = begin;
                self.inst[alt as usize].out1 = id;
                begin = alt;
            }
        }
        Ok(Frag {
            begin,
            end,
            nullable: false,
        })
    }

    fn compile(&mut self, re: &Regexp) -> Result<Frag, TooBig> {
        let nongreedy = re.flags & NON_GREEDY != 0;
        match &re.op {
            Op::NoMatch => Ok(Frag::no_match()),
            Op::EmptyMatch => self.nop(),
            Op::Concat(subs) => {
                let mut frags = Vec::with_capacity(subs.len());
                for s in subs {
                    frags.push(self.compile(s)?);
                }
                let mut it = frags.into_iter();
                let Some(mut f) = it.next() else {
                    // RE2 never builds an empty concatenation; treat it as empty.
                    return self.nop();
                };
                for g in it {
                    f = self.cat(f, g);
                }
                Ok(f)
            }
            Op::Alternate(subs) => {
                let mut frags = Vec::with_capacity(subs.len());
                for s in subs {
                    frags.push(self.compile(s)?);
                }
                let mut it = frags.into_iter();
                let Some(mut f) = it.next() else {
                    return Ok(Frag::no_match());
                };
                for g in it {
                    f = self.alt(f, g)?;
                }
                Ok(f)
            }
            Op::Star(s) => {
                let a = self.compile(s)?;
                self.star(a, nongreedy)
            }
            Op::Plus(s) => {
                let a = self.compile(s)?;
                self.plus(a, nongreedy)
            }
            Op::Quest(s) => {
                let a = self.compile(s)?;
                self.quest(a, nongreedy)
            }
            Op::Repeat { .. } => {
                // The simplifier removes every counted repetition.
                Ok(Frag::no_match())
            }
            Op::Capture { sub, .. } => {
                let a = self.compile(sub)?;
                self.capture(a)
            }
            Op::Literal(r) => self.byte_range(*r as u8, *r as u8),
            Op::LiteralString(rs) => {
                let mut f: Option<Frag> = None;
                for &r in rs {
                    let g = self.byte_range(r as u8, r as u8)?;
                    f = Some(match f {
                        None => g,
                        Some(f) => self.cat(f, g),
                    });
                }
                match f {
                    Some(f) => Ok(f),
                    None => self.nop(),
                }
            }
            Op::AnyChar | Op::AnyByte => self.byte_range(0x00, 0xFF),
            Op::CharClass { cc, .. } => {
                // RE2 drops the ranges inside A-Z when the class folds ASCII case, and
                // marks the others as folding instead.
                let fold_ascii = cc.folds_ascii();
                let kept: Vec<(u32, u32)> = cc
                    .ranges()
                    .iter()
                    .copied()
                    .filter(|&(lo, hi)| {
                        !(fold_ascii && u32::from(b'A') <= lo && hi <= u32::from(b'Z'))
                    })
                    .collect();
                self.ranges(&kept)
            }
            Op::BeginLine
            | Op::EndLine
            | Op::BeginText
            | Op::EndText
            | Op::WordBoundary
            | Op::NoWordBoundary => self.empty_width(),
        }
    }
}

/// Compiles a regexp as `RE2::Init` does and returns `ProgramSize()`.
pub(super) fn program_size(re: Regexp) -> Result<u32, TooBig> {
    let suffix = strip_required_prefix(re);
    let mut sre = simplify(suffix);
    let anchor_start = strip_anchor(&mut sre, true, 0);
    let _anchor_end = strip_anchor(&mut sre, false, 0);
    SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
        Ok(mut kept) => {
            let size = compile_and_size(&sre, anchor_start, &mut kept);
            // Kept unless a large program made it large (a thread keeps it for its life).
            if kept.inst.capacity() > SCRATCH_KEPT_INST {
                *kept = Scratch::default();
            }
            size
        }
        Err(_) => compile_and_size(&sre, anchor_start, &mut Scratch::default()),
    })
}

/// What compiling a program and measuring it use, kept from one pattern to the next on each
/// thread: a route table's thousands of regexes each allocated a dozen lists of a few dozen
/// entries (half the time of [`program_size`]).
#[derive(Default)]
struct Scratch {
    inst: Vec<Inst>,
    queue: Ordered,
    is_root: Vec<bool>,
    roots: Vec<u32>,
    sorted: Vec<u32>,
    /// `(successor, predecessor)` of every `Alt`'s two branches.
    edges: Vec<(u32, u32)>,
    /// Where each instruction's predecessors start in `preds` (one more than instructions).
    pred_start: Vec<u32>,
    preds: Vec<u32>,
    stack: Vec<u32>,
}

/// The largest program whose scratch space a thread keeps.
const SCRATCH_KEPT_INST: usize = 4096;

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

/// The room for instructions this thread keeps (tests).
#[cfg(test)]
pub(super) fn kept_instructions() -> usize {
    SCRATCH.with(|s| s.borrow().inst.capacity())
}

fn compile_and_size(
    sre: &Regexp,
    anchor_start: bool,
    scratch: &mut Scratch,
) -> Result<u32, TooBig> {
    let mut inst = std::mem::take(&mut scratch.inst);
    inst.clear();
    let mut c = Compiler { inst };
    let size = compile_program(&mut c, sre, anchor_start, scratch);
    scratch.inst = c.inst;
    size
}

fn compile_program(
    c: &mut Compiler,
    sre: &Regexp,
    anchor_start: bool,
    scratch: &mut Scratch,
) -> Result<u32, TooBig> {
    c.alloc(Kind::Fail)?;
    let all = c.compile(sre)?;
    let m = c.alloc(Kind::Match)?;
    let all = c.cat(
        all,
        Frag {
            begin: m,
            end: Holes::None,
            nullable: false,
        },
    );
    let start = all.begin;
    let start_unanchored = if anchor_start {
        start
    } else {
        // The unanchored start loops over any byte, non-greedily, first.
        let dot = c.byte_range(0x00, 0xFF)?;
        let dotstar = c.star(dot, true)?;
        c.cat(dotstar, all).begin
    };
    if start == 0 && start_unanchored == 0 {
        return Ok(1);
    }
    optimize(&mut c.inst, start, &mut scratch.queue);
    Ok(flatten(&c.inst, start, start_unanchored, scratch))
}

/// A set that remembers insertion order, like RE2's `SparseSet`.
#[derive(Default)]
struct Ordered {
    seen: Vec<bool>,
    order: Vec<u32>,
}

impl Ordered {
    /// Empties the set and makes room for members below `n`.
    fn reset(&mut self, n: usize) {
        self.seen.clear();
        self.seen.resize(n, false);
        self.order.clear();
    }
    fn insert(&mut self, id: u32) -> bool {
        if self.seen[id as usize] {
            return false;
        }
        self.seen[id as usize] = true;
        self.order.push(id);
        true
    }
    fn contains(&self, id: u32) -> bool {
        self.seen[id as usize]
    }
    /// Empties the set, in the time of its size (as `SparseSet::clear`).
    fn clear(&mut self) {
        for &id in &self.order {
            self.seen[id as usize] = false;
        }
        self.order.clear();
    }
}

/// RE2's `Prog::Optimize`: skips `Nop`s and marks `.*` loops before a match as `AltMatch`.
fn optimize(inst: &mut [Inst], start: u32, q: &mut Ordered) {
    let skip = |inst: &[Inst], mut j: u32| {
        while j != 0 && inst[j as usize].kind == Kind::Nop {
            j = inst[j as usize].out;
        }
        j
    };
    q.reset(inst.len());
    if start != 0 {
        q.insert(start);
    }
    let mut i = 0;
    while i < q.order.len() {
        let id = q.order[i] as usize;
        i += 1;
        let j = skip(inst, inst[id].out);
        inst[id].out = j;
        if j != 0 {
            q.insert(j);
        }
        if inst[id].kind == Kind::Alt {
            let j = skip(inst, inst[id].out1);
            inst[id].out1 = j;
            if j != 0 {
                q.insert(j);
            }
        }
    }
    let is_match = |inst: &[Inst], mut id: u32| loop {
        match inst[id as usize].kind {
            Kind::Capture | Kind::Nop => id = inst[id as usize].out,
            Kind::Match => return true,
            _ => return false,
        }
    };
    q.reset(inst.len());
    if start != 0 {
        q.insert(start);
    }
    let mut i = 0;
    while i < q.order.len() {
        let id = q.order[i];
        i += 1;
        let ip = inst[id as usize];
        if ip.out != 0 {
            q.insert(ip.out);
        }
        if ip.kind == Kind::Alt {
            if ip.out1 != 0 {
                q.insert(ip.out1);
            }
            let j = inst[ip.out as usize];
            let k = inst[ip.out1 as usize];
            let any = |x: Inst| x.kind == Kind::ByteRange(0x00, 0xFF) && x.out == id;
            if (any(j) && is_match(inst, ip.out1)) || (is_match(inst, ip.out) && any(k)) {
                inst[id as usize].kind = Kind::AltMatch;
            }
        }
    }
}

/// RE2's `Prog::Flatten`, returning only the size of the flattened program.
fn flatten(inst: &[Inst], start: u32, start_unanchored: u32, scratch: &mut Scratch) -> u32 {
    let n = inst.len();
    let Scratch {
        queue: reachable,
        is_root,
        roots,
        sorted,
        edges,
        pred_start,
        preds,
        stack: stk,
        ..
    } = scratch;
    // Roots, with membership.
    is_root.clear();
    is_root.resize(n, false);
    roots.clear();
    let add_root = |id: u32, is_root: &mut Vec<bool>, roots: &mut Vec<u32>| {
        if !is_root[id as usize] {
            is_root[id as usize] = true;
            roots.push(id);
        }
    };
    add_root(0, is_root, roots);
    add_root(start_unanchored, is_root, roots);
    add_root(start, is_root, roots);

    // MarkSuccessors.
    edges.clear();
    reachable.reset(n);
    stk.clear();
    stk.push(start_unanchored);
    while let Some(mut id) = stk.pop() {
        loop {
            if !reachable.insert(id) {
                break;
            }
            let ip = inst[id as usize];
            match ip.kind {
                Kind::Alt | Kind::AltMatch => {
                    edges.push((ip.out, id));
                    edges.push((ip.out1, id));
                    stk.push(ip.out1);
                    id = ip.out;
                }
                Kind::ByteRange(..) | Kind::Capture | Kind::EmptyWidth => {
                    add_root(ip.out, is_root, roots);
                    id = ip.out;
                }
                Kind::Nop => id = ip.out,
                Kind::Match | Kind::Fail => break,
            }
        }
    }
    // Each instruction's predecessors, side by side in one list.
    pred_start.clear();
    pred_start.resize(n + 1, 0);
    for &(to, _) in edges.iter() {
        pred_start[to as usize + 1] += 1;
    }
    for i in 0..n {
        pred_start[i + 1] += pred_start[i];
    }
    preds.clear();
    preds.resize(edges.len(), 0);
    for &(to, from) in edges.iter() {
        // `pred_start[to]` is moved past each one filled, and moved back below.
        preds[pred_start[to as usize] as usize] = from;
        pred_start[to as usize] += 1;
    }
    for i in (0..n).rev() {
        pred_start[i + 1] = pred_start[i];
    }
    pred_start[0] = 0;
    let preds_of =
        |id: u32| &preds[pred_start[id as usize] as usize..pred_start[id as usize + 1] as usize];

    // MarkDominator, from the highest root down, skipping the two starts and 0.
    sorted.clear();
    sorted.extend_from_slice(roots);
    sorted.sort_unstable();
    // The set and the stack serve every walk below, emptied between walks.
    for &root in sorted.iter().skip(1).rev() {
        if root == start_unanchored || root == start {
            continue;
        }
        reachable.clear();
        stk.push(root);
        while let Some(mut id) = stk.pop() {
            loop {
                if !reachable.insert(id) {
                    break;
                }
                if id != root && is_root[id as usize] {
                    break;
                }
                let ip = inst[id as usize];
                match ip.kind {
                    Kind::Alt | Kind::AltMatch => {
                        stk.push(ip.out1);
                        id = ip.out;
                    }
                    Kind::Nop => id = ip.out,
                    _ => break,
                }
            }
        }
        for &id in &reachable.order {
            if preds_of(id).iter().any(|&p| !reachable.contains(p)) {
                add_root(id, is_root, roots);
            }
        }
    }

    // EmitList for every root, counting instructions.
    let mut size = 0u32;
    for &root in roots.iter() {
        reachable.clear();
        stk.push(root);
        while let Some(mut id) = stk.pop() {
            loop {
                if !reachable.insert(id) {
                    break;
                }
                if id != root && is_root[id as usize] {
                    size += 1; // a Nop to the other list
                    break;
                }
                let ip = inst[id as usize];
                match ip.kind {
                    Kind::AltMatch => {
                        size += 1;
                        stk.push(ip.out1);
                        id = ip.out;
                    }
                    Kind::Alt => {
                        stk.push(ip.out1);
                        id = ip.out;
                    }
                    Kind::Nop => id = ip.out,
                    _ => {
                        size += 1;
                        break;
                    }
                }
            }
        }
    }
    size
}

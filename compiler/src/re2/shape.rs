//! Program sizes remembered by the shape of the parsed pattern.
//!
//! A route table's regexes are often one pattern with other words in it
//! (`/api/orders/[0-9]+/.*`, `/api/users/[0-9]+/.*`). After parsing, what RE2 does to a
//! tree depends on its literals' values in one place only: the simplifier merges a
//! repetition of a single literal with the same literal next to it (`a+a` becomes `a{2,}`,
//! one instruction fewer than `a+b`). Everywhere else a literal is one byte-range instruction
//! whatever its value: the required prefix is taken by kind, the compiler gives a Latin-1
//! literal one instruction, and the optimizer and `Flatten` read the program's graph (the
//! one range they compare, `0x00-0xff`, no literal has). So two trees that differ only in
//! their literals' values, and repeat no single literal, have the same `ProgramSize()`.
//!
//! The shape is the tree written out with every literal's value left out (a literal string
//! keeps its length); classes, counts, flags and the order of everything stay. Each thread
//! remembers the sizes of the last shapes it measured.

use std::cell::RefCell;
use std::collections::HashMap;

use super::compile;
use super::regexp::{Op, Regexp};

/// Shapes a thread remembers; it forgets them all when this many are held.
const KEPT: usize = 1024;
/// Longer shapes (large patterns) are measured every time.
const MAX_SHAPE: usize = 512;

#[derive(Default)]
struct Memo {
    sizes: HashMap<Box<[u8]>, Option<u32>, foldhash::fast::FixedState>,
    /// The shape being written, kept from one pattern to the next.
    key: Vec<u8>,
}

thread_local! {
    static MEMO: RefCell<Memo> = RefCell::new(Memo::default());
}

/// `RE2::ProgramSize()` of a parsed pattern (shallow enough for the recursive passes), as
/// [`compile::program_size`] gives it; `None` when it is too large to compute.
pub(super) fn program_size(re: Regexp) -> Option<u32> {
    MEMO.with(|memo| {
        let Ok(mut memo) = memo.try_borrow_mut() else {
            return compile::program_size(re).ok();
        };
        let memo = &mut *memo;
        memo.key.clear();
        if !write(&re, &mut memo.key) || memo.key.len() > MAX_SHAPE {
            return compile::program_size(re).ok();
        }
        if let Some(&size) = memo.sizes.get(memo.key.as_slice()) {
            debug_assert_eq!(size, compile::program_size(re).ok(), "a remembered size");
            return size;
        }
        let size = compile::program_size(re).ok();
        if memo.sizes.len() >= KEPT {
            memo.sizes.clear();
        }
        memo.sizes.insert(memo.key.as_slice().into(), size);
        size
    })
}

/// Writes the shape of `re` to `out`; false when a literal's value can change the size (a
/// repetition of a single literal). Every node is a tag and its flags, then what it holds
/// (counts before lists), so two trees are written the same only if they have the same
/// shape.
fn write(re: &Regexp, out: &mut Vec<u8>) -> bool {
    let u32_ = |out: &mut Vec<u8>, n: u32| out.extend_from_slice(&n.to_le_bytes());
    let tag = |out: &mut Vec<u8>, t: u8| {
        out.push(t);
        out.extend_from_slice(&re.flags.to_le_bytes());
    };
    match &re.op {
        Op::NoMatch => tag(out, 0),
        Op::EmptyMatch => tag(out, 1),
        Op::Literal(_) => tag(out, 2),
        Op::LiteralString(rs) => {
            tag(out, 3);
            u32_(out, rs.len() as u32);
        }
        Op::Concat(subs) | Op::Alternate(subs) => {
            tag(out, if matches!(re.op, Op::Concat(_)) { 4 } else { 5 });
            u32_(out, subs.len() as u32);
            return subs.iter().all(|s| write(s, out));
        }
        Op::Star(sub) | Op::Plus(sub) | Op::Quest(sub) | Op::Repeat { sub, .. } => {
            if matches!(sub.op, Op::Literal(_)) {
                return false;
            }
            let t = match re.op {
                Op::Star(_) => 6,
                Op::Plus(_) => 7,
                Op::Quest(_) => 8,
                _ => 9,
            };
            tag(out, t);
            if let Op::Repeat { min, max, .. } = re.op {
                out.extend_from_slice(&min.to_le_bytes());
                out.extend_from_slice(&max.to_le_bytes());
            }
            return write(sub, out);
        }
        Op::Capture { sub, cap } => {
            tag(out, 10);
            u32_(out, *cap);
            return write(sub, out);
        }
        Op::AnyChar => tag(out, 11),
        Op::AnyByte => tag(out, 12),
        Op::BeginLine => tag(out, 13),
        Op::EndLine => tag(out, 14),
        Op::WordBoundary => tag(out, 15),
        Op::NoWordBoundary => tag(out, 16),
        Op::BeginText => tag(out, 17),
        Op::EndText => tag(out, 18),
        Op::CharClass { cc, builder } => {
            tag(out, 19);
            out.push(u8::from(*builder));
            u32_(out, cc.ranges().len() as u32);
            for &(lo, hi) in cc.ranges() {
                u32_(out, lo);
                u32_(out, hi);
            }
        }
    }
    true
}

#[cfg(test)]
mod tests;

//! Predicts whether Envoy accepts a route regex: RE2's syntax and RE2's program size.
//!
//! Envoy compiles every `safe_regex` with Google RE2 and refuses the whole route
//! configuration when a pattern does not parse or when `RE2::ProgramSize()` exceeds
//! the error-level limit (100 by default; Envoy says "RE2 program size of N > max program
//! size of 100"). This module reproduces, in Rust, the parts of RE2 that decide both:
//! the parser (`parse.cc`, including its literal merging and alternation factoring),
//! the simplifier (`simplify.cc`), the compiler (`compile.cc`) and the `Optimize` and
//! `Flatten` passes of `prog.cc`, whose flattened instruction count is `ProgramSize()`.
//!
//! Envoy 1.40 builds its RE2 objects with **Latin-1** encoding: the pattern is read byte by
//! byte, `\x{100}` and above do not exist (they are refused), `.` is one byte, and Unicode
//! classes keep only their members up to `\xff` (`\p{Greek}` matches nothing).
//!
//! How close the estimate is: the size is computed, not estimated, by following RE2's
//! algorithms step by step, and it is **exact** on the whole corpus in
//! `compiler/test_data/re2/corpus.txt`: 847 patterns (680 accepted, 56 refused for size,
//! 111 refused by the parser), where Envoy 1.40 gave the same verdict for all 847 and, for
//! the 736 that parse, the same `ProgramSize()` (recorded by running `envoy --mode validate`
//! with the runtime key `re2.max_program_size.error_level` set to 0, so that Envoy prints the
//! size of every pattern). `--mode validate` enforces the size limit itself, so no running
//! Envoy is needed. Known limits, none met by the corpus: regexps nested more than 1000
//! levels deep after parsing, or needing more than 100,000 instructions before flattening,
//! are reported as [`Re2Error::TooLarge`] with a lower bound instead of an exact size (RE2
//! itself gives up at about 87,000 instructions, so the verdict still holds); and the
//! tables are those of the RE2 in Envoy 1.40 (Unicode 15.1 script names).
//!
//! Sizes are remembered by the shape of the parsed pattern, the values of its literals left
//! out, which do not change the size but in a repeated single literal (`shape.rs`).
//!
//! Not mirrored because it cannot change `ProgramSize()` under Latin-1: the UTF-8 byte
//! trie, the reverse program, and the DFA/one-pass analyses.
//!
//! Matching ([`Regex`], in `exec.rs`): full match and `GlobalReplace` with RE2's meaning under
//! Envoy's options, checked against verdicts recorded from a real Envoy
//! (`compiler/test_data/re2/matches.txt`).

mod class;
mod compile;
mod exec;
mod parse;
mod prefix;
mod regexp;
mod shape;

pub use exec::Regex;
pub use prefix::literal_prefixes;

/// Envoy's default `max_program_size` error level for RE2 (`re2.max_program_size.error_level`).
pub const DEFAULT_MAX_PROGRAM_SIZE: u32 = 100;

/// A pattern RE2 accepts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// `RE2::ProgramSize()`, which Envoy compares with its limit.
    pub program_size: u32,
    /// Constructs RE2 reads differently from other engines.
    pub notes: Vec<Note>,
}

/// A construct RE2 accepts but reads differently from PCRE, JavaScript or Rust's `regex`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    /// Byte offset in the pattern.
    pub offset: usize,
    /// Lowercase, no trailing period, constructs in backticks.
    pub message: String,
}

/// Why Envoy would refuse a pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Re2Error {
    /// A construct other engines support but RE2 does not (look-around, backreferences,
    /// possessive quantifiers, long Unicode class names, runes above `\xff`, ...).
    Unsupported {
        /// Byte offset of the construct in the pattern.
        offset: usize,
        /// The construct as written, e.g. `(?=`.
        construct: String,
        /// What is wrong, lowercase.
        message: String,
    },
    /// The compiled program is larger than the limit.
    TooLarge {
        /// `RE2::ProgramSize()` (a lower bound when compilation gave up early).
        size: u32,
        /// The limit it exceeds.
        limit: u32,
    },
    /// Not a regular expression in any engine's syntax.
    Syntax {
        /// Byte offset of the error in the pattern.
        offset: usize,
        /// What is wrong, lowercase.
        message: String,
    },
}

impl std::fmt::Display for Re2Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Re2Error::Unsupported { message, .. } | Re2Error::Syntax { message, .. } => {
                f.write_str(message)
            }
            Re2Error::TooLarge { size, limit } => write!(
                f,
                "RE2 program size {size} is over Envoy's limit of {limit}"
            ),
        }
    }
}

impl std::error::Error for Re2Error {}

/// Checks a regex as Envoy's RE2 would compile it (Envoy matches the whole string),
/// against the default program size limit.
pub fn check(pattern: &str) -> Result<Report, Re2Error> {
    check_with_limit(pattern, DEFAULT_MAX_PROGRAM_SIZE)
}

/// [`check`] with another `max_program_size`.
pub fn check_with_limit(pattern: &str, limit: u32) -> Result<Report, Re2Error> {
    let (size, notes) = analyse(pattern)?;
    match size {
        Some(program_size) if program_size <= limit => Ok(Report {
            program_size,
            notes,
        }),
        Some(size) => Err(Re2Error::TooLarge { size, limit }),
        None => Err(Re2Error::TooLarge {
            size: too_large_bound(),
            limit,
        }),
    }
}

/// The exact `RE2::ProgramSize()` of a pattern RE2 parses, whatever the limit; `None` when
/// the program is too large to compute (see the module comment).
pub fn program_size(pattern: &str) -> Result<Option<u32>, Re2Error> {
    analyse(pattern).map(|(size, _)| size)
}

/// What is reported as the size of programs too large to compute: a lower bound.
fn too_large_bound() -> u32 {
    compile::MAX_DEPTH as u32
}

fn analyse(pattern: &str) -> Result<(Option<u32>, Vec<Note>), Re2Error> {
    let (re, notes) = parse::parse(pattern.as_bytes())?;
    if !compile::shallow(&re) {
        return Ok((None, notes));
    }
    Ok((shape::program_size(re), notes))
}

#[cfg(test)]
mod tests;

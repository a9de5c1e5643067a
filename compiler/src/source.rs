//! Source files, positions and spans: every diagnostic and every IR node points into the file the user edits.

use std::hash::{BuildHasher, Hasher};

use serde::Serialize;

/// Index of a file in [`Sources`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize)]
pub struct FileId(pub u32);

/// A position in a file: 1-based line, 1-based column counted in characters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize)]
pub struct Pos {
    pub line: u32,
    pub column: u32,
}

impl Pos {
    pub const fn new(line: u32, column: u32) -> Pos {
        Pos { line, column }
    }
}

/// A range in one file. `end` is exclusive and may equal `start`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize)]
pub struct Span {
    pub file: FileId,
    pub start: Pos,
    pub end: Pos,
}

impl Span {
    pub const fn new(file: FileId, start: Pos, end: Pos) -> Span {
        Span { file, start, end }
    }

    pub const fn point(file: FileId, at: Pos) -> Span {
        Span {
            file,
            start: at,
            end: at,
        }
    }
}

/// One input file: its display name and its text.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub name: String,
    /// Empty while released ([`Sources::release_text`]).
    pub text: String,
    /// Where every [`LINES_PER_MARK`]th line starts (lines 1, 1 + `LINES_PER_MARK`, ...);
    /// a line between two marks is found from the one before it. Empty while the text is
    /// released.
    marks: Vec<u32>,
    /// The number of lines, kept while the text is released.
    lines: u32,
    /// The length of the text, kept while it is released.
    len: usize,
    /// A hash of where the text's lines start, to tell a file read again from the one
    /// released; kept while it is released.
    breaks: u64,
    /// Whether the text is released.
    released: bool,
}

/// One line start in this many is kept ([`SourceFile::marks`]): a line is then found by
/// looking through at most this many, a few hundred bytes of a usual manifest, and the list
/// is 250 KB for a file of 10 MB instead of the 2 MB one start per line took (kept beside
/// the text while every object is read, the peak of `lint`). Every annotation's position
/// map looks up a line (32 lines to a mark made that 1 % of `lint`).
const LINES_PER_MARK: usize = 8;

/// A text's lines are found in parts of this size, a text of several parts on all cores
/// ([`SourceFile::new`]): on one core, finding the half million lines of a 10 MB file was
/// 3 to 4 ms of `lint`, before anything else could start.
const LINES_PART_BYTES: usize = 1 << 20;

impl SourceFile {
    fn new(name: String, text: String) -> SourceFile {
        // The breaks are hashed as they are counted: the file's text is released after
        // reading (`lint`), and hashing it then was a second pass over it on one core. The
        // text is hashed part by part, the parts' hashes then hashed in order: the parts are
        // of a fixed size, so the same text always has the same hash.
        let bytes = text.as_bytes();
        let parts: Vec<(usize, usize)> = (0..bytes.len().div_ceil(LINES_PART_BYTES).max(1))
            .map(|k| {
                let start = k * LINES_PART_BYTES;
                (start, (start + LINES_PART_BYTES).min(bytes.len()))
            })
            .collect();
        // First the breaks of each part, counted (a count is a fast search); then each
        // part's marks, knowing how many breaks come before it.
        let counts: Vec<usize> = crate::par::runs(&parts, 1, |run| {
            run.iter()
                .map(|&(a, b)| memchr::memchr_iter(b'\n', &bytes[a..b]).count())
                .collect::<Vec<_>>()
        })
        .into_iter()
        .flatten()
        .collect();
        let mut before = Vec::with_capacity(parts.len());
        let mut total = 0usize;
        for c in &counts {
            before.push(total);
            total += c;
        }
        let found = crate::par::runs_at(&parts, 1, |at, run| {
            run.iter()
                .enumerate()
                .map(|(k, &(a, b))| part_lines(&bytes[a..b], a, before[at + k]))
                .collect::<Vec<_>>()
        })
        .into_iter()
        .flatten();
        let mut marks = Vec::with_capacity(total / LINES_PER_MARK + 1);
        marks.push(0u32);
        let mut hash = foldhash::fast::FixedState::with_seed(0).build_hasher();
        for (part_marks, part_hash) in found {
            marks.extend(part_marks);
            hash.write_u64(part_hash);
        }
        SourceFile {
            name,
            len: text.len(),
            text,
            marks,
            lines: total as u32 + 1,
            breaks: hash.finish(),
            released: false,
        }
    }

    /// Where a 1-based line starts and ends (before its line break), in bytes; `None` past
    /// the last line or while the text is released.
    fn line_range(&self, line: u32) -> Option<(usize, usize)> {
        if self.released || line == 0 || line > self.lines {
            return None;
        }
        let i = line as usize - 1;
        let bytes = self.text.as_bytes();
        let mut start = *self.marks.get(i / LINES_PER_MARK)? as usize;
        // One search over the lines from the mark (a search per line costs more to start
        // than a short line takes to look through).
        if let Some(k) = (i % LINES_PER_MARK).checked_sub(1) {
            start += memchr::memchr_iter(b'\n', &bytes[start..]).nth(k)? + 1;
        }
        let end = memchr::memchr(b'\n', &bytes[start..]).map_or(bytes.len(), |n| start + n);
        Some((start, end))
    }

    /// The text of a 1-based line, without its line break; `None` while the text is
    /// released.
    pub fn line(&self, line: u32) -> Option<&str> {
        self.line_at(line).map(|(_, l)| l)
    }

    /// [`SourceFile::line`] and the byte offset where it starts.
    pub fn line_at(&self, line: u32) -> Option<(usize, &str)> {
        let (start, end) = self.line_range(line)?;
        let l = &self.text[start..end];
        Some((start, l.strip_suffix('\r').unwrap_or(l)))
    }

    /// Byte offset of a position, if it lies in the file.
    pub fn offset(&self, pos: Pos) -> Option<usize> {
        let (start, end) = self.line_range(pos.line)?;
        let line = &self.text[start..end];
        let line = line.strip_suffix('\r').unwrap_or(line);
        let col = (pos.column as usize).checked_sub(1)?;
        if line.is_ascii() {
            return (col <= line.len()).then_some(start + col);
        }
        let mut chars = line.char_indices();
        match chars.nth(col) {
            Some((b, _)) => Some(start + b),
            None => (line.chars().count() == col).then_some(start + line.len()),
        }
    }

    pub fn line_count(&self) -> u32 {
        self.lines
    }
}

/// The marks among the breaks of `part`, a part of a text starting at byte `offset` with
/// `before` breaks before it, and a hash of where its breaks are. The part is read 64 bytes
/// at a time, the breaks of each block as the bits of a word: the half million breaks of a
/// 10 MB manifest taken one by one from a search took most of the time.
fn part_lines(part: &[u8], offset: usize, before: usize) -> (Vec<u32>, u64) {
    let mut hash = foldhash::fast::FixedState::with_seed(0).build_hasher();
    let mut marks = Vec::new();
    // The next break whose line after it is marked, counted from this part's first, and
    // the breaks of the blocks before this one.
    let mut next = (LINES_PER_MARK - before % LINES_PER_MARK) - 1;
    let mut seen = 0usize;
    let mut blocks = part.chunks_exact(64);
    let mut at = offset;
    let mut block = |bits: u64, at: usize| {
        if bits == 0 {
            return;
        }
        hash.write_usize(at);
        hash.write_u64(bits);
        let count = bits.count_ones() as usize;
        while next < seen + count {
            let mut rest = bits;
            for _ in 0..next - seen {
                rest &= rest - 1;
            }
            marks.push((at + rest.trailing_zeros() as usize) as u32 + 1);
            next += LINES_PER_MARK;
        }
        seen += count;
    };
    for b in blocks.by_ref() {
        block(breaks_in(b.try_into().unwrap_or(&[0; 64])), at);
        at += 64;
    }
    let mut last = [0u8; 64];
    let tail = blocks.remainder();
    last[..tail.len()].copy_from_slice(tail);
    block(breaks_in(&last), at);
    (marks, hash.finish())
}

/// The line feeds of a block of 64 bytes, as the bits of a word (bit `i` for byte `i`),
/// eight bytes at a time: a byte is a line feed where it XOR `\n` is zero, which the
/// additions below tell without a carry from one byte into the next.
fn breaks_in(block: &[u8; 64]) -> u64 {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    let mut bits = 0u64;
    for (k, word) in block.chunks_exact(8).enumerate() {
        let w = u64::from_le_bytes(word.try_into().unwrap_or([0; 8])) ^ 0x0a0a_0a0a_0a0a_0a0a;
        // The high bit of each byte of `zero` is set where that byte of `w` is zero.
        let zero = !(((w & LOW7) + LOW7) | w) & !LOW7;
        // The eight high bits gathered into one byte, the first byte's lowest.
        let byte = (zero >> 7).wrapping_mul(0x0102_0408_1020_4080) >> 56;
        bits |= byte << (8 * k);
    }
    bits
}

/// All files of one compilation. The compiler never reads a file itself: callers add text.
#[derive(Debug, Default, Clone)]
pub struct Sources {
    files: Vec<SourceFile>,
}

impl Sources {
    pub fn new() -> Sources {
        Sources::default()
    }

    pub fn add(&mut self, name: impl Into<String>, text: impl Into<String>) -> FileId {
        let id = FileId(self.files.len() as u32);
        self.files.push(SourceFile::new(name.into(), text.into()));
        id
    }

    /// Frees a file's text once nothing more is read from it (the compiler reads it only
    /// while reading the objects: [`crate::read_files`]), keeping its name, its length and
    /// the number of its lines. [`SourceFile::line`] gives `None` until the text is put back
    /// ([`Sources::restore_text`]).
    pub fn release_text(&mut self, id: FileId) {
        let f = &mut self.files[id.0 as usize];
        if f.released {
            return;
        }
        f.released = true;
        f.text = String::new();
        f.marks = Vec::new();
    }

    /// Puts back the text of a released file, read again: refused (`false`, the file stays
    /// released) unless it has the length and the lines of the text released.
    pub fn restore_text(&mut self, id: FileId, text: String) -> bool {
        let f = &mut self.files[id.0 as usize];
        if !f.released || text.len() != f.len {
            return false;
        }
        let again = SourceFile::new(String::new(), text);
        if again.breaks != f.breaks || again.lines != f.lines {
            return false;
        }
        f.text = again.text;
        f.marks = again.marks;
        f.released = false;
        true
    }

    /// Whether a file's text is released.
    pub fn is_released(&self, id: FileId) -> bool {
        self.files[id.0 as usize].released
    }

    pub fn get(&self, id: FileId) -> &SourceFile {
        &self.files[id.0 as usize]
    }

    pub fn name(&self, id: FileId) -> &str {
        &self.files[id.0 as usize].name
    }

    pub fn iter(&self) -> impl Iterator<Item = (FileId, &SourceFile)> {
        self.files
            .iter()
            .enumerate()
            .map(|(i, f)| (FileId(i as u32), f))
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}

/// Whether a file called `name` (the last component of its path) is a manifest when a
/// directory is read: the plugin's `lint DIR` and `-R`, and the webhook's `--dir`.
///
/// The rule: the name ends in `.yaml`, `.yml` or `.json` (case-sensitive, the extensions
/// kubectl reads from a directory) and is not hidden (see [`is_hidden_name`]). A directory is
/// entered only when its name is not hidden either. A file named on the command line is read
/// whatever its name, as kubectl does.
///
/// Hidden names are left out, unlike kubectl, because what they hold is not the user's
/// configuration: a ConfigMap mounted as a volume links every file a second time under
/// `..data` and a timestamped `..2026_…` folder, a repository keeps CI workflows under
/// `.github/`, and editors write lock and backup files such as `.#a.yaml`.
pub fn is_manifest_name(name: &str) -> bool {
    !is_hidden_name(name)
        && [".yaml", ".yml", ".json"]
            .iter()
            .any(|ext| name.len() > ext.len() && name.ends_with(ext))
}

/// Whether a file or directory called `name` is hidden: its name starts with a dot. Reading
/// a directory skips hidden files and does not enter hidden directories
/// ([`is_manifest_name`]).
pub fn is_hidden_name(name: &str) -> bool {
    name.starts_with('.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_offsets() {
        let f = SourceFile::new("a".into(), "ab\nçd\r\nx".into());
        assert_eq!(f.line(1), Some("ab"));
        assert_eq!(f.line(2), Some("çd"));
        assert_eq!(f.line(3), Some("x"));
        assert_eq!(f.line(4), None);
        assert_eq!(f.offset(Pos::new(2, 2)), Some(5));
        assert_eq!(f.offset(Pos::new(2, 3)), Some(6));
        assert_eq!(f.offset(Pos::new(2, 9)), None);
    }

    /// Lines found from the marks are those of splitting the text, for every line of a
    /// text of several marks, the last line with or without a break.
    #[test]
    fn every_line_is_found_from_its_mark() {
        for end in ["", "\n", "tail"] {
            let mut text = String::new();
            for i in 0..(LINES_PER_MARK * 5 + 7) {
                let line = match i % 4 {
                    0 => String::new(),
                    1 => format!("key{i}: value"),
                    2 => format!("  é{i}\r"),
                    _ => "x".repeat(i % 50),
                };
                text.push_str(&line);
                text.push('\n');
            }
            text.push_str(end);
            let f = SourceFile::new("a".into(), text.clone());
            let split: Vec<&str> = text.split('\n').collect();
            assert_eq!(f.line_count() as usize, split.len());
            for (i, want) in split.iter().enumerate() {
                let n = i as u32 + 1;
                let want = want.strip_suffix('\r').unwrap_or(want);
                assert_eq!(f.line(n), Some(want), "line {n}");
                let start = split[..i].iter().map(|l| l.len() + 1).sum::<usize>();
                assert_eq!(f.offset(Pos::new(n, 1)), Some(start), "line {n}");
                assert_eq!(f.line_at(n), Some((start, want)), "line {n}");
            }
            assert_eq!(f.line(split.len() as u32 + 1), None);
            assert_eq!(f.line(0), None);
        }
    }

    /// A text of several parts ([`LINES_PART_BYTES`]) has the marks and the lines of the
    /// text found break by break, whether a break ends a part, starts the next or neither.
    #[test]
    fn lines_found_in_parts_are_those_of_the_whole_text() {
        for shift in [0usize, 1, 2, 31, 33] {
            let mut text = String::new();
            let mut i = 0;
            while text.len() < 2 * LINES_PART_BYTES + 5000 {
                // A break at the end of the first part, give or take `shift`.
                let room = (LINES_PART_BYTES + shift).checked_sub(text.len() + 1);
                let len = match room {
                    Some(r) if r < 80 => r,
                    _ => i % 61,
                };
                text.push_str(&"y".repeat(len));
                text.push('\n');
                i += 1;
            }
            let f = SourceFile::new("a".into(), text.clone());
            // The parts worked on by one thread in one run give the same.
            crate::par::ONE_THREAD.with(|one| one.set(true));
            let alone = SourceFile::new("a".into(), text.clone());
            crate::par::ONE_THREAD.with(|one| one.set(false));
            assert_eq!(
                (&alone.marks, alone.breaks, alone.lines),
                (&f.marks, f.breaks, f.lines)
            );
            let mut marks = vec![0u32];
            for (k, b) in memchr::memchr_iter(b'\n', text.as_bytes()).enumerate() {
                if (k + 1) % LINES_PER_MARK == 0 {
                    marks.push(b as u32 + 1);
                }
            }
            assert_eq!(f.marks, marks, "shift {shift}");
            let split: Vec<&str> = text.split('\n').collect();
            assert_eq!(f.line_count() as usize, split.len());
            for n in [1, 2, 1000, split.len() / 2, split.len() - 1, split.len()] {
                assert_eq!(
                    f.line(n as u32),
                    Some(split[n - 1]),
                    "shift {shift}, line {n}"
                );
            }
            // A break moved across the end of the first part is told apart.
            let mut moved = text.clone().into_bytes();
            let at = memchr::memrchr(b'\n', &moved[..LINES_PART_BYTES + shift]).unwrap();
            moved.swap(at, at + 1);
            assert_ne!(moved, text.as_bytes());
            let moved = String::from_utf8(moved).unwrap();
            assert_ne!(SourceFile::new("a".into(), moved).breaks, f.breaks);
            assert_eq!(SourceFile::new("a".into(), text).breaks, f.breaks);
        }
    }

    /// The line feeds of a block are found whatever bytes surround them (bytes that differ
    /// from `\n` in one bit, bytes over 127, runs of line feeds).
    #[test]
    fn line_feeds_of_a_block() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let near = [b'\n', 0x0b, 0x08, 0x8a, 0x0e, 0x2a, 0xff, 0x00, 0x09, b'a'];
        for round in 0..5000 {
            let mut block = [0u8; 64];
            for b in &mut block {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                *b = if round % 2 == 0 {
                    near[(seed % near.len() as u64) as usize]
                } else {
                    seed as u8
                };
            }
            let want = block
                .iter()
                .enumerate()
                .filter(|(_, &b)| b == b'\n')
                .fold(0u64, |m, (i, _)| m | 1 << i);
            assert_eq!(breaks_in(&block), want, "{block:?}");
        }
    }

    #[test]
    fn released_text_comes_back_only_with_the_same_lines() {
        let mut s = Sources::new();
        let id = s.add("a.yaml", "ab\ncd\n");
        s.release_text(id);
        assert!(s.is_released(id));
        assert_eq!(s.get(id).line(1), None);
        assert_eq!(s.get(id).line_count(), 3);
        // Same length, a line break moved: refused.
        assert!(!s.restore_text(id, "a\nbcd\n".into()));
        // Longer: refused.
        assert!(!s.restore_text(id, "ab\ncde\n".into()));
        assert_eq!(s.get(id).line(1), None);
        assert!(s.restore_text(id, "ab\ncd\n".into()));
        assert_eq!(s.get(id).line(2), Some("cd"));
        // Not released any more: nothing to put back.
        assert!(!s.restore_text(id, "ab\ncd\n".into()));
    }

    #[test]
    fn manifest_names() {
        for yes in [
            "a.yaml",
            "a.yml",
            "a.json",
            "a.b.yaml",
            "yaml.yml",
            "with space.yaml",
        ] {
            assert!(is_manifest_name(yes), "{yes}");
        }
        for no in [
            ".yaml",
            ".a.yaml",
            ".#a.yaml",
            "..data",
            "a.YAML",
            "a.yaml.swp",
            "a.yaml~",
            "a.txt",
            "a",
            "yaml",
            "a.jsonl",
        ] {
            assert!(!is_manifest_name(no), "{no}");
        }
        assert!(is_hidden_name("..2026_12_02_18_00_00.1"));
        assert!(!is_hidden_name("manifests"));
    }
}

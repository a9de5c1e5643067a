//! Positions inside a YAML string: maps each character of a scalar's value back to the file.
//!
//! An annotation is YAML inside a YAML string. To point a diagnostic at the right column of
//! the outer file, the scalar's source text is decoded again here, character by character,
//! remembering where each character of the value came from (for a literal block scalar it
//! is a constant column shift per line; quoted and folded styles need escapes and folding).
//! The decoded text is compared with the parser's value: if they differ in any way the map
//! is not used and every position falls back to the start of the scalar, so a column is
//! either exact or visibly coarse, never wrong.

use crate::front::yaml::{PosMap, Style};
use crate::source::{Pos, SourceFile};

/// Where each character of a scalar's value stands in the file.
pub struct ScalarMap {
    /// One position per character of the value.
    positions: Runs,
    /// Index into `positions` of the first character of each line of the value.
    line_starts: Vec<usize>,
    /// Used past the end of the value, and for everything when decoding did not agree.
    fallback: Pos,
    end: Pos,
}

/// Values longer than this get the coarse map: the exact one costs eight bytes per character,
/// and Kubernetes refuses annotations over 256 KiB anyway.
pub const MAX_EXACT_BYTES: usize = 16 << 20;

impl ScalarMap {
    /// Builds the map for a scalar whose value is `value` and whose source starts at `start`.
    pub fn build(file: &SourceFile, start: Pos, style: Style, value: &str) -> ScalarMap {
        ScalarMap::build_with(file, start, style, value, true)
    }

    /// [`ScalarMap::build`]; `compare_lines`: a literal block may be compared line by line
    /// ([`literal_runs`]) rather than decoded (tests hold the two to the same map).
    fn build_with(
        file: &SourceFile,
        start: Pos,
        style: Style,
        value: &str,
        compare_lines: bool,
    ) -> ScalarMap {
        if value.len() > MAX_EXACT_BYTES {
            return ScalarMap::coarse(start);
        }
        // Where each line of the value starts, in characters; their number is the room the
        // lists of decoding need (a block scalar's source has a line for each, and a run of
        // positions each).
        let mut line_starts = vec![0];
        let line_starts_are_bytes = value.is_ascii();
        if line_starts_are_bytes {
            // Characters are bytes: the common case, and a faster loop.
            line_starts.extend(memchr::memchr_iter(b'\n', value.as_bytes()).map(|i| i + 1));
        } else {
            for (i, c) in value.chars().enumerate() {
                if c == '\n' {
                    line_starts.push(i + 1);
                }
            }
        }
        let lines = line_starts.len();
        // A literal block whose lines are the value's as they are (an annotation's, nearly
        // always) is compared line by line; anything else is decoded again, one position per
        // character. The decoded text must be the parser's value, or positions fall back to
        // the start.
        let plain_literal = (compare_lines && style == Style::Literal && line_starts_are_bytes)
            .then(|| literal_runs(file, start, value, lines))
            .flatten();
        let decoded = plain_literal.or_else(|| {
            source_start(file, start, style).and_then(|(off, at)| {
                let src = &file.text[off..];
                let (text, runs) = match style {
                    // Block scalars are compared with the value as they are decoded, without
                    // building the text again (annotations are block scalars).
                    Style::Literal | Style::Folded => {
                        let mut expect = Expect {
                            rest: value,
                            ok: true,
                        };
                        let runs =
                            decode_block(src, at, style == Style::Folded, lines, &mut expect)?;
                        return (expect.ok && expect.rest.is_empty()).then_some(runs);
                    }
                    Style::DoubleQuoted => decode_quoted(src, at, true)?,
                    Style::SingleQuoted => decode_quoted(src, at, false)?,
                    Style::Plain => decode_plain(src, at)?,
                };
                (text == value).then_some(runs)
            })
        });
        match decoded {
            Some(positions) => {
                let end = positions
                    .last()
                    .map_or(start, |p| Pos::new(p.line, p.column + 1));
                ScalarMap {
                    positions,
                    line_starts,
                    fallback: start,
                    end,
                }
            }
            None => ScalarMap::coarse(start),
        }
    }

    /// A map that sends every position to `at`.
    pub fn coarse(at: Pos) -> ScalarMap {
        ScalarMap {
            positions: Runs::default(),
            line_starts: Vec::new(),
            fallback: at,
            end: at,
        }
    }

    /// Whether positions are exact.
    pub fn is_exact(&self) -> bool {
        !self.line_starts.is_empty()
    }
}

impl PosMap for ScalarMap {
    fn map(&self, line: usize, col: usize) -> Pos {
        let Some(&first) = line.checked_sub(1).and_then(|l| self.line_starts.get(l)) else {
            return if self.is_exact() {
                self.end
            } else {
                self.fallback
            };
        };
        match self.positions.get_near(first + col, line - 1) {
            // A column past the end of its line lands on the line break, which is mapped too.
            Some(p) => p,
            None => self.end,
        }
    }
}

/// Where the scalar's source starts. The parser reports a block scalar's position at its
/// first content line; decoding needs its header (`|-`, `>`), the last non-blank line before.
fn source_start(file: &SourceFile, start: Pos, style: Style) -> Option<(usize, Pos)> {
    if !matches!(style, Style::Literal | Style::Folded) {
        return Some((file.offset(start)?, start));
    }
    let mut line = start.line;
    while line > 1 {
        line -= 1;
        let (offset, text) = file.line_at(line)?;
        let code = before_comment(text).trim_end();
        if code.trim().is_empty() {
            continue;
        }
        let idx = code.rfind(['|', '>'])?;
        let before = &code[..idx];
        let column = if before.is_ascii() {
            before.len()
        } else {
            before.chars().count()
        };
        return Some((offset + idx, Pos::new(line, column as u32 + 1)));
    }
    None
}

/// The text before the first ` #` (a comment), or all of it.
fn before_comment(line: &str) -> &str {
    let b = line.as_bytes();
    memchr::memchr_iter(b'#', b)
        .find(|&i| i > 0 && b[i - 1] == b' ')
        .map_or(line, |i| &line[..i - 1])
}

/// Where decoded text goes: built, or compared with the value the parser gave.
trait Sink {
    fn push(&mut self, c: char);
    fn push_str(&mut self, s: &str);
}

impl Sink for String {
    fn push(&mut self, c: char) {
        String::push(self, c)
    }
    fn push_str(&mut self, s: &str) {
        String::push_str(self, s)
    }
}

/// Compares decoded text with the expected value as it comes.
struct Expect<'v> {
    rest: &'v str,
    ok: bool,
}

impl Sink for Expect<'_> {
    fn push(&mut self, c: char) {
        match self.rest.strip_prefix(c) {
            Some(r) => self.rest = r,
            None => self.ok = false,
        }
    }
    fn push_str(&mut self, s: &str) {
        match self.rest.strip_prefix(s) {
            Some(r) => self.rest = r,
            None => self.ok = false,
        }
    }
}

/// The number of characters of `s`, without decoding when it is ASCII.
fn char_len(s: &str) -> usize {
    if s.is_ascii() {
        s.len()
    } else {
        s.chars().count()
    }
}

/// The positions of an ASCII literal block scalar (`|`, `|-`) whose value's lines
/// stand in the source as they are, each after the indentation of the first, one after the
/// other, with no empty or blank line among them and none more indented after them: an
/// annotation, nearly always. `start` is where the parser put the scalar (its first
/// character). The lines are compared where they are instead of the block being decoded
/// again; `None` leaves the scalar to [`decode_block`], which gives these same positions
/// for every block taken here.
fn literal_runs(file: &SourceFile, start: Pos, value: &str, lines: usize) -> Option<Runs> {
    let indent = (start.column as usize).checked_sub(1).filter(|&n| n > 0)?;
    let v = value.as_bytes();
    if matches!(v.first(), None | Some(b'\n' | b' ' | b'\t')) {
        return None;
    }
    let text = file.text.as_bytes();
    let (first, _) = file.line_at(start.line)?;
    // The header is the line before: `|`, then `-` at most, then a comment at most.
    let header_end = first.checked_sub(1).filter(|&e| text[e] == b'\n')?;
    let header_start = memchr::memrchr(b'\n', &text[..header_end]).map_or(0, |i| i + 1);
    let code = before_comment(&file.text[header_start..header_end]).trim_end();
    let clip = match &code[code.rfind(['|', '>'])?..] {
        "|" => true,
        "|-" => false,
        // Keeping the final breaks (`|+`) is left to decoding, as is anything else.
        _ => return None,
    };
    let body = if clip {
        value.strip_suffix('\n')?
    } else {
        value
    };
    let mut runs = Runs {
        runs: Vec::with_capacity(lines),
        len: 0,
    };
    // The value's lines but the empty one after a final break; each but a stripped last
    // one is followed by its break.
    let body_lines = if clip { lines - 1 } else { lines };
    let mut at = first;
    for (k, line) in body.split('\n').enumerate() {
        let l = line.as_bytes();
        if l.iter().all(|&b| b == b' ') {
            return None; // empty or blank: chomping and blank lines are decode_block's
        }
        let end = at + indent + l.len();
        if text.get(at..at + indent)?.iter().any(|&b| b != b' ')
            || text.get(at + indent..end)? != l
            || !matches!(text.get(end), None | Some(b'\n'))
        {
            return None;
        }
        // The line's characters and its line break, one column each.
        runs.run(
            Pos::new(start.line + k as u32, indent as u32 + 1),
            l.len() + usize::from(k + 1 < body_lines || clip),
        );
        at = end + 1;
    }
    // After the block: blank lines, then the end or a line indented less.
    let mut rest = text.get(at..).unwrap_or_default();
    loop {
        let line_end = memchr::memchr(b'\n', rest).unwrap_or(rest.len());
        let line = &rest[..line_end];
        let spaces = line.iter().take_while(|&&b| b == b' ').count();
        if spaces < line.len() {
            if spaces >= indent {
                return None;
            }
            break;
        }
        if line_end == rest.len() {
            break;
        }
        rest = &rest[line_end + 1..];
    }
    Some(runs)
}

/// Literal (`|`) and folded (`>`) block scalars with automatic indentation, starting at the
/// beginning of `src`: the text goes to `text`, one position per character is returned.
/// `None` when the source is not in a shape handled here. `value_lines`: about how many
/// lines the value has (room made beforehand).
fn decode_block<S: Sink>(
    src: &str,
    start: Pos,
    folded: bool,
    value_lines: usize,
    text: &mut S,
) -> Option<Runs> {
    // A break that ends the file ends its last line; it starts no empty line after it (one
    // would count as a blank line kept by `|+`).
    let mut lines = src.strip_suffix('\n').unwrap_or(src).split('\n');
    let header = lines.next()?;
    let header = before_comment(header).trim_end();
    let mut chomp = 'c';
    for c in header.chars().skip(1) {
        match c {
            '-' => chomp = 's',
            '+' => chomp = 'k',
            // An explicit indentation indicator depends on the parent's indentation, which is
            // not known here: fall back rather than guess.
            _ => return None,
        }
    }
    // Collect the content lines: the indentation is that of the first non-empty line.
    let mut indent: Option<usize> = None;
    let mut content: Vec<(u32, &str)> = Vec::with_capacity(value_lines + 1);
    for (i, raw) in lines.enumerate() {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        let spaces = line.bytes().take_while(|&b| b == b' ').count();
        let blank = line[spaces..].is_empty();
        match indent {
            None if blank => {}
            None => {
                if spaces == 0 || line.as_bytes().get(spaces) == Some(&b'\t') {
                    break;
                }
                indent = Some(spaces);
            }
            Some(n) if !blank && spaces < n => break,
            Some(_) => {}
        }
        content.push((start.line + 1 + i as u32, line));
    }
    let n = indent?;
    // Trailing blank lines belong to chomping, not content.
    let mut last_content = content.len();
    while last_content > 0
        && content[last_content - 1]
            .1
            .trim_start_matches(' ')
            .is_empty()
    {
        last_content -= 1;
    }
    let trailing = content.len() - last_content;
    content.truncate(last_content);

    let mut pos = Runs {
        runs: Vec::with_capacity(value_lines + 1),
        len: 0,
    };
    let mut prev_normal: Option<bool> = None;
    let mut blanks = 0usize;
    let mut last_break = start;
    for (line_no, line) in &content {
        let body: &str = if line.len() >= n { &line[n..] } else { "" };
        let line_end = Pos::new(*line_no, char_len(line) as u32 + 1);
        if body.is_empty() && line.trim_start_matches(' ').is_empty() {
            blanks += 1;
            last_break = line_end;
            continue;
        }
        let normal = !body.starts_with([' ', '\t']);
        if folded {
            match prev_normal {
                None => push_n(text, &mut pos, '\n', blanks, last_break),
                Some(true) if normal && blanks == 0 => push_n(text, &mut pos, ' ', 1, last_break),
                Some(true) if normal => push_n(text, &mut pos, '\n', blanks, last_break),
                Some(_) => push_n(text, &mut pos, '\n', blanks + 1, last_break),
            }
        } else {
            let breaks = if prev_normal.is_some() {
                blanks + 1
            } else {
                blanks
            };
            push_n(text, &mut pos, '\n', breaks, last_break);
        }
        text.push_str(body);
        pos.run(Pos::new(*line_no, n as u32 + 1), char_len(body));
        prev_normal = Some(normal);
        blanks = 0;
        last_break = line_end;
    }
    match chomp {
        's' => {}
        'k' => {
            if prev_normal.is_some() {
                push_n(text, &mut pos, '\n', 1 + blanks + trailing, last_break);
            }
        }
        _ => {
            if prev_normal.is_some() {
                push_n(text, &mut pos, '\n', 1, last_break);
            }
        }
    }
    Some(pos)
}

fn push_n<S: Sink>(text: &mut S, pos: &mut Runs, c: char, n: usize, at: Pos) {
    for _ in 0..n {
        text.push(c);
        pos.push(at);
    }
}

/// Double- and single-quoted scalars, with escapes and line folding.
fn decode_quoted(src: &str, start: Pos, double: bool) -> Option<(String, Runs)> {
    let quote = if double { '"' } else { '\'' };
    let mut chars = src.chars().peekable();
    if chars.next()? != quote {
        return None;
    }
    let mut text = String::new();
    let mut pos = Runs::default();
    let mut line = start.line;
    let mut col = start.column + 1; // column of the next character
                                    // Whitespace seen on the current line but not yet known to be content.
    let mut pending_ws: Vec<(char, Pos)> = Vec::new();
    loop {
        let c = chars.next()?;
        let here = Pos::new(line, col);
        col += 1;
        match c {
            c if c == quote => {
                if !double && chars.peek() == Some(&'\'') {
                    chars.next();
                    col += 1;
                    flush(&mut text, &mut pos, &mut pending_ws);
                    text.push('\'');
                    pos.push(here);
                    continue;
                }
                flush(&mut text, &mut pos, &mut pending_ws);
                return Some((text, pos));
            }
            ' ' | '\t' => pending_ws.push((c, here)),
            '\r' => {}
            '\n' => {
                // Line folding: trailing whitespace goes, leading whitespace of the next
                // lines goes, one break becomes a space, each further empty line a newline.
                pending_ws.clear();
                let mut empties = 0;
                line += 1;
                col = 1;
                loop {
                    while matches!(chars.peek(), Some(' ' | '\t')) {
                        chars.next();
                        col += 1;
                    }
                    if chars.peek() == Some(&'\r') {
                        chars.next();
                    }
                    if chars.peek() == Some(&'\n') {
                        chars.next();
                        empties += 1;
                        line += 1;
                        col = 1;
                    } else {
                        break;
                    }
                }
                let at = Pos::new(line, col);
                if empties == 0 {
                    text.push(' ');
                    pos.push(at);
                } else {
                    push_n(&mut text, &mut pos, '\n', empties, at);
                }
            }
            '\\' if double => {
                flush(&mut text, &mut pos, &mut pending_ws);
                let e = chars.next()?;
                col += 1;
                let decoded = match e {
                    '0' => '\0',
                    'a' => '\x07',
                    'b' => '\x08',
                    't' | '\t' => '\t',
                    'n' => '\n',
                    'v' => '\x0b',
                    'f' => '\x0c',
                    'r' => '\r',
                    'e' => '\x1b',
                    ' ' => ' ',
                    '"' => '"',
                    '/' => '/',
                    '\\' => '\\',
                    'N' => '\u{85}',
                    '_' => '\u{a0}',
                    'L' => '\u{2028}',
                    'P' => '\u{2029}',
                    'x' | 'u' | 'U' => {
                        let n = match e {
                            'x' => 2,
                            'u' => 4,
                            _ => 8,
                        };
                        let mut v = 0u32;
                        for _ in 0..n {
                            v = v * 16 + chars.next()?.to_digit(16)?;
                            col += 1;
                        }
                        char::from_u32(v)?
                    }
                    '\n' | '\r' => {
                        // An escaped line break joins the lines with nothing in between.
                        if e == '\r' && chars.peek() == Some(&'\n') {
                            chars.next();
                        }
                        line += 1;
                        col = 1;
                        while matches!(chars.peek(), Some(' ' | '\t')) {
                            chars.next();
                            col += 1;
                        }
                        continue;
                    }
                    _ => return None,
                };
                text.push(decoded);
                pos.push(here);
            }
            c => {
                flush(&mut text, &mut pos, &mut pending_ws);
                text.push(c);
                pos.push(here);
            }
        }
    }
}

fn flush(text: &mut String, pos: &mut Runs, pending: &mut Vec<(char, Pos)>) {
    for (c, p) in pending.drain(..) {
        text.push(c);
        pos.push(p);
    }
}

/// A plain scalar on one line.
fn decode_plain(src: &str, start: Pos) -> Option<(String, Runs)> {
    let line = src.split('\n').next()?;
    let line = before_comment(line).trim_end();
    let text = line.to_string();
    let mut pos = Runs::default();
    pos.run(start, line.chars().count());
    Some((text, pos))
}

/// A sequence of positions, one per character, stored as runs: consecutive characters of a
/// line advance one column, and the line breaks folded into one place repeat a position.
/// A literal block scalar is one run per line instead of eight bytes per character.
#[derive(Default)]
struct Runs {
    runs: Vec<Run>,
    len: usize,
}

#[derive(Clone, Copy)]
struct Run {
    /// Index of the run's first character.
    index: usize,
    at: Pos,
    /// Columns advanced per character: 1, or 0 for a repeated position.
    step: u32,
    len: usize,
}

impl Runs {
    fn push(&mut self, p: Pos) {
        self.len += 1;
        if let Some(r) = self.runs.last_mut() {
            if r.at.line == p.line {
                let next = r.at.column + r.step * r.len as u32;
                if r.len == 1 && (p.column == r.at.column || p.column == r.at.column + 1) {
                    r.step = p.column - r.at.column;
                    r.len += 1;
                    return;
                }
                if r.len > 1 && p.column == next && (r.step == 1 || p.column == r.at.column) {
                    r.len += 1;
                    return;
                }
            }
        }
        self.runs.push(Run {
            index: self.len - 1,
            at: p,
            step: 1,
            len: 1,
        });
    }

    /// `n` characters from `at` on, one column each.
    fn run(&mut self, at: Pos, n: usize) {
        if n == 0 {
            return;
        }
        self.push(at);
        if n > 1 {
            match self.runs.last_mut() {
                Some(r) if r.len == 1 => {
                    r.step = 1;
                    r.len = n;
                    self.len += n - 1;
                }
                _ => {
                    for k in 1..n {
                        self.push(Pos::new(at.line, at.column + k as u32));
                    }
                }
            }
        }
    }

    fn get(&self, i: usize) -> Option<Pos> {
        self.get_near(i, 0)
    }

    /// [`Runs::get`], looking first in the run at `guess` (for a block scalar, the run of a
    /// line is usually the line's: the search is then skipped).
    fn get_near(&self, i: usize, guess: usize) -> Option<Pos> {
        if i >= self.len {
            return None;
        }
        let r = match self.runs.get(guess) {
            Some(&r) if r.index <= i && i < r.index + r.len => r,
            _ => self.runs[self.runs.partition_point(|r| r.index <= i) - 1],
        };
        Some(Pos::new(
            r.at.line,
            r.at.column + r.step * (i - r.index) as u32,
        ))
    }

    fn last(&self) -> Option<Pos> {
        self.len.checked_sub(1).and_then(|i| self.get(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::front::yaml::{parse, NodeKind, Shift};
    use crate::source::{FileId, Sources};

    /// Parses `outer`, takes the scalar under key `a`, maps it, and returns the outer position
    /// of the first occurrence of `needle` in the value.
    fn locate(outer: &str, needle: &str) -> (Pos, bool) {
        let mut sources = Sources::new();
        let id = sources.add("t.yaml", outer);
        let docs = parse(outer, id, &Shift { first_line: 1 });
        let root = docs[0].root.as_ref().unwrap().as_ref().unwrap();
        let a = root.get("a").unwrap();
        let NodeKind::Scalar { text, style, .. } = &a.kind else {
            panic!("not a scalar")
        };
        let m = ScalarMap::build(sources.get(id), a.span.start, *style, text);
        // Find the needle's (line, col) inside the value.
        let idx = text.find(needle).unwrap();
        let before = &text[..idx];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().unwrap().chars().count();
        let _ = FileId(0);
        (m.map(line, col), m.is_exact())
    }

    #[test]
    fn comments_are_cut_where_splitting_at_them_cuts() {
        let lines = [
            "", "#", " #", "a #b", "a#b #c", "é #x", "x # # y", "a ##", "  |- # c", "x",
        ];
        for line in lines {
            let split = line.split(" #").next().unwrap_or(line);
            assert_eq!(before_comment(line), split);
        }
    }

    #[test]
    fn literal_block() {
        let (p, exact) = locate("x: 1\na: |\n  kind: Mapping\n  prefix: foo\n", "foo");
        assert!(exact);
        assert_eq!(p, Pos::new(4, 11));
    }

    /// A kept block at the end of the file, with and without blank lines after it.
    #[test]
    fn literal_keep_at_the_end_of_the_file() {
        for tail in ["", "\n", "\n\n"] {
            let outer = format!("a: |+\n  kind: Mapping\n  prefix: foo\n{tail}");
            let (p, exact) = locate(&outer, "foo");
            assert!(exact, "{outer:?}");
            assert_eq!(p, Pos::new(3, 11));
        }
    }

    #[test]
    fn literal_strip_with_blank_lines() {
        let (p, exact) = locate("a: |-\n    ---\n    one: 1\n\n    two: 2\n\n", "two");
        assert!(exact);
        assert_eq!(p, Pos::new(5, 5));
    }

    #[test]
    fn folded_block() {
        let (p, exact) = locate("a: >\n  one\n  two\n\n  three\n", "three");
        assert!(exact);
        assert_eq!(p, Pos::new(5, 3));
    }

    #[test]
    fn double_quoted_with_escapes() {
        let (p, exact) = locate(
            "a: \"kind: Mapping\\nprefix: \\\"/x\\\"\\nservice: svc\"\n",
            "svc",
        );
        assert!(exact);
        // a: "kind: Mapping\nprefix: \"/x\"\nservice: svc"
        //                                              ^ column 45
        assert_eq!(p, Pos::new(1, 45));
    }

    #[test]
    fn double_quoted_multi_line() {
        let (p, exact) = locate("a: \"one\n  two\n\n  three\"\n", "three");
        assert!(exact);
        assert_eq!(p, Pos::new(4, 3));
    }

    #[test]
    fn single_quoted() {
        let (p, exact) = locate("a: 'it''s here'\n", "here");
        assert!(exact);
        assert_eq!(p, Pos::new(1, 11));
    }

    #[test]
    fn unicode_columns_count_characters() {
        let (p, exact) = locate("a: |\n  name: ünïcode\n  prefix: x\n", "x\n");
        assert!(exact);
        assert_eq!(p, Pos::new(3, 11));
    }

    /// Literal blocks compared line by line have the map of decoding them, for every line
    /// and column in and around the value: generated blocks with every chomping indicator,
    /// an indentation indicator, comments, blank, empty and more indented lines inside and
    /// after, tabs, carriage returns, a missing final break, and what follows the block.
    #[test]
    fn literal_blocks_compared_by_line_map_as_decoded() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n) as usize
        };
        let headers = ["|", "|-", "|+", "| # note", "|-  # x", "|2", ">", "|+ "];
        let words = [
            "kind: Mapping",
            "prefix: /a/",
            "x",
            "- b",
            "# not",
            "a:  b  ",
        ];
        let (mut compared, mut total) = (0, 0);
        for _ in 0..3000 {
            let indent = " ".repeat(1 + next(5));
            let mut outer = format!("x: 1\na: {}\n", headers[next(headers.len() as u64)]);
            for _ in 0..1 + next(5) {
                let line = match next(14) {
                    0 => String::new(),
                    1 => " ".repeat(next(8)),
                    2 => format!("{indent}  {}", words[next(6)]),
                    3 => format!("{indent}\t{}", words[next(6)]),
                    4 => format!("{indent}{}\r", words[next(6)]),
                    _ => format!("{indent}{}", words[next(6)]),
                };
                outer.push_str(&line);
                outer.push('\n');
            }
            match next(6) {
                0 => outer.push_str("b: 2\n"),
                1 => outer.push_str("\n\nb: 2\n"),
                2 => outer.push_str(&format!("\n{indent}   stray\n")),
                3 => {
                    outer.pop();
                }
                _ => {}
            }
            let mut sources = Sources::new();
            let id = sources.add("t.yaml", outer.as_str());
            let docs = parse(&outer, id, &Shift { first_line: 1 });
            let Some(Ok(Some(root))) = docs.first().map(|d| d.root.as_ref()) else {
                continue;
            };
            let Some(a) = root.get("a") else { continue };
            let NodeKind::Scalar { text, style, .. } = &a.kind else {
                continue;
            };
            total += 1;
            let file = sources.get(id);
            let lines = text.split('\n').count();
            if *style == Style::Literal
                && text.is_ascii()
                && literal_runs(file, a.span.start, text, lines).is_some()
            {
                compared += 1;
            }
            let fast = ScalarMap::build_with(file, a.span.start, *style, text, true);
            let slow = ScalarMap::build_with(file, a.span.start, *style, text, false);
            assert_eq!(fast.is_exact(), slow.is_exact(), "{outer:?}");
            let width = text.split('\n').map(str::len).max().unwrap_or(0);
            for line in 0..lines + 3 {
                for col in 0..width + 4 {
                    assert_eq!(
                        fast.map(line, col),
                        slow.map(line, col),
                        "{outer:?} at {line}:{col}"
                    );
                }
            }
        }
        // Most blocks are of a shape compared line by line, and many are not.
        assert!(total > 2000, "{total}");
        assert!(
            compared > total / 5 && compared < total * 4 / 5,
            "{compared} of {total}"
        );
    }

    #[test]
    fn explicit_indentation_falls_back_to_the_scalar() {
        let (p, exact) = locate("a: |2\n    indented\n", "indented");
        assert!(!exact);
        // The parser places a block scalar at its first content line.
        assert_eq!(p, Pos::new(2, 3));
    }
}

#[cfg(test)]
mod runs_tests {
    use super::*;

    /// Runs hold exactly the positions pushed, whatever their pattern.
    #[test]
    fn runs_equal_a_plain_list() {
        let mut seed = 0x1234_5678_9abc_def1u64;
        for _ in 0..200 {
            let mut runs = Runs::default();
            let mut plain = Vec::new();
            let mut at = Pos::new(1, 1);
            for _ in 0..300 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                match seed % 7 {
                    0 => at = Pos::new(at.line + 1, 1 + (seed >> 8) as u32 % 5),
                    1 | 2 => at.column += 1,
                    3 => {}
                    4 => at.column += 2,
                    _ => {
                        let n = (seed >> 16) as usize % 6;
                        runs.run(at, n);
                        plain.extend((0..n).map(|k| Pos::new(at.line, at.column + k as u32)));
                        continue;
                    }
                }
                runs.push(at);
                plain.push(at);
            }
            for (i, p) in plain.iter().enumerate() {
                assert_eq!(runs.get(i), Some(*p), "index {i}");
                // Whatever run is guessed first, right or wrong or past the last.
                for guess in [0, i % 7, runs.runs.len() / 2, runs.runs.len() + 3] {
                    assert_eq!(runs.get_near(i, guess), Some(*p), "index {i}, {guess}");
                }
            }
            assert_eq!(runs.get(plain.len()), None);
            assert_eq!(runs.get_near(plain.len(), 1), None);
            assert_eq!(runs.last(), plain.last().copied());
        }
    }
}

//! A fast path for the block YAML that manifests are written in: saphyr's nodes, or no answer.
//!
//! Kubernetes manifests and `getambassador.io/config` annotations use a small part of YAML:
//! block mappings and sequences, plain and quoted scalars on one line, literal block
//! scalars, short flow collections on one line, comments. This module reads exactly that
//! part, byte by byte and line by line, about ten times faster than the general parser, and
//! builds the same [`Node`] tree the event builder in `yaml.rs` builds from saphyr-parser's
//! events: same text, same style, same spans (saphyr's conventions included, such as a
//! mapping ending at the next token and an empty value sitting on its `:`).
//!
//! **Architecture Invariant:** the fast path never reports an error. On anything outside
//! its subset (anchors, aliases, tags, directives, folded or multi-line scalars, tabs,
//! carriage returns, non-ASCII text, and every shape it has not been taught) it gives up and
//! the caller parses the chunk with saphyr, so errors and their positions always come from
//! saphyr. The differential tests in `yaml/tests.rs` hold the two to the same output.

use crate::front::yaml::{Document, Node, NodeKind, PosMap, Style, Text, MAX_DEPTH};
use crate::source::{FileId, Span};

/// The fast path declined; parse with saphyr.
#[derive(Debug)]
pub struct Bail;

type R<T> = Result<T, Bail>;

/// Nesting depth at which the fast path declines, well below [`MAX_DEPTH`] so that the
/// depth limit is always reported by the general path.
const DEPTH_LIMIT: usize = MAX_DEPTH / 2;

/// Implicit keys longer than this are left to saphyr (YAML caps them at 1024 characters).
const MAX_KEY: usize = 1000;

#[derive(Clone, Copy)]
struct Line {
    /// Byte offset of the first character.
    start: u32,
    /// Byte offset of the line break (or the end of the text).
    end: u32,
    /// Leading spaces.
    indent: u32,
    /// Neither blank nor a comment.
    sig: bool,
}

/// Parses one chunk of `split_documents`, or declines.
pub fn parse(text: &str, file: FileId, map: &dyn PosMap) -> Result<Vec<Document>, Bail> {
    let src = text.as_bytes();
    if src.len() > u32::MAX as usize / 2 {
        return Err(Bail);
    }
    // Accept only printable ASCII and line feeds, so that columns are byte offsets and
    // nothing saphyr treats specially (tabs, carriage returns, a BOM, control characters)
    // remains. No early exit, so the check runs over whole vectors of bytes; then the lines.
    let printable = src.iter().fold(true, |ok, &b| {
        ok & ((b.wrapping_sub(0x20) < 0x5f) | (b == b'\n'))
    });
    if !printable {
        return Err(Bail);
    }
    let mut lines = Vec::with_capacity(src.len() / 24 + 1);
    let mut line = |start: usize, end: usize| {
        let l = &src[start..end];
        let indent = l.iter().take_while(|&&b| b == b' ').count();
        lines.push(Line {
            start: start as u32,
            end: end as u32,
            indent: indent as u32,
            sig: l.get(indent).is_some_and(|&b| b != b'#'),
        });
    };
    let mut start = 0usize;
    for k in memchr::memchr_iter(b'\n', src) {
        line(start, k);
        start = k + 1;
    }
    if start < src.len() {
        line(start, src.len());
    }
    // Without a final line break saphyr ends collections at odd places when the last line
    // is blank or a comment; only a last line with content is predictable.
    if !src.ends_with(b"\n") && lines.last().is_some_and(|l| !l.sig) {
        return Err(Bail);
    }
    let mut p = Parser {
        text,
        src,
        eof: (lines.len() + 1, 0),
        lines,
        cur: 0,
        depth: 0,
        file,
        map,
        entries: Vec::new(),
        items: Vec::new(),
    };
    p.document()
}

struct Parser<'a> {
    text: &'a str,
    src: &'a [u8],
    lines: Vec<Line>,
    /// Index of the first line not consumed yet.
    cur: usize,
    depth: usize,
    /// Where saphyr places tokens at the end of the stream: the line after the last one.
    eof: (usize, usize),
    file: FileId,
    map: &'a dyn PosMap,
    /// Entries and items of the collections being read, innermost last: a finished
    /// collection takes its own off the top in one allocation of the right size.
    entries: Vec<(Node, Node)>,
    items: Vec<Node>,
}

impl<'a> Parser<'a> {
    fn document(&mut self) -> R<Vec<Document>> {
        // Markers and directives inside the chunk are left to saphyr, except one leading `---`.
        let mut first = self.next_sig(0);
        let mut explicit = None;
        if let Some(i) = first {
            let l = self.line(i);
            if l.starts_with(b"---") {
                let rest = &l[3..];
                if !(rest.is_empty() || rest[0] == b' ' && is_blank_or_comment(rest)) {
                    return Err(Bail);
                }
                explicit = Some(i);
                first = self.next_sig(i + 1);
            }
        }
        for l in &self.lines[first.unwrap_or(self.lines.len())..] {
            let b = &self.src[l.start as usize..l.end as usize];
            if b.starts_with(b"---") || b.starts_with(b"...") || b.starts_with(b"%") {
                return Err(Bail);
            }
        }
        let Some(i) = first else {
            // Nothing but comments: no document at all, unless a `---` opened an empty one.
            return match explicit {
                None => Ok(Vec::new()),
                Some(m) => {
                    if !self.src.ends_with(b"\n") {
                        return Err(Bail);
                    }
                    let at = self.eof;
                    Ok(vec![Document {
                        start: self.map.map(m + 1, 0),
                        root: Ok(Some(self.scalar(String::new(), Style::Plain, at, at))),
                    }])
                }
            };
        };
        let indent = self.lines[i].indent as usize;
        let start = match explicit {
            Some(m) => self.map.map(m + 1, 0),
            None => self.map.map(i + 1, indent),
        };
        let c = self.at(i, indent);
        let is_seq = c == b'-' && self.space_or_eol(i, indent + 1);
        if !is_seq && self.key_at(i, indent)?.is_none() {
            return Err(Bail); // a scalar or flow document: rare, left to saphyr
        }
        let root = self.block_node(i, indent, -1)?;
        if self.next_sig(self.cur).is_some() {
            return Err(Bail);
        }
        Ok(vec![Document {
            start,
            root: Ok(Some(root)),
        }])
    }

    // ---- lines and positions ----

    /// Columns `from..to` of line `i` as a string (the text is ASCII: columns are bytes).
    fn owned(&self, i: usize, from: usize, to: usize) -> Text {
        let start = self.lines[i].start as usize;
        Text::from(&self.text[start + from..start + to])
    }

    fn line(&self, i: usize) -> &'a [u8] {
        let l = self.lines[i];
        let src: &'a [u8] = self.src;
        &src[l.start as usize..l.end as usize]
    }

    /// The byte at column `col` of line `i`, or 0 past its end.
    fn at(&self, i: usize, col: usize) -> u8 {
        self.line(i).get(col).copied().unwrap_or(0)
    }

    fn space_or_eol(&self, i: usize, col: usize) -> bool {
        matches!(self.at(i, col), b' ' | 0)
    }

    fn next_sig(&self, from: usize) -> Option<usize> {
        (from..self.lines.len()).find(|&i| self.lines[i].sig)
    }

    /// Where saphyr puts the token at line `i` (its first non-space character), or the end.
    fn token_pos(&self, i: Option<usize>) -> (usize, usize) {
        match i {
            Some(i) => (i + 1, self.lines[i].indent as usize),
            None => self.eof,
        }
    }

    fn span(&self, start: (usize, usize), end: (usize, usize)) -> Span {
        Span::new(
            self.file,
            self.map.map(start.0, start.1),
            self.map.map(end.0, end.1),
        )
    }

    fn scalar(
        &self,
        text: impl Into<Text>,
        style: Style,
        start: (usize, usize),
        end: (usize, usize),
    ) -> Node {
        Node {
            kind: NodeKind::Scalar {
                text: text.into(),
                style,
                tagged: false,
            },
            span: self.span(start, end),
        }
    }

    fn enter(&mut self) -> R<()> {
        self.depth += 1;
        if self.depth >= DEPTH_LIMIT {
            return Err(Bail);
        }
        Ok(())
    }

    // ---- block structure ----

    /// The node whose first character is at column `col` of line `i`, inside a block
    /// collection indented `parent` columns.
    fn block_node(&mut self, i: usize, col: usize, parent: isize) -> R<Node> {
        if self.at(i, col) == b'-' && self.space_or_eol(i, col + 1) {
            return self.block_seq(i, col, false);
        }
        if let Some(key) = self.key_at(i, col)? {
            return self.block_map(i, col, key);
        }
        self.inline_value(i, col, parent)
    }

    /// A block mapping whose first key is at column `col` of line `i`.
    fn block_map(&mut self, mut i: usize, col: usize, first: (Node, usize)) -> R<Node> {
        self.enter()?;
        let start = (i + 1, col);
        let base = self.entries.len();
        let mut key = Some(first);
        let next = loop {
            let (k, colon) = match key.take() {
                Some(k) => k,
                None => self.key_at(i, col)?.ok_or(Bail)?,
            };
            let v = skip_spaces(self.line(i), colon + 1);
            let value = if v >= self.line(i).len() || self.at(i, v) == b'#' {
                // The value is on the next lines, or absent.
                match self.next_sig(i + 1) {
                    Some(s) if self.lines[s].indent as usize > col => {
                        let ind = self.lines[s].indent as usize;
                        self.block_node(s, ind, col as isize)?
                    }
                    Some(s)
                        if self.lines[s].indent as usize == col
                            && self.at(s, col) == b'-'
                            && self.space_or_eol(s, col + 1) =>
                    {
                        self.block_seq(s, col, true)?
                    }
                    _ => {
                        self.cur = i + 1;
                        let at = (i + 1, colon);
                        self.scalar(String::new(), Style::Plain, at, at)
                    }
                }
            } else {
                self.inline_value(i, v, col as isize)?
            };
            self.entries.push((k, value));
            match self.next_sig(self.cur) {
                Some(s) if self.lines[s].indent as usize == col => i = s,
                Some(s) if (self.lines[s].indent as usize) < col => break Some(s),
                Some(_) => return Err(Bail),
                None => break None,
            }
        };
        self.depth -= 1;
        Ok(Node {
            kind: NodeKind::Map(self.entries.drain(base..).collect()),
            span: self.span(start, self.token_pos(next)),
        })
    }

    /// A block sequence whose first `-` is at column `col` of line `i`. An indentless
    /// sequence (the value of a key at the same column) starts at its first item.
    fn block_seq(&mut self, mut i: usize, col: usize, indentless: bool) -> R<Node> {
        self.enter()?;
        let start = if indentless {
            let v = skip_spaces(self.line(i), col + 1);
            if v >= self.line(i).len() || self.at(i, v) == b'#' {
                return Err(Bail);
            }
            (i + 1, v)
        } else {
            (i + 1, col)
        };
        let base = self.items.len();
        let next = loop {
            let v = skip_spaces(self.line(i), col + 1);
            let item = if v >= self.line(i).len() {
                match self.next_sig(i + 1) {
                    Some(s) if self.lines[s].indent as usize > col => {
                        let ind = self.lines[s].indent as usize;
                        self.block_node(s, ind, col as isize)?
                    }
                    _ => return Err(Bail), // an empty item
                }
            } else if self.at(i, v) == b'#' {
                return Err(Bail);
            } else {
                self.block_node(i, v, col as isize)?
            };
            self.items.push(item);
            match self.next_sig(self.cur) {
                Some(s) if self.lines[s].indent as usize == col => {
                    if self.at(s, col) == b'-' && self.space_or_eol(s, col + 1) {
                        i = s;
                    } else if indentless {
                        break Some(s);
                    } else {
                        return Err(Bail);
                    }
                }
                Some(s) if (self.lines[s].indent as usize) < col => break Some(s),
                Some(_) => return Err(Bail),
                None => break None,
            }
        };
        self.depth -= 1;
        Ok(Node {
            kind: NodeKind::Seq(self.items.drain(base..).collect()),
            span: self.span(start, self.token_pos(next)),
        })
    }

    /// If an implicit key starts at column `col` of line `i`: the key and its `:` column.
    fn key_at(&self, i: usize, col: usize) -> R<Option<(Node, usize)>> {
        let line = self.line(i);
        match line.get(col).copied().unwrap_or(0) {
            b'"' | b'\'' => {
                let (node, end) = self.quoted(i, col)?;
                let c = skip_spaces(line, end);
                if line.get(c) == Some(&b':') && self.space_or_eol(i, c + 1) {
                    if end - col > MAX_KEY {
                        return Err(Bail);
                    }
                    return Ok(Some((node, c)));
                }
                Ok(None)
            }
            b'[' | b'{' | b'-' | b'#' | 0 => Ok(None),
            b => {
                if is_indicator(b) {
                    return Err(Bail);
                }
                let mut k = col;
                while k < line.len() {
                    match line[k] {
                        b':' if matches!(line.get(k + 1), None | Some(b' ')) => {
                            let end = trim_end(line, col, k);
                            if end - col > MAX_KEY {
                                return Err(Bail);
                            }
                            let text = self.owned(i, col, end);
                            let node = self.scalar(text, Style::Plain, (i + 1, col), (i + 1, end));
                            return Ok(Some((node, k)));
                        }
                        b'#' if line[k - 1] == b' ' => return Ok(None),
                        _ => k += 1,
                    }
                }
                Ok(None)
            }
        }
    }

    /// A value that starts on the line of its key or dash: a scalar, a flow collection or a
    /// literal block scalar. Consumes its lines.
    fn inline_value(&mut self, i: usize, col: usize, parent: isize) -> R<Node> {
        let line = self.line(i);
        let (node, end) = match line[col] {
            b'|' => return self.literal(i, col, parent),
            b'"' | b'\'' => self.quoted(i, col)?,
            b'[' | b'{' => {
                self.enter()?;
                let r = self.flow(i, col)?;
                self.depth -= 1;
                r
            }
            b if is_indicator(b) || b == b'-' && matches!(line.get(col + 1), None | Some(b' ')) => {
                return Err(Bail)
            }
            _ => {
                let mut k = col;
                let mut last = col;
                while k < line.len() {
                    match line[k] {
                        b':' if matches!(line.get(k + 1), None | Some(b' ')) => return Err(Bail),
                        b'#' if line[k - 1] == b' ' => break,
                        b' ' => {}
                        _ => last = k + 1,
                    }
                    k += 1;
                }
                let text = self.owned(i, col, last);
                (
                    self.scalar(text, Style::Plain, (i + 1, col), (i + 1, last)),
                    last,
                )
            }
        };
        if !is_blank_or_comment(&line[end..]) {
            return Err(Bail);
        }
        self.cur = i + 1;
        // A more indented line after a one-line scalar would continue it, or be an error.
        if let Some(s) = self.next_sig(i + 1) {
            if self.lines[s].indent as isize > parent {
                return Err(Bail);
            }
        }
        Ok(node)
    }

    /// A literal block scalar whose `|` is at column `col` of line `i`.
    fn literal(&mut self, i: usize, col: usize, parent: isize) -> R<Node> {
        let header = self.line(i);
        let (chomp, after) = match header.get(col + 1) {
            Some(b'-') => (b'-', col + 2),
            Some(b'+') => (b'+', col + 2),
            _ => (b' ', col + 1),
        };
        if !is_blank_or_comment(&header[after..]) {
            return Err(Bail); // an indentation indicator, or something else
        }
        // The content indentation is that of the first non-blank line; blank lines before
        // it may not be longer (YAML makes that an error, which is saphyr's to report).
        let mut first = None;
        let mut leading_max = 0;
        for j in i + 1..self.lines.len() {
            let l = self.lines[j];
            if l.indent == l.end - l.start {
                leading_max = leading_max.max(l.indent);
            } else {
                first = Some(j);
                break;
            }
        }
        let first = first.ok_or(Bail)?;
        let m = self.lines[first].indent;
        if m as isize <= parent || leading_max > m {
            return Err(Bail);
        }
        let mut text = String::new();
        let mut blanks = 0; // empty lines since the last content line
        let mut any = false;
        let mut term = None;
        for j in i + 1..self.lines.len() {
            let l = self.lines[j];
            let len = l.end - l.start;
            if l.indent == len && len <= m {
                blanks += 1; // an empty line: inside, or chomped at the end
                continue;
            }
            if l.indent < m {
                term = Some(j); // a less indented line ends the scalar
                break;
            }
            // A content line; a line of spaces past the indentation is content too.
            if any {
                text.push('\n');
            }
            for _ in 0..blanks {
                text.push('\n');
            }
            text.push_str(&self.text[(l.start + m) as usize..l.end as usize]);
            any = true;
            blanks = 0;
        }
        match chomp {
            b'-' => {}
            b'+' => {
                text.push('\n');
                for _ in 0..blanks {
                    text.push('\n');
                }
            }
            _ => text.push('\n'),
        }
        let end = match term {
            Some(j) => (j + 1, self.lines[j].indent as usize),
            None if self.src.ends_with(b"\n") => self.eof,
            None => return Err(Bail),
        };
        self.cur = term.unwrap_or(self.lines.len());
        Ok(self.scalar(text, Style::Literal, (first + 1, m as usize), end))
    }

    // ---- one-line scalars and flow collections ----

    /// A quoted scalar that closes on its line: the node and the column after the quote.
    fn quoted(&self, i: usize, col: usize) -> R<(Node, usize)> {
        let line = self.line(i);
        let q = line[col];
        let mut text = String::new();
        let mut k = col + 1;
        loop {
            let b = *line.get(k).ok_or(Bail)?;
            k += 1;
            match b {
                b'\'' if q == b'\'' => {
                    if line.get(k) == Some(&b'\'') {
                        text.push('\'');
                        k += 1;
                    } else {
                        break;
                    }
                }
                b'"' if q == b'"' => break,
                b'\\' if q == b'"' => {
                    let e = *line.get(k).ok_or(Bail)?;
                    k += 1;
                    text.push(match e {
                        b'\\' => '\\',
                        b'"' => '"',
                        b'/' => '/',
                        b'n' => '\n',
                        b't' => '\t',
                        b'r' => '\r',
                        b'0' => '\0',
                        b' ' => ' ',
                        _ => return Err(Bail),
                    });
                }
                b => text.push(char::from(b)),
            }
        }
        let style = if q == b'"' {
            Style::DoubleQuoted
        } else {
            Style::SingleQuoted
        };
        let end = trailing(line, k);
        Ok((self.scalar(text, style, (i + 1, col), (i + 1, end)), k))
    }

    /// A flow sequence or mapping that closes on its line.
    fn flow(&mut self, i: usize, col: usize) -> R<(Node, usize)> {
        let line = self.line(i);
        let open = line[col];
        let close = if open == b'[' { b']' } else { b'}' };
        let mut seq = Vec::new();
        let mut entries = Vec::new();
        let mut k = skip_spaces(line, col + 1);
        loop {
            if line.get(k) == Some(&close) {
                k += 1;
                break;
            }
            let (item, end) = self.flow_item(i, k)?;
            k = skip_spaces(line, end);
            if open == b'{' {
                if line.get(k) != Some(&b':') || line.get(k + 1) != Some(&b' ') {
                    return Err(Bail);
                }
                k = skip_spaces(line, k + 1);
                if matches!(line.get(k), Some(b',' | b'}') | None) {
                    return Err(Bail);
                }
                let (value, end) = self.flow_item(i, k)?;
                k = skip_spaces(line, end);
                entries.push((item, value));
            } else {
                seq.push(item);
            }
            match line.get(k) {
                Some(b',') => k = skip_spaces(line, k + 1),
                Some(&c) if c == close => {
                    k += 1;
                    break;
                }
                _ => return Err(Bail),
            }
        }
        let kind = if open == b'[' {
            NodeKind::Seq(seq)
        } else {
            NodeKind::Map(entries)
        };
        let end = trailing(line, k);
        Ok((
            Node {
                kind,
                span: self.span((i + 1, col), (i + 1, end)),
            },
            k,
        ))
    }

    fn flow_item(&mut self, i: usize, k: usize) -> R<(Node, usize)> {
        let line = self.line(i);
        match line.get(k).copied().ok_or(Bail)? {
            b'"' | b'\'' => self.quoted(i, k),
            b'[' | b'{' => {
                self.enter()?;
                let r = self.flow(i, k)?;
                self.depth -= 1;
                Ok(r)
            }
            b if !b.is_ascii_alphanumeric()
                && !matches!(b, b'.' | b'_' | b'/' | b'~' | b'+' | b'(' | b'$' | b'=') =>
            {
                Err(Bail)
            }
            _ => {
                // Plain scalars in flow collections: words of a conservative alphabet.
                let mut e = k;
                let mut last = k;
                while e < line.len() {
                    match line[e] {
                        b',' | b']' | b'}' => break,
                        b' ' => {}
                        b'-' if line[e - 1] != b' ' => last = e + 1,
                        b if b.is_ascii_alphanumeric()
                            || matches!(
                                b,
                                b'.' | b'_'
                                    | b'/'
                                    | b'~'
                                    | b'+'
                                    | b'='
                                    | b'('
                                    | b')'
                                    | b';'
                                    | b'$'
                                    | b'^'
                            ) =>
                        {
                            last = e + 1
                        }
                        _ => return Err(Bail),
                    }
                    e += 1;
                }
                let text = self.owned(i, k, last);
                Ok((
                    self.scalar(text, Style::Plain, (i + 1, k), (i + 1, last)),
                    last,
                ))
            }
        }
    }
}

/// Characters that start something other than a plain scalar (or a reserved one).
fn is_indicator(b: u8) -> bool {
    matches!(
        b,
        b'&' | b'*' | b'!' | b'|' | b'>' | b'%' | b'@' | b'`' | b'?' | b':' | b',' | b']' | b'}'
    )
}

fn skip_spaces(line: &[u8], mut k: usize) -> usize {
    while line.get(k) == Some(&b' ') {
        k += 1;
    }
    k
}

/// Where saphyr ends a quoted scalar or a flow collection that closes before column `k`:
/// past the spaces that follow, and past a comment that follows them.
fn trailing(line: &[u8], k: usize) -> usize {
    let e = skip_spaces(line, k);
    if e > k && line.get(e) == Some(&b'#') {
        line.len()
    } else {
        e
    }
}

fn trim_end(line: &[u8], start: usize, mut end: usize) -> usize {
    while end > start && line[end - 1] == b' ' {
        end -= 1;
    }
    end
}

/// Spaces, optionally followed by a comment that a space separates from what precedes.
fn is_blank_or_comment(rest: &[u8]) -> bool {
    let k = skip_spaces(rest, 0);
    k == rest.len() || (rest[k] == b'#' && k > 0)
}

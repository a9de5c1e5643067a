//! YAML text to a tree of positioned nodes, with limits that keep hostile input cheap.
//!
//! Only this module (with the rest of `front`) knows YAML. The parser is `saphyr-parser`
//! (YAML 1.2, events with spans). Documents are split at `---` lines first and each is
//! parsed on its own, so one broken document does not hide the others, and positions are
//! shifted back by the document's first line. Scalars keep their text and style: types are
//! resolved later by whoever reads a field, because `yes` means `true` in YAML 1.1 (what
//! Emissary and Kubernetes' YAML library read) and a string in YAML 1.2.
//!
//! Speed: each chunk first goes to [`fast`], a reader for the block YAML manifests are
//! written in that builds the very same nodes; it declines anything else, and saphyr reads
//! what it declines. Large streams are parsed on several threads ([`parse_parallel`]).

mod fast;
#[cfg(test)]
mod tests;

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle};

use crate::source::{FileId, Pos, Span};

/// Nesting deeper than this is refused: real manifests stay under 20 levels.
pub const MAX_DEPTH: usize = 128;
/// Aliases may expand a document to at most this many nodes beyond its own.
pub const MAX_ALIAS_NODES: usize = 100_000;

/// How a scalar was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    Plain,
    SingleQuoted,
    DoubleQuoted,
    Literal,
    Folded,
}

/// The text of a scalar: short ones (most keys and names) are kept inline, without an
/// allocation of their own.
pub type Text = compact_str::CompactString;

/// A parsed node and where it stands.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub kind: NodeKind,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum NodeKind {
    Scalar {
        text: Text,
        style: Style,
        tagged: bool,
    },
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// The scalar's text, whatever its style (a plain `123` is `"123"`).
    pub fn scalar(&self) -> Option<&str> {
        match &self.kind {
            NodeKind::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }

    /// A string value: any scalar that is not a plain null.
    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            NodeKind::Scalar { text, .. } if !self.is_null() => Some(text),
            _ => None,
        }
    }

    pub fn is_plain(&self) -> bool {
        matches!(
            &self.kind,
            NodeKind::Scalar {
                style: Style::Plain,
                tagged: false,
                ..
            }
        )
    }

    /// YAML 1.2 core schema null: empty, `~`, `null`.
    pub fn is_null(&self) -> bool {
        match &self.kind {
            NodeKind::Scalar {
                text,
                style: Style::Plain,
                tagged: false,
            } => {
                matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL")
            }
            _ => false,
        }
    }

    /// YAML 1.2 core schema boolean.
    pub fn as_bool(&self) -> Option<bool> {
        if !self.is_plain() {
            return None;
        }
        match self.scalar()? {
            "true" | "True" | "TRUE" => Some(true),
            "false" | "False" | "FALSE" => Some(false),
            _ => None,
        }
    }

    /// A YAML 1.1 boolean that YAML 1.2 reads as a string, with the value YAML 1.1 gives it.
    pub fn yaml11_bool(&self) -> Option<bool> {
        if !self.is_plain() {
            return None;
        }
        match self.scalar()? {
            "yes" | "Yes" | "YES" | "on" | "On" | "ON" | "y" | "Y" => Some(true),
            "no" | "No" | "NO" | "off" | "Off" | "OFF" | "n" | "N" => Some(false),
            _ => None,
        }
    }

    /// YAML 1.2 core schema integer (decimal, `0o` octal, `0x` hex).
    pub fn as_int(&self) -> Option<i64> {
        if !self.is_plain() {
            return None;
        }
        let t = self.scalar()?;
        let (neg, body) = match t.as_bytes().first() {
            Some(b'-') => (true, &t[1..]),
            Some(b'+') => (false, &t[1..]),
            _ => (false, t),
        };
        let v = if let Some(h) = body.strip_prefix("0x") {
            i64::from_str_radix(h, 16).ok()?
        } else if let Some(o) = body.strip_prefix("0o") {
            i64::from_str_radix(o, 8).ok()?
        } else if !body.is_empty() && body.bytes().all(|b| b.is_ascii_digit()) {
            body.parse::<i64>().ok()?
        } else {
            return None;
        };
        Some(if neg { -v } else { v })
    }

    /// YAML 1.2 core schema float (integers included).
    pub fn as_float(&self) -> Option<f64> {
        if let Some(i) = self.as_int() {
            return Some(i as f64);
        }
        if !self.is_plain() {
            return None;
        }
        let t = self.scalar()?;
        let looks_numeric = t.bytes().any(|b| b.is_ascii_digit())
            && t.bytes()
                .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'));
        if looks_numeric {
            t.parse::<f64>().ok()
        } else {
            None
        }
    }

    pub fn as_map(&self) -> Option<&[(Node, Node)]> {
        match &self.kind {
            NodeKind::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.kind {
            NodeKind::Seq(s) => Some(s),
            _ => None,
        }
    }

    /// The value under a string key of a mapping, and the key node.
    pub fn get_entry(&self, key: &str) -> Option<(&Node, &Node)> {
        self.as_map()?
            .iter()
            .rev() // the last occurrence wins, as in Kubernetes and PyYAML
            .find(|(k, _)| k.scalar() == Some(key))
            .map(|(k, v)| (k, v))
    }

    pub fn get(&self, key: &str) -> Option<&Node> {
        self.get_entry(key).map(|(_, v)| v)
    }

    /// The value under a key of a mapping, if set and not null.
    pub fn field(&self, key: &str) -> Option<&Node> {
        self.get(key).filter(|n| !n.is_null())
    }

    /// The position of a key of a mapping, or `absent` when the mapping does not have it.
    pub fn key_span_or(&self, key: &str, absent: Span) -> Span {
        self.get_entry(key).map_or(absent, |(k, _)| k.span)
    }

    /// A short name of the node's type, for messages.
    pub fn type_name(&self) -> &'static str {
        match &self.kind {
            NodeKind::Map(_) => "a mapping",
            NodeKind::Seq(_) => "a list",
            NodeKind::Scalar { .. } if self.is_null() => "null",
            NodeKind::Scalar { .. } if self.as_bool().is_some() => "a boolean",
            NodeKind::Scalar { .. } if self.as_int().is_some() => "an integer",
            NodeKind::Scalar { .. } if self.as_float().is_some() => "a number",
            NodeKind::Scalar { .. } => "a string",
        }
    }

    /// The number of nodes in this tree.
    pub fn weight(&self) -> usize {
        match &self.kind {
            NodeKind::Scalar { .. } => 1,
            NodeKind::Seq(s) => 1 + s.iter().map(Node::weight).sum::<usize>(),
            NodeKind::Map(m) => {
                1 + m
                    .iter()
                    .map(|(k, v)| k.weight() + v.weight())
                    .sum::<usize>()
            }
        }
    }
}

/// Why a document could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParseError {
    Syntax { at: Pos, message: String },
    Limit { at: Pos, message: String },
}

/// One document of a YAML stream: its root (absent for an empty document), or why it failed.
#[derive(Clone, Debug, PartialEq)]
pub struct Document {
    /// Where the document starts (its `---` line, or its first line).
    pub start: Pos,
    pub root: Result<Option<Node>, ParseError>,
}

/// Maps a position the parser reports (1-based line, 0-based column in characters, both
/// relative to the text that was parsed) to a position in the file the user edits.
pub trait PosMap {
    fn map(&self, line: usize, col: usize) -> Pos;
}

/// Text that is the file itself, from line `first_line` on.
pub struct Shift {
    pub first_line: u32,
}

impl PosMap for Shift {
    fn map(&self, line: usize, col: usize) -> Pos {
        Pos::new(self.first_line + line as u32 - 1, col as u32 + 1)
    }
}

/// The search for a line that starts with `---`, made once: making it was most of looking
/// through an annotation of a few lines (one per Service).
fn marker_finder() -> &'static memchr::memmem::Finder<'static> {
    static FINDER: std::sync::OnceLock<memchr::memmem::Finder<'static>> =
        std::sync::OnceLock::new();
    FINDER.get_or_init(|| memchr::memmem::Finder::new(b"\n---"))
}

/// Splits a YAML stream into chunks of whole documents at lines that start with `---`.
///
/// Returns `(first line of the chunk, 1-based; the chunk's text)`. A `---` line only starts a
/// new chunk when something other than blank lines, comments or directives precedes it, so
/// that directives stay with their document.
pub fn split_documents(text: &str) -> Vec<(u32, &str)> {
    let bytes = text.as_bytes();
    let mut chunks = Vec::new();
    let mut chunk_start = 0usize;
    let mut chunk_line = 1u32;
    // Lines before `scanned` are known to hold no content of the current chunk, or the
    // chunk has content (`has_content`); line numbers are counted up to `counted`.
    let mut has_content = false;
    let mut counted = 0usize;
    let mut line_no = 1u32;
    let mut pos = 0usize;
    while pos < bytes.len() {
        if has_content {
            // Only a marker can end the chunk: jump to the next line starting with `---`.
            let next = if bytes[pos..].starts_with(b"---") {
                Some(pos)
            } else {
                marker_finder().find(&bytes[pos..]).map(|i| pos + i + 1)
            };
            let Some(m) = next else { break };
            pos = m;
        }
        let end = memchr::memchr(b'\n', &bytes[pos..]).map_or(bytes.len(), |i| pos + i);
        let line = &text[pos..end];
        let lb = line.as_bytes();
        let is_marker =
            lb.starts_with(b"---") && matches!(lb.get(3), None | Some(b' ' | b'\t' | b'\r'));
        if is_marker && has_content {
            line_no += memchr::memchr_iter(b'\n', &bytes[counted..pos]).count() as u32;
            counted = pos;
            chunks.push((chunk_line, &text[chunk_start..pos]));
            chunk_start = pos;
            chunk_line = line_no;
            has_content = false;
        }
        if !has_content {
            if !is_marker {
                let first = first_non_space(line);
                if first.is_some_and(|c| c != '#') && !line.starts_with('%') {
                    has_content = true;
                }
            } else if first_non_space(&line[3..]).is_some_and(|c| c != '#') {
                has_content = true; // `--- value` or `--- |` carries content on the marker line
            }
        }
        pos = end + 1;
    }
    if chunk_start < text.len() || chunks.is_empty() {
        chunks.push((chunk_line, &text[chunk_start.min(text.len())..]));
    }
    chunks
}

/// The first character of `line` that is not white space (`str::trim_start`'s notion),
/// looking at bytes while they are ASCII.
fn first_non_space(line: &str) -> Option<char> {
    for (i, b) in line.bytes().enumerate() {
        match b {
            b' ' | b'\t'..=b'\r' => {}
            0..=0x7f => return Some(b as char),
            _ => return line[i..].trim_start().chars().next(),
        }
    }
    None
}

#[cfg(test)]
fn memchr_newline(bytes: &[u8], from: usize) -> usize {
    bytes[from..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(bytes.len(), |i| from + i)
}

/// The first version of [`split_documents`], kept as the reference the faster one is tested
/// against.
#[cfg(test)]
fn split_documents_reference(text: &str) -> Vec<(u32, &str)> {
    let mut chunks = Vec::new();
    let mut chunk_start = 0usize;
    let mut chunk_line = 1u32;
    let mut has_content = false;
    let mut line_no = 1u32;
    let mut pos = 0usize;
    let bytes = text.as_bytes();
    while pos < bytes.len() {
        let end = memchr_newline(bytes, pos);
        let line = &text[pos..end];
        let is_marker = line.starts_with("---")
            && matches!(line.as_bytes().get(3), None | Some(b' ' | b'\t' | b'\r'));
        if is_marker && has_content {
            chunks.push((chunk_line, &text[chunk_start..pos]));
            chunk_start = pos;
            chunk_line = line_no;
            has_content = false;
        }
        let trimmed = line.trim_start();
        if !is_marker && !trimmed.is_empty() && !trimmed.starts_with('#') && !line.starts_with('%')
        {
            has_content = true;
        } else if is_marker
            && line[3..]
                .trim_start()
                .chars()
                .next()
                .is_some_and(|c| c != '#')
        {
            has_content = true; // `--- value` or `--- |` carries content on the marker line
        }
        pos = end + 1;
        line_no += 1;
    }
    if chunk_start < text.len() || chunks.is_empty() {
        chunks.push((chunk_line, &text[chunk_start.min(text.len())..]));
    }
    chunks
}

/// Parses every document of `text`. Positions go through `map`.
pub fn parse(text: &str, file: FileId, map: &dyn PosMap) -> Vec<Document> {
    let mut docs = Vec::new();
    for (first_line, chunk) in split_documents(text) {
        let shifted = ChunkMap {
            inner: map,
            offset: first_line - 1,
        };
        parse_chunk(chunk, file, &shifted, &mut docs);
    }
    docs
}

/// Runs the fast path and saphyr on every chunk of `text` and compares them: `Ok(true)` when
/// the fast path answered everything and agreed, `Ok(false)` when it declined a chunk, `Err`
/// with both results when it answered differently. For the differential tests and fuzzing.
#[doc(hidden)]
pub fn fast_path_agrees(text: &str) -> Result<bool, String> {
    let mut answered = true;
    for (first_line, chunk) in split_documents(text) {
        let map = ChunkMap {
            inner: &Shift { first_line: 1 },
            offset: first_line - 1,
        };
        let mut slow = Vec::new();
        parse_chunk_saphyr(chunk, FileId(0), &map, &mut slow);
        match fast::parse(chunk, FileId(0), &map) {
            Ok(fast) if fast == slow => {}
            Ok(fast) => return Err(format!("fast path: {fast:#?}\nsaphyr: {slow:#?}")),
            Err(fast::Bail) => answered = false,
        }
    }
    Ok(answered)
}

/// Streams smaller than this are parsed on the calling thread: below it, starting a thread
/// costs more than it saves.
pub const PARALLEL_MIN_BYTES: usize = 128 * 1024;

/// Parses the documents of `text` on the available cores and hands each one, in its own
/// thread, to `f` together with a state made by `init` (given the number of chunks in its
/// run, nearly always one document each).
///
/// The chunks of [`split_documents`] are cut into runs of consecutive chunks; a thread takes
/// the next run when it is done with one, so a core that other work slows down takes fewer.
/// Each run gets its own state, and the states come back in the order of the text, so the
/// result does not depend on scheduling: concatenating them gives what one thread would have
/// produced. `done` is called on each run's state when the run is over, on its thread.
pub fn parse_parallel<T, M, I, F, D>(
    text: &str,
    file: FileId,
    map: &M,
    init: I,
    f: F,
    done: D,
) -> Vec<T>
where
    T: Send,
    M: PosMap + Sync,
    I: Fn(usize) -> T + Sync,
    F: Fn(&mut T, Document) + Sync,
    D: Fn(&mut T) + Sync,
{
    let chunks = split_documents(text);
    let run_chunks = if text.len() < PARALLEL_MIN_BYTES || crate::par::threads() == 1 {
        chunks.len().max(1)
    } else {
        chunks.len().div_ceil(crate::par::threads() * 16).max(1)
    };
    crate::par::runs(&chunks, run_chunks, |run: &[(u32, &str)]| {
        let mut state = init(run.len());
        let mut docs = Vec::new();
        for &(first_line, chunk) in run {
            let shifted = ChunkMap {
                inner: map,
                offset: first_line - 1,
            };
            parse_chunk(chunk, file, &shifted, &mut docs);
            for doc in docs.drain(..) {
                f(&mut state, doc);
            }
        }
        done(&mut state);
        state
    })
}

struct ChunkMap<'a> {
    inner: &'a dyn PosMap,
    offset: u32,
}

impl PosMap for ChunkMap<'_> {
    fn map(&self, line: usize, col: usize) -> Pos {
        self.inner.map(line + self.offset as usize, col)
    }
}

enum Frame {
    Seq {
        items: Vec<Node>,
        span: Span,
        anchor: usize,
    },
    Map {
        entries: Vec<(Node, Node)>,
        key: Option<Node>,
        span: Span,
        anchor: usize,
    },
}

fn parse_chunk(chunk: &str, file: FileId, map: &dyn PosMap, out: &mut Vec<Document>) {
    match fast::parse(chunk, file, map) {
        Ok(docs) => out.extend(docs),
        Err(fast::Bail) => parse_chunk_saphyr(chunk, file, map, out),
    }
}

/// The general path: saphyr-parser's events to nodes.
fn parse_chunk_saphyr(chunk: &str, file: FileId, map: &dyn PosMap, out: &mut Vec<Document>) {
    let lines = LfLines::new(chunk);
    let mut parser = Parser::new_from_str(chunk);
    let mut stack: Vec<Frame> = Vec::new();
    let mut anchors: HashMap<usize, Node> = HashMap::new();
    let mut alias_budget = MAX_ALIAS_NODES;
    let mut doc_start = map.map(1, 0);
    let mut root: Option<Node> = None;
    let mut in_doc = false;
    loop {
        let (event, span) = match parser.next_event() {
            None => break,
            Some(Ok(ev)) => ev,
            Some(Err(e)) => {
                let m = e.marker();
                out.push(Document {
                    start: doc_start,
                    root: Err(ParseError::Syntax {
                        at: lines.map(map, m),
                        message: e.info().to_string(),
                    }),
                });
                return;
            }
        };
        let start = lines.map(map, &span.start);
        let end = lines.map(map, &span.end);
        let sp = Span::new(file, start, end);
        let node = match event {
            Event::StreamStart | Event::Nothing => continue,
            Event::StreamEnd => break,
            Event::DocumentStart(_) => {
                doc_start = start;
                in_doc = true;
                root = None;
                stack.clear();
                anchors.clear();
                alias_budget = MAX_ALIAS_NODES;
                continue;
            }
            Event::DocumentEnd => {
                if in_doc {
                    out.push(Document {
                        start: doc_start,
                        root: Ok(root.take()),
                    });
                }
                in_doc = false;
                continue;
            }
            Event::SequenceStart(anchor, _) => {
                if stack.len() >= MAX_DEPTH {
                    out.push(limit(
                        doc_start,
                        start,
                        format!("nesting deeper than {MAX_DEPTH} levels"),
                    ));
                    return;
                }
                stack.push(Frame::Seq {
                    items: Vec::new(),
                    span: sp,
                    anchor,
                });
                continue;
            }
            Event::MappingStart(anchor, _) => {
                if stack.len() >= MAX_DEPTH {
                    out.push(limit(
                        doc_start,
                        start,
                        format!("nesting deeper than {MAX_DEPTH} levels"),
                    ));
                    return;
                }
                stack.push(Frame::Map {
                    entries: Vec::new(),
                    key: None,
                    span: sp,
                    anchor,
                });
                continue;
            }
            Event::SequenceEnd => match stack.pop() {
                Some(Frame::Seq {
                    items,
                    span: s,
                    anchor,
                }) => {
                    let n = Node {
                        kind: NodeKind::Seq(items),
                        span: Span::new(file, s.start, end),
                    };
                    remember(&mut anchors, anchor, &n);
                    n
                }
                _ => continue,
            },
            Event::MappingEnd => match stack.pop() {
                Some(Frame::Map {
                    entries,
                    span: s,
                    anchor,
                    ..
                }) => {
                    let n = Node {
                        kind: NodeKind::Map(entries),
                        span: Span::new(file, s.start, end),
                    };
                    remember(&mut anchors, anchor, &n);
                    n
                }
                _ => continue,
            },
            Event::Scalar(text, style, anchor, tag) => {
                let style = match style {
                    ScalarStyle::Plain => Style::Plain,
                    ScalarStyle::SingleQuoted => Style::SingleQuoted,
                    ScalarStyle::DoubleQuoted => Style::DoubleQuoted,
                    ScalarStyle::Literal => Style::Literal,
                    ScalarStyle::Folded => Style::Folded,
                };
                let n = Node {
                    kind: NodeKind::Scalar {
                        text: Text::from(text),
                        style,
                        tagged: tag.is_some(),
                    },
                    span: sp,
                };
                remember(&mut anchors, anchor, &n);
                n
            }
            Event::Alias(id) => match anchors.get(&id) {
                Some(target) => {
                    let w = target.weight();
                    if w > alias_budget {
                        out.push(limit(
                            doc_start,
                            start,
                            format!("aliases expand to more than {MAX_ALIAS_NODES} nodes"),
                        ));
                        return;
                    }
                    alias_budget -= w;
                    let mut n = target.clone();
                    n.span = sp;
                    n
                }
                None => {
                    out.push(Document {
                        start: doc_start,
                        root: Err(ParseError::Syntax {
                            at: start,
                            message: "alias to an unknown anchor".into(),
                        }),
                    });
                    return;
                }
            },
        };
        attach(&mut stack, &mut root, node);
    }
    if in_doc {
        out.push(Document {
            start: doc_start,
            root: Ok(root.take()),
        });
    }
}

/// Line and column of saphyr's markers, counted the way the file is: saphyr (following
/// YAML) also breaks lines at a carriage return on its own, while the file, its line table
/// and every position shown break at line feeds only. Only chunks with a lone carriage
/// return need the recount, from the marker's character index.
struct LfLines {
    /// Character index of the start of each line, when the chunk has a lone `\r`.
    starts: Option<Vec<usize>>,
}

impl LfLines {
    fn new(chunk: &str) -> LfLines {
        let b = chunk.as_bytes();
        let lone_cr = b
            .iter()
            .enumerate()
            .any(|(i, &c)| c == b'\r' && b.get(i + 1) != Some(&b'\n'));
        if !lone_cr {
            return LfLines { starts: None };
        }
        let mut starts = vec![0];
        for (i, c) in chunk.chars().enumerate() {
            if c == '\n' {
                starts.push(i + 1);
            }
        }
        LfLines {
            starts: Some(starts),
        }
    }

    fn map(&self, map: &dyn PosMap, m: &saphyr_parser::Marker) -> Pos {
        match &self.starts {
            None => map.map(m.line(), m.col()),
            Some(starts) => {
                let line = starts.partition_point(|&s| s <= m.index()).max(1);
                map.map(line, m.index() - starts[line - 1])
            }
        }
    }
}

fn limit(doc_start: Pos, at: Pos, message: String) -> Document {
    Document {
        start: doc_start,
        root: Err(ParseError::Limit { at, message }),
    }
}

fn remember(anchors: &mut HashMap<usize, Node>, anchor: usize, node: &Node) {
    if anchor != 0 {
        anchors.insert(anchor, node.clone());
    }
}

fn attach(stack: &mut [Frame], root: &mut Option<Node>, node: Node) {
    match stack.last_mut() {
        None => *root = Some(node),
        Some(Frame::Seq { items, .. }) => items.push(node),
        Some(Frame::Map { entries, key, .. }) => match key.take() {
            None => *key = Some(node),
            Some(k) => entries.push((k, node)),
        },
    }
}

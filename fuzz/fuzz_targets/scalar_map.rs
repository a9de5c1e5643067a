//! The map from positions inside a scalar (an annotation) back to the file: never a panic,
//! and when it claims to be exact, each character of a literal block scalar maps to that
//! same character in the file.
#![no_main]

use ambassador_compiler::front::scalar::ScalarMap;
use ambassador_compiler::front::yaml::{self, Node, NodeKind, PosMap, Shift, Style};
use ambassador_compiler::source::{Pos, SourceFile, Sources};
use libfuzzer_sys::fuzz_target;

fn scalars<'a>(n: &'a Node, out: &mut Vec<&'a Node>) {
    match &n.kind {
        NodeKind::Scalar { .. } => out.push(n),
        NodeKind::Seq(items) => items.iter().for_each(|i| scalars(i, out)),
        NodeKind::Map(entries) => entries.iter().for_each(|(k, v)| {
            scalars(k, out);
            scalars(v, out);
        }),
    }
}

fn char_at(file: &SourceFile, p: Pos) -> Option<char> {
    let off = file.offset(p)?;
    file.text[off..].chars().next()
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut sources = Sources::new();
    let id = sources.add("fuzz.yaml", text);
    let file = sources.get(id);
    let mut nodes = Vec::new();
    let docs = yaml::parse(text, id, &Shift { first_line: 1 });
    for d in &docs {
        if let Ok(Some(root)) = &d.root {
            scalars(root, &mut nodes);
        }
    }
    for n in nodes {
        let NodeKind::Scalar {
            text: value, style, ..
        } = &n.kind
        else {
            continue;
        };
        let map = ScalarMap::build(file, n.span.start, *style, value);
        for (li, line) in value.split('\n').enumerate() {
            for (col, c) in line.chars().enumerate() {
                let p = map.map(li + 1, col);
                assert!(
                    p.line >= 1 && p.line <= file.line_count() + 1,
                    "{p:?} outside the file"
                );
                if map.is_exact() && *style == Style::Literal {
                    assert_eq!(
                        char_at(file, p),
                        Some(c),
                        "{value:?} line {li} col {col} -> {p:?}"
                    );
                }
            }
            let _ = map.map(li + 1, line.chars().count() + 3);
        }
        let _ = map.map(0, 0);
        let _ = map.map(usize::MAX / 2, usize::MAX / 2);
    }
});

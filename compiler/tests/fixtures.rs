//! Data-driven lint tests: every file in `test_data/lint` carries its expected diagnostics
//! as comments with a caret under the offending column, e.g. `# ^ AMB105` (or `col=N`). The test
//! compiles each file and requires exactly those diagnostics at exactly those positions,
//! so the position map through annotations is tested end to end.

use std::path::Path;

use ambassador_compiler::compile_one;

/// `(line, column, code)` expected by the comments of `text`.
fn expected(text: &str) -> Vec<(u32, u32, String)> {
    let mut out = Vec::new();
    let mut last_line = 0;
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        let is_expectation =
            trimmed.starts_with('#') && trimmed[1..].trim_start().starts_with("^ AMB");
        if !is_expectation {
            last_line = i as u32 + 1;
            continue;
        }
        // The caret marks the column; `col=N` overrides it where a caret cannot stand
        // (under the first columns of an annotation, a comment would end the block).
        let caret = line.find('^').unwrap();
        let mut column = line[..caret].chars().count() as u32 + 1;
        let mut codes = Vec::new();
        for word in line[caret + 1..].split_whitespace() {
            match word.strip_prefix("col=") {
                Some(n) => column = n.parse().unwrap(),
                None => codes.push(word.to_string()),
            }
        }
        for code in codes {
            out.push((last_line, column, code));
        }
    }
    out.sort();
    out
}

#[test]
fn lint_fixtures() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("test_data/lint");
    let mut failures = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    assert!(files.len() >= 5, "fixtures are missing");
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        let c = compile_one(&path.display().to_string(), &text);
        let mut got: Vec<(u32, u32, String)> = c
            .diagnostics
            .iter()
            .map(|d| {
                let s = d.span.expect("every fixture diagnostic has a position");
                (s.start.line, s.start.column, d.code.as_str().to_string())
            })
            .collect();
        got.sort();
        let want = expected(&text);
        if got != want {
            failures.push(format!(
                "{}:\n  expected {want:?}\n  got      {got:?}",
                path.display()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

//! Diagnostics for people (rustc style, with colour) and for machines (JSON, YAML, SARIF 2.1.0).

use std::fmt::Write as _;

use ambassador_compiler::diag::{Code, Diagnostic, Severity};
use ambassador_compiler::source::Sources;
use colored::Colorize;
use serde_json::{json, Value};

/// Counts for the summary line.
#[derive(Default, Clone, Copy)]
pub struct Summary {
    pub errors: usize,
    pub warnings: usize,
    pub infos: usize,
    pub files: usize,
    pub objects: usize,
}

impl Summary {
    pub fn of(diags: &[Diagnostic], files: usize, objects: usize) -> Summary {
        let count = |s: Severity| diags.iter().filter(|d| d.severity == s).count();
        Summary {
            errors: count(Severity::Error),
            warnings: count(Severity::Warning),
            infos: count(Severity::Info),
            files,
            objects,
        }
    }
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("{n} {word}")
    } else {
        format!("{n} {word}s")
    }
}

fn severity_label(s: Severity) -> colored::ColoredString {
    match s {
        Severity::Error => "error".red().bold(),
        Severity::Warning => "warning".yellow().bold(),
        Severity::Info => "info".cyan().bold(),
    }
}

/// Renders one diagnostic like rustc: header, location, the source line, a caret, notes.
pub fn text_one(d: &Diagnostic, sources: &Sources, out: &mut String) {
    let _ = writeln!(
        out,
        "{}{} {}",
        severity_label(d.severity),
        format!("[{}]:", d.code.as_str()).bold(),
        d.message.bold()
    );
    let gutter_width;
    if let Some(span) = d.span {
        let file = sources.get(span.file);
        let line_no = span.start.line;
        gutter_width = line_no.to_string().len();
        let pad = " ".repeat(gutter_width);
        let _ = writeln!(
            out,
            "{pad}{} {}:{}:{}",
            "-->".blue().bold(),
            file.name,
            line_no,
            span.start.column
        );
        if let Some(line) = file.line(line_no) {
            let line = line.replace('\t', " ");
            let col = span.start.column.max(1) as usize - 1;
            let width = if span.end.line == span.start.line && span.end.column > span.start.column {
                (span.end.column - span.start.column) as usize
            } else {
                1
            };
            let width = width.min(line.chars().count().saturating_sub(col).max(1));
            let caret = match d.severity {
                Severity::Error => "^".repeat(width).red().bold(),
                Severity::Warning => "^".repeat(width).yellow().bold(),
                Severity::Info => "^".repeat(width).cyan().bold(),
            };
            let bar = "|".blue().bold();
            let _ = writeln!(out, "{pad} {bar}");
            let _ = writeln!(out, "{} {bar} {line}", line_no.to_string().blue().bold());
            let _ = writeln!(out, "{pad} {bar} {}{caret}", " ".repeat(col));
        }
    } else {
        gutter_width = 1;
    }
    let pad = " ".repeat(gutter_width);
    if let Some(o) = &d.object {
        let _ = writeln!(out, "{pad} {} {}: {o}", "=".blue().bold(), "object".bold());
    }
    for r in &d.related {
        let f = sources.get(r.span.file);
        let _ = writeln!(
            out,
            "{pad} {} {}: {} at {}:{}:{}",
            "=".blue().bold(),
            "note".bold(),
            r.message,
            f.name,
            r.span.start.line,
            r.span.start.column
        );
    }
    let _ = writeln!(
        out,
        "{pad} {} {}: {}",
        "=".blue().bold(),
        "help".bold(),
        d.fix()
    );
    out.push('\n');
}

pub fn text(
    diags: &[Diagnostic],
    sources: &Sources,
    summary: Summary,
    read_errors: &[String],
) -> String {
    let mut out = String::new();
    for d in diags {
        text_one(d, sources, &mut out);
    }
    for e in read_errors {
        let _ = writeln!(out, "{}: {e}\n", "error".red().bold());
    }
    let files = plural(summary.files, "file");
    let objects = plural(summary.objects, "object");
    if summary.errors + summary.warnings + summary.infos == 0 && read_errors.is_empty() {
        let _ = writeln!(
            out,
            "{}: no findings in {files} ({objects})",
            "ok".green().bold()
        );
    } else {
        let mut parts = vec![
            plural(summary.errors, "error"),
            plural(summary.warnings, "warning"),
        ];
        if summary.infos > 0 {
            parts.push(plural(summary.infos, "note"));
        }
        if !read_errors.is_empty() {
            parts.push(format!(
                "{} could not be read",
                plural(read_errors.len(), "path")
            ));
        }
        let label = if summary.errors > 0 || !read_errors.is_empty() {
            "summary".red().bold()
        } else {
            "summary".yellow().bold()
        };
        let _ = writeln!(out, "{label}: {} in {files} ({objects})", parts.join(", "));
    }
    out
}

/// One diagnostic as a JSON object with file, line and column resolved.
pub fn json_one(d: &Diagnostic, sources: &Sources) -> Value {
    let (file, line, column, end_line, end_column) = match d.span {
        Some(s) => (
            Value::from(sources.name(s.file)),
            Value::from(s.start.line),
            Value::from(s.start.column),
            Value::from(s.end.line),
            Value::from(s.end.column),
        ),
        None => (
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
        ),
    };
    json!({
        "code": d.code.as_str(),
        "name": d.code.slug(),
        "severity": d.severity.as_str(),
        "message": d.message,
        "file": file,
        "line": line,
        "column": column,
        "end_line": end_line,
        "end_column": end_column,
        "object": d.object.as_ref().map(|o| json!({"kind": o.kind, "namespace": o.namespace, "name": o.name})),
        "field": d.field,
        "help": d.fix(),
        "related": d.related.iter().map(|r| json!({
            "message": r.message,
            "file": sources.name(r.span.file),
            "line": r.span.start.line,
            "column": r.span.start.column,
        })).collect::<Vec<_>>(),
    })
}

pub fn json_report(
    diags: &[Diagnostic],
    sources: &Sources,
    summary: Summary,
    read_errors: &[String],
) -> Value {
    json!({
        "diagnostics": diags.iter().map(|d| json_one(d, sources)).collect::<Vec<_>>(),
        "errors": read_errors,
        "summary": {
            "errors": summary.errors,
            "warnings": summary.warnings,
            "notes": summary.infos,
            "files": summary.files,
            "objects": summary.objects,
        }
    })
}

/// SARIF 2.1.0, as code-scanning tools take it: one run, one rule per code.
pub fn sarif(diags: &[Diagnostic], sources: &Sources) -> Value {
    let rules: Vec<Value> = Code::ALL
        .iter()
        .map(|c| {
            json!({
                "id": c.as_str(),
                "name": c.slug(),
                "shortDescription": {"text": c.title()},
                "fullDescription": {"text": c.title()},
                "help": {"text": c.fix()},
                "defaultConfiguration": {"level": level(c.severity())},
            })
        })
        .collect();
    let results: Vec<Value> = diags
        .iter()
        .map(|d| {
            let mut r = json!({
                "ruleId": d.code.as_str(),
                "ruleIndex": Code::ALL.iter().position(|c| *c == d.code).unwrap_or(0),
                "level": level(d.severity),
                "message": {"text": format!("{} (fix: {})", d.message, d.fix())},
            });
            if let Some(s) = d.span {
                let mut region = json!({"startLine": s.start.line, "startColumn": s.start.column});
                if s.end.line >= s.start.line && (s.end.line > s.start.line || s.end.column > s.start.column) {
                    region["endLine"] = json!(s.end.line);
                    region["endColumn"] = json!(s.end.column);
                }
                r["locations"] = json!([{
                    "physicalLocation": {
                        "artifactLocation": {"uri": uri(sources.name(s.file))},
                        "region": region,
                    }
                }]);
            }
            if !d.related.is_empty() {
                r["relatedLocations"] = d
                    .related
                    .iter()
                    .enumerate()
                    .map(|(i, rel)| {
                        json!({
                            "id": i,
                            "message": {"text": rel.message},
                            "physicalLocation": {
                                "artifactLocation": {"uri": uri(sources.name(rel.span.file))},
                                "region": {"startLine": rel.span.start.line, "startColumn": rel.span.start.column},
                            }
                        })
                    })
                    .collect();
            }
            r
        })
        .collect();
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "kubectl-ambassador",
                "version": env!("CARGO_PKG_VERSION"),
                "rules": rules,
            }},
            "results": results,
            "columnKind": "unicodeCodePoints",
        }]
    })
}

fn level(s: Severity) -> &'static str {
    match s {
        Severity::Error => "error",
        Severity::Warning => "warning",
        Severity::Info => "note",
    }
}

/// A relative file path as a SARIF URI (forward slashes, no leading `./`).
fn uri(name: &str) -> String {
    let n = name.replace('\\', "/");
    n.strip_prefix("./").unwrap_or(&n).replace(' ', "%20")
}

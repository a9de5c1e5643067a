//! Turns findings into the compact one-object text that kubectl prints as is.
//!
//! A denial is one `status.message`: the first line names the object, then one
//! line per error. Warnings travel as HTTP `Warning` headers, so each must be a
//! single line; Kubernetes recommends keeping them under 120 characters, and
//! kubectl drops repeats of an identical warning, so each names its object.

use std::fmt::Write as _;

use super::{Finding, Source, Subject};

/// Longest warning we send, in characters (strictly under 120).
pub const MAX_WARNING_CHARS: usize = 119;
/// Errors listed in one denial before the rest are summarised: the API server
/// and kubectl both print the message whole, and a thousand lines help nobody.
pub const MAX_ERROR_LINES: usize = 50;

/// The denial message for `subject` with its `errors`.
pub fn denial(subject: &Subject, errors: &[&Finding]) -> String {
    // The subject's names come from the review as sent; the layout is one line each.
    let mut out = sanitize(&subject.to_string());
    let count = match errors.len() {
        1 => "1 error".to_owned(),
        n => format!("{n} errors"),
    };
    match subject.source {
        Source::Annotation => {
            let _ = write!(
                out,
                ": {count} in annotation `{}`",
                super::CONFIG_ANNOTATION
            );
        }
        Source::Resource => {
            let _ = write!(out, ": {count}");
        }
    }
    for finding in errors.iter().take(MAX_ERROR_LINES) {
        out.push_str("\n  ");
        out.push_str(&one_line(finding));
    }
    if errors.len() > MAX_ERROR_LINES {
        let _ = write!(out, "\n  ... and {} more", errors.len() - MAX_ERROR_LINES);
    }
    out
}

/// One warning line for `finding` on `subject`, at most [`MAX_WARNING_CHARS`].
pub fn warning(subject: &Subject, finding: &Finding) -> String {
    // The whole line, subject included: a namespace or name with a line break (a review no
    // API server would send, but a body is anyone's) must not split the header.
    truncate(
        &sanitize(&format!("{subject}: {}", one_line(finding))),
        MAX_WARNING_CHARS,
    )
}

/// `field at line:column: [code] message`, leaving out what is unknown.
fn one_line(finding: &Finding) -> String {
    let mut out = String::new();
    if let Some(field) = finding.field.as_deref().filter(|f| !f.is_empty()) {
        out.push_str(field);
    }
    match (finding.line, finding.column) {
        (Some(line), Some(column)) => {
            let _ = write!(out, "{}at {line}:{column}", sep(&out));
        }
        (Some(line), None) => {
            let _ = write!(out, "{}at line {line}", sep(&out));
        }
        // A column without a line cannot be placed; say nothing rather than mislead.
        (None, _) => {}
    }
    if !out.is_empty() {
        out.push_str(": ");
    }
    let _ = write!(out, "[{}] {}", finding.code, finding.message);
    sanitize(&out)
}

fn sep(s: &str) -> &'static str {
    if s.is_empty() {
        ""
    } else {
        " "
    }
}

/// Control characters (a newline in a message, a tab in a field) would break
/// the one-line-per-error layout and are not allowed in HTTP warning headers.
fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    // ASCII ellipsis: warnings end up in HTTP headers, where plain ASCII is safest.
    let mut out: String = s.chars().take(max - 3).collect();
    out.push_str("...");
    out
}

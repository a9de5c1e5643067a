//! `kubectl ambassador test`: route tests with coverage, in text, JSON or JUnit XML.

use ambassador_compiler::source::Sources;
use ambassador_compiler::trace::cases::{CaseResult, Report};
use serde_json::{json, Value};

/// The test file position of a result, `file:line`.
fn at(r: &CaseResult, cases: &Sources) -> String {
    format!("{}:{}", cases.name(r.span.file), r.span.start.line)
}

/// One line per test, a diff-style block per failure, then the totals and the coverage.
pub fn text(report: &Report, cases: &Sources) -> String {
    let mut out = String::new();
    for r in &report.results {
        let mark = if r.passed() { "PASS" } else { "FAIL" };
        out.push_str(&format!("{mark}  {}  ({})\n", r.name, at(r, cases)));
        if let Some(e) = &r.error {
            out.push_str(&format!("      error: {e}\n"));
        }
        for m in &r.mismatches {
            out.push_str(&format!("      {}:\n", m.field));
            out.push_str(&format!("        - expected: {}\n", m.expected));
            out.push_str(&format!("        + actual:   {}\n", m.actual));
        }
    }
    let failed = report.failed();
    out.push_str(&format!(
        "\n{} tests, {} passed, {failed} failed\n",
        report.results.len(),
        report.results.len() - failed
    ));
    let c = &report.coverage;
    out.push_str(&format!(
        "coverage: {} of {} routes exercised ({:.1}%)\n",
        c.exercised,
        c.total,
        c.percent()
    ));
    if !c.missed.is_empty() {
        out.push_str("routes no test reached:\n");
        for m in &c.missed {
            out.push_str(&format!(
                "  {} #{} {}  {}\n",
                m.virtual_host,
                m.order,
                m.match_text(),
                m.sources_text()
            ));
        }
    }
    out
}

/// The report as data; positions as `file` and `line`.
pub fn data(report: &Report, cases: &Sources, config: &Sources) -> Value {
    let results: Vec<Value> = report
        .results
        .iter()
        .map(|r| {
            json!({
                "name": r.name,
                "file": cases.name(r.span.file),
                "line": r.span.start.line,
                "passed": r.passed(),
                "error": r.error,
                "mismatches": r.mismatches,
                "outcome": crate::trace::with_files(serde_json::to_value(&r.outcome).unwrap_or(Value::Null), config),
            })
        })
        .collect();
    let c = &report.coverage;
    json!({
        "tests": report.results.len(),
        "failed": report.failed(),
        "results": results,
        "coverage": {
            "total": c.total,
            "exercised": c.exercised,
            "percent": (c.percent() * 10.0).round() / 10.0,
            "missed": c.missed,
        },
    })
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// JUnit XML, as CI systems read it: one test case per route test, and the coverage as
/// properties of the suite.
pub fn junit(report: &Report, cases: &Sources) -> String {
    let failed = report.failed();
    let c = &report.coverage;
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    out.push_str(&format!(
        "<testsuites name=\"kubectl ambassador test\" tests=\"{}\" failures=\"{failed}\">\n",
        report.results.len()
    ));
    out.push_str(&format!(
        "  <testsuite name=\"routes\" tests=\"{}\" failures=\"{failed}\">\n",
        report.results.len()
    ));
    out.push_str("    <properties>\n");
    out.push_str(&format!(
        "      <property name=\"routes.total\" value=\"{}\"/>\n      <property name=\"routes.exercised\" value=\"{}\"/>\n      <property name=\"routes.coverage_percent\" value=\"{:.1}\"/>\n",
        c.total,
        c.exercised,
        c.percent()
    ));
    out.push_str("    </properties>\n");
    for r in &report.results {
        out.push_str(&format!(
            "    <testcase classname=\"{}\" name=\"{}\"",
            xml_escape(cases.name(r.span.file)),
            xml_escape(&r.name)
        ));
        if r.passed() {
            out.push_str("/>\n");
            continue;
        }
        out.push_str(">\n");
        let mut body = String::new();
        if let Some(e) = &r.error {
            body.push_str(&format!("error: {e}\n"));
        }
        for m in &r.mismatches {
            body.push_str(&format!(
                "{}: expected {}, got {}\n",
                m.field, m.expected, m.actual
            ));
        }
        let first = body.lines().next().unwrap_or("failed").to_owned();
        out.push_str(&format!(
            "      <failure message=\"{}\">{}: {}</failure>\n",
            xml_escape(&first),
            xml_escape(&at(r, cases)),
            xml_escape(&body)
        ));
        out.push_str("    </testcase>\n");
    }
    out.push_str("  </testsuite>\n</testsuites>\n");
    out
}

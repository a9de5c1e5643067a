//! `kubectl ambassador routes`: the route table in the order Envoy evaluates it.
//!
//! The rows are the compiler's typed [`RouteRow`]s (`ambassador_compiler::trace::rows`), the
//! same `test` uses to list the routes no test reached; this module only lays them out.

use ambassador_compiler::trace::rows::RouteRow;

/// The table for people: aligned columns, one line per route.
pub fn table(rows: &[RouteRow]) -> String {
    let header = [
        "VIRTUAL HOST",
        "#",
        "MATCH",
        "BACKENDS",
        "REWRITE",
        "PREC",
        "SCHEMES",
        "SOURCE",
    ];
    let cells: Vec<[String; 8]> = rows
        .iter()
        .map(|r| {
            [
                r.virtual_host.clone(),
                r.order.to_string(),
                r.match_text(),
                r.backends_text(),
                r.rewrite.clone().unwrap_or_else(|| "-".into()),
                r.precedence.to_string(),
                r.schemes_text(),
                r.sources_text(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &cells {
        for (i, c) in row.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    let line = |cols: &[String], out: &mut String| {
        let mut l = String::new();
        for (i, c) in cols.iter().enumerate() {
            l.push_str(c);
            if i + 1 < cols.len() {
                l.push_str(&" ".repeat(widths[i] - c.chars().count() + 2));
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&header.map(str::to_string), &mut out);
    for row in &cells {
        line(row, &mut out);
    }
    out
}

//! `kubectl ambassador routes`: the route table in the order Envoy evaluates it.
//!
//! The rows are the compiler's typed [`RouteRow`]s (`ambassador_compiler::trace::rows`), the
//! same `test` uses to list the routes no test reached, and [`TcpRow`]s for the TCPMappings'
//! chains; this module only lays them out.

use ambassador_compiler::trace::rows::{RouteRow, TcpRow};

/// The tables for people: aligned columns, one line per HTTP route; then, when there are
/// TCPMappings, one line per TCP chain.
pub fn table(rows: &[RouteRow], tcp: &[TcpRow]) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
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
    let mut out = aligned(
        &[
            "VIRTUAL HOST",
            "#",
            "MATCH",
            "BACKENDS",
            "REWRITE",
            "PREC",
            "SCHEMES",
            "SOURCE",
        ],
        &cells,
    );
    if !tcp.is_empty() {
        let cells: Vec<Vec<String>> = tcp
            .iter()
            .map(|r| {
                vec![
                    r.port.to_string(),
                    r.sni.clone().unwrap_or_else(|| "*".into()),
                    r.tls_text(),
                    r.backends_text(),
                    r.sources_text(),
                ]
            })
            .collect();
        out.push('\n');
        out.push_str(&aligned(
            &["TCP PORT", "SNI", "TLS", "BACKENDS", "SOURCE"],
            &cells,
        ));
    }
    out
}

/// A header and rows in columns two spaces apart, trailing blanks trimmed.
fn aligned(header: &[&str], cells: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in cells {
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
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    line(&header, &mut out);
    for row in cells {
        line(row, &mut out);
    }
    out
}

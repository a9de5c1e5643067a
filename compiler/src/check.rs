//! Checks that need the whole route table: routes that can never match because an earlier route always wins.
//!
//! Envoy takes the first route that matches, so a route is dead when an earlier route in
//! the same virtual host matches every request it matches. Literal prefixes are indexed
//! by their text, so the check costs the length of each path, not the number of routes;
//! regex routes are tested with probe paths, within a bounded budget.

use foldhash::{HashMap, HashMapExt};

use crate::diag::{Code, Diagnostic};
use crate::ir::{HeaderMatch, Ir, PathMatch, QueryMatch, Route, ValueMatch};
use crate::lower::object_of;

/// At most this many (regex route, literal route) pairs are probed per virtual host.
const REGEX_PAIR_BUDGET: usize = 1_000_000;

/// Runs the whole-configuration checks on the IR.
pub fn check(ir: &Ir, diags: &mut Vec<Diagnostic>) {
    // Virtual hosts are independent: large configurations check them on all cores, and the
    // findings come back in virtual-host order.
    let routes: usize = ir.virtual_hosts.iter().map(|v| v.routes.len()).sum();
    let run = if routes < 4096 {
        ir.virtual_hosts.len()
    } else {
        1
    };
    let found = crate::par::runs(&ir.virtual_hosts, run, |vhs| {
        let mut out = Vec::new();
        for vh in vhs {
            let routes: Vec<&Route> = vh.routes.iter().collect();
            shadowing(&routes, &mut out);
        }
        out
    });
    for mut d in found {
        diags.append(&mut d);
    }
}

/// Routes of one virtual host, in order, that an earlier route always wins over.
pub(crate) fn shadowing(routes: &[&Route], diags: &mut Vec<Diagnostic>) {
    // Earlier literal routes by their path text: case-sensitive ones under the text,
    // case-insensitive ones under the lowercased text.
    let mut sensitive: HashMap<&str, Vec<usize>> = HashMap::new();
    let mut insensitive: HashMap<String, Vec<usize>> = HashMap::new();
    let mut exact: HashMap<(&str, bool), Vec<usize>> = HashMap::new();
    let mut regexes: Vec<(usize, regex::Regex)> = Vec::new();
    let mut budget = REGEX_PAIR_BUDGET;

    for (j, route) in routes.iter().enumerate() {
        let m = &route.matcher;
        let shadow = match &m.path {
            PathMatch::Prefix(q) | PathMatch::Exact(q) => {
                let is_exact = matches!(m.path, PathMatch::Exact(_));
                let mut found = None;
                if is_exact {
                    found = exact
                        .get(&(q.as_str(), m.case_sensitive))
                        .and_then(|c| c.iter().copied().find(|&i| covers(routes[i], route)));
                }
                if found.is_none() {
                    found =
                        literal_cover(q, m.case_sensitive, &sensitive, &insensitive, routes, route);
                }
                match found {
                    Some(i) => Some((i, Code::ShadowedRoute)),
                    None => {
                        let mut hit = None;
                        for (i, re) in &regexes {
                            if budget == 0 {
                                break;
                            }
                            budget -= 1;
                            if covers_headers(routes[*i], route) && regex_covers(re, q, is_exact) {
                                hit = Some((*i, Code::ShadowedByRegex));
                                break;
                            }
                        }
                        hit
                    }
                }
            }
            PathMatch::Regex(_) => None,
        };
        if let Some((i, code)) = shadow {
            let earlier = &routes[i];
            let src = &route.sources[0];
            let by = &earlier.sources[0];
            let what = match code {
                Code::ShadowedByRegex => format!("regex `{}`", earlier.matcher.path.text()),
                _ => format!("`{}`", earlier.matcher.path.text()),
            };
            diags.push(
                Diagnostic::at(
                    code,
                    src.span,
                    format!(
                        "route `{}` of {} `{}` never matches: {what} of {} `{}` comes first and matches everything it does",
                        m.path.text(),
                        src.kind,
                        src.name,
                        by.kind,
                        by.name
                    ),
                )
                .with_object(&object_of(src))
                .with_related(by.span, "the route that wins"),
            );
        }
        // Index this route for the routes after it.
        match &m.path {
            PathMatch::Prefix(p) if m.case_sensitive => {
                sensitive.entry(p.as_str()).or_default().push(j)
            }
            PathMatch::Prefix(p) => insensitive.entry(p.to_lowercase()).or_default().push(j),
            PathMatch::Exact(p) => exact
                .entry((p.as_str(), m.case_sensitive))
                .or_default()
                .push(j),
            PathMatch::Regex(r) => {
                let flags = if m.case_sensitive { "" } else { "(?i)" };
                if let Ok(re) = regex::Regex::new(&format!("^{flags}(?:{r})$")) {
                    regexes.push((j, re));
                }
            }
        }
    }
}

/// The earliest literal prefix route that covers `route`, whose path text is `q`.
fn literal_cover(
    q: &str,
    case_sensitive: bool,
    sensitive: &HashMap<&str, Vec<usize>>,
    insensitive: &HashMap<String, Vec<usize>>,
    routes: &[&Route],
    route: &Route,
) -> Option<usize> {
    let lower = q.to_lowercase();
    let mut best: Option<usize> = None;
    let mut consider = |cands: Option<&Vec<usize>>| {
        if let Some(c) = cands {
            if let Some(i) = c.iter().copied().find(|&i| covers(routes[i], route)) {
                best = Some(best.map_or(i, |b| b.min(i)));
            }
        }
    };
    for (k, _) in q.char_indices().chain(std::iter::once((q.len(), ' '))) {
        if case_sensitive {
            consider(sensitive.get(&q[..k]));
        }
    }
    for (k, _) in lower
        .char_indices()
        .chain(std::iter::once((lower.len(), ' ')))
    {
        consider(insensitive.get(&lower[..k]));
    }
    best
}

/// Whether the earlier route `a` matches every request `b` matches, as far as headers and
/// query parameters go (paths are checked by the caller).
fn covers(a: &Route, b: &Route) -> bool {
    covers_headers(a, b)
}

/// Whether the route `a` matches every request `b` matches, as far as headers and query
/// parameters go (paths are compared by the caller).
pub(crate) fn covers_headers(a: &Route, b: &Route) -> bool {
    a.matcher
        .headers
        .iter()
        .all(|h| implied_header(h, &b.matcher.headers))
        && a.matcher
            .query_parameters
            .iter()
            .all(|q| implied_query(q, &b.matcher.query_parameters))
}

fn implied_header(h: &HeaderMatch, conds: &[HeaderMatch]) -> bool {
    // The host glob `*` is no condition at all. Envoy compares header names without case.
    matches!(&h.value, ValueMatch::Host(g) if g == "*")
        || conds
            .iter()
            .any(|c| c.name.eq_ignore_ascii_case(&h.name) && implied(&h.value, &c.value))
}

fn implied_query(q: &QueryMatch, conds: &[QueryMatch]) -> bool {
    conds
        .iter()
        .any(|c| c.name == q.name && implied(&q.value, &c.value))
}

/// Whether every value satisfying `have` satisfies `need`.
fn implied(need: &ValueMatch, have: &ValueMatch) -> bool {
    need == have
        || matches!(need, ValueMatch::Present)
        || matches!((need, have), (ValueMatch::Host(n), ValueMatch::Host(h)) if host_implied(n, h))
}

/// Whether every `Host` header the glob `have` accepts is accepted by the glob `need`
/// (`*.x` a suffix, `x.*` a prefix, else exact, as the back end emits them).
fn host_implied(need: &str, have: &str) -> bool {
    if need == "*" {
        return true;
    }
    if let Some(suffix) = need.strip_prefix('*') {
        // `have` is exact or a narrower suffix; a prefix glob can end with anything.
        return !have.ends_with('*') && have.trim_start_matches('*').ends_with(suffix);
    }
    if let Some(prefix) = need.strip_suffix('*') {
        return !have.starts_with('*') && have.trim_end_matches('*').starts_with(prefix);
    }
    need == have
}

/// Whether the regex matches every path the literal route matches, judged on probes.
fn regex_covers(re: &regex::Regex, q: &str, exact: bool) -> bool {
    if exact {
        return re.is_match(q);
    }
    [
        "",
        "x",
        "/",
        "/a/b",
        "Z-9.~_%20",
        "/deeper/path/with/many/segments.json",
    ]
    .iter()
    .all(|suffix| re.is_match(&format!("{q}{suffix}")))
}

#[cfg(test)]
mod tests {
    use crate::compile_one;

    fn codes(text: &str) -> Vec<&'static str> {
        compile_one("t.yaml", text)
            .diagnostics
            .iter()
            .map(|d| d.code.as_str())
            .collect()
    }

    fn mapping(name: &str, extra: &str) -> String {
        format!("---\napiVersion: getambassador.io/v3alpha1\nkind: Mapping\nmetadata: {{name: {name}}}\nspec: {{hostname: '*', service: a, {extra}}}\n")
    }

    #[test]
    fn a_higher_precedence_prefix_shadows_a_longer_one() {
        let t = mapping("short", "prefix: /api/, precedence: 10")
            + &mapping("long", "prefix: /api/v1/");
        assert!(codes(&t).contains(&"AMB402"), "{:?}", codes(&t));
    }

    #[test]
    fn header_conditions_prevent_shadowing() {
        let t = mapping(
            "short",
            "prefix: /api/, precedence: 10, headers: {x-canary: 'yes'}",
        ) + &mapping("long", "prefix: /api/v1/");
        assert!(!codes(&t).contains(&"AMB402"), "{:?}", codes(&t));
    }

    /// Every Mapping carries its host glob as an `:authority` condition: `*` is none, and a
    /// suffix glob covers the exact names under it, not the other way round.
    #[test]
    fn host_globs_shadow_as_envoy_matches_them() {
        let with_host = |name: &str, host: &str, extra: &str| {
            format!("---\napiVersion: getambassador.io/v3alpha1\nkind: Mapping\nmetadata: {{name: {name}}}\nspec: {{hostname: '{host}', service: a, {extra}}}\n")
        };
        let t = with_host("any", "*", "prefix: /api/, precedence: 10")
            + &with_host("exact", "a.example.com", "prefix: /api/v1/");
        assert!(codes(&t).contains(&"AMB402"), "{:?}", codes(&t));
        let t = with_host("suffix", "*.example.com", "prefix: /api/, precedence: 10")
            + &with_host("exact", "a.example.com", "prefix: /api/v1/");
        assert!(codes(&t).contains(&"AMB402"), "{:?}", codes(&t));
        let t = with_host("exact", "a.example.com", "prefix: /api/, precedence: 10")
            + &with_host("suffix", "*.example.com", "prefix: /api/v1/");
        assert!(!codes(&t).contains(&"AMB402"), "{:?}", codes(&t));
    }

    #[test]
    fn a_long_regex_shadows_a_literal_prefix() {
        let t = mapping("re", "prefix: '^/foo/.*$', prefix_regex: true")
            + &mapping("lit", "prefix: /foo/bar/");
        assert!(codes(&t).contains(&"AMB403"), "{:?}", codes(&t));
    }

    #[test]
    fn longer_prefixes_first_means_no_shadowing() {
        let t = mapping("a", "prefix: /api/") + &mapping("b", "prefix: /api/v1/");
        let c = codes(&t);
        assert!(!c.contains(&"AMB402") && !c.contains(&"AMB403"), "{c:?}");
    }
}

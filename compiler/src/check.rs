//! Checks that need the whole route table: routes that can never match because an earlier route always wins.
//!
//! Envoy takes the first route that matches, so a route is dead when an earlier route in
//! the same virtual host matches every request it matches. Literal prefixes are indexed
//! by their text, so the check costs the length of each path, not the number of routes;
//! regex routes are tested with probe paths, within a bounded budget.

use std::borrow::Cow;

use foldhash::{HashMap, HashMapExt};

use crate::diag::{Code, Diagnostic};
use crate::ir::{HeaderMatch, Ir, PathMatch, QueryMatch, Route, ValueMatch};
use crate::lower::object_of;
use crate::re2::Regex;

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
    shadowing_within(routes, diags, REGEX_PAIR_BUDGET);
}

/// [`shadowing`] with the number of (regex route, literal route) pairs it may probe.
///
/// Every earlier literal route is filed under its path (a bucket: the case-sensitive prefix
/// text, the lowercased text of a case-insensitive one, or an exact path), then under one
/// of its header or query conditions (see [`Conditions`]). A later route looks up the
/// buckets its path falls in, and in each only the conditions it has itself: what it finds
/// is every earlier route that can cover it, and usually little else. The findings are
/// those of comparing every pair: the earliest route that covers, and the same regex
/// budget spent in the same order (only pairs that cannot cover are skipped unprobed).
fn shadowing_within(routes: &[&Route], diags: &mut Vec<Diagnostic>, mut budget: usize) {
    let mut sensitive: HashMap<&str, u32> = HashMap::new();
    let mut insensitive: HashMap<String, u32> = HashMap::new();
    let mut exact: HashMap<(&str, bool), u32> = HashMap::new();
    let mut filed = Conditions::default();
    let mut regexes = Regexes::default();

    for (j, route) in routes.iter().enumerate() {
        let m = &route.matcher;
        let shadow = match &m.path {
            PathMatch::Prefix(q) | PathMatch::Exact(q) => {
                let is_exact = matches!(m.path, PathMatch::Exact(_));
                let mut found = None;
                if is_exact {
                    if let Some(&b) = exact.get(&(q.as_str(), m.case_sensitive)) {
                        found = filed.earliest_cover(b, routes, route, usize::MAX);
                    }
                }
                if found.is_none() {
                    found = literal_cover(
                        q,
                        m.case_sensitive,
                        &sensitive,
                        &insensitive,
                        &filed,
                        routes,
                        route,
                    );
                }
                match found {
                    Some(i) => Some((i, Code::ShadowedRoute)),
                    None => regexes
                        .earliest_cover(q, is_exact, routes, route, &mut budget)
                        .map(|i| (i, Code::ShadowedByRegex)),
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
        let next = filed.buckets.len() as u32;
        let bucket = match &m.path {
            PathMatch::Prefix(p) if m.case_sensitive => {
                *sensitive.entry(p.as_str()).or_insert(next)
            }
            PathMatch::Prefix(p) => *insensitive.entry(p.to_lowercase()).or_insert(next),
            PathMatch::Exact(p) => *exact.entry((p.as_str(), m.case_sensitive)).or_insert(next),
            PathMatch::Regex(r) => {
                regexes.push(j, r);
                continue;
            }
        };
        filed.file(bucket, j, route);
    }
}

/// The earliest literal prefix route that covers `route`, whose path text is `q`.
fn literal_cover(
    q: &str,
    case_sensitive: bool,
    sensitive: &HashMap<&str, u32>,
    insensitive: &HashMap<String, u32>,
    filed: &Conditions,
    routes: &[&Route],
    route: &Route,
) -> Option<usize> {
    let mut best: Option<usize> = None;
    let mut consider = |bucket: Option<&u32>| {
        if let Some(&b) = bucket {
            if let Some(i) = filed.earliest_cover(b, routes, route, best.unwrap_or(usize::MAX)) {
                best = Some(i);
            }
        }
    };
    if case_sensitive {
        for (k, _) in q.char_indices().chain(std::iter::once((q.len(), ' '))) {
            consider(sensitive.get(&q[..k]));
        }
    }
    if !insensitive.is_empty() {
        let lower = q.to_lowercase();
        for (k, _) in lower
            .char_indices()
            .chain(std::iter::once((lower.len(), ' ')))
        {
            consider(insensitive.get(&lower[..k]));
        }
    }
    best
}

/// Earlier literal routes by bucket (an index per distinct path), then by one of their
/// conditions.
///
/// A route `a` covers `b` only if each condition of `a` is implied by a condition of `b`
/// with the same name ([`covers_headers`]). So `a` is filed under one of its conditions
/// (the one whose list is shortest when it is filed), in a form that `b` finds by looking
/// up its own conditions: an exact, regex or exact-host value under the value itself
/// (only the same value implies it); a host glob `*.x` under its suffix and `x.*` under its
/// prefix (`b` looks up every suffix and prefix of its host); anything else (`present`, odd
/// globs) under the name alone. A route without conditions is in its bucket's `open` list,
/// which every lookup reads. Lists hold route indices in ascending order.
#[derive(Default)]
struct Conditions<'a> {
    buckets: Vec<Bucket>,
    keyed: HashMap<Key<'a>, Vec<usize>>,
}

#[derive(Default)]
struct Bucket {
    /// The routes without any condition.
    open: Vec<usize>,
    /// The kinds of keys filed in this bucket (bits of [`Filed::bit`]), so that a lookup
    /// skips the kinds it cannot find (a host has many suffixes and prefixes).
    kinds: u8,
}

/// A condition of an earlier route as it is filed: its bucket, whether it is a query
/// parameter (else a header), its name (lowercased for a header) and what `b` must have.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Key<'a> {
    bucket: u32,
    query: bool,
    name: Cow<'a, str>,
    value: Filed<'a>,
}

#[derive(Clone, PartialEq, Eq, Hash)]
enum Filed<'a> {
    /// Implied by this value only.
    Value(&'a ValueMatch),
    /// A host glob `*<suffix>` (the suffix non-empty, without `*`).
    Suffix(&'a str),
    /// A host glob `<prefix>*` (the prefix non-empty, without `*`).
    Prefix(&'a str),
    /// Any value of the name may imply it.
    Name,
}

impl Filed<'_> {
    fn bit(&self) -> u8 {
        match self {
            Filed::Value(_) => 1,
            Filed::Suffix(_) => 2,
            Filed::Prefix(_) => 4,
            Filed::Name => 8,
        }
    }
}

/// A header name as Envoy compares it (without case), borrowed when already lowercase.
fn header_name(name: &str) -> Cow<'_, str> {
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(name.to_ascii_lowercase())
    } else {
        Cow::Borrowed(name)
    }
}

/// How the condition `need` of an earlier route is filed; `None` when it is no condition.
fn filed_as(query: bool, need: &ValueMatch) -> Option<Filed<'_>> {
    Some(match need {
        // The host glob `*` is no header condition at all ([`implied_header`]).
        ValueMatch::Host(g) if g == "*" && !query => return None,
        ValueMatch::Exact(_) | ValueMatch::Regex(_) => Filed::Value(need),
        ValueMatch::Host(g) if !g.contains('*') => Filed::Value(need),
        ValueMatch::Host(g) => match (g.strip_prefix('*'), g.strip_suffix('*')) {
            (Some(s), None) if !s.is_empty() && !s.contains('*') => Filed::Suffix(s),
            (None, Some(p)) if !p.is_empty() && !p.contains('*') => Filed::Prefix(p),
            _ => Filed::Name,
        },
        ValueMatch::Present => Filed::Name,
    })
}

impl<'a> Conditions<'a> {
    /// Files route `j` under `bucket` (a new bucket when it is the next index).
    fn file(&mut self, bucket: u32, j: usize, route: &'a Route) {
        if bucket as usize == self.buckets.len() {
            self.buckets.push(Bucket::default());
        }
        let m = &route.matcher;
        let conds = m
            .headers
            .iter()
            .map(|h| (false, header_name(&h.name), &h.value))
            .chain(
                m.query_parameters
                    .iter()
                    .map(|q| (true, Cow::Borrowed(q.name.as_str()), &q.value)),
            );
        let mut best: Option<(usize, Key<'a>)> = None;
        for (query, name, value) in conds {
            let Some(value) = filed_as(query, value) else {
                continue;
            };
            let key = Key {
                bucket,
                query,
                name,
                value,
            };
            let len = self.keyed.get(&key).map_or(0, Vec::len);
            if best.as_ref().is_none_or(|(l, _)| len < *l) {
                best = Some((len, key));
            }
        }
        let b = &mut self.buckets[bucket as usize];
        match best {
            Some((_, key)) => {
                b.kinds |= key.value.bit();
                self.keyed.entry(key).or_default().push(j)
            }
            None => b.open.push(j),
        }
    }

    /// The earliest route of `bucket` before `limit` that covers `route`.
    fn earliest_cover(
        &self,
        bucket: u32,
        routes: &[&Route],
        route: &'a Route,
        limit: usize,
    ) -> Option<usize> {
        let mut best = limit;
        let mut scan = |list: &[usize]| {
            for &i in list {
                if i >= best {
                    break;
                }
                if covers(routes[i], route) {
                    best = i;
                    break;
                }
            }
        };
        let b = &self.buckets[bucket as usize];
        scan(&b.open);
        let kinds = b.kinds;
        if kinds != 0 {
            let m = &route.matcher;
            let conds = m
                .headers
                .iter()
                .map(|h| (false, header_name(&h.name), &h.value))
                .chain(
                    m.query_parameters
                        .iter()
                        .map(|q| (true, Cow::Borrowed(q.name.as_str()), &q.value)),
                );
            for (query, name, have) in conds {
                let mut look = |value: Filed<'a>| {
                    if kinds & value.bit() == 0 {
                        return;
                    }
                    let key = Key {
                        bucket,
                        query,
                        name: name.clone(),
                        value,
                    };
                    if let Some(list) = self.keyed.get(&key) {
                        scan(list);
                    }
                };
                look(Filed::Value(have));
                look(Filed::Name);
                if let ValueMatch::Host(h) = have {
                    // Globs `*<suffix>` that `h` falls under ([`host_implied`]).
                    if kinds & 2 != 0 && !h.ends_with('*') {
                        let t = h.trim_start_matches('*');
                        for (k, _) in t.char_indices() {
                            look(Filed::Suffix(&t[k..]));
                        }
                    }
                    // Globs `<prefix>*`.
                    if kinds & 4 != 0 && !h.starts_with('*') {
                        let t = h.trim_end_matches('*');
                        for (k, c) in t.char_indices() {
                            look(Filed::Prefix(&t[..k + c.len_utf8()]));
                        }
                    }
                }
            }
        }
        (best < limit).then_some(best)
    }
}

/// Earlier regex routes, in order, filed by the literal texts their matches start with.
#[derive(Default)]
struct Regexes {
    /// The route index and the compiled regex, in route order (a regex's position here is
    /// what the budget counts).
    list: Vec<(usize, Regex)>,
    /// Positions in `list` by a literal every path the regex matches starts with (a regex
    /// has one or more).
    by_literal: HashMap<Vec<u8>, Vec<usize>>,
    /// Positions of regexes without such literals.
    open: Vec<usize>,
}

impl Regexes {
    /// Files the regex route `j`. Envoy ignores `case_sensitive` on a regex route, so the
    /// regex is read as written.
    fn push(&mut self, j: usize, r: &str) {
        let Ok(re) = Regex::without_size_limit(r) else {
            return;
        };
        let lits = literal_prefixes(re.full_match_syntax());
        let at = self.list.len();
        self.list.push((j, re));
        match lits {
            Some(lits) => {
                for lit in lits {
                    let list = self.by_literal.entry(lit).or_default();
                    if list.last() != Some(&at) {
                        list.push(at);
                    }
                }
            }
            None => self.open.push(at),
        }
    }

    /// The earliest regex route covering the literal route `route` (path `q`) within the
    /// budget, which is spent as probing each regex in turn would spend it: up to and
    /// including the one found, or all of them (as far as the budget goes).
    fn earliest_cover(
        &self,
        q: &str,
        exact: bool,
        routes: &[&Route],
        route: &Route,
        budget: &mut usize,
    ) -> Option<usize> {
        let reach = (*budget).min(self.list.len());
        let mut best = reach;
        let mut scan = |list: &[usize]| {
            for &p in list {
                if p >= best {
                    break;
                }
                let (i, re) = &self.list[p];
                if covers_headers(routes[*i], route) && regex_covers(re, q, exact) {
                    best = p;
                    break;
                }
            }
        };
        scan(&self.open);
        if !self.by_literal.is_empty() {
            for k in 0..=q.len() {
                if let Some(list) = self.by_literal.get(&q.as_bytes()[..k]) {
                    scan(list);
                }
            }
        }
        if best < reach {
            *budget -= best + 1;
            Some(self.list[best].0)
        } else {
            *budget -= reach;
            None
        }
    }
}

/// Literals that every match of `pattern` (anchored at the start, written for bytes with
/// Unicode off as [`Regex::full_match_syntax`] gives it) begins with, or `None` when there
/// is no such finite set.
fn literal_prefixes(pattern: &str) -> Option<Vec<Vec<u8>>> {
    let hir = regex_syntax::ParserBuilder::new()
        .unicode(false)
        .utf8(false)
        .nest_limit(10_000)
        .build()
        .parse(pattern)
        .ok()?;
    let seq = regex_syntax::hir::literal::Extractor::new().extract(&hir);
    let lits = seq.literals()?;
    if lits.is_empty() {
        return None;
    }
    Some(lits.iter().map(|l| l.as_bytes().to_vec()).collect())
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

/// Whether the regex matches every path the literal route matches, judged on probes (with
/// RE2's meaning: a full match of the path's bytes).
fn regex_covers(re: &Regex, q: &str, exact: bool) -> bool {
    if exact {
        return re.is_full_match(q.as_bytes());
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
    .all(|suffix| re.is_full_match(format!("{q}{suffix}").as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile_one;
    use crate::ir::RouteMatch;

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
    fn regexes_are_read_as_envoy_reads_them() {
        // `\Q..\E` is RE2 syntax that Rust's `regex` does not parse.
        let t = mapping("re", r"prefix: '/a\Q.*\E.*', prefix_regex: true")
            + &mapping("lit", "prefix: /a.*/b/");
        assert!(codes(&t).contains(&"AMB403"), "{:?}", codes(&t));
        // Envoy ignores `case_sensitive` on a regex route: `/FOO/` is not matched.
        let t = mapping(
            "re",
            "prefix: '/foo/.*', prefix_regex: true, case_sensitive: false",
        ) + &mapping("lit", "prefix: /FOO/bar/");
        assert!(!codes(&t).contains(&"AMB403"), "{:?}", codes(&t));
    }

    /// The check as it was before the index: every earlier route compared with every later
    /// one. The indexed check must give exactly its findings.
    fn shadowing_pairwise(routes: &[&Route], diags: &mut Vec<Diagnostic>, mut budget: usize) {
        let mut regexes: Vec<(usize, Regex)> = Vec::new();
        for (j, route) in routes.iter().enumerate() {
            let m = &route.matcher;
            let shadow = match &m.path {
                PathMatch::Prefix(q) | PathMatch::Exact(q) => {
                    let is_exact = matches!(m.path, PathMatch::Exact(_));
                    let earlier = |i: usize| -> bool {
                        let e = &routes[i].matcher;
                        let (p, exact_path) = match &e.path {
                            PathMatch::Prefix(p) => (p, false),
                            PathMatch::Exact(p) => (p, true),
                            PathMatch::Regex(_) => return false,
                        };
                        let path_covers = if exact_path {
                            false
                        } else if e.case_sensitive {
                            m.case_sensitive && q.starts_with(p.as_str())
                        } else {
                            q.to_lowercase().starts_with(&p.to_lowercase())
                        };
                        path_covers && covers(routes[i], route)
                    };
                    let same_exact = |i: usize| -> bool {
                        let e = &routes[i].matcher;
                        is_exact
                            && matches!(&e.path, PathMatch::Exact(p) if p == q)
                            && e.case_sensitive == m.case_sensitive
                            && covers(routes[i], route)
                    };
                    let found = (0..j)
                        .find(|&i| same_exact(i))
                        .or_else(|| (0..j).find(|&i| earlier(i)));
                    match found {
                        Some(i) => Some((i, Code::ShadowedRoute)),
                        None => {
                            let mut hit = None;
                            for (i, re) in &regexes {
                                if budget == 0 {
                                    break;
                                }
                                budget -= 1;
                                if covers_headers(routes[*i], route)
                                    && regex_covers(re, q, is_exact)
                                {
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
            if let PathMatch::Regex(r) = &m.path {
                if let Ok(re) = Regex::without_size_limit(r) {
                    regexes.push((j, re));
                }
            }
        }
    }

    /// A seeded generator (SplitMix64), so a failure can be replayed.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
        fn pick<'p>(&mut self, from: &[&'p str]) -> &'p str {
            from[self.below(from.len())]
        }
    }

    fn value(rng: &mut Rng) -> ValueMatch {
        const HOSTS: &[&str] = &[
            "*",
            "a.com",
            "b.a.com",
            "*.a.com",
            "*a.com",
            "a.*",
            "a.co*",
            "**.a.com",
            "*a*",
            "*.com",
            "b.*",
            "*",
            "A.com",
            "é.a.com",
            "*é.a.com",
            "a.com*",
            "*.a.com*",
        ];
        match rng.below(8) {
            0 | 1 => ValueMatch::Exact(rng.pick(&["1", "2", "v"]).to_string()),
            2 => ValueMatch::Regex(rng.pick(&["1|2", "v"]).to_string()),
            3 => ValueMatch::Present,
            _ => ValueMatch::Host(rng.pick(HOSTS).to_string()),
        }
    }

    /// A route table of `n` routes on a small alphabet of paths and conditions, so that
    /// many routes share a path and many cover others.
    fn table(rng: &mut Rng, template: &Route, n: usize) -> Vec<Route> {
        const PIECES: &[&str] = &["a", "b", "A", "/", "é", "É", "ab"];
        const REGEXES: &[&str] = &[
            "/a.*",
            "/a/.*",
            "/.*",
            "/a/b.*",
            "/[ab].*",
            "/(a|b)/.*",
            ".*",
            "/a",
            "/a(/.*)?",
            "/A.*",
            "/é.*",
            "[/]a.*",
            "/a/b/.*/x",
            "(",
            "/(?i:a).*",
            "/a|/b.*",
            "(?:)",
            "/\\w.*",
            "/a*",
            "/ab?/.*",
        ];
        (0..n)
            .map(|j| {
                let mut text = String::from("/");
                for _ in 0..rng.below(4) {
                    text.push_str(rng.pick(PIECES));
                }
                let path = match rng.below(10) {
                    0..=5 => PathMatch::Prefix(text),
                    6 | 7 => PathMatch::Exact(text),
                    _ => PathMatch::Regex(rng.pick(REGEXES).to_string()),
                };
                let headers = (0..rng.below(4))
                    .map(|_| HeaderMatch {
                        name: rng
                            .pick(&[":authority", ":authority", "x-t", "X-T", "x-u", ":method"])
                            .to_string(),
                        value: value(rng),
                    })
                    .collect();
                let query_parameters = (0..rng.below(3).saturating_sub(1))
                    .map(|_| QueryMatch {
                        name: rng.pick(&["t", "T", "u"]).to_string(),
                        value: value(rng),
                    })
                    .collect();
                let mut r = template.clone();
                r.matcher = RouteMatch {
                    path,
                    case_sensitive: rng.below(4) != 0,
                    headers,
                    query_parameters,
                };
                r.sources[0].name = format!("r{j}").into();
                r
            })
            .collect()
    }

    fn template() -> Route {
        let c = compile_one("t.yaml", &mapping("t", "prefix: /t/"));
        c.ir.virtual_hosts
            .iter()
            .flat_map(|v| v.routes.iter())
            .next()
            .expect("a route")
            .clone()
    }

    /// The indexed check gives exactly the findings of comparing every pair, on random
    /// tables (`CHECK_TABLES` tables, 1,000 by default; `CHECK_SEED` to change the seed),
    /// with the regex budget unbounded and nearly spent.
    #[test]
    fn the_index_finds_what_comparing_every_pair_finds() {
        let tables: usize = std::env::var("CHECK_TABLES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1000);
        let seed: u64 = std::env::var("CHECK_SEED")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(13);
        let template = template();
        let mut rng = Rng(seed);
        let (mut shadowed, mut by_regex) = (0, 0);
        for t in 0..tables {
            let n = 1 + rng.below(if t % 50 == 0 { 200 } else { 30 });
            let routes = table(&mut rng, &template, n);
            let refs: Vec<&Route> = routes.iter().collect();
            for budget in [REGEX_PAIR_BUDGET, t % 13] {
                let (mut want, mut got) = (Vec::new(), Vec::new());
                shadowing_pairwise(&refs, &mut want, budget);
                shadowing_within(&refs, &mut got, budget);
                assert_eq!(
                    got,
                    want,
                    "table {t} (seed {seed}), budget {budget}: {:#?}",
                    refs.iter().map(|r| &r.matcher).collect::<Vec<_>>()
                );
                if budget == REGEX_PAIR_BUDGET {
                    shadowed += want
                        .iter()
                        .filter(|d| d.code == Code::ShadowedRoute)
                        .count();
                    by_regex += want
                        .iter()
                        .filter(|d| d.code == Code::ShadowedByRegex)
                        .count();
                }
            }
        }
        // The tables must exercise both findings, or the comparison says little.
        assert!(
            shadowed > tables && by_regex > tables / 4,
            "{shadowed} shadowed, {by_regex} by a regex"
        );
    }

    /// One prefix told apart by a header value (tenant routing) costs lookups, not pairs:
    /// 20,000 routes are checked in well under the time the pairs took (seconds).
    #[test]
    fn tenant_routing_is_not_quadratic() {
        let template = template();
        let routes: Vec<Route> = (0..20_000)
            .map(|i| {
                let mut r = template.clone();
                r.matcher = RouteMatch {
                    path: PathMatch::Prefix("/api/".into()),
                    case_sensitive: true,
                    headers: vec![
                        HeaderMatch {
                            name: ":authority".into(),
                            value: ValueMatch::Host("app.example.com".into()),
                        },
                        HeaderMatch {
                            name: "x-tenant".into(),
                            value: ValueMatch::Exact(format!("tenant-{i}")),
                        },
                    ],
                    query_parameters: vec![],
                };
                r
            })
            .collect();
        let refs: Vec<&Route> = routes.iter().collect();
        let mut diags = Vec::new();
        let t = std::time::Instant::now();
        shadowing(&refs, &mut diags);
        assert!(diags.is_empty());
        // Pairwise, this was 200 million header comparisons.
        assert!(
            t.elapsed() < std::time::Duration::from_secs(5),
            "{:?}",
            t.elapsed()
        );
    }

    #[test]
    fn longer_prefixes_first_means_no_shadowing() {
        let t = mapping("a", "prefix: /api/") + &mapping("b", "prefix: /api/v1/");
        let c = codes(&t);
        assert!(!c.contains(&"AMB402") && !c.contains(&"AMB403"), "{c:?}");
    }
}

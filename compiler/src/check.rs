//! Checks that need the whole route table: routes that can never match because an earlier route always wins.
//!
//! The check reads the routes Envoy is sent, decoded into the plain table the tracer walks
//! ([`crate::matcher`], through [`crate::envoy::table::routes_of`]): each IR route in every
//! variant a listener serves it in (the https redirect and the `x-forwarded-proto`
//! condition of an XFP listener, one route per canary member with its own case and share).
//! An IR route is reported when every Envoy route made of it is dead: an earlier route of
//! the same virtual host matches every request it matches. Literal prefixes are indexed by
//! their text, so the check costs the length of each path, not the number of routes; regex
//! routes are tested with probe paths, within a bounded budget.

use std::borrow::Cow;

use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};

use crate::diag::{Code, Diagnostic};
use crate::envoy::table::{routes_of, variants_of};
use crate::envoy::Variants;
use crate::ir::{InsecureAction, Ir, Route, SecurityModel};
use crate::lower::object_of;
use crate::matcher::{self, PathCond, ValueTest};
use crate::re2::Regex;

/// At most this many (regex route, literal route) pairs are probed per virtual host and
/// variant.
const REGEX_PAIR_BUDGET: usize = 1_000_000;

/// Runs the whole-configuration checks on what `ir` is emitted as.
pub fn check(ir: &Ir, diags: &mut Vec<Diagnostic>) {
    let variants = variants_of(ir);
    // A table shared by several virtual hosts (see `VirtualHost::routes`) is checked once
    // per set of variants: the findings would be the same.
    let mut jobs: Vec<(&[Route], &[Variants])> = Vec::new();
    let mut seen: HashSet<(*const Vec<Route>, &[Variants])> = HashSet::new();
    for vh in &ir.virtual_hosts {
        let Some(v) = variants.get(vh.name.as_str()) else {
            continue;
        };
        if seen.insert((std::sync::Arc::as_ptr(&vh.routes), v.as_slice())) {
            jobs.push((vh.routes.as_slice(), v.as_slice()));
        }
    }
    // Tables are independent: large configurations check them on all cores, and the
    // findings come back in virtual-host order.
    let routes: usize = jobs.iter().map(|(r, _)| r.len()).sum();
    let run = if routes < crate::par::PARALLEL_MIN_ROUTES {
        jobs.len()
    } else {
        1
    };
    let found = crate::par::runs(&jobs, run, |jobs| {
        let mut out = Vec::new();
        for (routes, v) in jobs {
            let routes: Vec<&Route> = routes.iter().collect();
            shadowing(&routes, v, &mut out);
        }
        out
    });
    for mut d in found {
        diags.append(&mut d);
    }
}

/// Routes of one virtual host, in order, that an earlier route always wins over, on a
/// listener with any of `variants`.
pub(crate) fn shadowing(routes: &[&Route], variants: &[Variants], diags: &mut Vec<Diagnostic>) {
    shadowing_within(routes, variants, diags, REGEX_PAIR_BUDGET);
}

/// An Envoy route, decoded, and the index of the IR route it was made of.
struct Emitted {
    route: matcher::Route,
    from: usize,
}

/// The Envoy routes of `routes` on a listener with `v`, in order, decoded (a large table on
/// all cores: decoding is most of the check's time).
fn emitted_in(routes: &[&Route], v: Variants) -> Vec<Emitted> {
    let run = crate::par::run_len(routes.len(), crate::par::PARALLEL_MIN_ROUTES);
    let runs = crate::par::runs_at(routes, run, |at, run| {
        let mut out = Vec::with_capacity(run.len());
        for (k, r) in run.iter().enumerate() {
            out.extend(routes_of(r, v).into_iter().map(|route| Emitted {
                route,
                from: at + k,
            }));
        }
        out
    });
    if runs.len() == 1 {
        return runs.into_iter().flatten().collect();
    }
    let mut out = Vec::with_capacity(runs.iter().map(Vec::len).sum());
    for mut run in runs {
        out.append(&mut run);
    }
    out
}

/// [`shadowing`] with the number of (regex route, literal route) pairs it may probe per
/// variant.
fn shadowing_within(
    routes: &[&Route],
    variants: &[Variants],
    diags: &mut Vec<Diagnostic>,
    budget: usize,
) {
    let mut found: Vec<Option<(usize, Code, SecurityModel)>> = vec![None; routes.len()];
    for &v in variants {
        let emitted = emitted_in(routes, v);
        for (k, f) in dead(&emitted, routes.len(), budget).into_iter().enumerate() {
            if found[k].is_none() {
                found[k] = f.map(|(w, code)| (w, code, v.security));
            }
        }
    }
    for (k, f) in found.into_iter().enumerate() {
        let Some((w, code, security)) = f else {
            continue;
        };
        let (route, earlier) = (routes[k], routes[w]);
        let src = &route.sources[0];
        let by = &earlier.sources[0];
        let what = match code {
            Code::ShadowedByRegex => format!("regex `{}`", earlier.matcher.path.text()),
            _ => format!("`{}`", earlier.matcher.path.text()),
        };
        // The condition the winner seems to have is not in what Envoy is sent.
        let why = if security == SecurityModel::Xfp
            && earlier
                .matcher
                .headers
                .iter()
                .any(|h| h.name.eq_ignore_ascii_case("x-forwarded-proto"))
        {
            " (on a listener with `securityModel: XFP` a Mapping's own `x-forwarded-proto` condition is dropped, as Emissary drops it)"
        } else {
            ""
        };
        diags.push(
            Diagnostic::at(
                code,
                src.span,
                format!(
                    "route `{}` of {} `{}` never matches: {what} of {} `{}` comes first and matches everything it does{why}",
                    route.matcher.path.text(),
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
}

/// For each of the `n` IR routes, the IR route that wins over every Envoy route made of it
/// (the one covering its first), and how; `None` when one of them can match.
fn dead(emitted: &[Emitted], n: usize, budget: usize) -> Vec<Option<(usize, Code)>> {
    let covers = earliest_covers(emitted, budget);
    let mut out: Vec<Option<Option<(usize, Code)>>> = vec![None; n];
    for (e, cover) in emitted.iter().zip(covers) {
        let winner = cover
            .map(|(i, code)| (emitted[i].from, code))
            .filter(|(w, _)| *w != e.from);
        out[e.from] = match out[e.from] {
            // The first of its routes: its winner, if any.
            None => Some(winner),
            Some(Some(first)) if winner.is_some() => Some(Some(first)),
            Some(_) => Some(None),
        };
    }
    out.into_iter().map(Option::flatten).collect()
}

/// Whether Envoy can ever take `r` for every request its conditions match: a route with a
/// share of the requests (a canary member) takes only some of them, and a condition this
/// table does not model never matches.
fn takes_all(r: &matcher::Route) -> bool {
    r.fraction_ppm.is_none_or(|f| f >= 1_000_000) && !never_matches(r)
}

fn never_matches(r: &matcher::Route) -> bool {
    matches!(r.path, PathCond::Unsupported(_))
        || r.headers
            .iter()
            .any(|h| matches!(h.test, ValueTest::Unsupported { .. }))
        || r.query
            .iter()
            .any(|q| matches!(q.test, ValueTest::Unsupported { .. }))
}

/// For every Envoy route, the earliest route before it that matches every request it
/// matches, and whether that one is a regex (within the regex budget).
///
/// Every earlier literal route is filed under its path (a bucket: the case-sensitive prefix
/// or exact text, or the ASCII-lowercased text of a case-insensitive one, as Envoy
/// compares), then under one of its header or query conditions (see [`Conditions`]). A
/// later route looks up the buckets its path falls in, and in each only the conditions it
/// has itself: what it finds is every earlier route that can cover it, and usually little
/// else. The findings are those of comparing every pair: the earliest route that covers,
/// and the same regex budget spent in the same order (only pairs that cannot cover are
/// skipped unprobed).
fn earliest_covers(emitted: &[Emitted], mut budget: usize) -> Vec<Option<(usize, Code)>> {
    // Each map and list made the size it grows to (growing them was a tenth of this): the
    // literal routes filed, the case-sensitive prefixes and exact paths among them, and
    // those with conditions.
    let (mut literal, mut prefixes, mut exacts, mut keyed) = (0, 0, 0, 0);
    for e in emitted.iter().filter(|e| takes_all(&e.route)) {
        let with_case = usize::from(e.route.case_sensitive);
        match e.route.path {
            PathCond::Prefix(_) => prefixes += with_case,
            PathCond::Exact(_) => exacts += with_case,
            _ => continue,
        }
        literal += 1;
        keyed += usize::from(!e.route.headers.is_empty() || !e.route.query.is_empty());
    }
    let mut sensitive: HashMap<&str, u32> = HashMap::with_capacity(prefixes);
    let mut insensitive: HashMap<String, u32> = HashMap::new();
    let mut exact: HashMap<&str, u32> = HashMap::with_capacity(exacts);
    let mut exact_insensitive: HashMap<String, u32> = HashMap::new();
    let mut filed = Conditions::with_capacity(emitted.len(), literal, keyed);
    let mut regexes = Regexes::default();
    // How each regex route is filed (parsing it and reading the texts its matches start
    // with), worked out on all cores beforehand; taken below in the order the routes are
    // filed.
    let patterns: Vec<&str> = emitted
        .iter()
        .filter(|e| takes_all(&e.route))
        .filter_map(|e| match &e.route.path {
            PathCond::Regex(r) => Some(r.text.as_str()),
            _ => None,
        })
        .collect();
    let mut filings =
        crate::par::runs(&patterns, crate::par::run_len(patterns.len(), 256), |run| {
            run.iter().map(|r| filing(r)).collect::<Vec<_>>()
        })
        .into_iter()
        .flatten();
    let mut out = Vec::with_capacity(emitted.len());

    for (j, e) in emitted.iter().enumerate() {
        let route = &e.route;
        let shadow = match &route.path {
            PathCond::Prefix(q) | PathCond::Exact(q) if !never_matches(route) => {
                let is_exact = matches!(route.path, PathCond::Exact(_));
                let mut found = None;
                if is_exact {
                    // An earlier exact path: the same text, or the same letters in any case
                    // when the earlier one ignores case (ASCII only, as Envoy compares).
                    let with_case = route
                        .case_sensitive
                        .then(|| exact.get(q.as_str()))
                        .flatten();
                    let without = exact_insensitive.get(&q.to_ascii_lowercase());
                    for &b in with_case.into_iter().chain(without) {
                        let limit = found.unwrap_or(usize::MAX);
                        if let Some(i) = filed.earliest_cover(b, emitted, route, limit) {
                            found = Some(i);
                        }
                    }
                }
                if found.is_none() {
                    found = literal_cover(
                        q,
                        route.case_sensitive,
                        &sensitive,
                        &insensitive,
                        &filed,
                        emitted,
                        route,
                    );
                }
                match found {
                    Some(i) => Some((i, Code::ShadowedRoute)),
                    None => regexes
                        .earliest_cover(q, is_exact, emitted, route, &mut budget)
                        .map(|i| (i, Code::ShadowedByRegex)),
                }
            }
            _ => None,
        };
        out.push(shadow);
        if !takes_all(route) {
            continue;
        }
        // Index this route for the routes after it.
        let next = filed.buckets.len() as u32;
        let bucket = match &route.path {
            PathCond::Prefix(p) if route.case_sensitive => {
                *sensitive.entry(p.as_str()).or_insert(next)
            }
            PathCond::Prefix(p) => *insensitive.entry(p.to_ascii_lowercase()).or_insert(next),
            PathCond::Exact(p) if route.case_sensitive => *exact.entry(p.as_str()).or_insert(next),
            PathCond::Exact(p) => *exact_insensitive
                .entry(p.to_ascii_lowercase())
                .or_insert(next),
            PathCond::Regex(r) => {
                if let Some(Some(lits)) = filings.next() {
                    regexes.push(j, &r.text, lits);
                }
                continue;
            }
            PathCond::Unsupported(_) => continue,
        };
        filed.file(bucket, j, route);
    }
    out
}

/// The earliest literal prefix route that covers `route`, whose path text is `q`.
fn literal_cover(
    q: &str,
    case_sensitive: bool,
    sensitive: &HashMap<&str, u32>,
    insensitive: &HashMap<String, u32>,
    filed: &Conditions,
    emitted: &[Emitted],
    route: &matcher::Route,
) -> Option<usize> {
    let mut best: Option<usize> = None;
    let mut consider = |bucket: Option<&u32>| {
        if let Some(&b) = bucket {
            if let Some(i) = filed.earliest_cover(b, emitted, route, best.unwrap_or(usize::MAX)) {
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
        let lower = q.to_ascii_lowercase();
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
/// with the same name ([`covers_conditions`]). So `a` is filed under one of its conditions
/// (the one whose list is shortest when it is filed), in a form that `b` finds by looking
/// up its own conditions: an exact or regex value under the value itself (only the same
/// value implies it); a suffix under the suffix and a prefix under the prefix (`b` looks up
/// every suffix and prefix of its exact value, suffix or prefix); anything else (`present`,
/// `contains`, ignoring case) under the name alone. A route without conditions is in its
/// bucket's `open` list, which every lookup reads. Lists hold route indices in ascending
/// order, chained through one array (a route is in one list at most): a list of its own
/// for each of thousands of paths was a third of filing them.
struct Conditions<'a> {
    buckets: Vec<Bucket>,
    keyed: HashMap<Key<'a>, List>,
    /// The route after each in its list, or [`List::END`].
    next: Vec<u32>,
}

/// A list of routes in ascending order, chained through [`Conditions::next`].
#[derive(Clone, Copy)]
struct List {
    first: u32,
    last: u32,
    len: u32,
}

impl List {
    const END: u32 = u32::MAX;
    const EMPTY: List = List {
        first: List::END,
        last: List::END,
        len: 0,
    };

    /// Appends route `j`, after every route in the list.
    fn push(&mut self, j: usize, next: &mut [u32]) {
        let j = j as u32;
        if self.len == 0 {
            self.first = j;
        } else {
            next[self.last as usize] = j;
        }
        self.last = j;
        self.len += 1;
    }
}

#[derive(Clone, Copy)]
struct Bucket {
    /// The routes without any condition.
    open: List,
    /// The kinds of keys filed in this bucket (bits of [`Filed::bit`]), so that a lookup
    /// skips the kinds it cannot find (a value has many suffixes and prefixes).
    kinds: u8,
}

/// A condition of an earlier route as it is filed: its bucket, whether it is a query
/// parameter (else a header), its name (lowercase for a header) and what `b` must have.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Key<'a> {
    bucket: u32,
    query: bool,
    name: &'a str,
    value: Filed<'a>,
}

#[derive(Clone, PartialEq, Eq, Hash)]
enum Filed<'a> {
    /// A case-sensitive exact value: implied by this value only.
    Exact(&'a str),
    /// A regex: implied by the same regex only.
    Regex(&'a str),
    /// A case-sensitive suffix (non-empty).
    Suffix(&'a str),
    /// A case-sensitive prefix (non-empty).
    Prefix(&'a str),
    /// Any value of the name may imply it.
    Name,
}

impl Filed<'_> {
    fn bit(&self) -> u8 {
        match self {
            Filed::Exact(_) | Filed::Regex(_) => 1,
            Filed::Suffix(_) => 2,
            Filed::Prefix(_) => 4,
            Filed::Name => 8,
        }
    }
}

/// How the condition `need` of an earlier route is filed.
fn filed_as(need: &ValueTest, invert: bool) -> Filed<'_> {
    if invert {
        return Filed::Name;
    }
    match need {
        ValueTest::Exact {
            value,
            ignore_case: false,
        } => Filed::Exact(value),
        ValueTest::Regex { pattern } => Filed::Regex(&pattern.text),
        ValueTest::Suffix {
            value,
            ignore_case: false,
        } if !value.is_empty() => Filed::Suffix(value),
        ValueTest::Prefix {
            value,
            ignore_case: false,
        } if !value.is_empty() => Filed::Prefix(value),
        _ => Filed::Name,
    }
}

/// The conditions of a route: whether each is on a query parameter, its name, its test and
/// whether it is inverted.
fn conditions(r: &matcher::Route) -> impl Iterator<Item = (bool, &str, &ValueTest, bool)> {
    r.headers
        .iter()
        .map(|h| (false, h.name.as_str(), &h.test, h.invert))
        .chain(
            r.query
                .iter()
                .map(|q| (true, q.name.as_str(), &q.test, false)),
        )
}

impl<'a> Conditions<'a> {
    /// Room for `routes` routes, `buckets` buckets and `keyed` routes with conditions.
    fn with_capacity(routes: usize, buckets: usize, keyed: usize) -> Conditions<'a> {
        Conditions {
            buckets: Vec::with_capacity(buckets),
            keyed: HashMap::with_capacity(keyed),
            next: vec![List::END; routes],
        }
    }

    /// Files route `j` under `bucket` (a new bucket when it is the next index).
    fn file(&mut self, bucket: u32, j: usize, route: &'a matcher::Route) {
        if bucket as usize == self.buckets.len() {
            self.buckets.push(Bucket {
                open: List::EMPTY,
                kinds: 0,
            });
        }
        let mut best: Option<(usize, Key<'a>)> = None;
        for (query, name, test, invert) in conditions(route) {
            let key = Key {
                bucket,
                query,
                name,
                value: filed_as(test, invert),
            };
            let len = self.keyed.get(&key).map_or(0, |l| l.len as usize);
            if best.as_ref().is_none_or(|(l, _)| len < *l) {
                best = Some((len, key));
            }
        }
        let b = &mut self.buckets[bucket as usize];
        match best {
            Some((_, key)) => {
                b.kinds |= key.value.bit();
                self.keyed
                    .entry(key)
                    .or_insert(List::EMPTY)
                    .push(j, &mut self.next);
            }
            None => b.open.push(j, &mut self.next),
        }
    }

    /// The earliest route of `bucket` before `limit` that covers `route`.
    fn earliest_cover(
        &self,
        bucket: u32,
        emitted: &[Emitted],
        route: &matcher::Route,
        limit: usize,
    ) -> Option<usize> {
        let mut best = limit;
        let mut scan = |list: &List| {
            let mut i = list.first;
            while i != List::END && (i as usize) < best {
                if covers_conditions(&emitted[i as usize].route, route) {
                    best = i as usize;
                    break;
                }
                i = self.next[i as usize];
            }
        };
        let b = &self.buckets[bucket as usize];
        scan(&b.open);
        let kinds = b.kinds;
        if kinds != 0 {
            for (query, name, have, invert) in conditions(route) {
                let mut look = |value: Filed<'_>| {
                    if kinds & value.bit() == 0 {
                        return;
                    }
                    let key = Key {
                        bucket,
                        query,
                        name,
                        value,
                    };
                    if let Some(list) = self.keyed.get(&key) {
                        scan(list);
                    }
                };
                look(Filed::Name);
                if invert {
                    continue;
                }
                // What an earlier condition must be for `have` to imply it.
                let (text, suffixes, prefixes) = match have {
                    ValueTest::Exact {
                        value,
                        ignore_case: false,
                    } => {
                        look(Filed::Exact(value));
                        (value.as_str(), true, true)
                    }
                    ValueTest::Regex { pattern } => {
                        look(Filed::Regex(&pattern.text));
                        continue;
                    }
                    ValueTest::Suffix {
                        value,
                        ignore_case: false,
                    } => (value.as_str(), true, false),
                    ValueTest::Prefix {
                        value,
                        ignore_case: false,
                    } => (value.as_str(), false, true),
                    _ => continue,
                };
                if suffixes && kinds & 2 != 0 {
                    for (k, _) in text.char_indices() {
                        look(Filed::Suffix(&text[k..]));
                    }
                }
                if prefixes && kinds & 4 != 0 {
                    for (k, c) in text.char_indices() {
                        look(Filed::Prefix(&text[..k + c.len_utf8()]));
                    }
                }
            }
        }
        (best < limit).then_some(best)
    }
}

/// Earlier regex routes, in order, filed by the literal texts their matches start with.
#[derive(Default)]
struct Regexes<'a> {
    /// The route index and the regex, compiled the first time a path is probed with it, in
    /// route order (a regex's position here is what the budget counts). Most regexes are
    /// never probed (no literal route falls under their literals), and building a matcher
    /// is most of what a regex costs.
    list: Vec<(usize, Lazy<'a>)>,
    /// Positions in `list` by a literal every path the regex matches starts with (a regex
    /// has one or more).
    by_literal: HashMap<Vec<u8>, Vec<usize>>,
    /// Positions of regexes without such literals.
    open: Vec<usize>,
}

/// A regex that parses, and its matcher once built (`None` if it cannot be built).
struct Lazy<'a> {
    pattern: &'a str,
    compiled: std::cell::OnceCell<Option<Regex>>,
}

impl Lazy<'_> {
    fn regex(&self) -> Option<&Regex> {
        self.compiled
            .get_or_init(|| Regex::without_size_limit(self.pattern).ok())
            .as_ref()
    }
}

impl<'a> Regexes<'a> {
    /// Files the regex route `j`. Envoy ignores `case_sensitive` on a regex route, so the
    /// regex is read as written.
    /// `lits` is the regex's [`filing`] (a regex that does not parse is not filed).
    fn push(&mut self, j: usize, r: &'a str, lits: Option<Vec<Vec<u8>>>) {
        let at = self.list.len();
        self.list.push((
            j,
            Lazy {
                pattern: r,
                compiled: std::cell::OnceCell::new(),
            },
        ));
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
        emitted: &[Emitted],
        route: &matcher::Route,
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
                if covers_conditions(&emitted[*i].route, route)
                    && re.regex().is_some_and(|re| regex_covers(re, q, exact))
                {
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

/// How a regex route is filed: `None` when the regex does not parse (it is not filed), else
/// the texts every match starts with ([`crate::re2::literal_prefixes`]; `None` for none).
fn filing(r: &str) -> Option<Option<Vec<Vec<u8>>>> {
    crate::re2::literal_prefixes(r).ok()
}

/// The Envoy routes of `r` on a listener that routes every request as it is (no redirect
/// or `x-forwarded-proto` variant), decoded: what admission compares a new route with.
pub(crate) fn emitted(r: &Route) -> Vec<matcher::Route> {
    routes_of(
        r,
        Variants {
            security: SecurityModel::Secure,
            insecure: InsecureAction::Route,
            auth: false,
        },
    )
}

/// Whether one of the Envoy routes `a` (that takes every request it matches) matches every
/// request each of the routes `b` matches, as far as headers and query parameters go.
pub(crate) fn covers_emitted(a: &[matcher::Route], b: &[matcher::Route]) -> bool {
    a.iter()
        .filter(|x| takes_all(x))
        .any(|x| b.iter().all(|y| covers_conditions(x, y)))
}

/// Whether the route `a` matches every request `b` matches, as far as headers and query
/// parameters go (paths are compared by the caller): each condition of `a` is implied by a
/// condition of `b` on the same header (names without case) or query parameter.
pub(crate) fn covers_conditions(a: &matcher::Route, b: &matcher::Route) -> bool {
    a.headers.iter().all(|h| {
        b.headers
            .iter()
            .any(|c| c.name == h.name && implied(&h.test, h.invert, &c.test, c.invert))
    }) && a.query.iter().all(|q| {
        b.query
            .iter()
            .any(|c| c.name == q.name && implied(&q.test, false, &c.test, false))
    })
}

/// Whether every value satisfying `have` satisfies `need`, as Envoy tests values. An
/// inverted condition, or one this table does not model, implies and is implied by nothing
/// (the check then says nothing rather than something wrong).
fn implied(need: &ValueTest, need_invert: bool, have: &ValueTest, have_invert: bool) -> bool {
    use ValueTest as T;
    if need_invert || have_invert {
        return false;
    }
    match (need, have) {
        (T::Unsupported { .. }, _) | (_, T::Unsupported { .. }) => false,
        (T::Present { present: true }, T::Present { present: false }) => false,
        (T::Present { present: true }, _) => true,
        (T::Present { present: false }, T::Present { present: false }) => true,
        (T::Present { .. }, _) | (_, T::Present { .. }) => false,
        (T::Regex { pattern: n }, T::Regex { pattern: h }) => n.text == h.text,
        (T::Regex { .. }, _) | (_, T::Regex { .. }) => false,
        _ => string_implied(need, have),
    }
}

/// A string test as its kind (exact, prefix, suffix, contains), value and case.
fn string_parts(t: &ValueTest) -> Option<(u8, &str, bool)> {
    use ValueTest as T;
    Some(match t {
        T::Exact { value, ignore_case } => (0, value.as_str(), *ignore_case),
        T::Prefix { value, ignore_case } => (1, value.as_str(), *ignore_case),
        T::Suffix { value, ignore_case } => (2, value.as_str(), *ignore_case),
        T::Contains { value, ignore_case } => (3, value.as_str(), *ignore_case),
        _ => return None,
    })
}

/// [`implied`] between two string tests (exact, prefix, suffix, contains).
fn string_implied(need: &ValueTest, have: &ValueTest) -> bool {
    let (Some((nk, nv, nic)), Some((hk, hv, hic))) = (string_parts(need), string_parts(have))
    else {
        return false;
    };
    // A value matched without case may be written in any case; a need with case is not
    // implied by it.
    if hic && !nic {
        return false;
    }
    let (nv, hv): (Cow<'_, str>, Cow<'_, str>) = if nic {
        (
            Cow::Owned(nv.to_ascii_lowercase()),
            Cow::Owned(hv.to_ascii_lowercase()),
        )
    } else {
        (Cow::Borrowed(nv), Cow::Borrowed(hv))
    };
    match (nk, hk) {
        (0, 0) => nv == hv,
        (1, 0 | 1) => hv.starts_with(&*nv),
        (2, 0 | 2) => hv.ends_with(&*nv),
        (3, _) => hv.contains(&*nv),
        _ => false,
    }
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
    use crate::ir::{HeaderMatch, PathMatch, QueryMatch, RouteAction, RouteMatch, ValueMatch};

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
    fn covers_pairwise(emitted: &[Emitted], mut budget: usize) -> Vec<Option<(usize, Code)>> {
        let mut regexes: Vec<(usize, Regex)> = Vec::new();
        let mut out = Vec::new();
        for (j, e) in emitted.iter().enumerate() {
            let m = &e.route;
            let shadow = match &m.path {
                PathCond::Prefix(q) | PathCond::Exact(q) if !never_matches(m) => {
                    let is_exact = matches!(m.path, PathCond::Exact(_));
                    let earlier = |i: usize| -> bool {
                        let x = &emitted[i].route;
                        let (p, exact_path) = match &x.path {
                            PathCond::Prefix(p) => (p, false),
                            PathCond::Exact(p) => (p, true),
                            _ => return false,
                        };
                        let path_covers = if exact_path {
                            false
                        } else if x.case_sensitive {
                            m.case_sensitive && q.starts_with(p.as_str())
                        } else {
                            q.to_ascii_lowercase().starts_with(&p.to_ascii_lowercase())
                        };
                        takes_all(x) && path_covers && covers_conditions(x, m)
                    };
                    let same_exact = |i: usize| -> bool {
                        let x = &emitted[i].route;
                        is_exact
                            && takes_all(x)
                            && match &x.path {
                                PathCond::Exact(p) if x.case_sensitive => {
                                    m.case_sensitive && p == q
                                }
                                PathCond::Exact(p) => p.eq_ignore_ascii_case(q),
                                _ => false,
                            }
                            && covers_conditions(x, m)
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
                                if covers_conditions(&emitted[*i].route, m)
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
                _ => None,
            };
            out.push(shadow);
            if let PathCond::Regex(r) = &m.path {
                if takes_all(m) {
                    if let Ok(re) = Regex::without_size_limit(&r.text) {
                        regexes.push((j, re));
                    }
                }
            }
        }
        out
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
                let case_sensitive = rng.below(4) != 0;
                r.matcher = RouteMatch {
                    path,
                    case_sensitive,
                    headers,
                    query_parameters,
                };
                r.sources[0].name = format!("r{j}").into();
                if let RouteAction::Forward(f) = &mut r.action {
                    f.clusters[0].case_sensitive = case_sensitive;
                    // Sometimes a canary group: one Envoy route per member, each with its
                    // share and its own path case.
                    if rng.below(5) == 0 {
                        let mut other = f.clusters[0].clone();
                        other.case_sensitive = rng.below(2) == 0;
                        f.clusters[0].weight = 50;
                        other.weight = 50;
                        f.clusters.push(other);
                    }
                }
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

    /// The variants a listener may serve a virtual host in.
    fn variants(rng: &mut Rng) -> Variants {
        let security = [
            SecurityModel::Secure,
            SecurityModel::Xfp,
            SecurityModel::Insecure,
        ][rng.below(3)];
        let insecure = [
            InsecureAction::Route,
            InsecureAction::Redirect,
            InsecureAction::Reject,
        ][rng.below(3)];
        Variants {
            security,
            insecure,
            auth: false,
        }
    }

    /// The indexed check gives exactly the findings of comparing every pair, on the Envoy
    /// routes of random tables (`CHECK_TABLES` tables, 1,000 by default; `CHECK_SEED` to
    /// change the seed) in random listener variants, with the regex budget unbounded and
    /// nearly spent.
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
            let v = variants(&mut rng);
            let emitted = emitted_in(&routes.iter().collect::<Vec<_>>(), v);
            for budget in [REGEX_PAIR_BUDGET, t % 13] {
                let want = covers_pairwise(&emitted, budget);
                let got = earliest_covers(&emitted, budget);
                assert_eq!(
                    got,
                    want,
                    "table {t} (seed {seed}), budget {budget}: {:#?}",
                    emitted.iter().map(|e| &e.route).collect::<Vec<_>>()
                );
                if budget == REGEX_PAIR_BUDGET {
                    shadowed += want
                        .iter()
                        .filter(|d| matches!(d, Some((_, Code::ShadowedRoute))))
                        .count();
                    by_regex += want
                        .iter()
                        .filter(|d| matches!(d, Some((_, Code::ShadowedByRegex))))
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

    /// A request that satisfies every condition of `r` as the tracer reads them, when one
    /// is easy to write (no regex or inverted condition).
    fn request_for(r: &matcher::Route) -> Option<matcher::Routed<'static>> {
        let path = match &r.path {
            PathCond::Prefix(q) => format!("{q}zz"),
            PathCond::Exact(q) => q.clone(),
            _ => return None,
        };
        let value = |t: &ValueTest| -> Option<Option<String>> {
            Some(match t {
                ValueTest::Exact { value, .. } => Some(value.clone()),
                ValueTest::Prefix { value, .. } => Some(format!("{value}z")),
                ValueTest::Suffix { value, .. } => Some(format!("z{value}")),
                ValueTest::Contains { value, .. } => Some(format!("z{value}z")),
                ValueTest::Present { present } => present.then(|| "1".to_owned()),
                _ => return None,
            })
        };
        let (mut authority, mut method) = ("x.example", "GET");
        let mut headers = Vec::new();
        for h in &r.headers {
            if h.invert {
                return None;
            }
            let Some(v) = value(&h.test)? else {
                continue;
            };
            match h.name.as_str() {
                ":authority" => authority = Box::leak(v.into_boxed_str()),
                ":method" => method = Box::leak(v.into_boxed_str()),
                _ => headers.push((h.name.clone(), v)),
            }
        }
        let mut query = Vec::new();
        for q in &r.query {
            if let Some(v) = value(&q.test)? {
                query.push((q.name.clone(), v));
            }
        }
        Some(matcher::Routed {
            path,
            authority,
            method,
            headers,
            query,
        })
    }

    /// What the check calls covered, the tracer agrees with: for every finding on random
    /// tables, a request that the shadowed route matches is matched by the route that wins
    /// (the check and the tracer read the same decoded routes with the same rules).
    #[test]
    fn the_tracer_agrees_that_the_winner_takes_the_shadowed_routes_requests() {
        let template = template();
        let mut rng = Rng(29);
        let mut confirmed = 0;
        for t in 0..400 {
            let n = 1 + rng.below(30);
            let routes = table(&mut rng, &template, n);
            let v = variants(&mut rng);
            let emitted = emitted_in(&routes.iter().collect::<Vec<_>>(), v);
            for (j, cover) in earliest_covers(&emitted, REGEX_PAIR_BUDGET)
                .into_iter()
                .enumerate()
            {
                let Some((i, _)) = cover else { continue };
                let (winner, shadowed) = (&emitted[i].route, &emitted[j].route);
                let Some(req) = request_for(shadowed) else {
                    continue;
                };
                if shadowed.first_miss(&req, 0).is_some() {
                    continue; // conditions that contradict each other
                }
                assert_eq!(
                    winner.first_miss(&req, 0),
                    None,
                    "table {t}: route {i} {winner:#?} was said to cover route {j} {shadowed:#?}, which takes {req:#?}"
                );
                confirmed += 1;
            }
        }
        assert!(confirmed > 500, "only {confirmed} findings confirmed");
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
        let v = Variants {
            security: SecurityModel::Secure,
            insecure: InsecureAction::Route,
            auth: false,
        };
        shadowing(&refs, &[v], &mut diags);
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

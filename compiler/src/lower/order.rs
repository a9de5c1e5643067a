//! Route order: Emissary's ordering key and the sort of a virtual host's routes.

use crate::ir::{HeaderMatch, QueryMatch, Route, ValueMatch};

/// Sorts a virtual host's routes into Envoy's evaluation order: [`order_key`] descending,
/// and routes whose keys tie by name, so the order never depends on the input's.
pub(crate) fn sort_routes(routes: &mut [Route]) {
    let shared: &[Route] = routes;
    // Routes whose keys and names tie (none: a name is a hash of the match) keep their
    // order, so that any way of sorting gives the same.
    let before = |a: &Keyed, b: &Keyed| {
        a.0.cmp(&b.0)
            .then_with(|| shared[a.1].name.cmp(&shared[b.1].name))
            .then(a.1.cmp(&b.1))
    };
    // A large table is keyed and sorted in runs on all cores, and the runs merged.
    let run_len = if shared.len() < crate::par::PARALLEL_MIN_ROUTES {
        shared.len()
    } else {
        shared.len().div_ceil(crate::par::threads())
    };
    let runs = crate::par::runs_at(shared, run_len, |at, run| {
        let mut keyed: Vec<Keyed> = (at..at + run.len())
            .map(|i| (std::cmp::Reverse(order_key_ref(&shared[i])), i))
            .collect();
        keyed.sort_unstable_by(before);
        keyed
    });
    let mut order: Vec<usize> = Vec::with_capacity(shared.len());
    merge_runs(runs, before, &mut order);
    permute(routes, &mut order);
}

/// A route's key, and its place in the table.
type Keyed<'r> = (std::cmp::Reverse<RefKey<'r>>, usize);

/// [`order_key_ref`]'s key.
type RefKey<'r> = (
    i64,
    usize,
    usize,
    usize,
    &'r str,
    &'r str,
    Conds<'r>,
    Conds<'r>,
);

/// The places of sorted runs of keyed items, merged in order into `out`.
pub(super) fn merge_runs<K>(
    mut runs: Vec<Vec<(K, usize)>>,
    before: impl Fn(&(K, usize), &(K, usize)) -> std::cmp::Ordering,
    out: &mut Vec<usize>,
) {
    // Pairwise: one run per core, so one or two rounds.
    while runs.len() > 1 {
        let mut merged = Vec::with_capacity(runs.len().div_ceil(2));
        let mut it = runs.into_iter();
        while let Some(a) = it.next() {
            let Some(b) = it.next() else {
                merged.push(a);
                break;
            };
            let mut m = Vec::with_capacity(a.len() + b.len());
            let (mut a, mut b) = (a.into_iter().peekable(), b.into_iter().peekable());
            while let (Some(x), Some(y)) = (a.peek(), b.peek()) {
                let take_a = before(x, y) != std::cmp::Ordering::Greater;
                m.extend(if take_a { a.next() } else { b.next() });
            }
            m.extend(a);
            m.extend(b);
            merged.push(m);
        }
        runs = merged;
    }
    out.extend(runs.into_iter().flatten().map(|(_, i)| i));
}

/// Puts `items[order[k]]` at `k` for every `k`, in place (a second vector of routes would
/// be one more copy of a virtual host's routes at the compiler's peak). `order` must be a
/// permutation; it is used up.
pub(super) fn permute<T>(items: &mut [T], order: &mut [usize]) {
    const DONE: usize = usize::MAX;
    for start in 0..order.len() {
        // Each cycle of the permutation: every position takes the item of the next one.
        let mut at = start;
        while order[at] != DONE {
            let from = order[at];
            order[at] = DONE;
            if from == start {
                break;
            }
            items.swap(at, from);
            at = from;
        }
    }
}

/// The key routes are sorted by, descending.
pub type OrderKey = (
    i64,
    usize,
    usize,
    usize,
    String,
    String,
    Vec<String>,
    Vec<String>,
);

/// Emissary's ordering key: `[precedence, prefix length, header length, query length,
/// prefix, method, headers..., query...]`, sorted descending. Headers count
/// `len(name) + len(value or "*") + 1 for a regex`; `:authority` and `:method` count as headers,
/// and each header and query condition is keyed as `name-value`. Lengths count characters,
/// as Python's do.
pub fn order_key(r: &Route) -> OrderKey {
    let (p, pl, hl, ql, path, method, headers, query) = order_key_ref(r);
    let texts = |c: Conds| {
        c.pairs()
            .map(|(n, v)| format!("{n}-{}", vtext(v)))
            .collect()
    };
    (
        p,
        pl,
        hl,
        ql,
        path.to_string(),
        method.to_string(),
        texts(headers),
        texts(query),
    )
}

/// [`order_key`] borrowing the route's texts: the same order, no copies (for sorting many
/// routes at once).
pub(crate) fn order_key_ref(r: &Route) -> RefKey<'_> {
    let m = &r.matcher;
    let chars = |s: &str| s.chars().count();
    let vlen = |v: &ValueMatch| match v {
        ValueMatch::Exact(s) | ValueMatch::Host(s) => chars(s),
        ValueMatch::Regex(s) => chars(s) + 1,
        ValueMatch::Present => 1,
    };
    // A redirect's query conditions rank it though Emissary leaves them out of its match.
    let query = Conds::Query(&m.query_parameters, &r.unmatched_query);
    let header_len = m
        .headers
        .iter()
        .map(|h| chars(&h.name) + vlen(&h.value))
        .sum();
    let query_len = query.pairs().map(|(n, v)| chars(n) + vlen(v)).sum();
    let method = m
        .headers
        .iter()
        .find(|h| h.name == ":method")
        .map_or("GET", |h| vtext(&h.value));
    (
        r.precedence,
        chars(m.path.text()),
        header_len,
        query_len,
        m.path.text(),
        method,
        Conds::Headers(&m.headers),
        query,
    )
}

/// A condition's value as it is keyed: its text, `*` for presence.
fn vtext(v: &ValueMatch) -> &str {
    match v {
        ValueMatch::Exact(s) | ValueMatch::Regex(s) | ValueMatch::Host(s) => s,
        ValueMatch::Present => "*",
    }
}

/// A route's header or query conditions, ordered as [`OrderKey`] orders their `name-value`
/// texts (as lists of strings: element by element, each byte by byte) without making them.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Conds<'a> {
    Headers(&'a [HeaderMatch]),
    /// The matched query conditions, then those a redirect leaves out of its match.
    Query(&'a [QueryMatch], &'a [QueryMatch]),
}

impl<'a> Conds<'a> {
    fn pairs(self) -> impl Iterator<Item = (&'a str, &'a ValueMatch)> {
        let (h, q1, q2): (&[HeaderMatch], &[QueryMatch], &[QueryMatch]) = match self {
            Conds::Headers(h) => (h, &[], &[]),
            Conds::Query(a, b) => (&[], a, b),
        };
        h.iter()
            .map(|h| (h.name.as_str(), &h.value))
            .chain(q1.iter().chain(q2).map(|q| (q.name.as_str(), &q.value)))
    }

    /// The bytes of each `name-value` text.
    fn texts(self) -> impl Iterator<Item = impl Iterator<Item = u8> + 'a> {
        self.pairs().map(|(n, v)| {
            n.bytes()
                .chain(std::iter::once(b'-'))
                .chain(vtext(v).bytes())
        })
    }
}

impl Ord for Conds<'_> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        let mut a = self.texts();
        let mut b = other.texts();
        loop {
            match (a.next(), b.next()) {
                (None, None) => return std::cmp::Ordering::Equal,
                (None, Some(_)) => return std::cmp::Ordering::Less,
                (Some(_), None) => return std::cmp::Ordering::Greater,
                (Some(x), Some(y)) => match x.cmp(y) {
                    std::cmp::Ordering::Equal => {}
                    o => return o,
                },
            }
        }
    }
}

impl PartialOrd for Conds<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Conds<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}

impl Eq for Conds<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Conds` orders as the lists of `name-value` strings it stands for, on lists that
    /// differ in a name, a value, where the `-` falls, presence and length.
    #[test]
    fn conditions_order_as_their_texts() {
        let names = ["a", "a-b", "ab", ":authority", "x-é"];
        let values = [
            ValueMatch::Exact("b".into()),
            ValueMatch::Exact("".into()),
            ValueMatch::Regex("b-c".into()),
            ValueMatch::Present,
            ValueMatch::Host("*.a".into()),
        ];
        let mut singles = Vec::new();
        for n in names {
            for v in &values {
                singles.push(HeaderMatch {
                    name: n.into(),
                    value: v.clone(),
                });
            }
        }
        let mut lists: Vec<Vec<HeaderMatch>> = vec![Vec::new()];
        for (i, a) in singles.iter().enumerate() {
            lists.push(vec![a.clone()]);
            let b = &singles[(i * 7 + 3) % singles.len()];
            lists.push(vec![a.clone(), b.clone()]);
        }
        let texts = |l: &[HeaderMatch]| -> Vec<String> {
            l.iter()
                .map(|h| format!("{}-{}", h.name, vtext(&h.value)))
                .collect()
        };
        for a in &lists {
            for b in &lists {
                assert_eq!(
                    Conds::Headers(a).cmp(&Conds::Headers(b)),
                    texts(a).cmp(&texts(b)),
                    "{a:?} vs {b:?}"
                );
            }
        }
        // Query conditions: the matched ones, then the unmatched ones, as one list.
        let q = |n: &str| QueryMatch {
            name: n.into(),
            value: ValueMatch::Present,
        };
        let (x, y) = ([q("a")], [q("b")]);
        assert!(Conds::Query(&x, &y) > Conds::Query(&x, &[]));
        assert!(Conds::Query(&x, &y) < Conds::Query(&y, &[]));
        assert_eq!(Conds::Query(&x, &y), Conds::Query(&[], &[q("a"), q("b")]));
    }
}

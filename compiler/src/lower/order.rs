//! Route order: Emissary's ordering key and the sort of a virtual host's routes.

use crate::ir::{Route, ValueMatch};

/// Sorts a virtual host's routes into Envoy's evaluation order: [`order_key`] descending,
/// and routes whose keys tie by name, so the order never depends on the input's.
pub(crate) fn sort_routes(routes: &mut [Route]) {
    let mut keyed: Vec<_> = routes
        .iter()
        .enumerate()
        .map(|(i, r)| (std::cmp::Reverse(order_key_ref(r)), i))
        .collect();
    keyed.sort_unstable_by(|a, b| {
        a.0.cmp(&b.0)
            .then_with(|| routes[a.1].name.cmp(&routes[b.1].name))
    });
    let mut order: Vec<usize> = keyed.into_iter().map(|(_, i)| i).collect();
    permute(routes, &mut order);
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
    (
        p,
        pl,
        hl,
        ql,
        path.to_string(),
        method.to_string(),
        headers,
        query,
    )
}

/// [`order_key`] borrowing the route's texts where it can: the same order, fewer copies
/// (for sorting many routes at once).
pub(crate) fn order_key_ref(
    r: &Route,
) -> (
    i64,
    usize,
    usize,
    usize,
    &str,
    &str,
    Vec<String>,
    Vec<String>,
) {
    let m = &r.matcher;
    let chars = |s: &str| s.chars().count();
    let vlen = |v: &ValueMatch| match v {
        ValueMatch::Exact(s) | ValueMatch::Host(s) => chars(s),
        ValueMatch::Regex(s) => chars(s) + 1,
        ValueMatch::Present => 1,
    };
    fn vtext(v: &ValueMatch) -> &str {
        match v {
            ValueMatch::Exact(s) | ValueMatch::Regex(s) | ValueMatch::Host(s) => s,
            ValueMatch::Present => "*",
        }
    }
    // A redirect's query conditions rank it though Emissary leaves them out of its match.
    let query = || m.query_parameters.iter().chain(&r.unmatched_query);
    let header_len = m
        .headers
        .iter()
        .map(|h| chars(&h.name) + vlen(&h.value))
        .sum();
    let query_len = query().map(|q| chars(&q.name) + vlen(&q.value)).sum();
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
        m.headers
            .iter()
            .map(|h| format!("{}-{}", h.name, vtext(&h.value)))
            .collect(),
        query()
            .map(|q| format!("{}-{}", q.name, vtext(&q.value)))
            .collect(),
    )
}

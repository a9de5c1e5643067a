//! Grouping Mappings that share a match into one route each, and canary weights.

use std::sync::{Mutex, PoisonError};

use foldhash::{HashMap, HashMapExt, HashSet};

use crate::diag::{Code, Diagnostic};
use crate::ir::{
    Forward, HeaderMatch, HeaderValue, MemberSettings, PathMatch, QueryMatch, Redirect, Route,
    RouteAction, RouteMatch, RouteSettings, Settings, Shadow, SourceRef, WeightedCluster,
};

use super::cluster::Fnv;
use super::cluster::Sends;
use super::mapping::Mapping;
use super::{source_ref, Context, Cx, Lowered};

/// The match a group shares. Emissary's group key is the method, the prefix text, the
/// headers (`:authority` and `:method` among them), the query conditions and the
/// precedence: not `case_sensitive`, `prefix_exact` or `prefix_regex`, which the members
/// take from the group.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct MatchKey {
    pub path: String,
    /// In Emissary's order: exact headers by name, regex headers by name, `:authority`,
    /// `:method`.
    pub headers: Vec<HeaderMatch>,
    pub query_parameters: Vec<QueryMatch>,
}

/// What makes two Mappings members of one group.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct GroupKey {
    pub matcher: MatchKey,
    pub precedence: i64,
}

/// The match of a Mapping as Emissary groups it. It does not depend on the virtual host:
/// every Mapping keeps its own `:authority` condition, whatever Host it joins.
pub(crate) fn match_of(mp: &Mapping) -> MatchKey {
    let extra = mp.authority.is_some() as usize + mp.method.is_some() as usize;
    let mut headers = Vec::with_capacity(mp.headers.len() + extra);
    headers.extend(mp.headers.iter().cloned());
    if let Some(a) = &mp.authority {
        headers.push(HeaderMatch {
            name: ":authority".into(),
            value: a.clone(),
        });
    }
    if let Some(m) = &mp.method {
        headers.push(HeaderMatch {
            name: ":method".into(),
            value: m.clone(),
        });
    }
    MatchKey {
        path: mp.path.text().to_string(),
        headers,
        query_parameters: mp.query.clone(),
    }
}

/// A Mapping a table of routes is built from: the table's own when no other table has it
/// (freed as its group's route is built), else lent by the list of all Mappings.
pub(super) enum Member<'s, 'a> {
    Owned(Box<Lowered<'a>>),
    Lent(&'s Lowered<'a>),
}

impl<'a> std::ops::Deref for Member<'_, 'a> {
    type Target = Lowered<'a>;
    fn deref(&self) -> &Lowered<'a> {
        match self {
            Member::Owned(l) => l,
            Member::Lent(l) => l,
        }
    }
}

/// A group's key and its Mappings, in the order Emissary adds them.
type Group<'s, 'a> = (Box<GroupKey>, Vec<Member<'s, 'a>>);

/// No group: the end of a chain in [`file_groups`]' index.
const NONE: usize = usize::MAX;

/// A table's routes, the Mappings whose clusters they send to (in the order they were used),
/// and what is kept of the table's own Mappings that they send to.
pub(super) struct Built<'a> {
    pub routes: Vec<Route>,
    pub used: Vec<usize>,
    pub sends: Vec<Sends<'a>>,
}

/// The routes of one virtual host. Each group's own Mappings are freed once its route is
/// built, the cluster of each kept if the route sends to it: so the Mappings and the routes
/// made of them are not all held at once (they were lowering's peak). Without `clusters`,
/// none is made (`sends` is empty). With `parallel`, a large table's routes are built on all
/// cores.
pub(super) fn build_routes<'a>(
    members: Vec<Member<'_, 'a>>,
    ctx: &Context,
    clusters: bool,
    parallel: bool,
    cx: &mut Cx,
) -> Built<'a> {
    // Each Mapping's key, and a hash of its match, on all cores for a large table. Boxed:
    // each is freed as its route takes it, rather than all with the list at the end (2 MB
    // beside the routes at 20,000 groups).
    let hashes = foldhash::fast::RandomState::default();
    let keys: Vec<(Box<GroupKey>, u64)> = crate::par::runs(
        &members,
        crate::par::run_len(members.len(), super::PARALLEL_MIN_MAPPINGS),
        |run| {
            run.iter()
                .map(|mp| {
                    let matcher = match_of(mp);
                    let hash = std::hash::BuildHasher::hash_one(&hashes, &matcher);
                    let key = GroupKey {
                        matcher,
                        precedence: mp.precedence,
                    };
                    (Box::new(key), hash)
                })
                .collect::<Vec<_>>()
        },
    )
    .into_iter()
    .flatten()
    .collect();
    let Filed {
        first_of_group,
        sizes,
        group_of,
        same_match,
    } = file_groups(&keys);
    let mut members_of: Vec<Vec<Member>> = sizes.iter().map(|&n| Vec::with_capacity(n)).collect();
    drop(sizes);
    let n = members.len();
    for (m, g) in members.into_iter().zip(group_of) {
        members_of[g].push(m);
    }
    // A group's key is its first member's, moved and never cloned (`first_of_group` rises).
    let mut firsts = first_of_group.iter().copied().peekable();
    let group_keys: Vec<Box<GroupKey>> = keys
        .into_iter()
        .enumerate()
        .filter_map(|(i, (key, _))| firsts.next_if_eq(&i).map(|_| key))
        .collect();
    drop(first_of_group);
    let groups: Vec<Group> = group_keys
        .into_iter()
        .zip(members_of)
        .map(|(key, mut group)| {
            sort_members(&mut group);
            (key, group)
        })
        .collect();
    for same in &same_match {
        report_same_match(&groups, same, cx);
    }
    drop(same_match);

    // The groups' routes, on all cores when the table is large and the only one being built
    // (`parallel`): runs of consecutive groups, put back in order.
    let run_len = if parallel {
        crate::par::run_len(groups.len(), super::PARALLEL_MIN_MAPPINGS)
    } else {
        groups.len()
    };
    let mut groups = groups.into_iter();
    let mut runs: Vec<Mutex<Vec<Group>>> = Vec::new();
    loop {
        let run: Vec<_> = groups.by_ref().take(run_len.max(1)).collect();
        if run.is_empty() {
            break;
        }
        runs.push(Mutex::new(run));
    }
    let known_namespaces = cx.known_namespaces;
    let done = crate::par::runs(&runs, 1, |runs| {
        runs.iter()
            .map(|run| {
                let mut cx = Cx {
                    diags: Vec::new(),
                    known_namespaces,
                };
                let groups =
                    std::mem::take(&mut *run.lock().unwrap_or_else(PoisonError::into_inner));
                // The run's Mappings are freed as its routes are made: on threads that stay
                // (`par`), their pages take the next runs' routes, and nothing is given back
                // here (a pass over the heap per run cost more than the rest of the run).
                let built = build_run(groups, ctx, clusters, &mut cx);
                (built, cx.diags)
            })
            .collect::<Vec<_>>()
    });
    drop(runs);
    let mut built = Built {
        routes: Vec::with_capacity(done.iter().flatten().map(|(b, _)| b.routes.len()).sum()),
        used: Vec::with_capacity(n),
        sends: Vec::new(),
    };
    for (mut b, mut diags) in done.into_iter().flatten() {
        built.routes.append(&mut b.routes);
        built.used.append(&mut b.used);
        built.sends.append(&mut b.sends);
        cx.diags.append(&mut diags);
    }
    built
}

/// Mappings filed into groups ([`file_groups`]).
struct Filed {
    /// Each group's first member, in first-seen order (so rising).
    first_of_group: Vec<usize>,
    /// Each group's number of members.
    sizes: Vec<usize>,
    /// Each Mapping's group.
    group_of: Vec<usize>,
    /// The sets of two or more groups with the same match (and other precedences), each in
    /// first-seen order.
    same_match: Vec<Vec<usize>>,
}

/// Files Mappings, given by their keys and a hash of each key's match, into groups of equal
/// keys, in first-seen order. The index files a group under the hash of its match, and the
/// groups whose matches have that hash are chained from it: one lookup per Mapping finds
/// its group, and the groups that share a match and differ by precedence (canaries that
/// never take traffic) come without a second index.
fn file_groups(keys: &[(Box<GroupKey>, u64)]) -> Filed {
    let mut first_of_group: Vec<usize> = Vec::new();
    let mut sizes: Vec<usize> = Vec::new();
    let mut next: Vec<usize> = Vec::new();
    let mut heads: Vec<usize> = Vec::new();
    let mut group_of: Vec<usize> = Vec::with_capacity(keys.len());
    let mut index: HashMap<u64, usize> = HashMap::with_capacity(keys.len());
    for (i, (key, hash)) in keys.iter().enumerate() {
        let mut last = None;
        if let Some(&head) = index.get(hash) {
            let mut g = head;
            loop {
                if *keys[first_of_group[g]].0 == **key {
                    break;
                }
                if next[g] == NONE {
                    last = Some(g);
                    break;
                }
                g = next[g];
            }
            if last.is_none() {
                sizes[g] += 1;
                group_of.push(g);
                continue;
            }
        }
        // A new group, first seen here.
        let g = first_of_group.len();
        first_of_group.push(i);
        sizes.push(1);
        next.push(NONE);
        group_of.push(g);
        match last {
            Some(prev) => next[prev] = g,
            None => {
                index.insert(*hash, g);
                heads.push(g);
            }
        }
    }
    drop(index);
    let mut same_match = Vec::new();
    // Only a hash with two groups or more can hold groups with the same match.
    for &head in heads.iter().filter(|&&h| next[h] != NONE) {
        let mut chain = vec![head];
        let mut g = head;
        while next[g] != NONE {
            g = next[g];
            chain.push(g);
        }
        // Groups of one hash with the same match (nearly always all of them).
        while let Some(&first) = chain.first() {
            let matcher = &keys[first_of_group[first]].0.matcher;
            let (same, rest): (Vec<usize>, Vec<usize>) = chain
                .iter()
                .partition(|&&g| keys[first_of_group[g]].0.matcher == *matcher);
            if same.len() > 1 {
                same_match.push(same);
            }
            chain = rest;
        }
    }
    Filed {
        first_of_group,
        sizes,
        group_of,
        same_match,
    }
}

/// The routes of consecutive groups of one table (see [`build_routes`]).
fn build_run<'a>(
    groups: Vec<Group<'_, 'a>>,
    ctx: &Context,
    clusters: bool,
    cx: &mut Cx,
) -> Built<'a> {
    let mut built = Built {
        routes: Vec::with_capacity(groups.len()),
        used: Vec::new(),
        sends: Vec::new(),
    };
    for (key, group) in groups {
        let mut used: Vec<&Lowered> = Vec::new();
        let route = build_group(
            *key,
            group.iter().map(|m| &**m).collect(),
            &ctx.settings,
            cx,
            &mut used,
        );
        let first_used = built.used.len();
        built.used.extend(used.iter().map(|m| m.index));
        let used = &built.used[first_used..];
        // The group's own Mappings are freed here, what is needed of them kept.
        for m in group {
            match m {
                Member::Owned(l) if clusters && used.contains(&l.index) => {
                    built.sends.push(Sends::of(&l, ctx));
                }
                _ => {}
            }
        }
        if let Some(route) = route {
            built.routes.push(route);
        }
    }
    built
}

/// A group's members in the order Emissary adds them to the group: by resource key,
/// `name.namespace`. That order decides the group's first member (whose path flags and
/// core keys the others must match) and the last one to set each group setting; it never
/// depends on the order of the input files.
pub(crate) fn sort_members<'a, M: std::ops::Deref<Target = Lowered<'a>>>(group: &mut [M]) {
    group.sort_by(|a, b| {
        let key = |m: &Lowered| {
            let id = &m.r.id;
            id.name
                .bytes()
                .chain(std::iter::once(b'.'))
                .chain(id.namespace.bytes())
                .collect::<Vec<u8>>()
        };
        key(a).cmp(&key(b)).then_with(|| a.r.id.cmp(&b.r.id))
    });
}

/// The route of one group of Mappings (same match, same precedence): the group's path
/// flags, canary weights, each member's own settings, the group's settings and the shadow.
/// `None` when the group has no primary member. The members whose clusters the route sends
/// to are added to `used`.
pub(crate) fn build_group<'m, 'a>(
    key: GroupKey,
    mut group: Vec<&'m Lowered<'a>>,
    settings: &Settings,
    cx: &mut Cx,
    used: &mut Vec<&'m Lowered<'a>>,
) -> Option<Route> {
    sort_members(&mut group);
    let (shadows, mut primaries): (Vec<&Lowered>, Vec<&Lowered>) =
        group.iter().partition(|m| m.shadow);
    if primaries.is_empty() {
        for s in &shadows {
            cx.diags.push(
                Diagnostic::at(
                    Code::ShadowOnly,
                    s.r.span,
                    format!("shadow Mapping `{}` has no primary Mapping with the same match, so it produces no route", s.r.id.name),
                )
                .with_object(&s.r.id),
            );
        }
        return None;
    }
    for extra in shadows.iter().skip(1) {
        cx.diags.push(
            Diagnostic::at(
                Code::CanaryMismatch,
                extra.r.span,
                format!(
                    "only one shadow per group: `{}` is ignored in favour of `{}`",
                    extra.r.id.name, shadows[0].r.id.name
                ),
            )
            .with_object(&extra.r.id)
            .with_related(shadows[0].r.span, "the shadow that is used"),
        );
    }
    // Core keys must agree with the first member: Emissary refuses a newcomer that sets one
    // the group does not have, or has with another value.
    let first = primaries[0];
    primaries.retain(|m| {
        if std::ptr::eq(*m, first) {
            return true;
        }
        let bad = m.core.iter().find(|(k, v)| first.core.get(k) != Some(v)).map(|(k, _)| k);
        let bad = bad.or_else(|| (m.redirect.is_some() != first.redirect.is_some()).then_some("host_redirect"));
        if let Some(k) = bad {
            let code = if k == "bypass_auth" {
                Code::BypassAuthDiffers
            } else {
                Code::CanaryMismatch
            };
            cx.diags.push(
                Diagnostic::at(
                    code,
                    m.key_span(k),
                    format!("`{k}` of `{}` differs from `{}` in the same canary group, so it cannot join the group", m.r.id.name, first.r.id.name),
                )
                .with_object(&m.r.id)
                .with_field(m.r.path(k))
                .with_related(first.r.span, "the group's first member"),
            );
            return false;
        }
        true
    });

    // The group's path kind is its first member's; members that leave `prefix_exact` and
    // `prefix_regex` out take it. A regex ignores `case_sensitive` in Envoy.
    let regex = matches!(first.path, PathMatch::Regex(_));
    let path = match &first.path {
        PathMatch::Prefix(_) => PathMatch::Prefix(key.matcher.path),
        PathMatch::Exact(_) => PathMatch::Exact(key.matcher.path),
        PathMatch::Regex(_) => PathMatch::Regex(key.matcher.path),
    };
    // Emissary flattens `case_sensitive` into the group: the last member that sets it.
    let group_case = primaries
        .iter()
        .rev()
        .find_map(|m| m.case_sensitive)
        .unwrap_or(true)
        || regex;
    for m in &primaries[1..] {
        let inherits_kind = !std::ptr::eq(*m, first)
            && !matches!(first.path, PathMatch::Prefix(_))
            && !m.core.contains_key("prefix_exact")
            && !m.core.contains_key("prefix_regex");
        let inherits_case = m.case_sensitive.is_none() && !group_case;
        if inherits_kind || inherits_case {
            let what = if inherits_kind {
                if regex {
                    "prefix_regex"
                } else {
                    "prefix_exact"
                }
            } else {
                "case_sensitive"
            };
            cx.diags.push(
                Diagnostic::at(
                    Code::GroupFlagsInherited,
                    m.path_span,
                    format!(
                        "`{}` leaves `{what}` out and shares its match with `{}`, so Emissary matches its path with the group's `{what}: {}`",
                        m.r.id.name,
                        first.r.id.name,
                        if inherits_kind { "true" } else { "false" }
                    ),
                )
                .with_object(&m.r.id)
                .with_related(first.r.span, "the group's first member"),
            );
        }
    }

    // In the order the route lists them: weighted members first.
    let sources: Vec<SourceRef> = primaries
        .iter()
        .filter(|m| m.weight.is_some())
        .chain(primaries.iter().filter(|m| m.weight.is_none()))
        .chain(shadows.first())
        .map(|m| source_ref(m.r))
        .collect();
    let mut matcher = RouteMatch {
        path,
        case_sensitive: group_case,
        headers: key.matcher.headers,
        query_parameters: key.matcher.query_parameters,
    };
    let mut unmatched_query = Vec::new();

    let action = if let Some(redirect) = &first.redirect {
        // Emissary's group takes its query conditions from its proxying members only, so a
        // redirect's are left out of the match (they still rank it).
        unmatched_query = std::mem::take(&mut matcher.query_parameters);
        RouteAction::Redirect(Box::new(Redirect {
            host: first.service.host.clone(),
            port: first.service.port,
            https: first.service.https,
            path: redirect.path.clone(),
            response_code: redirect.response_code,
        }))
    } else {
        let rs = group_settings(&primaries, settings, cx);
        rewrites_differ(&primaries, cx);
        // Emissary's routes list the weighted members first, then the others, each in the
        // order they joined.
        let mut routed = primaries.clone();
        routed.sort_by_key(|m| m.weight.is_none());
        let weights = weights(&routed, cx);
        let mut wc: Vec<WeightedCluster> = Vec::with_capacity(routed.len());
        for (m, w) in routed.iter().zip(&weights) {
            used.push(*m);
            let mut member = m.member.clone();
            member.timeout_ms = Some(member.timeout_ms.unwrap_or(settings.default_timeout_ms));
            wc.push(WeightedCluster {
                cluster: m.cluster_name.clone(),
                weight: *w,
                source: source_ref(m.r),
                case_sensitive: m.case_sensitive.unwrap_or(group_case) || regex,
                settings: member,
            });
        }
        let shadow = shadows.first().map(|s| Shadow {
            cluster: {
                used.push(*s);
                s.cluster_name.clone()
            },
            percent: s.weight.unwrap_or(100).min(100),
            source: source_ref(s.r),
        });
        RouteAction::Forward(Box::new(Forward {
            clusters: wc,
            shadow: shadow.map(Box::new),
            settings: rs.into(),
        }))
    };
    if let RouteAction::Redirect(_) = &action {
        if let Some(c) = first.case_sensitive {
            matcher.case_sensitive = c || regex;
        }
    }
    let name = route_name(&matcher, key.precedence);
    Some(Route {
        name,
        matcher,
        action,
        precedence: key.precedence,
        sources,
        unmatched_query,
    })
}

/// The settings of a group's route as Emissary flattens them: each comes from the last
/// member that sets it (`regex_rewrite`, which every Mapping carries, from the last
/// member), headers to add are merged, and the Module's CORS applies where no member sets
/// one. Members that set a value the route does not take are reported.
fn group_settings(primaries: &[&Lowered], settings: &Settings, cx: &mut Cx) -> RouteSettings {
    fn last<T: Clone>(ms: &[&Lowered], get: impl Fn(&RouteSettings) -> Option<&T>) -> Option<T> {
        ms.iter().rev().find_map(|m| get(&m.route)).cloned()
    }
    let nonempty = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
    let merge = |get: fn(&RouteSettings) -> &Vec<HeaderValue>| {
        let mut out: Vec<HeaderValue> = Vec::new();
        for m in primaries {
            for h in get(&m.route) {
                match out.iter_mut().find(|o| o.name == h.name) {
                    Some(o) => *o = h.clone(),
                    None => out.push(h.clone()),
                }
            }
        }
        out
    };
    let rs = RouteSettings {
        regex_rewrite: primaries.last().and_then(|m| m.route.regex_rewrite.clone()),
        retry: last(primaries, |r| r.retry.as_ref()),
        cors: last(primaries, |r| r.cors.as_ref()),
        upgrades: primaries
            .iter()
            .rev()
            .find_map(|m| nonempty(&m.route.upgrades))
            .unwrap_or_default(),
        request_headers_to_add: merge(|r| &r.request_headers_to_add),
        request_headers_to_remove: primaries
            .iter()
            .rev()
            .find_map(|m| nonempty(&m.route.request_headers_to_remove))
            .unwrap_or_default(),
        response_headers_to_add: merge(|r| &r.response_headers_to_add),
        response_headers_to_remove: primaries
            .iter()
            .rev()
            .find_map(|m| nonempty(&m.route.response_headers_to_remove))
            .unwrap_or_default(),
        hash_policy: last(primaries, |r| r.hash_policy.as_ref()),
        rate_limits: Vec::new(),
    };
    if primaries.len() > 1 {
        for m in primaries {
            if *m.route != rs {
                let what = differing_setting(&m.route, &rs);
                cx.diags.push(
                    Diagnostic::at(
                        Code::CanarySettingsDiffer,
                        m.r.span,
                        format!(
                            "`{what}` of `{}` is not what its canary group's route uses: Emissary gives the whole group one `{what}`, taken from the last member that sets it",
                            m.r.id.name
                        ),
                    )
                    .with_object(&m.r.id),
                );
            }
        }
    }
    let mut rs = rs;
    if rs.cors.is_none() {
        rs.cors = settings.cors.clone().map(Box::new);
    }
    // `labels` is a core key: every member has the first one's.
    if let (Some(domain), Some(first)) = (&settings.rate_limit_domain, primaries.first()) {
        rs.rate_limits = super::ratelimit::route_rate_limits(
            first.labels.as_deref(),
            domain,
            &settings.default_label_domain,
            &settings.default_labels,
        );
    }
    rs
}

/// Canary members that rewrite differently: each keeps its own rewrite in Emissary, so the
/// same request reaches each backend with another path or Host.
fn rewrites_differ(primaries: &[&Lowered], cx: &mut Cx) {
    let rewrite_of = |m: &MemberSettings| {
        (
            m.prefix_rewrite.clone(),
            m.host_rewrite.clone(),
            m.auto_host_rewrite,
        )
    };
    let Some(first) = primaries.first() else {
        return;
    };
    let base = rewrite_of(&first.member);
    for m in &primaries[1..] {
        if rewrite_of(&m.member) != base || m.route.regex_rewrite != first.route.regex_rewrite {
            let show = |m: &Lowered| match &m.member.prefix_rewrite {
                Some(p) => format!("`rewrite: {p}`"),
                None => "no rewrite".to_string(),
            };
            cx.diags.push(
                Diagnostic::at(
                    Code::CanaryRewritesDiffer,
                    m.r.span,
                    format!(
                        "`{}` ({}) and `{}` ({}) share a route but rewrite differently: each backend receives its own path",
                        m.r.id.name,
                        show(m),
                        first.r.id.name,
                        show(first)
                    ),
                )
                .with_object(&m.r.id)
                .with_related(first.r.span, "the other member"),
            );
        }
    }
}

fn differing_setting(a: &RouteSettings, b: &RouteSettings) -> &'static str {
    if a.regex_rewrite != b.regex_rewrite {
        "regex_rewrite"
    } else if a.retry != b.retry {
        "retry_policy"
    } else if a.cors != b.cors {
        "cors"
    } else if a.upgrades != b.upgrades {
        "allow_upgrade"
    } else if a.hash_policy != b.hash_policy {
        "load_balancer"
    } else {
        "headers"
    }
}

/// Ambassador's canary weights: weighted members keep their weight, the unweighted share
/// what remains equally, and the last unweighted member takes the rounding.
fn weights(members: &[&Lowered], cx: &mut Cx) -> Vec<u32> {
    let mut ws: Vec<Option<u32>> = Vec::with_capacity(members.len());
    for m in members {
        match m.weight {
            Some(w) if w > 100 => {
                cx.diags.push(
                    Diagnostic::at(
                        Code::WeightOver100,
                        m.weight_span.unwrap_or(m.r.span),
                        format!(
                            "`weight: {w}` of `{}` is over 100; it is taken as 100",
                            m.r.id.name
                        ),
                    )
                    .with_object(&m.r.id)
                    .with_field(m.r.path("weight")),
                );
                ws.push(Some(100));
            }
            w => ws.push(w),
        }
    }
    let total: u32 = ws.iter().flatten().sum();
    let unweighted = ws.iter().filter(|w| w.is_none()).count() as u32;
    let names = || {
        members
            .iter()
            .map(|m| format!("`{}`", m.r.id.name))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if total > 100 {
        let m = members
            .iter()
            .zip(&ws)
            .rfind(|(_, w)| w.is_some())
            .map(|(m, _)| *m)
            .unwrap_or(members[0]);
        cx.diags.push(
            Diagnostic::at(
                Code::WeightTotalOver100,
                m.weight_span.unwrap_or(m.r.span),
                format!(
                    "the weights of {} add up to {total}: as in Emissary, the members listed first take the traffic up to 100 and the others get none",
                    names()
                ),
            )
            .with_object(&m.r.id)
            .with_field(m.r.path("weight")),
        );
        // Emissary's cumulative fractions, which Envoy caps at 100: each member's share is
        // what its fraction adds before the cap.
        let mut given = 0u32;
        return ws
            .iter()
            .map(|w| {
                let share = w.unwrap_or(0).min(100 - given);
                given += share;
                share
            })
            .collect();
    }
    if total < 100 && unweighted == 0 {
        let m = members[members.len() - 1];
        cx.diags.push(
            Diagnostic::at(
                Code::WeightTotalUnder100,
                m.weight_span.unwrap_or(m.r.span),
                format!(
                    "the weights of {} add up to {total}, and no member takes the remaining {}",
                    names(),
                    100 - total
                ),
            )
            .with_object(&m.r.id)
            .with_field(m.r.path("weight")),
        );
    }
    let remaining = 100u32.saturating_sub(total);
    // Emissary's share is Python's `round(remaining / unweighted)`: halves go to the even
    // number. The last unweighted member takes what is left, and a cumulative share
    // cannot pass 100 (Envoy's fraction is full there).
    let share = match unweighted {
        0 => 0,
        n => {
            let (q, r) = (remaining / n, remaining % n);
            q + u32::from(2 * r > n || (2 * r == n && q % 2 == 1))
        }
    };
    let mut seen = 0;
    let mut given = total;
    let out: Vec<u32> = ws
        .iter()
        .map(|w| match w {
            Some(w) => *w,
            None => {
                seen += 1;
                let w = if seen == unweighted {
                    100u32.saturating_sub(given)
                } else {
                    share.min(100u32.saturating_sub(given))
                };
                given += w;
                w
            }
        })
        .collect();
    // The same route bound to different services without weights is a split nobody asked for.
    if unweighted >= 2 && total == 0 {
        let services: HashSet<&str> = members.iter().map(|m| m.service.host.as_str()).collect();
        if services.len() > 1 {
            for m in &members[1..] {
                cx.diags.push(
                    Diagnostic::at(
                        Code::ImplicitSplit,
                        m.r.span,
                        format!(
                            "`{}` and `{}` bind the same route to different services, so each gets {}% of the traffic",
                            members[0].r.id.name,
                            m.r.id.name,
                            100 / unweighted
                        ),
                    )
                    .with_object(&m.r.id)
                    .with_related(members[0].r.span, "the other Mapping"),
                );
            }
        }
    }
    for (m, w) in members.iter().zip(&out) {
        if *w == 0 && members.len() > 1 {
            cx.diags.push(
                Diagnostic::at(
                    Code::ZeroWeight,
                    m.weight_span.unwrap_or(m.r.span),
                    format!("`{}` receives no traffic in its canary group", m.r.id.name),
                )
                .with_object(&m.r.id),
            );
        }
    }
    out
}

/// Would-be canaries: the same match under different precedences never share traffic.
pub(crate) fn canary_precedence<'a, K, M>(groups: &[(K, Vec<M>)], cx: &mut Cx)
where
    K: std::borrow::Borrow<GroupKey>,
    M: std::ops::Deref<Target = Lowered<'a>>,
{
    let mut by_match: HashMap<&MatchKey, Vec<usize>> = HashMap::new();
    for (i, (k, _)) in groups.iter().enumerate() {
        by_match.entry(&k.borrow().matcher).or_default().push(i);
    }
    for idxs in by_match.values().filter(|v| v.len() > 1) {
        report_same_match(groups, idxs, cx);
    }
}

/// Reports the members of the groups `idxs` (in first-seen order), which share a match,
/// but for the group of highest precedence: that one takes all their traffic.
fn report_same_match<'a, K, M>(groups: &[(K, Vec<M>)], idxs: &[usize], cx: &mut Cx)
where
    K: std::borrow::Borrow<GroupKey>,
    M: std::ops::Deref<Target = Lowered<'a>>,
{
    let winner = *idxs
        .iter()
        .max_by_key(|&&i| groups[i].0.borrow().precedence)
        .unwrap_or(&idxs[0]);
    let w = &*groups[winner].1[0];
    for &i in idxs.iter().filter(|&&i| i != winner) {
        for m in &groups[i].1 {
            cx.diags.push(
                Diagnostic::at(
                    Code::CanaryPrecedence,
                    m.key_span("precedence"),
                    format!(
                        "`{}` (precedence {}) has the same match as `{}` (precedence {}), so it never receives traffic",
                        m.r.id.name, m.precedence, w.r.id.name, w.precedence
                    ),
                )
                .with_object(&m.r.id)
                .with_related(w.r.span, "the Mapping that takes the traffic"),
            );
        }
    }
}

fn route_name(m: &RouteMatch, precedence: i64) -> String {
    let mut h = Fnv::new();
    match &m.path {
        PathMatch::Prefix(p) => h.text(b'P', p),
        PathMatch::Exact(p) => h.text(b'E', p),
        PathMatch::Regex(p) => h.text(b'R', p),
    }
    h.bytes(&[m.case_sensitive as u8]);
    for hm in &m.headers {
        h.text(b'h', &hm.name);
        h.value(&hm.value);
    }
    for q in &m.query_parameters {
        h.text(b'q', &q.name);
        h.value(&q.value);
    }
    h.bytes(&precedence.to_le_bytes());
    format!("route-{}", h.0.hex())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::ValueMatch;
    use std::hash::BuildHasher;

    /// Keys of a few paths, headers and precedences, in a scrambled but fixed order.
    fn keys() -> Vec<GroupKey> {
        let mut seed = 7u64;
        (0..400)
            .map(|_| {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let pick = (seed >> 33) as usize;
                let headers = match pick % 3 {
                    0 => vec![],
                    n => vec![HeaderMatch {
                        name: "x-tenant".into(),
                        value: ValueMatch::Exact(n.to_string()),
                    }],
                };
                GroupKey {
                    matcher: MatchKey {
                        path: format!("/p{}/", (pick / 3) % 5),
                        headers,
                        query_parameters: vec![],
                    },
                    precedence: ((pick / 15) % 3) as i64,
                }
            })
            .collect()
    }

    #[test]
    fn filing_by_hash_groups_as_equal_keys_do_whatever_the_hashes_collide() {
        let keys = keys();
        // What filing by the keys themselves gives.
        let mut index: HashMap<&GroupKey, usize> = HashMap::new();
        let (mut first, mut sizes, mut group_of) = (vec![], vec![], vec![]);
        for (i, k) in keys.iter().enumerate() {
            let g = *index.entry(k).or_insert_with(|| {
                first.push(i);
                sizes.push(0);
                first.len() - 1
            });
            sizes[g] += 1;
            group_of.push(g);
        }
        let mut by_match: Vec<Vec<usize>> = Vec::new();
        for (g, &i) in first.iter().enumerate() {
            match by_match
                .iter_mut()
                .find(|set| keys[first[set[0]]].matcher == keys[i].matcher)
            {
                Some(set) => set.push(g),
                None => by_match.push(vec![g]),
            }
        }
        by_match.retain(|set| set.len() > 1);
        assert!(
            !by_match.is_empty() && first.len() > 20,
            "the keys make the case"
        );

        let state = foldhash::fast::RandomState::default();
        type Hash<'f> = &'f dyn Fn(&MatchKey) -> u64;
        let hashes: [(&str, Hash); 3] = [
            ("the match's hash", &|m| state.hash_one(m)),
            ("one hash for all", &|_| 0),
            ("the path's length", &|m| m.path.len() as u64),
        ];
        for (name, hash) in hashes {
            let hashed: Vec<(Box<GroupKey>, u64)> = keys
                .iter()
                .map(|k| (Box::new(k.clone()), hash(&k.matcher)))
                .collect();
            let filed = file_groups(&hashed);
            assert_eq!(filed.first_of_group, first, "{name}");
            assert_eq!(filed.sizes, sizes, "{name}");
            assert_eq!(filed.group_of, group_of, "{name}");
            let mut same = filed.same_match;
            same.sort();
            let mut expected = by_match.clone();
            expected.sort();
            assert_eq!(same, expected, "{name}");
        }
    }
}

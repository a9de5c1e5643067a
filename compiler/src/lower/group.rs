//! Grouping Mappings that share a match into one route each, and canary weights.

use foldhash::{HashMap, HashMapExt, HashSet};

use crate::diag::{Code, Diagnostic};
use crate::ir::{
    Forward, HeaderMatch, PathMatch, Redirect, Route, RouteAction, RouteMatch, RouteSettings,
    Settings, Shadow, SourceRef, ValueMatch, WeightedCluster,
};

use super::cluster::Fnv;
use super::hosts::glob_regex;
use super::mapping::Mapping;
use super::{source_ref, Cx, Lowered};

/// What makes two Mappings members of one group.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct GroupKey {
    pub matcher: RouteMatch,
    pub precedence: i64,
}

pub(crate) fn match_of(mp: &Mapping, vhost_glob: &str) -> RouteMatch {
    let mut headers = mp.headers.clone();
    if let Some(m) = &mp.method {
        headers.push(HeaderMatch {
            name: ":method".into(),
            value: m.clone(),
        });
    }
    match (&mp.authority, &mp.hostname) {
        (Some(a), _) => headers.push(HeaderMatch {
            name: ":authority".into(),
            value: a.clone(),
        }),
        (None, Some(h)) if h != "*" && h != vhost_glob => {
            let value = if h.contains('*') {
                ValueMatch::Regex(glob_regex(h))
            } else {
                ValueMatch::Exact(h.clone())
            };
            headers.push(HeaderMatch {
                name: ":authority".into(),
                value,
            });
        }
        _ => {}
    }
    headers.sort();
    RouteMatch {
        path: mp.path.clone(),
        case_sensitive: mp.case_sensitive,
        headers,
        query_parameters: mp.query.clone(),
    }
}

/// The routes of one virtual host, and the Mappings whose clusters they send to, in the
/// order they were used.
pub(super) fn build_routes<'m, 'a>(
    members: &[&'m Lowered<'a>],
    vhost_glob: &str,
    settings: &Settings,
    cx: &mut Cx,
) -> (Vec<Route>, Vec<usize>) {
    // Group, keeping first-seen order. The index borrows the keys, so a group's key is the
    // first member's, moved and never cloned.
    let mut keys: Vec<Option<GroupKey>> = members
        .iter()
        .map(|mp| {
            Some(GroupKey {
                matcher: match_of(mp, vhost_glob),
                precedence: mp.precedence,
            })
        })
        .collect();
    let mut first_of_group: Vec<usize> = Vec::with_capacity(members.len());
    let mut members_of: Vec<Vec<&'m Lowered<'a>>> = Vec::with_capacity(members.len());
    {
        let mut index: HashMap<&GroupKey, usize> = HashMap::with_capacity(members.len());
        for (i, key) in keys.iter().enumerate() {
            let Some(key) = key else { continue };
            match index.entry(key) {
                std::collections::hash_map::Entry::Occupied(g) => {
                    members_of[*g.get()].push(members[i])
                }
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(members_of.len());
                    first_of_group.push(i);
                    members_of.push(vec![members[i]]);
                }
            }
        }
    }
    let groups: Vec<(GroupKey, Vec<&'m Lowered<'a>>)> = first_of_group
        .iter()
        .zip(members_of)
        .filter_map(|(&i, mut group)| {
            sort_members(&mut group);
            Some((keys[i].take()?, group))
        })
        .collect();
    drop(keys);
    let mut used = Vec::with_capacity(members.len());
    canary_precedence(&groups, cx);

    let mut routes = Vec::with_capacity(groups.len());
    for (key, group) in groups {
        if let Some(route) = build_group(key, group, settings, cx, &mut used) {
            routes.push(route);
        }
    }
    (routes, used.into_iter().map(|m| m.index).collect())
}

/// A group's members in the order the route lists them: weighted ones first, then by
/// object. Independent of the input's order.
pub(crate) fn sort_members(group: &mut [&Lowered]) {
    group.sort_by(|a, b| (a.weight.is_none(), &a.r.id).cmp(&(b.weight.is_none(), &b.r.id)));
}

/// The route of one group of Mappings (same match, same precedence): canary weights, the
/// shadow, the leader's settings. `None` when the group has no primary member. The members
/// whose clusters the route sends to are added to `used`.
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
    // Core keys must agree with the first member.
    let first = primaries[0];
    primaries.retain(|m| {
        if std::ptr::eq(*m, first) {
            return true;
        }
        let bad = m.core.iter().find(|(k, v)| first.core.get(*k) != Some(*v)).map(|(k, _)| *k);
        let bad = bad.or_else(|| (m.redirect.is_some() != first.redirect.is_some()).then_some("host_redirect"));
        if let Some(k) = bad {
            cx.diags.push(
                Diagnostic::at(
                    Code::CanaryMismatch,
                    m.r.key_span(k),
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

    let weights = weights(&primaries, cx);
    // The main member (largest share) carries the route settings.
    let leader = primaries
        .iter()
        .zip(&weights)
        .max_by(|(a, wa), (b, wb)| wa.cmp(wb).then(b.r.id.cmp(&a.r.id)))
        .map(|(m, _)| *m)
        .unwrap_or(first);
    let sources: Vec<SourceRef> = primaries
        .iter()
        .chain(shadows.first())
        .map(|m| source_ref(m.r))
        .collect();
    let name = route_name(&key);

    let action = if let Some(redirect) = &leader.redirect {
        RouteAction::Redirect(Redirect {
            host: leader.service.host.clone(),
            port: leader.service.port,
            https: leader.service.https,
            path: redirect.path.clone(),
            response_code: redirect.response_code,
        })
    } else {
        for m in &primaries {
            if m.route != leader.route && !std::ptr::eq(*m, leader) {
                let what = differing_setting(&m.route, &leader.route);
                cx.diags.push(
                    Diagnostic::at(
                        Code::CanarySettingsDiffer,
                        m.r.span,
                        format!("`{what}` of `{}` differs from `{}`, whose settings the group's route uses", m.r.id.name, leader.r.id.name),
                    )
                    .with_object(&m.r.id)
                    .with_related(leader.r.span, "the main member"),
                );
            }
        }
        let mut wc: Vec<WeightedCluster> = Vec::with_capacity(primaries.len());
        for (m, w) in primaries.iter().zip(&weights) {
            used.push(*m);
            // Members that send to the same cluster share its entry (a group is a few
            // Mappings: a scan, not a set).
            let cluster = &m.cluster.name;
            match wc.iter_mut().find(|c| c.cluster == *cluster) {
                Some(existing) => existing.weight += *w,
                None => wc.push(WeightedCluster {
                    cluster: cluster.clone(),
                    weight: *w,
                    source: source_ref(m.r),
                }),
            }
        }
        let shadow = shadows.first().map(|s| Shadow {
            cluster: {
                used.push(*s);
                s.cluster.name.clone()
            },
            percent: s.weight.unwrap_or(100).min(100),
            source: source_ref(s.r),
        });
        // The leader's settings, with the Module's timeout and CORS where the Mapping sets
        // none.
        let mut rs = leader.route.clone();
        rs.timeout_ms = Some(rs.timeout_ms.unwrap_or(settings.default_timeout_ms));
        if rs.cors.is_none() {
            rs.cors = settings.cors.clone().map(Box::new);
        }
        RouteAction::Forward(Box::new(Forward {
            clusters: wc,
            shadow: shadow.map(Box::new),
            settings: rs,
        }))
    };
    Some(Route {
        name,
        matcher: key.matcher,
        action,
        precedence: key.precedence,
        sources,
    })
}

fn differing_setting(a: &RouteSettings, b: &RouteSettings) -> &'static str {
    if a.prefix_rewrite != b.prefix_rewrite || a.regex_rewrite != b.regex_rewrite {
        "rewrite"
    } else if a.timeout_ms != b.timeout_ms || a.idle_timeout_ms != b.idle_timeout_ms {
        "timeout_ms"
    } else if a.retry != b.retry {
        "retry_policy"
    } else if a.cors != b.cors {
        "cors"
    } else if a.upgrades != b.upgrades {
        "allow_upgrade"
    } else if a.host_rewrite != b.host_rewrite || a.auto_host_rewrite != b.auto_host_rewrite {
        "host_rewrite"
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
                    "the weights of {} add up to {total}; they are scaled to 100",
                    names()
                ),
            )
            .with_object(&m.r.id)
            .with_field(m.r.path("weight")),
        );
        let mut out: Vec<u32> = ws.iter().map(|w| w.unwrap_or(0) * 100 / total).collect();
        let rest = 100 - out.iter().sum::<u32>();
        if let Some(last) = ws.iter().rposition(|w| w.is_some()) {
            out[last] += rest;
        }
        return out;
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
    let share = remaining.checked_div(unweighted).unwrap_or(0);
    let mut seen = 0;
    let out: Vec<u32> = ws
        .iter()
        .map(|w| match w {
            Some(w) => *w,
            None => {
                seen += 1;
                if seen == unweighted {
                    remaining - share * (unweighted - 1)
                } else {
                    share
                }
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
pub(crate) fn canary_precedence(groups: &[(GroupKey, Vec<&Lowered>)], cx: &mut Cx) {
    let mut by_match: HashMap<&RouteMatch, Vec<usize>> = HashMap::new();
    for (i, (k, _)) in groups.iter().enumerate() {
        by_match.entry(&k.matcher).or_default().push(i);
    }
    for idxs in by_match.values().filter(|v| v.len() > 1) {
        let winner = *idxs
            .iter()
            .max_by_key(|&&i| groups[i].0.precedence)
            .unwrap_or(&idxs[0]);
        let w = groups[winner].1[0];
        for &i in idxs.iter().filter(|&&i| i != winner) {
            for m in &groups[i].1 {
                cx.diags.push(
                    Diagnostic::at(
                        Code::CanaryPrecedence,
                        m.r.key_span("precedence"),
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
}

fn route_name(key: &GroupKey) -> String {
    let m = &key.matcher;
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
    h.bytes(&key.precedence.to_le_bytes());
    format!("route-{}", h.0.hex())
}

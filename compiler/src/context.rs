//! The cluster's configuration as the admission webhook sees it, indexed so that checking one incoming object against it costs lookups, not a recompile.
//!
//! [`Context::build`] compiles the watched view once per change. [`Context::check`] then
//! compiles only the incoming object, together with the view's Hosts, TLSContexts, resolvers,
//! Modules and the Services it can observe (so references resolve as they will in the
//! cluster), and looks its routes and names up in the indexes: the same route bound to another
//! service, a would-be
//! canary under another precedence, shadowing in either direction, and duplicate names.
//! Objects that belong to the incoming object itself (its previous version, on UPDATE) are
//! not conflicts.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use crate::admission::{self, ObjectCheck};
use crate::check::covers_headers as covers;
use crate::diag::{Code, Diagnostic, ObjectRef, Severity};
use crate::front::yaml::Node;
use crate::front::{Kind, Options, Origin, Resource, ServiceInfo};
use crate::ir::{PathMatch, Route, RouteMatch};
use crate::lower::{object_of, order_key, OrderKey};
use crate::source::Sources;
use crate::Compilation;

/// At most this many existing routes are reported as newly shadowed by one object.
const MAX_SHADOWED_REPORTS: usize = 20;

/// A route of the incoming object that joins a group of the view: its members, the weights
/// of the whole group, the path, where to report, and whom it joins.
type Joined = (
    Vec<ObjectRef>,
    Vec<Option<i64>>,
    String,
    crate::source::Span,
    String,
);

/// One route of the view, as the indexes hold it.
#[derive(Clone, Debug)]
struct Entry {
    key: OrderKey,
    route: Route,
    /// The objects whose resources form this route (Services for annotations).
    owners: Vec<ObjectRef>,
}

/// The watched view, compiled and indexed.
pub struct Context {
    compilation: Compilation,
    /// Kinds the incoming object may refer to, taken into its own compilation.
    shared: Vec<Resource>,
    /// `(kind, namespace, name)` of every Ambassador resource, with its owner.
    names: HashMap<(String, String, String), ObjectRef>,
    /// Routes by virtual host and match.
    by_match: HashMap<(String, RouteMatch), Vec<usize>>,
    /// Literal, case-sensitive prefix routes by virtual host and prefix text.
    prefixes: BTreeMap<(String, String), Vec<usize>>,
    /// The lowest precedence among the routes of `prefixes`, by virtual host.
    min_precedence: HashMap<String, i64>,
    entries: Vec<Entry>,
    /// Resources by `(kind, namespace, name)`, for reading a member's `weight`.
    /// The `weight` of every Mapping that sets one.
    weighted: HashMap<(String, String, String), Option<i64>>,
    /// The view's Services (indexes into `compilation.manifests.services`) by name.
    services_by_name: HashMap<String, Vec<usize>>,
    /// One Service of each namespace that has any.
    namespace_services: Vec<usize>,
}

/// The owner of a resource: the annotated object, or the resource itself.
fn owner_of(r: &Resource) -> ObjectRef {
    match &r.origin {
        Origin::Annotation { object } => object.clone(),
        Origin::CustomResource => r.id.clone(),
    }
}

fn id_key(o: &ObjectRef) -> (String, String, String) {
    (o.kind.clone(), o.namespace.clone(), o.name.clone())
}

impl Context {
    /// Compiles the view and builds the indexes.
    pub fn build(sources: &Sources, opts: &Options) -> Context {
        let compilation = crate::compile(sources, opts, &crate::lower::LowerOptions::default());
        Context::from_compilation(compilation)
    }

    /// Indexes an existing compilation of the view.
    pub fn from_compilation(compilation: Compilation) -> Context {
        let mut names = HashMap::new();
        let mut weighted = HashMap::new();
        let mut shared = Vec::new();
        for r in &compilation.manifests.resources {
            names.insert(id_key(&r.id), owner_of(r));
            weighted.insert(id_key(&r.id), r.field("weight").and_then(|w| w.as_int()));
            if matches!(
                r.kind,
                Kind::Host
                    | Kind::TlsContext
                    | Kind::Module
                    | Kind::KubernetesServiceResolver
                    | Kind::KubernetesEndpointResolver
                    | Kind::ConsulResolver
            ) {
                shared.push(r.clone());
            }
        }
        let mut services_by_name: HashMap<String, Vec<usize>> = HashMap::new();
        let mut namespace_services: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, s) in compilation.manifests.services.iter().enumerate() {
            services_by_name.entry(s.name.clone()).or_default().push(i);
            namespace_services.entry(s.namespace.as_str()).or_insert(i);
        }
        let namespace_services = namespace_services.into_values().collect();
        let mut entries = Vec::new();
        let mut by_match: HashMap<(String, RouteMatch), Vec<usize>> = HashMap::new();
        let mut prefixes: BTreeMap<(String, String), Vec<usize>> = BTreeMap::new();
        let mut min_precedence = HashMap::new();
        for vh in &compilation.ir.virtual_hosts {
            for route in &vh.routes {
                let owners = route
                    .sources
                    .iter()
                    .filter_map(|s| {
                        names
                            .get(&(
                                s.kind.to_string(),
                                s.namespace.to_string(),
                                s.name.to_string(),
                            ))
                            .cloned()
                    })
                    .collect();
                let i = entries.len();
                entries.push(Entry {
                    key: order_key(route),
                    route: route.clone(),
                    owners,
                });
                by_match
                    .entry((vh.name.clone(), route.matcher.clone()))
                    .or_default()
                    .push(i);
                if let PathMatch::Prefix(p) = &route.matcher.path {
                    if route.matcher.case_sensitive {
                        min_precedence
                            .entry(vh.name.clone())
                            .and_modify(|m: &mut i64| *m = (*m).min(route.precedence))
                            .or_insert(route.precedence);
                        prefixes
                            .entry((vh.name.clone(), p.clone()))
                            .or_default()
                            .push(i);
                    }
                }
            }
        }
        Context {
            compilation,
            shared,
            names,
            by_match,
            prefixes,
            min_precedence,
            entries,
            weighted,
            services_by_name,
            namespace_services,
        }
    }

    /// The compiled view.
    pub fn compilation(&self) -> &Compilation {
        &self.compilation
    }

    /// How many Ambassador resources the view holds.
    pub fn len(&self) -> usize {
        self.compilation.manifests.resources.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Checks one incoming object against the view. Conflicts are warnings, or errors when
    /// `reject_conflicts` is set.
    pub fn check(&self, obj: &Value, opts: &Options, reject_conflicts: bool) -> ObjectCheck {
        let read = admission::read_object(obj, opts);
        let services = self.services_for(read.resources());
        let mut checked = read.finish(&self.shared, &services);
        let owner = checked.object.clone();
        let mut conflicts = Vec::new();
        for r in &checked.resources {
            if let Some(other) = self.names.get(&id_key(&r.id)) {
                if *other != owner {
                    conflicts.push(
                        Diagnostic::at(
                            Code::DuplicateName,
                            r.span,
                            format!(
                                "{} `{}/{}` is already defined by {other}",
                                r.kind.as_str(),
                                r.id.namespace,
                                r.id.name
                            ),
                        )
                        .with_object(&r.id),
                    );
                }
            }
        }
        for vh in &checked.ir.virtual_hosts {
            for route in &vh.routes {
                self.route_conflicts(&vh.name, route, &owner, &checked, &mut conflicts);
            }
        }
        self.rejudge_joined_groups(&owner, &mut checked, &mut conflicts);
        for mut d in conflicts {
            d.severity = if reject_conflicts {
                Severity::Error
            } else {
                Severity::Warning
            };
            checked.diagnostics.push(d);
        }
        crate::diag::sort(&mut checked.diagnostics);
        checked
    }

    /// The Services of the view that compiling `resources` can observe, so that a check
    /// costs the same whatever the number of Services in the cluster.
    ///
    /// Lowering uses the Services twice: the namespaces they live in decide whether the
    /// second label of `service: name.label` is a namespace, and `service-not-found` looks the
    /// referenced Service up by name and namespace. One Service per namespace keeps the first
    /// exactly; every Service named like a word of some `service` field keeps the second (the
    /// name looked up is the host's first label, which is such a word). Both are real Services
    /// of the view, so no lookup can succeed that would fail against all of them.
    fn services_for(&self, resources: &[Resource]) -> Vec<ServiceInfo> {
        let mut picked = self.namespace_services.clone();
        for r in resources {
            let Some(text) = r.field("service").and_then(Node::as_str) else {
                continue;
            };
            for word in text.split(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_')))
            {
                if let Some(found) = self.services_by_name.get(word) {
                    picked.extend_from_slice(found);
                }
            }
        }
        picked.sort_unstable();
        picked.dedup();
        let all = &self.compilation.manifests.services;
        picked.into_iter().map(|i| all[i].clone()).collect()
    }

    /// A Mapping that joins a canary group of the view was weighed alone when the object
    /// was compiled on its own: weigh the whole group again, with the view's members.
    fn rejudge_joined_groups(
        &self,
        owner: &ObjectRef,
        checked: &mut ObjectCheck,
        out: &mut Vec<Diagnostic>,
    ) {
        const GROUP_CODES: [Code; 3] = [
            Code::WeightTotalUnder100,
            Code::WeightTotalOver100,
            Code::ZeroWeight,
        ];
        let mut joined: Vec<Joined> = Vec::new();
        for vh in &checked.ir.virtual_hosts {
            for route in &vh.routes {
                let key = (vh.name.clone(), route.matcher.clone());
                let others: Vec<&Entry> = self
                    .foreign(self.by_match.get(&key), owner)
                    .filter(|e| e.route.precedence == route.precedence)
                    .collect();
                let Some(first) = others.first() else {
                    continue;
                };
                let mine: Vec<ObjectRef> = route.sources.iter().map(object_of).collect();
                let mut weights: Vec<Option<i64>> = mine
                    .iter()
                    .map(|o| {
                        checked
                            .resources
                            .iter()
                            .find(|r| r.id == *o)
                            .and_then(|r| r.field("weight")?.as_int())
                    })
                    .collect();
                for e in &others {
                    for src in &e.route.sources {
                        weights.push(
                            self.weighted
                                .get(&id_key(&object_of(src)))
                                .copied()
                                .flatten(),
                        );
                    }
                }
                let theirs = &first.route.sources[0];
                let with = format!("{} {}/{}", theirs.kind, theirs.namespace, theirs.name);
                joined.push((
                    mine,
                    weights,
                    route.matcher.path.text().to_string(),
                    route.sources[0].span,
                    with,
                ));
            }
        }
        for (members, weights, path, span, with) in joined {
            checked.diagnostics.retain(|d| {
                !(GROUP_CODES.contains(&d.code)
                    && d.object.as_ref().is_some_and(|o| members.contains(o)))
            });
            let total: i64 = weights.iter().flatten().map(|w| (*w).clamp(0, 100)).sum();
            let unweighted = weights.iter().filter(|w| w.is_none()).count();
            let object = members[0].clone();
            if total > 100 {
                out.push(
                    Diagnostic::at(
                        Code::WeightTotalOver100,
                        span,
                        format!("with {with}, the weights of `{path}` add up to {total}"),
                    )
                    .with_object(&object),
                );
            } else if total < 100 && unweighted == 0 {
                out.push(
                    Diagnostic::at(
                        Code::WeightTotalUnder100,
                        span,
                        format!("with {with}, the weights of `{path}` add up to {total} and no member takes the rest"),
                    )
                    .with_object(&object),
                );
            }
        }
    }

    fn foreign<'a>(
        &'a self,
        idxs: Option<&'a Vec<usize>>,
        owner: &'a ObjectRef,
    ) -> impl Iterator<Item = &'a Entry> + 'a {
        idxs.into_iter()
            .flatten()
            .map(move |&i| &self.entries[i])
            .filter(move |e| !e.owners.iter().any(|o| o == owner))
    }

    fn route_conflicts(
        &self,
        vhost: &str,
        route: &Route,
        owner: &ObjectRef,
        checked: &ObjectCheck,
        out: &mut Vec<Diagnostic>,
    ) {
        let src = &route.sources[0];
        let me = object_of(src);
        let is_weighted = |o: &ObjectRef| -> bool {
            self.weighted.get(&id_key(o)).copied().flatten().is_some()
                || checked
                    .resources
                    .iter()
                    .any(|r| r.id == *o && r.field("weight").is_some())
        };
        // The same match: a canary group, an implicit split, or a precedence that splits it.
        for e in self.foreign(
            self.by_match
                .get(&(vhost.to_string(), route.matcher.clone())),
            owner,
        ) {
            let theirs = &e.route.sources[0];
            if e.route.precedence == route.precedence {
                // Joining a group unweighted takes a share of the traffic of its unweighted
                // members: that is a split nobody asked for unless the services are the same.
                let theirs_unweighted = e.route.sources.iter().any(|s| !is_weighted(&object_of(s)));
                let services_differ = clusters(route)
                    .iter()
                    .any(|c| !clusters(&e.route).contains(c));
                if !is_weighted(&me) && theirs_unweighted && services_differ {
                    out.push(
                        Diagnostic::at(
                            Code::ImplicitSplit,
                            src.span,
                            format!(
                                "route `{}` is already served by {} {}/{}; traffic would be split",
                                route.matcher.path.text(),
                                theirs.kind,
                                theirs.namespace,
                                theirs.name
                            ),
                        )
                        .with_object(&me),
                    );
                }
            } else {
                out.push(
                    Diagnostic::at(
                        Code::CanaryPrecedence,
                        src.span,
                        format!(
                            "`{}` (precedence {}) has the same match as {} `{}/{}` (precedence {}), so one of them never receives traffic",
                            src.name, route.precedence, theirs.kind, theirs.namespace, theirs.name, e.route.precedence
                        ),
                    )
                    .with_object(&me),
                );
            }
        }
        let PathMatch::Prefix(q) = &route.matcher.path else {
            return;
        };
        if !route.matcher.case_sensitive {
            return;
        }
        let key = order_key(route);
        // Shadowed by an existing route: a shorter (or equal) prefix that comes first.
        for (k, _) in q.char_indices().chain(std::iter::once((q.len(), ' '))) {
            let idxs = self.prefixes.get(&(vhost.to_string(), q[..k].to_string()));
            for e in self.foreign(idxs, owner) {
                if e.key > key && covers(&e.route, route) {
                    let theirs = &e.route.sources[0];
                    out.push(
                        Diagnostic::at(
                            Code::ShadowedRoute,
                            src.span,
                            format!(
                                "route `{q}` of `{}` would never match: `{}` of {} `{}/{}` comes first and matches everything it does",
                                src.name,
                                e.route.matcher.path.text(),
                                theirs.kind,
                                theirs.namespace,
                                theirs.name
                            ),
                        )
                        .with_object(&me),
                    );
                    return;
                }
            }
        }
        // Shadowing existing routes: longer prefixes that this route would now come before.
        // Routes are ordered by precedence, then by prefix length, longest first: a route comes
        // before a longer prefix only with a higher precedence. At or below the lowest
        // precedence of the virtual host only routes with this very prefix can be affected, so
        // a catch-all such as `/` is not compared with every route of its host.
        let only_this_prefix = self
            .min_precedence
            .get(vhost)
            .is_none_or(|&lowest| route.precedence <= lowest);
        let start = (vhost.to_string(), q.clone());
        let mut reported = 0;
        for ((v, p), idxs) in self.prefixes.range(start..) {
            if v != vhost || !p.starts_with(q.as_str()) || reported >= MAX_SHADOWED_REPORTS {
                break;
            }
            if only_this_prefix && p.len() != q.len() {
                break;
            }
            for e in self.foreign(Some(idxs), owner) {
                if key > e.key && covers(route, &e.route) {
                    let theirs = &e.route.sources[0];
                    out.push(
                        Diagnostic::at(
                            Code::ShadowedRoute,
                            src.span,
                            format!(
                                "route `{q}` of `{}` would come first and take all traffic of `{p}` of {} `{}/{}`",
                                src.name, theirs.kind, theirs.namespace, theirs.name
                            ),
                        )
                        .with_object(&me),
                    );
                    reported += 1;
                }
            }
        }
    }
}

/// The clusters a route sends traffic to.
fn clusters(r: &Route) -> Vec<&str> {
    match &r.action {
        crate::ir::RouteAction::Forward(f) => {
            f.clusters.iter().map(|c| c.cluster.as_str()).collect()
        }
        crate::ir::RouteAction::Redirect(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn view() -> Context {
        let mut s = Sources::new();
        s.add(
            "view.yaml",
            "apiVersion: getambassador.io/v3alpha1\nkind: Mapping\nmetadata: {name: api, namespace: default}\nspec: {hostname: '*', prefix: /api/, service: api}\n---\napiVersion: getambassador.io/v3alpha1\nkind: TLSContext\nmetadata: {name: upstream, namespace: default}\nspec: {secret: upstream-cert}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: api, namespace: default}\nspec: {ports: [{port: 80}]}\n",
        );
        Context::build(&s, &Options::default())
    }

    fn mapping(name: &str, spec: Value) -> Value {
        json!({"apiVersion": "getambassador.io/v3alpha1", "kind": "Mapping", "metadata": {"name": name, "namespace": "default"}, "spec": spec})
    }

    fn codes(c: &ObjectCheck) -> Vec<(&'static str, Severity)> {
        c.diagnostics
            .iter()
            .map(|d| (d.code.as_str(), d.severity))
            .collect()
    }

    #[test]
    fn the_same_route_to_another_service_is_a_warning_or_an_error() {
        let ctx = view();
        let obj = mapping(
            "api2",
            json!({"hostname": "*", "prefix": "/api/", "service": "api-two"}),
        );
        let c = ctx.check(&obj, &Options::default(), false);
        assert!(
            codes(&c).contains(&("AMB307", Severity::Warning)),
            "{:?}",
            codes(&c)
        );
        let c = ctx.check(&obj, &Options::default(), true);
        assert!(codes(&c).contains(&("AMB307", Severity::Error)));
    }

    #[test]
    fn updating_an_object_is_not_a_conflict_with_itself() {
        let ctx = view();
        let obj = mapping(
            "api",
            json!({"hostname": "*", "prefix": "/api/", "service": "api", "timeout_ms": 100}),
        );
        let c = ctx.check(&obj, &Options::default(), true);
        assert!(c.diagnostics.is_empty(), "{:?}", codes(&c));
    }

    #[test]
    fn references_resolve_against_the_view() {
        let ctx = view();
        let obj = mapping(
            "tls",
            json!({"hostname": "*", "prefix": "/t/", "service": "api", "tls": "upstream"}),
        );
        let c = ctx.check(&obj, &Options::default(), false);
        assert!(c.diagnostics.is_empty(), "{:?}", codes(&c));
    }

    #[test]
    fn shadowing_in_both_directions() {
        let ctx = view();
        let longer = mapping(
            "v1",
            json!({"hostname": "*", "prefix": "/api/v1/", "service": "api", "precedence": -1}),
        );
        assert!(codes(&ctx.check(&longer, &Options::default(), false))
            .contains(&("AMB402", Severity::Warning)));
        let catch_all = mapping(
            "all",
            json!({"hostname": "*", "prefix": "/", "service": "api", "precedence": 5}),
        );
        assert!(codes(&ctx.check(&catch_all, &Options::default(), false))
            .contains(&("AMB402", Severity::Warning)));
    }

    #[test]
    fn precedence_split_and_duplicate_names() {
        let ctx = view();
        let other = mapping(
            "api-canary",
            json!({"hostname": "*", "prefix": "/api/", "service": "api", "weight": 10, "precedence": 2}),
        );
        assert!(codes(&ctx.check(&other, &Options::default(), false))
            .contains(&("AMB304", Severity::Warning)));
        let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "other", "namespace": "default", "annotations": {"getambassador.io/config": "apiVersion: getambassador.io/v2\nkind: Mapping\nname: api\nprefix: /x/\nservice: api\n"}}});
        assert!(codes(&ctx.check(&svc, &Options::default(), false))
            .contains(&("AMB401", Severity::Warning)));
    }

    #[test]
    fn a_canary_joining_a_group_is_weighed_with_the_group() {
        let ctx = view();
        let canary = mapping(
            "api-canary",
            json!({"hostname": "*", "prefix": "/api/", "service": "api-v2", "weight": 10}),
        );
        let c = ctx.check(&canary, &Options::default(), false);
        assert!(
            c.diagnostics.iter().all(|d| d.severity != Severity::Error),
            "{:?}",
            codes(&c)
        );
        let mut s = Sources::new();
        s.add(
            "view.yaml",
            "apiVersion: getambassador.io/v3alpha1\nkind: Mapping\nmetadata: {name: api, namespace: default}\nspec: {hostname: '*', prefix: /api/, service: api, weight: 80}\n",
        );
        let ctx = Context::build(&s, &Options::default());
        let heavy = mapping(
            "api-heavy",
            json!({"hostname": "*", "prefix": "/api/", "service": "api-v2", "weight": 30}),
        );
        assert!(codes(&ctx.check(&heavy, &Options::default(), false))
            .contains(&("AMB302", Severity::Warning)));
    }
}

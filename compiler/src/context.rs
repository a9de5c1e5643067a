//! The cluster's configuration as the admission webhook sees it, indexed so that checking one incoming object against it costs lookups, not a recompile.
//!
//! The view is the incremental [`Session`] that also feeds the ADS publisher: one
//! compilation serves both. [`Context::from_session`] indexes a session after a full pass,
//! and [`Context::apply`] brings the indexes up to date after a pass that changed only
//! Mappings, at the cost of what changed (the [`ViewChange`] of the update). The indexes
//! point at what the session holds (the files' resources, the built routes) instead of
//! copying it. [`Context::build`] makes a session of its own, for a view given as texts.
//!
//! [`Context::check`] then compiles only the incoming object, together with the view's
//! Hosts, TLSContexts, resolvers, Modules and the Services it can observe (so references
//! resolve as they will in the cluster), and looks its routes and names up in the indexes.
//! When a Mapping of the object shares its match with Mappings of the view (a canary group,
//! or a would-be canary under another precedence), the object is compiled once more with
//! those Mappings, and the group's findings are lint's on the whole group. Shadowing in
//! either direction and duplicate names are found in the indexes. Objects that belong to the
//! incoming object itself (its previous version, on UPDATE) are replaced by it, never
//! conflicts.
//!
//! A finding that depends on other objects never denies unless `reject_conflicts` is set
//! (see [`admission::Reach`]): `kubectl apply` sends objects one at a time, in any order.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use serde_json::Value;

use crate::admission::{
    self, admission_severity, awaits_others, is_group_finding, ObjectCheck, Reach,
};
use crate::check::{covers_emitted, emitted};
use crate::diag::{Code, Diagnostic, ObjectRef};
use crate::front::yaml::Node;
use crate::front::{Kind, Manifests, Options, Origin, Resource, ServiceInfo};
use crate::incremental::{Built, Place, Session, ViewChange};
use crate::ir::{HeaderMatch, Ir, PathMatch, QueryMatch, Route};
use crate::lower::{object_of, order_key, LowerOptions, OrderKey};
use crate::source::{Sources, Span};

/// At most this many existing routes are reported as newly shadowed by one object.
const MAX_SHADOWED_REPORTS: usize = 20;

/// What makes Mappings of one virtual host members of one group, whatever their precedence
/// and path flags (lowering's group key without them): the path text, the header conditions
/// (`:authority` and `:method` among them) and the query conditions (a redirect's too).
type GroupMatch = (String, Vec<HeaderMatch>, Vec<QueryMatch>);

fn group_match(route: &Route) -> GroupMatch {
    let mut query = route.matcher.query_parameters.clone();
    query.extend(route.unmatched_query.iter().cloned());
    (
        route.matcher.path.text().to_string(),
        route.matcher.headers.clone(),
        query,
    )
}

/// A route of the view: its virtual host and its name (unique in the virtual host). The
/// virtual host's name is shared by all its routes ([`Context::vhost_name`]), the route's
/// name by the indexes that point at it.
type EntryKey = (Arc<str>, Arc<str>);

/// One route of the view, as the indexes hold it.
#[derive(Clone, Debug)]
struct Entry {
    place: Arc<Place>,
    built: Arc<Built>,
}

impl Entry {
    fn key(&self) -> &OrderKey {
        &self.place.0 .0
    }

    fn route(&self) -> &Route {
        &self.built.route
    }
}

/// `(kind, namespace, name)` of a resource.
type IdKey = (String, String, String);

/// One Ambassador resource of the view: where the session holds it, and the Service it is
/// annotated on (`None` for a custom resource, its own owner).
#[derive(Clone, Debug)]
struct Named {
    annotated_on: Option<ObjectRef>,
    file: Arc<Manifests>,
    index: usize,
}

impl Named {
    fn new(r: &Resource, file: &Arc<Manifests>, index: usize) -> Named {
        Named {
            annotated_on: match &r.origin {
                Origin::Annotation { object } => Some(object.clone()),
                Origin::CustomResource => None,
            },
            file: Arc::clone(file),
            index,
        }
    }

    fn resource(&self) -> &Resource {
        &self.file.resources[self.index]
    }

    /// The object the resource came from: the annotated object, or the resource itself.
    fn owner(&self) -> &ObjectRef {
        self.annotated_on.as_ref().unwrap_or(&self.resource().id)
    }
}

/// The watched view, compiled and indexed.
#[derive(Default)]
pub struct Context {
    /// Kinds the incoming object may refer to, taken into its own compilation.
    shared: Vec<Resource>,
    /// Every Ambassador resource, by `(kind, namespace, name)`; the last one read wins, as
    /// in the compilation.
    names: HashMap<IdKey, Named>,
    /// The names of the virtual hosts, one copy each.
    vhost_names: HashSet<Arc<str>>,
    /// Routes by virtual host and group match (any precedence).
    by_group: HashMap<(Arc<str>, GroupMatch), Vec<EntryKey>>,
    /// Literal, case-sensitive prefix routes by virtual host and prefix text.
    prefixes: BTreeMap<(Arc<str>, String), Vec<EntryKey>>,
    /// The precedences of the routes of `prefixes`, counted, by virtual host (its lowest is
    /// what the shadowing lookup needs).
    precedences: HashMap<Arc<str>, BTreeMap<i64, usize>>,
    entries: HashMap<EntryKey, Entry>,
    /// The view's own findings on canary groups, so that one the incoming object does not
    /// change is not reported as its own.
    group_findings: HashSet<(Code, ObjectRef, String)>,
    /// The view's Services.
    services: Vec<ServiceInfo>,
    /// Indexes into `services` by name.
    services_by_name: HashMap<String, Vec<usize>>,
    /// One Service of each namespace that has any.
    namespace_services: Vec<usize>,
}

fn id_key(o: &ObjectRef) -> IdKey {
    (
        o.kind.to_string(),
        o.namespace.to_string(),
        o.name.to_string(),
    )
}

/// The canary groups of the view that the incoming object's Mappings join.
#[derive(Default)]
struct Joins {
    /// The view's Mappings in those groups.
    members: BTreeSet<IdKey>,
    /// The object's Mappings that share a match with Mappings of the view.
    own: HashSet<ObjectRef>,
    /// Each of those Mappings of the view, with the object's Mapping it shares a match with
    /// and where that one is: a group finding lint reports on the view's member is reported
    /// there.
    attribute: HashMap<ObjectRef, (ObjectRef, Span)>,
}

impl Context {
    /// Compiles a view given as texts, and indexes it.
    pub fn build(sources: &Sources, opts: &Options) -> Context {
        Context::build_with_findings(sources, opts).0
    }

    /// [`Context::build`], with the findings of compiling the view (what lint reports on it).
    pub fn build_with_findings(sources: &Sources, opts: &Options) -> (Context, Vec<Diagnostic>) {
        let mut session = Session::new(opts.clone(), LowerOptions::default());
        session.update(
            sources
                .iter()
                .map(|(_, f)| (f.name.clone(), f.text.clone()))
                .collect(),
        );
        let ctx = Context::from_session(&session);
        let diagnostics = session.diagnostics().to_vec();
        (ctx, diagnostics)
    }

    /// Indexes what a session holds.
    pub fn from_session(session: &Session) -> Context {
        let mut ctx = Context::default();
        let mut namespace_services: BTreeMap<&str, usize> = BTreeMap::new();
        for file in session.files() {
            for (index, r) in file.resources.iter().enumerate() {
                ctx.names.insert(id_key(&r.id), Named::new(r, file, index));
                if matches!(
                    r.kind,
                    Kind::Host
                        | Kind::TlsContext
                        | Kind::Module
                        | Kind::KubernetesServiceResolver
                        | Kind::KubernetesEndpointResolver
                        | Kind::ConsulResolver
                ) {
                    ctx.shared.push(r.clone());
                }
            }
            ctx.services.extend(file.services.iter().cloned());
        }
        for (i, s) in ctx.services.iter().enumerate() {
            ctx.services_by_name
                .entry(s.name.to_string())
                .or_default()
                .push(i);
            namespace_services.entry(s.namespace.as_str()).or_insert(i);
        }
        ctx.namespace_services = namespace_services.into_values().collect();
        for (vhost, place, built) in session.routes() {
            ctx.insert_route(vhost, place, built);
        }
        ctx.group_findings = group_findings(session);
        ctx
    }

    /// Brings the indexes to the session after an update that changed `change`: at the
    /// cost of what changed when only Mappings did, from the whole session otherwise.
    pub fn apply(&mut self, session: &Session, change: &ViewChange) {
        if change.full {
            *self = Context::from_session(session);
            return;
        }
        // Only Mappings changed, and no name is held twice (the session's fast path).
        for file in &change.removed {
            for r in &file.resources {
                let key = id_key(&r.id);
                if self
                    .names
                    .get(&key)
                    .is_some_and(|n| Arc::ptr_eq(&n.file, file))
                {
                    self.names.remove(&key);
                }
            }
        }
        for file in &change.added {
            for (index, r) in file.resources.iter().enumerate() {
                self.names.insert(id_key(&r.id), Named::new(r, file, index));
            }
        }
        for c in change.routes.iter() {
            if let Some(name) = &c.old {
                self.remove_route(&c.vhost, name);
            }
        }
        for c in change.routes.iter() {
            if let Some((place, built)) = &c.new {
                self.insert_route(&c.vhost, place, built);
            }
        }
        self.group_findings = group_findings(session);
    }

    /// The one copy of a virtual host's name.
    fn vhost_name(&mut self, vhost: &str) -> Arc<str> {
        if let Some(v) = self.vhost_names.get(vhost) {
            return Arc::clone(v);
        }
        let v: Arc<str> = Arc::from(vhost);
        self.vhost_names.insert(Arc::clone(&v));
        v
    }

    fn insert_route(&mut self, vhost: &str, place: &Arc<Place>, built: &Arc<Built>) {
        let route = &built.route;
        let vhost = self.vhost_name(vhost);
        let key: EntryKey = (Arc::clone(&vhost), Arc::from(route.name.as_str()));
        self.by_group
            .entry((Arc::clone(&vhost), group_match(route)))
            .or_default()
            .push(key.clone());
        if let PathMatch::Prefix(p) = &route.matcher.path {
            if route.matcher.case_sensitive {
                *self
                    .precedences
                    .entry(Arc::clone(&vhost))
                    .or_default()
                    .entry(route.precedence)
                    .or_default() += 1;
                self.prefixes
                    .entry((vhost, p.clone()))
                    .or_default()
                    .push(key.clone());
            }
        }
        self.entries.insert(
            key,
            Entry {
                place: Arc::clone(place),
                built: Arc::clone(built),
            },
        );
    }

    fn remove_route(&mut self, vhost: &str, name: &str) {
        let vhost = self.vhost_name(vhost);
        let key: EntryKey = (Arc::clone(&vhost), Arc::from(name));
        let Some(entry) = self.entries.remove(&key) else {
            return;
        };
        let route = entry.route();
        let group = (Arc::clone(&vhost), group_match(route));
        if let Some(keys) = self.by_group.get_mut(&group) {
            keys.retain(|k| *k != key);
            if keys.is_empty() {
                self.by_group.remove(&group);
            }
        }
        if let PathMatch::Prefix(p) = &route.matcher.path {
            if route.matcher.case_sensitive {
                if let Some(precs) = self.precedences.get_mut(&vhost) {
                    if let Some(n) = precs.get_mut(&route.precedence) {
                        *n -= 1;
                        if *n == 0 {
                            precs.remove(&route.precedence);
                        }
                    }
                    if precs.is_empty() {
                        self.precedences.remove(&vhost);
                    }
                }
                let at = (vhost, p.clone());
                if let Some(keys) = self.prefixes.get_mut(&at) {
                    keys.retain(|k| *k != key);
                    if keys.is_empty() {
                        self.prefixes.remove(&at);
                    }
                }
            }
        }
    }

    /// How many Ambassador resources the view holds (one per name).
    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The indexes in a canonical text, one line each: for tests that compare a context
    /// brought up to date with one built from scratch.
    #[doc(hidden)]
    pub fn fingerprint(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (k, n) in &self.names {
            out.push(format!("name {k:?} {} {:?}", n.owner(), n.resource().span));
        }
        for ((v, g), keys) in &self.by_group {
            let mut keys = keys.clone();
            keys.sort();
            out.push(format!("group {v} {g:?} {keys:?}"));
        }
        for (k, keys) in &self.prefixes {
            let mut keys = keys.clone();
            keys.sort();
            out.push(format!("prefix {k:?} {keys:?}"));
        }
        for (v, p) in &self.precedences {
            out.push(format!("precedences {v} {p:?}"));
        }
        for (k, e) in &self.entries {
            out.push(format!("entry {k:?} {:?} {:?}", e.place, e.route()));
        }
        for f in &self.group_findings {
            out.push(format!("finding {f:?}"));
        }
        out.push(format!(
            "shared {:?}",
            self.shared.iter().map(|r| &r.id).collect::<Vec<_>>()
        ));
        out.push(format!(
            "services {:?}",
            self.services
                .iter()
                .map(|s| (&s.namespace, &s.name))
                .collect::<Vec<_>>()
        ));
        out.sort();
        out
    }

    /// Checks one incoming object against the view. A finding about the object alone keeps
    /// lint's severity; one that depends on other objects (a reference not defined yet, a
    /// canary group not complete yet, a conflict with what the view holds) is a warning, or
    /// keeps lint's severity (conflicts: an error) when `reject_conflicts` is set
    /// ([`admission_severity`]).
    pub fn check(&self, obj: &Value, opts: &Options, reject_conflicts: bool) -> ObjectCheck {
        let read = admission::read_object(obj, opts);
        let services = self.services_for(read.resources());
        let (ir, lowered) = read.compile_with(&self.shared, &[], &services);
        let owner = read.object().clone();
        let joins = self.groups_joined(&ir, &owner, read.resources());
        let mut found: Vec<(Diagnostic, Reach)> = Vec::new();
        let alone = |d: &Diagnostic| {
            if awaits_others(d.code) {
                Reach::Awaits
            } else {
                Reach::Own
            }
        };
        for d in lowered {
            // With Mappings of the view in its groups, the group's findings come from the
            // whole group below.
            if read.is_own(&d) && (joins.members.is_empty() || !is_group_finding(d.code)) {
                let reach = alone(&d);
                found.push((d, reach));
            }
        }
        if !joins.members.is_empty() {
            let others: Vec<Resource> = joins
                .members
                .iter()
                .filter_map(|k| self.names.get(k))
                .map(|n| n.resource().clone())
                .collect();
            let (_, whole) = read.compile_with(&self.shared, &others, &services);
            for d in whole.into_iter().filter(|d| is_group_finding(d.code)) {
                if read.is_own(&d) {
                    let joined = d.object.as_ref().is_some_and(|o| joins.own.contains(o));
                    let reach = match alone(&d) {
                        Reach::Own if joined => Reach::Conflict,
                        reach => reach,
                    };
                    found.push((d, reach));
                    continue;
                }
                let Some(theirs) = d.object.clone() else {
                    continue;
                };
                let Some((mine, span)) = joins.attribute.get(&theirs) else {
                    continue;
                };
                // Lint reports some group findings on one member only (the last weighted
                // one, the losers of a precedence split): when that member is the view's,
                // the finding is the incoming object's unless the view already had it.
                if self
                    .group_findings
                    .contains(&(d.code, theirs, d.message.clone()))
                {
                    continue;
                }
                let mut moved = Diagnostic::at(d.code, *span, d.message).with_object(mine);
                moved.help = d.help;
                let reach = match alone(&moved) {
                    Reach::Own => Reach::Conflict,
                    reach => reach,
                };
                found.push((moved, reach));
            }
        }
        let mut conflicts = Vec::new();
        for r in read.resources() {
            if let Some(other) = self.names.get(&id_key(&r.id)).map(Named::owner) {
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
        for vh in &ir.virtual_hosts {
            for route in vh.routes.iter() {
                self.shadowing(&vh.name, route, &owner, &mut conflicts);
            }
        }
        found.extend(conflicts.into_iter().map(|d| (d, Reach::Conflict)));
        let diagnostics = found
            .into_iter()
            .map(|(mut d, reach)| {
                d.severity = admission_severity(d.severity, d.code, reach, reject_conflicts);
                if reach == Reach::Awaits {
                    d.message = format!("{}: {}", admission::AWAITS_NOTE, d.message);
                }
                d
            })
            .collect();
        read.into_check(ir, diagnostics)
    }

    /// The Mappings of the view that share a match with the object's (`ir`, compiled on its
    /// own): the members of the canary groups it joins, and the would-be canaries under
    /// another precedence. The object's previous version is not among them.
    fn groups_joined(&self, ir: &Ir, owner: &ObjectRef, own: &[Resource]) -> Joins {
        let mut joins = Joins::default();
        for vh in &ir.virtual_hosts {
            for route in vh.routes.iter() {
                let Some(idxs) = self
                    .by_group
                    .get(&(Arc::from(vh.name.as_str()), group_match(route)))
                else {
                    continue;
                };
                let mine = &route.sources[0];
                for e in idxs.iter().filter_map(|k| self.entries.get(k)) {
                    for s in &e.route().sources {
                        let theirs = object_of(s);
                        let key = id_key(&theirs);
                        let Some(named) = self.names.get(&key) else {
                            continue;
                        };
                        if named.owner() == owner || own.iter().any(|r| r.id == theirs) {
                            continue;
                        }
                        joins.members.insert(key);
                        joins.own.extend(route.sources.iter().map(object_of));
                        joins
                            .attribute
                            .entry(theirs)
                            .or_insert_with(|| (object_of(mine), mine.span));
                    }
                }
            }
        }
        joins
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
        picked
            .into_iter()
            .map(|i| self.services[i].clone())
            .collect()
    }

    fn foreign<'a>(
        &'a self,
        keys: Option<&'a Vec<EntryKey>>,
        owner: &'a ObjectRef,
    ) -> impl Iterator<Item = &'a Entry> + 'a {
        keys.into_iter()
            .flatten()
            .filter_map(move |k| self.entries.get(k))
            .filter(move |e| !self.owned_by(e, owner))
    }

    /// Whether one of the resources that form the route came from `owner`.
    fn owned_by(&self, e: &Entry, owner: &ObjectRef) -> bool {
        e.route().sources.iter().any(|s| {
            self.names
                .get(&id_key(&object_of(s)))
                .is_some_and(|n| n.owner() == owner)
        })
    }

    /// Shadowing between a route of the object and the view's routes, in either direction.
    fn shadowing(&self, vhost: &str, route: &Route, owner: &ObjectRef, out: &mut Vec<Diagnostic>) {
        let src = &route.sources[0];
        let me = object_of(src);
        let PathMatch::Prefix(q) = &route.matcher.path else {
            return;
        };
        if !route.matcher.case_sensitive {
            return;
        }
        let key = order_key(route);
        let mine = emitted(route);
        // Shadowed by an existing route: a shorter (or equal) prefix that comes first.
        let vhost: Arc<str> = Arc::from(vhost);
        for (k, _) in q.char_indices().chain(std::iter::once((q.len(), ' '))) {
            let idxs = self.prefixes.get(&(Arc::clone(&vhost), q[..k].to_string()));
            for e in self.foreign(idxs, owner) {
                if *e.key() > key && covers_emitted(e.built.emitted(), &mine) {
                    let theirs = &e.route().sources[0];
                    out.push(
                        Diagnostic::at(
                            Code::ShadowedRoute,
                            src.span,
                            format!(
                                "route `{q}` of `{}` would never match: `{}` of {} `{}/{}` comes first and matches everything it does",
                                src.name,
                                e.route().matcher.path.text(),
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
            .precedences
            .get(&vhost)
            .and_then(|p| p.keys().next())
            .is_none_or(|&lowest| route.precedence <= lowest);
        let start = (Arc::clone(&vhost), q.clone());
        let mut reported = 0;
        for ((v, p), idxs) in self.prefixes.range(start..) {
            if *v != vhost || !p.starts_with(q.as_str()) || reported >= MAX_SHADOWED_REPORTS {
                break;
            }
            if only_this_prefix && p.len() != q.len() {
                break;
            }
            for e in self.foreign(Some(idxs), owner) {
                if key > *e.key() && covers_emitted(&mine, e.built.emitted()) {
                    let theirs = &e.route().sources[0];
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

/// The findings on canary groups of a session's configuration.
fn group_findings(session: &Session) -> HashSet<(Code, ObjectRef, String)> {
    session
        .group_diagnostics()
        .filter(|d| is_group_finding(d.code))
        .filter_map(|d| Some((d.code, d.object.clone()?, d.message.clone())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::Severity;
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

    /// [`codes`] without `service-not-found`: these views hold no Services.
    fn found(c: &ObjectCheck) -> Vec<(&'static str, Severity)> {
        codes(c)
            .into_iter()
            .filter(|(c, _)| *c != "AMB409")
            .collect()
    }

    fn view_of(text: &str) -> Context {
        let mut s = Sources::new();
        s.add("view.yaml", text);
        Context::build(&s, &Options::default())
    }

    const CANARY_10: &str = "apiVersion: getambassador.io/v3alpha1\nkind: Mapping\nmetadata: {name: zz-canary, namespace: default}\nspec: {hostname: '*', prefix: /api/, service: api-v2, weight: 10}\n";

    #[test]
    fn a_canary_before_its_group_waits_for_it() {
        let ctx = view_of("");
        let canary = mapping(
            "api-canary",
            json!({"hostname": "*", "prefix": "/api/", "service": "api-v2", "weight": 10}),
        );
        let c = ctx.check(&canary, &Options::default(), false);
        assert_eq!(found(&c), [("AMB303", Severity::Warning)]);
        let d = c
            .diagnostics
            .iter()
            .find(|d| d.code == Code::WeightTotalUnder100);
        let message = &d.unwrap().message;
        assert!(message.starts_with(admission::AWAITS_NOTE), "{message}");
        let c = ctx.check(&canary, &Options::default(), true);
        assert_eq!(found(&c), [("AMB303", Severity::Error)]);
    }

    #[test]
    fn references_to_objects_not_seen_yet_wait_for_them() {
        let ctx = view_of("");
        let obj = mapping(
            "tls",
            json!({"hostname": "*", "prefix": "/t/", "service": "api", "tls": "later", "resolver": "later-resolver"}),
        );
        let c = ctx.check(&obj, &Options::default(), false);
        let got = found(&c);
        for code in ["AMB407", "AMB408"] {
            assert!(got.contains(&(code, Severity::Warning)), "{got:?}");
        }
        assert!(c.diagnostics.iter().all(|d| d.severity != Severity::Error));
        let got = found(&ctx.check(&obj, &Options::default(), true));
        assert!(got.contains(&("AMB407", Severity::Error)), "{got:?}");
        let host = json!({"apiVersion": "getambassador.io/v3alpha1", "kind": "Host", "metadata": {"name": "h", "namespace": "default"}, "spec": {"hostname": "h.example.com", "tlsSecret": {"name": "cert"}, "tlsContext": {"name": "later"}}});
        let got = found(&ctx.check(&host, &Options::default(), false));
        assert!(got.contains(&("AMB407", Severity::Warning)), "{got:?}");
    }

    #[test]
    fn a_group_is_weighed_whole_when_the_view_holds_its_members() {
        let ctx = view_of(CANARY_10);
        // The view's canary waits for this one: together they make 100.
        let base = mapping(
            "api",
            json!({"hostname": "*", "prefix": "/api/", "service": "api", "weight": 90}),
        );
        let c = ctx.check(&base, &Options::default(), true);
        assert!(found(&c).is_empty(), "{:?}", found(&c));
        // 80 + 10: lint reports the total on the view's member (the last weighted one); the
        // incoming object is the one that completes the group, so it is reported there.
        let short = mapping(
            "api",
            json!({"hostname": "*", "prefix": "/api/", "service": "api", "weight": 80}),
        );
        let c = ctx.check(&short, &Options::default(), false);
        assert_eq!(found(&c), [("AMB303", Severity::Warning)]);
        let d = c
            .diagnostics
            .iter()
            .find(|d| d.code != Code::ServiceNotFound)
            .unwrap();
        assert_eq!(d.object.as_ref().unwrap().name, "api");
        assert!(
            d.message.contains("`api`, `zz-canary` add up to 90"),
            "{}",
            d.message
        );
        assert_eq!(d.span.unwrap().file, c.sources.iter().next().unwrap().0);
    }

    #[test]
    fn an_update_is_weighed_with_the_group_but_not_with_its_old_self() {
        let mut s = Sources::new();
        s.add("view.yaml", format!(
            "{CANARY_10}---\napiVersion: getambassador.io/v3alpha1\nkind: Mapping\nmetadata: {{name: api, namespace: default}}\nspec: {{hostname: '*', prefix: /api/, service: api, weight: 90}}\n"
        ));
        let (ctx, findings) = Context::build_with_findings(&s, &Options::default());
        assert!(findings.iter().all(|d| d.code == Code::ServiceNotFound));
        // Moving weight from the base to the canary, base first: 50 + 10 for a moment.
        let base = mapping(
            "api",
            json!({"hostname": "*", "prefix": "/api/", "service": "api", "weight": 50}),
        );
        let c = ctx.check(&base, &Options::default(), false);
        assert_eq!(found(&c), [("AMB303", Severity::Warning)]);
        assert!(c
            .diagnostics
            .iter()
            .find(|d| d.code != Code::ServiceNotFound)
            .unwrap()
            .message
            .contains("add up to 60"));
        // Canary first: 90 + 50, over 100 with the view's member, a conflict.
        let canary = mapping(
            "zz-canary",
            json!({"hostname": "*", "prefix": "/api/", "service": "api-v2", "weight": 50}),
        );
        let got = found(&ctx.check(&canary, &Options::default(), false));
        assert_eq!(got, [("AMB302", Severity::Warning)]);
        let got = found(&ctx.check(&canary, &Options::default(), true));
        assert_eq!(got, [("AMB302", Severity::Error)]);
    }

    #[test]
    fn a_mismatch_with_the_view_is_a_conflict_and_within_the_object_an_error() {
        let ctx = view_of(
            "apiVersion: getambassador.io/v3alpha1\nkind: Mapping\nmetadata: {name: api, namespace: default}\nspec: {hostname: '*', prefix: /api/, service: api, host_redirect: true}\n",
        );
        let canary = mapping(
            "zz-canary",
            json!({"hostname": "*", "prefix": "/api/", "service": "api-v2", "weight": 10}),
        );
        let got = found(&ctx.check(&canary, &Options::default(), false));
        assert!(got.contains(&("AMB305", Severity::Warning)), "{got:?}");
        assert!(!got.iter().any(|(_, s)| *s == Severity::Error), "{got:?}");
        let got = found(&ctx.check(&canary, &Options::default(), true));
        assert!(got.contains(&("AMB305", Severity::Error)), "{got:?}");
        // The same two Mappings in one object: nothing else can settle it.
        let annotation = "apiVersion: getambassador.io/v2\nkind: Mapping\nname: one\nprefix: /one/\nservice: one\nhost_redirect: true\n---\napiVersion: getambassador.io/v2\nkind: Mapping\nname: one-canary\nprefix: /one/\nservice: one-v2\nweight: 10\n";
        let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "one", "namespace": "default", "annotations": {"getambassador.io/config": annotation}}});
        let got = found(&ctx.check(&svc, &Options::default(), false));
        assert!(got.contains(&("AMB305", Severity::Error)), "{got:?}");
    }

    #[test]
    fn findings_about_the_object_alone_deny_whatever_the_view_holds() {
        for view in ["", CANARY_10] {
            let ctx = view_of(view);
            for (spec, code) in [
                (
                    json!({"hostname": "*", "prefix": "/api/", "service": "api", "weight": 150}),
                    "AMB301",
                ),
                (
                    json!({"hostname": "*", "prefix": "/api/", "service": "api:99999", "weight": 90}),
                    "AMB205",
                ),
                (
                    json!({"hostname": "*", "prefix": "/api/", "service": "api", "weight": 90, "timout_ms": 5}),
                    "AMB105",
                ),
                (
                    json!({"hostname": "*", "prefix": "/api/", "service": "api", "weight": "ninety"}),
                    "AMB107",
                ),
                (
                    json!({"hostname": "*", "prefix": "/api/(?=x)", "prefix_regex": true, "service": "api"}),
                    "AMB202",
                ),
            ] {
                let c = ctx.check(&mapping("api", spec), &Options::default(), false);
                assert!(
                    found(&c).contains(&(code, Severity::Error)),
                    "{code}: {:?}",
                    found(&c)
                );
            }
            // Weights over 100 within one object.
            let annotation = "apiVersion: getambassador.io/v2\nkind: Mapping\nname: two\nprefix: /two/\nservice: two\nweight: 60\n---\napiVersion: getambassador.io/v2\nkind: Mapping\nname: two-canary\nprefix: /two/\nservice: two-v2\nweight: 60\n";
            let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "two", "namespace": "default", "annotations": {"getambassador.io/config": annotation}}});
            let got = found(&ctx.check(&svc, &Options::default(), false));
            assert!(got.contains(&("AMB302", Severity::Error)), "{got:?}");
        }
    }
}

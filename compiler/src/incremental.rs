//! Incremental compilation: a session that keeps what it compiled, so that a change to one
//! Mapping costs work in proportion to what changed.
//!
//! [`Session::update`] takes the whole current set of files each time, as
//! [`crate::compile`] does, and answers with the Envoy resources that changed. In between
//! it keeps:
//!
//! - per file, the front end's result (a file whose text did not change is not read);
//! - the [`Context`]: everything lowering reads besides the Mappings (Modules, resolvers,
//!   TLSContexts, Hosts, TCPMappings, the Services and namespaces);
//! - per Mapping, its findings and the groups (match and precedence) it joined in each
//!   virtual host;
//! - per group, its route, encoded once, and the clusters it sends to;
//! - per virtual host, its routes in evaluation order;
//! - per cluster, how many routes send to it.
//!
//! When only Mappings and endpoints changed (in files that hold nothing else but the same
//! Services), the session reads the changed Mappings, rebuilds the groups they leave and
//! join, assembles the route configuration from the encoded routes, and builds again the
//! endpoint assignments of the EDS services whose endpoints changed. Anything else (a Host,
//! a Module, a new namespace, a duplicate name) starts from the files already read, in one
//! full pass.
//!
//! **Architecture invariant:** a session's output is the same as compiling its files from
//! scratch with [`crate::compile`] and [`crate::envoy_resources`]: the same resources,
//! byte for byte, and the same findings. `incremental/tests.rs` checks it over random edits.

mod files;

#[cfg(test)]
mod tests;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};

use crate::diag::{self, Diagnostic};
use crate::envoy::parts::{self, EncodedRoute, Packed, RouteConfigPlan, VirtualHostShell};
use crate::envoy::Variants;
use crate::envoy::{self, CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE, SECRET_TYPE};
use crate::front::{Kind, Manifests, Options, Resource, ServiceInfo};
use crate::ir::{Cluster, InsecureAction, Ir, Route, RouteAction, SecurityModel};
use crate::lower::{
    self, attach, build_group, canary_precedence, dedupe, match_of, order_key, read_mapping,
    Context, Cx, GroupKey, LowerOptions, Lowered, MatchKey, OrderKey,
};
use crate::source::FileId;

use files::{FileChanges, Files};

/// The four resource types, in the order updates list them.
pub const TYPES: [&str; 5] = [
    CLUSTER_TYPE,
    ENDPOINT_TYPE,
    LISTENER_TYPE,
    ROUTE_TYPE,
    SECRET_TYPE,
];

/// One resource that differs from the previous update: its new value, or `None` when it
/// is gone.
#[derive(Debug)]
pub struct Delta {
    pub type_url: &'static str,
    pub name: String,
    pub resource: Option<Packed>,
}

/// Where the time of one update went.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timings {
    /// Reading the files that changed.
    pub front: Duration,
    /// Lowering and checking what changed.
    pub lower: Duration,
    /// Encoding what changed and assembling the resources that contain it.
    pub emit: Duration,
}

/// What one [`Session::update`] did.
#[derive(Debug, Default)]
pub struct Update {
    /// Whether any file was added, removed or changed (nothing is compiled otherwise).
    pub compiled: bool,
    /// Whether the update started from the files (a full pass) rather than from the last
    /// result.
    pub full: bool,
    /// Files read again because their text changed (or they are new).
    pub files_read: usize,
    /// Resources added, changed or removed, by type (in [`TYPES`] order) and name.
    pub deltas: Vec<Delta>,
    /// What changed for the admission view ([`crate::context::Context::apply`]).
    pub view: ViewChange,
    pub timings: Timings,
}

/// What one update changed that the admission view indexes: everything after a full pass;
/// otherwise the files whose Mappings left or arrived, and the routes built again.
#[derive(Debug, Default)]
pub struct ViewChange {
    pub(crate) full: bool,
    /// What the changed files held before, and hold now.
    pub(crate) removed: Vec<Arc<Manifests>>,
    pub(crate) added: Vec<Arc<Manifests>>,
    pub(crate) routes: Vec<RouteChange>,
}

impl ViewChange {
    /// Whether the view changed beyond Mappings (a full pass).
    pub fn is_full(&self) -> bool {
        self.full
    }
}

/// A route of a virtual host that went, came or was built again.
#[derive(Debug)]
pub(crate) struct RouteChange {
    pub vhost: String,
    /// The name of the route it replaces.
    pub old: Option<String>,
    pub new: Option<(Arc<Place>, Arc<Built>)>,
}

/// A compilation that is kept and brought up to date. See the module documentation.
#[derive(Debug, Default)]
pub struct Session {
    front: Options,
    lower: LowerOptions,
    files: Files,
    state: Option<State>,
    /// The version of every resource of the last update, per type (in [`TYPES`] order).
    versions: [HashMap<String, String>; 5],
    /// The findings of the last update, sorted; out of date while `stale`.
    diagnostics: Vec<Diagnostic>,
    stale: bool,
}

/// How many read Mappings one update keeps for its group builds (small in tests, so that
/// the batches of a full pass are exercised).
const KEEP_LOWERED: usize = if cfg!(test) { 8 } else { 1024 };

/// A Mapping's key: namespace and name.
type MKey = (String, String);

/// Where a route goes in its virtual host: descending order key, then name.
pub(crate) type Place = (Reverse<OrderKey>, String);

/// A route, encoded, with what it takes from the configuration.
#[derive(Debug)]
pub(crate) struct Built {
    pub route: Route,
    /// One encoding per security model of the listeners serving the virtual host
    /// (`VhState::models`).
    encoded: Vec<EncodedRoute>,
    /// Its Envoy routes on a listener that routes everything, decoded when admission first
    /// compares a route with it ([`Built::emitted`]), then kept: admission compares a new
    /// route with many existing ones of its prefix, and decoding each every time was most
    /// of that.
    emitted: std::sync::OnceLock<Vec<crate::matcher::Route>>,
}

impl Built {
    /// [`crate::check::emitted`] of the route, decoded once.
    pub(crate) fn emitted(&self) -> &[crate::matcher::Route] {
        self.emitted
            .get_or_init(|| crate::check::emitted(&self.route))
    }
}

#[derive(Debug, Default)]
struct Group {
    members: Vec<MKey>,
    built: Option<(Arc<Place>, Arc<Built>)>,
    /// Clusters the route sends to (one entry per use).
    clusters: Vec<String>,
    diags: Vec<Diagnostic>,
}

#[derive(Debug, Default)]
struct VhState {
    groups: HashMap<GroupKey, Group>,
    /// The routes in evaluation order.
    order: BTreeMap<Arc<Place>, Arc<Built>>,
    /// The bytes the routes of `order` take in the virtual host's encoding.
    routes_len: Vec<usize>,
    /// Precedences of the groups that share a match (would-be canaries), and the findings
    /// about them.
    by_match: HashMap<MatchKey, (BTreeSet<i64>, Vec<Diagnostic>)>,
    /// Findings of the shadowing check.
    check_diags: Vec<Diagnostic>,
    /// The virtual host's encoding around its routes.
    shell: Option<VirtualHostShell>,
    /// The security models of the listeners whose chains serve it: its routes are encoded
    /// once for each.
    models: Vec<SecurityModel>,
    /// What its Host does with insecure requests.
    insecure: Option<InsecureAction>,
}

#[derive(Debug)]
struct MState {
    slot: usize,
    index: usize,
    /// The findings of its own reading and of attaching it.
    diags: Vec<Diagnostic>,
    /// The groups it joined: virtual host and key.
    joined: Vec<(usize, GroupKey)>,
}

#[derive(Debug)]
struct ClusterSlot {
    cluster: Cluster,
    uses: usize,
}

#[derive(Debug)]
struct State {
    ctx: Context,
    /// Listeners, TCP listeners and settings of the configuration; no routes, no clusters.
    skeleton: Ir,
    /// The route configurations and whether each is built for a TLS listener.
    route_configs: Vec<RouteConfigPlan>,
    /// Virtual host index by name.
    vhost_index: HashMap<String, usize>,
    /// Namespace, then names, of the Services read.
    services: HashMap<String, HashSet<String>>,
    /// How many objects (and Services) each namespace has.
    namespaces: HashMap<String, usize>,
    /// How many objects carry each kind, namespace and name.
    ids: HashMap<(Kind, String, String), usize>,
    /// Findings of the full pass that no Mapping change alters.
    fixed_diags: Vec<Diagnostic>,
    mappings: HashMap<MKey, MState>,
    vhosts: Vec<VhState>,
    clusters: HashMap<String, ClusterSlot>,
    /// EDS service names and how many clusters ask for each.
    eds: HashMap<String, usize>,
    /// Upgrade types the routes allow, with counts (the listeners declare them).
    upgrades: BTreeMap<String, usize>,
    /// The SDS secrets last emitted.
    secrets: BTreeSet<String>,
    /// Virtual hosts whose routes changed since their last check.
    unchecked: BTreeSet<usize>,
}

/// What changed below the files in one update, to be emitted.
#[derive(Default)]
struct Dirty {
    /// Groups to build again: virtual host and key (possibly more than once).
    groups: Vec<(usize, GroupKey)>,
    matches: HashSet<(usize, MatchKey)>,
    vhosts: BTreeSet<usize>,
    clusters: BTreeSet<String>,
    eds: BTreeSet<String>,
    listeners: bool,
    /// Routes taken out and built again, for the admission view (fast path only).
    routes: Vec<RouteChange>,
}

impl Session {
    /// A session compiling with these options.
    pub fn new(front: Options, lower: LowerOptions) -> Session {
        Session {
            front,
            lower,
            ..Session::default()
        }
    }

    /// The findings of the last update, sorted by file and position.
    ///
    /// The checks that need a virtual host's whole route table (routes that can never
    /// match) run here, not in [`Session::update`]: they only find, they never change what
    /// Envoy gets, so a caller can publish the update first and ask for its findings after.
    pub fn diagnostics(&mut self) -> &[Diagnostic] {
        if self.stale {
            if let Some(state) = &mut self.state {
                check_routes(state);
                self.diagnostics = collect_diags(state, &self.files);
            }
            self.stale = false;
        }
        &self.diagnostics
    }

    /// The findings as [`Session::diagnostics`] last made them (without running checks
    /// that are due).
    pub fn current_diagnostics(&self) -> &[Diagnostic] {
        &self.diagnostics
    }

    /// The AuthServices of the configuration as it stands, when they cannot be compiled:
    /// the configuration refuses (500) every request they would have checked, until they
    /// are fixed. Their findings say why.
    pub fn auth_misconfigured(&self) -> Option<&[crate::ir::SourceRef]> {
        let auth = self.state.as_ref()?.ctx.auth.as_ref()?;
        auth.check.is_none().then_some(auth.sources.as_slice())
    }

    /// The name of the file a position points into.
    pub fn file_name(&self, id: FileId) -> &str {
        self.files.file_name(id)
    }

    /// What the front end read from each file, in input order.
    pub(crate) fn files(&self) -> impl Iterator<Item = &Arc<Manifests>> {
        self.files.in_order().map(|(_, c)| &c.manifests)
    }

    /// Every route of the configuration: its virtual host, place and route.
    pub(crate) fn routes(&self) -> impl Iterator<Item = (&str, &Arc<Place>, &Arc<Built>)> {
        self.state.iter().flat_map(|state| {
            state.vhosts.iter().enumerate().flat_map(move |(v, vh)| {
                let name = state.ctx.vhosts[v].vh.name.as_str();
                vh.order.iter().map(move |(p, b)| (name, p, b))
            })
        })
    }

    /// The findings of lowering (Mappings, their groups, the rest of the configuration),
    /// without the front end's and the route-table checks': current after every update.
    pub(crate) fn group_diagnostics(&self) -> impl Iterator<Item = &Diagnostic> {
        self.state.iter().flat_map(|state| {
            let vhosts = state.vhosts.iter().flat_map(|vh| {
                vh.groups
                    .values()
                    .flat_map(|g| g.diags.iter())
                    .chain(vh.by_match.values().flat_map(|(_, d)| d.iter()))
            });
            state
                .fixed_diags
                .iter()
                .chain(state.mappings.values().flat_map(|m| m.diags.iter()))
                .chain(vhosts)
        })
    }

    /// Brings the session to `sources` (file name and text, in the order objects should be
    /// read: a later duplicate replaces an earlier one) and returns what changed.
    pub fn update<N: AsRef<str>, T: AsRef<str>>(&mut self, sources: Vec<(N, T)>) -> Update {
        let mut update = Update::default();
        let t = Instant::now();
        let changes = self.files.update(sources, &self.front);
        update.timings.front = t.elapsed();
        update.files_read = changes.files_read;
        if changes.changed.is_empty()
            && !changes.reset
            && !changes.reordered
            && self.state.is_some()
        {
            return update;
        }
        update.compiled = true;
        let t = Instant::now();
        let mut out = Output::default();
        let fast = !changes.reset && self.state.is_some() && self.local(&changes);
        if fast {
            for c in &changes.changed {
                update.view.removed.extend(c.old.iter().cloned());
                if let Some(chunk) = c.present.then(|| self.files.get(c.slot)).flatten() {
                    update.view.added.push(Arc::clone(&chunk.manifests));
                }
            }
            self.apply(changes, &mut out);
            update.view.routes = std::mem::take(&mut out.dirty.routes);
        } else {
            update.full = true;
            update.view.full = true;
            self.rebuild(&mut out);
            out.dirty.routes.clear();
        }
        update.timings.lower = t.elapsed();
        let t = Instant::now();
        let state = self.state.as_mut().expect("a state after every update");
        emit(state, &self.files, out.dirty, update.full, &mut out.packed);
        self.stale = true;
        update.deltas = self.deltas(out.packed, update.full);
        update.timings.emit = t.elapsed();
        update
    }

    /// Whether the change touches nothing but Mappings and endpoints: every changed file
    /// held, and holds, only Mappings, endpoints and the same Services; no namespace appears
    /// or empties; no Mapping shares its name with another.
    fn local(&self, changes: &FileChanges) -> bool {
        let Some(state) = &self.state else {
            return false;
        };
        if changes.reordered {
            // Order decides which duplicate wins; without duplicates it decides nothing,
            // but a reorder is rare enough to take the full pass.
            return false;
        }
        let empty = Manifests::default();
        let mut ns_delta: HashMap<&str, i64> = HashMap::new();
        let mut id_delta: HashMap<(&str, &str), i64> = HashMap::new();
        for c in changes.changed.iter() {
            let old = c.old.as_deref().unwrap_or(&empty);
            let new = if c.present {
                match self.files.get(c.slot) {
                    Some(chunk) => &*chunk.manifests,
                    None => return false,
                }
            } else {
                &empty
            };
            for m in [old, new] {
                if m.resources.iter().any(|r| r.kind != Kind::Mapping) {
                    return false;
                }
            }
            // A Secret decides whether a Host terminates TLS: the full pass.
            if !same_services(&old.services, &new.services) || old.secrets != new.secrets {
                return false;
            }
            for (m, sign) in [(old, -1), (new, 1)] {
                for r in &m.resources {
                    *ns_delta.entry(&r.id.namespace).or_default() += sign;
                    *id_delta.entry((&r.id.namespace, &r.id.name)).or_default() += sign;
                }
            }
        }
        for (ns, d) in ns_delta {
            let before = state.namespaces.get(ns).copied().unwrap_or(0) as i64;
            if (before == 0) != (before + d == 0) {
                return false;
            }
        }
        for ((ns, name), d) in id_delta {
            let key = (Kind::Mapping, ns.to_string(), name.to_string());
            let before = state.ids.get(&key).copied().unwrap_or(0) as i64;
            if before > 1 || before + d > 1 {
                return false;
            }
        }
        true
    }

    /// The fast path: remove the Mappings of the old texts, add those of the new.
    fn apply(&mut self, changes: FileChanges, out: &mut Output) {
        let state = self.state.as_mut().expect("checked by `local`");
        let files = &self.files;
        let mut added: Vec<(usize, usize)> = Vec::new();
        // Endpoints change only the assignments of the EDS services they belong to.
        let mut touched: BTreeSet<(String, String)> = BTreeSet::new();
        for c in &changes.changed {
            let now = c.present.then(|| files.get(c.slot)).flatten();
            for e in c
                .old
                .iter()
                .flat_map(|m| m.endpoints.iter())
                .chain(now.into_iter().flat_map(|f| f.manifests.endpoints.iter()))
            {
                touched.insert((e.namespace.clone(), e.service.clone()));
            }
        }
        for name in state.eds.keys() {
            let Some((ns, svc, _)) = envoy::parse_eds_service_name(name) else {
                continue;
            };
            if touched.contains(&(ns.to_string(), svc.to_string())) {
                out.dirty.eds.insert(name.clone());
            }
        }
        for c in changes.changed {
            if let Some(old) = &c.old {
                for r in &old.resources {
                    count(state, r, false);
                    remove_mapping(state, r, &mut out.dirty);
                }
            }
            if c.present {
                if let Some(chunk) = files.get(c.slot) {
                    for (i, r) in chunk.manifests.resources.iter().enumerate() {
                        count(state, r, true);
                        added.push((c.slot, i));
                    }
                }
            }
        }
        let mut lowered: HashMap<MKey, Lowered> = HashMap::new();
        for (slot, i) in added {
            add_mapping(state, files, slot, i, &mut lowered, &mut out.dirty);
        }
        rebuild_groups(state, files, lowered, &mut out.dirty);
    }

    /// The full pass: a new context from every file, every Mapping added again.
    fn rebuild(&mut self, out: &mut Output) {
        let files = &self.files;
        let all: Vec<&Resource> = files
            .in_order()
            .flat_map(|(_, c)| c.manifests.resources.iter())
            .collect();
        let services: Vec<&ServiceInfo> = files
            .in_order()
            .flat_map(|(_, c)| c.manifests.services.iter())
            .collect();
        let secrets = files
            .in_order()
            .flat_map(|(_, c)| c.manifests.secrets.iter());
        let mut fixed_diags = Vec::new();
        let active = dedupe(all.clone(), &mut fixed_diags);
        let ctx = Context::build(
            &active,
            all.iter().copied(),
            services.iter().copied(),
            secrets,
            &self.lower,
        );
        fixed_diags.extend(ctx.diags.iter().cloned());
        let skeleton = Ir {
            listeners: ctx.listeners.clone(),
            virtual_hosts: Vec::new(),
            clusters: BTreeMap::new(),
            tcp_listeners: ctx.tcp_listeners.clone(),
            settings: ctx.settings.clone(),
            auth: ctx.auth.clone(),
            rate_limit: ctx.rate_limit.clone(),
            access_log: ctx.access_log.clone(),
            tracing: ctx.tracing.clone(),
        };
        let route_configs = parts::route_configuration_plans(&skeleton);
        let vhost_index: HashMap<String, usize> = ctx
            .vhosts
            .iter()
            .enumerate()
            .map(|(i, v)| (v.vh.name.clone(), i))
            .collect();
        let mut vhosts: Vec<VhState> = ctx
            .vhosts
            .iter()
            .map(|v| VhState {
                shell: Some(VirtualHostShell::new(&v.vh, ctx.settings.cors.as_ref())),
                insecure: Some(v.vh.insecure),
                ..VhState::default()
            })
            .collect();
        for plan in &route_configs {
            for (name, model) in &plan.virtual_hosts {
                if let Some(&v) = vhost_index.get(name) {
                    if !vhosts[v].models.contains(model) {
                        vhosts[v].models.push(*model);
                        vhosts[v].routes_len.push(0);
                    }
                }
            }
        }
        let mut service_set: HashMap<String, HashSet<String>> = HashMap::new();
        let mut namespaces: HashMap<String, usize> = HashMap::new();
        for s in &services {
            service_set
                .entry(s.namespace.to_string())
                .or_default()
                .insert(s.name.to_string());
            *namespaces.entry(s.namespace.to_string()).or_default() += 1;
        }
        let mut ids: HashMap<(Kind, String, String), usize> = HashMap::new();
        for r in &all {
            *namespaces.entry(r.id.namespace.to_string()).or_default() += 1;
            *ids.entry((r.kind, r.id.namespace.to_string(), r.id.name.to_string()))
                .or_default() += 1;
        }
        let mut clusters = HashMap::new();
        for (name, c) in &ctx.held_clusters {
            // Held by their listeners for as long as the context lives.
            clusters.insert(
                name.clone(),
                ClusterSlot {
                    cluster: c.clone(),
                    uses: 1,
                },
            );
            out.dirty.clusters.insert(name.clone());
        }
        // Where each active Mapping is. `dedupe` keeps the order of `all`, so the two lists
        // are walked side by side.
        let places = files
            .in_order()
            .flat_map(|(slot, c)| (0..c.manifests.resources.len()).map(move |i| (slot, i)));
        let mut kept = active.iter().peekable();
        let mapping_places: Vec<(usize, usize)> = all
            .iter()
            .zip(places)
            .filter(|(r, _)| kept.next_if(|a| std::ptr::eq(**a, **r)).is_some())
            .filter(|(r, _)| r.kind == Kind::Mapping)
            .map(|(_, place)| place)
            .collect();
        self.state = Some(State {
            ctx,
            skeleton,
            route_configs,
            vhost_index,
            services: service_set,
            namespaces,
            ids,
            fixed_diags,
            mappings: HashMap::new(),
            vhosts,
            clusters,
            eds: HashMap::new(),
            upgrades: BTreeMap::new(),
            secrets: BTreeSet::new(),
            unchecked: BTreeSet::new(),
        });
        let state = self.state.as_mut().expect("just set");
        out.dirty.listeners = true;
        out.dirty.vhosts.extend(0..state.vhosts.len());
        // In batches: each batch's Mappings are read once and kept for the builds of their
        // groups, then dropped. A group with members in several batches is built again
        // with each (a canary pair across files), which gives the same result.
        for batch in mapping_places.chunks(KEEP_LOWERED) {
            let mut lowered: HashMap<MKey, Lowered> = HashMap::with_capacity(batch.len());
            for &(slot, i) in batch {
                add_mapping(state, files, slot, i, &mut lowered, &mut out.dirty);
            }
            rebuild_groups(state, files, lowered, &mut out.dirty);
        }
    }

    /// Compares the packed resources with the last versions: what changed, in type and
    /// name order. A full pass also removes what it did not produce.
    fn deltas(&mut self, packed: [BTreeMap<String, Option<Packed>>; 5], full: bool) -> Vec<Delta> {
        let mut deltas = Vec::new();
        for (t, set) in packed.into_iter().enumerate() {
            let versions = &mut self.versions[t];
            let mut gone: Vec<String> = Vec::new();
            if full {
                gone = versions
                    .keys()
                    .filter(|n| !set.contains_key(*n))
                    .cloned()
                    .collect();
                gone.sort();
            }
            let mut out: Vec<Delta> = Vec::new();
            for (name, resource) in set {
                match resource {
                    Some(p) => {
                        if versions.get(&name) == Some(&p.version) {
                            continue;
                        }
                        versions.insert(name.clone(), p.version.clone());
                        out.push(Delta {
                            type_url: TYPES[t],
                            name,
                            resource: Some(p),
                        });
                    }
                    None => {
                        if versions.remove(&name).is_some() {
                            out.push(Delta {
                                type_url: TYPES[t],
                                name,
                                resource: None,
                            });
                        }
                    }
                }
            }
            for name in gone {
                versions.remove(&name);
                out.push(Delta {
                    type_url: TYPES[t],
                    name,
                    resource: None,
                });
            }
            out.sort_by(|a, b| a.name.cmp(&b.name));
            deltas.extend(out);
        }
        deltas
    }
}

#[derive(Default)]
struct Output {
    dirty: Dirty,
    /// Per type, resources produced (`Some`) or known to be gone (`None`).
    packed: [BTreeMap<String, Option<Packed>>; 5],
}

fn same_services(a: &[ServiceInfo], b: &[ServiceInfo]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.namespace == y.namespace
                && x.name == y.name
                && x.ports.len() == y.ports.len()
                && x.ports.iter().zip(&y.ports).all(|(p, q)| {
                    p.name == q.name && p.port == q.port && p.target_port == q.target_port
                })
        })
}

/// Counts an object in (or out of) the namespaces and names.
fn count(state: &mut State, r: &Resource, add: bool) {
    let ns = state
        .namespaces
        .entry(r.id.namespace.to_string())
        .or_default();
    let id = state
        .ids
        .entry((r.kind, r.id.namespace.to_string(), r.id.name.to_string()))
        .or_default();
    if add {
        *ns += 1;
        *id += 1;
    } else {
        *ns = ns.saturating_sub(1);
        *id = id.saturating_sub(1);
    }
}

fn key_of(r: &Resource) -> MKey {
    (r.id.namespace.to_string(), r.id.name.to_string())
}

/// Reads a Mapping in the context of `state`, and the virtual hosts it joins; with the
/// findings of both.
fn read_one<'f>(
    state: &State,
    r: &'f Resource,
) -> (Option<Lowered<'f>>, Vec<usize>, Vec<Diagnostic>) {
    let has_service = |ns: &str, name: &str| {
        state
            .services
            .get(ns)
            .is_some_and(|names| names.contains(name))
    };
    let mut cx = Cx {
        diags: Vec::new(),
        known_namespaces: &state.ctx.known_namespaces,
    };
    let read = read_mapping(r, &r.spec, &state.ctx, &has_service, &mut cx);
    let joined = match &read {
        Some(l) => attach(l, &state.ctx.vhosts, &mut cx),
        None => Vec::new(),
    };
    (read, joined, cx.diags)
}

/// Reads the Mapping at (slot, index) again: for the members of a group being rebuilt.
fn reread<'f>(state: &State, files: &'f Files, slot: usize, index: usize) -> Option<Lowered<'f>> {
    let r = files.get(slot)?.manifests.resources.get(index)?;
    read_one(state, r).0
}

/// Takes a Mapping out of its groups.
fn remove_mapping(state: &mut State, r: &Resource, dirty: &mut Dirty) {
    let key = key_of(r);
    let Some(m) = state.mappings.remove(&key) else {
        return;
    };
    for (v, gk) in m.joined {
        if let Some(g) = state.vhosts[v].groups.get_mut(&gk) {
            g.members.retain(|k| *k != key);
        }
        dirty.groups.push((v, gk));
    }
}

/// Reads a Mapping and puts it in its groups.
fn add_mapping<'f>(
    state: &mut State,
    files: &'f Files,
    slot: usize,
    index: usize,
    lowered: &mut HashMap<MKey, Lowered<'f>>,
    dirty: &mut Dirty,
) {
    let Some(r) = files
        .get(slot)
        .and_then(|c| c.manifests.resources.get(index))
    else {
        return;
    };
    let key = key_of(r);
    let (read, vhosts, mut diags) = read_one(state, r);
    let mut joined = Vec::with_capacity(vhosts.len());
    if let Some(l) = read {
        for v in vhosts {
            let gk = GroupKey {
                matcher: match_of(&l),
                precedence: l.precedence,
            };
            joined.push((v, gk));
        }
        // Kept for the group builds of this update, up to a bound: a full pass over many
        // Mappings reads them again instead of holding them all at once.
        if lowered.len() < KEEP_LOWERED {
            lowered.insert(key.clone(), l);
        }
    }
    diags.shrink_to_fit();
    for (v, gk) in &joined {
        state.vhosts[*v]
            .groups
            .entry(gk.clone())
            .or_default()
            .members
            .push(key.clone());
        dirty.groups.push((*v, gk.clone()));
    }
    state.mappings.insert(
        key,
        MState {
            slot,
            index,
            diags,
            joined,
        },
    );
}

/// Builds the dirty groups again, then the precedence findings of their matches.
fn rebuild_groups<'f>(
    state: &mut State,
    files: &'f Files,
    mut lowered: HashMap<MKey, Lowered<'f>>,
    dirty: &mut Dirty,
) {
    let marked = std::mem::take(&mut dirty.groups);
    let mut seen: HashSet<(usize, &GroupKey)> = HashSet::new();
    for (v, gk) in &marked {
        let v = *v;
        if !seen.insert((v, gk)) {
            continue;
        }
        dirty.vhosts.insert(v);
        dirty.matches.insert((v, gk.matcher.clone()));
        // Take the old route out.
        let Some(group) = state.vhosts[v].groups.get_mut(gk) else {
            continue;
        };
        let old_place = group.built.take().map(|(p, _)| p);
        let old_name = old_place.as_ref().map(|p| p.1.clone());
        let old_clusters = std::mem::take(&mut group.clusters);
        let members = group.members.clone();
        if let Some(place) = old_place {
            if let Some(b) = state.vhosts[v].order.remove(&place) {
                for (len, e) in state.vhosts[v].routes_len.iter_mut().zip(&b.encoded) {
                    *len -= e.element_len();
                }
                count_upgrades(&mut state.upgrades, &b.route, false, dirty);
            }
        }
        let vhost = &state.ctx.vhosts[v].vh.name;
        if members.is_empty() {
            if old_name.is_some() {
                dirty.routes.push(RouteChange {
                    vhost: vhost.clone(),
                    old: old_name,
                    new: None,
                });
            }
            state.vhosts[v].groups.remove(gk);
            let entry = state.vhosts[v].by_match.get_mut(&gk.matcher);
            if let Some((precs, _)) = entry {
                precs.remove(&gk.precedence);
            }
        } else {
            // Members read in this update, and the others read again for this group only.
            let again: Vec<Lowered> = members
                .iter()
                .filter(|k| !lowered.contains_key(*k))
                .filter_map(|k| state.mappings.get(k))
                .filter_map(|m| reread(state, files, m.slot, m.index))
                .collect();
            let group_members: Vec<&Lowered> = members
                .iter()
                .filter_map(|k| lowered.get(k))
                .chain(again.iter())
                .collect();
            let mut cx = Cx {
                diags: Vec::new(),
                known_namespaces: &state.ctx.known_namespaces,
            };
            let mut used: Vec<&Lowered> = Vec::new();
            let route = build_group(
                gk.clone(),
                group_members,
                &state.ctx.settings,
                &mut cx,
                &mut used,
            );
            let diags = cx.diags;
            let mut clusters = Vec::with_capacity(used.len());
            for l in used {
                use_cluster(state, l, dirty);
                clusters.push(l.cluster_name.clone());
            }
            let built = route.map(|route| {
                count_upgrades(&mut state.upgrades, &route, true, dirty);
                let place = Arc::new((Reverse(order_key(&route)), route.name.clone()));
                let vh = &state.vhosts[v];
                let insecure = vh.insecure.unwrap_or(InsecureAction::Route);
                let auth = state.ctx.auth.is_some();
                let encoded = vh
                    .models
                    .iter()
                    .map(|&security| {
                        parts::encode_route(
                            &route,
                            Variants {
                                security,
                                insecure,
                                auth,
                            },
                        )
                    })
                    .collect();
                (
                    place,
                    Arc::new(Built {
                        route,
                        encoded,
                        emitted: std::sync::OnceLock::new(),
                    }),
                )
            });
            if old_name.is_some() || built.is_some() {
                dirty.routes.push(RouteChange {
                    vhost: state.ctx.vhosts[v].vh.name.clone(),
                    old: old_name,
                    new: built.as_ref().map(|(p, b)| (Arc::clone(p), Arc::clone(b))),
                });
            }
            let vh = &mut state.vhosts[v];
            if let Some((place, b)) = &built {
                for (len, e) in vh.routes_len.iter_mut().zip(&b.encoded) {
                    *len += e.element_len();
                }
                vh.order.insert(Arc::clone(place), Arc::clone(b));
            }
            vh.by_match
                .entry(gk.matcher.clone())
                .or_default()
                .0
                .insert(gk.precedence);
            let group = vh.groups.get_mut(gk).expect("checked above");
            group.built = built;
            group.diags = diags;
            group.members.shrink_to_fit();
            group.clusters = clusters;
        }
        for name in old_clusters {
            release_cluster(state, &name, dirty);
        }
    }
    // Would-be canaries: every group of each touched match.
    let matches: Vec<(usize, MatchKey)> = std::mem::take(&mut dirty.matches).into_iter().collect();
    for (v, matcher) in matches {
        let precs: Vec<i64> = match state.vhosts[v].by_match.get(&matcher) {
            Some((p, _)) => p.iter().copied().collect(),
            None => continue,
        };
        if precs.is_empty() {
            state.vhosts[v].by_match.remove(&matcher);
            continue;
        }
        let mut diags = Vec::new();
        if precs.len() > 1 {
            let keys: Vec<GroupKey> = precs
                .into_iter()
                .map(|p| GroupKey {
                    matcher: matcher.clone(),
                    precedence: p,
                })
                .filter(|gk| state.vhosts[v].groups.contains_key(gk))
                .collect();
            for gk in &keys {
                for k in &state.vhosts[v].groups[gk].members {
                    if !lowered.contains_key(k) {
                        if let Some(m) = state.mappings.get(k) {
                            if let Some(l) = reread(state, files, m.slot, m.index) {
                                lowered.insert(k.clone(), l);
                            }
                        }
                    }
                }
            }
            let groups: Vec<(GroupKey, Vec<&Lowered>)> = keys
                .into_iter()
                .map(|gk| {
                    let mut members: Vec<&Lowered> = state.vhosts[v].groups[&gk]
                        .members
                        .iter()
                        .filter_map(|k| lowered.get(k))
                        .collect();
                    lower::sort_members(&mut members);
                    (gk, members)
                })
                .collect();
            let mut cx = Cx {
                diags: Vec::new(),
                known_namespaces: &state.ctx.known_namespaces,
            };
            canary_precedence(&groups, &mut cx);
            diags = cx.diags;
        }
        if let Some(entry) = state.vhosts[v].by_match.get_mut(&matcher) {
            entry.1 = diags;
        }
    }
}

fn count_upgrades(
    upgrades: &mut BTreeMap<String, usize>,
    route: &Route,
    add: bool,
    dirty: &mut Dirty,
) {
    let RouteAction::Forward(f) = &route.action else {
        return;
    };
    for u in &f.settings.upgrades {
        if add {
            let n = upgrades.entry(u.clone()).or_default();
            *n += 1;
            if *n == 1 {
                dirty.listeners = true;
            }
        } else if let Some(n) = upgrades.get_mut(u) {
            *n -= 1;
            if *n == 0 {
                upgrades.remove(u);
                dirty.listeners = true;
            }
        }
    }
}

/// Counts a use of the cluster a Mapping sends to, made when it is the first.
fn use_cluster(state: &mut State, m: &Lowered, dirty: &mut Dirty) {
    if let Some(slot) = state.clusters.get_mut(&m.cluster_name) {
        slot.uses += 1;
        return;
    }
    let mut cluster = state.ctx.cluster_of(m);
    cluster.sources.clear();
    if let Some(eds) = envoy::eds_service_of(&cluster) {
        let n = state.eds.entry(eds.clone()).or_default();
        *n += 1;
        if *n == 1 {
            dirty.eds.insert(eds);
        }
    }
    dirty.clusters.insert(cluster.name.clone());
    state
        .clusters
        .insert(cluster.name.clone(), ClusterSlot { cluster, uses: 1 });
}

fn release_cluster(state: &mut State, name: &str, dirty: &mut Dirty) {
    let Some(slot) = state.clusters.get_mut(name) else {
        return;
    };
    slot.uses -= 1;
    if slot.uses > 0 {
        return;
    }
    let slot = state.clusters.remove(name).expect("just found");
    dirty.clusters.insert(name.to_string());
    if let Some(eds) = envoy::eds_service_of(&slot.cluster) {
        if let Some(n) = state.eds.get_mut(&eds) {
            *n -= 1;
            if *n == 0 {
                state.eds.remove(&eds);
                dirty.eds.insert(eds);
            }
        }
    }
}

/// Runs the route-table checks of the virtual hosts whose routes changed.
fn check_routes(state: &mut State) {
    let auth = state.ctx.auth.is_some();
    for v in std::mem::take(&mut state.unchecked) {
        let vh = &mut state.vhosts[v];
        let routes: Vec<&Route> = vh.order.values().map(|b| &b.route).collect();
        let insecure = vh.insecure.unwrap_or(InsecureAction::Route);
        let variants: Vec<Variants> = vh
            .models
            .iter()
            .map(|&security| Variants {
                security,
                insecure,
                auth,
            })
            .collect();
        let mut diags = Vec::new();
        crate::check::shadowing(&routes, &variants, &mut diags);
        vh.check_diags = diags;
    }
}

/// Encodes what changed, and notes the virtual hosts to check.
fn emit(
    state: &mut State,
    files: &Files,
    dirty: Dirty,
    full: bool,
    packed: &mut [BTreeMap<String, Option<Packed>>; 5],
) {
    state.unchecked.extend(dirty.vhosts.iter().copied());
    for name in &dirty.clusters {
        let p = state.clusters.get(name).map(|s| parts::cluster(&s.cluster));
        packed[0].insert(name.clone(), p);
    }
    for name in &dirty.eds {
        let p = state.eds.contains_key(name).then(|| {
            let addrs = envoy::parse_eds_service_name(name)
                .map(|(ns, svc, port)| {
                    // The files in input order, as a compile from scratch sees them.
                    crate::endpoints_among(
                        files
                            .in_order()
                            .flat_map(|(_, c)| c.manifests.services.iter()),
                        files
                            .in_order()
                            .flat_map(|(_, c)| c.manifests.endpoints.iter()),
                        ns,
                        svc,
                        port,
                    )
                })
                .unwrap_or_default();
            Packed::of(&envoy::endpoints(name, &addrs))
        });
        packed[1].insert(name.clone(), p);
    }
    // Only a cluster that originates TLS (or one removed, whose TLS is not known any more)
    // can change the upstream secrets: most Mapping edits skip this walk over the clusters.
    let upstream_tls_changed = dirty.clusters.iter().any(|n| {
        state
            .clusters
            .get(n)
            .is_none_or(|slot| slot.cluster.tls.is_some())
    });
    if full || upstream_tls_changed {
        // The secrets the listeners and clusters name: a Secret, a Host or a Listener
        // changes with a full pass, an upstream certificate with the clusters.
        let secrets = envoy::secrets(
            &state.skeleton.listeners,
            &state.skeleton.tcp_listeners,
            state.clusters.values().map(|s| &s.cluster),
            files
                .in_order()
                .flat_map(|(_, c)| c.manifests.secrets.iter()),
        );
        let names: BTreeSet<String> = secrets.iter().map(|s| s.name.clone()).collect();
        for gone in state.secrets.difference(&names) {
            packed[4].insert(gone.clone(), None);
        }
        for sec in &secrets {
            packed[4].insert(sec.name.clone(), Some(Packed::of(sec)));
        }
        state.secrets = names;
    }
    if dirty.listeners || full {
        let upgrades: BTreeSet<String> = std::iter::once("websocket".to_owned())
            .chain(state.upgrades.keys().cloned())
            .collect();
        for p in parts::listeners(&state.skeleton, &upgrades) {
            packed[2].insert(p.name.clone(), Some(p));
        }
    }
    if !dirty.vhosts.is_empty() || full {
        for plan in &state.route_configs {
            let vhosts = plan.virtual_hosts.iter().filter_map(|(name, model)| {
                let vh = &state.vhosts[*state.vhost_index.get(name)?];
                let m = vh.models.iter().position(|x| x == model)?;
                Some((
                    vh.shell.as_ref()?,
                    vh.order.values().map(move |b| &b.encoded[m]),
                    vh.routes_len[m],
                ))
            });
            let p = parts::route_configuration(&plan.name, vhosts);
            packed[3].insert(plan.name.clone(), Some(p));
        }
    }
}

/// Every finding of the configuration as it stands, sorted, each said once.
fn collect_diags(state: &State, files: &Files) -> Vec<Diagnostic> {
    let mut all: Vec<Diagnostic> = Vec::new();
    for (_, c) in files.in_order() {
        all.extend(c.manifests.diagnostics.iter().cloned());
    }
    all.extend(state.fixed_diags.iter().cloned());
    for m in state.mappings.values() {
        all.extend(m.diags.iter().cloned());
    }
    for vh in &state.vhosts {
        for g in vh.groups.values() {
            all.extend(g.diags.iter().cloned());
        }
        for (_, d) in vh.by_match.values() {
            all.extend(d.iter().cloned());
        }
        all.extend(vh.check_diags.iter().cloned());
    }
    diag::sort(&mut all);
    all.dedup_by(|a, b| a.code == b.code && a.span == b.span && a.message == b.message);
    all
}

//! Resources to IR: defaults, Hosts and virtual hosts, service resolution, grouping, precedence order, canary weights.
//!
//! Ambassador's semantics are described in `shared/reference/ambassador-semantics.md`; the
//! places where this compiler deliberately differs are listed in ARCHITECTURE.md. One rule
//! runs through the pass: an object with an error that makes it unusable is reported and
//! left out, and everything else keeps flowing.

mod auth;
mod cluster;
mod context;
mod group;
mod grpc;
mod hosts;
mod listeners;
mod logservice;
pub mod mapping;
mod order;
mod ratelimit;
pub mod service;
mod tcp;
mod tracing;

use std::sync::{Mutex, PoisonError};

use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};

use crate::diag::{Code, Diagnostic, ObjectRef};
use crate::front::yaml::{Node, NodeKind};
use crate::front::{Kind, Manifests, Resource, ServiceInfo};
use crate::ir::{Ir, PathMatch, RedirectPath, Route, RouteAction, SourceObject, SourceRef};
use crate::source::Span;
use mapping::{Mapping, Reader};

// The pass's parts, under the paths the rest of the crate (and the plugin) use.
use cluster::{used_clusters, Sends};
use context::check_references;
pub(crate) use context::Context;
pub(crate) use group::{
    build_group, canary_precedence, match_of, sort_members, GroupKey, MatchKey,
};
use group::{build_routes, Member};
pub use hosts::globs_intersect;
use hosts::VHosts;
pub(crate) use order::sort_routes;
pub use order::{order_key, OrderKey};

/// Settings of the lowering pass.
#[derive(Clone, Debug)]
pub struct LowerOptions {
    /// Where the HTTP listeners listen.
    pub listen_address: String,
    /// Cleartext HTTP port (Ambassador's default 8080).
    pub http_port: u16,
    /// TLS port (Ambassador's default 8443), used when a Host or TLSContext terminates TLS.
    pub https_port: u16,
    /// The input holds every Secret (the publisher's view of a cluster or directory): a Host
    /// whose Secret is missing has its TLS left out, since Envoy would keep the whole
    /// listener waiting for the certificate. Off for files given to lint and preview, which
    /// usually keep Secrets out of version control.
    pub secrets_known: bool,
    /// The time certificates are checked against, in seconds since the epoch; `None` skips
    /// the expiry check. The compiler reads no clock: callers pass the time.
    pub now: Option<i64>,
    /// Free each Mapping's YAML tree once it is read ([`lower_releasing`]): for callers
    /// that read nothing of the Mapping resources after compiling (`lint`, `preview`).
    pub release_mapping_fields: bool,
    /// Called where lowering and [`crate::compile_findings`] have just freed much of what
    /// they hold, so that a caller whose allocator keeps freed pages for a while can hand
    /// them back to the system there, a few times, rather than on every free (`lint`): after
    /// the context is built, after each run of Mappings read (each frees the trees it took),
    /// once the Mappings are read, and before the check. It may be called from any of
    /// lowering's threads.
    pub freed: Option<fn()>,
    /// The caller ends its process once [`crate::compile_findings`] returns (`lint`): the IR
    /// the findings were checked on is then left for the process's end to free, all at once,
    /// rather than freed object by object (3.5 ms of `lint` over 20,000 Mappings, on one
    /// core, after everything else is done).
    pub exits_after: bool,
}

/// Calls [`LowerOptions::freed`], if set.
pub(crate) fn after_freeing(freed: Option<fn()>) {
    if let Some(f) = freed {
        f();
    }
}

impl Default for LowerOptions {
    fn default() -> Self {
        LowerOptions {
            listen_address: "0.0.0.0".into(),
            http_port: 8080,
            https_port: 8443,
            secrets_known: false,
            now: None,
            release_mapping_fields: false,
            freed: None,
            exits_after: false,
        }
    }
}

/// Lowers the resources read by [`crate::front`] into the IR.
pub fn lower(m: &Manifests, opts: &LowerOptions) -> (Ir, Vec<Diagnostic>) {
    lower_with(m, None, None, opts, true)
}

/// [`lower`], freeing each Mapping's YAML tree once the Mapping is read (most of what the
/// objects as read hold at lowering's peak): the Mapping resources of `m` are left with an
/// empty `spec`. For callers that read nothing of them afterwards (`lint`, `preview`); the
/// IR and the diagnostics are those of [`lower`].
pub fn lower_releasing(m: &mut Manifests, opts: &LowerOptions) -> (Ir, Vec<Diagnostic>) {
    let specs = take_specs(m);
    lower_with(m, Some(specs), None, opts, true)
}

/// [`lower_releasing`], freeing the Services too once the Mappings are read: `m` is left
/// without them, and the IR without the clusters of Mappings (no finding is about them:
/// the check reads the routes, which name their clusters). For [`crate::compile_findings`].
pub(crate) fn lower_for_findings(m: &mut Manifests, opts: &LowerOptions) -> (Ir, Vec<Diagnostic>) {
    let specs = take_specs(m);
    let services = std::mem::take(&mut m.services);
    lower_with(m, Some(specs), Some(services), opts, false)
}

/// Each Mapping's tree, taken out of `m`, by the resource's place in `m.resources`, which
/// stays put: `m` is not changed until lowering ends. Each tree is taken by the thread that
/// reads its Mapping, and freed there.
fn take_specs(m: &mut Manifests) -> Specs {
    let base = m.resources.as_ptr() as usize;
    let trees = m
        .resources
        .iter_mut()
        .map(|r| {
            Mutex::new((r.kind == Kind::Mapping).then(|| {
                let empty = Node {
                    kind: NodeKind::Map(Vec::new()),
                    span: r.spec.span,
                };
                std::mem::replace(&mut r.spec, empty)
            }))
        })
        .collect();
    Specs { base, trees }
}

/// The Mappings' trees held apart from their resources ([`take_specs`]), one place per
/// resource of the list they were taken from (a list, not a map by address: building a
/// map of 20,000 entries was 1.5 % of `lint`, on one core).
struct Specs {
    /// The address of the list's first resource.
    base: usize,
    trees: Vec<Mutex<Option<Node>>>,
}

impl Specs {
    /// Takes the tree of `r`, a resource of the list the trees were taken from; `None` for
    /// one taken already, or not a Mapping, or not of that list.
    fn take(&self, r: &Resource) -> Option<Node> {
        let offset = (std::ptr::from_ref::<Resource>(r) as usize).checked_sub(self.base)?;
        let size = std::mem::size_of::<Resource>();
        if offset % size != 0 {
            return None;
        }
        self.trees
            .get(offset / size)?
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

/// [`lower`], reading the Mappings' fields from `specs` (by the resource's place) where given,
/// each taken out as it is read, and the Services from `services` where given (instead of
/// `m`'s), freed once the Mappings are read. Without `clusters`, the IR has none of the
/// Mappings' clusters.
fn lower_with(
    m: &Manifests,
    specs: Option<Specs>,
    services: Option<Vec<ServiceInfo>>,
    opts: &LowerOptions,
    clusters: bool,
) -> (Ir, Vec<Diagnostic>) {
    let mut diags = Vec::new();
    let active = dedupe(m.resources.iter().collect(), &mut diags);
    let all_services = services.as_deref().unwrap_or(&m.services);
    let ctx = Context::build(&active, &m.resources, all_services, &m.secrets, opts);
    after_freeing(opts.freed);
    diags.extend(ctx.diags.iter().cloned());
    let known = &ctx.known_namespaces;
    let mut cx = Cx {
        diags,
        known_namespaces: known,
    };
    // Looked up once per Mapping: a set keeps that linear in the number of Mappings.
    let service_names: HashSet<(&str, &str)> = all_services
        .iter()
        .map(|s| (s.namespace.as_str(), s.name.as_str()))
        .collect();
    let has_service = |ns: &str, name: &str| service_names.contains(&(ns, name));

    // Mappings, on all cores: each needs only its own resource and the context. Each is
    // attached to its virtual hosts there too (a glob test per Host).
    let mapping_resources: Vec<&Resource> = active
        .iter()
        .copied()
        .filter(|r| r.kind == Kind::Mapping)
        .collect();
    let vhosts = &ctx.vhosts;
    let read_runs = crate::par::runs(
        &mapping_resources,
        crate::par::run_len(mapping_resources.len(), PARALLEL_MIN_MAPPINGS),
        |run| {
            let mut cx = Cx {
                diags: Vec::new(),
                known_namespaces: known,
            };
            let mut joined = Vec::with_capacity(run.len());
            // Boxed: each is freed on its own, as soon as the route it is in is built.
            let mut out: Vec<Box<Lowered>> = Vec::with_capacity(run.len());
            for r in run {
                let held = specs.as_ref().and_then(|s| s.take(r));
                let spec = held.as_ref().unwrap_or(&r.spec);
                if let Some(l) = read_mapping(r, spec, &ctx, &has_service, &mut cx) {
                    joined.push(attach(&l, vhosts, &mut cx));
                    out.push(Box::new(l));
                }
            }
            // The trees of the run's Mappings are freed: what a caller gives back now makes
            // room for the Mappings read next (they are not of the same sizes).
            after_freeing(opts.freed);
            (out, joined, cx.diags)
        },
    );
    // What is left of the trees held apart (duplicates that were not read) goes too, and
    // the Services held apart.
    drop(specs);
    drop(service_names);
    drop(services);
    after_freeing(opts.freed);
    let mut mappings: Vec<Option<Box<Lowered>>> =
        Vec::with_capacity(read_runs.iter().map(|(out, _, _)| out.len()).sum());
    let mut attached: Vec<Vec<usize>> = vec![Vec::new(); vhosts.len()];
    for (out, joined, mut diags) in read_runs {
        for (mut l, vs) in out.into_iter().zip(joined) {
            l.index = mappings.len();
            for v in vs {
                attached[v].push(l.index);
            }
            mappings.push(Some(l));
        }
        cx.diags.append(&mut diags);
    }

    // Routes per virtual host, the virtual hosts on all cores. Virtual hosts the same
    // Mappings attach to have the same routes: those are built once and shared (every
    // Mapping on `hostname: "*"` with ten Hosts is one table, not ten copies of it).
    let mut first_with: HashMap<&[usize], usize> = HashMap::new();
    let built_as: Vec<usize> = attached
        .iter()
        .enumerate()
        .map(|(v, idx)| *first_with.entry(idx.as_slice()).or_insert(v))
        .collect();
    drop(first_with);
    // A Mapping in one table only (nearly every one) is moved into it, and freed there as
    // its route is built; one in several is lent to each, and freed after them.
    let mut tables_in = vec![0u32; mappings.len()];
    for (v, idx) in attached.iter().enumerate() {
        if built_as[v] == v {
            for &i in idx {
                tables_in[i] += 1;
            }
        }
    }
    let owned: Vec<Vec<Result<Box<Lowered>, usize>>> = attached
        .iter()
        .enumerate()
        .filter(|&(v, _)| built_as[v] == v)
        .map(|(_, idx)| {
            idx.iter()
                .map(|&i| match tables_in[i] {
                    1 => mappings[i].take().ok_or(i),
                    _ => Err(i),
                })
                .collect()
        })
        .collect();
    drop(tables_in);
    let attached_total: usize = owned.iter().map(Vec::len).sum();
    let vhost_members: Vec<Mutex<Vec<Member>>> = owned
        .into_iter()
        .map(|members| {
            Mutex::new(
                members
                    .into_iter()
                    .filter_map(|m| match m {
                        Ok(l) => Some(Member::Owned(l)),
                        Err(i) => mappings[i].as_deref().map(Member::Lent),
                    })
                    .collect(),
            )
        })
        .collect();
    let run = if attached_total < PARALLEL_MIN_MAPPINGS {
        vhost_members.len()
    } else {
        1
    };
    let built = crate::par::runs(&vhost_members, run, |run| {
        run.iter()
            .map(|members| {
                let members =
                    std::mem::take(&mut *members.lock().unwrap_or_else(PoisonError::into_inner));
                let mut cx = Cx {
                    diags: Vec::new(),
                    known_namespaces: known,
                };
                // A table with most of the Mappings is built on all cores itself (the
                // others, if any, are small beside it).
                let parallel =
                    crate::par::splits_alone(members.len(), attached_total, PARALLEL_MIN_MAPPINGS);
                let built = build_routes(members, &ctx, clusters, parallel, &mut cx);
                (built, cx.diags)
            })
            .collect::<Vec<_>>()
    });
    drop(vhost_members);
    let mut out_vhosts: Vec<crate::ir::VirtualHost> = Vec::with_capacity(vhosts.len());
    let mut reported: HashSet<(Code, Span, String)> = HashSet::new();
    // The Mappings some route sends to: their clusters make the configuration's.
    let mut used_by_routes = vec![false; mappings.len()];
    let mut sends: Vec<Sends> = Vec::new();
    let mut built = built.into_iter().flatten();
    // Each virtual host's table, by index into `tables`.
    let mut tables: Vec<Mutex<Vec<Route>>> = Vec::with_capacity(vhosts.len());
    let mut table_of: Vec<usize> = Vec::with_capacity(vhosts.len());
    for (v, vh) in vhosts.iter().enumerate() {
        if built_as[v] == v {
            let Some((b, mut diags)) = built.next() else {
                break;
            };
            cx.diags.append(&mut diags);
            for i in b.used {
                used_by_routes[i] = true;
            }
            sends.extend(b.sends);
            table_of.push(tables.len());
            tables.push(Mutex::new(b.routes));
        } else {
            table_of.push(table_of[built_as[v]]);
        }
        out_vhosts.push(vh.vh.clone());
    }
    // The Mappings lent to several tables, and those in none.
    for l in mappings.into_iter().flatten() {
        if clusters && used_by_routes[l.index] {
            sends.push(Sends::of(&l, &ctx));
        }
    }
    sends.sort_unstable_by_key(|s| s.index);
    // The tables in Envoy's order, sorted once the Mappings are gone (the sort's keys
    // beside them were lowering's peak).
    let tables: Vec<std::sync::Arc<Vec<Route>>> = crate::par::runs(&tables, run, |run| {
        run.iter()
            .map(|t| {
                let mut routes =
                    std::mem::take(&mut *t.lock().unwrap_or_else(PoisonError::into_inner));
                sort_routes(&mut routes);
                std::sync::Arc::new(routes)
            })
            .collect::<Vec<_>>()
    })
    .into_iter()
    .flatten()
    .collect();
    for (vh, &t) in out_vhosts.iter_mut().zip(&table_of) {
        vh.routes = std::sync::Arc::clone(&tables[t]);
    }
    drop(tables);
    let mut clusters = used_clusters(&mut sends, &used_by_routes);
    for (name, c) in &ctx.held_clusters {
        clusters
            .entry(name.clone())
            .or_insert_with(|| Box::new(c.clone()));
    }
    out_vhosts.sort_by(|a, b| a.name.cmp(&b.name));

    let Context {
        listeners,
        tcp_listeners,
        settings,
        auth,
        rate_limit,
        access_log,
        tracing,
        ..
    } = ctx;
    let ir = Ir {
        listeners,
        virtual_hosts: out_vhosts,
        clusters,
        tcp_listeners,
        settings,
        auth,
        rate_limit,
        access_log,
        tracing,
    };
    let mut diags = cx.diags;
    diags.retain(|d| reported.insert((d.code, d.span.unwrap_or_default(), d.message.clone())));
    (ir, diags)
}

/// A Mapping's own reading: its fields, the TLSContext and resolver it names, its service
/// and its cluster. `None` when an error leaves it out (reported in `cx`).
pub(crate) fn read_mapping<'r>(
    r: &'r Resource,
    spec: &Node,
    ctx: &Context,
    has_service: &dyn Fn(&str, &str) -> bool,
    cx: &mut Cx,
) -> Option<Lowered<'r>> {
    let mut reader = Reader::with_spec(r, spec);
    let read = mapping::read(&mut reader, r);
    cx.diags.append(&mut reader.diags);
    let mut mp = read?;
    if !check_references(&mut mp, &ctx.tls_contexts, &ctx.resolvers, cx) {
        return None;
    }
    let default_resolver = ctx.default_resolver.as_deref();
    cx.check_service(&mp, has_service, default_resolver, &ctx.resolvers);
    let cluster_name = ctx.cluster_of(&mp).name;
    Some(Lowered {
        mp,
        cluster_name,
        index: 0,
    })
}

/// The virtual hosts a Mapping joins, by index; a Mapping that joins none is reported.
pub(crate) fn attach(mp: &Mapping, vhosts: &VHosts, cx: &mut Cx) -> Vec<usize> {
    let Some(hostname) = &mp.hostname else {
        cx.diags.push(
            Diagnostic::at(
                Code::NoHostname,
                mp.r.span,
                format!(
                    "Mapping `{}` sets neither `hostname` nor `host`, so no Host takes it",
                    mp.r.id.name
                ),
            )
            .with_object(&mp.r.id),
        );
        return Vec::new();
    };
    let mut joined = Vec::new();
    for v in vhosts.candidates(hostname) {
        let vh = &vhosts[v];
        if globs_intersect(hostname, &vh.glob)
            && vh
                .selector
                .iter()
                .all(|(k, val)| mp.r.labels.get(k) == Some(val))
        {
            joined.push(v);
        }
    }
    if !joined.is_empty() && joined.iter().all(|&v| !vhosts[v].bound) {
        let span = mp.set_key_span("hostname").unwrap_or(mp.r.span);
        cx.diags.push(
            Diagnostic::at(
                Code::HostsNotServed,
                span,
                format!(
                    "Mapping `{}` attaches only to Hosts no Listener serves ({}), so no request reaches it",
                    mp.r.id.name,
                    joined
                        .iter()
                        .map(|&v| format!("`{}`", vhosts[v].glob))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
            .with_object(&mp.r.id),
        );
    }
    if joined.is_empty() {
        let span = mp
            .set_key_span("hostname")
            .unwrap_or_else(|| mp.key_span("host"));
        cx.diags.push(
            Diagnostic::at(
                Code::HostnameMatchesNoHost,
                span,
                format!(
                    "hostname `{hostname}` of Mapping `{}` matches no Host, so it is not routed",
                    mp.r.id.name
                ),
            )
            .with_object(&mp.r.id)
            .with_help(format!(
                "the Hosts are: {}",
                vhosts
                    .iter()
                    .map(|v| format!("`{}`", v.glob))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        );
    }
    joined
}

/// Below this many Mappings, lowering stays on the calling thread: starting threads would
/// cost more than they save (and admission compiles one object at a time).
const PARALLEL_MIN_MAPPINGS: usize = 512;

/// A Mapping that passed its own checks, with the name of the cluster it sends to.
pub(crate) struct Lowered<'a> {
    pub mp: Mapping<'a>,
    /// The cluster itself is made again when a route uses it ([`Context::cluster_of`]):
    /// kept for every Mapping beside the routes, it was a tenth of lowering's peak.
    pub cluster_name: String,
    /// Its place among the lowered Mappings.
    pub index: usize,
}

impl<'a> std::ops::Deref for Lowered<'a> {
    type Target = Mapping<'a>;
    fn deref(&self) -> &Mapping<'a> {
        &self.mp
    }
}

/// Diagnostics of one thread's share of the work, and what every share reads.
pub(crate) struct Cx<'k> {
    pub diags: Vec<Diagnostic>,
    pub known_namespaces: &'k HashSet<String>,
}

impl Cx<'_> {
    /// `service-not-found` and `load-balancer-needs-endpoints`.
    fn check_service(
        &mut self,
        mp: &Mapping,
        has_service: &dyn Fn(&str, &str) -> bool,
        default_resolver: Option<&str>,
        resolvers: &HashMap<String, Kind>,
    ) {
        if mp.redirect.is_some() {
            return;
        }
        let ns = &mp.r.id.namespace;
        let known = |n: &str| self.known_namespaces.contains(n) || n == "default";
        if let Some((name, namespace)) = mp.service.kubernetes_service(ns, &known) {
            let found = has_service(namespace.as_str(), name.as_str());
            if !found {
                self.diags.push(
                    Diagnostic::at(
                        Code::ServiceNotFound,
                        mp.service_span,
                        format!("Service `{namespace}/{name}` is not among the given manifests"),
                    )
                    .with_object(&mp.r.id)
                    .with_field(mp.r.path("service")),
                );
            }
        }
        if let Some(lb_span) = mp.cluster.lb_span {
            let resolver = mp
                .cluster
                .resolver
                .as_ref()
                .map(|(n, _)| n.as_str())
                .or(default_resolver);
            let kind = resolver
                .and_then(|r| resolvers.get(r))
                .copied()
                .unwrap_or(Kind::KubernetesServiceResolver);
            if kind == Kind::KubernetesServiceResolver && !mp.service.is_ip() {
                self.diags.push(
                    Diagnostic::at(
                        Code::LoadBalancerNeedsEndpoints,
                        lb_span,
                        "`load_balancer` needs endpoint routing: with the `kubernetes-service` resolver Envoy sees one address",
                    )
                    .with_object(&mp.r.id)
                    .with_field(mp.r.path("load_balancer")),
                );
            }
        }
    }
}

/// Drops all but the last of objects sharing kind, namespace and name, reporting each. The
/// objects kept stay in their order.
pub(crate) fn dedupe<'a>(
    resources: Vec<&'a Resource>,
    diags: &mut Vec<Diagnostic>,
) -> Vec<&'a Resource> {
    let mut last: HashMap<(&Kind, &str, &str), usize> = HashMap::with_capacity(resources.len());
    for (i, r) in resources.iter().enumerate() {
        if let Some(prev) = last.insert((&r.kind, &r.id.namespace, &r.id.name), i) {
            let p = resources[prev];
            diags.push(
                Diagnostic::at(
                    Code::DuplicateName,
                    r.span,
                    format!(
                        "{} `{}/{}` is defined twice; this one replaces the earlier",
                        r.kind.as_str(),
                        r.id.namespace,
                        r.id.name
                    ),
                )
                .with_object(&r.id)
                .with_related(p.span, "the earlier definition"),
            );
        }
    }
    let mut keep = vec![false; resources.len()];
    for i in last.into_values() {
        keep[i] = true;
    }
    resources
        .into_iter()
        .zip(keep)
        .filter(|(_, k)| *k)
        .map(|(r, _)| r)
        .collect()
}

/// The reference to `r` that the IR keeps: made once per resource, shared by every copy.
pub(crate) fn source_ref(r: &Resource) -> SourceRef {
    r.source_ref
        .get_or_init(|| {
            SourceRef::new(SourceObject {
                kind: r.kind.as_str().into(),
                namespace: r.id.namespace.clone(),
                name: r.id.name.clone(),
                span: r.span,
            })
        })
        .clone()
}

/// The object a source reference names.
pub fn object_of(s: &SourceRef) -> ObjectRef {
    ObjectRef {
        kind: s.kind.clone(),
        namespace: s.namespace.clone(),
        name: s.name.clone(),
    }
}

/// Whether a path match is a redirect-only route (used by `routes`).
pub fn is_redirect(r: &Route) -> bool {
    matches!(r.action, RouteAction::Redirect(_))
}

/// The text of a redirect path, for display.
pub fn redirect_path_text(p: &RedirectPath) -> String {
    match p {
        RedirectPath::Path(s) => format!("path {s}"),
        RedirectPath::Prefix(s) => format!("prefix {s}"),
        RedirectPath::Regex(r) => format!("regex {} -> {}", r.pattern, r.substitution),
    }
}

/// Whether the path match is a literal prefix.
pub fn is_prefix(p: &PathMatch) -> bool {
    matches!(p, PathMatch::Prefix(_))
}

#[cfg(test)]
mod tests;

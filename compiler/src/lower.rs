//! Resources to IR: defaults, Hosts and virtual hosts, service resolution, grouping, precedence order, canary weights.
//!
//! Ambassador's semantics are described in `shared/reference/ambassador-semantics.md`; the
//! places where this compiler deliberately differs are listed in ARCHITECTURE.md. One rule
//! runs through the pass: an object with an error that makes it unusable is reported and
//! left out, and everything else keeps flowing.

pub mod mapping;
pub mod service;

use std::collections::BTreeMap;

use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};

use crate::diag::{Code, Diagnostic, ObjectRef};
use crate::front::yaml::Node;
use crate::front::{Kind, Manifests, Resource};
use crate::ir::{
    Cluster, Discovery, Forward, HeaderMatch, InsecureAction, Ir, LbPolicy, Listener, PathMatch,
    Redirect, RedirectPath, Route, RouteAction, RouteMatch, ServerTls, Settings, Shadow, SourceRef,
    TcpListener, TcpRoute, UpstreamTls, ValueMatch, VirtualHost, WeightedCluster,
};
use crate::source::Span;
use mapping::{Mapping, Reader};

/// Settings of the lowering pass.
#[derive(Clone, Debug)]
pub struct LowerOptions {
    /// Where the HTTP listeners listen.
    pub listen_address: String,
    /// Cleartext HTTP port (Ambassador's default 8080).
    pub http_port: u16,
    /// TLS port (Ambassador's default 8443), used when a Host or TLSContext terminates TLS.
    pub https_port: u16,
}

impl Default for LowerOptions {
    fn default() -> Self {
        LowerOptions {
            listen_address: "0.0.0.0".into(),
            http_port: 8080,
            https_port: 8443,
        }
    }
}

/// The name of the one route configuration all HTTP listeners take from RDS.
pub const ROUTE_CONFIG: &str = "ambassador-routes";

/// Lowers the resources read by [`crate::front`] into the IR.
pub fn lower(m: &Manifests, opts: &LowerOptions) -> (Ir, Vec<Diagnostic>) {
    let mut diags = Vec::new();
    let active = dedupe(m.resources.iter().collect(), &mut diags);
    let ctx = Context::build(&active, &m.resources, &m.services, opts);
    diags.extend(ctx.diags.iter().cloned());
    let known = &ctx.known_namespaces;
    let mut cx = Cx {
        diags,
        known_namespaces: known,
    };
    // Looked up once per Mapping: a set keeps that linear in the number of Mappings.
    let services: HashSet<(&str, &str)> = m
        .services
        .iter()
        .map(|s| (s.namespace.as_str(), s.name.as_str()))
        .collect();
    let has_service = |ns: &str, name: &str| services.contains(&(ns, name));

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
            let mut out: Vec<Lowered> = Vec::with_capacity(run.len());
            for r in run {
                if let Some(l) = read_mapping(r, &ctx, &has_service, &mut cx) {
                    joined.push(attach(&l, vhosts, &mut cx));
                    out.push(l);
                }
            }
            (out, joined, cx.diags)
        },
    );
    // Each run's Mappings stay where the run put them: at 50,000 Mappings one list would be
    // a copy of some 60 MB into fresh memory.
    let mut runs: Vec<Vec<Lowered>> = Vec::with_capacity(read_runs.len());
    let mut attached: Vec<Vec<usize>> = vec![Vec::new(); vhosts.len()];
    let mut i = 0;
    for (mut out, joined, mut diags) in read_runs {
        for (l, vs) in out.iter_mut().zip(joined) {
            l.index = i;
            for v in vs {
                attached[v].push(i);
            }
            i += 1;
        }
        runs.push(out);
        cx.diags.append(&mut diags);
    }
    let mappings: Vec<&Lowered> = runs.iter().flatten().collect();

    // Routes per virtual host, the virtual hosts on all cores. Clusters are collected
    // afterwards in virtual-host order, so their sources are listed as one thread would.
    let attached_total: usize = attached.iter().map(Vec::len).sum();
    let vhost_members: Vec<(&VHost, Vec<&Lowered>)> = vhosts
        .iter()
        .zip(&attached)
        .map(|(vh, idx)| (vh, idx.iter().map(|&i| mappings[i]).collect()))
        .collect();
    let run = if attached_total < PARALLEL_MIN_MAPPINGS {
        vhost_members.len()
    } else {
        1
    };
    let settings = &ctx.settings;
    let built = crate::par::runs(&vhost_members, run, |run| {
        run.iter()
            .map(|(vh, members)| {
                let mut cx = Cx {
                    diags: Vec::new(),
                    known_namespaces: known,
                };
                let (mut routes, used) = build_routes(members, &vh.glob, settings, &mut cx);
                sort_routes(&mut routes);
                (routes, used, cx.diags)
            })
            .collect::<Vec<_>>()
    });
    let mut out_vhosts = Vec::new();
    let mut reported: HashSet<(Code, Span, String)> = HashSet::new();
    // The Mappings some route sends to: their clusters make the configuration's.
    let mut used_by_routes = vec![false; mappings.len()];
    for (vh, (routes, used, mut diags)) in vhosts.iter().zip(built.into_iter().flatten()) {
        cx.diags.append(&mut diags);
        for i in used {
            used_by_routes[i] = true;
        }
        let mut vh = vh.vh.clone();
        vh.routes = routes;
        out_vhosts.push(vh);
    }
    drop(vhost_members);
    drop(mappings);
    let mut clusters = used_clusters(&mut runs, &used_by_routes);
    for (name, c) in &ctx.tcp_clusters {
        clusters.entry(name.clone()).or_insert_with(|| c.clone());
    }
    out_vhosts.sort_by(|a, b| a.name.cmp(&b.name));

    let Context {
        listeners,
        tcp_listeners,
        settings,
        ..
    } = ctx;
    let ir = Ir {
        listeners,
        virtual_hosts: out_vhosts,
        clusters,
        tcp_listeners,
        settings,
    };
    let mut diags = cx.diags;
    diags.retain(|d| reported.insert((d.code, d.span.unwrap_or_default(), d.message.clone())));
    (ir, diags)
}

/// Everything lowering reads besides the Mappings, and what it makes of it: Modules,
/// resolvers, TLSContexts, Hosts (virtual hosts and listeners) and TCPMappings. Built once
/// per configuration; [`crate::incremental`] keeps it while only Mappings change.
#[derive(Clone, Debug)]
pub(crate) struct Context {
    pub settings: Settings,
    pub default_resolver: Option<String>,
    pub resolvers: HashMap<String, Kind>,
    /// By name; cloned out of the input, there are few.
    pub tls_contexts: HashMap<String, Resource>,
    /// At least one: the catch-all when no Host is given. Routes empty.
    pub vhosts: Vec<VHost>,
    pub listeners: Vec<Listener>,
    pub tcp_listeners: Vec<TcpListener>,
    pub tcp_clusters: BTreeMap<String, Cluster>,
    /// Namespaces of every object and Service read: a `service` naming one of them as
    /// `name.namespace` is a Kubernetes Service there.
    pub known_namespaces: HashSet<String>,
    /// Findings about the objects above.
    pub diags: Vec<Diagnostic>,
}

impl Context {
    /// `active` are the resources left after [`dedupe`]; `all` and `services` give the
    /// known namespaces.
    pub fn build<'r>(
        active: &[&'r Resource],
        all: impl IntoIterator<Item = &'r Resource>,
        services: impl IntoIterator<Item = &'r crate::front::ServiceInfo>,
        opts: &LowerOptions,
    ) -> Context {
        let mut known_namespaces: HashSet<String> = HashSet::new();
        let mut know = |ns: &str| {
            if !known_namespaces.contains(ns) {
                known_namespaces.insert(ns.to_string());
            }
        };
        for s in services {
            know(&s.namespace);
        }
        for r in all {
            know(&r.id.namespace);
        }
        let mut diags = Vec::new();
        let by_kind = |k: Kind| active.iter().copied().filter(move |r| r.kind == k);

        let settings = module_settings(by_kind(Kind::Module), &mut diags);
        let default_resolver = by_kind(Kind::Module)
            .find(|r| r.id.name == "ambassador")
            .and_then(|r| r.field("config"))
            .and_then(|c| c.get("resolver"))
            .and_then(Node::as_str)
            .map(str::to_string);
        let mut resolvers: HashMap<String, Kind> = HashMap::new();
        resolvers.insert("kubernetes-service".into(), Kind::KubernetesServiceResolver);
        resolvers.insert(
            "kubernetes-endpoint".into(),
            Kind::KubernetesEndpointResolver,
        );
        for r in active.iter().filter(|r| {
            matches!(
                r.kind,
                Kind::KubernetesServiceResolver
                    | Kind::KubernetesEndpointResolver
                    | Kind::ConsulResolver
            )
        }) {
            resolvers.insert(r.id.name.clone(), r.kind);
        }
        let tls_contexts: HashMap<String, Resource> = by_kind(Kind::TlsContext)
            .map(|r| (r.id.name.clone(), r.clone()))
            .collect();

        // Virtual hosts from Hosts, or one catch-all when there is none.
        let mut server_tls = Vec::new();
        let mut vhosts = hosts(
            by_kind(Kind::Host),
            &tls_contexts,
            &mut server_tls,
            &mut diags,
        );
        let mut contexts: Vec<&Resource> = tls_contexts.values().collect();
        // Map order is not input order: keep the listener's list independent of both.
        contexts.sort_by(|a, b| a.id.cmp(&b.id));
        for ctx in contexts {
            let hosts: Vec<String> = Reader::new(ctx).str_list("hosts");
            if let Some(secret) = ctx.field("secret").and_then(Node::as_str) {
                if !hosts.is_empty() {
                    server_tls.push(server_tls_from_context(ctx, hosts, secret));
                }
            }
        }
        if vhosts.is_empty() {
            vhosts.push(VHost {
                vh: VirtualHost {
                    name: "ambassador-default".into(),
                    domains: vec!["*".into()],
                    source: None,
                    insecure: InsecureAction::Route,
                    routes: Vec::new(),
                    cors: None,
                },
                glob: "*".into(),
                selector: BTreeMap::new(),
            });
        }

        // Listeners.
        let mut listeners = vec![Listener {
            name: format!("ambassador-listener-{}", opts.http_port),
            address: opts.listen_address.clone(),
            port: opts.http_port,
            route_config: ROUTE_CONFIG.into(),
            tls: Vec::new(),
        }];
        if !server_tls.is_empty() {
            server_tls.sort_by(|a, b| a.server_names.cmp(&b.server_names));
            server_tls.dedup_by(|a, b| a.server_names == b.server_names);
            listeners.push(Listener {
                name: format!("ambassador-listener-{}", opts.https_port),
                address: opts.listen_address.clone(),
                port: opts.https_port,
                route_config: ROUTE_CONFIG.into(),
                tls: server_tls,
            });
        }

        let mut tcp_clusters = BTreeMap::new();
        let mut cx = Cx {
            diags,
            known_namespaces: &known_namespaces,
        };
        let tcp_listeners = tcp(
            by_kind(Kind::TcpMapping),
            &mut tcp_clusters,
            &mut cx,
            &tls_contexts,
        );
        let diags = cx.diags;
        Context {
            settings,
            default_resolver,
            resolvers,
            tls_contexts,
            vhosts,
            listeners,
            tcp_listeners,
            tcp_clusters,
            known_namespaces,
            diags,
        }
    }
}

/// A Mapping's own reading: its fields, the TLSContext and resolver it names, its service
/// and its cluster. `None` when an error leaves it out (reported in `cx`).
pub(crate) fn read_mapping<'r>(
    r: &'r Resource,
    ctx: &Context,
    has_service: &dyn Fn(&str, &str) -> bool,
    cx: &mut Cx,
) -> Option<Lowered<'r>> {
    let mut reader = Reader::new(r);
    let read = mapping::read(&mut reader);
    cx.diags.append(&mut reader.diags);
    let mut mp = read?;
    if !check_references(&mut mp, &ctx.tls_contexts, &ctx.resolvers, cx) {
        return None;
    }
    let default_resolver = ctx.default_resolver.as_deref();
    cx.check_service(&mp, has_service, default_resolver, &ctx.resolvers);
    let cluster = Box::new(cluster_of(
        &mp,
        &ctx.tls_contexts,
        &ctx.resolvers,
        default_resolver,
    ));
    Some(Lowered {
        mp,
        cluster,
        index: 0,
    })
}

/// The virtual hosts a Mapping joins, by index; a Mapping that joins none is reported.
pub(crate) fn attach(mp: &Mapping, vhosts: &[VHost], cx: &mut Cx) -> Vec<usize> {
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
    for (v, vh) in vhosts.iter().enumerate() {
        if globs_intersect(hostname, &vh.glob)
            && vh
                .selector
                .iter()
                .all(|(k, val)| mp.r.labels.get(k) == Some(val))
        {
            joined.push(v);
        }
    }
    if joined.is_empty() {
        let span = if mp.r.field("hostname").is_some() {
            mp.r.key_span("hostname")
        } else {
            mp.r.key_span("host")
        };
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

/// Sorts a virtual host's routes into Envoy's evaluation order: [`order_key`] descending,
/// and routes whose keys tie by name, so the order never depends on the input's.
pub(crate) fn sort_routes(routes: &mut Vec<Route>) {
    let mut keyed: Vec<_> = routes
        .iter()
        .enumerate()
        .map(|(i, r)| (std::cmp::Reverse(order_key_ref(r)), i))
        .collect();
    keyed.sort_unstable_by(|a, b| {
        a.0.cmp(&b.0)
            .then_with(|| routes[a.1].name.cmp(&routes[b.1].name))
    });
    let order: Vec<usize> = keyed.into_iter().map(|(_, i)| i).collect();
    let mut slots: Vec<Option<Route>> = std::mem::take(routes).into_iter().map(Some).collect();
    routes.extend(order.into_iter().filter_map(|i| slots[i].take()));
}

/// Below this many Mappings, lowering stays on the calling thread: starting threads would
/// cost more than they save (and admission compiles one object at a time).
const PARALLEL_MIN_MAPPINGS: usize = 512;

/// A Mapping that passed its own checks, with the cluster it sends to.
pub(crate) struct Lowered<'a> {
    pub mp: Mapping<'a>,
    /// Boxed: it moves into the configuration when a route uses it, without a copy.
    pub cluster: Box<Cluster>,
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

fn module_settings<'a>(
    modules: impl Iterator<Item = &'a Resource>,
    diags: &mut Vec<Diagnostic>,
) -> Settings {
    let mut s = Settings::default();
    for r in modules {
        if r.id.name != "ambassador" {
            if r.id.name != "tls" {
                diags.push(
                    Diagnostic::at(
                        Code::UnknownModule,
                        r.span,
                        format!(
                            "Module `{}` has no effect: only the Module named `ambassador` is read",
                            r.id.name
                        ),
                    )
                    .with_object(&r.id),
                );
            }
            continue;
        }
        let Some(c) = r.field("config") else { continue };
        // The Module has dozens of settings; the ones this compiler applies are read below,
        // and every other one is reported, so none is dropped without a word.
        const APPLIED: &[&str] = &[
            "cluster_request_timeout_ms",
            "use_remote_address",
            "xff_num_trusted_hops",
            "server_name",
            "cors",
            "resolver",
        ];
        for (k, _) in c.as_map().unwrap_or_default() {
            let key = k.scalar().unwrap_or_default();
            if !APPLIED.contains(&key) {
                let mut d = Diagnostic::at(
                    Code::UnsupportedField,
                    k.span,
                    format!("`{}config.{key}` of the `ambassador` Module is not applied by this compiler", r.field_prefix),
                )
                .with_object(&r.id)
                .with_field(r.path(&format!("config.{key}")));
                if let Some(s) = crate::diag::did_you_mean(key, APPLIED.iter().copied()) {
                    d = d.with_help(format!("did you mean `{s}`?"));
                }
                diags.push(d);
            }
        }
        if let Some(v) = c.get("cluster_request_timeout_ms").and_then(Node::as_int) {
            s.default_timeout_ms = v.max(0) as u64;
        }
        if let Some(v) = c.get("use_remote_address").and_then(Node::as_bool) {
            s.use_remote_address = v;
        }
        if let Some(v) = c.get("xff_num_trusted_hops").and_then(Node::as_int) {
            s.xff_num_trusted_hops = v.clamp(0, u32::MAX as i64) as u32;
        }
        s.server_name = c
            .get("server_name")
            .and_then(Node::as_str)
            .map(str::to_string);
        s.cors = c.get("cors").map(mapping::read_cors);
    }
    s
}

#[derive(Clone, Debug)]
pub(crate) struct VHost {
    pub vh: VirtualHost,
    pub glob: String,
    pub selector: BTreeMap<String, String>,
}

pub(crate) fn source_ref(r: &Resource) -> SourceRef {
    SourceRef {
        kind: r.kind.as_str().into(),
        namespace: r.id.namespace.as_str().into(),
        name: r.id.name.as_str().into(),
        span: r.span,
    }
}

fn hosts<'a>(
    hosts: impl Iterator<Item = &'a Resource>,
    tls_contexts: &HashMap<String, Resource>,
    server_tls: &mut Vec<ServerTls>,
    diags: &mut Vec<Diagnostic>,
) -> Vec<VHost> {
    let mut out: Vec<VHost> = Vec::new();
    for r in hosts {
        let reader = Reader::new(r);
        let glob = reader.str("hostname").unwrap_or("*").to_ascii_lowercase();
        let selector = r
            .field("mappingSelector")
            .or_else(|| r.field("selector"))
            .and_then(|s| s.get("matchLabels"))
            .and_then(Node::as_map)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.scalar()?.to_string(), v.scalar()?.to_string())))
                    .collect()
            })
            .unwrap_or_default();
        let mut has_tls = false;
        if let Some(secret) = r.field("tlsSecret") {
            if let Some(name) = secret.get("name").and_then(Node::as_str) {
                let ns = secret
                    .get("namespace")
                    .and_then(Node::as_str)
                    .unwrap_or(&r.id.namespace);
                let tls = r.field("tls");
                let s = |k: &str| {
                    tls.and_then(|t| t.get(k))
                        .and_then(Node::as_str)
                        .map(str::to_string)
                };
                server_tls.push(ServerTls {
                    server_names: if glob == "*" {
                        Vec::new()
                    } else {
                        vec![glob.clone()]
                    },
                    secret: format!("{ns}/{name}"),
                    min_tls_version: s("min_tls_version"),
                    max_tls_version: s("max_tls_version"),
                    alpn_protocols: s("alpn_protocols")
                        .map(|a| a.split(',').map(|p| p.trim().to_string()).collect())
                        .unwrap_or_default(),
                });
                has_tls = true;
            }
        }
        if let Some(ctx) = r.field("tlsContext") {
            let name = ctx.get("name").and_then(Node::as_str).unwrap_or_default();
            match tls_contexts.get(name) {
                Some(c) => {
                    if let Some(secret) = c.field("secret").and_then(Node::as_str) {
                        let names = if glob == "*" {
                            Vec::new()
                        } else {
                            vec![glob.clone()]
                        };
                        server_tls.push(server_tls_from_context(c, names, secret));
                        has_tls = true;
                    }
                }
                None => diags.push(
                    Diagnostic::at(
                        Code::UndefinedTlsContext,
                        ctx.span,
                        format!(
                            "Host `{}` names TLSContext `{name}`, which is not defined",
                            r.id.name
                        ),
                    )
                    .with_object(&r.id)
                    .with_field(r.path("tlsContext.name")),
                ),
            }
        }
        let action = r
            .field("requestPolicy")
            .and_then(|p| p.get("insecure"))
            .and_then(|i| i.get("action"))
            .and_then(|a| Some((a.as_str()?, a.span)));
        let insecure = match action {
            Some(("Route", _)) => InsecureAction::Route,
            Some(("Redirect", _)) => InsecureAction::Redirect,
            Some(("Reject", _)) => InsecureAction::Reject,
            Some((other, span)) => {
                diags.push(
                    Diagnostic::at(
                        Code::InvalidValue,
                        span,
                        format!(
                            "`insecure.action: {other}` must be one of Redirect, Route, Reject"
                        ),
                    )
                    .with_object(&r.id)
                    .with_field(r.path("requestPolicy.insecure.action")),
                );
                InsecureAction::Route
            }
            None if has_tls => InsecureAction::Redirect,
            None => InsecureAction::Route,
        };
        if let Some(existing) = out.iter_mut().find(|v| v.glob == glob) {
            diags.push(
                Diagnostic::at(
                    Code::DuplicateHostname,
                    reader.span("hostname"),
                    format!(
                        "Host `{}` claims hostname `{glob}`, which another Host already claims",
                        r.id.name
                    ),
                )
                .with_object(&r.id)
                .with_related(
                    existing.vh.source.as_ref().map_or(r.span, |s| s.span),
                    "the other Host",
                ),
            );
            continue;
        }
        out.push(VHost {
            vh: VirtualHost {
                name: format!("host-{}-{}", r.id.namespace, r.id.name),
                domains: vec![glob.clone()],
                source: Some(source_ref(r)),
                insecure,
                routes: Vec::new(),
                cors: None,
            },
            glob,
            selector,
        });
    }
    out
}

fn server_tls_from_context(c: &Resource, server_names: Vec<String>, secret: &str) -> ServerTls {
    let s = |k: &str| c.field(k).and_then(Node::as_str).map(str::to_string);
    let secret = if secret.contains('/') {
        secret.to_string()
    } else {
        format!("{}/{secret}", c.id.namespace)
    };
    ServerTls {
        server_names: server_names.into_iter().filter(|n| n != "*").collect(),
        secret,
        min_tls_version: s("min_tls_version"),
        max_tls_version: s("max_tls_version"),
        alpn_protocols: s("alpn_protocols")
            .map(|a| a.split(',').map(|p| p.trim().to_string()).collect())
            .unwrap_or_default(),
    }
}

/// The TLSContext and resolver a Mapping names must exist.
fn check_references(
    mp: &mut Mapping,
    tls_contexts: &HashMap<String, Resource>,
    resolvers: &HashMap<String, Kind>,
    cx: &mut Cx,
) -> bool {
    let mut ok = true;
    if let Some(name) = &mp.cluster.tls_context {
        if !tls_contexts.contains_key(name.as_str()) {
            cx.diags.push(
                Diagnostic::at(
                    Code::UndefinedTlsContext,
                    mp.cluster.tls_context_span.unwrap_or(mp.r.span),
                    format!("TLSContext `{name}` is not defined"),
                )
                .with_object(&mp.r.id)
                .with_field(mp.r.path("tls")),
            );
            ok = false;
        }
    }
    if let Some((name, span)) = &mp.cluster.resolver {
        if !resolvers.contains_key(name) {
            let mut d = Diagnostic::at(
                Code::UndefinedResolver,
                *span,
                format!("resolver `{name}` is not defined"),
            )
            .with_object(&mp.r.id)
            .with_field(mp.r.path("resolver"));
            if let Some(s) = crate::diag::did_you_mean(name, resolvers.keys().map(String::as_str)) {
                d = d.with_help(format!("did you mean `{s}`?"));
            }
            cx.diags.push(d);
            ok = false;
        }
    }
    ok
}

/// Whether two DNS globs (exact, `*.suffix`, `prefix*`, `*`) can match a common name.
pub fn globs_intersect(a: &str, b: &str) -> bool {
    if a == "*" || b == "*" {
        return true;
    }
    match (
        a.strip_prefix('*'),
        a.strip_suffix('*'),
        b.strip_prefix('*'),
        b.strip_suffix('*'),
    ) {
        (Some(sa), _, Some(sb), _) => sa.ends_with(sb) || sb.ends_with(sa),
        (_, Some(pa), _, Some(pb)) => pa.starts_with(pb) || pb.starts_with(pa),
        (Some(_), _, _, Some(_)) | (_, Some(_), Some(_), _) => true,
        (Some(s), _, None, None) => b.ends_with(s),
        (_, Some(p), None, None) => b.starts_with(p),
        (None, None, Some(s), _) => a.ends_with(s),
        (None, None, _, Some(p)) => a.starts_with(p),
        (None, None, None, None) => a.eq_ignore_ascii_case(b),
    }
}

/// A DNS glob as an RE2 regex over `:authority` (with an optional port).
fn glob_regex(glob: &str) -> String {
    let mut out = String::new();
    for c in glob.chars() {
        match c {
            '*' => out.push_str("[^:]*"),
            '.' => out.push_str("\\."),
            c => out.push(c),
        }
    }
    out.push_str("(:[0-9]+)?");
    out
}

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
fn build_routes<'m, 'a>(
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
        let rs = &leader.route;
        RouteAction::Forward(Box::new(Forward {
            clusters: wc,
            prefix_rewrite: rs.prefix_rewrite.clone(),
            regex_rewrite: rs.regex_rewrite.clone(),
            timeout_ms: rs.timeout_ms.unwrap_or(settings.default_timeout_ms),
            idle_timeout_ms: rs.idle_timeout_ms,
            retry: rs.retry.clone().map(Box::new),
            cors: rs
                .cors
                .clone()
                .or_else(|| settings.cors.clone())
                .map(Box::new),
            shadow: shadow.map(Box::new),
            host_rewrite: rs.host_rewrite.clone(),
            auto_host_rewrite: rs.auto_host_rewrite,
            upgrades: rs.upgrades.clone(),
            request_headers_to_add: rs.request_headers_to_add.clone(),
            request_headers_to_remove: rs.request_headers_to_remove.clone(),
            response_headers_to_add: rs.response_headers_to_add.clone(),
            response_headers_to_remove: rs.response_headers_to_remove.clone(),
            hash_policy: rs.hash_policy.clone().map(Box::new),
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

fn differing_setting(a: &mapping::RouteSettings, b: &mapping::RouteSettings) -> &'static str {
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

/// FNV-1a over an explicit encoding, for names that must stay the same across builds:
/// each part is a tag byte, then its text and a 0xff byte that no UTF-8 text contains, so
/// different values never feed the same bytes. Written out, not `Debug` or `Hash`, whose
/// output Rust does not promise to keep.
struct Fnv(crate::fnv::Fnv1a);

impl Fnv {
    fn new() -> Fnv {
        Fnv(crate::fnv::Fnv1a::new())
    }
    fn bytes(&mut self, bytes: &[u8]) {
        self.0.write(bytes);
    }
    fn text(&mut self, tag: u8, s: &str) {
        self.bytes(&[tag]);
        self.bytes(s.as_bytes());
        self.bytes(&[0xff]);
    }
    fn opt_text(&mut self, tag: u8, s: Option<&str>) {
        match s {
            Some(s) => self.text(tag, s),
            None => self.bytes(&[tag, 0xfe]),
        }
    }
    fn number(&mut self, tag: u8, n: Option<u64>) {
        self.bytes(&[tag]);
        match n {
            Some(n) => self.bytes(&n.to_le_bytes()),
            None => self.bytes(&[0xfe]),
        }
    }
    fn value(&mut self, v: &ValueMatch) {
        match v {
            ValueMatch::Exact(s) => self.text(b'e', s),
            ValueMatch::Regex(s) => self.text(b'r', s),
            ValueMatch::Present => self.bytes(b"p"),
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

/// A hash of what makes a cluster (its name and sources aside), for the names of clusters
/// with settings other than the defaults.
fn cluster_hash(c: &Cluster) -> u64 {
    let mut h = Fnv::new();
    h.text(b'h', &c.host);
    h.number(b'p', Some(c.port.into()));
    match &c.discovery {
        Discovery::Dns => h.bytes(b"D"),
        Discovery::Static => h.bytes(b"S"),
        Discovery::Eds {
            service,
            namespace,
            port,
        } => {
            h.text(b'E', service);
            h.text(b'n', namespace);
            h.number(b'p', Some((*port).into()));
        }
    }
    match &c.tls {
        None => h.bytes(b"-"),
        Some(t) => {
            h.opt_text(b's', t.sni.as_deref());
            h.opt_text(b'c', t.context.as_deref());
            h.opt_text(b'k', t.client_secret.as_deref());
            h.opt_text(b'a', t.ca_secret.as_deref());
            for p in &t.alpn_protocols {
                h.text(b'l', p);
            }
        }
    }
    h.bytes(&[b'2', c.http2 as u8]);
    h.number(b't', Some(c.connect_timeout_ms));
    h.number(b'i', c.idle_timeout_ms);
    h.number(b'm', c.max_connection_lifetime_ms);
    h.bytes(&[
        b'b',
        match c.lb_policy {
            LbPolicy::RoundRobin => 0,
            LbPolicy::LeastRequest => 1,
            LbPolicy::RingHash => 2,
            LbPolicy::Maglev => 3,
        },
    ]);
    for cb in &c.circuit_breakers {
        h.text(b'B', &cb.priority);
        h.number(b'c', cb.max_connections.map(u64::from));
        h.number(b'q', cb.max_pending_requests.map(u64::from));
        h.number(b'r', cb.max_requests.map(u64::from));
        h.number(b'y', cb.max_retries.map(u64::from));
    }
    (h.0).0
}

fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The cluster a Mapping sends to, named; its sources are added by [`add_cluster`].
fn cluster_of(
    m: &Mapping,
    tls_contexts: &HashMap<String, Resource>,
    resolvers: &HashMap<String, Kind>,
    default_resolver: Option<&str>,
) -> Cluster {
    let ns = &m.r.id.namespace;
    let host = m.service.dns_name(ns);
    let port = m.service.port_or_default();
    let resolver = m
        .cluster
        .resolver
        .as_ref()
        .map(|(n, _)| n.as_str())
        .or(default_resolver);
    let resolver_kind = resolver
        .and_then(|r| resolvers.get(r))
        .copied()
        .unwrap_or(Kind::KubernetesServiceResolver);
    let discovery = if m.service.is_ip() {
        Discovery::Static
    } else if resolver_kind == Kind::KubernetesEndpointResolver {
        let (svc, svc_ns) = host
            .split_once('.')
            .map_or((host.as_str(), ns.as_str()), |(a, b)| {
                (a, b.split('.').next().unwrap_or(b))
            });
        Discovery::Eds {
            service: svc.to_string(),
            namespace: svc_ns.to_string(),
            port,
        }
    } else {
        Discovery::Dns
    };
    let tls = if let Some(ctx) = m
        .cluster
        .tls_context
        .as_deref()
        .and_then(|n| tls_contexts.get(n))
    {
        let s = |k: &str| ctx.field(k).and_then(Node::as_str).map(str::to_string);
        let with_ns = |v: String| {
            if v.contains('/') {
                v
            } else {
                format!("{}/{v}", ctx.id.namespace)
            }
        };
        Some(UpstreamTls {
            sni: s("sni").or_else(|| (!m.service.is_ip()).then(|| host.clone())),
            context: Some(ctx.id.name.clone()),
            client_secret: s("secret").map(with_ns),
            ca_secret: s("ca_secret").map(with_ns),
            alpn_protocols: s("alpn_protocols")
                .map(|a| a.split(',').map(|p| p.trim().to_string()).collect())
                .unwrap_or_default(),
        })
    } else if m.service.https || m.r.field("tls").and_then(Node::as_bool) == Some(true) {
        Some(UpstreamTls {
            sni: (!m.service.is_ip()).then(|| host.clone()),
            context: None,
            client_secret: None,
            ca_secret: None,
            alpn_protocols: Vec::new(),
        })
    } else {
        None
    };
    let mut cluster = Cluster {
        name: String::new(),
        host: host.clone(),
        port,
        discovery,
        tls,
        http2: m.cluster.grpc,
        connect_timeout_ms: m.cluster.connect_timeout_ms.unwrap_or(3000),
        idle_timeout_ms: m.cluster.idle_timeout_ms,
        max_connection_lifetime_ms: m.cluster.max_connection_lifetime_ms,
        lb_policy: m.cluster.lb_policy.unwrap_or(LbPolicy::RoundRobin),
        circuit_breakers: m.cluster.circuit_breakers.clone(),
        sources: Vec::new(),
    };
    // The name says what the cluster is; a hash of the non-default settings keeps two
    // clusters for the same upstream with different settings apart, and stays stable.
    let mut name = format!("cluster_{}_{port}", sanitize(&host));
    // The same upstream found through EDS and through DNS is two clusters.
    if matches!(cluster.discovery, Discovery::Eds { .. }) {
        name.push_str("_eds");
    }
    let plain = cluster.tls.is_none()
        && !cluster.http2
        && cluster.connect_timeout_ms == 3000
        && cluster.idle_timeout_ms.is_none()
        && cluster.max_connection_lifetime_ms.is_none()
        && cluster.lb_policy == LbPolicy::RoundRobin
        && cluster.circuit_breakers.is_empty();
    if !plain {
        if cluster.tls.is_some() {
            name.push_str("_tls");
        }
        if cluster.http2 {
            name.push_str("_h2");
        }
        // A hash of the settings.
        name.push_str(&format!("_{:08x}", cluster_hash(&cluster) as u32));
    }
    cluster.name = name;
    cluster
}

/// The clusters routes send to. Mappings that name the same cluster are its sources, in
/// the order of the input; the first of them gives the cluster.
fn used_clusters(runs: &mut [Vec<Lowered>], used: &[bool]) -> BTreeMap<String, Cluster> {
    // Mappings are visited in their order in memory, and only names are sorted: at 50,000
    // Mappings, sorting or hashing through the Mappings themselves is mostly cache misses.
    let mut names: Vec<(&str, usize)> = runs
        .iter()
        .flatten()
        .filter(|l| used[l.index])
        .map(|l| (l.cluster.name.as_str(), l.index))
        .collect();
    // Stable: within a name, Mappings stay in input order.
    names.sort_by(|a, b| a.0.cmp(b.0));
    // Each used Mapping's group (one per name, in name order), and the size of each group.
    let mut slot = vec![usize::MAX; used.len()];
    let mut sizes: Vec<usize> = Vec::new();
    let mut last: Option<&str> = None;
    for &(name, i) in &names {
        if last != Some(name) {
            sizes.push(0);
            last = Some(name);
        }
        slot[i] = sizes.len() - 1;
        if let Some(n) = sizes.last_mut() {
            *n += 1;
        }
    }
    drop(names);
    // In the order of the Mappings (of memory): the first of a group gives the cluster,
    // each adds itself to the sources.
    let mut taken: Vec<Option<Cluster>> = (0..sizes.len()).map(|_| None).collect();
    for l in runs.iter_mut().flatten() {
        let g = slot[l.index];
        if g == usize::MAX {
            continue;
        }
        let src = source_ref(l.mp.r);
        match &mut taken[g] {
            Some(c) => c.sources.push(src),
            None => {
                // Moved out (the Mapping is not read again); a default, which allocates
                // nothing, stays in its place.
                let mut cluster = std::mem::take(&mut *l.cluster);
                cluster.sources.reserve_exact(sizes[g]);
                cluster.sources.push(src);
                taken[g] = Some(cluster);
            }
        }
    }
    // Groups are in name order, without duplicates: the map is built in one pass.
    taken
        .into_iter()
        .flatten()
        .map(|c| (c.name.clone(), c))
        .collect()
}

fn tcp<'a>(
    tcp_mappings: impl Iterator<Item = &'a Resource>,
    clusters: &mut BTreeMap<String, Cluster>,
    cx: &mut Cx,
    tls_contexts: &HashMap<String, Resource>,
) -> Vec<TcpListener> {
    let mut by_port: BTreeMap<u16, Vec<TcpRoute>> = BTreeMap::new();
    for r in tcp_mappings {
        let mut reader = Reader::new(r);
        let Some(port) = reader.int("port") else {
            continue;
        };
        let Ok(port) = u16::try_from(port) else {
            reader.push(
                Code::InvalidValue,
                reader.span("port"),
                "port",
                format!("port {port} is outside 1-65535"),
            );
            cx.diags.append(&mut reader.diags);
            continue;
        };
        let service_span = reader.span("service");
        let upstream = match reader.str("service").map(service::parse) {
            Some(Ok(u)) => u,
            Some(Err(message)) => {
                reader.push(
                    Code::InvalidService,
                    service_span,
                    "service",
                    format!("invalid `service`: {message}"),
                );
                cx.diags.append(&mut reader.diags);
                continue;
            }
            None => continue,
        };
        let host = upstream.dns_name(&r.id.namespace);
        let tls = match reader.node("tls") {
            Some(t) if t.as_bool() == Some(true) => Some(None),
            Some(t) => match t.as_str().filter(|_| t.as_bool().is_none()) {
                Some(name) if tls_contexts.contains_key(name) => Some(Some(name.to_string())),
                Some(name) => {
                    reader.push(
                        Code::UndefinedTlsContext,
                        t.span,
                        "tls",
                        format!("TLSContext `{name}` is not defined"),
                    );
                    cx.diags.append(&mut reader.diags);
                    continue;
                }
                None => None,
            },
            None => None,
        };
        let cluster = Cluster {
            name: format!(
                "cluster_tcp_{}_{}",
                sanitize(&host),
                upstream.port_or_default()
            ),
            host: host.clone(),
            port: upstream.port_or_default(),
            discovery: if upstream.is_ip() {
                Discovery::Static
            } else {
                Discovery::Dns
            },
            tls: tls.map(|ctx| UpstreamTls {
                sni: Some(host.clone()),
                context: ctx,
                client_secret: None,
                ca_secret: None,
                alpn_protocols: Vec::new(),
            }),
            http2: false,
            connect_timeout_ms: 3000,
            idle_timeout_ms: None,
            max_connection_lifetime_ms: None,
            lb_policy: LbPolicy::RoundRobin,
            circuit_breakers: Vec::new(),
            sources: vec![source_ref(r)],
        };
        let name = cluster.name.clone();
        clusters.entry(name.clone()).or_insert(cluster);
        by_port.entry(port).or_default().push(TcpRoute {
            sni: reader.str("host").map(str::to_string),
            clusters: vec![WeightedCluster {
                cluster: name,
                weight: 100,
                source: source_ref(r),
            }],
            idle_timeout_ms: reader.uint("idle_timeout_ms"),
            source: source_ref(r),
        });
        cx.diags.append(&mut reader.diags);
    }
    by_port
        .into_iter()
        .map(|(port, mut routes)| {
            routes.sort_by(|a, b| a.sni.cmp(&b.sni).then(a.source.cmp(&b.source)));
            TcpListener {
                name: format!("ambassador-tcp-{port}"),
                port,
                routes,
            }
        })
        .collect()
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
/// `len(name) + len(value or "*") + 1 for a regex`; `:authority` and `:method` count as headers.
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
    let vlen = |v: &ValueMatch| match v {
        ValueMatch::Exact(s) => s.len(),
        ValueMatch::Regex(s) => s.len() + 1,
        ValueMatch::Present => 1,
    };
    fn vtext(v: &ValueMatch) -> &str {
        match v {
            ValueMatch::Exact(s) | ValueMatch::Regex(s) => s,
            ValueMatch::Present => "*",
        }
    }
    let header_len = m
        .headers
        .iter()
        .map(|h| h.name.len() + vlen(&h.value))
        .sum();
    let query_len = m
        .query_parameters
        .iter()
        .map(|q| q.name.len() + vlen(&q.value))
        .sum();
    let method = m
        .headers
        .iter()
        .find(|h| h.name == ":method")
        .map_or("GET", |h| vtext(&h.value));
    (
        r.precedence,
        m.path.text().len(),
        header_len,
        query_len,
        m.path.text(),
        method,
        m.headers
            .iter()
            .map(|h| format!("{}={}", h.name, vtext(&h.value)))
            .collect(),
        m.query_parameters
            .iter()
            .map(|q| format!("{}={}", q.name, vtext(&q.value)))
            .collect(),
    )
}

/// The object a source reference names.
pub fn object_of(s: &SourceRef) -> ObjectRef {
    ObjectRef {
        kind: s.kind.to_string(),
        namespace: s.namespace.to_string(),
        name: s.name.to_string(),
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

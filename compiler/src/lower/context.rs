//! What lowering reads besides the Mappings: the Module's settings, resolvers, TLSContexts, Hosts and TCPMappings.

use std::collections::BTreeMap;

use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};

use crate::diag::{Code, Diagnostic};
use crate::front::yaml::Node;
use crate::front::{Kind, Resource};
use crate::ir::{
    AccessLog, Auth, Cluster, InsecureAction, Listener, RateLimit, Settings, TcpListener, Tracing,
    VirtualHost,
};

use super::hosts::{hosts, VHost, VHosts};
use super::listeners::listeners;
use super::mapping::{self, Mapping, Reader};
use super::tcp::{tcp, TlsSources};
use super::{Cx, LowerOptions};

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
    pub vhosts: VHosts,
    pub listeners: Vec<Listener>,
    pub tcp_listeners: Vec<TcpListener>,
    /// Clusters the context holds whatever the Mappings: the TCPMappings' and the
    /// AuthService's.
    pub held_clusters: BTreeMap<String, Cluster>,
    /// The AuthServices, merged (see [`super::auth`]).
    pub auth: Option<Auth>,
    /// The RateLimitService in use (see [`super::ratelimit`]).
    pub rate_limit: Option<RateLimit>,
    /// The LogService in use (see [`super::logservice`]).
    pub access_log: Option<AccessLog>,
    /// The TracingService in use (see [`super::tracing`]).
    pub tracing: Option<Tracing>,
    /// Namespaces of every object and Service read: a `service` naming one of them as
    /// `name.namespace` is a Kubernetes Service there.
    pub known_namespaces: HashSet<String>,
    /// Findings about the objects above.
    pub diags: Vec<Diagnostic>,
}

impl Context {
    /// The cluster a Mapping sends to, with the TLSContexts and resolvers of this context.
    pub fn cluster_of(&self, m: &super::Mapping) -> crate::ir::Cluster {
        super::cluster::cluster_of(
            m,
            &self.tls_contexts,
            &self.resolvers,
            self.default_resolver.as_deref(),
        )
    }

    /// `active` are the resources left after [`dedupe`](super::dedupe); `all` and
    /// `services` give the known namespaces.
    pub fn build<'r>(
        active: &[&'r Resource],
        all: impl IntoIterator<Item = &'r Resource>,
        services: impl IntoIterator<Item = &'r crate::front::ServiceInfo>,
        secrets: impl IntoIterator<Item = &'r crate::front::SecretInfo>,
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
        // The resources of every kind but Mappings, in order, gathered in one pass: a pass
        // over every resource per kind (a dozen over 20,000 Mappings) was a millisecond.
        let mut of_kind: Vec<Vec<&'r Resource>> = vec![Vec::new(); Kind::ALL.len()];
        let mut resolver_list: Vec<&'r Resource> = Vec::new();
        for &r in active.iter().filter(|r| r.kind != Kind::Mapping) {
            of_kind[r.kind as usize].push(r);
            // The resolvers of the three kinds in one list, in order: a later one of a name
            // replaces an earlier one of another kind.
            if matches!(
                r.kind,
                Kind::KubernetesServiceResolver
                    | Kind::KubernetesEndpointResolver
                    | Kind::ConsulResolver
            ) {
                resolver_list.push(r);
            }
        }
        let by_kind = |k: Kind| {
            debug_assert!(k != Kind::Mapping, "Mappings are not gathered by kind");
            of_kind[k as usize].iter().copied()
        };

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
        for r in &resolver_list {
            resolvers.insert(r.id.name.to_string(), r.kind);
        }
        let tls_contexts: HashMap<String, Resource> = by_kind(Kind::TlsContext)
            .map(|r| (r.id.name.to_string(), r.clone()))
            .collect();

        // Virtual hosts from Hosts, or one catch-all when there is none.
        let secrets: HashMap<String, &crate::front::SecretInfo> = secrets
            .into_iter()
            .map(|s| (format!("{}/{}", s.namespace, s.name), s))
            .collect();
        let mut vhosts = hosts(
            by_kind(Kind::Host),
            &tls_contexts,
            &secrets,
            opts.secrets_known,
            opts.now,
            &mut diags,
        );
        if vhosts.is_empty() {
            vhosts.push(VHost {
                vh: VirtualHost {
                    name: "ambassador-default".into(),
                    domains: vec!["*".into()],
                    source: None,
                    insecure: InsecureAction::Route,
                    routes: Vec::new().into(),
                    cors: None,
                },
                glob: "*".into(),
                selector: BTreeMap::new(),
                namespace: String::new(),
                labels: BTreeMap::new(),
                tls: None,
                tls_context: None,
                bound: false,
            });
        }

        let listeners = listeners(
            by_kind(Kind::Listener),
            &vhosts,
            &settings,
            opts,
            &mut diags,
        );
        let served: HashSet<&str> = listeners
            .iter()
            .flat_map(|l| &l.chains)
            .flat_map(|c| &c.virtual_hosts)
            .map(String::as_str)
            .collect();
        for v in &mut vhosts {
            v.bound = served.contains(v.vh.name.as_str());
        }

        let mut held_clusters = BTreeMap::new();
        let mut cx = Cx {
            diags,
            known_namespaces: &known_namespaces,
        };
        let tcp_listeners = tcp(
            by_kind(Kind::TcpMapping),
            &mut held_clusters,
            &mut cx,
            &TlsSources {
                vhosts: &vhosts,
                tls_contexts: &tls_contexts,
                secrets: &secrets,
                known: opts.secrets_known,
            },
        );
        let mut diags = cx.diags;
        // A TLSContext with `hosts` terminated TLS by itself before Emissary 2.0; now only a
        // Host that uses it, or a TCPMapping whose `host` it lists, makes it terminate TLS.
        let mut contexts: Vec<&Resource> = tls_contexts.values().collect();
        contexts.sort_by(|a, b| a.id.cmp(&b.id));
        for ctx in contexts {
            super::hosts::check_alpn(
                ctx,
                ctx.field("alpn_protocols"),
                "alpn_protocols",
                &mut diags,
            );
            let name = Some(ctx.id.name.as_str());
            let used = vhosts.iter().any(|v| v.tls_context.as_deref() == name)
                || tcp_listeners
                    .iter()
                    .flat_map(|t| &t.routes)
                    .any(|r| r.tls_context.as_deref() == name);
            if !used && !Reader::new(ctx).str_list("hosts").is_empty() {
                diags.push(
                    Diagnostic::at(
                        Code::UnsupportedField,
                        ctx.key_span("hosts"),
                        format!(
                            "TLSContext `{}` terminates TLS for its `hosts` only through a Host that uses it (Emissary 2.0 and later), or for a TCPMapping whose `host` it lists; none does",
                            ctx.id.name
                        ),
                    )
                    .with_object(&ctx.id)
                    .with_field(ctx.path("hosts")),
                );
            }
        }
        let auth = super::auth::auth(by_kind(Kind::AuthService), &tls_contexts, &mut diags).map(
            |(auth, cluster)| {
                if let Some(c) = cluster {
                    held_clusters.insert(c.name.clone(), c);
                }
                auth
            },
        );
        let mut settings = settings;
        let rate_limit = super::ratelimit::rate_limit(
            by_kind(Kind::RateLimitService),
            &tls_contexts,
            &settings.default_label_domain,
            &mut diags,
        )
        .map(|(rl, cluster)| {
            held_clusters.insert(cluster.name.clone(), cluster);
            rl
        });
        // Routes carry rate limits only while a RateLimitService is in use, as in Emissary.
        settings.rate_limit_domain = rate_limit.as_ref().map(|rl| rl.domain.clone());
        let access_log =
            super::logservice::access_log(by_kind(Kind::LogService), &tls_contexts, &mut diags)
                .map(|(log, cluster)| {
                    held_clusters.insert(cluster.name.clone(), cluster);
                    log
                });
        let tracing =
            super::tracing::tracing(by_kind(Kind::TracingService), &tls_contexts, &mut diags).map(
                |(t, cluster)| {
                    held_clusters.insert(cluster.name.clone(), cluster);
                    t
                },
            );
        Context {
            auth,
            rate_limit,
            access_log,
            tracing,
            settings,
            default_resolver,
            resolvers,
            tls_contexts,
            vhosts: VHosts::new(vhosts),
            listeners,
            tcp_listeners,
            held_clusters,
            known_namespaces,
            diags,
        }
    }
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
            "default_label_domain",
            "default_labels",
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
        if let Some(d) = c.get("default_label_domain").and_then(Node::as_str) {
            s.default_label_domain = d.to_string();
        }
        if let Some(defaults) = c.get("default_labels").and_then(Node::as_map) {
            for (domain, v) in defaults {
                let Some(domain) = domain.scalar() else {
                    continue;
                };
                let specifiers = match v.as_map() {
                    Some([(k, list)]) if k.scalar() == Some("defaults") => list.as_seq(),
                    _ => None,
                };
                let Some(specifiers) = specifiers else {
                    diags.push(
                        Diagnostic::at(
                            Code::InvalidRateLimitLabel,
                            v.span,
                            format!(
                                "`default_labels.{domain}` must be `{{defaults: [<label>, ...]}}`"
                            ),
                        )
                        .with_object(&r.id)
                        .with_field(r.path(&format!("config.default_labels.{domain}"))),
                    );
                    continue;
                };
                let mut actions = Vec::new();
                for item in specifiers {
                    match super::ratelimit::specifier(item) {
                        Ok(a) => actions.push(a),
                        Err(message) => diags.push(
                            Diagnostic::at(
                                Code::InvalidRateLimitLabel,
                                item.span,
                                format!("{message}; the label is left out"),
                            )
                            .with_object(&r.id)
                            .with_field(r.path(&format!("config.default_labels.{domain}"))),
                        ),
                    }
                }
                s.default_labels.insert(domain.to_string(), actions);
            }
        }
    }
    s
}

/// The TLSContext and resolver a Mapping names must exist.
pub(super) fn check_references(
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

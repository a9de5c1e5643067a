//! Clusters: what a Mapping sends to, its stable name, and the clusters the routes use.

use std::collections::BTreeMap;

use foldhash::HashMap;

use crate::front::yaml::Node;
use crate::front::{Kind, Resource};
use crate::ir::{Cluster, Discovery, LbPolicy, UpstreamTls, ValueMatch};

use super::mapping::Mapping;
use super::source_ref;

/// FNV-1a over an explicit encoding, for names that must stay the same across builds:
/// each part is a tag byte, then its text and a 0xff byte that no UTF-8 text contains, so
/// different values never feed the same bytes. Written out, not `Debug` or `Hash`, whose
/// output Rust does not promise to keep.
pub(super) struct Fnv(pub(super) crate::fnv::Fnv1a);

impl Fnv {
    pub(super) fn new() -> Fnv {
        Fnv(crate::fnv::Fnv1a::new())
    }
    pub(super) fn bytes(&mut self, bytes: &[u8]) {
        self.0.write(bytes);
    }
    pub(super) fn text(&mut self, tag: u8, s: &str) {
        self.bytes(&[tag]);
        self.bytes(s.as_bytes());
        self.bytes(&[0xff]);
    }
    pub(super) fn opt_text(&mut self, tag: u8, s: Option<&str>) {
        match s {
            Some(s) => self.text(tag, s),
            None => self.bytes(&[tag, 0xfe]),
        }
    }
    pub(super) fn number(&mut self, tag: u8, n: Option<u64>) {
        self.bytes(&[tag]);
        match n {
            Some(n) => self.bytes(&n.to_le_bytes()),
            None => self.bytes(&[0xfe]),
        }
    }
    pub(super) fn value(&mut self, v: &ValueMatch) {
        match v {
            ValueMatch::Exact(s) => self.text(b'e', s),
            ValueMatch::Regex(s) => self.text(b'r', s),
            ValueMatch::Present => self.bytes(b"p"),
            ValueMatch::Host(s) => self.text(b'h', s),
        }
    }
}

/// A hash of what makes a cluster (its name and sources aside), for the names of clusters
/// with settings other than the defaults.
pub(super) fn cluster_hash(c: &Cluster) -> u64 {
    let mut h = Fnv::new();
    h.text(b'h', &c.host);
    h.number(b'p', Some(c.port.into()));
    for (host, port) in &c.more_endpoints {
        h.text(b'H', host);
        h.number(b'p', Some((*port).into()));
    }
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

pub(super) fn sanitize(s: &str) -> String {
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
pub(super) fn cluster_of(
    m: &Mapping,
    tls_contexts: &HashMap<String, Resource>,
    resolvers: &HashMap<String, Kind>,
    default_resolver: Option<&str>,
) -> Cluster {
    let ns = &m.r.id.namespace;
    let host = m.service.dns_name(ns);
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
    let tls = if let Some(ctx) = m
        .cluster
        .tls_context
        .as_deref()
        .and_then(|n| tls_contexts.get(n))
    {
        Some(context_tls(ctx, (!m.service.is_ip()).then(|| host.clone())))
    } else if m.service.https || m.cluster.tls_true {
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
    // Without a port, 443 when the cluster originates TLS (a TLSContext, `tls: true` or
    // `https://`), else 80, as Emissary's `IRCluster` decides.
    let port = m.service.port_for(tls.is_some());
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
    let mut cluster = Cluster {
        name: String::new(),
        host: host.clone(),
        port,
        more_endpoints: Vec::new(),
        discovery,
        tls: tls.map(Box::new),
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

/// What gathering the clusters reads of a lowered Mapping a route sends to: the rest of it
/// (some 500 bytes and its texts) is freed as soon as the routes are built.
pub(super) struct Sends<'a> {
    /// The Mapping's cluster; taken by [`used_clusters`].
    pub cluster: Option<Box<Cluster>>,
    pub r: &'a Resource,
    pub index: usize,
}

impl<'a> Sends<'a> {
    pub fn of(l: &super::Lowered<'a>, ctx: &super::Context) -> Sends<'a> {
        Sends {
            cluster: Some(Box::new(ctx.cluster_of(&l.mp))),
            r: l.mp.r,
            index: l.index,
        }
    }
}

/// The clusters routes send to, from what is kept of the Mappings they send to, in input
/// order (`sends`). Mappings that name the same cluster are its sources, in the order of
/// the input; the first of them gives the cluster.
pub(super) fn used_clusters(sends: &mut [Sends], used: &[bool]) -> BTreeMap<String, Box<Cluster>> {
    // Only names are sorted: at 50,000 Mappings, sorting through the clusters themselves is
    // mostly cache misses.
    let mut names: Vec<(&str, usize)> = sends
        .iter()
        .filter(|l| used[l.index])
        .filter_map(|l| Some((l.cluster.as_ref()?.name.as_str(), l.index)))
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
    // In the order of the Mappings: the first of a group gives the cluster, each adds
    // itself to the sources.
    let mut taken: Vec<Option<Box<Cluster>>> = (0..sizes.len()).map(|_| None).collect();
    for l in sends.iter_mut() {
        let g = slot[l.index];
        if g == usize::MAX {
            continue;
        }
        let src = source_ref(l.r);
        match &mut taken[g] {
            Some(c) => c.sources.push(src),
            None => {
                // The box moves (the Mapping is not read again): no copy of the cluster.
                let Some(mut cluster) = l.cluster.take() else {
                    continue;
                };
                cluster.sources.reserve_exact(sizes[g]);
                cluster.sources.push(src);
                taken[g] = Some(cluster);
            }
        }
    }
    // The clusters of the others that name one, before the map is built beside them.
    for l in sends.iter_mut() {
        l.cluster = None;
    }
    // Groups are in name order, without duplicates: the boxes move into the map (see
    // `Ir::clusters`).
    taken
        .into_iter()
        .flatten()
        .map(|c| (c.name.clone(), c))
        .collect()
}

/// TLS origination with a TLSContext (for Mappings, AuthServices and the gRPC services): its
/// `sni` (else `sni`), its client certificate and
/// CA (`namespace/name`, the TLSContext's namespace when none is given) and ALPN.
pub(super) fn context_tls(ctx: &Resource, sni: Option<String>) -> UpstreamTls {
    let s = |k: &str| ctx.field(k).and_then(Node::as_str).map(str::to_string);
    let with_ns = |v: String| {
        if v.contains('/') {
            v
        } else {
            format!("{}/{v}", ctx.id.namespace)
        }
    };
    UpstreamTls {
        sni: s("sni").or(sni),
        context: Some(ctx.id.name.to_string()),
        client_secret: s("secret").map(with_ns),
        ca_secret: s("ca_secret").map(with_ns),
        // One entry, as Emissary writes it (see `hosts::check_alpn`).
        alpn_protocols: s("alpn_protocols").into_iter().collect(),
    }
}

//! TCPMappings: TCP listeners by port and their clusters.

use std::collections::BTreeMap;

use foldhash::HashMap;

use crate::diag::{Code, Diagnostic};
use crate::front::yaml::Node;
use crate::front::{Resource, SecretInfo};
use crate::ir::{
    Cluster, Discovery, LbPolicy, ServerTls, TcpListener, TcpRoute, UpstreamTls, WeightedCluster,
};

use super::cluster::sanitize;
use super::hosts::{globs_intersect, server_tls_from_context, VHost};
use super::mapping::{canonical, Reader};
use super::{service, source_ref, Cx};

/// What a TCPMapping with `host` may terminate TLS with: the Hosts, the TLSContexts, and the
/// Secrets read (`namespace/name`; `known` when every Secret of the configuration is there).
pub(super) struct TlsSources<'a> {
    pub vhosts: &'a [VHost],
    pub tls_contexts: &'a HashMap<String, Resource>,
    pub secrets: &'a HashMap<String, &'a SecretInfo>,
    pub known: bool,
}

pub(super) fn tcp<'a>(
    tcp_mappings: impl Iterator<Item = &'a Resource>,
    clusters: &mut BTreeMap<String, Cluster>,
    cx: &mut Cx,
    sources: &TlsSources,
) -> Vec<TcpListener> {
    let tls_contexts = sources.tls_contexts;
    // Emissary's groups: one per port and `host` (SNI); each group is one filter chain
    // whose members share the connections.
    let mut groups: BTreeMap<(u16, Option<String>), Vec<Member>> = BTreeMap::new();
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
        // As for a Mapping: a negative weight is refused, not read as 0.
        let Ok(weight) = reader.weight() else {
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
        // Without a port, 443 when the TCPMapping originates TLS, as Emissary's `IRCluster`
        // decides (`service::Upstream::port_for`).
        let upstream_port = upstream.port_for(tls.is_some());
        // A cluster that originates TLS is another cluster than the plain one to the same
        // upstream, as Emissary names it (`_otls`, then the TLSContext's name): two
        // TCPMappings to one service, one with `tls`, must not share a cluster.
        let otls = match &tls {
            None => String::new(),
            Some(None) => "_otls".to_string(),
            Some(Some(ctx)) => format!("_otls_{}", sanitize(ctx)),
        };
        let cluster = Cluster {
            name: format!("cluster_tcp_{}_{upstream_port}{otls}", sanitize(&host)),
            host: host.clone(),
            port: upstream_port,
            more_endpoints: Vec::new(),
            discovery: if upstream.is_ip() {
                Discovery::Static
            } else {
                Discovery::Dns
            },
            tls: tls.map(|ctx| {
                Box::new(UpstreamTls {
                    sni: Some(host.clone()),
                    context: ctx,
                    client_secret: None,
                    ca_secret: None,
                    alpn_protocols: Vec::new(),
                })
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
        let weight_span = reader.node("weight").map(|n| n.span);
        groups
            .entry((port, reader.str("host").map(str::to_string)))
            .or_default()
            .push(Member {
                r,
                cluster: name,
                new_cluster: cluster,
                core: TCP_CORE_KEYS
                    .iter()
                    .filter_map(|&k| Some((k, canonical(r.field(k)?))))
                    .collect(),
                weight,
                weight_span,
                idle_timeout_ms: reader.uint("idle_timeout_ms"),
            });
        cx.diags.append(&mut reader.diags);
    }
    let mut by_port: BTreeMap<u16, Vec<TcpRoute>> = BTreeMap::new();
    for ((port, sni), mut members) in groups {
        // A group with `host` terminates TLS for that SNI; with nothing to terminate it
        // with, Emissary leaves the group out ("No matching TLSContext found, disabling!").
        let (tls, tls_context) = match &sni {
            None => (None, None),
            Some(host) => match sni_tls(host, sources) {
                Ok((tls, context)) => (Some(tls), context),
                Err(why) => {
                    for m in &members {
                        cx.diags.push(
                            Diagnostic::at(
                                Code::TcpSniWithoutTls,
                                m.r.key_span("host"),
                                format!(
                                    "TCPMapping `{}` has `host: {host}` but no TLS to terminate it with ({why}), so it is left out: Emissary terminates TLS for a TCPMapping's `host` and disables one it cannot",
                                    m.r.id.name
                                ),
                            )
                            .with_object(&m.r.id)
                            .with_field(m.r.path("host")),
                        );
                    }
                    continue;
                }
            },
        };
        // Emissary adds members to a group in resource-key order, `name.namespace`.
        members.sort_by_cached_key(|m| {
            (
                format!("{}.{}", m.r.id.name, m.r.id.namespace),
                m.r.id.clone(),
            )
        });
        // Core keys must agree with the first member: Emissary refuses a newcomer that sets
        // one the group does not have, or has with another value ("cannot accept new
        // mapping … with mismatched tls: ctx != -unset-"), and the group goes on without it.
        let first_core = members[0].core.clone();
        let first_name = members[0].r.id.name.clone();
        let first_span = members[0].r.span;
        members.retain(|m| {
            let Some((k, _)) = m
                .core
                .iter()
                .find(|(k, v)| first_core.get(*k) != Some(*v))
            else {
                return true;
            };
            cx.diags.push(
                Diagnostic::at(
                    Code::CanaryMismatch,
                    m.r.key_span(k),
                    format!(
                        "`{k}` of TCPMapping `{}` differs from `{first_name}` on the same port and host, so it cannot join its group and gets no connections (as in Emissary)",
                        m.r.id.name
                    ),
                )
                .with_object(&m.r.id)
                .with_field(m.r.path(k))
                .with_related(first_span, "the group's first member"),
            );
            false
        });
        for m in &members {
            clusters
                .entry(m.cluster.clone())
                .and_modify(|c| c.sources.extend(m.new_cluster.sources.iter().cloned()))
                .or_insert_with(|| m.new_cluster.clone());
        }
        let weights = cumulative_weights(&members, cx);
        let first = &members[0];
        by_port.entry(port).or_default().push(TcpRoute {
            sni,
            tls,
            tls_context,
            clusters: members
                .iter()
                .zip(&weights)
                .map(|(m, w)| WeightedCluster {
                    cluster: m.cluster.clone(),
                    weight: *w,
                    source: source_ref(m.r),
                    case_sensitive: true,
                    settings: Default::default(),
                })
                .collect(),
            // Emissary flattens the members' keys into the group: the last one set wins.
            idle_timeout_ms: members.iter().rev().find_map(|m| m.idle_timeout_ms),
            source: source_ref(first.r),
        });
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

/// The TLS a TCPMapping group with `host` terminates, chosen as Emissary chooses it
/// (`tlscontext_for_tcpmapping`): the first Host with TLS, by hostname, whose hostname glob
/// matches `host` (a TLS Host `*` matches every one), else the first TLSContext, by name,
/// whose `hosts` holds `host` exactly. The certificate is served for `host` alone. Also
/// the TLSContext used, if any; or why there is none.
fn sni_tls(host: &str, sources: &TlsSources) -> Result<(ServerTls, Option<String>), String> {
    let mut hosts: Vec<&VHost> = sources.vhosts.iter().filter(|v| v.tls.is_some()).collect();
    hosts.sort_by(|a, b| a.glob.cmp(&b.glob));
    if let Some(v) = hosts.iter().find(|v| globs_intersect(&v.glob, host)) {
        let tls = v.tls.as_ref().expect("filtered on TLS");
        return Ok((
            ServerTls {
                server_names: vec![host.to_string()],
                ..tls.clone()
            },
            v.tls_context.clone(),
        ));
    }
    let mut contexts: Vec<&Resource> = sources.tls_contexts.values().collect();
    contexts.sort_by(|a, b| a.id.cmp(&b.id));
    let Some(ctx) = contexts
        .into_iter()
        .find(|c| Reader::new(c).str_list("hosts").iter().any(|h| h == host))
    else {
        return Err(format!(
            "no Host with TLS matches `{host}` and no TLSContext lists it in `hosts`"
        ));
    };
    let Some(secret) = ctx.field("secret").and_then(Node::as_str) else {
        return Err(format!(
            "TLSContext `{}` lists it but has no `secret`",
            ctx.id.name
        ));
    };
    let secret = if secret.contains('/') {
        secret.to_string()
    } else {
        format!("{}/{secret}", ctx.id.namespace)
    };
    if sources.known && !sources.secrets.contains_key(&secret) {
        return Err(format!(
            "the Secret `{secret}` of TLSContext `{}` does not exist",
            ctx.id.name
        ));
    }
    Ok((
        server_tls_from_context(ctx, vec![host.to_string()], &secret),
        Some(ctx.id.name.to_string()),
    ))
}

/// The keys of a TCPMapping that every member of its group must share (Emissary's
/// `IRTCPMappingGroup.CoreMappingKeys`, less `port` and `host`, which make the group).
const TCP_CORE_KEYS: [&str; 8] = [
    "address",
    "circuit_breakers",
    "enable_ipv4",
    "enable_ipv6",
    "group_id",
    "idle_timeout_ms",
    "labels",
    "tls",
];

/// One TCPMapping of a group.
struct Member<'a> {
    r: &'a Resource,
    cluster: String,
    /// Its cluster, added to the configuration once the TCPMapping is in its group.
    new_cluster: Cluster,
    /// Its core keys as canonical text.
    core: BTreeMap<&'static str, String>,
    weight: Option<u32>,
    weight_span: Option<crate::source::Span>,
    idle_timeout_ms: Option<u64>,
}

/// The weights Emissary gives a group's members in `tcp_proxy`'s `weighted_clusters`: its
/// canary normalisation (weighted members first, each the running total of the weights so
/// far; the unweighted then share what remains up to 100, the last one at 100), used as the
/// weights themselves. So `a` (no weight) and `b` (`weight: 50`) get 100 and 50: `b` takes a
/// third of the connections, not half. A group of one gets 100. Reported with AMB312 when it
/// gives a member another share than its weight says.
fn cumulative_weights(members: &[Member], cx: &mut Cx) -> Vec<u32> {
    if members.len() == 1 {
        return vec![100];
    }
    let mut out = vec![0u32; members.len()];
    let mut current = 0u32;
    for (i, m) in members.iter().enumerate() {
        if let Some(w) = m.weight {
            current = current.saturating_add(w);
            out[i] = current;
        }
    }
    let unweighted: Vec<usize> = (0..members.len())
        .filter(|&i| members[i].weight.is_none())
        .collect();
    if current > 100 {
        let m = members
            .iter()
            .rfind(|m| m.weight.is_some())
            .unwrap_or(&members[0]);
        cx.diags.push(
            Diagnostic::at(
                Code::WeightTotalOver100,
                m.weight_span.unwrap_or(m.r.span),
                format!(
                    "the weights of the TCPMappings on port {} add up to {current}, over 100: as in Emissary, the unweighted ones get no connections",
                    m.r.field("port").and_then(|n| n.as_int()).unwrap_or_default()
                ),
            )
            .with_object(&m.r.id)
            .with_field(m.r.path("weight")),
        );
        return out;
    }
    if !unweighted.is_empty() {
        let remaining = 100 - current;
        let n = unweighted.len() as u32;
        // Python's round(): halves to even.
        let (q, r) = (remaining / n, remaining % n);
        let share = q + u32::from(2 * r > n || (2 * r == n && q % 2 == 1));
        for (k, &i) in unweighted.iter().enumerate() {
            current = if k + 1 == unweighted.len() {
                100
            } else {
                current + share
            };
            out[i] = current;
        }
    }
    // What the weights say (unweighted members share the rest equally) against what the
    // running totals give.
    let total: u64 = out.iter().map(|&w| u64::from(w)).sum();
    let declared: u32 = members.iter().filter_map(|m| m.weight).sum();
    let rest = f64::from(100u32.saturating_sub(declared)) / unweighted.len().max(1) as f64;
    let actual: Vec<f64> = out
        .iter()
        .map(|&w| {
            if total == 0 {
                0.0
            } else {
                100.0 * f64::from(w) / total as f64
            }
        })
        .collect();
    let differs = members
        .iter()
        .zip(&actual)
        .any(|(m, a)| (a - m.weight.map_or(rest, f64::from)).abs() >= 0.5);
    if differs {
        let m = &members[0];
        let shares: Vec<String> = members
            .iter()
            .zip(&actual)
            .map(|(m, a)| format!("`{}` {a:.0}%", m.r.id.name))
            .collect();
        cx.diags.push(
            Diagnostic::at(
                Code::TcpWeightsCumulative,
                m.weight_span.unwrap_or(m.r.span),
                format!(
                    "the TCPMappings on this port share connections as {}: Emissary (and so this compiler) weights them by the running totals of their weights ({}), not by the weights as written",
                    shares.join(", "),
                    out.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")
                ),
            )
            .with_object(&m.r.id),
        );
    }
    out
}

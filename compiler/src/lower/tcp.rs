//! TCPMappings: TCP listeners by port and their clusters.

use std::collections::BTreeMap;

use foldhash::HashMap;

use crate::diag::Code;
use crate::front::Resource;
use crate::ir::{
    Cluster, Discovery, LbPolicy, TcpListener, TcpRoute, UpstreamTls, WeightedCluster,
};

use super::cluster::sanitize;
use super::mapping::Reader;
use super::{service, source_ref, Cx};

pub(super) fn tcp<'a>(
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
            more_endpoints: Vec::new(),
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
                case_sensitive: true,
                settings: Default::default(),
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

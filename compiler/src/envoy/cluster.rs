//! Clusters (DNS, static and EDS discovery, HTTP/2, upstream TLS, limits) and endpoint assignments.

use std::collections::{BTreeSet, HashMap};

use envoy_types::pb::envoy::config::cluster::v3::{
    circuit_breakers::Thresholds, cluster, CircuitBreakers, Cluster,
};
use envoy_types::pb::envoy::config::core::v3::{
    Http1ProtocolOptions, Http2ProtocolOptions, HttpProtocolOptions as CommonHttpProtocolOptions,
    RoutingPriority,
};
use envoy_types::pb::envoy::config::endpoint::v3::{
    lb_endpoint, ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints,
};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    common_tls_context, CommonTlsContext, UpstreamTlsContext,
};
use envoy_types::pb::envoy::extensions::upstreams::http::v3::{
    http_protocol_options::{explicit_http_config, ExplicitHttpConfig, UpstreamProtocolOptions},
    HttpProtocolOptions,
};
use envoy_types::pb::google::protobuf::Any;

use super::common::{
    ads, any, millis, sds_secret, socket_address, tls_transport_socket, u32_value,
    HTTP_PROTOCOL_OPTIONS,
};
use crate::ir::{CircuitBreaker, Cluster as IrCluster, Discovery, Ir, LbPolicy, UpstreamTls};

/// The EDS service name of a Kubernetes Service port: the key of its ClusterLoadAssignment.
/// Clusters that differ only in their settings (TLS, timeouts) share one assignment.
pub fn eds_service_name(namespace: &str, service: &str, port: u16) -> String {
    format!("{namespace}/{service}:{port}")
}

/// The namespace, Service and port an EDS service name stands for: the inverse of
/// [`eds_service_name`].
pub fn parse_eds_service_name(name: &str) -> Option<(&str, &str, u16)> {
    let (namespace, rest) = name.split_once('/')?;
    let (service, port) = rest.rsplit_once(':')?;
    Some((namespace, service, port.parse().ok()?))
}

/// The EDS service name a cluster asks for, when it takes its endpoints from EDS.
pub fn eds_service_of(c: &IrCluster) -> Option<String> {
    match &c.discovery {
        Discovery::Eds {
            service,
            namespace,
            port,
        } => Some(eds_service_name(namespace, service, *port)),
        Discovery::Dns | Discovery::Static => None,
    }
}

/// The endpoint assignment of an EDS service (see [`eds_service_name`]) from the addresses
/// of its ready endpoints, e.g. out of Kubernetes EndpointSlices. Sorted and deduplicated,
/// so the same set of endpoints always encodes the same way.
pub fn endpoints(service_name: &str, addrs: &[(String, u16)]) -> ClusterLoadAssignment {
    ClusterLoadAssignment {
        cluster_name: service_name.to_owned(),
        endpoints: locality(addrs),
        ..Default::default()
    }
}

/// One locality holding every address; none at all for an empty list.
fn locality(addrs: &[(String, u16)]) -> Vec<LocalityLbEndpoints> {
    let sorted: BTreeSet<(&str, u16)> = addrs.iter().map(|(a, p)| (a.as_str(), *p)).collect();
    if sorted.is_empty() {
        return Vec::new();
    }
    vec![LocalityLbEndpoints {
        lb_endpoints: sorted
            .into_iter()
            .map(|(a, p)| LbEndpoint {
                host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
                    address: Some(socket_address(a, p)),
                    ..Default::default()
                })),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }]
}

pub(crate) fn clusters(ir: &Ir) -> Vec<Cluster> {
    ir.clusters.values().map(|c| cluster(c)).collect()
}

/// An empty assignment for every EDS service, until real endpoints are known: Envoy keeps an
/// EDS cluster warming until its assignment arrives.
pub(crate) fn initial_endpoints(ir: &Ir) -> Vec<ClusterLoadAssignment> {
    let names: BTreeSet<String> = ir
        .clusters
        .values()
        .filter_map(|c| eds_service_of(c))
        .collect();
    names.iter().map(|n| endpoints(n, &[])).collect()
}

pub(crate) fn cluster(c: &IrCluster) -> Cluster {
    use cluster::{ClusterDiscoveryType, DiscoveryType, EdsClusterConfig};
    let (kind, load_assignment, eds_cluster_config) = match &c.discovery {
        // Ambassador's `kubernetes-service` resolver: the Service's DNS name, all of its
        // addresses (a headless Service has several), re-resolved as DNS says.
        Discovery::Dns => (DiscoveryType::StrictDns, Some(host_assignment(c)), None),
        Discovery::Static => (DiscoveryType::Static, Some(host_assignment(c)), None),
        Discovery::Eds {
            service,
            namespace,
            port,
        } => (
            DiscoveryType::Eds,
            None,
            Some(EdsClusterConfig {
                eds_config: Some(ads()),
                service_name: eds_service_name(namespace, service, *port),
            }),
        ),
    };
    Cluster {
        name: c.name.clone(),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(kind as i32)),
        eds_cluster_config,
        load_assignment,
        connect_timeout: Some(millis(c.connect_timeout_ms)),
        lb_policy: lb_policy(c.lb_policy) as i32,
        circuit_breakers: circuit_breakers(&c.circuit_breakers),
        typed_extension_protocol_options: protocol_options(c),
        transport_socket: c
            .tls
            .as_ref()
            .map(|t| tls_transport_socket(any(upstream_tls(t)))),
        ..Default::default()
    }
}

fn host_assignment(c: &IrCluster) -> ClusterLoadAssignment {
    let mut all = vec![(c.host.clone(), c.port)];
    all.extend(c.more_endpoints.iter().cloned());
    endpoints(&c.name, &all)
}

fn lb_policy(p: LbPolicy) -> cluster::LbPolicy {
    match p {
        LbPolicy::RoundRobin => cluster::LbPolicy::RoundRobin,
        LbPolicy::LeastRequest => cluster::LbPolicy::LeastRequest,
        LbPolicy::RingHash => cluster::LbPolicy::RingHash,
        LbPolicy::Maglev => cluster::LbPolicy::Maglev,
    }
}

fn circuit_breakers(list: &[CircuitBreaker]) -> Option<CircuitBreakers> {
    if list.is_empty() {
        return None;
    }
    let thresholds = list
        .iter()
        .map(|b| Thresholds {
            priority: if b.priority.eq_ignore_ascii_case("high") {
                RoutingPriority::High as i32
            } else {
                RoutingPriority::Default as i32
            },
            max_connections: b.max_connections.map(u32_value),
            max_pending_requests: b.max_pending_requests.map(u32_value),
            max_requests: b.max_requests.map(u32_value),
            max_retries: b.max_retries.map(u32_value),
            ..Default::default()
        })
        .collect();
    Some(CircuitBreakers {
        thresholds,
        ..Default::default()
    })
}

/// HTTP/2 and the connection timeouts live in the one `HttpProtocolOptions` extension (the
/// cluster-level `http2_protocol_options` is deprecated). The extension needs an explicit
/// protocol, so a cluster with timeouts but no `grpc` says HTTP/1.1. One map entry at most:
/// see the note on encoding maps in `route.rs`.
fn protocol_options(c: &IrCluster) -> HashMap<String, Any> {
    let mut map = HashMap::new();
    if !c.http2 && c.idle_timeout_ms.is_none() && c.max_connection_lifetime_ms.is_none() {
        return map;
    }
    let protocol = if c.http2 {
        explicit_http_config::ProtocolConfig::Http2ProtocolOptions(Http2ProtocolOptions::default())
    } else {
        explicit_http_config::ProtocolConfig::HttpProtocolOptions(Http1ProtocolOptions::default())
    };
    let common =
        (c.idle_timeout_ms.is_some() || c.max_connection_lifetime_ms.is_some()).then(|| {
            CommonHttpProtocolOptions {
                idle_timeout: c.idle_timeout_ms.map(millis),
                max_connection_duration: c.max_connection_lifetime_ms.map(millis),
                ..Default::default()
            }
        });
    let options = HttpProtocolOptions {
        common_http_protocol_options: common,
        upstream_protocol_options: Some(UpstreamProtocolOptions::ExplicitHttpConfig(
            ExplicitHttpConfig {
                protocol_config: Some(protocol),
            },
        )),
        ..Default::default()
    };
    map.insert(HTTP_PROTOCOL_OPTIONS.to_owned(), any(options));
    map
}

/// TLS origination. Certificates come from SDS over ADS under the Kubernetes Secret's name.
fn upstream_tls(t: &UpstreamTls) -> UpstreamTlsContext {
    UpstreamTlsContext {
        sni: t.sni.clone().unwrap_or_default(),
        common_tls_context: Some(CommonTlsContext {
            tls_certificate_sds_secret_configs: t
                .client_secret
                .iter()
                .map(|s| sds_secret(s))
                .collect(),
            validation_context_type: t.ca_secret.as_deref().map(|s| {
                common_tls_context::ValidationContextType::ValidationContextSdsSecretConfig(
                    sds_secret(&super::listener::ca_secret_name(s)),
                )
            }),
            alpn_protocols: t.alpn_protocols.clone(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

//! Listeners: HTTP connection managers fed by RDS, TLS by SNI, and tcp_proxy for TCPMappings.

use std::collections::BTreeSet;

use envoy_types::pb::envoy::config::listener::v3::{
    filter, listener_filter, Filter, FilterChain, FilterChainMatch, Listener, ListenerFilter,
};
use envoy_types::pb::envoy::extensions::filters::http::cors::v3::Cors;
use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
use envoy_types::pb::envoy::extensions::filters::listener::proxy_protocol::v3::ProxyProtocol;
use envoy_types::pb::envoy::extensions::filters::listener::tls_inspector::v3::TlsInspector;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_connection_manager, http_filter, HttpConnectionManager, HttpFilter, Rds,
};
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::{tcp_proxy, TcpProxy};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    common_tls_context, secret, tls_parameters::TlsProtocol, CertificateValidationContext,
    CommonTlsContext, DownstreamTlsContext, Secret, TlsCertificate, TlsParameters,
};

use super::common::{
    ads, any, bool_value, millis, sds_secret, socket_address, tls_transport_socket, CORS_FILTER,
    HCM_FILTER, PROXY_PROTOCOL, ROUTER_FILTER, TCP_PROXY_FILTER, TLS_INSPECTOR,
};
use envoy_types::pb::envoy::config::core::v3::{data_source, DataSource};

use crate::ir::{Ir, Listener as IrListener, RouteAction, ServerTls, TcpListener, TcpRoute};

/// The HTTP listeners, then the TCP listeners.
pub(crate) fn listeners(ir: &Ir) -> Vec<Listener> {
    listeners_with(ir, &upgrade_types(ir))
}

/// The listeners of `ir` (its routes are not read) when the routes allow `upgrades`.
pub(crate) fn listeners_with(ir: &Ir, upgrades: &BTreeSet<String>) -> Vec<Listener> {
    let mut out: Vec<Listener> = ir
        .listeners
        .iter()
        .map(|l| http_listener(l, ir, upgrades))
        .collect();
    // TCP listeners listen where the HTTP listeners do (`LowerOptions::listen_address`),
    // so that a loopback-only configuration stays on loopback; all addresses otherwise.
    let address = ir
        .listeners
        .first()
        .map_or("0.0.0.0", |l| l.address.as_str());
    out.extend(
        ir.tcp_listeners
            .iter()
            .filter_map(|t| tcp_listener(t, address)),
    );
    out
}

/// Every upgrade type a route allows, and always `websocket`. The connection manager declares
/// them all disabled and the routes that allow one enable it. Envoy's upgrade docs: "Any
/// per-route enabling/disabling automatically overrides HttpConnectionManager configuration"
/// (HCM disabled, route enabled: upgrade enabled). Declaring `websocket` unconditionally
/// means the common case never changes, and so never drains, the listener.
fn upgrade_types(ir: &Ir) -> BTreeSet<String> {
    let mut types = BTreeSet::from(["websocket".to_owned()]);
    for vh in &ir.virtual_hosts {
        for r in vh.routes.iter() {
            if let RouteAction::Forward(f) = &r.action {
                types.extend(f.settings.upgrades.iter().cloned());
            }
        }
    }
    types
}

fn http_listener(l: &IrListener, ir: &Ir, upgrades: &BTreeSet<String>) -> Listener {
    let hcm = |route_config: &str| {
        let hcm = HttpConnectionManager {
            stat_prefix: l.stats_prefix.clone(),
            route_specifier: Some(http_connection_manager::RouteSpecifier::Rds(Rds {
                config_source: Some(ads()),
                route_config_name: route_config.to_owned(),
            })),
            // CORS is always installed: it does nothing on routes without a policy, and adding
            // the first policy must not change (and drain) the listener. External
            // authorization comes after it, as in Emissary, and before the router.
            http_filters: [
                Some(HttpFilter {
                    name: CORS_FILTER.to_owned(),
                    config_type: Some(http_filter::ConfigType::TypedConfig(any(Cors {}))),
                    ..Default::default()
                }),
                ir.auth.as_ref().map(super::auth::filter),
                ir.rate_limit.as_ref().map(super::ratelimit::filter),
                Some(HttpFilter {
                    name: ROUTER_FILTER.to_owned(),
                    config_type: Some(http_filter::ConfigType::TypedConfig(any(Router::default()))),
                    ..Default::default()
                }),
            ]
            .into_iter()
            .flatten()
            .collect(),
            upgrade_configs: upgrades
                .iter()
                .map(|u| http_connection_manager::UpgradeConfig {
                    upgrade_type: u.clone(),
                    enabled: Some(bool_value(false)),
                    ..Default::default()
                })
                .collect(),
            use_remote_address: Some(bool_value(ir.settings.use_remote_address)),
            xff_num_trusted_hops: l.xff_num_trusted_hops,
            server_name: ir.settings.server_name.clone().unwrap_or_default(),
            // Emissary sets this on every connection manager: dot segments and
            // percent-encoded dots are resolved before routing, so `/./app/x` is routed as
            // `/app/x` and `/app/%2e%2e/x` as `/x`, and a dot segment cannot reach another
            // Mapping than its normalised path.
            normalize_path: Some(bool_value(true)),
            // The LogService's gRPC access logger; the provider of the TracingService's
            // tracer inline, so both travel over ADS with the listener.
            access_log: ir
                .access_log
                .as_ref()
                .map(super::observe::access_log)
                .into_iter()
                .collect(),
            tracing: ir.tracing.as_ref().map(super::observe::tracing),
            generate_request_id: ir.tracing.as_ref().map(|_| bool_value(true)),
            ..Default::default()
        };
        Filter {
            name: HCM_FILTER.to_owned(),
            config_type: Some(filter::ConfigType::TypedConfig(any(hcm))),
        }
    };
    let filter_chains = l
        .chains
        .iter()
        .map(|c| match &c.tls {
            Some(t) => FilterChain {
                name: c.name.clone(),
                filter_chain_match: Some(FilterChainMatch {
                    server_names: t.server_names.clone(),
                    transport_protocol: "tls".to_owned(),
                    ..Default::default()
                }),
                filters: vec![hcm(&c.route_config)],
                transport_socket: Some(tls_transport_socket(any(downstream_tls(t)))),
                ..Default::default()
            },
            // Matches any connection, TLS ones whose SNI no TLS chain takes included (as in
            // Emissary, where such a client gets a cleartext HTTP answer).
            None => FilterChain {
                name: c.name.clone(),
                filters: vec![hcm(&c.route_config)],
                ..Default::default()
            },
        })
        .collect();
    // In the stack's order, as Emissary appends them: TLS before PROXY for HTTPSPROXY.
    let mut listener_filters = Vec::new();
    if l.tls {
        listener_filters.push(tls_inspector());
    }
    if l.proxy_protocol {
        listener_filters.push(ListenerFilter {
            name: PROXY_PROTOCOL.to_owned(),
            config_type: Some(listener_filter::ConfigType::TypedConfig(any(
                ProxyProtocol::default(),
            ))),
            ..Default::default()
        });
    }
    Listener {
        name: l.name.clone(),
        address: Some(socket_address(&l.address, l.port)),
        filter_chains,
        listener_filters,
        ..Default::default()
    }
}

/// A filter chain for these SNI names; no names is the catch-all chain.
fn server_names_match(names: &[String]) -> Option<FilterChainMatch> {
    (!names.is_empty()).then(|| FilterChainMatch {
        server_names: names.to_vec(),
        ..Default::default()
    })
}

/// The SDS name of a Secret used as a CA (`ca:namespace/name`): the same Secret may also be
/// a certificate, and one SDS name holds one kind of secret.
pub(crate) fn ca_secret_name(secret: &str) -> String {
    format!("ca:{secret}")
}

/// A Kubernetes Secret as an SDS validation context: the CA from `tls.crt` (where Emissary
/// reads it), else `ca.crt`.
pub(crate) fn ca_secret(name: String, s: &crate::front::SecretInfo) -> Secret {
    let ca = s
        .cert_chain
        .clone()
        .filter(|c| c.windows(5).any(|w| w == b"BEGIN"))
        .or_else(|| s.ca.clone())
        .unwrap_or_default();
    Secret {
        name,
        r#type: Some(secret::Type::ValidationContext(
            CertificateValidationContext {
                trusted_ca: Some(DataSource {
                    specifier: Some(data_source::Specifier::InlineBytes(ca)),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )),
    }
}

/// A Kubernetes TLS Secret as an SDS certificate: the chain and key inline.
pub(crate) fn tls_secret(name: String, s: &crate::front::SecretInfo) -> Secret {
    let inline = |b: &Option<Vec<u8>>| DataSource {
        specifier: Some(data_source::Specifier::InlineBytes(
            b.clone().unwrap_or_default(),
        )),
        ..Default::default()
    };
    Secret {
        name,
        r#type: Some(secret::Type::TlsCertificate(TlsCertificate {
            certificate_chain: Some(inline(&s.cert_chain)),
            private_key: Some(inline(&s.private_key)),
            ..Default::default()
        })),
    }
}

/// The TLS inspector reads the SNI out of the ClientHello so filter chains can match on it.
fn tls_inspector() -> ListenerFilter {
    ListenerFilter {
        name: TLS_INSPECTOR.to_owned(),
        config_type: Some(listener_filter::ConfigType::TypedConfig(any(
            TlsInspector::default(),
        ))),
        ..Default::default()
    }
}

fn downstream_tls(t: &ServerTls) -> DownstreamTlsContext {
    let min = t
        .min_tls_version
        .as_deref()
        .map(tls_protocol)
        .unwrap_or(TlsProtocol::TlsAuto);
    let max = t
        .max_tls_version
        .as_deref()
        .map(tls_protocol)
        .unwrap_or(TlsProtocol::TlsAuto);
    let tls_params = (min != TlsProtocol::TlsAuto
        || max != TlsProtocol::TlsAuto
        || !t.cipher_suites.is_empty()
        || !t.ecdh_curves.is_empty())
    .then(|| TlsParameters {
        tls_minimum_protocol_version: min as i32,
        tls_maximum_protocol_version: max as i32,
        cipher_suites: t.cipher_suites.clone(),
        ecdh_curves: t.ecdh_curves.clone(),
        ..Default::default()
    });
    DownstreamTlsContext {
        common_tls_context: Some(CommonTlsContext {
            tls_params,
            tls_certificate_sds_secret_configs: vec![sds_secret(&t.secret)],
            validation_context_type: t.ca_secret.as_deref().map(|ca| {
                common_tls_context::ValidationContextType::ValidationContextSdsSecretConfig(
                    sds_secret(&ca_secret_name(ca)),
                )
            }),
            alpn_protocols: t.alpn_protocols.clone(),
            ..Default::default()
        }),
        require_client_certificate: t.cert_required.then(|| bool_value(true)),
        ..Default::default()
    }
}

/// Ambassador writes TLS versions as `v1.2`; Envoy's own names (`TLSv1_2`) are accepted too.
/// Anything else leaves the choice to Envoy.
fn tls_protocol(version: &str) -> TlsProtocol {
    let v = version.trim().to_ascii_lowercase();
    match v
        .trim_start_matches("tls")
        .trim_start_matches('v')
        .replace('_', ".")
        .as_str()
    {
        "1.0" => TlsProtocol::TlSv10,
        "1.1" => TlsProtocol::TlSv11,
        "1.2" => TlsProtocol::TlSv12,
        "1.3" => TlsProtocol::TlSv13,
        _ => TlsProtocol::TlsAuto,
    }
}

/// A TCP listener on all addresses, one filter chain per TCPMapping. A TCPMapping without
/// a backend gets no chain, and a listener without chains is left out (Envoy refuses one).
fn tcp_listener(t: &TcpListener, address: &str) -> Option<Listener> {
    let chains: Vec<FilterChain> = t.routes.iter().filter_map(|r| tcp_chain(t, r)).collect();
    if chains.is_empty() {
        return None;
    }
    // Choosing a chain by SNI needs the TLS inspector.
    let listener_filters = if t.routes.iter().any(|r| r.sni.is_some()) {
        vec![tls_inspector()]
    } else {
        Vec::new()
    };
    Some(Listener {
        name: t.name.clone(),
        address: Some(socket_address(address, t.port)),
        filter_chains: chains,
        listener_filters,
        ..Default::default()
    })
}

fn tcp_chain(t: &TcpListener, r: &TcpRoute) -> Option<FilterChain> {
    // Envoy refuses a weight of 0 in tcp_proxy, so a backend with no share is left out.
    let weighted: Vec<_> = r.clusters.iter().filter(|c| c.weight > 0).collect();
    let specifier = match weighted.as_slice() {
        [] => tcp_proxy::ClusterSpecifier::Cluster(r.clusters.first()?.cluster.clone()),
        [one] => tcp_proxy::ClusterSpecifier::Cluster(one.cluster.clone()),
        many => tcp_proxy::ClusterSpecifier::WeightedClusters(tcp_proxy::WeightedCluster {
            clusters: many
                .iter()
                .map(|c| tcp_proxy::weighted_cluster::ClusterWeight {
                    name: c.cluster.clone(),
                    weight: c.weight,
                    ..Default::default()
                })
                .collect(),
        }),
    };
    let proxy = TcpProxy {
        stat_prefix: t.name.clone(),
        cluster_specifier: Some(specifier),
        idle_timeout: r.idle_timeout_ms.map(millis),
        ..Default::default()
    };
    // A TCPMapping with `host` terminates TLS for its SNI, as Emissary's TCP chains do: the
    // upstream gets the decrypted bytes.
    let (filter_chain_match, transport_socket) = match &r.tls {
        Some(t) => (
            Some(FilterChainMatch {
                server_names: r.sni.iter().cloned().collect(),
                transport_protocol: "tls".to_owned(),
                ..Default::default()
            }),
            Some(tls_transport_socket(any(downstream_tls(t)))),
        ),
        None => (server_names_match(r.sni.as_slice()), None),
    };
    Some(FilterChain {
        filter_chain_match,
        filters: vec![Filter {
            name: TCP_PROXY_FILTER.to_owned(),
            config_type: Some(filter::ConfigType::TypedConfig(any(proxy))),
        }],
        transport_socket,
        ..Default::default()
    })
}

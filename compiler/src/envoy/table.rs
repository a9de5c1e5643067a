//! The emitted listeners and route configurations, decoded into a [`matcher::Table`].
//!
//! This reads the protos the back end produced (not the IR they came from), so the tracer
//! sees exactly what Envoy is sent. Anything the table does not model is kept as
//! `Unsupported` with its name, and never matches: a prediction can then be "unknown",
//! never silently wrong.

use envoy_types::pb::envoy::config::core::v3::{address, socket_address};
use envoy_types::pb::envoy::config::listener::v3::{filter, Filter, Listener as EnvoyListener};
use envoy_types::pb::envoy::config::route::v3::{
    header_matcher, query_parameter_matcher, redirect_action, route, route_action, route_match,
    HeaderMatcher, Route as EnvoyRoute, RouteConfiguration, RouteMatch as EnvoyRouteMatch,
};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_connection_manager, HttpConnectionManager,
};
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::{tcp_proxy, TcpProxy};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::DownstreamTlsContext;
use envoy_types::pb::envoy::r#type::matcher::v3::{string_matcher, StringMatcher};
use envoy_types::pb::envoy::r#type::v3::fractional_percent::DenominatorType;
use prost::Message;

use super::common::{HCM_FILTER, PROXY_PROTOCOL, TCP_PROXY_FILTER, TLS_INSPECTOR};
use super::Resources;
use crate::matcher::{
    Action, Chain, Forward, Hcm, HeaderCond, HostRewrite, Listener, PathCond, Pattern, QueryCond,
    Redirect, RedirectPath, Route, RouteConfig, Serves, Table, Termination, ValueTest, VirtualHost,
};

/// The routing table of the listeners and route configurations `ir` is emitted as: the
/// same messages [`super::emit`] packs for Envoy, decoded without packing them or building
/// the clusters and endpoints, which routing does not read (what `trace` and `test` use).
pub fn table_for(ir: &crate::ir::Ir) -> Table {
    let mut route_configs = std::collections::BTreeMap::new();
    for rc in super::route::route_configurations(ir) {
        // As a `Collection`: the first of two with one name is the one sent.
        route_configs
            .entry(rc.name.clone())
            .or_insert_with(|| route_config(&rc));
    }
    // In the order and with the names the listeners are sent in (a `Collection`: by name,
    // the first of two with one name kept), as `table` reads them.
    let mut seen = std::collections::HashSet::new();
    let mut listeners: Vec<Listener> = super::listener::listeners(ir)
        .iter()
        .filter(|l| seen.insert(l.name.clone()))
        .map(listener)
        .collect();
    listeners.sort_by(|a, b| a.name.cmp(&b.name));
    Table {
        listeners,
        route_configs,
    }
}

/// The Envoy routes `r` is emitted as on a listener with `v`, decoded: what the shadowing
/// check reads ([`crate::check`]), so that it judges the routes Envoy is sent.
///
/// Only the conditions are decoded: the name is empty and the action a placeholder
/// (`Unsupported` with no text), since the check and admission read nothing else, and a
/// virtual host's routes are all decoded at once.
pub(crate) fn routes_of(r: &crate::ir::Route, v: super::Variants) -> Vec<Route> {
    super::route::match_variants(r, v)
        .iter()
        .map(conditions_of)
        .collect()
}

/// The variants each virtual host of `ir` is emitted in (one per security model of the
/// listeners whose chains serve it), by virtual host name. A virtual host no chain serves is
/// not emitted and has none.
pub(crate) fn variants_of(
    ir: &crate::ir::Ir,
) -> std::collections::HashMap<&str, Vec<super::Variants>> {
    let mut out: std::collections::HashMap<&str, Vec<super::Variants>> =
        std::collections::HashMap::new();
    for (_, security, vhosts) in super::route::chains(ir) {
        for vh in vhosts {
            let v = super::Variants::of(vh, security, ir);
            let list = out.entry(vh.name.as_str()).or_default();
            if !list.contains(&v) {
                list.push(v);
            }
        }
    }
    out
}

/// The routing table of `res`.
pub fn table(res: &Resources) -> Table {
    Table {
        listeners: res
            .listeners
            .resources
            .iter()
            .map(|r| listener(&r.message))
            .collect(),
        route_configs: res
            .routes
            .resources
            .iter()
            .map(|r| (r.name.clone(), route_config(&r.message)))
            .collect(),
    }
}

fn listener(l: &EnvoyListener) -> Listener {
    let (address, port) = match l.address.as_ref().and_then(|a| a.address.as_ref()) {
        Some(address::Address::SocketAddress(s)) => (
            s.address.clone(),
            match s.port_specifier {
                Some(socket_address::PortSpecifier::PortValue(p)) => p as u16,
                _ => 0,
            },
        ),
        _ => (String::new(), 0),
    };
    let has = |name: &str| l.listener_filters.iter().any(|f| f.name == name);
    Listener {
        name: l.name.clone(),
        address,
        port,
        tls_inspector: has(TLS_INSPECTOR),
        proxy_protocol: has(PROXY_PROTOCOL),
        chains: l
            .filter_chains
            .iter()
            .map(|c| {
                let m = c.filter_chain_match.clone().unwrap_or_default();
                let tls = c.transport_socket.as_ref().and_then(|t| match &t.config_type {
                    Some(
                        envoy_types::pb::envoy::config::core::v3::transport_socket::ConfigType::TypedConfig(any),
                    ) => DownstreamTlsContext::decode(any.value.as_slice()).ok(),
                    _ => None,
                });
                Chain {
                    name: c.name.clone(),
                    server_names: m.server_names.iter().map(|n| n.to_ascii_lowercase()).collect(),
                    transport_protocol: m.transport_protocol.clone(),
                    tls: tls.map(|t| Termination {
                        certificates: t
                            .common_tls_context
                            .as_ref()
                            .map(|c| {
                                c.tls_certificate_sds_secret_configs
                                    .iter()
                                    .map(|s| s.name.clone())
                                    .collect()
                            })
                            .unwrap_or_default(),
                        require_client_certificate: t
                            .require_client_certificate
                            .is_some_and(|b| b.value),
                    }),
                    serves: serves(&c.filters),
                }
            })
            .collect(),
    }
}

fn typed<T: Message + Default>(f: &Filter) -> Option<T> {
    match &f.config_type {
        Some(filter::ConfigType::TypedConfig(any)) => T::decode(any.value.as_slice()).ok(),
        _ => None,
    }
}

fn serves(filters: &[Filter]) -> Serves {
    if let Some(hcm) = filters
        .iter()
        .find(|f| f.name == HCM_FILTER)
        .and_then(typed::<HttpConnectionManager>)
    {
        let route_config = match &hcm.route_specifier {
            Some(http_connection_manager::RouteSpecifier::Rds(r)) => r.route_config_name.clone(),
            _ => String::new(),
        };
        return Serves::Http(Hcm {
            route_config,
            use_remote_address: hcm.use_remote_address.is_some_and(|b| b.value),
            xff_num_trusted_hops: hcm.xff_num_trusted_hops,
            normalize_path: hcm.normalize_path.is_some_and(|b| b.value),
            merge_slashes: hcm.merge_slashes,
            http_filters: hcm.http_filters.iter().map(|f| f.name.clone()).collect(),
        });
    }
    if let Some(tcp) = filters
        .iter()
        .find(|f| f.name == TCP_PROXY_FILTER)
        .and_then(typed::<TcpProxy>)
    {
        let clusters = match tcp.cluster_specifier {
            Some(tcp_proxy::ClusterSpecifier::Cluster(c)) => vec![(c, 100)],
            Some(tcp_proxy::ClusterSpecifier::WeightedClusters(w)) => {
                w.clusters.into_iter().map(|c| (c.name, c.weight)).collect()
            }
            None => Vec::new(),
        };
        return Serves::Tcp { clusters };
    }
    Serves::Other {
        filters: filters.iter().map(|f| f.name.clone()).collect(),
    }
}

fn route_config(rc: &RouteConfiguration) -> RouteConfig {
    RouteConfig {
        name: rc.name.clone(),
        virtual_hosts: rc
            .virtual_hosts
            .iter()
            .map(|v| VirtualHost {
                name: v.name.clone(),
                domains: v.domains.clone(),
                routes: v.routes.iter().map(route).collect(),
            })
            .collect(),
    }
}

fn route(r: &EnvoyRoute) -> Route {
    Route {
        name: r.name.clone(),
        action: action(r),
        ..conditions(r)
    }
}

/// `r`'s conditions, with no name and a placeholder action (see [`routes_of`]).
fn conditions(r: &EnvoyRoute) -> Route {
    let none = Default::default();
    conditions_of(r.r#match.as_ref().unwrap_or(&none))
}

/// The conditions of a route match, with no name and a placeholder action.
fn conditions_of(m: &EnvoyRouteMatch) -> Route {
    let path = match &m.path_specifier {
        Some(route_match::PathSpecifier::Prefix(p)) => PathCond::Prefix(p.clone()),
        Some(route_match::PathSpecifier::Path(p)) => PathCond::Exact(p.clone()),
        Some(route_match::PathSpecifier::SafeRegex(re)) => {
            PathCond::Regex(Pattern::new(re.regex.clone()))
        }
        Some(other) => PathCond::Unsupported(format!("{other:?}")),
        None => PathCond::Unsupported("no path specifier".to_owned()),
    };
    let fraction_ppm = m.runtime_fraction.as_ref().map(|f| {
        let d = f.default_value.unwrap_or_default();
        let per = match DenominatorType::try_from(d.denominator) {
            Ok(DenominatorType::TenThousand) => 100,
            Ok(DenominatorType::Million) => 1,
            _ => 10_000,
        };
        d.numerator.saturating_mul(per).min(1_000_000)
    });
    Route {
        name: String::new(),
        path,
        case_sensitive: m.case_sensitive.is_none_or(|b| b.value),
        headers: m.headers.iter().map(header).collect(),
        query: m
            .query_parameters
            .iter()
            .map(|q| QueryCond {
                name: q.name.clone(),
                test: match &q.query_parameter_match_specifier {
                    Some(query_parameter_matcher::QueryParameterMatchSpecifier::StringMatch(s)) => {
                        string_test(s)
                    }
                    Some(query_parameter_matcher::QueryParameterMatchSpecifier::PresentMatch(
                        p,
                    )) => ValueTest::Present { present: *p },
                    None => ValueTest::Present { present: true },
                },
            })
            .collect(),
        fraction_ppm,
        action: Action::Unsupported {
            what: String::new(),
        },
    }
}

fn header(h: &HeaderMatcher) -> HeaderCond {
    use header_matcher::HeaderMatchSpecifier as S;
    let test = match &h.header_match_specifier {
        Some(S::StringMatch(s)) => string_test(s),
        Some(S::PresentMatch(p)) => ValueTest::Present { present: *p },
        Some(other) => ValueTest::Unsupported {
            what: format!("{other:?}"),
        },
        None => ValueTest::Present { present: true },
    };
    HeaderCond {
        name: h.name.to_ascii_lowercase(),
        test,
        invert: h.invert_match,
    }
}

fn string_test(s: &StringMatcher) -> ValueTest {
    use string_matcher::MatchPattern as P;
    let ignore_case = s.ignore_case;
    match &s.match_pattern {
        Some(P::Exact(v)) => ValueTest::Exact {
            value: v.clone(),
            ignore_case,
        },
        Some(P::Prefix(v)) => ValueTest::Prefix {
            value: v.clone(),
            ignore_case,
        },
        Some(P::Suffix(v)) => ValueTest::Suffix {
            value: v.clone(),
            ignore_case,
        },
        Some(P::Contains(v)) => ValueTest::Contains {
            value: v.clone(),
            ignore_case,
        },
        Some(P::SafeRegex(re)) => ValueTest::Regex {
            pattern: Pattern::new(re.regex.clone()),
        },
        other => ValueTest::Unsupported {
            what: format!("{other:?}"),
        },
    }
}

fn action(r: &EnvoyRoute) -> Action {
    match &r.action {
        Some(route::Action::Route(a)) => {
            let clusters = match &a.cluster_specifier {
                Some(route_action::ClusterSpecifier::Cluster(c)) => vec![(c.clone(), 100)],
                Some(route_action::ClusterSpecifier::WeightedClusters(w)) => w
                    .clusters
                    .iter()
                    .map(|c| (c.name.clone(), c.weight.as_ref().map_or(0, |w| w.value)))
                    .collect(),
                other => {
                    return Action::Unsupported {
                        what: format!("cluster specifier {other:?}"),
                    }
                }
            };
            let host_rewrite = match &a.host_rewrite_specifier {
                Some(route_action::HostRewriteSpecifier::HostRewriteLiteral(h)) => {
                    HostRewrite::Literal(h.clone())
                }
                Some(route_action::HostRewriteSpecifier::AutoHostRewrite(b)) if b.value => {
                    HostRewrite::Auto
                }
                _ => HostRewrite::Keep,
            };
            Action::Forward(Box::new(Forward {
                clusters,
                prefix_rewrite: (!a.prefix_rewrite.is_empty()).then(|| a.prefix_rewrite.clone()),
                regex_rewrite: a.regex_rewrite.as_ref().map(|rr| {
                    (
                        Pattern::new(rr.pattern.as_ref().map_or("", |p| p.regex.as_str())),
                        rr.substitution.clone(),
                    )
                }),
                host_rewrite,
                mirrors: a
                    .request_mirror_policies
                    .iter()
                    .map(|m| {
                        let pct = m
                            .runtime_fraction
                            .as_ref()
                            .and_then(|f| f.default_value.as_ref())
                            .map_or(100, |d| d.numerator);
                        (m.cluster.clone(), pct)
                    })
                    .collect(),
            }))
        }
        Some(route::Action::Redirect(rd)) => {
            use redirect_action::{PathRewriteSpecifier as P, SchemeRewriteSpecifier as S};
            let (https, scheme) = match &rd.scheme_rewrite_specifier {
                Some(S::HttpsRedirect(b)) => (*b, None),
                Some(S::SchemeRedirect(s)) => (false, Some(s.clone())),
                None => (false, None),
            };
            let status = match redirect_action::RedirectResponseCode::try_from(rd.response_code) {
                Ok(redirect_action::RedirectResponseCode::Found) => 302,
                Ok(redirect_action::RedirectResponseCode::SeeOther) => 303,
                Ok(redirect_action::RedirectResponseCode::TemporaryRedirect) => 307,
                Ok(redirect_action::RedirectResponseCode::PermanentRedirect) => 308,
                _ => 301,
            };
            Action::Redirect(Box::new(Redirect {
                https,
                scheme,
                host: (!rd.host_redirect.is_empty()).then(|| rd.host_redirect.clone()),
                port: (rd.port_redirect != 0).then_some(rd.port_redirect),
                path: rd.path_rewrite_specifier.as_ref().map(|p| match p {
                    P::PathRedirect(p) => RedirectPath::Path(p.clone()),
                    P::PrefixRewrite(p) => RedirectPath::Prefix(p.clone()),
                    P::RegexRewrite(rr) => RedirectPath::Regex(
                        Pattern::new(rr.pattern.as_ref().map_or("", |p| p.regex.as_str())),
                        rr.substitution.clone(),
                    ),
                    other => RedirectPath::Unsupported(format!("{other:?}")),
                }),
                status,
                strip_query: rd.strip_query,
            }))
        }
        Some(route::Action::DirectResponse(d)) => Action::Direct { status: d.status },
        other => Action::Unsupported {
            what: format!("{other:?}"),
        },
    }
}

/// What a route's name says of where it came from: the IR route it was emitted for, the
/// member of a canary group (one Envoy route each), and whether it is the https redirect
/// an insecure request gets. The back end names routes `<ir name>[-<member>][-redirect]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteOrigin<'a> {
    pub ir_route: &'a str,
    pub member: Option<usize>,
    pub https_redirect: bool,
}

/// Reads a route name the back end gave (see [`RouteOrigin`]).
pub fn route_origin(name: &str) -> RouteOrigin<'_> {
    let (rest, https_redirect) = match name.strip_suffix("-redirect") {
        Some(r) => (r, true),
        None => (name, false),
    };
    // IR route names are `route-<hex>`: a further `-<n>` is the member.
    let (ir_route, member) = match rest.rsplit_once('-') {
        Some((head, n)) if head.contains('-') && n.bytes().all(|b| b.is_ascii_digit()) => {
            (head, n.parse().ok())
        }
        _ => (rest, None),
    };
    RouteOrigin {
        ir_route,
        member,
        https_redirect,
    }
}

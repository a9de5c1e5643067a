//! Small builders shared by the listener, route and cluster translations.

use envoy_types::pb::envoy::config::core::v3::{
    address, config_source, header_value_option, socket_address as socket_address_pb,
    transport_socket, Address, AggregatedConfigSource, ApiVersion, ConfigSource,
    HeaderValue as EnvoyHeaderValue, HeaderValueOption, SocketAddress, TransportSocket,
};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::SdsSecretConfig;
use envoy_types::pb::envoy::r#type::matcher::v3::{string_matcher, RegexMatcher, StringMatcher};
use envoy_types::pb::google::protobuf::{Any, BoolValue, Duration, UInt32Value};
use envoy_types::util::pack_any;
use prost::{Message, Name};

use crate::ir::HeaderValue;

/// `envoy.filters.http.cors`: the filter name and the key of its per-route configuration.
pub(crate) const CORS_FILTER: &str = "envoy.filters.http.cors";
pub(crate) const ROUTER_FILTER: &str = "envoy.filters.http.router";
pub(crate) const HCM_FILTER: &str = "envoy.filters.network.http_connection_manager";
pub(crate) const TCP_PROXY_FILTER: &str = "envoy.filters.network.tcp_proxy";
pub(crate) const TLS_INSPECTOR: &str = "envoy.filters.listener.tls_inspector";
pub(crate) const PROXY_PROTOCOL: &str = "envoy.filters.listener.proxy_protocol";
pub(crate) const TLS_TRANSPORT_SOCKET: &str = "envoy.transport_sockets.tls";
pub(crate) const HTTP_PROTOCOL_OPTIONS: &str =
    "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";

/// A duration from milliseconds.
pub(crate) fn millis(ms: u64) -> Duration {
    Duration {
        seconds: (ms / 1000) as i64,
        nanos: ((ms % 1000) * 1_000_000) as i32,
    }
}

pub(crate) fn bool_value(value: bool) -> BoolValue {
    BoolValue { value }
}

pub(crate) fn u32_value(value: u32) -> UInt32Value {
    UInt32Value { value }
}

pub(crate) fn any<T: Message + Name>(message: T) -> Any {
    pack_any(message)
}

pub(crate) fn socket_address(address: &str, port: u16) -> Address {
    // `[::1]` is how an IPv6 literal is written next to a port; Envoy wants it bare.
    let address = address
        .strip_prefix('[')
        .and_then(|a| a.strip_suffix(']'))
        .unwrap_or(address);
    Address {
        address: Some(address::Address::SocketAddress(SocketAddress {
            address: address.to_owned(),
            port_specifier: Some(socket_address_pb::PortSpecifier::PortValue(u32::from(port))),
            ..Default::default()
        })),
    }
}

/// `{ ads: {}, resource_api_version: V3 }`: everything dynamic comes over the one ADS stream.
pub(crate) fn ads() -> ConfigSource {
    ConfigSource {
        resource_api_version: ApiVersion::V3 as i32,
        config_source_specifier: Some(config_source::ConfigSourceSpecifier::Ads(
            AggregatedConfigSource {},
        )),
        ..Default::default()
    }
}

/// A secret fetched by SDS over ADS, named after the Kubernetes Secret (`namespace/name`).
///
/// A listener warms until its secrets arrive, and Envoy reports ready only once every
/// listener has warmed: a Host naming a Secret that is not served would hold the whole
/// Envoy back for SDS's default 15 s. Two seconds lets the rest start serving sooner;
/// handshakes for that name fail until the secret arrives.
pub(crate) fn sds_secret(name: &str) -> SdsSecretConfig {
    SdsSecretConfig {
        name: name.to_owned(),
        sds_config: Some(ConfigSource {
            initial_fetch_timeout: Some(millis(2000)),
            ..ads()
        }),
    }
}

pub(crate) fn tls_transport_socket(context: Any) -> TransportSocket {
    TransportSocket {
        name: TLS_TRANSPORT_SOCKET.to_owned(),
        config_type: Some(transport_socket::ConfigType::TypedConfig(context)),
    }
}

/// An RE2 matcher. Envoy's `safe_regex` always matches the whole string.
pub(crate) fn regex(regex: &str) -> RegexMatcher {
    RegexMatcher {
        regex: regex.to_owned(),
        engine_type: None,
    }
}

pub(crate) fn exact_string(value: &str) -> StringMatcher {
    StringMatcher {
        match_pattern: Some(string_matcher::MatchPattern::Exact(value.to_owned())),
        ignore_case: false,
    }
}

pub(crate) fn regex_string(pattern: &str) -> StringMatcher {
    StringMatcher {
        match_pattern: Some(string_matcher::MatchPattern::SafeRegex(regex(pattern))),
        ignore_case: false,
    }
}

/// A header to add. Ambassador's `append: true` (the default) adds another value when the
/// header exists; `append: false` replaces it.
pub(crate) fn header_option(h: &HeaderValue) -> HeaderValueOption {
    let action = if h.append {
        header_value_option::HeaderAppendAction::AppendIfExistsOrAdd
    } else {
        header_value_option::HeaderAppendAction::OverwriteIfExistsOrAdd
    };
    HeaderValueOption {
        header: Some(EnvoyHeaderValue {
            key: h.name.clone(),
            value: h.value.clone(),
            raw_value: Vec::new(),
        }),
        append_action: action as i32,
        ..Default::default()
    }
}

/// Escapes the RE2 metacharacters of a literal.
pub(crate) fn regex_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Parses a Go-style duration as Ambassador writes them (`10s`, `1.5s`, `250ms`, `1h30m`).
/// `None` when the text is not one.
pub(crate) fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    if text == "0" {
        return Some(Duration::default());
    }
    let mut nanos: u128 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if number_len == 0 {
            return None;
        }
        let (number, tail) = rest.split_at(number_len);
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let scale: u128 = match unit {
            "ns" => 1,
            "us" | "µs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return None,
        };
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if whole.is_empty() && fraction.is_empty() {
            return None;
        }
        let whole: u128 = if whole.is_empty() {
            0
        } else {
            whole.parse().ok()?
        };
        nanos = nanos.checked_add(whole.checked_mul(scale)?)?;
        let mut place = scale;
        for d in fraction.chars() {
            place /= 10;
            nanos += u128::from(d.to_digit(10)?) * place;
        }
        rest = tail;
    }
    let seconds = i64::try_from(nanos / 1_000_000_000).ok()?;
    Some(Duration {
        seconds,
        nanos: (nanos % 1_000_000_000) as i32,
    })
}

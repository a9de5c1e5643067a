//! Listeners: the ports Envoy listens on, how each tells secure requests from insecure ones,
//! and which Hosts it serves on which filter chain (Emissary's `IRListener` and
//! `V3Listener.compute_httpchains`).

use std::collections::BTreeMap;

use crate::diag::{Code, Diagnostic};
use crate::front::Resource;
use crate::ir::{Chain, InsecureAction, Listener, SecurityModel, Settings};

use super::hosts::{match_labels, VHost};
use super::mapping::Reader;
use super::{source_ref, LowerOptions};

/// A Listener as read, before Hosts are bound to it.
struct Read<'a> {
    r: &'a Resource,
    port: u16,
    tls: bool,
    proxy: bool,
    security: SecurityModel,
    /// `None`: any namespace; else the Listener's own.
    namespace: Option<String>,
    selector: BTreeMap<String, String>,
    l7_depth: u32,
    stats_prefix: String,
}

/// The HTTP listeners: the Listener resources, or, when there is none, the defaults this
/// compiler has always served (8080, and 8443 when a Host terminates TLS), each with its
/// filter chains and the Hosts bound to them.
pub(super) fn listeners<'a>(
    resources: impl Iterator<Item = &'a Resource>,
    vhosts: &[VHost],
    settings: &Settings,
    opts: &LowerOptions,
    diags: &mut Vec<Diagnostic>,
) -> Vec<Listener> {
    let mut read: Vec<Read> = Vec::new();
    let mut seen_resource = false;
    for r in resources {
        seen_resource = true;
        let Some(l) = read_listener(r, diags) else {
            continue;
        };
        if let Some(first) = read.iter().find(|o| o.port == l.port) {
            diags.push(
                Diagnostic::at(
                    Code::DuplicateListenerPort,
                    r.key_span("port"),
                    format!(
                        "Listener `{}` listens on port {}, which Listener `{}` already takes; Emissary keeps the first",
                        r.id.name, l.port, first.r.id.name
                    ),
                )
                .with_object(&r.id)
                .with_field(r.path("port"))
                .with_related(first.r.span, "the Listener that keeps the port"),
            );
            continue;
        }
        // The Envoy listener takes the Listener's name; two of one name (in two namespaces)
        // would be two Envoy listeners of one name, of which Envoy keeps neither update.
        if let Some(first) = read.iter().find(|o| o.r.id.name == r.id.name) {
            diags.push(
                Diagnostic::at(
                    Code::DuplicateListenerName,
                    r.span,
                    format!(
                        "Listener `{}/{}` has the name of Listener `{}/{}`, and the name is the Envoy listener's: this one (port {}) is left out",
                        r.id.namespace, r.id.name, first.r.id.namespace, first.r.id.name, l.port
                    ),
                )
                .with_object(&r.id)
                .with_related(first.r.span, "the Listener that keeps the name"),
            );
            continue;
        }
        read.push(l);
    }

    let mut out: Vec<Listener> = Vec::new();
    if !seen_resource {
        // Said once, at the first Host: a configuration with Hosts is one meant for
        // production, where this difference matters.
        if let Some(first) = vhosts.iter().find_map(|v| v.vh.source.as_ref()) {
            diags.push(Diagnostic::at(
                Code::NoListener,
                first.span,
                format!(
                    "no Listener is defined: Emissary 2.0 and later serve no HTTP at all then; this compiler listens on {}{}",
                    opts.http_port,
                    if vhosts.iter().any(|v| v.tls.is_some()) {
                        format!(" and {}", opts.https_port)
                    } else {
                        String::new()
                    }
                ),
            ).with_object(&crate::lower::object_of(first)));
        }
        let mut defaults = vec![default_listener(opts, opts.http_port, false, settings)];
        if vhosts.iter().any(|v| v.tls.is_some()) {
            defaults.push(default_listener(opts, opts.https_port, true, settings));
        }
        for mut l in defaults {
            bind(&mut l, vhosts, None, &BTreeMap::new(), diags);
            out.push(l);
        }
        return out;
    }

    for l in read {
        let mut listener = Listener {
            name: l.r.id.name.to_string(),
            address: opts.listen_address.clone(),
            port: l.port,
            stats_prefix: l.stats_prefix.clone(),
            security: l.security,
            xff_num_trusted_hops: l.l7_depth,
            proxy_protocol: l.proxy,
            tls: l.tls,
            chains: Vec::new(),
            source: Some(source_ref(l.r)),
        };
        bind(
            &mut listener,
            vhosts,
            l.namespace.as_deref(),
            &l.selector,
            diags,
        );
        if listener.chains.is_empty() {
            diags.push(
                Diagnostic::at(
                    Code::ListenerServesNothing,
                    l.r.span,
                    format!(
                        "Listener `{}` binds no Host, so it is left out (Emissary disables it too)",
                        l.r.id.name
                    ),
                )
                .with_object(&l.r.id),
            );
            continue;
        }
        out.push(listener);
    }
    // A Redirect Host on an INSECURE Listener with TLS: its TLS requests are insecure too.
    for l in &out {
        if l.security != SecurityModel::Insecure || !l.tls {
            continue;
        }
        for c in l.chains.iter().filter(|c| c.tls.is_some()) {
            for name in &c.virtual_hosts {
                let Some(v) = vhosts.iter().find(|v| &v.vh.name == name) else {
                    continue;
                };
                let (InsecureAction::Redirect, Some(src)) = (v.vh.insecure, &v.vh.source) else {
                    continue;
                };
                diags.push(
                    Diagnostic::at(
                        Code::RedirectLoop,
                        src.span,
                        format!(
                            "Listener `{}` is INSECURE and terminates TLS: requests to Host `{}` over TLS are redirected to https too, so they loop",
                            l.name, src.name
                        ),
                    )
                    .with_object(&crate::lower::object_of(src)),
                );
            }
        }
    }
    // Hosts no Listener serves: every request for them fails.
    for v in vhosts {
        let Some(src) = &v.vh.source else { continue };
        let served = out.iter().any(|l| {
            l.chains
                .iter()
                .any(|c| c.virtual_hosts.contains(&v.vh.name))
        });
        if !served {
            diags.push(
                Diagnostic::at(
                    Code::HostNotBound,
                    src.span,
                    format!(
                        "no Listener serves Host `{}` (hostname `{}`), so every request for it fails",
                        src.name, v.glob
                    ),
                )
                .with_object(&crate::lower::object_of(src))
                .with_help(
                    "check the Listeners' `hostBinding` (namespace and selector) and `securityModel`",
                ),
            );
        }
    }
    out.sort_by(|a, b| (a.port, &a.name).cmp(&(b.port, &b.name)));
    out
}

fn default_listener(opts: &LowerOptions, port: u16, tls: bool, settings: &Settings) -> Listener {
    Listener {
        name: format!("ambassador-listener-{port}"),
        address: opts.listen_address.clone(),
        port,
        stats_prefix: if tls { "ingress_https" } else { "ingress_http" }.into(),
        security: SecurityModel::Xfp,
        // Without Listeners the Module's setting still applies, as before Listeners existed.
        xff_num_trusted_hops: settings.xff_num_trusted_hops,
        proxy_protocol: false,
        tls,
        chains: Vec::new(),
        source: None,
    }
}

/// Binds the Hosts (by namespace and labels) to `l`: one TLS chain per SNI for the Hosts
/// that terminate TLS when the stack has TLS, and one cleartext chain for every Host unless
/// the Listener is INSECURE and the Host rejects insecure requests. Emissary adds the
/// cleartext chain to TLS Listeners too.
fn bind(
    l: &mut Listener,
    vhosts: &[VHost],
    namespace: Option<&str>,
    selector: &BTreeMap<String, String>,
    diags: &mut Vec<Diagnostic>,
) {
    let mut order: Vec<&VHost> = vhosts.iter().collect();
    order.sort_by(|a, b| a.glob.cmp(&b.glob));
    let mut tls_chains: BTreeMap<Vec<String>, (Chain, Option<String>)> = BTreeMap::new();
    let mut cleartext: Vec<String> = Vec::new();
    for v in order {
        // The synthesised default Host lives in Ambassador's own namespace: every
        // namespace binding takes it.
        let in_namespace = v.vh.source.is_none() || namespace.is_none_or(|ns| ns == v.namespace);
        let labelled = selector.iter().all(|(k, val)| v.labels.get(k) == Some(val));
        if !in_namespace || !labelled {
            continue;
        }
        if let (true, Some(tls)) = (l.tls, &v.tls) {
            let key = tls.server_names.clone();
            match tls_chains.get_mut(&key) {
                Some((chain, ctx)) => {
                    if *ctx != v.tls_context {
                        if let Some(src) = &v.vh.source {
                            diags.push(
                                Diagnostic::at(
                                    Code::TlsContextMismatch,
                                    src.span,
                                    format!(
                                        "Host `{}` shares its SNI with another Host on Listener `{}` but not its TLSContext, so it is left out of the TLS chain",
                                        src.name, l.name
                                    ),
                                )
                                .with_object(&crate::lower::object_of(src)),
                            );
                        }
                    } else {
                        chain.virtual_hosts.push(v.vh.name.clone());
                    }
                }
                None => {
                    let sni = key.first().map_or("*", String::as_str).to_string();
                    tls_chains.insert(
                        key,
                        (
                            Chain {
                                name: format!("httpshost-{}", v.vh.name),
                                tls: Some(tls.clone()),
                                route_config: format!("{}-https-{sni}", l.name),
                                virtual_hosts: vec![v.vh.name.clone()],
                            },
                            v.tls_context.clone(),
                        ),
                    );
                }
            }
        }
        if !(l.security == SecurityModel::Insecure && v.vh.insecure == InsecureAction::Reject) {
            cleartext.push(v.vh.name.clone());
        }
    }
    l.chains = tls_chains.into_values().map(|(c, _)| c).collect();
    if !cleartext.is_empty() {
        l.chains.push(Chain {
            name: "httphost-shared".into(),
            tls: None,
            route_config: format!("{}-http", l.name),
            virtual_hosts: cleartext,
        });
    }
}

fn read_listener<'a>(r: &'a Resource, diags: &mut Vec<Diagnostic>) -> Option<Read<'a>> {
    let mut reader = Reader::new(r);
    let port = reader.int("port")?;
    let Ok(port) =
        u16::try_from(port)
            .map_err(|_| ())
            .and_then(|p| if p == 0 { Err(()) } else { Ok(p) })
    else {
        reader.push(
            Code::InvalidValue,
            reader.span("port"),
            "port",
            format!("port {port} is outside 1-65535"),
        );
        diags.append(&mut reader.diags);
        return None;
    };
    // The protocol stack: `protocolStack` wins over `protocol`.
    let stack: Vec<String> = match (reader.str("protocol"), reader.node("protocolStack")) {
        (Some(_), Some(_)) => {
            reader.push(
                Code::InvalidValue,
                r.key_span("protocol"),
                "protocol",
                "set `protocol` or `protocolStack`, not both; Emissary takes `protocolStack`"
                    .into(),
            );
            reader.str_list("protocolStack")
        }
        (None, Some(_)) => reader.str_list("protocolStack"),
        (Some(p), None) => match p {
            "HTTP" => vec!["HTTP", "TCP"],
            "HTTPS" => vec!["TLS", "HTTP", "TCP"],
            "HTTPPROXY" => vec!["PROXY", "HTTP", "TCP"],
            "HTTPSPROXY" => vec!["TLS", "PROXY", "HTTP", "TCP"],
            "TCP" => vec!["TCP"],
            "TLS" => vec!["TLS", "TCP"],
            other => {
                reader.push(
                    Code::InvalidValue,
                    reader.span("protocol"),
                    "protocol",
                    format!("`protocol: {other}` is not one of HTTP, HTTPS, HTTPPROXY, HTTPSPROXY, TCP, TLS, so the Listener is left out"),
                );
                diags.append(&mut reader.diags);
                return None;
            }
        }
        .into_iter()
        .map(str::to_string)
        .collect(),
        (None, None) => {
            reader.push(
                Code::MissingField,
                r.span,
                "protocol",
                "Listener sets neither `protocol` nor `protocolStack`, so it is left out".into(),
            );
            diags.append(&mut reader.diags);
            return None;
        }
    };
    let bad_stack = |reader: &mut Reader, message: String| {
        let key = if r.field("protocolStack").is_some() {
            "protocolStack"
        } else {
            "protocol"
        };
        reader.push(Code::InvalidValue, r.key_span(key), key, message);
    };
    if let Some(bad) = stack
        .iter()
        .find(|p| !["HTTP", "PROXY", "TLS", "TCP", "UDP"].contains(&p.as_str()))
    {
        bad_stack(
            &mut reader,
            format!("`{bad}` is not a protocol layer (HTTP, PROXY, TLS, TCP, UDP), so the Listener is left out"),
        );
        diags.append(&mut reader.diags);
        return None;
    }
    match stack.last().map(String::as_str) {
        Some("TCP") => {}
        Some("UDP") => {
            bad_stack(
                &mut reader,
                "UDP (HTTP/3) Listeners are not compiled by this compiler, so the Listener is left out".into(),
            );
            diags.append(&mut reader.diags);
            return None;
        }
        _ => {
            bad_stack(
                &mut reader,
                "the last layer of the protocol stack must be TCP or UDP, so the Listener is left out".into(),
            );
            diags.append(&mut reader.diags);
            return None;
        }
    }
    let has = |p: &str| stack.iter().any(|s| s == p);
    if !has("HTTP") {
        let key = if r.field("protocolStack").is_some() {
            "protocolStack"
        } else {
            "protocol"
        };
        reader.push(
            Code::UnsupportedField,
            r.key_span(key),
            key,
            "a Listener without HTTP serves TCPMappings, which this compiler gives listeners of their own on their ports; this Listener is left out".into(),
        );
        diags.append(&mut reader.diags);
        return None;
    }
    let security = match reader.str("securityModel") {
        Some("XFP") => SecurityModel::Xfp,
        Some("SECURE") => SecurityModel::Secure,
        Some("INSECURE") => SecurityModel::Insecure,
        Some(other) => {
            reader.push(
                Code::InvalidValue,
                reader.span("securityModel"),
                "securityModel",
                format!("`securityModel: {other}` is not one of XFP, SECURE, INSECURE, so the Listener is left out"),
            );
            diags.append(&mut reader.diags);
            return None;
        }
        // The front end reports the missing field.
        None => {
            diags.append(&mut reader.diags);
            return None;
        }
    };
    let Some(binding) = r.field("hostBinding") else {
        reader.push(
            Code::MissingField,
            r.span,
            "hostBinding",
            "Listener has no `hostBinding`, so it binds no Host and is left out".into(),
        );
        diags.append(&mut reader.diags);
        return None;
    };
    let from = binding
        .get("namespace")
        .and_then(|n| n.get("from"))
        .and_then(|f| Some((f.as_str()?.to_ascii_uppercase(), f.span)));
    let selector = match_labels(binding.get("selector"));
    let own = Some(r.id.namespace.to_string());
    let namespace = match from {
        Some((f, _)) if f == "ALL" => None,
        Some((f, _)) if f == "SELF" => own,
        Some((f, span)) if f == "SELECTOR" => {
            reader.push(
                Code::UnsupportedField,
                span,
                "hostBinding.namespace.from",
                "`from: SELECTOR` is not supported by Emissary, which takes it as SELF".into(),
            );
            own
        }
        Some((f, span)) => {
            reader.push(
                Code::InvalidValue,
                span,
                "hostBinding.namespace.from",
                format!("`from: {f}` is not one of ALL, SELF, so the Listener is left out"),
            );
            diags.append(&mut reader.diags);
            return None;
        }
        None if binding.get("selector").is_some() => own,
        None => {
            reader.push(
                Code::MissingField,
                binding.span,
                "hostBinding",
                "`hostBinding` names neither `namespace` nor `selector`, so the Listener is left out".into(),
            );
            diags.append(&mut reader.diags);
            return None;
        }
    };
    let l7_depth = reader
        .int("l7Depth")
        .map_or(0, |d| d.clamp(0, u32::MAX as i64) as u32);
    let tls = has("TLS");
    let stats_prefix = reader
        .str("statsPrefix")
        .map(str::to_string)
        .unwrap_or_else(|| if tls { "ingress_https" } else { "ingress_http" }.into());
    diags.append(&mut reader.diags);
    Some(Read {
        r,
        port,
        tls,
        proxy: has("PROXY"),
        security,
        namespace,
        selector,
        l7_depth,
        stats_prefix,
    })
}

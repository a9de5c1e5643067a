//! The RateLimitService and rate limit labels: Mapping `labels` and the Module's `default_labels` to route rate limits.
//!
//! Emissary (`ir/irratelimit.py`, `v3/v3ratelimitaction.py`): exactly one RateLimitService
//! is used ("only one RateLimitService is supported" leaves none); `protocol_version` must
//! be `v3` (its default, v2, leaves no filter and traffic is not limited); routes carry rate
//! limits only when a RateLimitService is in use, and only from the labels of its domain
//! (the Module's `default_label_domain`, `ambassador` unless set). Labels are
//! `{<domain>: [{<group name>: [specifier, ...]}, ...]}`; each group is one descriptor. The
//! specifiers in their v3alpha1 forms and in the v2 / annotation shorthands Emissary's Go
//! side converts:
//!
//! | written                                               | descriptor entry                      |
//! |-------------------------------------------------------|---------------------------------------|
//! | `source_cluster` / `{source_cluster: {key: …}}`        | `source_cluster`                      |
//! | `destination_cluster` / `{destination_cluster: …}`     | `destination_cluster`                 |
//! | `remote_address` / `{remote_address: {key: …}}`        | `remote_address`                      |
//! | any other bare string `s`                             | `generic_key` with the value `s`      |
//! | `{generic_key: {key?, value}}` / `{generic_key: s}`    | `generic_key` (key `generic_key`)     |
//! | `{request_headers: {key, header_name}}`               | `request_headers`                     |
//! | `{<key>: {header: <name>}}`                           | `request_headers` under `<key>`       |
//!
//! `omit_if_not_present` is read and ignored, as in Emissary: a missing header makes Envoy
//! skip the whole group. A specifier that is none of these is reported and left out.

use std::collections::BTreeMap;

use foldhash::HashMap;

use crate::diag::{Code, Diagnostic};
use crate::front::yaml::Node;
use crate::front::Resource;
use crate::ir::{Cluster, RateLimit, RateLimitAction};

use super::mapping::Reader;
use super::source_ref;

/// One label group as written: its name and its descriptor entries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelGroup {
    pub name: String,
    pub actions: Vec<RateLimitAction>,
}

/// A Mapping's `labels`: per domain, its groups in order.
pub type Labels = BTreeMap<String, Vec<LabelGroup>>;

/// The RateLimitService in use and its cluster, from the RateLimitServices given. `None`
/// (reported) without one, with several, or when the one cannot be used.
pub(super) fn rate_limit<'r>(
    services: impl Iterator<Item = &'r Resource>,
    tls_contexts: &HashMap<String, Resource>,
    default_domain: &str,
    diags: &mut Vec<Diagnostic>,
) -> Option<(RateLimit, Cluster)> {
    let r = super::grpc::only_one(
        services,
        Code::SeveralRateLimitServices,
        "RateLimitService",
        "no request is rate limited",
        diags,
    )?;
    let mut reader = Reader::new(r);
    let out = read(&mut reader, tls_contexts, default_domain);
    diags.append(&mut reader.diags);
    out
}

fn read(
    reader: &mut Reader,
    tls_contexts: &HashMap<String, Resource>,
    default_domain: &str,
) -> Option<(RateLimit, Cluster)> {
    let domain = reader.str("domain").unwrap_or(default_domain).to_owned();
    let r = reader.r;
    let name = &r.id.name;
    let unlimited = "; no request is rate limited until it is fixed";
    let mut ok = true;
    let upstream = super::grpc::read_service(reader, Code::RateLimitServiceMissing, unlimited);
    match reader.str("protocol_version") {
        Some("v3") => {}
        other => {
            let (span, said) = match other {
                Some(v) => (
                    reader.span("protocol_version"),
                    format!("`protocol_version: {v}`"),
                ),
                None => (
                    r.span,
                    "no `protocol_version` (Emissary's default is v2)".to_string(),
                ),
            };
            reader.push(
                Code::RateLimitProtocolVersion,
                span,
                "protocol_version",
                format!("RateLimitService `{name}` has {said}; only v3 is served{unlimited}"),
            );
            ok = false;
        }
    }
    let timeout_ms = match reader.node("timeout_ms") {
        None => 20,
        Some(n) => match n.as_int() {
            Some(v) if v > 0 => v as u64,
            _ => {
                let span = n.span;
                reader.push(
                    Code::RateLimitInvalid,
                    span,
                    "timeout_ms",
                    format!("`timeout_ms` of RateLimitService `{name}` must be a positive integer{unlimited}"),
                );
                ok = false;
                20
            }
        },
    };
    let failure_mode_deny = reader.bool("failure_mode_deny").unwrap_or(false);
    let upstream = upstream?;
    let cluster = super::grpc::service_cluster(
        reader,
        &upstream,
        tls_contexts,
        "cluster_ratelimit",
        true,
        unlimited,
        &mut ok,
    );
    if !ok {
        return None;
    }
    Some((
        RateLimit {
            source: source_ref(r),
            cluster: cluster.name.clone(),
            domain,
            timeout_ms,
            failure_mode_deny,
        },
        cluster,
    ))
}

/// Reads a Mapping's `labels`. Malformed parts are reported (`invalid-rate-limit-label`)
/// and left out; the rest is kept.
pub(super) fn read_labels(reader: &mut Reader) -> Option<Box<Labels>> {
    let n = reader.node("labels")?;
    let mut out = Labels::new();
    let Some(domains) = n.as_map() else {
        reader.push(
            Code::InvalidRateLimitLabel,
            n.span,
            "labels",
            "`labels` must map rate limit domains to lists of label groups".into(),
        );
        return None;
    };
    for (d, groups) in domains {
        let Some(domain) = d.scalar() else { continue };
        let mut list = Vec::new();
        let Some(items) = groups.as_seq() else {
            reader.push(
                Code::InvalidRateLimitLabel,
                groups.span,
                "labels",
                format!("`labels.{domain}` must be a list of label groups"),
            );
            continue;
        };
        for g in items {
            match g.as_map() {
                Some([(name, specifiers)]) => {
                    let name = name.scalar().unwrap_or_default().to_string();
                    let actions = read_specifiers(reader, specifiers, &format!("labels.{domain}"));
                    if !actions.is_empty() {
                        list.push(LabelGroup { name, actions });
                    }
                }
                _ => reader.push(
                    Code::InvalidRateLimitLabel,
                    g.span,
                    "labels",
                    format!("a label group of `labels.{domain}` must be a mapping of one group name to its list of labels"),
                ),
            }
        }
        out.insert(domain.to_string(), list);
    }
    Some(Box::new(out))
}

/// The specifiers of one group, each reported and left out when it is not one of the forms.
fn read_specifiers(reader: &mut Reader, list: &Node, field: &str) -> Vec<RateLimitAction> {
    let Some(items) = list.as_seq() else {
        reader.push(
            Code::InvalidRateLimitLabel,
            list.span,
            "labels",
            format!("a label group of `{field}` must hold a list of labels"),
        );
        return Vec::new();
    };
    let mut out = Vec::new();
    for item in items {
        match specifier(item) {
            Ok(a) => out.push(a),
            Err(message) => reader.push(
                Code::InvalidRateLimitLabel,
                item.span,
                "labels",
                format!("{message}; the label is left out"),
            ),
        }
    }
    out
}

/// One specifier, in any of its forms (see the module documentation).
pub(super) fn specifier(n: &Node) -> Result<RateLimitAction, String> {
    if let Some(s) = n.scalar().filter(|_| n.as_map().is_none()) {
        return Ok(match s {
            "source_cluster" => RateLimitAction::SourceCluster,
            "destination_cluster" => RateLimitAction::DestinationCluster,
            "remote_address" => RateLimitAction::RemoteAddress,
            _ => RateLimitAction::GenericKey {
                key: "generic_key".into(),
                value: s.to_string(),
            },
        });
    }
    let Some([(k, v)]) = n.as_map() else {
        return Err("a label must be a string or a mapping with one key".into());
    };
    let key = k.scalar().unwrap_or_default();
    let field = |name: &str| v.get(name).and_then(Node::scalar).map(str::to_string);
    match key {
        "source_cluster" => Ok(RateLimitAction::SourceCluster),
        "destination_cluster" => Ok(RateLimitAction::DestinationCluster),
        "remote_address" => Ok(RateLimitAction::RemoteAddress),
        "generic_key" => {
            // `{generic_key: value}` (v2) or `{generic_key: {key?, value}}` (v3alpha1).
            if let Some(value) = v.scalar().filter(|_| v.as_map().is_none()) {
                return Ok(RateLimitAction::GenericKey {
                    key: "generic_key".into(),
                    value: value.to_string(),
                });
            }
            match field("value") {
                Some(value) => Ok(RateLimitAction::GenericKey {
                    key: field("key").unwrap_or_else(|| "generic_key".into()),
                    value,
                }),
                None => Err("`generic_key` has no `value`".into()),
            }
        }
        "request_headers" => match (field("key"), field("header_name")) {
            (Some(key), Some(header)) => Ok(RateLimitAction::RequestHeaders { key, header }),
            _ => Err("`request_headers` needs `key` and `header_name`".into()),
        },
        other => match field("header") {
            // v2: `{<key>: {header: <name>, omit_if_not_present}}`.
            Some(header) => Ok(RateLimitAction::RequestHeaders {
                key: other.to_string(),
                header,
            }),
            None => Err(format!(
                "`{other}` is not a rate limit label: use source_cluster, destination_cluster, remote_address, generic_key, request_headers, or `{{<key>: {{header: <name>}}}}`"
            )),
        },
    }
}

/// The rate limits of a route in `domain` (the RateLimitService's): each of the Mapping's
/// groups of that domain with the domain's default labels first (except groups named
/// `v0_ratelimit_*`), or, for a Mapping without labels, one group of the defaults of
/// `default_domain` (Emissary gives it `{default_label_domain: [{defaults: ...}]}`, which
/// counts only when that is the service's domain).
pub(super) fn route_rate_limits(
    labels: Option<&Labels>,
    domain: &str,
    default_domain: &str,
    defaults: &BTreeMap<String, Vec<RateLimitAction>>,
) -> Vec<crate::ir::RateLimitGroup> {
    let defaults = defaults.get(domain);
    match labels {
        None => defaults
            .filter(|d| !d.is_empty() && domain == default_domain)
            .map(|d| crate::ir::RateLimitGroup { actions: d.clone() })
            .into_iter()
            .collect(),
        Some(l) => l
            .get(domain)
            .into_iter()
            .flatten()
            .map(|g| {
                let mut actions = Vec::new();
                if !g.name.starts_with("v0_ratelimit_") {
                    actions.extend(defaults.into_iter().flatten().cloned());
                }
                actions.extend(g.actions.iter().cloned());
                crate::ir::RateLimitGroup { actions }
            })
            .collect(),
    }
}

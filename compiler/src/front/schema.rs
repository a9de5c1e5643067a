//! The fields each Ambassador kind accepts, their types, and whether this compiler applies them.
//!
//! The tables are the union of what Emissary's CRDs and annotation schemas accept across
//! apiVersions. A field that is not here is a typo or a field of another product, and is
//! reported (Emissary v3 drops it silently). A field that is here but not applied is
//! reported as a warning, so no configuration is ever dropped without a word.

use crate::diag::{did_you_mean, Code, Diagnostic, ObjectRef};
use crate::front::yaml::{Node, NodeKind};
use crate::front::ApiVersion;

/// The type a field takes.
#[derive(Clone, Copy, Debug)]
pub enum Ty {
    Str,
    Bool,
    Int,
    /// An integer or a number.
    Num,
    /// Anything; checked, if at all, where it is used.
    Any,
    /// v2 `tls`: `true` or the name of a TLSContext.
    StrOrBool,
    StrList,
    StrOrList,
    /// A map from strings to strings.
    StrMap,
    /// Header or query matches: a string, or (v2) `true`, or null for "present".
    MatchMap,
    /// Headers to add: a string, or `{value, append}`.
    AddHeaders,
    Obj(&'static [Field]),
    ObjList(&'static [Field]),
}

impl Ty {
    fn describe(self) -> &'static str {
        match self {
            Ty::Str => "a string",
            Ty::Bool => "a boolean",
            Ty::Int => "an integer",
            Ty::Num => "a number",
            Ty::Any => "any value",
            Ty::StrOrBool => "a string or a boolean",
            Ty::StrList => "a list of strings",
            Ty::StrOrList => "a string or a list of strings",
            Ty::StrMap => "a mapping of strings to strings",
            Ty::MatchMap => "a mapping of names to strings",
            Ty::AddHeaders => "a mapping of header names to strings or `{value, append}`",
            Ty::Obj(_) => "a mapping",
            Ty::ObjList(_) => "a list of mappings",
        }
    }
}

/// One accepted field.
#[derive(Clone, Copy, Debug)]
pub struct Field {
    pub name: &'static str,
    pub ty: Ty,
    /// Whether this compiler applies the field. Unapplied fields are reported as warnings.
    pub applied: bool,
}

const fn f(name: &'static str, ty: Ty) -> Field {
    Field {
        name,
        ty,
        applied: true,
    }
}

/// Known to Ambassador, not applied here.
const fn na(name: &'static str, ty: Ty) -> Field {
    Field {
        name,
        ty,
        applied: false,
    }
}

/// Keys of an annotation document that identify the object rather than configure it.
pub const ANNOTATION_META: &[&str] = &[
    "apiVersion",
    "kind",
    "name",
    "namespace",
    "metadata_labels",
    "generation",
];

const REGEX_REWRITE: &[Field] = &[f("pattern", Ty::Str), f("substitution", Ty::Str)];
const RETRY_POLICY: &[Field] = &[
    f("retry_on", Ty::Str),
    f("num_retries", Ty::Int),
    f("per_try_timeout", Ty::Str),
];
const CORS: &[Field] = &[
    f("origins", Ty::StrOrList),
    f("methods", Ty::StrOrList),
    f("headers", Ty::StrOrList),
    f("credentials", Ty::Bool),
    f("exposed_headers", Ty::StrOrList),
    f("max_age", Ty::Str),
];
const CIRCUIT_BREAKER: &[Field] = &[
    f("priority", Ty::Str),
    f("max_connections", Ty::Int),
    f("max_pending_requests", Ty::Int),
    f("max_requests", Ty::Int),
    f("max_retries", Ty::Int),
];
const COOKIE: &[Field] = &[f("name", Ty::Str), f("ttl", Ty::Str), f("path", Ty::Str)];
const LOAD_BALANCER: &[Field] = &[
    f("policy", Ty::Str),
    f("cookie", Ty::Obj(COOKIE)),
    f("header", Ty::Str),
    f("source_ip", Ty::Bool),
];
const KEEPALIVE: &[Field] = &[
    na("time", Ty::Int),
    na("interval", Ty::Int),
    na("probes", Ty::Int),
];

/// Mapping: the union of `ambassador/v0` … `getambassador.io/v3alpha1`.
pub const MAPPING: &[Field] = &[
    f("ambassador_id", Ty::StrOrList),
    f("ambassadorId", Ty::StrOrList),
    f("prefix", Ty::Str),
    f("prefix_regex", Ty::Bool),
    f("prefix_exact", Ty::Bool),
    f("case_sensitive", Ty::Bool),
    f("service", Ty::Str),
    f("rewrite", Ty::Str),
    f("regex_rewrite", Ty::Obj(REGEX_REWRITE)),
    f("host", Ty::Str),
    f("host_regex", Ty::Bool),
    f("hostname", Ty::Str),
    f("headers", Ty::MatchMap),
    f("regex_headers", Ty::StrMap),
    f("query_parameters", Ty::MatchMap),
    f("regex_query_parameters", Ty::StrMap),
    f("method", Ty::Str),
    f("method_regex", Ty::Bool),
    f("weight", Ty::Int),
    f("precedence", Ty::Int),
    f("shadow", Ty::Bool),
    f("timeout_ms", Ty::Int),
    f("idle_timeout_ms", Ty::Int),
    f("connect_timeout_ms", Ty::Int),
    f("cluster_idle_timeout_ms", Ty::Int),
    f("cluster_max_connection_lifetime_ms", Ty::Int),
    f("retry_policy", Ty::Obj(RETRY_POLICY)),
    f("cors", Ty::Obj(CORS)),
    f("circuit_breakers", Ty::ObjList(CIRCUIT_BREAKER)),
    f("load_balancer", Ty::Obj(LOAD_BALANCER)),
    f("add_request_headers", Ty::AddHeaders),
    f("add_response_headers", Ty::AddHeaders),
    f("remove_request_headers", Ty::StrOrList),
    f("remove_response_headers", Ty::StrOrList),
    f("host_rewrite", Ty::Str),
    f("auto_host_rewrite", Ty::Bool),
    f("allow_upgrade", Ty::StrList),
    f("use_websocket", Ty::Bool),
    f("grpc", Ty::Bool),
    f("tls", Ty::StrOrBool),
    f("host_redirect", Ty::Bool),
    f("path_redirect", Ty::Str),
    f("prefix_redirect", Ty::Str),
    f("regex_redirect", Ty::Obj(REGEX_REWRITE)),
    f("redirect_response_code", Ty::Int),
    f("resolver", Ty::Str),
    f("outlier_detection", Ty::Any),
    f("labels", Ty::Any),
    f("bypass_auth", Ty::Bool),
    f("auth_context_extensions", Ty::StrMap),
    na("bypass_error_response_overrides", Ty::Bool),
    na("error_response_overrides", Ty::Any),
    na("add_linkerd_headers", Ty::Bool),
    na("envoy_override", Ty::Any),
    na("docs", Ty::Any),
    na("cluster_tag", Ty::Str),
    na("dns_type", Ty::Str),
    na("enable_ipv4", Ty::Bool),
    na("enable_ipv6", Ty::Bool),
    na("keepalive", Ty::Obj(KEEPALIVE)),
    na("respect_dns_ttl", Ty::Bool),
    na("stats_name", Ty::Str),
    na("v3StatsName", Ty::Str),
    na("health_checks", Ty::Any),
    na("v3health_checks", Ty::Any),
    na("priority", Ty::Str),
    na("rate_limits", Ty::Any),
    na("modules", Ty::Any),
    na("use_host_header", Ty::Bool),
];

pub const TCP_MAPPING: &[Field] = &[
    f("ambassador_id", Ty::StrOrList),
    f("ambassadorId", Ty::StrOrList),
    f("port", Ty::Int),
    f("service", Ty::Str),
    f("host", Ty::Str),
    f("weight", Ty::Int),
    f("tls", Ty::StrOrBool),
    f("idle_timeout_ms", Ty::Int),
    f("resolver", Ty::Str),
    na("address", Ty::Str),
    na("circuit_breakers", Ty::ObjList(CIRCUIT_BREAKER)),
    na("cluster_tag", Ty::Str),
    na("enable_ipv4", Ty::Bool),
    na("enable_ipv6", Ty::Bool),
    na("stats_name", Ty::Str),
    na("v3StatsName", Ty::Str),
];

const SECRET_REF: &[Field] = &[f("name", Ty::Str), f("namespace", Ty::Str)];
const NAME_REF: &[Field] = &[f("name", Ty::Str)];
const LABEL_SELECTOR: &[Field] = &[
    f("matchLabels", Ty::StrMap),
    na("matchExpressions", Ty::Any),
];
const INSECURE: &[Field] = &[f("action", Ty::Str), na("additionalPort", Ty::Int)];
const REQUEST_POLICY: &[Field] = &[f("insecure", Ty::Obj(INSECURE))];
const HOST_TLS: &[Field] = &[
    f("min_tls_version", Ty::Str),
    f("max_tls_version", Ty::Str),
    f("alpn_protocols", Ty::Str),
    f("cert_required", Ty::Bool),
    f("cipher_suites", Ty::StrList),
    f("ecdh_curves", Ty::StrList),
    f("ca_secret", Ty::Str),
    na("cacert_chain_file", Ty::Str),
    na("cert_chain_file", Ty::Str),
    na("private_key_file", Ty::Str),
    na("redirect_cleartext_from", Ty::Int),
    na("sni", Ty::Str),
    na("crl_secret", Ty::Str),
];

pub const HOST: &[Field] = &[
    f("ambassador_id", Ty::StrOrList),
    f("ambassadorId", Ty::StrOrList),
    f("hostname", Ty::Str),
    f("mappingSelector", Ty::Obj(LABEL_SELECTOR)),
    f("selector", Ty::Obj(LABEL_SELECTOR)),
    f("tlsSecret", Ty::Obj(SECRET_REF)),
    f("tlsContext", Ty::Obj(NAME_REF)),
    f("tls", Ty::Obj(HOST_TLS)),
    f("requestPolicy", Ty::Obj(REQUEST_POLICY)),
    na("acmeProvider", Ty::Any),
    na("previewUrl", Ty::Any),
    na("tlsCertificateSource", Ty::Str),
];

pub const MODULE: &[Field] = &[
    f("ambassador_id", Ty::StrOrList),
    f("ambassadorId", Ty::StrOrList),
    f("config", Ty::Any),
];

pub const TLS_CONTEXT: &[Field] = &[
    f("ambassador_id", Ty::StrOrList),
    f("ambassadorId", Ty::StrOrList),
    f("hosts", Ty::StrList),
    f("secret", Ty::Str),
    f("ca_secret", Ty::Str),
    f("alpn_protocols", Ty::Str),
    f("min_tls_version", Ty::Str),
    f("max_tls_version", Ty::Str),
    f("sni", Ty::Str),
    na("secret_namespacing", Ty::Bool),
    na("cert_chain_file", Ty::Str),
    na("private_key_file", Ty::Str),
    na("cacert_chain_file", Ty::Str),
    f("cert_required", Ty::Bool),
    f("cipher_suites", Ty::StrList),
    f("ecdh_curves", Ty::StrList),
    na("redirect_cleartext_from", Ty::Int),
    na("crl_secret", Ty::Str),
];

pub const AUTH_SERVICE: &[Field] = &[
    f("ambassador_id", Ty::StrOrList),
    f("ambassadorId", Ty::StrOrList),
    f("auth_service", Ty::Str),
    f("path_prefix", Ty::Str),
    f("timeout_ms", Ty::Int),
    f("allowed_request_headers", Ty::StrList),
    f("allowed_authorization_headers", Ty::StrList),
    f("include_body", Ty::Any),
    f("proto", Ty::Str),
    f("protocol_version", Ty::Str),
    f("tls", Ty::StrOrBool),
    f("status_on_error", Ty::Any),
    f("failure_mode_allow", Ty::Bool),
    na("add_linkerd_headers", Ty::Bool),
    na("stats_name", Ty::Str),
    na("v3StatsName", Ty::Str),
    f("circuit_breakers", Ty::ObjList(CIRCUIT_BREAKER)),
    f("add_auth_headers", Ty::StrMap),
    f("allow_request_body", Ty::Bool),
    na("cluster_tag", Ty::Str),
];

pub const RATE_LIMIT_SERVICE: &[Field] = &[
    f("ambassador_id", Ty::StrOrList),
    f("ambassadorId", Ty::StrOrList),
    f("service", Ty::Str),
    f("timeout_ms", Ty::Int),
    f("domain", Ty::Str),
    f("protocol_version", Ty::Str),
    f("tls", Ty::StrOrBool),
    f("failure_mode_deny", Ty::Bool),
    na("stats_name", Ty::Str),
    na("v3StatsName", Ty::Str),
    f("circuit_breakers", Ty::ObjList(CIRCUIT_BREAKER)),
    na("cluster_tag", Ty::Str),
    na("v3GRPCService", Ty::Any),
];

const LOG_HEADERS: &[Field] = &[f("additional_log_headers", Ty::Any)];
pub const LOG_SERVICE: &[Field] = &[
    f("ambassador_id", Ty::StrOrList),
    f("ambassadorId", Ty::StrOrList),
    f("service", Ty::Str),
    f("driver", Ty::Str),
    f("driver_config", Ty::Obj(LOG_HEADERS)),
    f("flush_interval_time", Ty::Int),
    f("flush_interval_byte_size", Ty::Int),
    f("grpc", Ty::Bool),
    f("protocol_version", Ty::Str),
    f("tls", Ty::StrOrBool),
    f("circuit_breakers", Ty::ObjList(CIRCUIT_BREAKER)),
    na("stats_name", Ty::Str),
    na("v3StatsName", Ty::Str),
];

const SAMPLING: &[Field] = &[
    f("client", Ty::Num),
    f("random", Ty::Num),
    f("overall", Ty::Num),
];
pub const TRACING_SERVICE: &[Field] = &[
    f("ambassador_id", Ty::StrOrList),
    f("ambassadorId", Ty::StrOrList),
    f("service", Ty::Str),
    f("driver", Ty::Str),
    f("config", Ty::Any),
    f("sampling", Ty::Obj(SAMPLING)),
    f("tag_headers", Ty::StrList),
    f("custom_tags", Ty::Any),
    f("tls", Ty::StrOrBool),
    f("circuit_breakers", Ty::ObjList(CIRCUIT_BREAKER)),
    na("stats_name", Ty::Str),
    na("v3StatsName", Ty::Str),
];

const HOST_BINDING: &[Field] = &[f("namespace", Ty::Any), f("selector", Ty::Any)];
pub const LISTENER: &[Field] = &[
    f("ambassador_id", Ty::StrOrList),
    f("ambassadorId", Ty::StrOrList),
    f("port", Ty::Int),
    f("protocol", Ty::Str),
    f("protocolStack", Ty::StrList),
    f("securityModel", Ty::Str),
    f("hostBinding", Ty::Obj(HOST_BINDING)),
    f("l7Depth", Ty::Int),
    f("statsPrefix", Ty::Str),
];

pub const RESOLVER: &[Field] = &[
    f("ambassador_id", Ty::StrOrList),
    f("ambassadorId", Ty::StrOrList),
];
pub const CONSUL_RESOLVER: &[Field] = &[
    f("ambassador_id", Ty::StrOrList),
    f("ambassadorId", Ty::StrOrList),
    f("address", Ty::Str),
    f("datacenter", Ty::Str),
];
pub const OPEN_SCHEMA: &[Field] = &[];

/// Where a field check reports.
pub struct Ctx<'a> {
    pub object: &'a ObjectRef,
    pub version: ApiVersion,
    /// `""` for annotation documents, `spec.` for custom resources.
    pub prefix: &'a str,
    /// Skip these keys (the identifying keys of an annotation document).
    pub skip: &'a [&'a str],
}

/// Checks `node` (a mapping) against `fields`, reporting unknown fields, wrong types and
/// fields that are not applied.
pub fn check(node: &Node, fields: &[Field], ctx: &Ctx, path: &str, out: &mut Vec<Diagnostic>) {
    let Some(entries) = node.as_map() else {
        out.push(wrong_type(
            ctx,
            path.trim_end_matches('.'),
            node,
            "a mapping",
        ));
        return;
    };
    // One buffer for the paths of all fields: they are only read when a value is wrong.
    let mut full = String::new();
    for (k, v) in entries {
        let Some(key) = k.scalar() else {
            out.push(
                Diagnostic::at(
                    Code::WrongType,
                    k.span,
                    format!("a key of `{}` is not a string", path_or(ctx, path)),
                )
                .with_object(ctx.object),
            );
            continue;
        };
        if path.is_empty() && ctx.skip.contains(&key) {
            continue;
        }
        full.clear();
        full.push_str(path);
        full.push_str(key);
        let Some(field) = fields.iter().find(|f| f.name == key) else {
            let mut d = Diagnostic::at(
                Code::UnknownField,
                k.span,
                format!(
                    "unknown field `{}{full}` in {}",
                    ctx.prefix, ctx.object.kind
                ),
            )
            .with_object(ctx.object)
            .with_field(format!("{}{full}", ctx.prefix));
            if key == "hostname"
                && ctx.version < ApiVersion::V3alpha1
                && fields.iter().any(|f| f.name == "host")
            {
                d = d.with_help("`hostname` exists only in getambassador.io/v3alpha1: use `host`, or move to v3alpha1");
            } else if let Some(s) = did_you_mean(key, fields.iter().map(|f| f.name)) {
                d = d.with_help(format!("did you mean `{s}`?"));
            }
            out.push(d);
            continue;
        };
        if !field.applied {
            out.push(
                Diagnostic::at(
                    Code::UnsupportedField,
                    k.span,
                    format!(
                        "`{}{full}` is accepted but not applied by this compiler",
                        ctx.prefix
                    ),
                )
                .with_object(ctx.object)
                .with_field(format!("{}{full}", ctx.prefix)),
            );
        }
        check_value(v, field.ty, ctx, &full, out);
    }
}

fn path_or(ctx: &Ctx, path: &str) -> String {
    let p = format!("{}{}", ctx.prefix, path.trim_end_matches('.'));
    if p.is_empty() {
        "the object".into()
    } else {
        p
    }
}

fn wrong_type(ctx: &Ctx, path: &str, v: &Node, want: &str) -> Diagnostic {
    Diagnostic::at(
        Code::WrongType,
        v.span,
        format!(
            "`{}{path}` must be {want}, found {}",
            ctx.prefix,
            v.type_name()
        ),
    )
    .with_object(ctx.object)
    .with_field(format!("{}{path}", ctx.prefix))
}

fn yaml11(ctx: &Ctx, path: &str, v: &Node, b: bool) -> Diagnostic {
    Diagnostic::at(
        Code::Yaml11Boolean,
        v.span,
        format!(
            "`{}` in `{}{path}` is a string in YAML 1.2 but the boolean `{b}` in YAML 1.1, which Emissary and kubectl read",
            v.scalar().unwrap_or_default(),
            ctx.prefix
        ),
    )
    .with_object(ctx.object)
    .with_field(format!("{}{path}", ctx.prefix))
    .with_help(format!("write `{b}` to mean a boolean, or quote the value to mean a string"))
}

fn is_string(v: &Node) -> bool {
    v.as_str().is_some() && (!v.is_plain() || (v.as_bool().is_none() && v.as_float().is_none()))
}

/// Checks one value against its type. Null values count as unset and pass.
pub fn check_value(v: &Node, ty: Ty, ctx: &Ctx, path: &str, out: &mut Vec<Diagnostic>) {
    if v.is_null() {
        return;
    }
    let ok = match ty {
        Ty::Any => true,
        Ty::Str => {
            if let Some(b) = v.yaml11_bool() {
                out.push(yaml11(ctx, path, v, b));
            }
            is_string(v)
        }
        Ty::Bool => {
            if let Some(b) = v.yaml11_bool() {
                out.push(yaml11(ctx, path, v, b));
                true
            } else {
                v.as_bool().is_some()
            }
        }
        Ty::Int => v.as_int().is_some(),
        Ty::Num => v.as_float().is_some(),
        Ty::StrOrBool => is_string(v) || v.as_bool().is_some(),
        Ty::StrList => match v.as_seq() {
            Some(items) => {
                for (i, item) in items.iter().enumerate() {
                    if !is_string(item) {
                        out.push(wrong_type(ctx, &format!("{path}[{i}]"), item, "a string"));
                    }
                }
                true
            }
            None => false,
        },
        Ty::StrOrList => {
            if v.as_seq().is_some() {
                check_value(v, Ty::StrList, ctx, path, out);
                true
            } else {
                is_string(v) || v.as_int().is_some()
            }
        }
        Ty::StrMap | Ty::MatchMap | Ty::AddHeaders => match v.as_map() {
            Some(entries) => {
                let mut sub = String::new();
                for (k, val) in entries {
                    sub.clear();
                    sub.push_str(path);
                    sub.push('.');
                    sub.push_str(k.scalar().unwrap_or("?"));
                    let good = match ty {
                        Ty::MatchMap => {
                            val.is_null()
                                || is_string(val)
                                || val.as_bool() == Some(true)
                                || val.as_int().is_some()
                        }
                        Ty::AddHeaders => {
                            if val.as_map().is_some() {
                                check(val, ADD_HEADER, ctx, &format!("{sub}."), out);
                                true
                            } else {
                                is_string(val) || val.as_int().is_some()
                            }
                        }
                        _ => is_string(val) || val.as_int().is_some() || val.as_bool().is_some(),
                    };
                    if !good {
                        out.push(wrong_type(ctx, &sub, val, "a string"));
                    }
                }
                true
            }
            None => false,
        },
        Ty::Obj(fields) => {
            if v.as_map().is_some() {
                check(v, fields, ctx, &format!("{path}."), out);
                true
            } else {
                false
            }
        }
        Ty::ObjList(fields) => match v.as_seq() {
            Some(items) => {
                for (i, item) in items.iter().enumerate() {
                    if item.as_map().is_some() {
                        check(item, fields, ctx, &format!("{path}[{i}]."), out);
                    } else {
                        out.push(wrong_type(ctx, &format!("{path}[{i}]"), item, "a mapping"));
                    }
                }
                true
            }
            None => false,
        },
    };
    if !ok {
        out.push(wrong_type(ctx, path, v, ty.describe()));
    }
}

const ADD_HEADER: &[Field] = &[f("value", Ty::Str), f("append", Ty::Bool)];

/// Whether a node is any kind of collection (used to skip deeper checks on scalars).
pub fn is_collection(n: &Node) -> bool {
    matches!(n.kind, NodeKind::Map(_) | NodeKind::Seq(_))
}

//! Hosts: virtual hosts, the TLS the listener terminates for them, and hostname globs.

use std::collections::BTreeMap;

use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};

use crate::diag::{Code, Diagnostic};
use crate::front::yaml::Node;
use crate::front::{Resource, SecretInfo};
use crate::ir::{InsecureAction, ServerTls, VirtualHost};

use super::mapping::Reader;
use super::source_ref;

#[derive(Clone, Debug)]
pub(crate) struct VHost {
    pub vh: VirtualHost,
    /// The hostname glob, lower case: Mappings attach by it.
    pub glob: String,
    pub selector: BTreeMap<String, String>,
    /// The Host's namespace and labels: Listeners bind Hosts by them.
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    /// The TLS the Host terminates (certificate and SNI), if any.
    pub tls: Option<ServerTls>,
    /// The TLSContext that gives the TLS settings, if any: Hosts sharing an SNI must share it.
    pub tls_context: Option<String>,
    /// Some Listener serves it (set once the Listeners are bound).
    pub bound: bool,
}

/// The Hosts, as Emissary reads them: TLS only with a `tlsSecret`, its settings from
/// `tlsContext`, inline `tls`, or the TLSContext named `<host>-context`; a Host whose
/// TLSContext does not exist is reported and left out.
pub(super) fn hosts<'a>(
    hosts: impl Iterator<Item = &'a Resource>,
    tls_contexts: &HashMap<String, Resource>,
    secrets: &HashMap<String, &SecretInfo>,
    secrets_known: bool,
    now: Option<i64>,
    diags: &mut Vec<Diagnostic>,
) -> Vec<VHost> {
    let hosts: Vec<&Resource> = hosts.collect();
    let certificates = certificates(&hosts, secrets);
    let mut out: Vec<VHost> = Vec::new();
    // Where each hostname's Host is in `out`: a later Host with the same one is reported.
    let mut claimed: HashMap<String, usize> = HashMap::new();
    for r in hosts {
        let reader = Reader::new(r);
        let glob = reader.str("hostname").unwrap_or("*").to_ascii_lowercase();
        let selector = match_labels(r.field("mappingSelector").or_else(|| r.field("selector")));
        // The SNI is the hostname without a port; `*` takes any SNI.
        let sni = glob.rsplit_once(':').map_or(glob.as_str(), |(h, _)| h);
        let server_names = if sni == "*" {
            Vec::new()
        } else {
            vec![sni.to_string()]
        };
        let mut tls = None;
        let mut tls_context = None;
        let mut dropped = false;
        if r.field("tlsSecret").is_some() {
            if let Some(secret) = tls_secret(r) {
                let named = r
                    .field("tlsContext")
                    .and_then(|c| c.get("name"))
                    .and_then(Node::as_str);
                let implicit = format!("{}-context", r.id.name);
                if let Some(name) = named {
                    match tls_contexts.get(name) {
                        Some(c) => {
                            if context_fits(r, c, &glob, &secret, diags) {
                                tls =
                                    Some(server_tls_from_context(c, server_names.clone(), &secret));
                                tls_context = Some(name.to_string());
                            } else {
                                dropped = true;
                            }
                        }
                        None => {
                            diags.push(
                                Diagnostic::at(
                                    Code::UndefinedTlsContext,
                                    r.key_span("tlsContext"),
                                    format!(
                                        "Host `{}` names TLSContext `{name}`, which is not defined, so the Host is left out",
                                        r.id.name
                                    ),
                                )
                                .with_object(&r.id)
                                .with_field(r.path("tlsContext.name")),
                            );
                            dropped = true;
                        }
                    }
                } else if let Some(t) = r.field("tls") {
                    check_alpn(r, t.get("alpn_protocols"), "tls.alpn_protocols", diags);
                    tls = Some(server_tls(
                        |k| t.get(k),
                        &r.id.namespace,
                        server_names.clone(),
                        secret,
                    ));
                } else if let Some(c) = tls_contexts.get(&implicit) {
                    if context_fits(r, c, &glob, &secret, diags) {
                        tls = Some(server_tls_from_context(c, server_names.clone(), &secret));
                        tls_context = Some(implicit);
                    } else {
                        dropped = true;
                    }
                } else {
                    tls = Some(server_tls(|_| None, "", server_names.clone(), secret));
                }
            }
        } else if r.field("tlsContext").is_some() || r.field("tls").is_some() {
            let key = if r.field("tlsContext").is_some() {
                "tlsContext"
            } else {
                "tls"
            };
            diags.push(
                Diagnostic::at(
                    Code::UnsupportedField,
                    r.key_span(key),
                    format!(
                        "`{key}` of Host `{}` has no effect without `tlsSecret`: Emissary terminates TLS only for a Host with a `tlsSecret`",
                        r.id.name
                    ),
                )
                .with_object(&r.id)
                .with_field(r.path(key)),
            );
        }
        if dropped {
            continue;
        }
        if let Some(t) = &tls {
            // Without its CA a Host that asks for client certificates is not served over
            // TLS at all: never TLS without the client check.
            let ca_ok = t.ca_secret.as_deref().is_none_or(|ca| {
                usable_secret(r, ca, SecretUse::Ca, secrets, secrets_known, diags)
            });
            let usable = usable_secret(
                r,
                &t.secret,
                SecretUse::Certificate,
                secrets,
                secrets_known,
                diags,
            ) && secrets.get(&t.secret).is_none_or(|s| {
                let read;
                let cert = match certificates.get(&t.secret) {
                    Some(c) => c.as_ref(),
                    None => {
                        read = Certificate::read(s);
                        read.as_ref()
                    }
                };
                certificate_fits(r, &t.secret, s, cert, sni_of(&glob), now, diags)
            });
            if !usable || !ca_ok {
                tls = None;
            }
        }
        let action = r
            .field("requestPolicy")
            .and_then(|p| p.get("insecure"))
            .and_then(|i| i.get("action"))
            .and_then(|a| Some((a.as_str()?, a.span)));
        let insecure = match action {
            Some(("Route", _)) => InsecureAction::Route,
            Some(("Redirect", _)) => InsecureAction::Redirect,
            Some(("Reject", _)) => InsecureAction::Reject,
            Some((other, span)) => {
                diags.push(
                    Diagnostic::at(
                        Code::InvalidValue,
                        span,
                        format!(
                            "`insecure.action: {other}` must be one of Redirect, Route, Reject"
                        ),
                    )
                    .with_object(&r.id)
                    .with_field(r.path("requestPolicy.insecure.action")),
                );
                InsecureAction::Redirect
            }
            // Emissary's default, with or without TLS.
            None => InsecureAction::Redirect,
        };
        if let Some(existing) = claimed.get(&glob).map(|&i| &out[i]) {
            diags.push(
                Diagnostic::at(
                    Code::DuplicateHostname,
                    reader.span("hostname"),
                    format!(
                        "Host `{}` claims hostname `{glob}`, which another Host already claims",
                        r.id.name
                    ),
                )
                .with_object(&r.id)
                .with_related(
                    existing.vh.source.as_ref().map_or(r.span, |s| s.span),
                    "the other Host",
                ),
            );
            continue;
        }
        claimed.insert(glob.clone(), out.len());
        out.push(VHost {
            vh: VirtualHost {
                name: format!("host-{}-{}", r.id.namespace, r.id.name),
                domains: vec![glob.clone()],
                source: Some(source_ref(r)),
                insecure,
                routes: Vec::new().into(),
                cors: None,
            },
            glob,
            selector,
            namespace: r.id.namespace.to_string(),
            labels: r.labels.to_map(),
            tls,
            tls_context,
            bound: false,
        });
    }
    out
}

/// Emissary's checks of a Host's TLSContext: a context with its own `secret` must name the
/// Host's (else the Host is left out: "Secret info mismatch"); a context whose `hosts` do not
/// list the Host's hostname or name is still used, with a warning ("Hosts mismatch").
fn context_fits(
    host: &Resource,
    ctx: &Resource,
    glob: &str,
    host_secret: &str,
    diags: &mut Vec<Diagnostic>,
) -> bool {
    let reader = Reader::new(ctx);
    if let Some(own) = ctx.field("secret").and_then(Node::as_str) {
        let own = if own.contains('/') {
            own.to_string()
        } else {
            format!("{}/{own}", ctx.id.namespace)
        };
        if own != host_secret {
            diags.push(
                Diagnostic::at(
                    Code::TlsContextMismatch,
                    host.key_span("tlsSecret"),
                    format!(
                        "Host `{}` terminates TLS with Secret `{host_secret}` but its TLSContext `{}` names Secret `{own}`, so the Host is left out (as in Emissary)",
                        host.id.name, ctx.id.name
                    ),
                )
                .with_object(&host.id)
                .with_related(ctx.key_span("secret"), "the TLSContext's Secret"),
            );
            return false;
        }
    }
    let hosts = reader.str_list("hosts");
    if !hosts.is_empty() && !hosts.iter().any(|h| h == glob || *h == host.id.name) {
        diags.push(
            Diagnostic::at(
                Code::TlsContextMismatch,
                ctx.key_span("hosts"),
                format!(
                    "TLSContext `{}` lists `hosts` {} without `{glob}`, the hostname of Host `{}` that uses it; Emissary uses it all the same",
                    ctx.id.name,
                    hosts.iter().map(|h| format!("`{h}`")).collect::<Vec<_>>().join(", "),
                    host.id.name
                ),
            )
            .with_object(&ctx.id)
            .with_related(host.span, "the Host"),
        );
    }
    true
}

/// What a Host needs of a Secret.
#[derive(Clone, Copy, PartialEq, Eq)]
enum SecretUse {
    Certificate,
    Ca,
}

/// `name` as `namespace/name`, the namespace defaulting to `ns`.
fn namespaced(name: &str, ns: &str) -> String {
    if name.contains('/') {
        name.to_string()
    } else {
        format!("{ns}/{name}")
    }
}

/// Whether the Secret a Host terminates TLS with can be served: one that is not among the
/// manifests is reported (and, when every Secret is known, its TLS left out: Envoy would
/// keep the whole listener waiting); one without a certificate or key is an error and its
/// TLS left out. Everything else of the Host keeps flowing.
fn usable_secret(
    r: &Resource,
    name: &str,
    what: SecretUse,
    secrets: &HashMap<String, &SecretInfo>,
    secrets_known: bool,
    diags: &mut Vec<Diagnostic>,
) -> bool {
    let span = r.key_span("tlsSecret");
    let Some(s) = secrets.get(name) else {
        let message = if secrets_known {
            format!("Secret `{name}` of Host `{}` does not exist, so the Host's TLS is left out (its cleartext routes keep flowing)", r.id.name)
        } else {
            format!(
                "Secret `{name}` of Host `{}` is not among the given manifests",
                r.id.name
            )
        };
        diags.push(
            Diagnostic::at(Code::SecretNotFound, span, message)
                .with_object(&r.id)
                .with_field(r.path("tlsSecret")),
        );
        return !secrets_known;
    };
    let pem = |b: &Option<Vec<u8>>, marker: &str| {
        b.as_deref()
            .is_some_and(|b| std::str::from_utf8(b).is_ok_and(|t| t.contains(marker)))
    };
    // Emissary reads these types and ignores any other.
    let readable = ["kubernetes.io/tls", "Opaque", "istio.io/key-and-cert"];
    let problem = if !readable.contains(&s.kind.as_str()) {
        Some("its type is not one Emissary reads (`kubernetes.io/tls`, `Opaque`, `istio.io/key-and-cert`)")
    } else if what == SecretUse::Ca {
        // Emissary reads the CA from `tls.crt`; `ca.crt` is taken too.
        (!pem(&s.cert_chain, "-----BEGIN CERTIFICATE-----")
            && !pem(&s.ca, "-----BEGIN CERTIFICATE-----"))
        .then_some("neither `tls.crt` nor `ca.crt` holds a PEM CA certificate")
    } else if !pem(&s.cert_chain, "-----BEGIN CERTIFICATE-----") {
        Some("`tls.crt` holds no PEM certificate")
    } else if !pem(&s.private_key, "PRIVATE KEY-----") {
        Some("`tls.key` holds no PEM private key")
    } else {
        None
    };
    if let Some(problem) = problem {
        diags.push(
            Diagnostic::at(
                Code::SecretUnusable,
                span,
                format!(
                    "Secret `{name}` of Host `{}` cannot serve TLS: {problem}; the Host's TLS is left out",
                    r.id.name
                ),
            )
            .with_object(&r.id)
            .with_field(r.path("tlsSecret"))
            .with_related(s.span, "the Secret"),
        );
        return false;
    }
    true
}

/// The `matchLabels` of a label selector (none: an empty map, which every object matches).
pub(super) fn match_labels(selector: Option<&Node>) -> BTreeMap<String, String> {
    selector
        .and_then(|s| s.get("matchLabels"))
        .and_then(Node::as_map)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.scalar()?.to_string(), v.scalar()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// A list of strings (a missing field is empty).
fn str_list(n: Option<&Node>) -> Vec<String> {
    n.and_then(Node::as_seq)
        .unwrap_or_default()
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect()
}

/// The Secret a Host's `tlsSecret` names, as `namespace/name` (the Host's namespace unless
/// it says another).
fn tls_secret(r: &Resource) -> Option<String> {
    let secret = r.field("tlsSecret")?;
    let name = secret.get("name").and_then(Node::as_str)?;
    let ns = secret
        .get("namespace")
        .and_then(Node::as_str)
        .unwrap_or(&r.id.namespace);
    Some(format!("{ns}/{name}"))
}

/// A hostname glob without its port: the SNI clients send.
fn sni_of(glob: &str) -> &str {
    glob.rsplit_once(':').map_or(glob, |(h, _)| h)
}

/// What the checks read of a Secret's certificate.
struct Certificate {
    /// `notAfter`, in seconds since the epoch, and as it is shown.
    not_after: i64,
    not_after_shown: String,
    /// The DNS names of its subject alternative names, lowercase, or when it has none the
    /// common names of its subject.
    names: Vec<String>,
}

impl Certificate {
    /// `tls.crt` of `s`; `None` when it does not parse as an X.509 certificate.
    fn read(s: &SecretInfo) -> Option<Certificate> {
        use x509_parser::extensions::GeneralName;
        let pem = s.cert_chain.as_deref().unwrap_or_default();
        let parsed = x509_parser::pem::parse_x509_pem(pem)
            .ok()
            .map(|(_, p)| p)
            .filter(|p| p.label == "CERTIFICATE")?;
        let cert = parsed.parse_x509().ok()?;
        let mut names: Vec<String> = match cert.subject_alternative_name() {
            Ok(Some(san)) => san
                .value
                .general_names
                .iter()
                .filter_map(|g| match g {
                    GeneralName::DNSName(n) => Some(n.to_ascii_lowercase()),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        if names.is_empty() {
            names = cert
                .subject()
                .iter_common_name()
                .filter_map(|cn| cn.as_str().ok().map(str::to_ascii_lowercase))
                .collect();
        }
        Some(Certificate {
            not_after: cert.validity().not_after.timestamp(),
            not_after_shown: cert.validity().not_after.to_string(),
            names,
        })
    }
}

/// The certificates of the Secrets the Hosts name in `tlsSecret`, read on all cores (a
/// certificate takes some microseconds to parse; a Host per hostname, each with its own
/// Secret, is common), by `namespace/name`.
fn certificates(
    hosts: &[&Resource],
    secrets: &HashMap<String, &SecretInfo>,
) -> HashMap<String, Option<Certificate>> {
    let mut named: Vec<(String, &SecretInfo)> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    for r in hosts {
        let Some(key) = tls_secret(r) else {
            continue;
        };
        if let Some(s) = secrets.get(&key) {
            if seen.insert(key.clone()) {
                named.push((key, s));
            }
        }
    }
    let run = crate::par::run_len(named.len(), PARALLEL_MIN_CERTIFICATES);
    let read = crate::par::runs(&named, run, |run| {
        run.iter()
            .map(|(_, s)| Certificate::read(s))
            .collect::<Vec<_>>()
    });
    named
        .into_iter()
        .map(|(key, _)| key)
        .zip(read.into_iter().flatten())
        .collect()
}

/// Fewer certificates than this are read on one thread.
const PARALLEL_MIN_CERTIFICATES: usize = 64;

/// The certificate of a Host's Secret (`cert`, `None` when it does not parse), read offline:
/// one that does not parse is unusable (its TLS left out); one that has expired (when the
/// caller gives the time) or whose names do not cover the Host's hostname is served, with a
/// warning.
fn certificate_fits(
    r: &Resource,
    name: &str,
    s: &SecretInfo,
    cert: Option<&Certificate>,
    sni: &str,
    now: Option<i64>,
    diags: &mut Vec<Diagnostic>,
) -> bool {
    let span = r.key_span("tlsSecret");
    let Some(cert) = cert else {
        diags.push(
            Diagnostic::at(
                Code::SecretUnusable,
                span,
                format!(
                    "Secret `{name}` of Host `{}` cannot serve TLS: `tls.crt` does not parse as an X.509 certificate; the Host's TLS is left out",
                    r.id.name
                ),
            )
            .with_object(&r.id)
            .with_field(r.path("tlsSecret"))
            .with_related(s.span, "the Secret"),
        );
        return false;
    };
    let warn = |code: Code, message: String, diags: &mut Vec<Diagnostic>| {
        diags.push(
            Diagnostic::at(code, span, message)
                .with_object(&r.id)
                .with_field(r.path("tlsSecret"))
                .with_related(s.span, "the Secret"),
        );
    };
    if let Some(now) = now {
        if cert.not_after < now {
            warn(
                Code::CertificateExpired,
                format!(
                    "the certificate in Secret `{name}` of Host `{}` expired on {}: clients will refuse it",
                    r.id.name, cert.not_after_shown
                ),
                diags,
            );
        }
    }
    if sni != "*" {
        let names = &cert.names;
        // A wildcard name covers one label: `*.example.com` covers `a.example.com`.
        let covers = |n: &str| {
            n == sni
                || n.strip_prefix("*.").is_some_and(|rest| {
                    sni.split_once('.').is_some_and(|(label, tail)| {
                        tail == rest && label != "*" && !label.is_empty()
                    })
                })
        };
        if !names.iter().any(|n| covers(n)) {
            let listed = if names.is_empty() {
                "no name".to_string()
            } else {
                names
                    .iter()
                    .map(|n| format!("`{n}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            warn(
                Code::CertificateNameMismatch,
                format!(
                    "the certificate in Secret `{name}` names {listed}, not `{sni}`, the hostname of Host `{}`: clients that check names will refuse it",
                    r.id.name
                ),
                diags,
            );
        }
    }
    true
}

pub(super) fn server_tls_from_context(
    c: &Resource,
    server_names: Vec<String>,
    secret: &str,
) -> ServerTls {
    server_tls(
        |k| c.field(k),
        &c.id.namespace,
        server_names,
        namespaced(secret, &c.id.namespace),
    )
}

/// A Host's TLS termination with the settings `field` reads (a TLSContext's fields, a
/// Host's inline `tls`, or none); a `ca_secret` without a namespace is in `namespace`.
fn server_tls<'n>(
    field: impl Fn(&str) -> Option<&'n Node>,
    namespace: &str,
    server_names: Vec<String>,
    secret: String,
) -> ServerTls {
    let s = |k: &str| field(k).and_then(Node::as_str).map(str::to_string);
    ServerTls {
        server_names: server_names.into_iter().filter(|n| n != "*").collect(),
        secret,
        ca_secret: s("ca_secret").map(|ca| namespaced(&ca, namespace)),
        cert_required: field("cert_required").and_then(Node::as_bool) == Some(true),
        cipher_suites: str_list(field("cipher_suites")),
        ecdh_curves: str_list(field("ecdh_curves")),
        min_tls_version: s("min_tls_version"),
        max_tls_version: s("max_tls_version"),
        // Emissary writes the string as one entry, not split (`V3TLSContext`); Envoy joins
        // the entries with commas and splits at commas only, so a blank stays in the name.
        alpn_protocols: s("alpn_protocols").into_iter().collect(),
    }
}

/// The virtual hosts of a configuration, with their exact hostnames indexed: a Mapping on
/// an exact hostname can only join the Hosts with the same name (in any case) and the Hosts
/// whose glob has a `*` at one end, so attaching it tests those and not every Host (one
/// Host per 10 Mappings made attaching quadratic).
#[derive(Clone, Debug, Default)]
pub(crate) struct VHosts {
    all: Vec<VHost>,
    /// Hosts with an exact glob, by the glob in lower case.
    exact: HashMap<String, Vec<usize>>,
    /// Hosts whose glob starts or ends with `*`.
    wild: Vec<usize>,
}

impl VHosts {
    pub fn new(all: Vec<VHost>) -> VHosts {
        let mut exact: HashMap<String, Vec<usize>> = HashMap::default();
        let mut wild = Vec::new();
        for (i, v) in all.iter().enumerate() {
            if is_exact(&v.glob) {
                exact
                    .entry(v.glob.to_ascii_lowercase())
                    .or_default()
                    .push(i);
            } else {
                wild.push(i);
            }
        }
        VHosts { all, exact, wild }
    }

    /// The Hosts whose glob may intersect `glob` ([`globs_intersect`] decides), in order.
    pub fn candidates(&self, glob: &str) -> Vec<usize> {
        if !is_exact(glob) {
            return (0..self.all.len()).collect();
        }
        let mut out = self.wild.clone();
        if let Some(same) = self.exact.get(&glob.to_ascii_lowercase()) {
            out.extend_from_slice(same);
            out.sort_unstable();
        }
        out
    }
}

impl std::ops::Deref for VHosts {
    type Target = Vec<VHost>;
    fn deref(&self) -> &Vec<VHost> {
        &self.all
    }
}

/// A glob without a `*` at either end: [`globs_intersect`] compares it with another such
/// glob by equality.
fn is_exact(glob: &str) -> bool {
    !glob.starts_with('*') && !glob.ends_with('*')
}

/// AMB424: an `alpn_protocols` string with blanks around a comma. Emissary hands the string
/// to Envoy whole, and Envoy splits it at commas only, so `"h2, http/1.1"` offers `h2` and
/// ` http/1.1` (with the blank), a protocol no client asks for. `owner` is the TLSContext or
/// Host that holds `node`, `path` the field's path in it.
pub(super) fn check_alpn(
    owner: &Resource,
    node: Option<&Node>,
    path: &str,
    diags: &mut Vec<Diagnostic>,
) {
    let Some((value, span)) = node.and_then(|n| Some((n.as_str()?, n.span))) else {
        return;
    };
    let blank: Vec<&str> = value
        .split(',')
        .filter(|p| p.trim() != *p && !p.trim().is_empty())
        .collect();
    if blank.is_empty() {
        return;
    }
    diags.push(
        Diagnostic::at(
            Code::AlpnBlank,
            span,
            format!(
                "`alpn_protocols: {value:?}` has blanks around a comma: Envoy splits the list at commas only and offers {}, blanks included, which no client asks for",
                blank.iter().map(|p| format!("{p:?}")).collect::<Vec<_>>().join(", ")
            ),
        )
        .with_object(&owner.id)
        .with_field(owner.path(path)),
    );
}

/// Whether two DNS globs (exact, `*.suffix`, `prefix*`, `*`) can match a common name.
pub fn globs_intersect(a: &str, b: &str) -> bool {
    if a == "*" || b == "*" {
        return true;
    }
    match (
        a.strip_prefix('*'),
        a.strip_suffix('*'),
        b.strip_prefix('*'),
        b.strip_suffix('*'),
    ) {
        (Some(sa), _, Some(sb), _) => sa.ends_with(sb) || sb.ends_with(sa),
        (_, Some(pa), _, Some(pb)) => pa.starts_with(pb) || pb.starts_with(pa),
        (Some(_), _, _, Some(_)) | (_, Some(_), Some(_), _) => true,
        (Some(s), _, None, None) => b.ends_with(s),
        (_, Some(p), None, None) => b.starts_with(p),
        (None, None, Some(s), _) => a.ends_with(s),
        (None, None, _, Some(p)) => a.starts_with(p),
        (None, None, None, None) => a.eq_ignore_ascii_case(b),
    }
}

//! Seeded configurations and boundary requests for the tracer-against-Envoy agreement test.
//!
//! [`config`] draws a configuration: Listeners (or the default ones), Hosts with and without
//! TLS and every insecure action, and Mappings with prefixes, exact paths and regexes, case,
//! headers, query parameters, methods, precedence, canary weights, rewrites, host rewrites and
//! redirects, whose services are the loopback echo backends of [`Env`]. [`requests`] draws
//! requests near each Mapping's boundaries: the prefix with and without a trailing part, case
//! flipped, dot segments, percent escapes, a header present, absent or with another value, a
//! query parameter present, absent or escaped, the wrong method, another Host, a Host with a
//! port, TLS with the SNI matching the Host or not. [`send`] sends one exactly as drawn (the
//! request line is written by hand, so nothing canonicalises the path on the way) and reports
//! what came back. Everything is a pure function of the seed, so a failure reproduces.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::backend::Echo;

/// SplitMix64: small, fast, and the same everywhere.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }

    /// One element of a non-empty slice.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// Fisher–Yates.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }
}

/// What a configuration is rendered against: the three ports Listeners may take (the first
/// two are the stack's HTTP and HTTPS ports, which the default listeners use) and the
/// backends' names and `host:port` addresses.
#[derive(Clone, Debug)]
pub struct Env {
    pub ports: [u16; 3],
    pub backends: Vec<(String, String)>,
}

/// Host names Hosts and Mappings use; the test makes a certificate for each but `*`.
pub const HOSTNAMES: [&str; 4] = ["a.example.com", "b.example.com", "*.example.org", "*"];

/// The name of the Secret holding the certificate of a Host name.
pub fn secret_name(hostname: &str) -> String {
    format!(
        "tls-{}",
        hostname
            .replace("*.", "wild-")
            .replace('.', "-")
            .replace('*', "any")
    )
}

const SEGMENTS: [&str; 7] = ["a", "b", "app", "shop", "users", "api", "v1"];

/// Regexes for `prefix_regex`, each with paths on both sides of it.
const REGEXES: [(&str, &[&str]); 6] = [
    (
        "/shop(/.*)?",
        &[
            "/shop",
            "/shop/",
            "/shop/x/y",
            "/shopx",
            "/SHOP/x",
            "/shop/x?y=1",
        ],
    ),
    (
        "/a/[0-9]+",
        &["/a/123", "/a/12x", "/a/", "/A/1", "/a/7/", "/a/%31"],
    ),
    (
        "/users/.*",
        &["/users/x", "/users/", "/users", "/USERS/x", "/users/x/../y"],
    ),
    (
        "/app/[^/]*",
        &["/app/x", "/app", "/app/", "/App/x", "/app/x/y"],
    ),
    (
        "/api/v[12]/.*",
        &[
            "/api/v1/x",
            "/api/v3/x",
            "/api/v2/",
            "/API/v1/x",
            "/api/v%31/x",
        ],
    ),
    (
        "/b/[a-z]+/?",
        &["/b/abc", "/b/abc/", "/b/ABC", "/b/abc/d", "/b/a%62c"],
    ),
];

/// Characters a path may carry that are neither unreserved nor `/`, `?`, `#` or `%`.
const SPECIALS: [&str; 25] = [
    "!", "\"", "$", "&", "'", "(", ")", "*", "+", ",", ":", ";", "=", "@", "[", "]", "<", ">", "{",
    "}", "|", "^", "`", "\\", "\u{e9}",
];

const REGEX_REWRITES: [(&str, &str); 4] = [
    ("^/([a-z]+)/(.*)$", "/r/\\2"),
    ("/a/([0-9]+)", "/n/\\1"),
    ("^/(.*)$", "/re/\\1"),
    ("[aeiou]", "_"),
];

const REDIRECT_HOSTS: [&str; 3] = [
    "redir.example.net",
    "other.example.net:8443",
    "b.example.com",
];

/// A Listener resource.
#[derive(Clone, Debug, Serialize)]
pub struct ListenerSpec {
    pub name: String,
    /// Index into [`Env::ports`].
    pub slot: usize,
    pub protocol: &'static str,
    pub security: &'static str,
    pub l7_depth: u32,
}

/// A Host resource.
#[derive(Clone, Debug, Serialize)]
pub struct HostSpec {
    pub name: String,
    pub hostname: String,
    pub tls: bool,
    pub action: Option<&'static str>,
}

/// How a Mapping's path is matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum PathKind {
    Prefix,
    Exact,
    Regex,
}

/// What a Mapping does with what it matches.
#[derive(Clone, Debug, Serialize)]
pub enum Does {
    Forward {
        /// Index into [`Env::backends`].
        backend: usize,
        rewrite: Option<String>,
        regex_rewrite: Option<(String, String)>,
        host_rewrite: Option<String>,
    },
    Redirect {
        to: String,
        path_redirect: Option<String>,
        prefix_redirect: Option<String>,
        regex_redirect: Option<(String, String)>,
        code: Option<u16>,
    },
}

/// A Mapping resource.
#[derive(Clone, Debug, Serialize)]
pub struct MappingSpec {
    pub name: String,
    pub prefix: String,
    pub kind: PathKind,
    pub case_sensitive: Option<bool>,
    pub hostname: Option<String>,
    /// The `host` field: an exact `:authority` condition.
    pub host: Option<String>,
    /// Exact values; `None` means "present".
    pub headers: Vec<(String, Option<String>)>,
    pub regex_headers: Vec<(String, String)>,
    pub query: Vec<(String, Option<String>)>,
    pub regex_query: Vec<(String, String)>,
    pub method: Option<String>,
    pub precedence: Option<i32>,
    pub weight: Option<u32>,
    pub does: Does,
}

/// One generated configuration.
#[derive(Clone, Debug, Serialize)]
pub struct Config {
    /// Empty: the default listeners.
    pub listeners: Vec<ListenerSpec>,
    pub hosts: Vec<HostSpec>,
    pub mappings: Vec<MappingSpec>,
}

fn flip_case(s: &str, rng: &mut Rng) -> String {
    let letters: Vec<usize> = s
        .char_indices()
        .filter(|(_, c)| c.is_ascii_alphabetic())
        .map(|(i, _)| i)
        .collect();
    if letters.is_empty() {
        return s.to_owned();
    }
    let i = *rng.pick(&letters);
    let mut out = s.to_owned();
    let c = s.as_bytes()[i] as char;
    let flipped = if c.is_ascii_lowercase() {
        c.to_ascii_uppercase()
    } else {
        c.to_ascii_lowercase()
    };
    out.replace_range(i..=i, &flipped.to_string());
    out
}

fn prefix(rng: &mut Rng) -> String {
    let seg = *rng.pick(&SEGMENTS);
    let r = rng.below(100);
    let p = if r < 5 {
        "/".to_owned()
    } else if r < 45 {
        format!("/{seg}/")
    } else if r < 65 {
        format!("/{seg}")
    } else {
        format!("/{seg}/{}{}", rng.pick(&SEGMENTS), rng.pick(&["/", ""]))
    };
    if rng.chance(0.08) {
        flip_case(&p, rng)
    } else {
        p
    }
}

/// Draws configuration `index` of `seed`.
pub fn config(seed: u64, index: usize, backends: usize) -> Config {
    let mut rng = Rng::new(seed ^ (index as u64).wrapping_mul(0xA076_1D64_78BD_642F));
    let mut listeners = Vec::new();
    if rng.chance(0.7) {
        let n = 1 + rng.below(3);
        for slot in 0..n {
            let protocol = if slot == 1 || rng.chance(0.5) {
                "HTTPS"
            } else {
                "HTTP"
            };
            listeners.push(ListenerSpec {
                name: format!("l{slot}"),
                slot,
                protocol,
                security: ["XFP", "XFP", "SECURE", "INSECURE"][rng.below(4)],
                l7_depth: if rng.chance(0.2) { 1 } else { 0 },
            });
        }
    }
    let mut hosts = Vec::new();
    let mut pool: Vec<&str> = HOSTNAMES[..3].to_vec();
    rng.shuffle(&mut pool);
    let mut names: Vec<&str> = pool[..1 + rng.below(3)].to_vec();
    if rng.chance(0.2) {
        names.push("*");
    }
    for (i, h) in names.iter().enumerate() {
        hosts.push(HostSpec {
            name: format!("h{i}"),
            hostname: (*h).to_owned(),
            tls: *h != "*" && rng.chance(0.6),
            action: match rng.below(5) {
                0 => None,
                1 => Some("Route"),
                2 => Some("Redirect"),
                3 => Some("Reject"),
                _ => Some(*rng.pick(&["Route", "Redirect"])),
            },
        });
    }
    let host_names: Vec<String> = hosts.iter().map(|h| h.hostname.clone()).collect();
    let mut mappings: Vec<MappingSpec> = Vec::new();
    let n = 2 + rng.below(8);
    let mut next_backend = rng.below(backends);
    for i in 0..n {
        let canary_of = if !mappings.is_empty() && rng.chance(0.3) {
            Some(mappings[rng.below(mappings.len())].clone())
        } else {
            None
        };
        let mut m = MappingSpec {
            name: format!("m{i}"),
            prefix: String::new(),
            kind: PathKind::Prefix,
            case_sensitive: None,
            hostname: None,
            host: None,
            headers: Vec::new(),
            regex_headers: Vec::new(),
            query: Vec::new(),
            regex_query: Vec::new(),
            method: None,
            precedence: None,
            weight: None,
            does: Does::Forward {
                backend: 0,
                rewrite: None,
                regex_rewrite: None,
                host_rewrite: None,
            },
        };
        if let Some(base) = &canary_of {
            // A canary: the same match, another service, often a weight.
            m.prefix = base.prefix.clone();
            m.kind = base.kind;
            m.case_sensitive = base.case_sensitive;
            m.hostname = base.hostname.clone();
            m.host = base.host.clone();
            m.headers = base.headers.clone();
            m.regex_headers = base.regex_headers.clone();
            m.query = base.query.clone();
            m.regex_query = base.regex_query.clone();
            m.method = base.method.clone();
            m.precedence = base.precedence;
            if rng.chance(0.1) {
                // Nearly the same: one condition fewer.
                m.headers.clear();
            }
            if rng.chance(0.85) {
                m.weight = Some(*rng.pick(&[10, 25, 30, 50, 50, 90]));
            }
        } else {
            let r = rng.below(100);
            if r < 15 {
                m.prefix = rng.pick(&REGEXES).0.to_owned();
                m.kind = PathKind::Regex;
            } else {
                m.prefix = prefix(&mut rng);
                if r < 27 {
                    m.kind = PathKind::Exact;
                }
            }
            if rng.chance(0.15) {
                m.case_sensitive = Some(false);
            } else if rng.chance(0.05) {
                m.case_sensitive = Some(true);
            }
            if rng.chance(0.2) {
                m.headers.push((
                    "x-env".into(),
                    Some((*rng.pick(&["canary", "prod"])).into()),
                ));
            }
            if rng.chance(0.06) {
                m.headers.push(("x-flag".into(), None));
            }
            if rng.chance(0.1) {
                m.regex_headers
                    .push(("x-user".into(), (*rng.pick(&["^[0-9]+$", "b.*"])).into()));
            }
            if rng.chance(0.15) {
                m.query.push(("debug".into(), Some("1".into())));
            }
            if rng.chance(0.05) {
                m.query.push(("trace".into(), None));
            }
            if rng.chance(0.06) {
                m.regex_query.push(("page".into(), "[0-9]+".into()));
            }
            if rng.chance(0.15) {
                m.method = Some((*rng.pick(&["GET", "POST", "PUT"])).into());
            }
            if rng.chance(0.15) {
                m.precedence = Some(*rng.pick(&[1, -1, 5, 2]));
            }
            let r = rng.below(100);
            if r < 35 {
                m.hostname = Some("*".into());
            } else if r < 70 {
                m.hostname = Some(rng.pick(&host_names).clone());
            } else if r < 85 {
                m.hostname =
                    Some((*rng.pick(&["*.example.com", "*.example.org", "q.example.org"])).into());
            } else if r < 95 {
                m.hostname = Some("*".into());
                m.host = Some((*rng.pick(&["a.example.com", "q.example.org"])).into());
            }
            // else: neither; a v3alpha1 Mapping without hostname attaches to every Host.
        }
        if canary_of.is_none() && rng.chance(0.1) {
            let r = rng.below(100);
            m.does = Does::Redirect {
                to: (*rng.pick(&REDIRECT_HOSTS)).into(),
                path_redirect: (r < 30).then(|| (*rng.pick(&["/moved", "/moved/here"])).into()),
                prefix_redirect: (30..60)
                    .contains(&r)
                    .then(|| (*rng.pick(&["/new/", "/new", "/"])).into()),
                regex_redirect: (60..75).contains(&r).then(|| {
                    let (p, s) = *rng.pick(&REGEX_REWRITES);
                    (p.to_owned(), s.to_owned())
                }),
                code: rng
                    .chance(0.4)
                    .then(|| *rng.pick(&[301, 302, 303, 307, 308])),
            };
        } else {
            next_backend = (next_backend + 1) % backends;
            let r = rng.below(100);
            m.does = Does::Forward {
                backend: next_backend,
                rewrite: if r < 45 {
                    None
                } else if r < 88 {
                    Some((*rng.pick(&["", "/", "/v2/", "/x"])).into())
                } else {
                    None
                },
                regex_rewrite: (r >= 88).then(|| {
                    let (p, s) = *rng.pick(&REGEX_REWRITES);
                    (p.to_owned(), s.to_owned())
                }),
                host_rewrite: rng
                    .chance(0.1)
                    .then(|| (*rng.pick(&["rewritten.example.net", "up.example.net:81"])).into()),
            };
        }
        mappings.push(m);
    }
    Config {
        listeners,
        hosts,
        mappings,
    }
}

fn q(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

fn q_map(entries: &[(String, Option<String>)]) -> String {
    let parts: Vec<String> = entries
        .iter()
        .map(|(k, v)| format!("{}: {}", q(k), v.as_deref().map_or("true".to_owned(), q)))
        .collect();
    format!("{{{}}}", parts.join(", "))
}

fn q_rmap(entries: &[(String, String)]) -> String {
    let parts: Vec<String> = entries
        .iter()
        .map(|(k, v)| format!("{}: {}", q(k), q(v)))
        .collect();
    format!("{{{}}}", parts.join(", "))
}

impl Config {
    /// The manifests (Listeners, Hosts, Mappings; the Secrets are the caller's).
    pub fn yaml(&self, env: &Env) -> String {
        let mut out = String::new();
        for l in &self.listeners {
            let _ = write!(
                out,
                "---\napiVersion: getambassador.io/v3alpha1\nkind: Listener\nmetadata: {{name: {}, namespace: default}}\nspec:\n  port: {}\n  protocol: {}\n  securityModel: {}\n",
                l.name, env.ports[l.slot], l.protocol, l.security
            );
            if l.l7_depth > 0 {
                let _ = writeln!(out, "  l7Depth: {}", l.l7_depth);
            }
            out.push_str("  hostBinding: {namespace: {from: ALL}}\n");
        }
        for h in &self.hosts {
            let _ = write!(
                out,
                "---\napiVersion: getambassador.io/v3alpha1\nkind: Host\nmetadata: {{name: {}, namespace: default}}\nspec:\n  hostname: {}\n",
                h.name,
                q(&h.hostname)
            );
            if h.tls {
                let _ = writeln!(out, "  tlsSecret: {{name: {}}}", secret_name(&h.hostname));
            }
            if let Some(a) = h.action {
                let _ = writeln!(out, "  requestPolicy: {{insecure: {{action: {a}}}}}");
            }
        }
        for m in &self.mappings {
            let _ = write!(
                out,
                "---\napiVersion: getambassador.io/v3alpha1\nkind: Mapping\nmetadata: {{name: {}, namespace: default}}\nspec:\n  prefix: {}\n",
                m.name,
                q(&m.prefix)
            );
            match m.kind {
                PathKind::Prefix => {}
                PathKind::Exact => out.push_str("  prefix_exact: true\n"),
                PathKind::Regex => out.push_str("  prefix_regex: true\n"),
            }
            if let Some(c) = m.case_sensitive {
                let _ = writeln!(out, "  case_sensitive: {c}");
            }
            if let Some(h) = &m.hostname {
                let _ = writeln!(out, "  hostname: {}", q(h));
            }
            if let Some(h) = &m.host {
                let _ = writeln!(out, "  host: {}", q(h));
            }
            if !m.headers.is_empty() {
                let _ = writeln!(out, "  headers: {}", q_map(&m.headers));
            }
            if !m.regex_headers.is_empty() {
                let _ = writeln!(out, "  regex_headers: {}", q_rmap(&m.regex_headers));
            }
            if !m.query.is_empty() {
                let _ = writeln!(out, "  query_parameters: {}", q_map(&m.query));
            }
            if !m.regex_query.is_empty() {
                let _ = writeln!(out, "  regex_query_parameters: {}", q_rmap(&m.regex_query));
            }
            if let Some(v) = &m.method {
                let _ = writeln!(out, "  method: {v}");
            }
            if let Some(v) = m.precedence {
                let _ = writeln!(out, "  precedence: {v}");
            }
            if let Some(v) = m.weight {
                let _ = writeln!(out, "  weight: {v}");
            }
            match &m.does {
                Does::Forward {
                    backend,
                    rewrite,
                    regex_rewrite,
                    host_rewrite,
                } => {
                    let _ = writeln!(out, "  service: {}", q(&env.backends[*backend].1));
                    if let Some(r) = rewrite {
                        let _ = writeln!(out, "  rewrite: {}", q(r));
                    }
                    if let Some((p, s)) = regex_rewrite {
                        let _ = writeln!(
                            out,
                            "  regex_rewrite: {{pattern: {}, substitution: {}}}",
                            q(p),
                            q(s)
                        );
                    }
                    if let Some(h) = host_rewrite {
                        let _ = writeln!(out, "  host_rewrite: {}", q(h));
                    }
                }
                Does::Redirect {
                    to,
                    path_redirect,
                    prefix_redirect,
                    regex_redirect,
                    code,
                } => {
                    let _ = writeln!(out, "  service: {}\n  host_redirect: true", q(to));
                    if let Some(p) = path_redirect {
                        let _ = writeln!(out, "  path_redirect: {}", q(p));
                    }
                    if let Some(p) = prefix_redirect {
                        let _ = writeln!(out, "  prefix_redirect: {}", q(p));
                    }
                    if let Some((p, s)) = regex_redirect {
                        let _ = writeln!(
                            out,
                            "  regex_redirect: {{pattern: {}, substitution: {}}}",
                            q(p),
                            q(s)
                        );
                    }
                    if let Some(c) = code {
                        let _ = writeln!(out, "  redirect_response_code: {c}");
                    }
                }
            }
        }
        out
    }

    /// Where requests may enter: `(port, serves TLS)`. The default listeners are the HTTP
    /// port, and the HTTPS port when a Host terminates TLS; the third port is listened on
    /// only by a Listener there.
    pub fn entrances(&self, env: &Env) -> Vec<(u16, bool)> {
        if self.listeners.is_empty() {
            let tls = self.hosts.iter().any(|h| h.tls);
            return vec![
                (env.ports[0], false),
                (env.ports[1], tls),
                (env.ports[2], false),
            ];
        }
        (0..3)
            .map(|slot| {
                let l = self.listeners.iter().find(|l| l.slot == slot);
                (env.ports[slot], l.is_some_and(|l| l.protocol == "HTTPS"))
            })
            .collect()
    }
}

/// One request as sent.
#[derive(Clone, Debug, Serialize)]
pub struct Probe {
    pub port: u16,
    pub tls: bool,
    /// The SNI (TLS only); `None` sends none.
    pub sni: Option<String>,
    pub method: String,
    /// The `Host` header.
    pub authority: String,
    /// The request target, sent as is.
    pub path: String,
    pub headers: Vec<(String, String)>,
}

fn host_variants(hostname: Option<&str>, rng: &mut Rng) -> Vec<String> {
    let base = match hostname {
        None | Some("*") => (*rng.pick(&[
            "a.example.com",
            "b.example.com",
            "q.example.org",
            "nohost.example.net",
        ]))
        .to_owned(),
        Some(h) if h.starts_with("*.") => format!("q{}", &h[1..]),
        Some(h) => h.to_owned(),
    };
    let flipped = flip_case(&base, rng);
    let upper = base.to_ascii_uppercase();
    vec![base.clone(), base, flipped, upper]
}

fn path_variants(m: &MappingSpec, rng: &mut Rng) -> Vec<String> {
    if m.kind == PathKind::Regex {
        let mut out: Vec<String> = REGEXES
            .iter()
            .find(|(re, _)| *re == m.prefix)
            .map(|(_, paths)| paths.iter().map(|p| (*p).to_owned()).collect())
            .unwrap_or_else(|| vec!["/x".to_owned()]);
        let first = out[0].clone();
        out.push(format!("/.{first}"));
        out.push(format!("/{first}"));
        out.push(format!("/zz/..{first}"));
        return out;
    }
    let p = m.prefix.as_str();
    let stem = p.trim_end_matches('/');
    let seg = *rng.pick(&SEGMENTS);
    let mut out = vec![
        p.to_owned(),
        format!("{p}x"),
        format!("{p}x/y"),
        stem.to_owned(),
        format!("{stem}/"),
        format!("{stem}x"),
        flip_case(&format!("{p}q"), rng),
        format!("/.{p}"),
        format!("{p}./q"),
        format!("{p}%2e%2e/{seg}/z"),
        format!("/zz/%2e%2e{p}k"),
        format!("/zz/..{p}k"),
        format!("{p}q/../r"),
        format!("/{}", p.trim_start_matches('/').to_ascii_uppercase()),
        format!("{p}%41q"),
        format!("{p}%2fq"),
        format!("{p}%7eq%20r"),
        format!("//{}", p.trim_start_matches('/')),
        format!("{p}q#frag"),
        format!("{p}?x=1&debug=1"),
        escape_first_letter(p),
        format!("{p}q\\r"),
        format!("{p}{{q}}|^`"),
        format!("{p}q{}r", rng.pick(&SPECIALS)),
        format!("{p}{}", rng.pick(&SPECIALS)),
        format!("{p}%{:02X}q", rng.pick(&SPECIALS).as_bytes()[0]),
        format!("{p}q;r=1"),
        format!("{p}%5cq"),
    ];
    // A request target starts with `/` (Envoy answers 400 otherwise, before any routing).
    for path in &mut out {
        if !path.starts_with('/') {
            path.insert(0, '/');
        }
    }
    out
}

/// The path with its first letter written as a percent escape (`/app` as `/%61pp`).
fn escape_first_letter(p: &str) -> String {
    match p.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, c)) => format!("{}%{:02x}{}", &p[..i], c as u32, &p[i + 1..]),
        None => format!("{p}%61"),
    }
}

/// Draws `count` distinct requests for `cfg`, near each Mapping's boundaries, over cleartext
/// and TLS on the ports `cfg` listens on (and now and then one it does not).
pub fn requests(cfg: &Config, env: &Env, rng: &mut Rng, count: usize) -> Vec<Probe> {
    let entrances = cfg.entrances(env);
    let mut cands: Vec<Probe> = Vec::new();
    let hostnames: Vec<String> = cfg
        .hosts
        .iter()
        .map(|h| h.hostname.replace('*', "w"))
        .collect();
    let draw = |rng: &mut Rng, path: String, hostname: Option<&str>, m: Option<&MappingSpec>| {
        let hosts = host_variants(hostname, rng);
        let mut host = rng.pick(&hosts).clone();
        if rng.chance(0.15) {
            host = rng.pick(&hostnames).clone();
        }
        if let Some(h) = m.and_then(|m| m.host.as_ref()) {
            if rng.chance(0.6) {
                host.clone_from(h);
            }
        }
        let (port, serves_tls) = if rng.chance(0.04) {
            *rng.pick(&entrances)
        } else {
            let listening: Vec<(u16, bool)> = entrances
                .iter()
                .copied()
                .filter(|(p, tls)| {
                    *tls || *p == env.ports[0]
                        || cfg.listeners.iter().any(|l| env.ports[l.slot] == *p)
                })
                .collect();
            *rng.pick(&listening)
        };
        let tls = if serves_tls {
            rng.chance(0.5)
        } else {
            rng.chance(0.05)
        };
        let authority = match rng.below(10) {
            0 => format!("{host}:{port}"),
            1 => format!("{host}:{}", rng.pick(&[80, 443, 8080, 8443])),
            _ => host.clone(),
        };
        let sni = tls
            .then(|| match rng.below(10) {
                0 => None,
                1 => Some((*rng.pick(&HOSTNAMES[..3])).replace('*', "z")),
                _ => Some(host.to_ascii_lowercase()),
            })
            .flatten();
        let mut method = "GET".to_owned();
        let mut headers: Vec<(String, String)> = Vec::new();
        let mut path = path;
        if let Some(m) = m {
            if let Some(v) = &m.method {
                method.clone_from(v);
            }
            for (k, v) in &m.headers {
                headers.push((k.clone(), v.clone().unwrap_or_else(|| "yes".into())));
            }
            for (k, _) in &m.regex_headers {
                headers.push((k.clone(), (*rng.pick(&["42", "bob", "4x"])).into()));
            }
            let mut query: Vec<String> = Vec::new();
            for (k, v) in &m.query {
                query.push(format!("{k}={}", v.as_deref().unwrap_or("on")));
            }
            for (k, _) in &m.regex_query {
                query.push(format!("{k}={}", rng.pick(&["7", "x7", "%37"])));
            }
            if !query.is_empty() && !path.contains('?') && !path.contains('#') && rng.chance(0.8) {
                path = format!("{path}?{}", query.join("&"));
            }
        }
        // Perturbations near the boundaries.
        match rng.below(12) {
            0 if !headers.is_empty() => headers.clear(),
            1 => headers.push((
                (*rng.pick(&["x-env", "x-user", "x-flag"])).into(),
                (*rng.pick(&["canary", "prod", "42", "bob", "Canary"])).into(),
            )),
            2 => method = (*rng.pick(&["GET", "POST", "PUT", "DELETE"])).into(),
            3 if path.contains('?') => path.truncate(path.find('?').unwrap_or(path.len())),
            4 if path.contains("debug=1") => {
                let to = ["debug=%31", "debug=2", "DEBUG=1"][rng.below(3)];
                path = path.replacen("debug=1", to, 1);
            }
            5 => headers.push((
                "x-forwarded-proto".into(),
                (*rng.pick(&["https", "http"])).into(),
            )),
            6 if !headers.is_empty() => {
                let i = rng.below(headers.len());
                headers[i].1 = flip_case(&headers[i].1, rng);
            }
            // The same header twice, the other value first or last, or both in one.
            7 if !headers.is_empty() => {
                let (k, v) = headers[0].clone();
                let other = (*rng.pick(&["prod", "canary", "0", "yes"])).to_owned();
                match rng.below(3) {
                    0 => headers.insert(0, (k, other)),
                    1 => headers.push((k, other)),
                    _ => headers[0].1 = format!("{v},{other}"),
                }
            }
            _ => {}
        }
        Probe {
            port,
            tls,
            sni,
            method,
            authority,
            path,
            headers,
        }
    };
    for m in &cfg.mappings {
        for path in path_variants(m, rng) {
            cands.push(draw(rng, path.clone(), m.hostname.as_deref(), Some(m)));
            cands.push(draw(rng, path, m.hostname.as_deref(), Some(m)));
        }
        if let Does::Redirect { .. } = m.does {
            // Redirects are few; ask them more often.
            for _ in 0..4 {
                let p = format!("{}{}", m.prefix, rng.pick(&["", "x/y", "?a=1"]));
                cands.push(draw(rng, p, m.hostname.as_deref(), Some(m)));
            }
        }
    }
    for _ in 0..6 {
        let p = (*rng.pick(&["/", "/nothing", "/x/y", "/.well-known/acme-challenge/t"])).to_owned();
        cands.push(draw(rng, p, None, None));
    }
    rng.shuffle(&mut cands);
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for c in cands {
        let key = serde_json::to_string(&c).unwrap_or_default();
        if seen.insert(key) {
            out.push(c);
            if out.len() >= count {
                break;
            }
        }
    }
    out
}

/// What came back for one request.
#[derive(Clone, Debug, Serialize)]
pub enum Seen {
    /// An HTTP answer: the status, `Location`, and the backend's echo when one answered.
    Answer {
        status: u16,
        location: Option<String>,
        echo: Option<Echo>,
    },
    /// No HTTP answer: the connection or handshake failed or was closed.
    Refused(String),
}

/// A TLS client that accepts any certificate: the test is about routing, and the SNI it
/// sends must be free to name no certificate at all.
pub fn any_certificate() -> TlsConnector {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// How long one exchange may take.
const EXCHANGE: Duration = Duration::from_secs(10);

/// Sends `probe` to 127.0.0.1 on a connection of its own, the request line as drawn.
pub async fn send(probe: &Probe, tls: &TlsConnector) -> Seen {
    match tokio::time::timeout(EXCHANGE, exchange(probe, tls)).await {
        Ok(Ok(seen)) => seen,
        Ok(Err(e)) => Seen::Refused(e.to_string()),
        Err(_) => Seen::Refused(format!("no answer within {EXCHANGE:?}")),
    }
}

async fn exchange(probe: &Probe, tls: &TlsConnector) -> std::io::Result<Seen> {
    let tcp = TcpStream::connect(("127.0.0.1", probe.port)).await?;
    let mut request = format!(
        "{} {} HTTP/1.1\r\nhost: {}\r\n",
        probe.method, probe.path, probe.authority
    );
    for (k, v) in &probe.headers {
        let _ = write!(request, "{k}: {v}\r\n");
    }
    request.push_str("connection: close\r\n\r\n");
    if probe.tls {
        let name = match &probe.sni {
            Some(s) => ServerName::try_from(s.clone())
                .map_err(|e| std::io::Error::other(format!("SNI `{s}`: {e}")))?,
            // An IP address: rustls sends no SNI.
            None => ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()),
        };
        let stream = tls.connect(name, tcp).await?;
        round_trip(stream, &request).await
    } else {
        round_trip(tcp, &request).await
    }
}

async fn round_trip<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    request: &str,
) -> std::io::Result<Seen> {
    s.write_all(request.as_bytes()).await?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    // Read until the answer is complete by its own framing: Envoy delays closing a
    // `connection: close` connection (`delayed_close_timeout`), so EOF may come late.
    loop {
        if complete(&buf) {
            break;
        }
        let n = match s.read(&mut chunk).await {
            Ok(n) => n,
            // A TLS peer closing without close_notify still delivered what it sent.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !buf.is_empty() => 0,
            Err(e) => return Err(e),
        };
        if n == 0 || buf.len() > 1 << 20 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    parse_response(&buf)
}

/// Whether `buf` holds a whole answer: headers, then `content-length` bytes or the last
/// chunk.
fn complete(buf: &[u8]) -> bool {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
    let body = &buf[end + 4..];
    for line in head.split("\r\n") {
        if let Some(v) = line.strip_prefix("content-length:") {
            return v.trim().parse::<usize>().is_ok_and(|n| body.len() >= n);
        }
        if line.starts_with("transfer-encoding:") && line.contains("chunked") {
            return body.ends_with(b"0\r\n\r\n");
        }
    }
    // No framing: the status alone says whether a body follows.
    head.starts_with("http/1.1 1")
        || head.starts_with("http/1.1 204")
        || head.starts_with("http/1.1 304")
}

fn parse_response(buf: &[u8]) -> std::io::Result<Seen> {
    let text = String::from_utf8_lossy(buf);
    let Some(end) = text.find("\r\n\r\n") else {
        return Ok(Seen::Refused(if buf.is_empty() {
            "closed without an answer".to_owned()
        } else {
            format!("incomplete answer: {text:?}")
        }));
    };
    let mut lines = text[..end].split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {status_line:?}")))?;
    let mut location = None;
    let mut chunked = false;
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            if k.eq_ignore_ascii_case("location") {
                location = Some(v.trim().to_owned());
            }
            if k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked") {
                chunked = true;
            }
        }
    }
    let body = &buf[end + 4..];
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_vec()
    };
    let echo = serde_json::from_slice::<Echo>(&body).ok();
    Ok(Seen::Answer {
        status,
        location,
        echo,
    })
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(i) = b.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&b[..i])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next().unwrap_or("").trim(), 16).ok())
            .unwrap_or(0);
        if size == 0 || b.len() < i + 2 + size {
            break;
        }
        out.extend_from_slice(&b[i + 2..i + 2 + size]);
        b = &b[(i + 4 + size).min(b.len())..];
    }
    out
}

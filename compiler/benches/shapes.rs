//! Route-table shapes that catch work growing faster than the number of Mappings.
//!
//! Each shape is N annotated `v1` Services with one Mapping each (plus the Hosts the shape
//! needs), as one YAML stream. Used by `benches/compile.rs` (`--shapes`, `--write`), and
//! through it by `tests/benches/shapes.sh` for whole-process figures.

#![allow(dead_code)] // not every user takes every part

use std::fmt::Write;

/// The shapes, in the order the benchmark reports them.
pub const SHAPES: &[(&str, &str)] = &[
    ("prefixes", "distinct prefixes, one Host"),
    (
        "headers",
        "one prefix, told apart by a header value (tenant routing)",
    ),
    ("query", "one prefix, told apart by a query parameter value"),
    ("methods", "8 methods per prefix"),
    ("regex", "regex prefixes (1 in 10 a literal prefix)"),
    ("canary", "canary groups of 10 on one prefix each"),
    ("wildcard", "every Mapping on hostname \"*\", 10 Hosts"),
    ("tls", "one Host with TLS (its own Secret) per 10 Mappings"),
];

/// A throwaway certificate for `*.example.com` (EC P-256, valid until 2036) and its key,
/// made for this benchmark only, so that every Host of the `tls` shape serves TLS without a
/// finding.
const CERT: &str = "\
-----BEGIN CERTIFICATE-----
MIIBnjCCAUWgAwIBAgIUIZqulQFpzlTZ/AXBpOkNyNqxaCYwCgYIKoZIzj0EAwIw
GDEWMBQGA1UEAwwNKi5leGFtcGxlLmNvbTAeFw0yNjEyMDIyMzEwNDFaFw0zNjEx
MjkyMzEwNDFaMBgxFjAUBgNVBAMMDSouZXhhbXBsZS5jb20wWTATBgcqhkjOPQIB
BggqhkjOPQMBBwNCAATlwue97hdJtWXZKRU5Pwf6kJelcc5VTg2ZnaxPCXNHg6NK
kJGLJ0x59YvkNkYNGeYQQPVLq5/AzjtyKIjjqjD0o20wazAdBgNVHQ4EFgQUuIRu
VZL3MhTjpYn4u3aWMNiuWA8wHwYDVR0jBBgwFoAUuIRuVZL3MhTjpYn4u3aWMNiu
WA8wDwYDVR0TAQH/BAUwAwEB/zAYBgNVHREEETAPgg0qLmV4YW1wbGUuY29tMAoG
CCqGSM49BAMCA0cAMEQCIDlXs1Niu0mqf2MPTRkHIbHQ82n37tJK/Gzr8sYEDjj8
AiBkHm8TO11PhmMDIxGL2ayMMC7NXUZIqQYU6PNRTantIQ==
-----END CERTIFICATE-----
";
const KEY: &str = "\
-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgDj7sQak4Qun8MEK/
/raiUMeHwSU2oBgW6zsz13lMPByhRANCAATlwue97hdJtWXZKRU5Pwf6kJelcc5V
Tg2ZnaxPCXNHg6NKkJGLJ0x59YvkNkYNGeYQQPVLq5/AzjtyKIjjqjD0
-----END PRIVATE KEY-----
";

const METHODS: [&str; 8] = [
    "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE",
];

/// Whether `shape` is one of [`SHAPES`].
pub fn known(shape: &str) -> bool {
    SHAPES.iter().any(|(s, _)| *s == shape)
}

/// The manifests of `shape` with `mappings` Mappings, one per annotated Service.
pub fn manifests(shape: &str, mappings: usize) -> String {
    assert!(known(shape), "unknown shape `{shape}`");
    let mut out = String::with_capacity(mappings * 560 + 4096);
    let tls = shape == "tls";
    let hosts = match shape {
        "wildcard" => 10,
        "tls" => mappings.div_ceil(10),
        _ => 1,
    };
    for h in 0..hosts {
        let _ = write!(
            out,
            "---\n\
             apiVersion: getambassador.io/v3alpha1\n\
             kind: Host\n\
             metadata:\n\
             \x20 name: host-{h}\n\
             \x20 namespace: ambassador\n\
             spec:\n\
             \x20 hostname: app{h}.example.com\n"
        );
        if tls {
            // A TLS Host redirects cleartext requests to https (Ambassador's default).
            let _ = write!(
                out,
                "\x20 tlsSecret:\n\
                 \x20   name: cert-{h}\n\
                 ---\n\
                 apiVersion: v1\n\
                 kind: Secret\n\
                 metadata:\n\
                 \x20 name: cert-{h}\n\
                 \x20 namespace: ambassador\n\
                 type: kubernetes.io/tls\n\
                 stringData:\n\
                 \x20 tls.crt: |\n{}\
                 \x20 tls.key: |\n{}",
                indent(CERT),
                indent(KEY)
            );
        } else {
            out.push_str(
                "\x20 requestPolicy:\n\
                 \x20   insecure:\n\
                 \x20     action: Route\n",
            );
        }
    }
    let mut extra = String::new();
    for i in 0..mappings {
        let ns = format!("team-{}", i % 37);
        let name = format!("svc-{i}");
        let mut hostname = "app0.example.com".to_string();
        extra.clear();
        let prefix = match shape {
            "prefixes" => format!("/api/{name}/"),
            "headers" => {
                let _ = write!(
                    extra,
                    "\x20     headers:\n\x20       x-tenant: tenant-{i}\n"
                );
                "/api/".to_string()
            }
            "query" => {
                let _ = write!(
                    extra,
                    "\x20     query_parameters:\n\x20       tenant: tenant-{i}\n"
                );
                "/api/".to_string()
            }
            "methods" => {
                let _ = writeln!(extra, "\x20     method: {}", METHODS[i % 8]);
                format!("/api/resource-{}/", i / 8)
            }
            "regex" if i % 10 != 9 => {
                extra.push_str("\x20     prefix_regex: true\n");
                format!("/api/{name}/[a-z0-9]+/.*")
            }
            "regex" => format!("/api/{name}/"),
            "canary" => {
                // Nine weighted members and one that takes the rest.
                if i % 10 != 9 {
                    extra.push_str("\x20     weight: 10\n");
                }
                format!("/api/group-{}/", i / 10)
            }
            "wildcard" => {
                hostname = "\"*\"".to_string();
                format!("/api/{name}/")
            }
            "tls" => {
                hostname = format!("app{}.example.com", i / 10);
                format!("/api/{name}/")
            }
            _ => unreachable!(),
        };
        let _ = write!(
            out,
            "---\n\
             apiVersion: v1\n\
             kind: Service\n\
             metadata:\n\
             \x20 name: {name}\n\
             \x20 namespace: {ns}\n\
             \x20 labels:\n\
             \x20   app.kubernetes.io/name: {name}\n\
             \x20 annotations:\n\
             \x20   getambassador.io/config: |\n\
             \x20     ---\n\
             \x20     apiVersion: getambassador.io/v3alpha1\n\
             \x20     kind: Mapping\n\
             \x20     name: {name}\n\
             \x20     hostname: {hostname}\n\
             \x20     prefix: {prefix}\n\
             \x20     service: {name}.{ns}:8080\n\
             \x20     timeout_ms: 3000\n\
             {extra}\
             spec:\n\
             \x20 selector:\n\
             \x20   app.kubernetes.io/name: {name}\n\
             \x20 ports:\n\
             \x20 - name: http\n\
             \x20   port: 8080\n\
             \x20   targetPort: 8080\n"
        );
    }
    out
}

/// A block scalar's lines, indented under a key of a top-level mapping.
fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    {l}\n")).collect()
}

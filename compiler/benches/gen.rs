//! Generated configurations for benchmarks and differential tests: N annotated Services.
//!
//! Shared by `benches/compile.rs` and by tests that include it with `#[path]`. The shape
//! follows what a cluster export looks like: ten Hosts as custom resources, then one
//! `v1` Service per backend with metadata, labels, a `getambassador.io/config: |`
//! annotation holding one or two Mapping documents, and `spec.ports`.

#![allow(dead_code)] // each including crate uses a different part

use std::fmt::Write;

/// Number of Hosts the Mappings are spread over.
pub const HOSTS: usize = 10;

/// What one generated configuration holds, for reporting.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counts {
    pub services: usize,
    pub mappings: usize,
    pub canary_pairs: usize,
    pub header_matches: usize,
    pub wildcard: usize,
}

/// The manifests of `services` annotated Services and [`HOSTS`] Hosts, as one YAML stream.
///
/// Per 20 Services: 11 plain Mappings on one Host, 4 canary pairs (two Mapping documents
/// with the same prefix, the second with `weight: 10`), 3 header matches, and 2 Mappings with
/// `hostname: "*"`, which every Host takes.
pub fn manifests(services: usize) -> (String, Counts) {
    let mut out = String::with_capacity(services * 700 + 4096);
    let mut counts = Counts {
        services,
        ..Counts::default()
    };
    for h in 0..HOSTS {
        let _ = write!(
            out,
            "---\n\
             apiVersion: getambassador.io/v3alpha1\n\
             kind: Host\n\
             metadata:\n\
             \x20 name: host-{h}\n\
             \x20 namespace: ambassador\n\
             spec:\n\
             \x20 hostname: app{h}.example.com\n\
             \x20 requestPolicy:\n\
             \x20   insecure:\n\
             \x20     action: Route\n"
        );
    }
    for i in 0..services {
        let ns = format!("team-{}", i % 37);
        let name = format!("svc-{i}");
        let host = format!("app{}.example.com", i % HOSTS);
        let tier = ["frontend", "backend", "batch"][i % 3];
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
             \x20   app.kubernetes.io/part-of: shop\n\
             \x20   tier: {tier}\n\
             \x20 annotations:\n\
             \x20   getambassador.io/config: |\n"
        );
        let main = |out: &mut String, extra: &str, hostname: &str| {
            let _ = write!(
                out,
                "\x20     ---\n\
                 \x20     apiVersion: getambassador.io/v3alpha1\n\
                 \x20     kind: Mapping\n\
                 \x20     name: {name}\n\
                 \x20     hostname: {hostname}\n\
                 \x20     prefix: /api/{name}/\n\
                 \x20     service: {name}.{ns}:8080\n\
                 \x20     timeout_ms: 3000\n\
                 {extra}"
            );
        };
        match i % 20 {
            0..=10 => {
                main(&mut out, "", &host);
                counts.mappings += 1;
            }
            11..=14 => {
                main(&mut out, "", &host);
                let _ = write!(
                    out,
                    "\x20     ---\n\
                     \x20     apiVersion: getambassador.io/v3alpha1\n\
                     \x20     kind: Mapping\n\
                     \x20     name: {name}-canary\n\
                     \x20     hostname: {host}\n\
                     \x20     prefix: /api/{name}/\n\
                     \x20     service: {name}-canary.{ns}:8080\n\
                     \x20     timeout_ms: 3000\n\
                     \x20     weight: 10\n"
                );
                counts.mappings += 2;
                counts.canary_pairs += 1;
            }
            15..=17 => {
                main(
                    &mut out,
                    "\x20     headers:\n\
                     \x20       x-tenant: \"beta\"\n\
                     \x20       x-version: v2\n",
                    &host,
                );
                counts.mappings += 1;
                counts.header_matches += 1;
            }
            _ => {
                main(&mut out, "", "\"*\"");
                counts.mappings += 1;
                counts.wildcard += 1;
            }
        }
        let _ = write!(
            out,
            "spec:\n\
             \x20 selector:\n\
             \x20   app.kubernetes.io/name: {name}\n\
             \x20 ports:\n\
             \x20 - name: http\n\
             \x20   port: 8080\n\
             \x20   targetPort: 8080\n\
             \x20   protocol: TCP\n"
        );
        if (11..=14).contains(&(i % 20)) {
            let _ = write!(
                out,
                "---\n\
                 apiVersion: v1\n\
                 kind: Service\n\
                 metadata:\n\
                 \x20 name: {name}-canary\n\
                 \x20 namespace: {ns}\n\
                 spec:\n\
                 \x20 ports:\n\
                 \x20 - name: http\n\
                 \x20   port: 8080\n"
            );
        }
    }
    (out, counts)
}

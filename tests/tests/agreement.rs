//! The tracer against a real Envoy (issue 12, item 4): seeded configurations (Listeners, TLS
//! Hosts, every insecure action, prefixes, exact paths and regexes, case, headers, query
//! parameters, methods, precedence, canaries, rewrites, redirects) and requests near each
//! match boundary, over cleartext and over TLS with SNI. Each configuration is compiled and
//! traced offline, published through the real pipeline to an Envoy of its own, and every
//! request is sent; the tracer's prediction (status; for a forward the backend, the path and
//! query it received and its `Host`; for a redirect the `Location`) must be what Envoy did.
//! Canary splits are checked against the predicted shares within five binomial sigmas.
//!
//! `AGREEMENT_REQUESTS` (default 2,000), `AGREEMENT_PER_CONFIG` (100), `AGREEMENT_SEED` (1)
//! and `AGREEMENT_CANARY` (requests per canary check, 100) scale it; `tests/agreement.sh`
//! runs the full size. A disagreement prints the configuration, the request, the
//! prediction and what Envoy did.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use ambassador_compiler::matcher::Request;
use ambassador_compiler::trace::{trace, Outcome};
use ambassador_e2e::agreement::{
    any_certificate, config, requests, secret_name, send, Env, Probe, Rng, Seen, HOSTNAMES,
};
use ambassador_e2e::backend::Backend;
use ambassador_e2e::stack::{options, Stack};
use ambassador_e2e::{free_port, poll};
use ambassador_webhook::bootstrap::ApiType;
use ambassador_webhook::certs::{self, Generated};
use futures::StreamExt;

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

/// A `kubernetes.io/tls` Secret for each Host name but `*`, certificates made now.
fn secrets() -> String {
    let mut out = String::new();
    for h in &HOSTNAMES[..3] {
        let g: Generated = certs::generate(&certs::Request {
            names: vec![(*h).to_owned()],
            valid_days: 2,
        })
        .expect("certificates for test names");
        let indent = |pem: &str| {
            pem.lines()
                .map(|l| format!("    {l}\n"))
                .collect::<String>()
        };
        let _ = write!(
            out,
            "---\napiVersion: v1\nkind: Secret\nmetadata: {{name: {}, namespace: default}}\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}",
            secret_name(h),
            indent(&g.cert_pem),
            indent(&g.key_pem)
        );
    }
    out
}

/// A backend the tracer predicts: name, path with query, `Host`, percent.
type Answer = (String, String, String, f64);

/// What the tracer predicts, in the terms a client can observe.
#[derive(Debug)]
enum Want {
    /// One of these answers.
    Forward(Vec<Answer>),
    Status(u16, Option<String>),
    /// No HTTP answer.
    Refused,
    /// The tracer does not model it (counted, and the test fails if there is any).
    Unknown,
}

fn want(outcome: &Outcome, env: &Env) -> Want {
    match outcome {
        Outcome::Forward { backends } => Want::Forward(
            backends
                .iter()
                .filter(|b| b.percent > 0.0)
                .map(|b| {
                    let name = b
                        .service
                        .as_deref()
                        .and_then(|s| env.backends.iter().find(|(_, a)| a == s))
                        .map_or_else(|| format!("? {:?}", b.service), |(n, _)| n.clone());
                    let path = b.path.strip_suffix('?').unwrap_or(&b.path).to_owned();
                    (name, path, b.host.clone(), b.percent)
                })
                .collect(),
        ),
        Outcome::Redirect {
            status, location, ..
        } => Want::Status(*status, Some(location.clone())),
        Outcome::Direct { status, .. } => Want::Status(*status as u16, None),
        Outcome::NoRoute { status }
        | Outcome::NoVirtualHost { status }
        | Outcome::BadRequest { status, .. } => Want::Status(*status, None),
        Outcome::NoListener { .. } | Outcome::NoFilterChain | Outcome::TlsRefused { .. } => {
            Want::Refused
        }
        _ => Want::Unknown,
    }
}

/// `None` when `seen` is what `want` predicts, else why not.
fn disagreement(want: &Want, seen: &Seen) -> Option<String> {
    match (want, seen) {
        (Want::Unknown, _) => None,
        (Want::Refused, Seen::Refused(_)) => None,
        (
            Want::Forward(backends),
            Seen::Answer {
                status: 200,
                echo: Some(e),
                ..
            },
        ) => {
            let path = if e.query.is_empty() {
                e.path.clone()
            } else {
                format!("{}?{}", e.path, e.query)
            };
            let host = e.headers.get("host").cloned().unwrap_or_default();
            let hit = backends
                .iter()
                .any(|(b, p, h, _)| *b == e.backend && *p == path && *h == host);
            (!hit).then(|| format!("{} got path `{path}` and Host `{host}`", e.backend))
        }
        (
            Want::Status(s, loc),
            Seen::Answer {
                status,
                location,
                echo,
            },
        ) => {
            let ok = s == status && (loc.is_none() || loc == location) && echo.is_none();
            (!ok).then(|| {
                format!(
                    "status {status}, Location {location:?}, backend {:?}",
                    echo.as_ref().map(|e| (&e.backend, &e.path, &e.query))
                )
            })
        }
        (
            _,
            Seen::Answer {
                status,
                location,
                echo,
            },
        ) => Some(format!(
            "status {status}, Location {location:?}, echo {:?}",
            echo.as_ref()
                .map(|e| (&e.backend, &e.path, &e.query, e.headers.get("host")))
        )),
        (_, Seen::Refused(why)) => Some(format!("no HTTP answer: {why}")),
    }
}

fn to_request(p: &Probe) -> Request {
    Request {
        tls: p.tls,
        sni: p.sni.clone(),
        port: p.port,
        method: p.method.clone(),
        authority: p.authority.clone(),
        path: p.path.clone(),
        headers: p
            .headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .collect(),
    }
}

#[derive(Default)]
struct Figures {
    configs: usize,
    requests: usize,
    tls_requests: usize,
    by_outcome: BTreeMap<&'static str, usize>,
    unknown: usize,
    canary_checks: usize,
    canary_requests: usize,
    failures: Vec<String>,
}

fn outcome_kind(w: &Want) -> &'static str {
    match w {
        Want::Forward(b) if b.len() > 1 => "forward (split)",
        Want::Forward(_) => "forward",
        Want::Status(s, Some(_)) if (300..400).contains(s) => "redirect",
        Want::Status(404, _) => "404",
        Want::Status(..) => "other status",
        Want::Refused => "refused",
        Want::Unknown => "not modelled",
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tracer_agrees_with_envoy() {
    let total = env_number("AGREEMENT_REQUESTS", 2_000) as usize;
    let per_config = env_number("AGREEMENT_PER_CONFIG", 100).max(1) as usize;
    let seed = env_number("AGREEMENT_SEED", 1);
    let canary_n = env_number("AGREEMENT_CANARY", 100) as usize;
    let started = Instant::now();

    let mut backends = Vec::new();
    for i in 0..6 {
        backends.push(Backend::start(&format!("b{i}")).await.unwrap());
    }
    let secrets = secrets();
    let tls = any_certificate();
    let mut fig = Figures::default();
    let mut index = 0;
    while fig.requests < total {
        let opts = options();
        let env = Env {
            ports: [opts.lower.http_port, opts.lower.https_port, free_port()],
            backends: backends
                .iter()
                .map(|b| (b.name().to_owned(), b.addr().to_string()))
                .collect(),
        };
        let cfg = config(seed, index, backends.len());
        let yaml = cfg.yaml(&env) + &secrets;
        let mut rng = Rng::new(seed.wrapping_mul(31).wrapping_add(index as u64));
        let probes = requests(&cfg, &env, &mut rng, per_config.min(total - fig.requests));

        // The prediction, offline.
        let mut sources = ambassador_compiler::source::Sources::new();
        sources.add("agreement.yaml", &yaml);
        let compiled = ambassador_compiler::compile(&sources, &opts.front, &opts.lower);
        let res = ambassador_compiler::envoy_resources(&compiled);
        let table = ambassador_compiler::envoy::table::table(&res);
        let predicted: Vec<(Want, Outcome)> = probes
            .iter()
            .map(|p| {
                let t = trace(&table, &compiled.ir, &to_request(p));
                (want(&t.outcome, &env), t.outcome)
            })
            .collect();

        // What Envoy does.
        let t0 = Instant::now();
        let (stack, _report) = Stack::start_with(
            opts,
            vec![("agreement.yaml".into(), yaml.clone())],
            ApiType::Grpc,
        )
        .await
        .unwrap();
        let listeners = table.listeners.len() as u64;
        let settled = poll(
            Duration::from_secs(20),
            Duration::from_millis(20),
            || async {
                let warming = stack
                    .envoy
                    .stat("listener_manager.total_listeners_warming")
                    .await
                    .ok()??;
                let active = stack
                    .envoy
                    .stat("listener_manager.total_listeners_active")
                    .await
                    .ok()??;
                (warming == 0 && active >= listeners).then_some(())
            },
        )
        .await;
        assert!(
            settled.is_some(),
            "configuration {index}: Envoy's listeners never became active\n{yaml}"
        );
        let t1 = Instant::now();
        let seen: Vec<Seen> = futures::stream::iter(probes.iter())
            .map(|p| send(p, &tls))
            .buffered(6)
            .collect()
            .await;
        if std::env::var_os("AGREEMENT_VERBOSE").is_some() {
            eprintln!(
                "configuration {index}: Envoy up in {:?}, {} requests in {:?}",
                t1 - t0,
                probes.len(),
                t1.elapsed()
            );
        }

        let mut config_failures = Vec::new();
        for ((p, (w, o)), s) in probes.iter().zip(&predicted).zip(&seen) {
            fig.requests += 1;
            fig.tls_requests += usize::from(p.tls);
            *fig.by_outcome.entry(outcome_kind(w)).or_default() += 1;
            if matches!(w, Want::Unknown) {
                fig.unknown += 1;
            }
            if let Some(why) = disagreement(w, s) {
                config_failures.push(format!(
                    "  request: {}\n  predicted: {}\n  Envoy: {why}\n",
                    serde_json::to_string(p).unwrap_or_default(),
                    serde_json::to_string(o).unwrap_or_default(),
                ));
            }
        }

        // Canary shares: a few split predictions, many requests each.
        let mut splits: Vec<(&Probe, &Vec<Answer>)> = Vec::new();
        for (p, (w, _)) in probes.iter().zip(&predicted) {
            if let Want::Forward(b) = w {
                let mut names: Vec<&str> = b.iter().map(|x| x.0.as_str()).collect();
                names.sort_unstable();
                names.dedup();
                if names.len() > 1 && splits.len() < 2 {
                    splits.push((p, b));
                }
            }
        }
        for (p, b) in splits {
            if canary_n == 0 {
                break;
            }
            let seen: Vec<Seen> = futures::stream::iter(0..canary_n)
                .map(|_| send(p, &tls))
                .buffered(6)
                .collect()
                .await;
            fig.canary_checks += 1;
            fig.canary_requests += canary_n;
            let mut counts: BTreeMap<String, usize> = BTreeMap::new();
            let mut other = Vec::new();
            for s in &seen {
                match s {
                    Seen::Answer {
                        status: 200,
                        echo: Some(e),
                        ..
                    } => {
                        *counts.entry(e.backend.clone()).or_default() += 1;
                    }
                    s => other.push(format!("{s:?}")),
                }
            }
            let mut expected: BTreeMap<String, f64> = BTreeMap::new();
            for (name, _, _, pct) in b {
                *expected.entry(name.clone()).or_default() += pct / 100.0;
            }
            let n = canary_n as f64;
            let mut bad = other.first().cloned();
            for (name, count) in &counts {
                let p = expected.get(name).copied().unwrap_or(0.0);
                let sigma = (n * p * (1.0 - p)).sqrt();
                if (*count as f64 - n * p).abs() > 5.0 * sigma + 1.0 {
                    bad = Some(format!(
                        "{name} answered {count} of {canary_n}, predicted {:.1}%",
                        p * 100.0
                    ));
                }
            }
            for (name, p) in &expected {
                let count = counts.get(name).copied().unwrap_or(0) as f64;
                if (count - n * p).abs() > 5.0 * (n * p * (1.0 - p)).sqrt() + 1.0 {
                    bad = Some(format!(
                        "{name} answered {count} of {canary_n}, predicted {:.1}%",
                        p * 100.0
                    ));
                }
            }
            if let Some(bad) = bad {
                config_failures.push(format!(
                    "  canary split of request {}\n  predicted shares: {expected:?}\n  Envoy: {counts:?}; {bad}\n",
                    serde_json::to_string(p).unwrap_or_default()
                ));
            }
        }
        if !config_failures.is_empty() {
            fig.failures.push(format!(
                "configuration {index} (seed {seed}), {} disagreement(s):\n{}--- configuration (Secrets left out) ---\n{}",
                config_failures.len(),
                config_failures.join(""),
                cfg.yaml(&env)
            ));
        }
        drop(stack);
        fig.configs += 1;
        index += 1;
    }
    let elapsed = started.elapsed();
    eprintln!(
        "agreement: seed {seed}: {} requests ({} over TLS) in {} configurations, {} canary checks of {} requests; outcomes {:?}; {} not modelled; {} configurations disagree; {:.1} s",
        fig.requests,
        fig.tls_requests,
        fig.configs,
        fig.canary_checks,
        fig.canary_requests,
        fig.by_outcome,
        fig.unknown,
        fig.failures.len(),
        elapsed.as_secs_f64()
    );
    assert!(
        fig.failures.is_empty(),
        "the tracer and Envoy disagree in {} configuration(s); the first ones:\n\n{}",
        fig.failures.len(),
        fig.failures
            .iter()
            .take(3)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(fig.unknown, 0, "every outcome is modelled");
}

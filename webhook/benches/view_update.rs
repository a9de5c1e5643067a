//! How long a change to one Mapping takes to reach admission: from the watch event (the
//! object written into the watched view, as the kube watcher writes it) until the validator
//! judges against a view that holds it, with the ADS pipeline compiling the same change.
//!
//! Run with `cargo bench -p ambassador-webhook --bench view_update`. For each size, a view
//! of that many Mapping resources (as the API server stores them) is compiled by the one
//! pipeline `serve` runs ([`run::follow_view`]), then one Mapping's prefix is changed
//! `VUBENCH_CHANGES` times (default 30). Each change is timed from `View::update` until
//! [`CompilerValidator::updates`] moves, and until the ADS snapshot moves; then a review
//! checks that admission sees the new route (a Mapping of another service on the same
//! prefix is warned about). Settings: `VUBENCH_SIZES` (default `1000,10000`),
//! `VUBENCH_CHANGES`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ambassador_webhook::admission::{Severity, Validate as _};
use ambassador_webhook::metrics::Metrics;
use ambassador_webhook::pipeline::{Pipeline, PipelineOptions};
use ambassador_webhook::run;
use ambassador_webhook::server::Readiness;
use ambassador_webhook::validator::CompilerValidator;
use ambassador_webhook::view::View;
use serde_json::{json, Value};

/// Between two changes: the time a server takes to finish a change at 10,000 Mappings
/// (findings and verdicts) with room to spare.
const PAUSE_MS: u64 = 150;

fn env_list(name: &str, default: &str) -> Vec<usize> {
    std::env::var(name)
        .unwrap_or_else(|_| default.to_owned())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

/// Mapping `i` as the API server stores it.
fn mapping(i: usize, prefix: &str, service: &str) -> Value {
    json!({
        "apiVersion": "getambassador.io/v3alpha1",
        "kind": "Mapping",
        "metadata": {
            "name": format!("m{i}"),
            "namespace": format!("ns{}", i % 25),
            "uid": format!("00000000-0000-4000-8000-{i:012}"),
            "resourceVersion": format!("{}", 1000 + i),
            "generation": 1,
            "labels": {"app": format!("app{i}")},
        },
        "spec": {"hostname": "*", "prefix": prefix, "service": service, "timeout_ms": 5000},
    })
}

fn rss_mib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
            / 1024
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1e3)
}

// The allocator `ambassador-webhook serve` uses, so the figures are the server's.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let sizes = env_list("VUBENCH_SIZES", "1000,10000");
    let changes = env_list("VUBENCH_CHANGES", "30")
        .first()
        .copied()
        .unwrap_or(30);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let _guard = rt.enter();
    println!("| Mappings | first compile | admission view updated: median | p90 | max | ADS snapshot published: median | max | RSS after (peak) |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    for n in sizes {
        let view = View::new();
        let validator = Arc::new(CompilerValidator::new("default"));
        let options = PipelineOptions {
            front: validator.options().clone(),
            ..PipelineOptions::default()
        };
        let (pipeline, mut snapshots) = Pipeline::new(options);
        let readiness = Readiness::new();
        let started = Instant::now();
        let task = run::follow_view(
            &view,
            pipeline,
            Arc::clone(&validator),
            readiness.clone(),
            Arc::new(Metrics::new()),
            None,
        );
        view.update(|b| {
            for i in 0..n {
                b.upsert(mapping(
                    i,
                    &format!("/m{i}/"),
                    &format!("svc{i}.ns{}:80", i % 25),
                ));
            }
            b.set_synced();
        });
        let deadline = Instant::now() + Duration::from_secs(300);
        while !readiness.is_ready() {
            assert!(Instant::now() < deadline, "the view never compiled");
            std::thread::sleep(Duration::from_millis(1));
        }
        let first = started.elapsed();
        assert_eq!(validator.view_size(), n, "every Mapping is in the view");
        snapshots.borrow_and_update();

        let mut to_admission = Vec::with_capacity(changes);
        let mut to_ads = Vec::with_capacity(changes);
        for k in 0..changes {
            let prefix = format!("/m7/e{k}/");
            let before = validator.updates();
            let t0 = Instant::now();
            view.update(|b| {
                b.upsert(mapping(7, &prefix, "svc7.ns7:80"));
            });
            let mut admitted = None;
            let mut published = None;
            let deadline = t0 + Duration::from_secs(30);
            while admitted.is_none() || published.is_none() {
                assert!(Instant::now() < deadline, "change {k} never arrived");
                if admitted.is_none() && validator.updates() > before {
                    admitted = Some(t0.elapsed());
                }
                if published.is_none() && snapshots.has_changed().unwrap_or(false) {
                    published = Some(t0.elapsed());
                    snapshots.borrow_and_update();
                }
                // Polled, not spun: a spinning thread would take one of the two cores
                // the pipeline runs on.
                std::thread::sleep(Duration::from_micros(100));
            }
            // The next change arrives at a server that has finished this one (its findings
            // and verdicts are made after the view and the snapshot are updated).
            std::thread::sleep(Duration::from_millis(PAUSE_MS));
            to_admission.push(admitted.expect("set above"));
            to_ads.push(published.expect("set above"));
            // Admission judges against the changed view: the same route to another service
            // is a conflict with Mapping m7 as it is now.
            let probe = json!({
                "apiVersion": "getambassador.io/v3alpha1", "kind": "Mapping",
                "metadata": {"name": "probe", "namespace": "ns7"},
                "spec": {"hostname": "*", "prefix": prefix, "service": "other.ns7:80"},
            });
            let findings = validator.validate(&probe);
            assert!(
                findings
                    .iter()
                    .any(|f| f.code == "AMB307" && f.severity == Severity::Warning),
                "change {k}: admission does not see the new route of m7: {findings:?}"
            );
        }
        to_admission.sort();
        to_ads.sort();
        let (rss, peak) = rss_mib();
        println!(
            "| {n} | {} ms | **{} ms** | {} ms | {} ms | {} ms | {} ms | {rss} MiB ({peak} MiB) |",
            ms(first),
            ms(percentile(&to_admission, 0.5)),
            ms(percentile(&to_admission, 0.9)),
            ms(*to_admission.last().expect("changes")),
            ms(percentile(&to_ads, 0.5)),
            ms(*to_ads.last().expect("changes")),
        );
        task.abort();
    }
}

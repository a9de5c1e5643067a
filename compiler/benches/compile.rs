//! `cargo bench -p ambassador-compiler --bench compile`: wall time and peak memory of
//! compiling generated configurations of 1,000 / 5,000 / 50,000 annotated Services.
//!
//! Times are measured in this process, several runs per size (median, min, max). Peak
//! memory is measured in a fresh child process per size (this binary, re-run with
//! `--child N`), from the kernel's high-water mark `VmHWM`: after generating the input the
//! child resets the mark (`/proc/self/clear_refs`), so the figure is the resident set while
//! compiling, input text included, without the generator's garbage. The child reads the
//! mark after the compile alone (`compile`), after packing the resources as `preview -o
//! json` does and dropping them (`packed`), and after emitting the typed resources (`peak`).
//!
//! Arguments: sizes to run (default `1000 5000 50000`), `--runs K` to override the number
//! of runs, `--quick` for a short smoke run (`cargo bench` passes `--bench`, ignored),
//! `--profile N` to compile and emit once for a profiler, `--phases N` to time the passes
//! one by one.
//!
//! Shapes (`shapes.rs`): `--shapes [a,b,...]` runs the named shapes (all by default) at
//! `--sizes 1000,20000` (the default; the full set is `1000,5000,20000,50000`), and
//! reports time per Mapping, the route-table check alone, emit, and peak memory, then the
//! ratio of time per Mapping at the largest size (up to 20,000) to that at the smallest.
//! `BENCH_SHAPES` and `BENCH_SIZES` in the environment do the same (`BENCH_SHAPES=all`).
//! `--write SHAPE N PATH` writes a shape's input to a file; `--profile-shape SHAPE N`
//! compiles it once for a profiler; `--phases-shape SHAPE N` times its passes apart.

#[path = "gen.rs"]
mod gen;
#[path = "shapes.rs"]
mod shapes;

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
        phases(
            &format!("{n} Services"),
            gen::manifests(n).0,
            runs_of(&args).unwrap_or(11),
        );
        return;
    }
    if let Some(i) = args.iter().position(|a| a == "--phases-shape") {
        let n: usize = args[i + 2].parse().expect("--phases-shape SHAPE N");
        let text = shapes::manifests(&args[i + 1], n);
        let what = format!("{} {n} Mappings", args[i + 1]);
        phases(&what, text, runs_of(&args).unwrap_or(11));
        return;
    }
    if let Some(i) = args.iter().position(|a| a == "--child-shape") {
        let n: usize = args[i + 2].parse().expect("--child-shape SHAPE N");
        child_shape(&args[i + 1], n);
        return;
    }
    if let Some(i) = args.iter().position(|a| a == "--write") {
        let (shape, n, path) = (&args[i + 1], &args[i + 2], &args[i + 3]);
        let n: usize = n.parse().expect("--write SHAPE N PATH");
        std::fs::write(path, shapes::manifests(shape, n)).expect("write the input");
        return;
    }
    if let Some(i) = args.iter().position(|a| a == "--profile-shape") {
        let n: usize = args[i + 2].parse().expect("--profile-shape SHAPE N");
        let mut sources = Sources::new();
        sources.add("shape.yaml", shapes::manifests(&args[i + 1], n));
        let c =
            ambassador_compiler::compile(&sources, &Options::default(), &LowerOptions::default());
        let r = ambassador_compiler::envoy::emit(&c.ir);
        std::hint::black_box((&c, &r));
        return;
    }
    if let Some(selected) = shape_selection(&args) {
        run_shapes(&selected, &shape_sizes(&args), runs_of(&args));
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
            *i == 0
                || !matches!(
                    args[i - 1].as_str(),
                    "--runs" | "--profile" | "--phases" | "--sizes"
                )
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
        "{:>7} {:>8} {:>9} {:>7} | {:^26} {:>7} | {:^26} | {:>10} {:>10} | {:>8} {:>8}",
        "svcs",
        "mappings",
        "routes",
        "MB in",
        "compile ms med (min-max)",
        "cpu ms",
        "emit ms med (min-max)",
        "peak MiB",
        "over input",
        "compile",
        "packed"
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
    if !quick && args.iter().all(|a| a.parse::<usize>().is_err()) {
        // The plain `cargo bench` also runs every shape at 1,000 and 20,000 Mappings.
        println!();
        let all: Vec<String> = shapes::SHAPES.iter().map(|s| s.0.to_string()).collect();
        run_shapes(&all, &[1000, 20000], runs_override);
    }
}

/// The shapes asked for with `--shapes [list]` or `BENCH_SHAPES`, if any.
fn shape_selection(args: &[String]) -> Option<Vec<String>> {
    let list = match args.iter().position(|a| a == "--shapes") {
        Some(i) => match args.get(i + 1) {
            Some(l) if !l.starts_with("--") && l.parse::<usize>().is_err() => l.clone(),
            _ => "all".to_string(),
        },
        None => std::env::var("BENCH_SHAPES").ok()?,
    };
    let all = || shapes::SHAPES.iter().map(|s| s.0.to_string()).collect();
    let selected: Vec<String> = if list == "all" || list.is_empty() {
        all()
    } else {
        list.split(',').map(|s| s.trim().to_string()).collect()
    };
    for s in &selected {
        assert!(
            shapes::known(s),
            "unknown shape `{s}`; the shapes: {:?}",
            shapes::SHAPES.iter().map(|s| s.0).collect::<Vec<_>>()
        );
    }
    Some(selected)
}

/// Sizes for the shapes: `--sizes a,b`, `BENCH_SIZES`, else 1,000 and 20,000.
fn shape_sizes(args: &[String]) -> Vec<usize> {
    let list = args
        .iter()
        .position(|a| a == "--sizes")
        .and_then(|i| args.get(i + 1).cloned())
        .or_else(|| std::env::var("BENCH_SIZES").ok())
        .unwrap_or_else(|| "1000,20000".to_string());
    list.split(',')
        .map(|s| s.trim().replace('_', "").parse().expect("sizes: numbers"))
        .collect()
}

/// Runs each shape at each size: compile, check alone, emit, peak memory.
fn run_shapes(selected: &[String], sizes: &[usize], runs_override: Option<usize>) {
    println!(
        "shapes (one Mapping per annotated Service); times are medians, µs/M is microseconds per Mapping"
    );
    println!(
        "{:<9} {:>7} {:>8} {:>7} | {:>24} {:>7} | {:>9} {:>9} | {:>9} | {:>26}",
        "shape",
        "maps",
        "routes",
        "MB in",
        "compile ms med (min-max)",
        "µs/M",
        "check ms",
        "emit ms",
        "emit µs/M",
        "peak MiB compile/packed/emit"
    );
    let mut ratios = Vec::new();
    for shape in selected {
        let mut per_mapping: Vec<(usize, f64)> = Vec::new();
        for &n in sizes {
            let runs = runs_override.unwrap_or(match n {
                0..=1000 => 21,
                1001..=5000 => 11,
                5001..=20000 => 5,
                _ => 3,
            });
            let us = bench_shape(shape, n, runs);
            per_mapping.push((n, us));
        }
        let small = per_mapping.iter().min_by_key(|p| p.0);
        let large = per_mapping
            .iter()
            .filter(|p| p.0 <= 20000)
            .max_by_key(|p| p.0);
        if let (Some(s), Some(l)) = (small, large) {
            if l.0 > s.0 {
                ratios.push(format!("{shape}: {:.2}x ({} vs {})", l.1 / s.1, l.0, s.0));
            }
        }
    }
    if !ratios.is_empty() {
        println!("time per Mapping, largest size (up to 20,000) over smallest (floor: 1.5x):");
        for r in ratios {
            println!("  {r}");
        }
    }
}

/// One shape at one size; returns the median compile time per Mapping in microseconds.
fn bench_shape(shape: &str, n: usize, runs: usize) -> f64 {
    let text = shapes::manifests(shape, n);
    let bytes = text.len();
    let mut sources = Sources::new();
    sources.add("shape.yaml", text);
    let opts = Options::default();
    let lower_opts = LowerOptions::default();
    let c = ambassador_compiler::compile(&sources, &opts, &lower_opts);
    let errors: Vec<_> = c
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .collect();
    assert!(
        errors.is_empty(),
        "shape {shape} at {n} has errors: {:#?}",
        &errors[..errors.len().min(3)]
    );
    let routes: usize = c.ir.virtual_hosts.iter().map(|v| v.routes.len()).sum();
    let mut check_t = Vec::with_capacity(runs);
    let mut emit_t = Vec::with_capacity(runs);
    for _ in 0..runs {
        let mut diags = Vec::new();
        let t = Instant::now();
        ambassador_compiler::check::check(&c.ir, &mut diags);
        check_t.push(t.elapsed());
        drop(std::hint::black_box(diags));
        let t = Instant::now();
        let r = ambassador_compiler::envoy::emit(&c.ir);
        emit_t.push(t.elapsed());
        drop(std::hint::black_box(r));
    }
    drop(c);
    let mut compile_t = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        let c = ambassador_compiler::compile(&sources, &opts, &lower_opts);
        compile_t.push(t.elapsed());
        drop(std::hint::black_box(c));
    }
    let med = |t: &mut Vec<Duration>| {
        t.sort();
        t[t.len() / 2].as_secs_f64()
    };
    let compile_us = med(&mut compile_t.clone()) * 1e6 / n as f64;
    let emit_s = med(&mut emit_t);
    let [peak, _, compiled, packed] = peak_of(&["--child-shape", shape, &n.to_string()]);
    println!(
        "{:<9} {:>7} {:>8} {:>7.1} | {:>24} {:>7.2} | {:>9.1} {:>9.1} | {:>9.2} | {:>8} {:>8} {:>8}",
        shape,
        n,
        routes,
        bytes as f64 / 1e6,
        summary(&mut compile_t),
        compile_us,
        med(&mut check_t) * 1e3,
        emit_s * 1e3,
        emit_s * 1e6 / n as f64,
        compiled,
        packed,
        peak
    );
    compile_us
}

/// Compiles and emits a shape once, then prints peak resident MiB and MiB above the input.
fn child_shape(shape: &str, n: usize) {
    let mut sources = Sources::new();
    sources.add("shape.yaml", shapes::manifests(shape, n));
    print_peaks(&sources);
}

fn runs_of(args: &[String]) -> Option<usize> {
    args.iter()
        .position(|a| a == "--runs")
        .map(|i| args[i + 1].parse::<usize>().expect("--runs K"))
}

/// Median time of each pass on its own: read (parse and schema checks), lower, check.
fn phases(what: &str, text: String, runs: usize) {
    let mut sources = Sources::new();
    sources.add("services.yaml", text);
    let opts = Options::default();
    let lower_opts = LowerOptions::default();
    let (mut read_t, mut lower_t, mut check_t, mut emit_t) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
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
        let t = Instant::now();
        let r = ambassador_compiler::envoy::emit(&ir);
        emit_t.push(t.elapsed());
        drop(std::hint::black_box((m, ir, diags, r)));
    }
    println!(
        "{what}, ms median (min-max) over {runs} runs: read {} | lower {} | check {} | emit {}",
        summary(&mut read_t),
        summary(&mut lower_t),
        summary(&mut check_t),
        summary(&mut emit_t)
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
    let [peak, over, compiled, packed] = peak_in_child(n);
    println!(
        "{:>7} {:>8} {:>9} {:>7.1} | {:>26} {:>7.1} | {:>26} | {:>10} {:>10} | {:>8} {:>8}",
        n,
        counts.mappings,
        routes,
        bytes as f64 / 1e6,
        summary(&mut compile_t),
        cpu,
        summary(&mut emit_t),
        peak,
        over,
        compiled,
        packed
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

/// Runs `--child n` and returns the figures of [`print_peaks`].
fn peak_in_child(n: usize) -> [String; 4] {
    peak_of(&["--child", &n.to_string()])
}

/// Runs this binary with `args` (a child mode) and reads the four figures it prints.
fn peak_of(args: &[&str]) -> [String; 4] {
    let exe = std::env::current_exe().expect("current exe");
    let out = Command::new(exe).args(args).output().expect("run child");
    let s = String::from_utf8_lossy(&out.stdout);
    let figures: Vec<String> = s.split_whitespace().map(str::to_string).collect();
    match <[String; 4]>::try_from(figures) {
        Ok(f) if out.status.success() => f,
        _ => std::array::from_fn(|_| "?".into()),
    }
}

/// Compiles and emits once, then prints peak resident MiB and MiB above the baseline.
fn child(n: usize) {
    let (text, _) = gen::manifests(n);
    let mut sources = Sources::new();
    sources.add("services.yaml", text);
    print_peaks(&sources);
}

/// Compiles `sources` as `lint` and `preview` do (each Mapping's tree freed once read:
/// `LowerOptions::release_mapping_fields`), packs the resources
/// ([`ambassador_compiler::envoy::emit_packed`], as `preview -o json` does) and drops them,
/// then emits the typed resources; prints the peak
/// resident MiB at the end, the same above the baseline, and the peaks after the compile
/// alone and after the packed emit (the high-water mark only grows).
fn print_peaks(sources: &Sources) {
    // Resetting the high-water mark needs Linux 4.0; without it the figure includes the
    // generator's peak, which only overstates.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let base = vm_kib("VmRSS").unwrap_or(0);
    let lean = LowerOptions {
        release_mapping_fields: true,
        ..LowerOptions::default()
    };
    let c = ambassador_compiler::compile(sources, &Options::default(), &lean);
    let compiled = vm_kib("VmHWM").unwrap_or(0);
    drop(std::hint::black_box(
        ambassador_compiler::envoy::emit_packed(&c.ir),
    ));
    let packed = vm_kib("VmHWM").unwrap_or(0);
    let r = ambassador_compiler::envoy::emit(&c.ir);
    std::hint::black_box((&c, &r));
    let peak = vm_kib("VmHWM").unwrap_or(0);
    let mib = |k: u64| k as f64 / 1024.0;
    println!(
        "{:.1} {:.1} {:.1} {:.1}",
        mib(peak),
        mib(peak.saturating_sub(base)),
        mib(compiled),
        mib(packed)
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

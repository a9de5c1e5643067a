//! `kubectl ambassador`: lint Ambassador configuration and show the routes it compiles to.
//!
//! A thin shell around `ambassador-compiler`: read files (or the cluster), compile, render.
//! Exit codes are the same for every output format: 0 when nothing reaches the failure
//! threshold, 1 when something does, 2 for a usage error or input that could not be read.

// mimalloc: the compiler allocates many small nodes, and mimalloc's per-thread free lists
// make that much cheaper than glibc's malloc (docs/PERFORMANCE.md). The feature
// `system-alloc` builds with the system allocator instead, for heap profilers (heaptrack).
#[cfg(not(feature = "system-alloc"))]
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod cli;
mod cluster;
mod input;
mod render;
mod routes;
mod routetest;
mod trace;

use std::io::Write;
use std::process::ExitCode;

use ambassador_compiler::diag::Severity;
use ambassador_compiler::front::{Manifests, Options};
use ambassador_compiler::lower::LowerOptions;
use ambassador_compiler::{Compilation, Findings};
use clap::Parser;

use cli::{Cli, ColorChoice, Command, LintFormat, RoutesFormat, SourceArgs, Threshold};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Lint(args) => lint(args),
        Command::Routes(args) => routes(args),
        Command::Preview(args) => preview(args),
        Command::Trace(args) => trace(args),
        Command::Test(args) => route_test(args),
    };
    ExitCode::from(code)
}

/// Hands the pages freed since back to the system, for `lint`: after reading, and where
/// lowering calls [`LowerOptions::freed`] (the ends of the phases, and of the runs of
/// Mappings read, that free most).
///
/// mimalloc keeps a freed page for 10 ms (its purge delay) before it gives it back, so that
/// a server freeing and allocating again all the time does not fault pages in again and
/// again. `lint` frees each phase's data before the next, and with that default its
/// resident set peaked at 57-68 MiB at 20,000 Mappings, over its bound of 60. Giving every
/// page back at once (a delay of 0, which `lint` used to set by starting itself again) kept
/// it at 49-56 MiB but cost 20-65 % of its time in faults and `madvise` calls; giving them
/// back at these points keeps it at 47-55 MiB and costs a few milliseconds
/// (docs/PERFORMANCE.md, eleventh round). One `unsafe` call, the only one in the workspace.
#[cfg(not(feature = "system-alloc"))]
#[allow(unsafe_code)]
fn give_back() {
    // SAFETY: `mi_collect` takes no pointer and reads or changes nothing but mimalloc's own
    // lists; it may be called from any thread at any time.
    unsafe { libmimalloc_sys::mi_collect(true) }
}

/// The system allocator gives back what it gives back.
#[cfg(feature = "system-alloc")]
fn give_back() {}

fn set_color(choice: ColorChoice) {
    use std::io::IsTerminal;
    let on = match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
                && std::io::stdout().is_terminal()
        }
    };
    colored::control::set_override(on);
}

/// Everything read and compiled for one command.
struct Loaded {
    input: input::Input,
    compilation: Compilation,
    read_errors: Vec<String>,
}

/// Reads and compiles. `lean`: the caller reads nothing of the Mapping resources afterwards
/// (only diagnostics, the IR, Secrets and endpoints), so their trees are freed as soon as
/// they are read; nor the text of the files (a finding's source line is read again), which
/// is freed once the objects are read.
fn load(args: &SourceArgs, lean: bool) -> Result<Loaded, String> {
    let (mut input, manifests, read_errors, lower) = read(args, lean, None)?;
    let mut compilation = ambassador_compiler::compile_manifests(manifests, &lower);
    compilation.diagnostics.append(&mut input.diagnostics);
    ambassador_compiler::diag::sort(&mut compilation.diagnostics);
    Ok(Loaded {
        input,
        compilation,
        read_errors,
    })
}

/// The input and its objects, read as for [`load`], the read errors, and the options to
/// lower them with. `freed` is called where reading and lowering have just freed much (see
/// [`give_back`]).
fn read(
    args: &SourceArgs,
    lean: bool,
    freed: Option<fn()>,
) -> Result<(input::Input, Manifests, Vec<String>, LowerOptions), String> {
    let mut input = if args.filename.is_empty() {
        cluster::read(args).map_err(|e| format!("reading the cluster: {e}"))?
    } else {
        input::read(&args.filename, args.recursive)
    };
    let read_errors: Vec<String> = input.errors.iter().map(ToString::to_string).collect();
    let opts = Options {
        ambassador_id: args.ambassador_id.clone(),
        default_namespace: args.namespace.clone().unwrap_or_else(|| "default".into()),
    };
    let skip = input::unreadable(&input);
    // Certificates are checked against the time of the run.
    let lower = LowerOptions {
        now: unix_now(),
        release_mapping_fields: lean,
        freed,
        ..LowerOptions::default()
    };
    // With `lean`, nothing reads the text after the objects are read but a finding's
    // source line, which `lint` reads again (`Input::restore_texts`).
    let manifests = input.read_objects(&skip, &opts, lean);
    // The texts are freed, and the lists the objects were read into on each core.
    if let Some(f) = freed {
        f();
    }
    Ok((input, manifests, read_errors, lower))
}

/// Writes to stdout; a closed pipe (`| head`) ends the program quietly.
fn emit(text: &str) {
    emit_with(|out| out.write_all(text.as_bytes()));
}

/// Standard output, buffered. A type, not `dyn Write`: serializers write a few bytes at a
/// time, and each write through `dyn` was a call that could not be inlined.
type Out = std::io::BufWriter<std::io::StdoutLock<'static>>;

/// Writes to stdout through a buffer with `write`; errors as [`emit`].
fn emit_with(write: impl FnOnce(&mut Out) -> std::io::Result<()>) {
    let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    if let Err(e) = write(&mut out).and_then(|_| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: writing output: {e}");
        std::process::exit(2);
    }
}

fn lint(args: cli::LintArgs) -> u8 {
    set_color(args.source.color);
    let (mut input, manifests, read_errors, mut lower) =
        match read(&args.source, true, Some(give_back)) {
            Ok(r) => r,
            Err(e) => {
                eprintln!(
                    "{}: {e}",
                    colored::Colorize::bold(colored::Colorize::red("error"))
                );
                return 2;
            }
        };
    // `lint` ends once the findings are written: what is left of the compilation is not
    // freed piece by piece.
    lower.exits_after = true;
    // Only the findings are rendered: the IR and the objects are gone before the text of
    // the files with findings is read again for their source lines.
    let Findings {
        mut diagnostics,
        objects,
    } = ambassador_compiler::compile_findings(manifests, &lower);
    diagnostics.append(&mut input.diagnostics);
    ambassador_compiler::diag::sort(&mut diagnostics);
    if args.output == LintFormat::Text {
        input.restore_texts(diagnostics.iter().filter_map(|d| d.span.map(|s| s.file)));
    }
    let sources = &input.sources;
    let summary = render::Summary::of(&diagnostics, sources.len(), objects);
    match args.output {
        LintFormat::Text => emit(&render::text(&diagnostics, sources, summary, &read_errors)),
        LintFormat::Json => {
            let v = render::json_report(&diagnostics, sources, summary, &read_errors);
            emit(&format!(
                "{}\n",
                serde_json::to_string_pretty(&v).unwrap_or_default()
            ));
        }
        LintFormat::Yaml => {
            let v = render::json_report(&diagnostics, sources, summary, &read_errors);
            emit(&ambassador_yaml_out::to_string(&v));
        }
        LintFormat::Sarif => {
            let v = render::sarif(&diagnostics, sources);
            emit(&format!(
                "{}\n",
                serde_json::to_string_pretty(&v).unwrap_or_default()
            ));
        }
    }
    if !read_errors.is_empty() {
        if args.output != LintFormat::Text {
            for e in &read_errors {
                eprintln!("error: {e}");
            }
        }
        return 2;
    }
    let threshold = match args.failure_threshold {
        Threshold::Error => Severity::Error,
        Threshold::Warning => Severity::Warning,
    };
    u8::from(diagnostics.iter().any(|d| d.severity >= threshold))
}

/// Loads for `routes` and `preview`: read errors and the count of errors in the
/// configuration go to stderr, since objects with errors are left out of what is printed.
fn load_for_output(args: &SourceArgs, lean: bool) -> Option<Loaded> {
    set_color(args.color);
    let loaded = match load(args, lean) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return None;
        }
    };
    for e in &loaded.read_errors {
        eprintln!("error: {e}");
    }
    let errors = loaded
        .compilation
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count();
    if errors > 0 {
        eprintln!(
            "warning: {errors} error(s) in the configuration; objects with errors are left out (run `kubectl ambassador lint`)"
        );
    }
    Some(loaded)
}

fn routes(args: cli::RoutesArgs) -> u8 {
    let Some(loaded) = load_for_output(&args.source, false) else {
        return 2;
    };
    let rows =
        ambassador_compiler::trace::rows::rows(&loaded.compilation.ir, &loaded.input.sources);
    let tcp =
        ambassador_compiler::trace::rows::tcp_rows(&loaded.compilation.ir, &loaded.input.sources);
    let data = || serde_json::json!({"http": rows, "tcp": tcp});
    match args.output {
        RoutesFormat::Table => emit(&routes::table(&rows, &tcp)),
        RoutesFormat::Json => emit(&format!(
            "{}\n",
            serde_json::to_string_pretty(&data()).unwrap_or_default()
        )),
        RoutesFormat::Yaml => emit(&ambassador_yaml_out::to_string(&data())),
    }
    if loaded.read_errors.is_empty() {
        0
    } else {
        2
    }
}

fn preview(args: cli::PreviewArgs) -> u8 {
    use ambassador_compiler::envoy::TypeFilter;
    let Some(loaded) = load_for_output(&args.source, true) else {
        return 2;
    };
    let filter = args.kind.map(|k| match k {
        cli::ResourceType::Listener => TypeFilter::Listener,
        cli::ResourceType::Route => TypeFilter::Route,
        cli::ResourceType::Cluster => TypeFilter::Cluster,
        cli::ResourceType::Endpoint => TypeFilter::Endpoint,
        cli::ResourceType::Secret => TypeFilter::Secret,
    });
    let status = if loaded.read_errors.is_empty() { 0 } else { 2 };
    match args.output {
        // Packed only, and written as it is rendered: the dump of 20,000 Mappings is some
        // 30 MB of text, and their typed Envoy messages several times that.
        cli::DataFormat::Json => {
            // The resources are made of the IR, the Secrets and the endpoints: the input text
            // and the objects as read (their YAML trees) go first.
            let Loaded {
                input,
                mut compilation,
                ..
            } = loaded;
            drop(input);
            compilation.manifests.resources = Vec::new();
            compilation.manifests.excluded = Vec::new();
            let resources = ambassador_compiler::envoy_resources_packed(&compilation);
            drop(compilation);
            emit_with(|out| {
                ambassador_compiler::envoy::json::write_config_dump_json(
                    &resources, filter, &mut *out,
                )
                .map_err(std::io::Error::from)?;
                out.write_all(b"\n")
            })
        }
        cli::DataFormat::Yaml => {
            let resources = ambassador_compiler::envoy_resources(&loaded.compilation);
            emit(&ambassador_yaml_out::to_string(
                &ambassador_compiler::envoy::to_config_dump_json(&resources, filter),
            ))
        }
    }
    status
}

/// Exit 0 when the request is routed (to a backend or a redirect), 1 when it is not, 2
/// for a usage error or unreadable input.
fn trace(args: cli::TraceArgs) -> u8 {
    use ambassador_compiler::trace as tracer;
    let mut headers = Vec::new();
    for h in &args.headers {
        match h.split_once(':') {
            Some((k, v)) if !k.trim().is_empty() => {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            }
            _ => {
                eprintln!("error: header `{h}` is not `Name: value`");
                return 2;
            }
        }
    }
    let Some(loaded) = load_for_output(&args.source, false) else {
        return 2;
    };
    let table = ambassador_compiler::envoy::table::table_for(&loaded.compilation.ir);
    let mut req = match tracer::request_for_url(&table, &args.method, &args.url, headers) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    if let Some(p) = args.port {
        req.port = p;
    }
    if let Some(s) = args.sni {
        req.sni = Some(s);
    }
    let mut t = tracer::trace(&table, &loaded.compilation.ir, &req);
    if !t.outcome.is_routed() {
        let path = t
            .connection_manager
            .as_ref()
            .and_then(|h| h.normalized_path.clone())
            .unwrap_or_else(|| req.path.clone());
        t.left_out = tracer::left_out::left_out(&loaded.compilation, &req, &path);
    }
    let sources = &loaded.input.sources;
    match args.output {
        cli::TraceFormat::Text => emit(&trace::text(&t, sources)),
        cli::TraceFormat::Json => emit(&format!(
            "{}\n",
            serde_json::to_string_pretty(&trace::data(&t, sources)).unwrap_or_default()
        )),
        cli::TraceFormat::Yaml => emit(&ambassador_yaml_out::to_string(&trace::data(&t, sources))),
    }
    if !loaded.read_errors.is_empty() {
        return 2;
    }
    u8::from(!t.outcome.is_routed())
}

/// Exit 0 when every test passes and coverage is at least `--fail-under`, 1 when not, 2
/// when a test file cannot be read or has mistakes.
fn route_test(args: cli::TestArgs) -> u8 {
    use ambassador_compiler::source::Sources;
    let mut cases_src = Sources::new();
    for path in &args.cases {
        let text = if path == "-" {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut s).map(|_| s)
        } else {
            std::fs::read_to_string(path)
        };
        match text {
            Ok(t) => {
                cases_src.add(path.clone(), t);
            }
            Err(e) => {
                eprintln!("error: reading {path}: {e}");
                return 2;
            }
        }
    }
    let mut cases = Vec::new();
    let mut bad = 0;
    for (id, _) in cases_src.iter() {
        let (mut ok, errors) = ambassador_compiler::front::cases::read(&cases_src, id);
        cases.append(&mut ok);
        for e in errors {
            bad += 1;
            eprintln!(
                "error: {}:{}:{}: {}",
                cases_src.name(e.span.file),
                e.span.start.line,
                e.span.start.column,
                e.message
            );
        }
    }
    // A test file with mistakes is fixed first: a report on the tests that were read would
    // count the others as missing.
    if bad > 0 {
        return 2;
    }
    let Some(loaded) = load_for_output(&args.source, false) else {
        return 2;
    };
    let table = ambassador_compiler::envoy::table::table_for(&loaded.compilation.ir);
    let report = ambassador_compiler::trace::cases::run(
        &table,
        &loaded.compilation.ir,
        &loaded.input.sources,
        &cases,
    );
    let config = &loaded.input.sources;
    match args.output {
        cli::TestFormat::Text => emit(&routetest::text(&report, &cases_src)),
        cli::TestFormat::Json => emit(&format!(
            "{}\n",
            serde_json::to_string_pretty(&routetest::data(&report, &cases_src, config))
                .unwrap_or_default()
        )),
        cli::TestFormat::Junit => emit(&routetest::junit(&report, &cases_src)),
    }
    if !loaded.read_errors.is_empty() {
        return 2;
    }
    let under = args
        .fail_under
        .is_some_and(|p| report.coverage.percent() + 1e-9 < p);
    if under {
        eprintln!(
            "error: {:.1}% of routes exercised, under --fail-under {}",
            report.coverage.percent(),
            args.fail_under.unwrap_or_default()
        );
    }
    u8::from(report.failed() > 0 || under)
}

/// Seconds since the epoch, or `None` with a clock set before it.
fn unix_now() -> Option<i64> {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_secs()).ok())
}

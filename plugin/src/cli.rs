//! Command-line flags. kubectl refuses global flags before a plugin's name, so the plugin parses them itself.

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "kubectl ambassador",
    bin_name = "kubectl ambassador",
    version,
    about = "Lint, list, preview, trace and test Ambassador configuration before it reaches traffic",
    propagate_version = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Report everything wrong in Ambassador configuration, with exact positions.
    Lint(LintArgs),
    /// Show the route table the configuration compiles to, in Envoy's evaluation order.
    Routes(RoutesArgs),
    /// Print the Envoy resources the configuration compiles to, in the shape of Envoy's /config_dump.
    Preview(PreviewArgs),
    /// Show where a request goes through the compiled Envoy configuration, and why every other route does not take it.
    Trace(TraceArgs),
    /// Run route tests (a request and what should become of it) and report route coverage.
    Test(TestArgs),
}

/// Where configuration comes from: files, or the cluster kubeconfig points at.
#[derive(Args, Debug, Clone)]
pub struct SourceArgs {
    /// Files or directories to read (`-` for stdin). Without it, read the cluster.
    #[arg(short = 'f', long = "filename", value_name = "PATH")]
    pub filename: Vec<String>,
    /// Read directories recursively.
    #[arg(short = 'R', long)]
    pub recursive: bool,
    /// Only objects whose ambassador_id includes this id apply.
    #[arg(long, default_value = "default", value_name = "ID")]
    pub ambassador_id: String,
    /// Namespace for objects that name none; with a cluster, the namespace to read.
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// With a cluster: read every namespace.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Path to the kubeconfig file.
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<String>,
    /// The kubeconfig context to use.
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,
    /// When to colour the output.
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
}

#[derive(Args, Debug)]
pub struct LintArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = LintFormat::Text)]
    pub output: LintFormat,
    /// The lowest severity that makes the run fail (exit 1).
    #[arg(long, value_enum, default_value_t = Threshold::Error)]
    pub failure_threshold: Threshold,
}

#[derive(Args, Debug)]
pub struct RoutesArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = RoutesFormat::Table)]
    pub output: RoutesFormat,
}

#[derive(Args, Debug)]
pub struct PreviewArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = DataFormat::Yaml)]
    pub output: DataFormat,
    /// Only resources of this type.
    #[arg(long = "type", value_enum)]
    pub kind: Option<ResourceType>,
}

#[derive(Args, Debug)]
pub struct TraceArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    /// The request method.
    #[arg(
        short = 'X',
        long = "request",
        default_value = "GET",
        value_name = "METHOD"
    )]
    pub method: String,
    /// A request header, `Name: value` (repeatable). `Host: ...` replaces the URL's host.
    #[arg(short = 'H', long = "header", value_name = "HEADER")]
    pub headers: Vec<String>,
    /// The SNI a TLS client sends (default: the URL's host).
    #[arg(long, value_name = "NAME")]
    pub sni: Option<String>,
    /// The listener port the request reaches (default: the URL's port, else 8080 for http
    /// and 8443 for https, as Emissary's default listeners).
    #[arg(long, value_name = "N")]
    pub port: Option<u16>,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = TraceFormat::Text)]
    pub output: TraceFormat,
    /// The request URL, `http://host[:port]/path?query` or `https://...`.
    pub url: String,
}

#[derive(Args, Debug)]
pub struct TestArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    /// Route test files (YAML: `tests:` with `name`, `input` and `expect` each).
    #[arg(long = "cases", value_name = "FILE", required = true)]
    pub cases: Vec<String>,
    /// Fail (exit 1) when fewer than this percentage of routes are exercised.
    #[arg(long, value_name = "PERCENT")]
    pub fail_under: Option<f64>,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = TestFormat::Text)]
    pub output: TestFormat,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum TestFormat {
    Text,
    Json,
    Junit,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum TraceFormat {
    Text,
    Json,
    Yaml,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataFormat {
    Yaml,
    Json,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResourceType {
    Listener,
    Route,
    Cluster,
    Endpoint,
    /// Certificates (SDS), private keys redacted.
    Secret,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LintFormat {
    Text,
    Json,
    Yaml,
    Sarif,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoutesFormat {
    Table,
    Json,
    Yaml,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Threshold {
    Error,
    Warning,
}

//! `ambassador-webhook`: serves admission and ADS from one watched view.
//!
//! The binary is thin: it parses flags and resolves them into options; `run.rs`, the
//! composition root, builds the process from them and runs it until SIGTERM. Components
//! run side by side in one process and share the metrics and readiness handles:
//!
//! - the admission webhook;
//! - the watched view (`--kube` or `--watch-dir`), which feeds the validator, sets
//!   readiness once its first synced state is compiled, and keeps the watched-objects gauge;
//! - the ADS publisher (`--ads-listen`), compiled from the same view.
//!
//! `publish` runs the publisher alone on a directory of manifests (no cluster needed), and
//! `bootstrap` prints the Envoy bootstrap that points Envoy at a publisher.

// mimalloc: the compiler allocates many small nodes, and mimalloc's per-thread free lists
// make that much cheaper than glibc's malloc (docs/PERFORMANCE.md).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use ambassador_webhook::bootstrap::{self, ApiType, Bootstrap};
use ambassador_webhook::pipeline::PipelineOptions;
use ambassador_webhook::server::Limits;
use ambassador_webhook::telemetry::{self, LogFormat};
use ambassador_webhook::{certs, run};
use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "ambassador-webhook", version, about)]
struct Cli {
    /// Log line format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "AMBASSADOR_LOG_FORMAT")]
    log_format: LogFormat,
    /// Default log filter; `RUST_LOG` overrides it.
    #[arg(
        long,
        global = true,
        default_value = "info",
        env = "AMBASSADOR_LOG_LEVEL"
    )]
    log_level: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the in-cluster server.
    Serve(ServeArgs),
    /// Run the ADS publisher alone on a directory of manifests, reloading on change.
    Publish(PublishArgs),
    /// Print the Envoy bootstrap for a publisher at a given address.
    Bootstrap(BootstrapArgs),
    /// Certificate helpers.
    #[command(subcommand)]
    Cert(CertCommand),
}

/// Flags of `publish`.
#[derive(Debug, Args)]
struct PublishArgs {
    /// Directory of manifests (`*.yaml`, `*.yml`, `*.json`, searched recursively).
    #[arg(
        long,
        value_name = "DIR",
        required_unless_present = "kube",
        conflicts_with = "kube"
    )]
    dir: Option<PathBuf>,
    /// Publish what the cluster holds instead (kube-rs watchers), without the admission server.
    #[arg(long)]
    kube: bool,
    /// With --kube: only this namespace (default: every namespace).
    #[arg(long, requires = "kube", value_name = "NAMESPACE")]
    namespace: Option<String>,
    /// Address of the ADS (gRPC) listener Envoy connects to.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:18000")]
    ads_listen: SocketAddr,
    /// Address Envoy's listeners bind to.
    #[arg(long, value_name = "IP", default_value = "0.0.0.0")]
    listen_address: String,
    /// Envoy's cleartext HTTP port.
    #[arg(long, default_value_t = 8080)]
    http_port: u16,
    /// Envoy's HTTPS port, used when a Host terminates TLS.
    #[arg(long, default_value_t = 8443)]
    https_port: u16,
    /// Milliseconds between scans of the directory.
    #[arg(long, default_value_t = 250, value_name = "MS")]
    poll_ms: u64,
    /// Milliseconds the files must stay unchanged before they are read.
    #[arg(long, default_value_t = 50, value_name = "MS")]
    debounce_ms: u64,
    /// Only objects whose ambassador_id includes this id are this instance's.
    #[arg(
        long,
        default_value = "default",
        value_name = "ID",
        env = "AMBASSADOR_ID"
    )]
    ambassador_id: String,
}

/// Flags of `bootstrap`.
#[derive(Debug, Args)]
struct BootstrapArgs {
    /// Where the publisher listens, as Envoy reaches it: `HOST:PORT` (an IP or a DNS name).
    #[arg(long, value_name = "HOST:PORT")]
    ads_address: String,
    /// `node.id` (Envoy's `--service-node` overrides it).
    #[arg(long, default_value = "ambassador")]
    node_id: String,
    /// `node.cluster`.
    #[arg(long, default_value = "ambassador")]
    node_cluster: String,
    /// Envoy's admin port (on 127.0.0.1).
    #[arg(long, default_value_t = bootstrap::IN_CLUSTER_ADMIN_PORT)]
    admin_port: u16,
    /// Incremental (delta) xDS instead of state of the world.
    #[arg(long)]
    delta: bool,
}

/// Flags of `serve`: one flattened group per component in the process.
#[derive(Debug, Args)]
struct ServeArgs {
    #[command(flatten)]
    webhook: WebhookArgs,
    #[command(flatten)]
    view: ViewArgs,
    #[command(flatten)]
    ads: AdsArgs,
    /// Seconds to keep serving after SIGTERM while reporting not ready, so the
    /// endpoint is removed from the Service before connections are refused.
    #[arg(long, default_value_t = 5, value_name = "SECONDS")]
    shutdown_delay: u64,
}

/// The ADS publisher in the same process, fed by the same view.
#[derive(Debug, Args)]
struct AdsArgs {
    /// Also serve ADS (gRPC) for Envoy here, compiled from the same view (needs --kube or
    /// --watch-dir).
    #[arg(long, value_name = "ADDR")]
    ads_listen: Option<SocketAddr>,
    /// Address Envoy's listeners bind to.
    #[arg(long, value_name = "IP", default_value = "0.0.0.0")]
    envoy_listen_address: String,
    /// Envoy's cleartext HTTP port.
    #[arg(long, default_value_t = 8080)]
    envoy_http_port: u16,
    /// Envoy's HTTPS port, used when a Host terminates TLS.
    #[arg(long, default_value_t = 8443)]
    envoy_https_port: u16,
}

/// Where the server's view of the configuration comes from.
#[derive(Debug, Args)]
struct ViewArgs {
    /// Watch the cluster (kube-rs watchers on Services, EndpointSlices and getambassador.io
    /// resources). The server is not ready until the first list has completed.
    #[arg(long, conflicts_with = "watch_dir")]
    kube: bool,
    /// With --kube: only this namespace (default: every namespace).
    #[arg(long, requires = "kube", value_name = "NAMESPACE")]
    namespace: Option<String>,
    /// Watch a directory of manifests instead of a cluster (local use).
    #[arg(long, value_name = "DIR")]
    watch_dir: Option<PathBuf>,
    /// With --watch-dir: read subdirectories too.
    #[arg(long, requires = "watch_dir")]
    recursive: bool,
    /// With --watch-dir: quiet period after a change before files are read.
    #[arg(long, default_value_t = 20, value_name = "MS")]
    debounce_ms: u64,
    /// With --kube: the coordination.k8s.io Lease that elects the one replica writing
    /// status and Events (holder: $POD_NAME). Every replica serves admission and ADS.
    #[arg(long, default_value = "ambassador-webhook", value_name = "NAME")]
    lease_name: String,
    /// With --kube: the Lease's namespace (default: the kubeconfig's or service
    /// account's namespace).
    #[arg(long, env = "POD_NAMESPACE", value_name = "NAMESPACE")]
    lease_namespace: Option<String>,
}

impl ViewArgs {
    fn source(&self) -> Option<run::Source> {
        if self.kube {
            Some(run::Source::Kube {
                namespace: self.namespace.clone(),
            })
        } else {
            self.watch_dir.as_ref().map(|path| run::Source::Dir {
                path: path.clone(),
                recursive: self.recursive,
                debounce: Duration::from_millis(self.debounce_ms),
            })
        }
    }
}

#[derive(Debug, Args)]
struct WebhookArgs {
    /// Directory holding `tls.crt` and `tls.key` (a mounted kubernetes.io/tls Secret).
    #[arg(long, value_name = "DIR", env = "AMBASSADOR_WEBHOOK_TLS_DIR")]
    tls_dir: PathBuf,
    /// Address of the HTTPS listener.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:8443")]
    listen: SocketAddr,
    /// Largest accepted AdmissionReview body in bytes.
    #[arg(long, default_value_t = Limits::default().max_body_bytes)]
    max_body_bytes: usize,
    /// Seconds a client has to finish the TLS handshake, the request head, and the body (each).
    #[arg(long, default_value_t = 5, value_name = "SECONDS")]
    read_timeout: u64,
    /// Connections served at once.
    #[arg(long, default_value_t = Limits::default().max_connections)]
    max_connections: usize,
    /// Seconds between re-reads of the certificate directory, in case a change event is missed.
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    cert_poll_interval: u64,
    /// Deny objects that conflict with what the cluster already holds (the same route bound to
    /// another service, shadowing, a canary that cannot join its group, a duplicate name), and
    /// objects that wait for another one (an undefined TLSContext or resolver, a canary group
    /// not complete yet), instead of admitting them with a warning.
    #[arg(long, env = "AMBASSADOR_WEBHOOK_REJECT_CONFLICTS")]
    reject_conflicts: bool,
    /// Only objects whose ambassador_id includes this id are this instance's.
    #[arg(
        long,
        default_value = "default",
        value_name = "ID",
        env = "AMBASSADOR_ID"
    )]
    ambassador_id: String,
}

#[derive(Debug, Subcommand)]
enum CertCommand {
    /// Write a self-signed CA (`ca.crt`) and a serving certificate (`tls.crt`, `tls.key`) signed by it.
    Generate(GenerateArgs),
}

#[derive(Debug, Args)]
struct GenerateArgs {
    /// Output directory (created if missing).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// DNS name or IP address for the serving certificate; repeat for more.
    /// In a cluster: `ambassador-webhook.ambassador-system.svc`.
    #[arg(long = "dns-name", value_name = "NAME", required = true)]
    dns_names: Vec<String>,
    /// Validity in days.
    #[arg(long, default_value_t = 365)]
    valid_days: u32,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init(cli.log_format, &cli.log_level);
    let result = match cli.command {
        Command::Serve(args) => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the runtime: {e}"))
            .and_then(|runtime| runtime.block_on(run::serve(serve_options(args)))),
        Command::Publish(args) => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the runtime: {e}"))
            .and_then(|runtime| {
                let (source, ads) = publish_options(args);
                runtime.block_on(run::publish(source, ads))
            }),
        Command::Bootstrap(args) => print_bootstrap(&args),
        Command::Cert(CertCommand::Generate(args)) => generate(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            tracing::error!("{message}");
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn generate(args: &GenerateArgs) -> Result<(), String> {
    let generated = certs::generate(&certs::Request {
        names: args.dns_names.clone(),
        valid_days: args.valid_days,
    })
    .map_err(|e| e.to_string())?;
    generated.write_to(&args.out).map_err(|e| e.to_string())?;
    println!(
        "wrote {dir}/ca.crt, {dir}/tls.crt, {dir}/tls.key",
        dir = args.out.display()
    );
    Ok(())
}

fn print_bootstrap(args: &BootstrapArgs) -> Result<(), String> {
    let (host, port) = args
        .ads_address
        .rsplit_once(':')
        .ok_or_else(|| format!("`{}` is not HOST:PORT", args.ads_address))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("`{port}` is not a port number"))?;
    // `[::1]:18000`: the bootstrap wants the address without brackets.
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let api = if args.delta {
        ApiType::DeltaGrpc
    } else {
        ApiType::Grpc
    };
    let yaml = Bootstrap::new(&args.node_id, host, port, args.admin_port)
        .with_node_cluster(&args.node_cluster)
        .with_api_type(api)
        .to_yaml();
    print!("{yaml}");
    Ok(())
}

/// `publish`'s flags, resolved.
fn publish_options(args: PublishArgs) -> (run::PublishSource, run::AdsOptions) {
    let ads = run::AdsOptions {
        listen: args.ads_listen,
        pipeline: PipelineOptions::default()
            .listen(&args.listen_address, args.http_port)
            .https_port(args.https_port)
            .ambassador_id(&args.ambassador_id),
    };
    let source = match args.dir {
        Some(path) => run::PublishSource::Dir {
            path,
            poll: Duration::from_millis(args.poll_ms),
            debounce: Duration::from_millis(args.debounce_ms),
        },
        None => run::PublishSource::Kube {
            namespace: args.namespace,
        },
    };
    (source, ads)
}

/// `serve`'s flags, resolved.
fn serve_options(args: ServeArgs) -> run::ServeOptions {
    let webhook = args.webhook;
    let timeout = Duration::from_secs(webhook.read_timeout);
    let ads = args.ads.ads_listen.map(|listen| run::AdsOptions {
        listen,
        pipeline: PipelineOptions::default()
            .listen(&args.ads.envoy_listen_address, args.ads.envoy_http_port)
            .https_port(args.ads.envoy_https_port)
            .ambassador_id(&webhook.ambassador_id),
    });
    run::ServeOptions {
        view: args.view.source(),
        lease_name: args.view.lease_name,
        lease_namespace: args.view.lease_namespace,
        ads,
        shutdown_delay: Duration::from_secs(args.shutdown_delay),
        webhook: run::WebhookOptions {
            listen: webhook.listen,
            tls_dir: webhook.tls_dir,
            limits: Limits {
                max_body_bytes: webhook.max_body_bytes,
                handshake_timeout: timeout,
                header_read_timeout: timeout,
                body_read_timeout: timeout,
                max_connections: webhook.max_connections,
                ..Limits::default()
            },
            cert_poll_interval: Duration::from_secs(webhook.cert_poll_interval),
            reject_conflicts: webhook.reject_conflicts,
            ambassador_id: webhook.ambassador_id,
        },
    }
}

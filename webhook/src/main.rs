//! `ambassador-webhook`: serves admission and ADS from one watched view.
//!
//! The binary is thin: it parses flags, builds the pieces the library offers
//! and runs them until SIGTERM. Components run side by side in one process and
//! share the [`Metrics`] and [`Readiness`] handles:
//!
//! - the admission webhook (here);
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
use std::sync::Arc;
use std::time::Duration;

use ambassador_webhook::admission::Validate;
use ambassador_webhook::ads::{self, Publisher};
use ambassador_webhook::bootstrap::{self, ApiType, Bootstrap};
use ambassador_webhook::metrics::Metrics;
use ambassador_webhook::pipeline::dir::DirFeed;
use ambassador_webhook::pipeline::{self, Feed, Pipeline, PipelineOptions};
use ambassador_webhook::server::{self, AppState, Limits, Readiness};
use ambassador_webhook::telemetry::{self, LogFormat};
use ambassador_webhook::validator::CompilerValidator;
use ambassador_webhook::{certs, tls};
use ambassador_webhook::{lease, run, view};
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
            .and_then(|runtime| runtime.block_on(serve(args))),
        Command::Publish(args) => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the runtime: {e}"))
            .and_then(|runtime| runtime.block_on(publish(args))),
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

/// `publish`: the directory feeds the pipeline, the pipeline feeds the publisher.
async fn publish(args: PublishArgs) -> Result<(), String> {
    let options = PipelineOptions::default()
        .listen(&args.listen_address, args.http_port)
        .https_port(args.https_port)
        .ambassador_id(&args.ambassador_id);
    let (mut pipeline, snapshots) = Pipeline::new(options);
    let Some(dir) = args.dir.clone() else {
        return publish_from_cluster(args, pipeline, snapshots).await;
    };
    let mut feed = DirFeed::new(
        &dir,
        Duration::from_millis(args.poll_ms),
        Duration::from_millis(args.debounce_ms),
    );
    // The first configuration is compiled before Envoy can connect, so that it never
    // sees an empty snapshot.
    let first = feed.next().await.map_err(|e| error_chain(&e))?;
    pipeline.update(first);
    let publisher = Publisher::new(snapshots);
    let listener = tokio::net::TcpListener::bind(args.ads_listen)
        .await
        .map_err(|e| format!("cannot listen for ADS on {}: {e}", args.ads_listen))?;
    tracing::info!(ads = %args.ads_listen, dir = %dir.display(), "publishing");
    let nacks = tokio::spawn(report_nacks(publisher.clone()));
    let server = ads::serve_with_shutdown(publisher, listener, wait_for_signal());
    let poll = Duration::from_millis(args.poll_ms.max(100));
    let reload = async {
        loop {
            // A directory that cannot be read (unmounted, renamed) is retried: Envoy
            // keeps the last configuration meanwhile.
            let Err(e) = pipeline::follow(&mut pipeline, &mut feed, |_| {}).await;
            tracing::warn!(error = %error_chain(&e), "cannot read the manifests; retrying");
            tokio::time::sleep(poll).await;
        }
    };
    let result = tokio::select! {
        served = server => served.map_err(|e| error_chain(&e)),
        () = reload => Ok(()),
    };
    nacks.abort();
    result
}

/// `publish --kube`: the ADS publisher alone, fed by the cluster view.
async fn publish_from_cluster(
    args: PublishArgs,
    mut pipeline: Pipeline,
    snapshots: tokio::sync::watch::Receiver<Arc<ambassador_webhook::ads::Snapshot>>,
) -> Result<(), String> {
    let source = run::Source::Kube {
        namespace: args.namespace.clone(),
    };
    let running = run::start(&source).await.map_err(|e| e.to_string())?;
    let mut feed = run::ViewFeed::new(&running.view);
    let first = feed.next().await.map_err(|e| e.to_string())?;
    pipeline.update(first);
    let publisher = Publisher::new(snapshots);
    let listener = tokio::net::TcpListener::bind(args.ads_listen)
        .await
        .map_err(|e| format!("cannot listen for ADS on {}: {e}", args.ads_listen))?;
    tracing::info!(ads = %args.ads_listen, "publishing what the cluster holds");
    let nacks = tokio::spawn(report_nacks(publisher.clone()));
    let server = ads::serve_with_shutdown(publisher, listener, wait_for_signal());
    let follow = async {
        let Err(e) = pipeline::follow(&mut pipeline, &mut feed, |_| {}).await;
        tracing::error!(error = %e, "the view stopped; no more updates for Envoy");
    };
    let result = tokio::select! {
        served = server => served.map_err(|e| error_chain(&e)),
        () = follow => Ok(()),
    };
    nacks.abort();
    result
}

/// Logs every NACK once, with Envoy's message and the resources it refused.
async fn report_nacks(publisher: Publisher) {
    let mut seen = std::collections::BTreeSet::new();
    loop {
        for node in publisher.status() {
            for (type_url, st) in &node.types {
                if let Some(nack) = &st.last_nack {
                    if seen.insert((node.stream_id, type_url.clone(), nack.nonce.clone())) {
                        tracing::warn!(
                            node = %node.node_id,
                            %type_url,
                            resources = ?nack.resource_names,
                            error = %nack.error,
                            "Envoy refused a configuration; it keeps serving the previous one"
                        );
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// An error with its sources, `: `-separated.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(&format!(": {c}"));
        cause = c.source();
    }
    out
}

async fn serve(args: ServeArgs) -> Result<(), String> {
    tls::install_crypto_provider();
    let metrics = Arc::new(Metrics::new());
    let readiness = Readiness::new();

    let webhook = &args.webhook;
    let timeout = Duration::from_secs(webhook.read_timeout);
    let limits = Limits {
        max_body_bytes: webhook.max_body_bytes,
        handshake_timeout: timeout,
        header_read_timeout: timeout,
        body_read_timeout: timeout,
        max_connections: webhook.max_connections,
        ..Limits::default()
    };
    let resolver = Arc::new(tls::ReloadingCert::load(&webhook.tls_dir).map_err(|e| e.to_string())?);
    let _watcher = tls::CertWatcher::spawn(
        Arc::clone(&resolver),
        Arc::clone(&metrics),
        Duration::from_secs(webhook.cert_poll_interval.max(1)),
    )
    .map_err(|e| e.to_string())?;
    let tls_config = Arc::new(tls::server_config(resolver).map_err(|e| e.to_string())?);

    let compiler_validator = Arc::new(
        CompilerValidator::new(webhook.ambassador_id.clone())
            .reject_conflicts(webhook.reject_conflicts),
    );
    let validator: Arc<dyn Validate> = Arc::clone(&compiler_validator) as Arc<dyn Validate>;

    let app = server::router(AppState {
        validator,
        metrics: Arc::clone(&metrics),
        readiness: readiness.clone(),
        limits: limits.clone(),
    });
    let listener = server::bind(webhook.listen)
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!(listen = %webhook.listen, tls_dir = %webhook.tls_dir.display(), "admission webhook listening");

    // With a view, readiness waits until the first synced view is compiled into the
    // validator; without one there is nothing to wait for.
    let _view = match args.view.source() {
        Some(source) => {
            let running = run::start(&source).await.map_err(|e| e.to_string())?;
            let _gauges =
                view::publish_health(&running.view, Readiness::new(), Arc::clone(&metrics));
            let reporter = match source {
                run::Source::Kube { .. } => {
                    let client = kube::Client::try_default()
                        .await
                        .map_err(|e| e.to_string())?;
                    let instance =
                        std::env::var("POD_NAME").unwrap_or_else(|_| "ambassador-webhook".into());
                    // One replica writes status and Events: the holder of the Lease.
                    let namespace = args
                        .view
                        .lease_namespace
                        .clone()
                        .unwrap_or_else(|| client.default_namespace().to_string());
                    let options =
                        lease::LeaseOptions::new(&namespace, &args.view.lease_name, &instance);
                    let (leadership, elector) = lease::spawn(client.clone(), options);
                    // On SIGTERM the Lease is released, so the other replica takes over
                    // at its next attempt.
                    tokio::spawn(async move {
                        wait_for_signal().await;
                        elector.stop().await;
                    });
                    Some(Arc::new(
                        view::kube::Reporter::new(
                            client,
                            "getambassador.io/ambassador-webhook",
                            &instance,
                        )
                        .with_leadership(leadership),
                    ))
                }
                run::Source::Dir { .. } => None,
            };
            let _feed = run::feed_validator(
                &running.view,
                Arc::clone(&compiler_validator),
                readiness.clone(),
                Arc::clone(&metrics),
                reporter,
            );
            if let Some(addr) = args.ads.ads_listen {
                let options = PipelineOptions::default()
                    .listen(&args.ads.envoy_listen_address, args.ads.envoy_http_port)
                    .https_port(args.ads.envoy_https_port)
                    .ambassador_id(&webhook.ambassador_id);
                let (mut pipeline, snapshots) = Pipeline::new(options);
                let mut feed = run::ViewFeed::new(&running.view);
                let publisher = Publisher::new(snapshots);
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|e| format!("cannot listen for ADS on {addr}: {e}"))?;
                tracing::info!(ads = %addr, "publishing to Envoy from the same view");
                tokio::spawn(report_nacks(publisher.clone()));
                tokio::spawn(async move {
                    if let Err(e) =
                        ads::serve_with_shutdown(publisher, listener, wait_for_signal()).await
                    {
                        tracing::error!(error = %error_chain(&e), "the ADS server stopped");
                    }
                });
                tokio::spawn(async move {
                    let Err(e) = pipeline::follow(&mut pipeline, &mut feed, |_| {}).await;
                    tracing::error!(error = %e, "the view stopped; no more updates for Envoy");
                });
            }
            Some(running)
        }
        None => {
            if args.ads.ads_listen.is_some() {
                return Err("--ads-listen needs a view: --kube or --watch-dir".into());
            }
            readiness.set_ready(true);
            None
        }
    };

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let shutdown_delay = Duration::from_secs(args.shutdown_delay);
    let signals = {
        let readiness = readiness.clone();
        async move {
            wait_for_signal().await;
            tracing::info!(
                ?shutdown_delay,
                "termination requested; reporting not ready"
            );
            readiness.set_ready(false);
            tokio::time::sleep(shutdown_delay).await;
            let _ = stop_tx.send(true);
        }
    };
    tokio::spawn(signals);
    let mut stop = stop_rx;
    server::serve(listener, tls_config, app, limits, metrics, async move {
        let _ = stop.wait_for(|stopped| *stopped).await;
    })
    .await;
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

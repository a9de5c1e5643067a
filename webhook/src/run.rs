//! The composition root: builds the process of every subcommand (`serve`, `publish`) from options `main.rs` resolved from flags.
//!
//! The watched view feeds the admission validator and the ADS pipeline, readiness follows
//! the first synced view; the ADS publisher is wired once ([`publisher`]) for `serve`,
//! `publish` and `publish --kube`.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::admission::Validate;
use crate::ads::{self, Publisher};
use crate::lease::{self, Leadership};
use crate::metrics::Metrics;
use crate::pipeline::dir::DirFeed;
use crate::pipeline::{self, Feed, Pipeline, PipelineOptions};
use crate::server::{self, AppState, Limits, Readiness};
use crate::tls;
use crate::validator::CompilerValidator;
use crate::view::kube::{report_status, verdicts, ReportError, Reporter, Verdict};
use crate::view::{self, Key, View};

/// Where the view comes from.
#[derive(Clone, Debug)]
pub enum Source {
    /// A directory of manifests, watched for changes (local use, no cluster).
    Dir {
        path: PathBuf,
        recursive: bool,
        debounce: Duration,
    },
    /// The cluster, through kube-rs watchers; `None` watches every namespace.
    Kube { namespace: Option<String> },
}

/// Why the view could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("watching {path}: {message}")]
    Dir { path: String, message: String },
    #[error("connecting to the cluster: {0}")]
    Kube(String),
}

/// A running view and the tasks that keep it current. Dropping it stops them.
pub struct Running {
    pub view: View,
    _dir: Option<view::dir::DirWatch>,
    kube: Option<JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(k) = self.kube.take() {
            k.abort();
        }
    }
}

/// Starts the view from `source`. Must be called inside a tokio runtime.
pub async fn start(source: &Source) -> Result<Running, Error> {
    let view = View::new();
    match source {
        Source::Dir {
            path,
            recursive,
            debounce,
        } => {
            let options = view::dir::DirOptions {
                debounce: *debounce,
                recursive: *recursive,
                on_problem: None,
            };
            let watch = view::dir::watch(path, view.clone(), options)
                .await
                .map_err(|e| Error::Dir {
                    path: path.display().to_string(),
                    message: e.to_string(),
                })?;
            Ok(Running {
                view,
                _dir: Some(watch),
                kube: None,
            })
        }
        Source::Kube { namespace } => {
            let client = kube::Client::try_default()
                .await
                .map_err(|e| Error::Kube(e.to_string()))?;
            let options = view::kube::KubeOptions {
                namespace: namespace.clone(),
                ..Default::default()
            };
            let task = view::kube::spawn(client, view.clone(), options);
            Ok(Running {
                view,
                _dir: None,
                kube: Some(task),
            })
        }
    }
}

/// Keeps the validator's view current with a pipeline of its own (no publisher), and sets
/// `readiness` once a synced view has been compiled into it: [`follow_view`] with a
/// pipeline compiling with the validator's options.
pub fn feed_validator(
    view: &View,
    validator: Arc<CompilerValidator>,
    readiness: Readiness,
    metrics: Arc<crate::metrics::Metrics>,
    reporter: Option<Arc<Reporter>>,
) -> JoinHandle<()> {
    let options = PipelineOptions {
        front: validator.options().clone(),
        ..PipelineOptions::default()
    };
    let (pipeline, _) = Pipeline::new(options);
    follow_view(view, pipeline, validator, readiness, metrics, reporter)
}

/// The one compilation of the view: each change goes through `pipeline` (whose snapshots an
/// ADS publisher may serve), and the validator's view follows the same session
/// ([`CompilerValidator::follow`]), at the cost of the change. Sets `readiness` once a synced
/// view has been compiled: the webhook is not ready before it knows the cluster.
///
/// With a `reporter` (cluster mode), each object's verdict is written back where its owner
/// sees it: the `status` of a `getambassador.io` resource, or an Event on a Service. When
/// the reporter follows a Lease, only the leader writes, and a replica that becomes the
/// leader writes the verdicts of the view it holds at once.
pub fn follow_view(
    view: &View,
    pipeline: Pipeline,
    validator: Arc<CompilerValidator>,
    readiness: Readiness,
    metrics: Arc<crate::metrics::Metrics>,
    reporter: Option<Arc<Reporter>>,
) -> JoinHandle<()> {
    let view = view.clone();
    tokio::spawn(async move {
        let mut rx = view.subscribe();
        let mut ready = false;
        let mut leadership = reporter.as_ref().and_then(|r| r.leadership());
        let mut pipeline = Some(pipeline);
        // The last snapshot compiled and its verdicts, for a replica that becomes leader.
        let mut last: Option<(view::Snapshot, Vec<(Key, Verdict)>)>;
        // Nothing is compiled before the view is synced: Envoy must never be sent a part of
        // the configuration, and admission is not ready before it anyway.
        if rx.wait_for(|s| s.is_synced()).await.is_err() {
            return;
        }
        loop {
            let snapshot = rx.borrow_and_update().clone();
            let v = Arc::clone(&validator);
            let snap = snapshot.clone();
            let Some(mut p) = pipeline.take() else {
                return;
            };
            let compiled = tokio::task::spawn_blocking(move || {
                let report =
                    p.update_then(snap.sources(), |session, change| v.follow(session, change));
                let verdicts = verdicts(&snap, &report.findings);
                (p, v.view_size(), report, verdicts)
            })
            .await;
            match compiled {
                Ok((p, size, report, verdicts)) => {
                    pipeline = Some(p);
                    if let Some(reporter) = &reporter {
                        report_all(reporter, &snapshot, &verdicts).await;
                    }
                    last = Some((snapshot, verdicts));
                    // The size of the compiled view the validator checks against.
                    metrics.set_view_size("compiled-ambassador-resources", size as u64);
                    tracing::debug!(
                        resources = size,
                        full = report.full,
                        took = ?report.timings.total,
                        "view compiled for admission and ADS"
                    )
                }
                Err(e) => {
                    tracing::error!(error = %e, "compiling the view failed; admission and ADS keep the last one");
                    return;
                }
            }
            if !ready {
                ready = true;
                readiness.set_ready(true);
                tracing::info!("view synced and compiled; admission ready");
            }
            // Until the view changes: a replica that becomes the leader meanwhile
            // writes what it holds.
            loop {
                tokio::select! {
                    changed = rx.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        break;
                    }
                    () = gained(&mut leadership) => {
                        if let (Some(reporter), Some((snapshot, verdicts))) = (&reporter, &last) {
                            report_all(reporter, snapshot, verdicts).await;
                        }
                    }
                }
            }
        }
    })
}

/// Waits for a new term of leadership; never returns without an election.
async fn gained(leadership: &mut Option<Leadership>) {
    match leadership {
        Some(l) => l.gained().await,
        None => std::future::pending().await,
    }
}

/// Writes each verdict back, while this replica may write.
async fn report_all(reporter: &Reporter, snapshot: &view::Snapshot, verdicts: &[(Key, Verdict)]) {
    for (key, verdict) in verdicts {
        // Most verdicts are the ones already written: skip them before reading the object.
        if reporter.wrote(key, verdict) {
            continue;
        }
        let Some(object) = snapshot.get(key) else {
            continue;
        };
        match report_status(reporter, &object, verdict).await {
            Ok(_) => {}
            Err(ReportError::NotLeader) => {
                tracing::debug!("not the leader: another replica writes status and Events");
                return;
            }
            Err(e) => tracing::warn!(error = %e, "cannot report an object's status"),
        }
    }
}

/// The view as a [`Feed`] for the ADS pipeline: the first call waits for the synced view,
/// each later call for the next change.
pub struct ViewFeed {
    rx: tokio::sync::watch::Receiver<view::Snapshot>,
    started: bool,
}

impl ViewFeed {
    pub fn new(view: &View) -> ViewFeed {
        ViewFeed {
            rx: view.subscribe(),
            started: false,
        }
    }
}

/// The view's change channel closed: the view is gone.
#[derive(Debug, thiserror::Error)]
#[error("the view has stopped")]
pub struct ViewClosed;

impl Feed for ViewFeed {
    type Error = ViewClosed;

    async fn next(&mut self) -> Result<Vec<(String, String)>, ViewClosed> {
        if self.started {
            self.rx.changed().await.map_err(|_| ViewClosed)?;
        } else {
            self.started = true;
            self.rx
                .wait_for(|s| s.is_synced())
                .await
                .map_err(|_| ViewClosed)?;
        }
        let snapshot = self.rx.borrow_and_update().clone();
        Ok(snapshot
            .sources()
            .into_iter()
            .map(|(name, text)| (name.to_string(), text.to_string()))
            .collect())
    }
}

/// The ADS publisher's settings: where Envoy connects, and what the pipeline compiles for it.
#[derive(Clone, Debug)]
pub struct AdsOptions {
    /// Address of the ADS (gRPC) listener.
    pub listen: SocketAddr,
    /// Envoy's listener addresses and ports, and the `ambassador_id`.
    pub pipeline: PipelineOptions,
}

/// Where `publish` reads the configuration.
#[derive(Clone, Debug)]
pub enum PublishSource {
    /// A directory of manifests, polled every `poll`; files are read once they stayed
    /// unchanged for `debounce`.
    Dir {
        path: PathBuf,
        poll: Duration,
        debounce: Duration,
    },
    /// The cluster, through the watched view; `None` watches every namespace.
    Kube { namespace: Option<String> },
}

/// The admission webhook's settings.
#[derive(Clone, Debug)]
pub struct WebhookOptions {
    /// Address of the HTTPS listener.
    pub listen: SocketAddr,
    /// Directory holding `tls.crt` and `tls.key`.
    pub tls_dir: PathBuf,
    pub limits: Limits,
    /// Time between re-reads of the certificate directory.
    pub cert_poll_interval: Duration,
    pub reject_conflicts: bool,
    pub ambassador_id: String,
}

/// What `serve` runs: the admission webhook, the view it judges against, and ADS from the
/// same view.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    pub webhook: WebhookOptions,
    /// The watched view; without one, admission judges each object alone.
    pub view: Option<Source>,
    /// With the cluster view: the Lease that elects the one writer of status and Events.
    pub lease_name: String,
    /// The Lease's namespace (default: the client's).
    pub lease_namespace: Option<String>,
    /// ADS from the same view (needs a view).
    pub ads: Option<AdsOptions>,
    /// How long to keep serving after SIGTERM while reporting not ready.
    pub shutdown_delay: Duration,
}

/// `publish`: the ADS publisher alone, fed by a directory or by the cluster view.
pub async fn publish(source: PublishSource, ads: AdsOptions) -> Result<(), String> {
    let listen = ads.listen;
    match source {
        PublishSource::Dir {
            path,
            poll,
            debounce,
        } => {
            let feed = DirFeed::new(&path, poll, debounce);
            // A directory that cannot be read (unmounted, renamed) is retried: Envoy
            // keeps the last configuration meanwhile.
            let retry = poll.max(Duration::from_millis(100));
            let (served, follow) = publisher(ads, feed, true, Some(retry)).await?;
            tracing::info!(ads = %listen, dir = %path.display(), "publishing");
            until_stopped(served, follow).await
        }
        PublishSource::Kube { namespace } => {
            let running = start(&Source::Kube { namespace })
                .await
                .map_err(|e| e.to_string())?;
            let feed = ViewFeed::new(&running.view);
            let (served, follow) = publisher(ads, feed, true, None).await?;
            tracing::info!(ads = %listen, "publishing what the cluster holds");
            until_stopped(served, follow).await
        }
    }
}

/// Runs the publisher until the ADS server stops (SIGTERM) or the updates end.
async fn until_stopped(
    served: impl Future<Output = Result<(), String>>,
    follow: impl Future<Output = ()>,
) -> Result<(), String> {
    tokio::select! {
        served = served => served,
        () = follow => Ok(()),
    }
}

/// The ADS publisher fed by `feed`, ready to run: the first future serves Envoy until
/// SIGTERM (and logs NACKs meanwhile), the second compiles every change the feed reports.
/// With `first`, the first configuration is compiled before the listener is bound, so that
/// Envoy never sees an empty snapshot. A feed error is retried after `retry`, or ends the
/// updates.
async fn publisher<F: Feed + 'static>(
    options: AdsOptions,
    mut feed: F,
    first: bool,
    retry: Option<Duration>,
) -> Result<
    (
        impl Future<Output = Result<(), String>> + Send,
        impl Future<Output = ()> + Send,
    ),
    String,
> {
    let (mut pipeline, snapshots) = Pipeline::new(options.pipeline);
    if first {
        let sources = feed.next().await.map_err(|e| error_chain(&e))?;
        pipeline.update(sources);
    }
    let served = ads_server(options.listen, snapshots).await?;
    let follow = async move {
        loop {
            let Err(e) = pipeline::follow(&mut pipeline, &mut feed, |_| {}).await;
            match retry {
                Some(pause) => {
                    tracing::warn!(error = %error_chain(&e), "cannot read the manifests; retrying");
                    tokio::time::sleep(pause).await;
                }
                None => {
                    tracing::error!(error = %error_chain(&e), "the view stopped; no more updates for Envoy");
                    return;
                }
            }
        }
    };
    Ok((served, follow))
}

/// The ADS server for the snapshots a pipeline publishes, bound to `listen`, ready to serve
/// Envoy until SIGTERM (logging NACKs meanwhile).
async fn ads_server(
    listen: SocketAddr,
    snapshots: tokio::sync::watch::Receiver<Arc<crate::ads::Snapshot>>,
) -> Result<impl Future<Output = Result<(), String>> + Send, String> {
    let publisher = Publisher::new(snapshots);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen for ADS on {listen}: {e}"))?;
    Ok(async move {
        let nacks = tokio::spawn(report_nacks(publisher.clone()));
        let served = ads::serve_with_shutdown(publisher, listener, wait_for_signal()).await;
        nacks.abort();
        served.map_err(|e| error_chain(&e))
    })
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

/// `serve`: the admission webhook, the view it judges against (readiness follows its first
/// compilation), the one writer of status and Events, and ADS from the same view.
pub async fn serve(options: ServeOptions) -> Result<(), String> {
    tls::install_crypto_provider();
    let metrics = Arc::new(Metrics::new());
    let readiness = Readiness::new();

    let webhook = &options.webhook;
    let limits = webhook.limits.clone();
    let resolver = Arc::new(tls::ReloadingCert::load(&webhook.tls_dir).map_err(|e| e.to_string())?);
    let _watcher = tls::CertWatcher::spawn(
        Arc::clone(&resolver),
        Arc::clone(&metrics),
        webhook.cert_poll_interval.max(Duration::from_secs(1)),
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
    let _view = match &options.view {
        Some(source) => {
            let running = start(source).await.map_err(|e| e.to_string())?;
            let _gauges =
                view::publish_health(&running.view, Readiness::new(), Arc::clone(&metrics));
            let reporter = match source {
                Source::Kube { .. } => {
                    let client = kube::Client::try_default()
                        .await
                        .map_err(|e| e.to_string())?;
                    let instance =
                        std::env::var("POD_NAME").unwrap_or_else(|_| "ambassador-webhook".into());
                    // One replica writes status and Events: the holder of the Lease.
                    let namespace = options
                        .lease_namespace
                        .clone()
                        .unwrap_or_else(|| client.default_namespace().to_string());
                    let lease_options =
                        lease::LeaseOptions::new(&namespace, &options.lease_name, &instance);
                    let (leadership, elector) = lease::spawn(client.clone(), lease_options);
                    // On SIGTERM the Lease is released, so the other replica takes over
                    // at its next attempt.
                    tokio::spawn(async move {
                        wait_for_signal().await;
                        elector.stop().await;
                    });
                    Some(Arc::new(
                        Reporter::new(client, "getambassador.io/ambassador-webhook", &instance)
                            .with_leadership(leadership),
                    ))
                }
                Source::Dir { .. } => None,
            };
            // One compilation of the view, for admission and for ADS.
            let pipeline_options = match &options.ads {
                Some(ads) => PipelineOptions {
                    front: compiler_validator.options().clone(),
                    ..ads.pipeline.clone()
                },
                None => PipelineOptions {
                    front: compiler_validator.options().clone(),
                    ..PipelineOptions::default()
                },
            };
            let (pipeline, snapshots) = Pipeline::new(pipeline_options);
            if let Some(ads) = &options.ads {
                let served = ads_server(ads.listen, snapshots).await?;
                tracing::info!(ads = %ads.listen, "publishing to Envoy from the view admission judges against");
                tokio::spawn(async move {
                    if let Err(e) = served.await {
                        tracing::error!(error = %e, "the ADS server stopped");
                    }
                });
            }
            let _feed = follow_view(
                &running.view,
                pipeline,
                Arc::clone(&compiler_validator),
                readiness.clone(),
                Arc::clone(&metrics),
                reporter,
            );
            Some(running)
        }
        None => {
            if options.ads.is_some() {
                return Err("--ads-listen needs a view: --kube or --watch-dir".into());
            }
            readiness.set_ready(true);
            None
        }
    };

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let shutdown_delay = options.shutdown_delay;
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

/// Resolves at SIGTERM or Ctrl-C.
pub async fn wait_for_signal() {
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

//! Wiring of the one process: the watched view feeds the admission validator (and the ADS pipeline), readiness follows the first synced view.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::lease::Leadership;
use crate::pipeline::Feed;
use crate::server::Readiness;
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

/// Keeps the validator's view current, and sets `readiness` once a synced view has been
/// compiled into it: the webhook is not ready before it knows the cluster.
///
/// With a `reporter` (cluster mode), each object's verdict is written back where its owner
/// sees it: the `status` of a `getambassador.io` resource, or an Event on a Service. When
/// the reporter follows a Lease, only the leader writes, and a replica that becomes the
/// leader writes the verdicts of the view it holds at once.
pub fn feed_validator(
    view: &View,
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
        // The last snapshot compiled and its verdicts, for a replica that becomes leader.
        let mut last: Option<(view::Snapshot, Vec<(Key, Verdict)>)> = None;
        loop {
            let snapshot = rx.borrow_and_update().clone();
            let synced = snapshot.is_synced();
            let v = Arc::clone(&validator);
            let snap = snapshot.clone();
            let built = tokio::task::spawn_blocking(move || {
                let (sources, origins) = snap.compile_input();
                let started = std::time::Instant::now();
                v.set_view(&sources);
                let ctx = v.context();
                let verdicts = verdicts(&snap, &origins, &ctx.compilation().diagnostics);
                (v.view_size(), started.elapsed(), verdicts)
            })
            .await;
            match built {
                Ok((size, took, verdicts)) => {
                    if let Some(reporter) = &reporter {
                        report_all(reporter, &snapshot, &verdicts).await;
                    }
                    last = Some((snapshot, verdicts));
                    // The size of the compiled view the validator checks against.
                    metrics.set_view_size("compiled-ambassador-resources", size as u64);
                    tracing::debug!(resources = size, ?took, "admission view rebuilt")
                }
                Err(e) => tracing::error!(error = %e, "rebuilding the admission view failed"),
            }
            if synced && !ready {
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
        let Some(object) = snapshot.get(key) else {
            continue;
        };
        match report_status(reporter, object, verdict).await {
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
            .map(|(name, text)| (name, text.to_string()))
            .collect())
    }
}

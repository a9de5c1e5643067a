//! Wiring of the one process: the watched view feeds the admission validator (and the ADS pipeline), readiness follows the first synced view.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::server::Readiness;
use crate::validator::CompilerValidator;
use crate::view::{self, View};

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
pub fn feed_validator(
    view: &View,
    validator: Arc<CompilerValidator>,
    readiness: Readiness,
    metrics: Arc<crate::metrics::Metrics>,
) -> JoinHandle<()> {
    let view = view.clone();
    tokio::spawn(async move {
        let mut rx = view.subscribe();
        let mut ready = false;
        loop {
            let snapshot = rx.borrow_and_update().clone();
            let synced = snapshot.is_synced();
            let v = Arc::clone(&validator);
            let built = tokio::task::spawn_blocking(move || {
                let (sources, _) = snapshot.compile_input();
                let started = std::time::Instant::now();
                v.set_view(&sources);
                (v.view_size(), started.elapsed())
            })
            .await;
            match built {
                Ok((size, took)) => {
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
            if rx.changed().await.is_err() {
                return;
            }
        }
    })
}

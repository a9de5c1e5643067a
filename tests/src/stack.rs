//! The whole product on loopback: manifests through the real pipeline, the publisher, and a real Envoy.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ambassador_webhook::ads::{serve_with_shutdown, type_url, NodeStatus, Publisher, Snapshot};
use ambassador_webhook::bootstrap::{ApiType, Bootstrap};
use ambassador_webhook::pipeline::{ChangeKind, Pipeline, PipelineOptions, UpdateReport};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::envoy::Envoy;
use crate::http::{Client, Response};
use crate::{free_port, io, poll, Result};

/// Bound on waiting for Envoy to apply a change (it takes milliseconds).
pub const APPLIED: Duration = Duration::from_secs(20);

/// The node id of the stack's Envoy.
pub const NODE: &str = "edge";

/// Pipeline, publisher and one Envoy whose HTTP listener is on 127.0.0.1:`http_port`.
pub struct Stack {
    /// The pipeline; prefer [`Stack::apply`], which also waits for Envoy.
    pub pipeline: Pipeline,
    /// The ADS server's handle (status, NACKs).
    pub publisher: Publisher,
    /// Envoy's cleartext HTTP port.
    pub http_port: u16,
    /// Envoy's HTTPS port (unused unless a Host terminates TLS).
    pub https_port: u16,
    /// A keep-alive client.
    pub http: Client,
    /// The Envoy.
    pub envoy: Envoy,
    ads: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::result::Result<(), ambassador_webhook::ads::Error>>>,
}

impl std::fmt::Debug for Stack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stack")
            .field("ads", &self.ads)
            .field("http_port", &self.http_port)
            .field("envoy", &self.envoy)
            .finish()
    }
}

/// Pipeline options for a stack: listeners on 127.0.0.1 and free ports.
pub fn options() -> PipelineOptions {
    PipelineOptions::default()
        .listen("127.0.0.1", free_port())
        .https_port(free_port())
}

impl Stack {
    /// Compiles `sources`, serves them, starts Envoy (state of the world or delta) and waits
    /// until it ACKed everything. Returns the report of the first update too.
    pub async fn start(
        sources: Vec<(String, String)>,
        api: ApiType,
    ) -> Result<(Self, UpdateReport)> {
        Self::start_with(options(), sources, api).await
    }

    /// [`Stack::start`] with given pipeline options.
    pub async fn start_with(
        options: PipelineOptions,
        sources: Vec<(String, String)>,
        api: ApiType,
    ) -> Result<(Self, UpdateReport)> {
        let http_port = options.lower.http_port;
        let https_port = options.lower.https_port;
        let (mut pipeline, snapshots) = Pipeline::new(options);
        let report = pipeline.update(sources);
        let (publisher, ads, stop, task) = serve(snapshots).await?;
        let bootstrap = Bootstrap::new(NODE, ads.ip().to_string(), ads.port(), free_port())
            .with_api_type(api)
            .with_node_cluster("e2e");
        let envoy = Envoy::start(&bootstrap).await?;
        let stack = Self {
            pipeline,
            publisher,
            http_port,
            https_port,
            http: Client::new(),
            envoy,
            ads,
            stop: Some(stop),
            task: Some(task),
        };
        stack.wait_all_acked().await;
        Ok((stack, report))
    }

    /// Pushes `sources` through the pipeline and waits until Envoy ACKed (or NACKed) every
    /// type that changed.
    pub async fn apply(&mut self, sources: Vec<(String, String)>) -> UpdateReport {
        let since = SystemTime::now();
        let report = self.pipeline.update(sources);
        self.wait_applied(&report, since).await;
        report
    }

    /// Waits until Envoy answered every push of the types `report` changed, sent at or
    /// after `since`.
    pub async fn wait_applied(&self, report: &UpdateReport, since: SystemTime) {
        let types: Vec<&str> = [
            type_url::CLUSTER,
            type_url::ENDPOINT,
            type_url::LISTENER,
            type_url::ROUTE,
        ]
        .into_iter()
        .filter(|t| {
            report.changes.iter().any(|c| {
                c.type_url == *t
                    && (c.kind != ChangeKind::Removed
                        || *t == type_url::CLUSTER
                        || *t == type_url::LISTENER)
            })
        })
        .collect();
        let answered = |s: &NodeStatus| {
            types.iter().all(|t| {
                s.type_status(t).is_some_and(|st| {
                    st.in_flight == 0
                        && (st.acked_at.is_some_and(|a| a >= since)
                            || st.last_nack.as_ref().is_some_and(|n| n.at >= since))
                })
            })
        };
        let done = self.wait_node(APPLIED, answered).await;
        assert!(
            done.is_some(),
            "Envoy did not answer the push of {types:?}: {:#?}",
            self.publisher.status()
        );
    }

    /// Waits until every type is ACKed with nothing in flight.
    pub async fn wait_all_acked(&self) -> NodeStatus {
        let all = |s: &NodeStatus| {
            [type_url::CLUSTER, type_url::LISTENER, type_url::ROUTE]
                .iter()
                .all(|t| s.type_status(t).is_some_and(|st| st.is_acked()))
        };
        self.wait_node(APPLIED, all).await.unwrap_or_else(|| {
            panic!(
                "Envoy did not ACK everything: {:#?}",
                self.publisher.status()
            )
        })
    }

    /// Polls the status of this stack's Envoy until `check` holds (bounded).
    pub async fn wait_node(
        &self,
        timeout: Duration,
        check: impl Fn(&NodeStatus) -> bool,
    ) -> Option<NodeStatus> {
        poll(timeout, Duration::from_millis(2), || {
            let found = self
                .publisher
                .status()
                .into_iter()
                .find(|s| s.node_id == NODE && check(s));
            async move { found }
        })
        .await
        .map(|(s, _)| s)
    }

    /// `http://127.0.0.1:PORT{path}` on Envoy's HTTP listener.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.http_port)
    }

    /// A request through Envoy.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<Response> {
        self.http.request(method, &self.url(path), headers).await
    }

    /// The snapshot the publisher serves now.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.pipeline.current()
    }

    /// Stops the publisher (Envoy keeps serving what it has).
    pub async fn stop_publisher(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

type Served = (
    Publisher,
    SocketAddr,
    oneshot::Sender<()>,
    JoinHandle<std::result::Result<(), ambassador_webhook::ads::Error>>,
);

/// Serves the snapshots of `snapshots` over ADS on a free loopback port.
pub async fn serve(snapshots: watch::Receiver<Arc<Snapshot>>) -> Result<Served> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(io("binding the ADS port"))?;
    let addr = listener
        .local_addr()
        .map_err(io("reading the ADS address"))?;
    let publisher = Publisher::new(snapshots);
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve_with_shutdown(publisher.clone(), listener, async {
        let _ = stopped.await;
    }));
    Ok((publisher, addr, stop, task))
}

/// `(name, text)` pairs from string slices.
pub fn sources<'a>(files: impl IntoIterator<Item = (&'a str, String)>) -> Vec<(String, String)> {
    files.into_iter().map(|(n, t)| (n.to_owned(), t)).collect()
}

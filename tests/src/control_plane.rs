//! The ADS publisher on a loopback port, with a handle to publish snapshots, read status, stop and restart.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ambassador_webhook::ads::{serve_with_shutdown, NodeStatus, Publisher, Snapshot};
use ambassador_webhook::bootstrap::{ApiType, Bootstrap};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::{free_port, io, poll, Result};

/// How long a stop may take: streams end at once, connections close when Envoy reads the GOAWAY.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// A publisher serving on 127.0.0.1. Dropping it stops the server.
#[derive(Debug)]
pub struct ControlPlane {
    snapshots: watch::Sender<Arc<Snapshot>>,
    publisher: Publisher,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), ambassador_webhook::ads::Error>>>,
}

impl ControlPlane {
    /// Serves `snapshot` on a free port.
    pub async fn start(snapshot: Snapshot) -> Result<Self> {
        Self::start_on(0, snapshot).await
    }

    /// Serves `snapshot` on a given port (0: any), e.g. the port of a stopped control plane.
    pub async fn start_on(port: u16, snapshot: Snapshot) -> Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .map_err(io(format!("binding the ADS port {port}")))?;
        let addr = listener
            .local_addr()
            .map_err(io("reading the ADS address"))?;
        let (snapshots, rx) = watch::channel(Arc::new(snapshot));
        let publisher = Publisher::new(rx);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve_with_shutdown(publisher.clone(), listener, async {
            let _ = stopped.await;
        }));
        Ok(Self {
            snapshots,
            publisher,
            addr,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Replaces the snapshot; every connected Envoy is brought to it.
    pub fn publish(&self, snapshot: Snapshot) {
        self.snapshots.send_replace(Arc::new(snapshot));
    }

    /// The publisher.
    pub fn publisher(&self) -> &Publisher {
        &self.publisher
    }

    /// The publisher's status of every connected stream.
    pub fn status(&self) -> Vec<NodeStatus> {
        self.publisher.status()
    }

    /// The status of the stream of `node`, if it is connected.
    pub fn node(&self, node: &str) -> Option<NodeStatus> {
        self.status().into_iter().find(|s| s.node_id == node)
    }

    /// Waits (bounded, polling every 5 ms) until `check` holds for `node`'s stream.
    pub async fn wait_node(
        &self,
        node: &str,
        timeout: Duration,
        check: impl Fn(&NodeStatus) -> bool,
    ) -> Option<NodeStatus> {
        poll(timeout, Duration::from_millis(5), || {
            let found = self.node(node).filter(|s| check(s));
            async move { found }
        })
        .await
        .map(|(s, _)| s)
    }

    /// A bootstrap for an Envoy talking to this control plane, with a free admin port.
    pub fn bootstrap(&self, node_id: &str, api_type: ApiType) -> Bootstrap {
        Bootstrap::new(
            node_id,
            self.addr.ip().to_string(),
            self.addr.port(),
            free_port(),
        )
        .with_api_type(api_type)
        .with_node_cluster("e2e")
    }

    /// Stops serving: ends every stream and waits for the server to close.
    pub async fn stop(mut self) -> Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            match tokio::time::timeout(STOP_TIMEOUT, task).await {
                Ok(Ok(result)) => result?,
                Ok(Err(join)) => panic!("the ADS server task failed: {join}"),
                Err(_) => panic!("the ADS server did not stop within {STOP_TIMEOUT:?}"),
            }
        }
        Ok(())
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

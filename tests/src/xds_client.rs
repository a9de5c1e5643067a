//! An ADS client that subscribes, ACKs and NACKs as Envoy 1.40 does, state of the world or delta: one simulated Envoy of a fleet.
//!
//! It asks for what Envoy asks for, in Envoy's order: clusters (wildcard), the endpoints of
//! the EDS clusters among them (before it ACKs the clusters), listeners (wildcard), and the
//! route configurations the listeners' HTTP connection managers name over RDS. A response
//! whose resources all decode is ACKed; one with a resource that does not decode is NACKed
//! and what the client holds stays as it was. Clusters and listeners are decoded in full
//! (they name what to ask for next); route configurations and endpoint assignments only as
//! far as their name. Subscriptions follow what it holds: a cluster
//! or listener that goes away takes its endpoint or route subscription with it. SDS
//! secrets are not asked for (a listener that terminates TLS would ask for them).
//!
//! What it holds is readable at any time ([`XdsClient::held`]): for every ACKed resource a
//! digest of its bytes (so state-of-the-world and delta clients, which see different
//! versions, can be compared with the snapshot), the version it came with, and when the
//! ACK was queued. [`Stalled`] is the opposite: a client that opens a stream, asks for
//! everything and never reads.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use ambassador_webhook::ads::{type_url, Protocol};
use envoy_types::pb::envoy::config::cluster::v3::cluster::{ClusterDiscoveryType, DiscoveryType};
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::config::listener::v3::filter::ConfigType;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_connection_manager::RouteSpecifier;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use envoy_types::pb::google::protobuf::Any;
use envoy_types::pb::google::rpc::Status as RpcStatus;
use futures::channel::mpsc;
use prost::Message as _;
use tokio::task::JoinHandle;
use tonic::transport::{Channel, Endpoint};
use tonic::Streaming;

use crate::{Error, Result};

/// The HTTP connection manager's type URL inside a listener's filter.
const HCM: &str = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";

/// gRPC `INVALID_ARGUMENT`, the code Envoy puts in a NACK's `error_detail`.
const INVALID_ARGUMENT: i32 = 3;

/// A digest of a resource's encoded bytes, to compare what a client holds with what a
/// snapshot serves (`digest(&resource.any().value)`): the same in every process.
///
/// Not cryptographic: a word at a time (an FxHash-like mix), because a fleet digests every
/// route configuration it receives, a thousand copies of each change.
pub fn digest(bytes: &[u8]) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mix = |h: u64, w: u64| (h.rotate_left(5) ^ w).wrapping_mul(K);
    let mut chunks = bytes.chunks_exact(8);
    let mut h = mix(0, bytes.len() as u64);
    for c in &mut chunks {
        h = mix(h, u64::from_le_bytes(c.try_into().expect("8 bytes")));
    }
    let mut tail = [0u8; 8];
    tail[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
    mix(h, u64::from_le_bytes(tail))
}

/// The first field of a route configuration (`name`) and of an endpoint assignment
/// (`cluster_name`): all the client reads of them. Envoy validates them in full; this
/// client simulates its protocol, not its validation, and a fleet of a thousand decoding
/// every route would measure the clients rather than the publisher. Other fields are
/// skipped (prost skips a length-delimited field without reading it).
#[derive(Clone, PartialEq, prost::Message)]
struct Named {
    #[prost(string, tag = "1")]
    name: String,
}

/// One resource a client ACKed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Held {
    /// [`digest`] of its encoded bytes.
    pub digest: u64,
    /// Delta: the resource's own version. State of the world: the `version_info` of the
    /// response that brought it.
    pub version: String,
    /// When the ACK of the response that brought it was queued for sending.
    pub acked_at: Instant,
}

/// What a client has seen of one type.
#[derive(Clone, Debug, Default)]
pub struct TypeSeen {
    /// ACKed resources by name.
    pub held: BTreeMap<String, Held>,
    /// Responses received (ACKed or NACKed).
    pub responses: usize,
    /// Responses NACKed.
    pub nacks: usize,
}

#[derive(Debug, Default)]
struct State {
    types: BTreeMap<&'static str, TypeSeen>,
    /// Why the stream ended, if it did.
    ended: Option<String>,
}

/// One simulated Envoy on its own connection. The stream ends when this is dropped.
#[derive(Debug)]
pub struct XdsClient {
    node: String,
    protocol: Protocol,
    state: Arc<Mutex<State>>,
    task: JoinHandle<()>,
}

impl Drop for XdsClient {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A channel of its own to `addr`: every Envoy of a fleet has its own TCP connection.
async fn channel(addr: SocketAddr, stream_window: Option<u32>) -> Result<Channel> {
    Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| ads_error(addr, e))?
        .tcp_nodelay(true)
        .initial_stream_window_size(stream_window)
        .connect()
        .await
        .map_err(|e| ads_error(addr, e))
}

fn ads_error(addr: SocketAddr, e: impl std::fmt::Display) -> Error {
    Error::Http {
        url: format!("ADS at {addr}"),
        message: e.to_string(),
    }
}

fn node(id: &str) -> Node {
    Node {
        id: id.to_owned(),
        cluster: "fleet".to_owned(),
        ..Default::default()
    }
}

impl XdsClient {
    /// Connects to the ADS server at `addr` as node `node_id` and starts subscribing.
    /// Returns once the stream is open; [`XdsClient::held`] fills as responses arrive.
    pub async fn connect(addr: SocketAddr, node_id: &str, protocol: Protocol) -> Result<Self> {
        let mut client = AggregatedDiscoveryServiceClient::new(channel(addr, None).await?)
            .max_decoding_message_size(usize::MAX);
        let state = Arc::new(Mutex::new(State::default()));
        let book = Book::new(node_id, Arc::clone(&state));
        let task = match protocol {
            Protocol::StateOfTheWorld => {
                let (tx, rx) = mpsc::unbounded();
                let responses = client
                    .stream_aggregated_resources(rx)
                    .await
                    .map_err(|e| ads_error(addr, e))?
                    .into_inner();
                tokio::spawn(run_sotw(book, tx, responses))
            }
            Protocol::Delta => {
                let (tx, rx) = mpsc::unbounded();
                let responses = client
                    .delta_aggregated_resources(rx)
                    .await
                    .map_err(|e| ads_error(addr, e))?
                    .into_inner();
                tokio::spawn(run_delta(book, tx, responses))
            }
        };
        Ok(Self {
            node: node_id.to_owned(),
            protocol,
            state,
            task,
        })
    }

    /// The node id this client sent.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The ADS variant it speaks.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// What it has seen of one type so far.
    pub fn seen(&self, type_url: &str) -> TypeSeen {
        lock(&self.state)
            .types
            .get(type_url)
            .cloned()
            .unwrap_or_default()
    }

    /// The resources of one type it holds (ACKed), by name.
    pub fn held(&self, type_url: &str) -> BTreeMap<String, Held> {
        self.seen(type_url).held
    }

    /// Responses received of one type.
    pub fn responses(&self, type_url: &str) -> usize {
        lock(&self.state)
            .types
            .get(type_url)
            .map_or(0, |t| t.responses)
    }

    /// If it holds exactly `want` (name to [`digest`]) of `type_url`, the latest time it
    /// ACKed one of them.
    pub fn holds_exactly(&self, type_url: &str, want: &BTreeMap<String, u64>) -> Option<Instant> {
        let state = lock(&self.state);
        let held = &state.types.get(type_url)?.held;
        if held.len() != want.len() {
            return None;
        }
        let mut last: Option<Instant> = None;
        for (name, d) in want {
            let h = held.get(name).filter(|h| h.digest == *d)?;
            last = Some(last.map_or(h.acked_at, |l| l.max(h.acked_at)));
        }
        last
    }

    /// Why the stream ended, if it did.
    pub fn ended(&self) -> Option<String> {
        lock(&self.state).ended.clone()
    }
}

/// The digests of a snapshot's resources of one type, to compare with [`XdsClient::holds_exactly`].
pub fn digests(
    snapshot: &ambassador_webhook::ads::Snapshot,
    type_url: &str,
) -> BTreeMap<String, u64> {
    snapshot
        .resources(type_url)
        .iter()
        .map(|(name, r)| (name.clone(), digest(&r.any().value)))
        .collect()
}

/// The bookkeeping both variants share: what is held, what is subscribed.
struct Book {
    /// Sent on the first request only, as Envoy does with `set_node_on_first_message_only`.
    node: Option<Node>,
    state: Arc<Mutex<State>>,
    /// Names subscribed to, for the named types (endpoints, routes).
    subscribed: BTreeMap<&'static str, BTreeSet<String>>,
    /// Per wildcard type, per resource held, the names it refers to.
    refers: BTreeMap<&'static str, BTreeMap<String, Vec<String>>>,
    listeners_asked: bool,
}

/// A resource of a response, decoded enough to know its name and what it refers to.
struct Decoded {
    name: String,
    /// EDS service names (clusters) or RDS route configuration names (listeners).
    refers: Vec<String>,
    digest: u64,
    /// Delta: the resource's version; state of the world: the response's.
    version: String,
}

fn decode(any: &Any, version: &str) -> std::result::Result<Decoded, String> {
    let bad = |e: prost::DecodeError| format!("{}: {e}", any.type_url);
    let (name, refers) = match any.type_url.as_str() {
        type_url::CLUSTER => {
            let c = Cluster::decode(&any.value[..]).map_err(bad)?;
            let eds = c.cluster_discovery_type
                == Some(ClusterDiscoveryType::Type(DiscoveryType::Eds as i32));
            let refers = if eds {
                let service = c
                    .eds_cluster_config
                    .as_ref()
                    .map(|e| e.service_name.clone())
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| c.name.clone());
                vec![service]
            } else {
                Vec::new()
            };
            (c.name, refers)
        }
        type_url::LISTENER => {
            let l = Listener::decode(&any.value[..]).map_err(bad)?;
            let mut refers = Vec::new();
            for chain in l.filter_chains.iter().chain(&l.default_filter_chain) {
                for f in &chain.filters {
                    let Some(ConfigType::TypedConfig(cfg)) = &f.config_type else {
                        continue;
                    };
                    if cfg.type_url != HCM {
                        continue;
                    }
                    let hcm = HttpConnectionManager::decode(&cfg.value[..]).map_err(bad)?;
                    if let Some(RouteSpecifier::Rds(rds)) = hcm.route_specifier {
                        refers.push(rds.route_config_name);
                    }
                }
            }
            (l.name, refers)
        }
        type_url::ENDPOINT | type_url::ROUTE => {
            (Named::decode(&any.value[..]).map_err(bad)?.name, Vec::new())
        }
        other => return Err(format!("unexpected type {other}")),
    };
    Ok(Decoded {
        name,
        refers,
        digest: digest(&any.value),
        version: version.to_owned(),
    })
}

/// The type whose subscription a type's resources drive: clusters name endpoints,
/// listeners name route configurations.
fn dependent(type_url: &str) -> Option<&'static str> {
    match type_url {
        type_url::CLUSTER => Some(type_url::ENDPOINT),
        type_url::LISTENER => Some(type_url::ROUTE),
        _ => None,
    }
}

/// The static name of a type the client speaks, if it is one.
fn known(type_url: &str) -> Option<&'static str> {
    [
        type_url::CLUSTER,
        type_url::ENDPOINT,
        type_url::LISTENER,
        type_url::ROUTE,
    ]
    .into_iter()
    .find(|t| *t == type_url)
}

/// A change of a named subscription: the whole new set, and what it added and dropped.
struct Resubscribe {
    type_url: &'static str,
    added: Vec<String>,
    dropped: Vec<String>,
}

impl Book {
    fn new(node_id: &str, state: Arc<Mutex<State>>) -> Self {
        Self {
            node: Some(node(node_id)),
            state,
            subscribed: BTreeMap::new(),
            refers: BTreeMap::new(),
            listeners_asked: false,
        }
    }

    fn node(&mut self) -> Option<Node> {
        self.node.take()
    }

    fn names(&self, type_url: &str) -> Vec<String> {
        self.subscribed
            .get(type_url)
            .map(|n| n.iter().cloned().collect())
            .unwrap_or_default()
    }

    fn nack(&self, type_url: &'static str) {
        let mut s = lock(&self.state);
        let t = s.types.entry(type_url).or_default();
        t.responses += 1;
        t.nacks += 1;
    }

    fn end(&self, why: String) {
        lock(&self.state).ended = Some(why);
    }

    /// Records an accepted response: `upserts` replace or add, `whole_set` (a
    /// state-of-the-world wildcard response) drops everything else, `removed` drops
    /// names. Returns the change of the dependent subscription, if any.
    fn accept(
        &mut self,
        type_url: &'static str,
        upserts: Vec<Decoded>,
        whole_set: bool,
        removed: &[String],
    ) -> Option<Resubscribe> {
        let now = Instant::now();
        let refers = self.refers.entry(type_url).or_default();
        if whole_set {
            refers.clear();
        }
        for name in removed {
            refers.remove(name);
        }
        for d in &upserts {
            refers.insert(d.name.clone(), d.refers.clone());
        }
        let wanted: BTreeSet<String> = refers.values().flatten().cloned().collect();
        {
            let mut s = lock(&self.state);
            let t = s.types.entry(type_url).or_default();
            t.responses += 1;
            if whole_set {
                let names: BTreeSet<&str> = upserts.iter().map(|d| d.name.as_str()).collect();
                t.held.retain(|n, _| names.contains(n.as_str()));
            }
            for name in removed {
                t.held.remove(name);
            }
            for d in upserts {
                t.held.insert(
                    d.name,
                    Held {
                        digest: d.digest,
                        version: d.version,
                        acked_at: now,
                    },
                );
            }
        }
        let dep = dependent(type_url)?;
        let before = self.subscribed.entry(dep).or_default();
        if *before == wanted {
            return None;
        }
        let added: Vec<String> = wanted.difference(before).cloned().collect();
        let dropped: Vec<String> = before.difference(&wanted).cloned().collect();
        *before = wanted;
        // Envoy forgets what it no longer subscribes to.
        if let Some(t) = lock(&self.state).types.get_mut(dep) {
            t.held.retain(|n, _| !dropped.contains(n));
        }
        Some(Resubscribe {
            type_url: dep,
            added,
            dropped,
        })
    }

    /// Whether to ask for listeners now: once, after the first clusters are ACKed (Envoy
    /// asks for listeners once its clusters are initialised).
    fn ask_listeners(&mut self, type_url: &str) -> bool {
        let ask = type_url == type_url::CLUSTER && !self.listeners_asked;
        self.listeners_asked |= ask;
        ask
    }
}

fn rejection(message: String) -> Option<RpcStatus> {
    Some(RpcStatus {
        code: INVALID_ARGUMENT,
        message,
        details: Vec::new(),
    })
}

async fn run_sotw(
    mut book: Book,
    tx: mpsc::UnboundedSender<DiscoveryRequest>,
    mut responses: Streaming<DiscoveryResponse>,
) {
    // The last accepted version and the last nonce received, per type.
    let mut accepted: BTreeMap<&'static str, String> = BTreeMap::new();
    let mut nonces: BTreeMap<&'static str, String> = BTreeMap::new();
    let request = |book: &mut Book,
                   type_url: &'static str,
                   accepted: &BTreeMap<&'static str, String>,
                   nonces: &BTreeMap<&'static str, String>,
                   error_detail: Option<RpcStatus>| DiscoveryRequest {
        node: book.node(),
        type_url: type_url.to_owned(),
        resource_names: book.names(type_url),
        version_info: accepted.get(type_url).cloned().unwrap_or_default(),
        response_nonce: nonces.get(type_url).cloned().unwrap_or_default(),
        error_detail,
        ..Default::default()
    };
    let first = request(&mut book, type_url::CLUSTER, &accepted, &nonces, None);
    if tx.unbounded_send(first).is_err() {
        return;
    }
    loop {
        let resp = match responses.message().await {
            Ok(Some(r)) => r,
            Ok(None) => return book.end("stream closed".to_owned()),
            Err(status) => return book.end(status.to_string()),
        };
        let Some(t) = known(&resp.type_url) else {
            continue;
        };
        nonces.insert(t, resp.nonce.clone());
        let decoded: std::result::Result<Vec<Decoded>, String> = resp
            .resources
            .iter()
            .map(|any| decode(any, &resp.version_info))
            .collect();
        let mut out = Vec::new();
        match decoded {
            Err(message) => {
                book.nack(t);
                out.push(request(
                    &mut book,
                    t,
                    &accepted,
                    &nonces,
                    rejection(message),
                ));
            }
            Ok(decoded) => {
                let whole = dependent(t).is_some();
                // The dependent type is asked for before this response is ACKed.
                if let Some(change) = book.accept(t, decoded, whole, &[]) {
                    out.push(request(
                        &mut book,
                        change.type_url,
                        &accepted,
                        &nonces,
                        None,
                    ));
                }
                accepted.insert(t, resp.version_info.clone());
                out.push(request(&mut book, t, &accepted, &nonces, None));
                if book.ask_listeners(t) {
                    out.push(request(
                        &mut book,
                        type_url::LISTENER,
                        &accepted,
                        &nonces,
                        None,
                    ));
                }
            }
        }
        for r in out {
            if tx.unbounded_send(r).is_err() {
                return book.end("request stream closed".to_owned());
            }
        }
    }
}

async fn run_delta(
    mut book: Book,
    tx: mpsc::UnboundedSender<DeltaDiscoveryRequest>,
    mut responses: Streaming<DeltaDiscoveryResponse>,
) {
    let first = DeltaDiscoveryRequest {
        node: book.node(),
        type_url: type_url::CLUSTER.to_owned(),
        ..Default::default()
    };
    if tx.unbounded_send(first).is_err() {
        return;
    }
    loop {
        let resp = match responses.message().await {
            Ok(Some(r)) => r,
            Ok(None) => return book.end("stream closed".to_owned()),
            Err(status) => return book.end(status.to_string()),
        };
        let Some(t) = known(&resp.type_url) else {
            continue;
        };
        let decoded: std::result::Result<Vec<Decoded>, String> = resp
            .resources
            .iter()
            .filter_map(|r| r.resource.as_ref().map(|any| decode(any, &r.version)))
            .collect();
        let ack = |error_detail| DeltaDiscoveryRequest {
            type_url: t.to_owned(),
            response_nonce: resp.nonce.clone(),
            error_detail,
            ..Default::default()
        };
        let mut out = Vec::new();
        match decoded {
            Err(message) => {
                book.nack(t);
                out.push(ack(rejection(message)));
            }
            Ok(decoded) => {
                if let Some(change) = book.accept(t, decoded, false, &resp.removed_resources) {
                    out.push(DeltaDiscoveryRequest {
                        node: book.node(),
                        type_url: change.type_url.to_owned(),
                        resource_names_subscribe: change.added,
                        resource_names_unsubscribe: change.dropped,
                        ..Default::default()
                    });
                }
                out.push(ack(None));
                if book.ask_listeners(t) {
                    out.push(DeltaDiscoveryRequest {
                        node: book.node(),
                        type_url: type_url::LISTENER.to_owned(),
                        ..Default::default()
                    });
                }
            }
        }
        for r in out {
            if tx.unbounded_send(r).is_err() {
                return book.end("request stream closed".to_owned());
            }
        }
    }
}

/// A client that opens a stream, asks for everything a snapshot has at once, and never
/// reads a response: its HTTP/2 stream window is 1 KiB and never reopened, so the
/// publisher can send it almost nothing. The stream stays open (the connection answers
/// pings) until this is dropped.
#[derive(Debug)]
pub struct Stalled {
    // Held, never polled.
    _responses: Streaming<DiscoveryResponse>,
    _requests: mpsc::UnboundedSender<DiscoveryRequest>,
    _channel: Channel,
}

/// The smallest stream window [`Stalled`] advertises.
pub const STALLED_WINDOW: u32 = 1024;

impl Stalled {
    /// Connects as `node_id` (state of the world) and subscribes to every cluster and
    /// listener, and to these endpoint and route configuration names.
    pub async fn connect(
        addr: SocketAddr,
        node_id: &str,
        endpoints: Vec<String>,
        routes: Vec<String>,
    ) -> Result<Self> {
        let channel = channel(addr, Some(STALLED_WINDOW)).await?;
        let mut client = AggregatedDiscoveryServiceClient::new(channel.clone());
        let (tx, rx) = mpsc::unbounded();
        let ask = |type_url: &str, names: Vec<String>, node: Option<Node>| DiscoveryRequest {
            node,
            type_url: type_url.to_owned(),
            resource_names: names,
            ..Default::default()
        };
        let requests = [
            ask(type_url::CLUSTER, Vec::new(), Some(node(node_id))),
            ask(type_url::ENDPOINT, endpoints, None),
            ask(type_url::LISTENER, Vec::new(), None),
            ask(type_url::ROUTE, routes, None),
        ];
        for r in requests {
            tx.unbounded_send(r).map_err(|e| ads_error(addr, e))?;
        }
        let responses = client
            .stream_aggregated_resources(rx)
            .await
            .map_err(|e| ads_error(addr, e))?
            .into_inner();
        Ok(Self {
            _responses: responses,
            _requests: tx,
            _channel: channel,
        })
    }
}

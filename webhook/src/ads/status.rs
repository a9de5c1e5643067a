//! What the publisher reports about each connected Envoy: versions sent and ACKed, the last NACK, recent pushes.

use std::collections::{BTreeMap, BTreeSet};
use std::time::SystemTime;

/// Which ADS variant a stream speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// `StreamAggregatedResources`: every response carries a whole set (LDS, CDS) or whole named resources (RDS, EDS).
    StateOfTheWorld,
    /// `DeltaAggregatedResources`: responses carry changed resources and names of removed ones.
    Delta,
}

/// What a stream subscribed to for one type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Subscription {
    /// Every resource of the type (LDS, CDS, or an explicit `*`).
    Wildcard,
    /// Only these names (RDS, EDS, SDS).
    Names(BTreeSet<String>),
}

impl Subscription {
    /// Whether a resource of this name is sent to the subscriber.
    pub fn contains(&self, name: &str) -> bool {
        match self {
            Subscription::Wildcard => true,
            Subscription::Names(names) => names.contains(name),
        }
    }

    /// Whether this is a wildcard subscription.
    pub fn is_wildcard(&self) -> bool {
        matches!(self, Subscription::Wildcard)
    }
}

/// A response Envoy refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Nack {
    /// The version that was refused (Envoy keeps the one it had).
    pub rejected_version: String,
    /// The nonce of the refused response.
    pub nonce: String,
    /// Envoy's `error_detail.message`, e.g. `invalid perl operator: (?=`.
    pub error: String,
    /// Envoy's `error_detail.code` (a gRPC status code).
    pub code: i32,
    /// The resources the refused response added, changed or removed.
    pub resource_names: Vec<String>,
    /// When the NACK arrived.
    pub at: SystemTime,
}

/// Protocol state of one type on one stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TypeStatus {
    /// What the stream subscribed to.
    pub subscription: Subscription,
    /// The version of the last response sent (a hash of the names and versions Envoy should now hold).
    pub sent_version: Option<String>,
    /// When that response was sent.
    pub sent_at: Option<SystemTime>,
    /// The version of the last response Envoy ACKed.
    pub acked_version: Option<String>,
    /// When that ACK arrived.
    pub acked_at: Option<SystemTime>,
    /// The last NACK, kept after a later ACK so that an operator can still see what went wrong.
    pub last_nack: Option<Nack>,
    /// Responses sent that Envoy has neither ACKed nor NACKed yet.
    pub in_flight: usize,
}

impl TypeStatus {
    /// Whether Envoy ACKed the last response sent for this type and nothing is in flight.
    pub fn is_acked(&self) -> bool {
        self.in_flight == 0
            && self.sent_version.is_some()
            && self.acked_version == self.sent_version
    }
}

/// Why a response was sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// Envoy asked: its first request for a type, or new names in a subscription.
    Request,
    /// A new snapshot changed something Envoy subscribed to.
    Snapshot,
}

/// One response the publisher sent, as kept in [`NodeStatus::recent`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sent {
    /// The xDS type.
    pub type_url: String,
    /// The nonce of the response.
    pub nonce: String,
    /// Its `version_info` (state of the world) or `system_version_info` (delta).
    pub version: String,
    /// Names of the resources in the response, in the order sent.
    pub resource_names: Vec<String>,
    /// Names in `removed_resources` (delta only; state of the world removes by omission).
    pub removed: Vec<String>,
    /// Why it was sent.
    pub reason: Reason,
    /// When it was sent.
    pub at: SystemTime,
}

/// How many responses [`NodeStatus::recent`] keeps per stream.
pub const RECENT_LIMIT: usize = 256;

/// The state of one connected Envoy (one ADS stream).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeStatus {
    /// A number unique within this publisher, to tell apart two streams of the same node.
    pub stream_id: u64,
    /// `node.id` from the first request (empty if Envoy sent none).
    pub node_id: String,
    /// `node.cluster` from the first request.
    pub node_cluster: String,
    /// Which ADS variant the stream speaks.
    pub protocol: Protocol,
    /// When the stream opened.
    pub connected_at: SystemTime,
    /// Per type URL.
    pub types: BTreeMap<String, TypeStatus>,
    /// The last responses sent, oldest first, at most [`RECENT_LIMIT`].
    pub recent: Vec<Sent>,
}

impl NodeStatus {
    /// The state of one type, if Envoy asked for it.
    pub fn type_status(&self, type_url: &str) -> Option<&TypeStatus> {
        self.types.get(type_url)
    }
}

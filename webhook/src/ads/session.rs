//! The protocol state of one ADS stream, for both variants: what Envoy holds, what is in flight, what to send next.
//!
//! The session is pure: requests and snapshots go in, responses to send come out. The
//! stream drivers in `sotw` and `delta` translate between it and the wire types.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::SystemTime;

use super::snapshot::{set_version, type_url, Resource, Snapshot};
use super::status::{
    Nack, NodeStatus, Protocol, Reason, Sent, Subscription, TypeStatus, RECENT_LIMIT,
};

/// A request, with what both variants have in common.
#[derive(Debug)]
pub(crate) struct Incoming {
    pub type_url: String,
    /// Empty on the first request for a type.
    pub nonce: String,
    pub names: NameChange,
    /// Delta only: what Envoy still holds from an earlier stream, by name.
    pub initial_versions: Vec<(String, String)>,
    /// `error_detail`: set on a NACK.
    pub error: Option<(i32, String)>,
}

/// How a request changes the subscription.
#[derive(Debug)]
pub(crate) enum NameChange {
    /// State of the world: the request lists every name wanted.
    Replace(Vec<String>),
    /// Delta: names to add and to drop.
    Delta {
        subscribe: Vec<String>,
        unsubscribe: Vec<String>,
    },
}

/// A response to send.
#[derive(Debug)]
pub(crate) struct Outgoing {
    pub type_url: String,
    pub nonce: String,
    pub version: String,
    /// State of the world, wildcard type: the whole set. Otherwise: what changed.
    pub resources: Vec<Arc<Resource>>,
    /// Delta only.
    pub removed: Vec<String>,
}

/// What Envoy holds of one resource, as far as this stream knows.
#[derive(Debug)]
struct Held {
    version: Arc<str>,
    /// `None` when Envoy told us the version on a delta reconnect but we never sent it the bytes.
    resource: Option<Arc<Resource>>,
}

#[derive(Debug)]
struct InFlight {
    version: String,
    changed: Vec<Arc<str>>,
    sent_at: SystemTime,
}

#[derive(Debug)]
struct TypeState {
    /// The type URL, shared by the responses `recent` keeps.
    url: Arc<str>,
    subscription: Subscription,
    /// What Envoy holds: every resource sent on this stream, ACKed or not. A NACKed
    /// resource stays here with the refused version, so it is not resent in a loop; the
    /// next snapshot that changes it sends it again.
    /// Keyed by the resource's own shared name: a pointer per stream, not a copy.
    held: BTreeMap<Arc<str>, Held>,
    /// Responses not ACKed or NACKed yet, by nonce.
    in_flight: BTreeMap<String, InFlight>,
    /// The last nonce sent. In state of the world a request carrying any other nonce is stale.
    last_nonce: Option<String>,
    sent_version: Option<String>,
    sent_at: Option<SystemTime>,
    acked_version: Option<String>,
    acked_at: Option<SystemTime>,
    last_nack: Option<Nack>,
    /// Whether the last answer was a NACK (not followed by an ACK yet).
    refused: bool,
    /// The snapshot's resources of this type when they were last found to need nothing
    /// sent: while the snapshot shares the same map and nothing else happened on this type,
    /// a push has nothing to look at (at 10,000 clusters that look is most of a push).
    synced: Option<Arc<BTreeMap<String, Arc<Resource>>>>,
}

impl TypeState {
    fn new(url: &str, subscription: Subscription) -> Self {
        Self {
            url: Arc::from(url),
            subscription,
            held: BTreeMap::new(),
            in_flight: BTreeMap::new(),
            last_nonce: None,
            sent_version: None,
            sent_at: None,
            acked_version: None,
            acked_at: None,
            last_nack: None,
            refused: false,
            synced: None,
        }
    }

    /// Whether Envoy's last answer for this type was a NACK: it serves an older version.
    fn refused(&self) -> bool {
        self.refused
    }

    /// Resources of the snapshot that the subscriber should hold and does not (or holds an
    /// older version of), restricted to `names` when given.
    fn stale(
        &self,
        snap: &Snapshot,
        type_url: &str,
        names: Option<&BTreeSet<String>>,
    ) -> Vec<Arc<Resource>> {
        snap.resources(type_url)
            .iter()
            .filter(|(name, _)| self.subscription.contains(name))
            .filter(|(name, _)| names.is_none_or(|n| n.contains(*name)))
            .filter(|(name, r)| {
                self.held.get(name.as_str()).map(|h| &*h.version) != Some(r.version())
            })
            .map(|(_, r)| Arc::clone(r))
            .collect()
    }

    /// Names Envoy holds that the snapshot no longer has.
    fn gone(&self, snap: &Snapshot, type_url: &str) -> Vec<Arc<str>> {
        let current = snap.resources(type_url);
        self.held
            .keys()
            .filter(|name| !current.contains_key(&***name))
            .cloned()
            .collect()
    }
}

/// One step of a push, in the order they are taken. See [`Session::next_push`].
const STAGES: [(&str, bool); 5] = [
    (type_url::CLUSTER, false),
    (type_url::ENDPOINT, true),
    (type_url::LISTENER, true),
    (type_url::ROUTE, true),
    (type_url::CLUSTER, true),
];

/// A response sent, as [`Session`] keeps it for [`NodeStatus::recent`]: the names are the
/// resources' own (shared), so a stream keeps a pointer per name, not a copy.
#[derive(Debug)]
struct Record {
    type_url: Arc<str>,
    nonce: String,
    version: String,
    names: Vec<Arc<str>>,
    removed: Vec<Arc<str>>,
    reason: Reason,
    at: SystemTime,
}

impl Record {
    fn sent(&self) -> Sent {
        let strings = |names: &[Arc<str>]| names.iter().map(|n| n.to_string()).collect();
        Sent {
            type_url: self.type_url.to_string(),
            nonce: self.nonce.clone(),
            version: self.version.clone(),
            resource_names: strings(&self.names),
            removed: strings(&self.removed),
            reason: self.reason,
            at: self.at,
        }
    }
}

/// The state of one ADS stream.
#[derive(Debug)]
pub(crate) struct Session {
    protocol: Protocol,
    stream_id: u64,
    node_id: String,
    node_cluster: String,
    connected_at: SystemTime,
    next_nonce: u64,
    types: BTreeMap<String, TypeState>,
    recent: VecDeque<Record>,
}

impl Session {
    pub fn new(protocol: Protocol, stream_id: u64, now: SystemTime) -> Self {
        Self {
            protocol,
            stream_id,
            node_id: String::new(),
            node_cluster: String::new(),
            connected_at: now,
            next_nonce: 0,
            types: BTreeMap::new(),
            recent: VecDeque::new(),
        }
    }

    /// Records the node; Envoy sends it on the first request only (`set_node_on_first_message_only`).
    pub fn set_node(&mut self, id: &str, cluster: &str) {
        self.node_id = id.to_owned();
        self.node_cluster = cluster.to_owned();
    }

    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// Handles one request: ACK or NACK bookkeeping, subscription changes, and the answer
    /// the request asks for, if any.
    ///
    /// Only resources Envoy newly asked for are answered here; changes to resources it
    /// already holds go through [`Session::next_push`], which keeps the make-before-break
    /// order. Nothing is removed here for the same reason.
    pub fn on_request(
        &mut self,
        req: Incoming,
        snap: &Snapshot,
        now: SystemTime,
    ) -> Option<Outgoing> {
        let first = !self.types.contains_key(&req.type_url);
        let initial = if type_url::is_wildcard(&req.type_url) {
            Subscription::Wildcard
        } else {
            Subscription::Names(BTreeSet::new())
        };
        let protocol = self.protocol;
        let node_id = self.node_id.clone();
        let st = self
            .types
            .entry(req.type_url.clone())
            .or_insert_with(|| TypeState::new(&req.type_url, initial));
        // Answers and subscription changes alter what Envoy holds and wants.
        st.synced = None;

        if !req.nonce.is_empty() {
            match st.in_flight.remove(&req.nonce) {
                Some(flight) => match &req.error {
                    Some((code, message)) => {
                        tracing::warn!(
                            node = %node_id,
                            type_url = %req.type_url,
                            version = %flight.version,
                            resources = ?flight.changed,
                            error = %message,
                            "Envoy rejected a response (NACK); it keeps its last accepted configuration"
                        );
                        st.refused = true;
                        st.last_nack = Some(Nack {
                            rejected_version: flight.version,
                            nonce: req.nonce.clone(),
                            error: message.clone(),
                            code: *code,
                            resource_names: flight.changed.iter().map(|n| n.to_string()).collect(),
                            at: now,
                        });
                    }
                    None => {
                        st.refused = false;
                        st.acked_version = Some(flight.version);
                        st.acked_at = Some(now);
                    }
                },
                // xDS: "the management server should ignore requests with a stale nonce";
                // Envoy repeats its current subscription when it answers the latest response.
                // A request with the latest nonce, already answered, is a subscription
                // change and goes on below.
                None if protocol == Protocol::StateOfTheWorld
                    && st.last_nonce.as_deref() != Some(req.nonce.as_str()) =>
                {
                    tracing::debug!(node = %node_id, type_url = %req.type_url, nonce = %req.nonce, "ignoring a request with a stale nonce");
                    return None;
                }
                None => {}
            }
        }

        let added = apply_names(st, &req.type_url, req.names, first);
        if first {
            for (name, version) in req.initial_versions {
                if st.subscription.contains(&name) {
                    st.held.insert(
                        Arc::from(name),
                        Held {
                            version: Arc::from(version),
                            resource: None,
                        },
                    );
                }
            }
        }

        let upserts = match (&added, first) {
            (_, true) | (Added::All, _) => st.stale(snap, &req.type_url, None),
            (Added::Names(names), false) if names.is_empty() => return None,
            (Added::Names(names), false) => st.stale(snap, &req.type_url, Some(names)),
        };
        // Envoy's initialisation waits for a first answer to LDS and CDS, even an empty one;
        // a named resource that does not exist yet is simply not answered. A delta
        // reconnect that holds everything already gets an empty answer too, so that its
        // ACK shows in the status that this stream is up to date.
        if upserts.is_empty() && !(first && (st.subscription.is_wildcard() || !st.held.is_empty()))
        {
            return None;
        }
        Some(self.emit(&req.type_url, upserts, Vec::new(), Reason::Request, now))
    }

    /// The next response that brings Envoy closer to the snapshot, if any.
    ///
    /// Make-before-break: one stage at a time, each only once Envoy answered everything
    /// sent before (so, for a new cluster, also the endpoints it asked for on seeing it):
    /// clusters old and new together, then endpoints, listeners, routes, and only then the
    /// cluster set without the clusters that are gone. Clusters and listeners warm (they
    /// wait for their endpoints and routes), but routes do not: a route to a cluster Envoy
    /// does not know yet answers 503, and so does a route to a cluster removed before the
    /// route stopped pointing at it.
    pub fn next_push(&mut self, snap: &Snapshot, now: SystemTime) -> Option<Outgoing> {
        if self.types.values().any(|st| !st.in_flight.is_empty()) {
            return None;
        }
        let known: BTreeSet<&str> = STAGES.iter().map(|(t, _)| *t).collect();
        // Types the publisher has no special order for (SDS for now) go after routes and
        // before clusters are removed: new secrets are asked for by the clusters and
        // listeners that name them, like endpoints and routes.
        let others: Vec<String> = self
            .types
            .keys()
            .filter(|t| !known.contains(t.as_str()))
            .cloned()
            .collect();
        // While Envoy holds a refused response of any type, it serves its previous
        // configuration of that type, which may still need what the snapshot dropped (the
        // old routes need the old clusters): removals wait until everything is accepted
        // again. Stale resources cost memory; removing them would break live traffic.
        let refused = self.types.values().any(TypeState::refused);
        let (last, head) = STAGES.split_last().expect("stages are not empty");
        let stages = head
            .iter()
            .map(|(t, removals)| ((*t).to_owned(), *removals))
            .chain(others.into_iter().map(|t| (t, true)))
            .chain(std::iter::once((last.0.to_owned(), last.1)));
        let protocol = self.protocol;
        for (type_url, removals) in stages {
            let Some(st) = self.types.get_mut(&type_url) else {
                continue;
            };
            let current = snap.shared(&type_url);
            if let (Some(synced), Some(current)) = (&st.synced, current) {
                if Arc::ptr_eq(synced, current) {
                    continue;
                }
            }
            let upserts = st.stale(snap, &type_url, None);
            // State of the world can only remove wildcard resources (by leaving them out);
            // RDS and EDS resources stay in Envoy until nothing refers to them.
            let removable = protocol == Protocol::Delta || st.subscription.is_wildcard();
            let look = removals && !refused && removable;
            let removed = if look {
                st.gone(snap, &type_url)
            } else {
                Vec::new()
            };
            if !upserts.is_empty() || !removed.is_empty() {
                return Some(self.emit(&type_url, upserts, removed, Reason::Snapshot, now));
            }
            if !refused && (look || !removable) {
                st.synced = current.cloned();
            }
        }
        None
    }

    /// When the oldest response still waiting for an answer was sent.
    pub fn oldest_in_flight(&self) -> Option<SystemTime> {
        self.types
            .values()
            .flat_map(|st| st.in_flight.values())
            .map(|f| f.sent_at)
            .min()
    }

    /// Stops waiting for answers to responses sent at or before `cutoff`, so that pushes
    /// go on. Envoy answers every response of a type it watches, so this only happens
    /// with a client that does not; the responses stay sent, and the next push builds on them.
    pub fn give_up_waiting(&mut self, cutoff: SystemTime) {
        for (type_url, st) in &mut self.types {
            st.in_flight.retain(|nonce, f| {
                let keep = f.sent_at > cutoff;
                if !keep {
                    tracing::warn!(
                        node = %self.node_id,
                        %type_url,
                        %nonce,
                        resources = ?f.changed,
                        "no ACK or NACK in time; going on without it"
                    );
                }
                keep
            });
        }
    }

    fn emit(
        &mut self,
        type_url: &str,
        upserts: Vec<Arc<Resource>>,
        removed: Vec<Arc<str>>,
        reason: Reason,
        now: SystemTime,
    ) -> Outgoing {
        self.next_nonce += 1;
        let nonce = self.next_nonce.to_string();
        let protocol = self.protocol;
        let st = self
            .types
            .get_mut(type_url)
            .expect("emit only for known types");
        st.synced = None;
        for r in &upserts {
            st.held.insert(
                Arc::clone(r.shared_name()),
                Held {
                    version: Arc::clone(r.shared_version()),
                    resource: Some(Arc::clone(r)),
                },
            );
        }
        for name in &removed {
            st.held.remove(name);
        }
        let version = set_version(st.held.iter().map(|(n, h)| (&**n, &*h.version)));
        let changed: Vec<Arc<str>> = upserts
            .iter()
            .map(|r| Arc::clone(r.shared_name()))
            .chain(removed.iter().cloned())
            .collect();
        let (resources, removed) = match protocol {
            // A state-of-the-world response for a wildcard type is the whole set: in it,
            // "a listener or cluster missing from a response is deleted".
            Protocol::StateOfTheWorld if st.subscription.is_wildcard() => (
                st.held
                    .values()
                    .filter_map(|h| h.resource.clone())
                    .collect(),
                Vec::new(),
            ),
            Protocol::StateOfTheWorld => (upserts, Vec::new()),
            Protocol::Delta => (upserts, removed),
        };
        if protocol == Protocol::StateOfTheWorld {
            // Only the latest response of a type can be answered; older ones are superseded.
            st.in_flight.clear();
        }
        st.in_flight.insert(
            nonce.clone(),
            InFlight {
                version: version.clone(),
                changed,
                sent_at: now,
            },
        );
        st.last_nonce = Some(nonce.clone());
        st.sent_version = Some(version.clone());
        st.sent_at = Some(now);

        if self.recent.len() == RECENT_LIMIT {
            self.recent.pop_front();
        }
        self.recent.push_back(Record {
            type_url: Arc::clone(&st.url),
            nonce: nonce.clone(),
            version: version.clone(),
            names: resources
                .iter()
                .map(|r| Arc::clone(r.shared_name()))
                .collect(),
            removed: removed.clone(),
            reason,
            at: now,
        });
        tracing::debug!(
            node = %self.node_id,
            type_url,
            %nonce,
            %version,
            resources = resources.len(),
            removed = removed.len(),
            ?reason,
            "sending"
        );
        Outgoing {
            type_url: type_url.to_owned(),
            nonce,
            version,
            resources,
            removed: removed.iter().map(|n| n.to_string()).collect(),
        }
    }

    pub fn status(&self) -> NodeStatus {
        NodeStatus {
            stream_id: self.stream_id,
            node_id: self.node_id.clone(),
            node_cluster: self.node_cluster.clone(),
            protocol: self.protocol,
            connected_at: self.connected_at,
            types: self
                .types
                .iter()
                .map(|(t, st)| {
                    (
                        t.clone(),
                        TypeStatus {
                            subscription: st.subscription.clone(),
                            sent_version: st.sent_version.clone(),
                            sent_at: st.sent_at,
                            acked_version: st.acked_version.clone(),
                            acked_at: st.acked_at,
                            last_nack: st.last_nack.clone(),
                            in_flight: st.in_flight.len(),
                        },
                    )
                })
                .collect(),
            recent: self.recent.iter().map(Record::sent).collect(),
        }
    }
}

/// Which names a request added to the subscription.
enum Added {
    /// The subscription became (or started as) a wildcard.
    All,
    Names(BTreeSet<String>),
}

/// Applies a request's names to the subscription. Names Envoy dropped are forgotten:
/// Envoy forgets them too, and wants them sent again if it asks for them later.
fn apply_names(st: &mut TypeState, type_url: &str, change: NameChange, first: bool) -> Added {
    let old = st.subscription.clone();
    let new = match change {
        // LDS and CDS requests carry no names: Envoy wants all of them.
        NameChange::Replace(names)
            if type_url::is_wildcard(type_url) || names.iter().any(|n| n == "*") =>
        {
            Subscription::Wildcard
        }
        NameChange::Replace(names) => Subscription::Names(names.into_iter().collect()),
        NameChange::Delta {
            subscribe,
            unsubscribe,
        } => {
            if subscribe.iter().any(|n| n == "*")
                || (first && subscribe.is_empty() && type_url::is_wildcard(type_url))
            {
                Subscription::Wildcard
            } else {
                match old.clone() {
                    Subscription::Wildcard => Subscription::Wildcard,
                    Subscription::Names(mut names) => {
                        names.extend(subscribe);
                        for n in &unsubscribe {
                            names.remove(n);
                        }
                        Subscription::Names(names)
                    }
                }
            }
        }
    };
    let added = match (&old, &new) {
        (_, Subscription::Wildcard) if !old.is_wildcard() || first => Added::All,
        (_, Subscription::Wildcard) => Added::Names(BTreeSet::new()),
        (Subscription::Wildcard, Subscription::Names(names)) => Added::Names(names.clone()),
        (Subscription::Names(before), Subscription::Names(after)) => {
            Added::Names(after.difference(before).cloned().collect())
        }
    };
    if let Subscription::Names(after) = &new {
        st.held.retain(|name, _| after.contains(&**name));
    }
    st.subscription = new;
    added
}

#[cfg(test)]
mod tests;

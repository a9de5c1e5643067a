//! What the publisher serves: packed xDS resources per type URL, each with a content hash as its version.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use envoy_types::pb::google::protobuf::Any;
use sha2::{Digest, Sha256};

/// Type URLs of the resources Envoy asks for over ADS.
///
/// The set is open: a [`Snapshot`] accepts any type URL, and the publisher serves
/// whatever type Envoy subscribes to. These are the ones the control plane uses today.
pub mod type_url {
    /// CDS.
    pub const CLUSTER: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
    /// EDS.
    pub const ENDPOINT: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
    /// LDS.
    pub const LISTENER: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
    /// RDS.
    pub const ROUTE: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
    /// SDS.
    pub const SECRET: &str = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";

    /// Whether Envoy subscribes to every resource of this type (LDS, CDS) rather than to names.
    ///
    /// In state of the world, a wildcard response must carry the whole set: "a listener or
    /// cluster missing from a response is deleted".
    pub fn is_wildcard(type_url: &str) -> bool {
        type_url == CLUSTER || type_url == LISTENER
    }
}

/// One packed resource and its version.
///
/// The version is a hash of the type URL and the encoded bytes, so two snapshots that
/// carry the same resource give it the same version, and the publisher can tell what
/// changed without comparing messages. It relies on the encoding being deterministic:
/// prost encodes protobuf `map` fields in `HashMap` order, so a resource with a map of
/// more than one entry can hash differently from one build of it to the next (it is then
/// resent, which is harmless but wasteful).
///
/// The name and version are shared (`Arc<str>`): every stream that holds the resource files
/// it under them, so a thousand Envoys cost a pointer each rather than a copy each.
#[derive(Clone, Debug, PartialEq)]
pub struct Resource {
    name: Arc<str>,
    any: Any,
    version: Arc<str>,
}

impl Resource {
    /// Wraps an already packed resource; its type URL decides which xDS type it belongs to.
    pub fn new(name: impl Into<String>, any: Any) -> Self {
        let version = content_version(&any);
        Self {
            name: Arc::from(name.into()),
            any,
            version: Arc::from(version),
        }
    }

    /// Wraps a packed resource whose version is already known (the compiler's hash of its
    /// encoding): nothing is hashed again.
    pub fn with_version(name: impl Into<String>, any: Any, version: impl Into<String>) -> Self {
        Self {
            name: Arc::from(name.into()),
            any,
            version: Arc::from(version.into()),
        }
    }

    /// Packs a message (e.g. a `Cluster`) and wraps it.
    pub fn pack<M: prost::Message + prost::Name>(name: impl Into<String>, message: M) -> Self {
        Self::new(name, envoy_types::util::pack_any(message))
    }

    /// The resource name Envoy knows it by (cluster name, listener name, ...).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The packed resource.
    pub fn any(&self) -> &Any {
        &self.any
    }

    /// The type URL of the packed message.
    pub fn type_url(&self) -> &str {
        &self.any.type_url
    }

    /// The content hash, used as the per-resource version in delta xDS.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The name, shared with whoever else holds it.
    pub(crate) fn shared_name(&self) -> &Arc<str> {
        &self.name
    }

    /// The version, shared with whoever else holds it.
    pub(crate) fn shared_version(&self) -> &Arc<str> {
        &self.version
    }
}

fn content_version(any: &Any) -> String {
    let mut hasher = Sha256::new();
    hasher.update(any.type_url.as_bytes());
    // A separator that cannot occur in a type URL keeps ("ab", "c") apart from ("a", "bc").
    hasher.update([0]);
    hasher.update(&any.value);
    hex16(&hasher.finalize())
}

/// The first 16 bytes of a digest in hex: 128 bits is far beyond what a collision between
/// two versions of one resource would need, and keeps the strings short in logs.
fn hex16(digest: &[u8]) -> String {
    let mut out = String::with_capacity(32);
    for byte in &digest[..16] {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

/// The version of a set of resources: a hash of the names and versions in name order.
///
/// Used as `version_info` in state of the world and `system_version_info` in delta, so
/// that the same set always has the same version, across publisher restarts too.
pub(crate) fn set_version<'a>(entries: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut hasher = Sha256::new();
    for (name, version) in entries {
        hasher.update(name.as_bytes());
        hasher.update([0]);
        hasher.update(version.as_bytes());
        hasher.update([0]);
    }
    hex16(&hasher.finalize())
}

/// Everything the publisher serves at one moment: for each type URL, resources by name.
///
/// Snapshots are immutable once published (they travel as `Arc<Snapshot>` through a
/// `tokio::sync::watch` channel); build a new one for every change. Resources are held in
/// `Arc`s so that building the next snapshot from the previous one copies no bytes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    /// Per type, shared with the snapshots it was copied from until one of them changes
    /// that type: the next snapshot after a route change copies no cluster.
    types: BTreeMap<String, Arc<BTreeMap<String, Arc<Resource>>>>,
}

impl Snapshot {
    /// An empty snapshot: Envoy gets empty CDS and LDS answers and serves nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces a resource, filed under its type URL; returns the one it replaced.
    pub fn insert(&mut self, resource: Resource) -> Option<Arc<Resource>> {
        self.insert_arc(Arc::new(resource))
    }

    /// Like [`Snapshot::insert`], for a resource shared with another snapshot.
    pub fn insert_arc(&mut self, resource: Arc<Resource>) -> Option<Arc<Resource>> {
        Arc::make_mut(
            self.types
                .entry(resource.type_url().to_owned())
                .or_default(),
        )
        .insert(resource.name().to_owned(), resource)
    }

    /// Builder form of [`Snapshot::insert`].
    pub fn with(mut self, resource: Resource) -> Self {
        self.insert(resource);
        self
    }

    /// Removes a resource; returns it if it was there.
    pub fn remove(&mut self, type_url: &str, name: &str) -> Option<Arc<Resource>> {
        let resources = Arc::make_mut(self.types.get_mut(type_url)?);
        let removed = resources.remove(name);
        if resources.is_empty() {
            self.types.remove(type_url);
        }
        removed
    }

    /// The resources of one type, by name (empty if the snapshot has none of that type).
    pub fn resources(&self, type_url: &str) -> &BTreeMap<String, Arc<Resource>> {
        static EMPTY: BTreeMap<String, Arc<Resource>> = BTreeMap::new();
        self.types.get(type_url).map_or(&EMPTY, |m| m)
    }

    /// One resource by type URL and name.
    /// The resources of one type as the snapshot shares them: two snapshots returning the
    /// same `Arc` hold the same resources of that type.
    pub fn shared(&self, type_url: &str) -> Option<&Arc<BTreeMap<String, Arc<Resource>>>> {
        self.types.get(type_url)
    }

    pub fn get(&self, type_url: &str, name: &str) -> Option<&Arc<Resource>> {
        self.types.get(type_url)?.get(name)
    }

    /// The type URLs that have at least one resource.
    pub fn type_urls(&self) -> impl Iterator<Item = &str> {
        self.types.keys().map(String::as_str)
    }

    /// The version of the whole set of one type, as sent in a state-of-the-world response
    /// that carries all of them.
    pub fn version(&self, type_url: &str) -> String {
        set_version(
            self.resources(type_url)
                .iter()
                .map(|(name, r)| (name.as_str(), r.version())),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn any(type_url: &str, bytes: &[u8]) -> Any {
        Any {
            type_url: type_url.to_owned(),
            value: bytes.to_vec(),
        }
    }

    #[test]
    fn version_depends_on_bytes_and_type_only() {
        let a = Resource::new("a", any(type_url::ROUTE, b"one"));
        let b = Resource::new("b", any(type_url::ROUTE, b"one"));
        let c = Resource::new("a", any(type_url::ROUTE, b"two"));
        let d = Resource::new("a", any(type_url::CLUSTER, b"one"));
        assert_eq!(
            a.version(),
            b.version(),
            "the name is not part of the content"
        );
        assert_ne!(a.version(), c.version());
        assert_ne!(a.version(), d.version());
        assert_eq!(a.version().len(), 32);
    }

    #[test]
    fn set_version_changes_with_names_and_versions() {
        let base = set_version([("a", "1"), ("b", "2")]);
        assert_eq!(base, set_version([("a", "1"), ("b", "2")]));
        assert_ne!(base, set_version([("a", "1"), ("b", "3")]));
        assert_ne!(base, set_version([("a", "1")]));
        assert_ne!(set_version([("ab", "c")]), set_version([("a", "bc")]));
    }

    #[test]
    fn snapshot_files_by_type_and_drops_empty_types() {
        let mut snap = Snapshot::new()
            .with(Resource::new("r1", any(type_url::ROUTE, b"x")))
            .with(Resource::new("c1", any(type_url::CLUSTER, b"y")));
        assert_eq!(snap.resources(type_url::ROUTE).len(), 1);
        assert!(snap.get(type_url::CLUSTER, "c1").is_some());
        assert!(snap.remove(type_url::CLUSTER, "c1").is_some());
        assert_eq!(snap.type_urls().collect::<Vec<_>>(), vec![type_url::ROUTE]);
        assert!(snap.resources(type_url::CLUSTER).is_empty());
    }
}

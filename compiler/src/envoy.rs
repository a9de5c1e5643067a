//! The Envoy back end: the IR in, Envoy v3 xDS resources (typed and packed, with versions) out.
//!
//! [`emit`] is a straight translation of the [`Ir`] into the four resource types the control
//! plane serves over ADS: Listeners, RouteConfigurations, Clusters and ClusterLoadAssignments.
//! **Architecture invariant:** this module is the only one that knows Envoy protos; the rest
//! of the compiler speaks the IR, and callers outside the crate see [`Resources`].
//!
//! Choices that keep Envoy's connections alive and its warming short, from
//! `shared/reference/envoy-xds.md`:
//!
//! - Listeners never carry routes inline: the HTTP connection manager takes them from RDS over
//!   ADS, because a Listener change drains every connection while a RouteConfiguration push
//!   drops none. For the same reason, everything a route may switch on is already in the
//!   listener: the CORS filter is always installed, and `websocket` upgrades are always
//!   declared (disabled) so a route can enable them without touching the listener.
//! - EDS clusters get a ClusterLoadAssignment from the start (empty until endpoints are known),
//!   so Envoy's cluster warming never waits on a resource nobody will send.
//! - Resource names come from the IR names, and every version is a hash of the encoded
//!   resource: the same IR gives byte-identical output, and a change to one route changes
//!   only the versions of the resources that contain it.
//!
//! The JSON rendering of the resources, in the shape of Envoy's `/config_dump`, is in
//! [`json`].

mod auth;
mod cluster;
mod common;
pub mod json;
mod listener;
mod observe;
pub mod parts;
mod ratelimit;
mod route;
pub mod table;

#[cfg(test)]
mod tests;

use std::fmt;
use std::str::FromStr;

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::Secret;
use envoy_types::pb::google::protobuf::Any;
use prost::{Message, Name};

use crate::fnv::Fnv1a;
use crate::ir::Ir;

pub use cluster::{eds_service_name, eds_service_of, endpoints, parse_eds_service_name};
pub use json::to_config_dump_json;
pub use route::Variants;

/// Type URL of `envoy.config.listener.v3.Listener`.
pub const LISTENER_TYPE: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
/// Type URL of `envoy.config.route.v3.RouteConfiguration`.
pub const ROUTE_TYPE: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
/// Type URL of `envoy.config.cluster.v3.Cluster`.
pub const CLUSTER_TYPE: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
/// Type URL of `envoy.extensions.transport_sockets.tls.v3.Secret` (SDS).
pub const SECRET_TYPE: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";
/// Type URL of `envoy.config.endpoint.v3.ClusterLoadAssignment`.
pub const ENDPOINT_TYPE: &str =
    "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";

/// Translates the IR into Envoy resources. Total: every IR has an output, and the output
/// depends on nothing but the IR.
pub fn emit(ir: &Ir) -> Resources {
    let clusters = cluster::clusters(ir);
    let endpoints = cluster::initial_endpoints(ir);
    Resources {
        listeners: Collection::new(listener::listeners(ir)),
        routes: Collection::new(route::route_configurations(ir)),
        clusters: Collection::new(clusters),
        endpoints: Collection::new(endpoints),
        // Certificates are not in the IR: [`crate::envoy_resources`] adds them from the
        // manifests' Secrets.
        secrets: Collection::default(),
    }
}

/// [`emit`] without the typed messages: every resource is encoded as it is built and only
/// its packed form is kept, and route configurations are assembled from their routes'
/// encodings without building a RouteConfiguration ([`parts`]). The same names, versions and
/// bytes as [`emit`], in a fraction of its memory, for callers that only write the resources
/// out (`kubectl ambassador preview`).
pub fn emit_packed(ir: &Ir) -> PackedResources {
    let pack = |messages: Vec<_>| PackedCollection::new(messages.iter().map(parts::Packed::of));
    PackedResources {
        listeners: pack(listener::listeners(ir)),
        routes: PackedCollection::new(parts::route_configurations(ir)),
        clusters: PackedCollection::new(packed_clusters(ir)),
        endpoints: PackedCollection::new(
            cluster::initial_endpoints(ir).iter().map(parts::Packed::of),
        ),
        secrets: PackedCollection::default(),
    }
}

/// The clusters, packed in name order, on all cores when there are many.
fn packed_clusters(ir: &Ir) -> impl Iterator<Item = parts::Packed> {
    let clusters: Vec<&crate::ir::Cluster> = ir.clusters.values().map(|c| &**c).collect();
    crate::par::runs(
        &clusters,
        crate::par::run_len(clusters.len(), 1024),
        |run| {
            run.iter()
                .map(|c| parts::Packed::of(&cluster::cluster(c)))
                .collect::<Vec<_>>()
        },
    )
    .into_iter()
    .flatten()
}

/// The secrets the configuration names, for SDS, from the Secrets read: certificates of the
/// listeners' TLS chains (HTTP and TCP) and clusters' client certificates (`namespace/name`),
/// and CAs that client or upstream certificates must chain to (`ca:namespace/name`). Names no
/// Secret holds are left out (lowering reported them).
pub fn secrets<'a>(
    listeners: &[crate::ir::Listener],
    tcp_listeners: &[crate::ir::TcpListener],
    clusters: impl Iterator<Item = &'a crate::ir::Cluster>,
    available: impl IntoIterator<Item = &'a crate::front::SecretInfo>,
) -> Vec<Secret> {
    use std::collections::BTreeSet;
    let downstream = listeners
        .iter()
        .flat_map(|l| &l.chains)
        .filter_map(|c| c.tls.as_ref())
        .chain(
            tcp_listeners
                .iter()
                .flat_map(|t| &t.routes)
                .filter_map(|r| r.tls.as_ref()),
        );
    let upstream = clusters.filter_map(|c| c.tls.as_ref());
    let mut certs: BTreeSet<&str> = BTreeSet::new();
    let mut cas: BTreeSet<&str> = BTreeSet::new();
    for t in downstream.clone() {
        certs.insert(&t.secret);
        cas.extend(t.ca_secret.as_deref());
    }
    for t in upstream {
        certs.extend(t.client_secret.as_deref());
        cas.extend(t.ca_secret.as_deref());
    }
    let mut out: Vec<Secret> = Vec::new();
    for s in available {
        let name = format!("{}/{}", s.namespace, s.name);
        let fresh = |out: &Vec<Secret>, n: &str| !out.iter().any(|o| o.name == n);
        if certs.contains(name.as_str()) && fresh(&out, &name) {
            out.push(listener::tls_secret(name.clone(), s));
        }
        let ca = listener::ca_secret_name(&name);
        if cas.contains(name.as_str()) && fresh(&out, &ca) {
            out.push(listener::ca_secret(ca, s));
        }
    }
    out
}

/// A message that is one of the four xDS resource types: it knows its resource name.
pub trait XdsResource: Message + Name + Clone + Default {
    /// The name Envoy knows the resource by (`name`, or `cluster_name` for an assignment).
    fn resource_name(&self) -> &str;

    /// The encoding, the same for the same message: prost's, unless the message holds a
    /// map with several entries (prost writes those in `HashMap` order).
    fn encode_deterministic(&self) -> Vec<u8> {
        self.encode_to_vec()
    }
}

impl XdsResource for Listener {
    fn resource_name(&self) -> &str {
        &self.name
    }
}

impl XdsResource for RouteConfiguration {
    fn resource_name(&self) -> &str {
        &self.name
    }

    /// A route may hold both CORS and external authorization settings.
    fn encode_deterministic(&self) -> Vec<u8> {
        route::encode_route_configuration(self)
    }
}

impl XdsResource for Cluster {
    fn resource_name(&self) -> &str {
        &self.name
    }
}

impl XdsResource for Secret {
    fn resource_name(&self) -> &str {
        &self.name
    }
}

impl XdsResource for ClusterLoadAssignment {
    fn resource_name(&self) -> &str {
        &self.cluster_name
    }
}

/// All resources of one compilation, per type.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Resources {
    pub listeners: Collection<Listener>,
    pub routes: Collection<RouteConfiguration>,
    pub clusters: Collection<Cluster>,
    pub endpoints: Collection<ClusterLoadAssignment>,
    /// Certificates for SDS.
    pub secrets: Collection<Secret>,
}

impl Resources {
    /// The packed resources of one type URL, for an xDS response; `None` for a type this
    /// back end does not produce.
    pub fn packed(&self, type_url: &str) -> Option<PackedSet<'_>> {
        fn view<T: XdsResource>(c: &Collection<T>) -> PackedSet<'_> {
            PackedSet {
                type_url: c.type_url(),
                version: &c.version,
                resources: c
                    .resources
                    .iter()
                    .map(|r| (r.name.as_str(), r.version.as_str(), &r.packed))
                    .collect(),
            }
        }
        match type_url {
            LISTENER_TYPE => Some(view(&self.listeners)),
            ROUTE_TYPE => Some(view(&self.routes)),
            CLUSTER_TYPE => Some(view(&self.clusters)),
            ENDPOINT_TYPE => Some(view(&self.endpoints)),
            SECRET_TYPE => Some(view(&self.secrets)),
            _ => None,
        }
    }

    /// Replaces (or adds) the endpoints of one EDS service, e.g. from a Kubernetes
    /// EndpointSlice, built with [`endpoints`]. Only the endpoint versions change.
    pub fn set_endpoints(&mut self, assignment: ClusterLoadAssignment) {
        self.endpoints.upsert(assignment);
    }

    /// The EDS service names the clusters ask for: the assignments a caller should keep
    /// filled with [`Resources::set_endpoints`].
    pub fn eds_services(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self
            .clusters
            .resources
            .iter()
            .filter_map(|r| r.message.eds_cluster_config.as_ref())
            .map(|eds| eds.service_name.as_str())
            .collect();
        names.sort_unstable();
        names.dedup();
        names
    }
}

/// The packed view of one resource type: its version and `(name, version, Any)` per resource,
/// sorted by name.
#[derive(Clone, Debug, PartialEq)]
pub struct PackedSet<'a> {
    pub type_url: &'static str,
    pub version: &'a str,
    pub resources: Vec<(&'a str, &'a str, &'a Any)>,
}

/// The resources of one type, sorted by name, with a version for the whole set.
#[derive(Clone, Debug, PartialEq)]
pub struct Collection<T> {
    /// A hash of the names and versions of all resources: the state-of-the-world version.
    pub version: String,
    /// Sorted by name, names unique.
    pub resources: Vec<Resource<T>>,
}

impl<T: XdsResource> Default for Collection<T> {
    fn default() -> Self {
        Collection::new(Vec::new())
    }
}

impl<T: XdsResource> Collection<T> {
    /// Builds a collection. When two messages have the same name the first one is kept:
    /// Envoy would refuse a response that names a resource twice, and the checks report
    /// duplicates before this point.
    pub fn new(messages: Vec<T>) -> Collection<T> {
        let mut seen = std::collections::HashSet::with_capacity(messages.len());
        let mut resources: Vec<Resource<T>> = Vec::with_capacity(messages.len());
        for message in messages {
            if seen.insert(message.resource_name().to_owned()) {
                resources.push(Resource::new(message));
            }
        }
        resources.sort_by(|a, b| a.name.cmp(&b.name));
        let mut c = Collection {
            version: String::new(),
            resources,
        };
        c.version = c.compute_version();
        c
    }

    /// The type URL of `T`.
    pub fn type_url(&self) -> &'static str {
        match T::full_name().as_str() {
            "envoy.config.listener.v3.Listener" => LISTENER_TYPE,
            "envoy.config.route.v3.RouteConfiguration" => ROUTE_TYPE,
            "envoy.config.cluster.v3.Cluster" => CLUSTER_TYPE,
            "envoy.extensions.transport_sockets.tls.v3.Secret" => SECRET_TYPE,
            _ => ENDPOINT_TYPE,
        }
    }

    /// The resource with this name.
    pub fn get(&self, name: &str) -> Option<&Resource<T>> {
        self.resources
            .binary_search_by(|r| r.name.as_str().cmp(name))
            .ok()
            .map(|i| &self.resources[i])
    }

    fn upsert(&mut self, message: T) {
        let resource = Resource::new(message);
        match self
            .resources
            .binary_search_by(|r| r.name.cmp(&resource.name))
        {
            Ok(i) => self.resources[i] = resource,
            Err(i) => self.resources.insert(i, resource),
        }
        self.version = self.compute_version();
    }

    fn compute_version(&self) -> String {
        set_version(self.resources.iter().map(|r| (&r.name, &r.version)))
    }
}

/// The state-of-the-world version of a type: a hash of the names and versions of its
/// resources, in name order.
fn set_version<'a>(resources: impl Iterator<Item = (&'a String, &'a String)>) -> String {
    let mut h = Fnv1a::new();
    for (name, version) in resources {
        h.write(name.as_bytes());
        h.write(&[0]);
        h.write(version.as_bytes());
        h.write(&[0]);
    }
    h.hex()
}

/// The resources of one compilation packed, per type, without their typed messages
/// ([`emit_packed`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PackedResources {
    pub listeners: PackedCollection,
    pub routes: PackedCollection,
    pub clusters: PackedCollection,
    pub endpoints: PackedCollection,
    /// Certificates for SDS.
    pub secrets: PackedCollection,
}

impl PackedResources {
    /// The resources of one type, as [`Resources::packed`] gives them.
    pub fn packed(&self, t: TypeFilter) -> PackedSet<'_> {
        let c = match t {
            TypeFilter::Listener => &self.listeners,
            TypeFilter::Route => &self.routes,
            TypeFilter::Cluster => &self.clusters,
            TypeFilter::Endpoint => &self.endpoints,
            TypeFilter::Secret => &self.secrets,
        };
        PackedSet {
            type_url: t.type_url(),
            version: &c.version,
            resources: c
                .resources
                .iter()
                .map(|r| (r.name.as_str(), r.version.as_str(), &r.any))
                .collect(),
        }
    }

    /// As [`Resources::set_endpoints`].
    pub fn set_endpoints(&mut self, assignment: &ClusterLoadAssignment) {
        let packed = parts::Packed::of(assignment);
        let all = &mut self.endpoints.resources;
        match all.binary_search_by(|r| r.name.cmp(&packed.name)) {
            Ok(i) => all[i] = packed,
            Err(i) => all.insert(i, packed),
        }
        self.endpoints.version = set_version(all.iter().map(|r| (&r.name, &r.version)));
    }
}

/// The packed resources of one type, as [`Collection`] holds them: sorted by name, names
/// unique (the first kept), with the version of the whole set.
#[derive(Clone, Debug, PartialEq)]
pub struct PackedCollection {
    pub version: String,
    pub resources: Vec<parts::Packed>,
}

impl Default for PackedCollection {
    fn default() -> Self {
        PackedCollection::new(std::iter::empty())
    }
}

impl PackedCollection {
    /// As [`Collection::new`].
    pub fn new(packed: impl IntoIterator<Item = parts::Packed>) -> PackedCollection {
        let packed = packed.into_iter();
        let mut seen = std::collections::HashSet::with_capacity(packed.size_hint().0);
        let mut resources: Vec<parts::Packed> =
            packed.filter(|p| seen.insert(p.name.clone())).collect();
        resources.sort_by(|a, b| a.name.cmp(&b.name));
        PackedCollection {
            version: set_version(resources.iter().map(|r| (&r.name, &r.version))),
            resources,
        }
    }
}

/// One resource: the typed message, the same message packed into an `Any`, and its version.
#[derive(Clone, Debug, PartialEq)]
pub struct Resource<T> {
    pub name: String,
    /// FNV-1a 64 of the encoded message, in hex.
    pub version: String,
    pub message: T,
    pub packed: Any,
}

impl<T: XdsResource> Resource<T> {
    fn new(message: T) -> Resource<T> {
        let parts::Packed { name, version, any } = parts::Packed::of(&message);
        Resource {
            name,
            version,
            packed: any,
            message,
        }
    }
}

/// A resource type, to restrict [`to_config_dump_json`] to one kind
/// (`kubectl ambassador preview --type listener|route|cluster|endpoint`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TypeFilter {
    Listener,
    Route,
    Cluster,
    Endpoint,
    Secret,
}

impl TypeFilter {
    pub const ALL: [TypeFilter; 5] = [
        TypeFilter::Listener,
        TypeFilter::Route,
        TypeFilter::Cluster,
        TypeFilter::Endpoint,
        TypeFilter::Secret,
    ];

    /// The word used on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            TypeFilter::Listener => "listener",
            TypeFilter::Route => "route",
            TypeFilter::Cluster => "cluster",
            TypeFilter::Endpoint => "endpoint",
            TypeFilter::Secret => "secret",
        }
    }

    /// The type URL of the resources this filter selects.
    pub fn type_url(self) -> &'static str {
        match self {
            TypeFilter::Listener => LISTENER_TYPE,
            TypeFilter::Route => ROUTE_TYPE,
            TypeFilter::Cluster => CLUSTER_TYPE,
            TypeFilter::Endpoint => ENDPOINT_TYPE,
            TypeFilter::Secret => SECRET_TYPE,
        }
    }
}

impl fmt::Display for TypeFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of parsing a [`TypeFilter`] from text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownType(pub String);

impl fmt::Display for UnknownType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown resource type `{}`: expected listener, route, cluster, endpoint or secret",
            self.0
        )
    }
}

impl std::error::Error for UnknownType {}

impl FromStr for TypeFilter {
    type Err = UnknownType;

    /// Accepts the singular and plural words and the usual short forms.
    fn from_str(s: &str) -> Result<TypeFilter, UnknownType> {
        match s.to_ascii_lowercase().as_str() {
            "listener" | "listeners" | "lds" => Ok(TypeFilter::Listener),
            "route" | "routes" | "rds" => Ok(TypeFilter::Route),
            "cluster" | "clusters" | "cds" => Ok(TypeFilter::Cluster),
            "endpoint" | "endpoints" | "eds" => Ok(TypeFilter::Endpoint),
            "secret" | "secrets" | "sds" => Ok(TypeFilter::Secret),
            _ => Err(UnknownType(s.to_owned())),
        }
    }
}

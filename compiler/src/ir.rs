//! The intermediate representation: virtual hosts with an ordered route table, clusters and TCP routes, in Envoy's vocabulary.
//!
//! The IR is what the configuration means, independent of any Envoy proto: the back end in
//! [`crate::envoy`] is a straight translation of it. Every route and cluster remembers the
//! objects it came from, so diagnostics, `routes` and the tracer can point back at the files.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::source::Span;

/// A short name kept inline (Kubernetes names are mostly under 24 bytes): every route and
/// cluster names its sources, so these are many.
pub type Name = compact_str::CompactString;

/// Where a piece of the IR came from: the object (kind, namespace, name) and its position.
///
/// Shared: a Mapping is named by its route, its backend and its cluster, and every copy is
/// the same object, so the copies are one allocation (made once per resource, see
/// `lower::source_ref`). Reads go through [`Deref`](std::ops::Deref) to [`SourceObject`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceRef(std::sync::Arc<SourceObject>);

/// What a [`SourceRef`] points at.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct SourceObject {
    pub kind: Name,
    pub namespace: Name,
    pub name: Name,
    /// The position of the object's `name` (or of the annotation document) in the file.
    pub span: Span,
}

impl SourceRef {
    pub fn new(o: SourceObject) -> SourceRef {
        SourceRef(std::sync::Arc::new(o))
    }
}

impl std::ops::Deref for SourceRef {
    type Target = SourceObject;
    fn deref(&self) -> &SourceObject {
        &self.0
    }
}

impl Serialize for SourceRef {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

/// Changing one copy leaves the others as they were (tests rename sources).
impl std::ops::DerefMut for SourceRef {
    fn deref_mut(&mut self) -> &mut SourceObject {
        std::sync::Arc::make_mut(&mut self.0)
    }
}

/// The whole compiled configuration.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Ir {
    /// The HTTP listeners: the Listener resources, or 8080 (and 8443 when a Host terminates
    /// TLS) when there is none.
    pub listeners: Vec<Listener>,
    /// Virtual hosts in Envoy's selection order is not needed: Envoy picks by domain specificity.
    /// They are kept sorted by name for deterministic output.
    pub virtual_hosts: Vec<VirtualHost>,
    /// Clusters by name. Names are derived from the upstream and its settings only, so they are
    /// stable across runs and a change to one Mapping does not rename others. Boxed: a map
    /// built in key order leaves its nodes about half full, and a cluster is 232 bytes
    /// (inline, the map of 20,000 clusters was 9.5 MB; boxed, about 6).
    pub clusters: BTreeMap<String, Box<Cluster>>,
    /// Plain TCP proxying (TCPMapping), one entry per listening port.
    pub tcp_listeners: Vec<TcpListener>,
    /// Global settings from the `ambassador` Module.
    pub settings: Settings,
    /// External authorization from the AuthServices: an `ext_authz` filter in every HTTP
    /// connection manager, after CORS and before the router. `None` without an AuthService.
    pub auth: Option<Auth>,
    /// Global rate limiting from the one RateLimitService: a `ratelimit` filter after
    /// external authorization and before the router. `None` without a usable one.
    pub rate_limit: Option<RateLimit>,
    /// gRPC access logs from the LogService: an `access_log` entry of every HTTP
    /// connection manager. `None` without a usable one.
    pub access_log: Option<AccessLog>,
    /// Tracing from the TracingService: the `tracing` of every HTTP connection manager,
    /// its provider inline. `None` without a usable one.
    pub tracing: Option<Tracing>,
}

/// The gRPC access log service Envoy streams one entry per request to (LogService).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AccessLog {
    /// The LogService.
    pub source: SourceRef,
    /// The cluster of the service (see [`Ir::clusters`]); gRPC.
    pub cluster: String,
    /// `driver`: `http` logs HTTP entries, `tcp` connection entries.
    pub driver: AccessLogDriver,
    /// `flush_interval_time`, in seconds (1 unless set).
    pub flush_interval_s: u64,
    /// `flush_interval_byte_size` (16384 unless set).
    pub buffer_size_bytes: u32,
    /// `driver_config.additional_log_headers`, by when they are logged (http only).
    pub request_headers: Vec<String>,
    pub response_headers: Vec<String>,
    pub response_trailers: Vec<String>,
}

/// A LogService's `driver`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AccessLogDriver {
    Http,
    Tcp,
}

/// The tracer every HTTP connection manager reports spans to (TracingService).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Tracing {
    /// The TracingService.
    pub source: SourceRef,
    /// The collector's cluster (see [`Ir::clusters`]).
    pub cluster: String,
    /// The collector's `host:port`, for the tracers that want it.
    pub authority: String,
    pub driver: TracingDriver,
    /// `sampling.client`, `sampling.random`, `sampling.overall`: percentages.
    pub client_sampling: Option<f64>,
    pub random_sampling: Option<f64>,
    pub overall_sampling: Option<f64>,
    /// `custom_tags` (and `tag_headers`, as request header tags).
    pub custom_tags: Vec<CustomTag>,
}

/// A TracingService's `driver` and its `config`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TracingDriver {
    Zipkin {
        collector_endpoint: String,
        /// `HTTP_JSON` or `HTTP_PROTO`.
        collector_endpoint_version: String,
        trace_id_128bit: bool,
        shared_span_context: Option<bool>,
    },
    Datadog {
        service_name: String,
    },
    OpenTelemetry {
        service_name: String,
    },
}

/// A span tag: a literal, an environment variable or a request header.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CustomTag {
    Literal {
        tag: String,
        value: String,
    },
    Environment {
        tag: String,
        name: String,
        default_value: String,
    },
    RequestHeader {
        tag: String,
        name: String,
        default_value: String,
    },
}

/// The rate limit service Envoy asks about requests whose route has rate limits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RateLimit {
    /// The RateLimitService.
    pub source: SourceRef,
    /// The cluster of the service (see [`Ir::clusters`]); gRPC.
    pub cluster: String,
    /// The descriptors' domain: the RateLimitService's `domain`, else the Module's
    /// `default_label_domain` (`ambassador` unless set).
    pub domain: String,
    /// `timeout_ms`, 20 unless set.
    pub timeout_ms: u64,
    /// `failure_mode_deny`: a request whose check failed is refused (429 is not sent; 500).
    pub failure_mode_deny: bool,
}

/// One rate limit of a route: the descriptor Envoy sends, one entry per action, in order.
/// Envoy sends nothing for a group one of whose actions cannot be filled (a missing header).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RateLimitGroup {
    pub actions: Vec<RateLimitAction>,
}

/// One entry of a rate limit descriptor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RateLimitAction {
    SourceCluster,
    DestinationCluster,
    RemoteAddress,
    /// `descriptor_key` (`generic_key` unless set) and a fixed value.
    GenericKey {
        key: String,
        value: String,
    },
    /// The value of a request header under `key`.
    RequestHeaders {
        key: String,
        header: String,
    },
}

/// The external authorization every HTTP request goes through unless its route opts out
/// (`bypass_auth`, redirects). All AuthServices merge into one, as Emissary merges them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Auth {
    /// The AuthServices merged here, in the order they were merged.
    pub sources: Vec<SourceRef>,
    /// What the filter asks; `None` when an AuthService could not be compiled: the filter
    /// then refuses every request it would have checked (500), so a broken AuthService
    /// never opens the routes it protects.
    pub check: Option<AuthCheck>,
}

/// A working external authorization service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AuthCheck {
    /// The cluster of the authorization service (see [`Ir::clusters`]).
    pub cluster: String,
    /// `http://host:port` or `https://host:port`: the service as written, for Envoy's
    /// `server_uri` (the request goes to `cluster`).
    pub uri: String,
    pub protocol: AuthProtocol,
    /// `timeout_ms`, 5000 unless set.
    pub timeout_ms: u64,
    /// `include_body` (or `allow_request_body`: 4096 bytes, partial allowed).
    pub body: Option<AuthBody>,
    /// `status_on_error.code`: the status of a request whose check failed.
    pub status_on_error: Option<u32>,
    /// `failure_mode_allow`: a request whose check failed goes through.
    pub failure_mode_allow: bool,
}

/// How the authorization service is asked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AuthProtocol {
    /// A copy of the request (headers only, or with the body) to `path_prefix` + path.
    Http {
        path_prefix: String,
        /// Request headers sent to the service, lower case, sorted: the AuthServices'
        /// `allowed_request_headers` and Emissary's defaults.
        allowed_request_headers: Vec<String>,
        /// Headers of the service's answer passed on (upstream on 200, to the client
        /// otherwise), lower case, sorted: `allowed_authorization_headers` and defaults.
        allowed_authorization_headers: Vec<String>,
        /// `add_auth_headers`: headers added to the check request, by name.
        add_auth_headers: Vec<(String, String)>,
    },
    /// `envoy.service.auth.v3.Authorization/Check` over gRPC.
    Grpc,
}

/// `include_body`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AuthBody {
    pub max_bytes: u32,
    pub allow_partial: bool,
}

/// What the authorization filter does on one route.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum RouteAuth {
    /// Checked with the filter's settings.
    #[default]
    Check,
    /// `bypass_auth: true`: not checked.
    Bypass,
    /// `auth_context_extensions`: checked, with these context extensions (gRPC) sent along.
    Context(Box<BTreeMap<String, String>>),
}

/// Settings from the `ambassador` Module that affect the whole configuration.
#[derive(Clone, Debug, Serialize)]
pub struct Settings {
    /// Default route timeout (`cluster_request_timeout_ms`), 3000 ms unless changed.
    pub default_timeout_ms: u64,
    /// Whether Envoy should use `x-forwarded-for` and friends.
    pub use_remote_address: bool,
    /// `xff_num_trusted_hops`.
    pub xff_num_trusted_hops: u32,
    /// Whether the server header is stripped.
    pub server_name: Option<String>,
    /// Default CORS policy from the Module, applied to routes that set none.
    pub cors: Option<Cors>,
    /// The domain of the rate limit labels routes carry: the RateLimitService's (its
    /// `domain`, else the Module's `default_label_domain`) when one is in use, else `None`
    /// (routes then carry no rate limits, as in Emissary).
    pub rate_limit_domain: Option<String>,
    /// `default_label_domain`, `ambassador` unless the Module sets it: the domain of the
    /// default labels a Mapping without labels gets.
    pub default_label_domain: String,
    /// The Module's `default_labels`: per domain, the label specifiers every Mapping's
    /// groups of that domain start with (a Mapping without labels gets them as its group).
    pub default_labels: BTreeMap<String, Vec<RateLimitAction>>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            default_timeout_ms: 3000,
            use_remote_address: true,
            xff_num_trusted_hops: 0,
            server_name: None,
            cors: None,
            rate_limit_domain: None,
            default_label_domain: "ambassador".to_owned(),
            default_labels: BTreeMap::new(),
        }
    }
}

/// An HTTP listener (a `Listener` resource, or one of the defaults when there is none): a
/// port, how it tells secure requests from insecure ones, and its filter chains.
#[derive(Clone, Debug, Serialize)]
pub struct Listener {
    /// The Listener's name, or `ambassador-listener-<port>` for a default one.
    pub name: String,
    pub address: String,
    pub port: u16,
    /// `statsPrefix`: the connection managers' `stat_prefix`.
    pub stats_prefix: String,
    pub security: SecurityModel,
    /// `l7Depth`: how many proxies in front Envoy trusts for `x-forwarded-proto` and
    /// `x-forwarded-for`.
    pub xff_num_trusted_hops: u32,
    /// The protocol stack has PROXY: the PROXY protocol header is read first.
    pub proxy_protocol: bool,
    /// The stack has TLS: TLS chains for the Hosts that terminate it, and a TLS inspector.
    pub tls: bool,
    /// TLS chains (one per SNI, in SNI order), then the one cleartext chain, if any.
    pub chains: Vec<Chain>,
    /// The Listener resource; `None` for a default listener.
    pub source: Option<SourceRef>,
}

/// `securityModel`: which requests a Listener treats as secure. The secure one takes a
/// route as it is; an insecure one gets its Host's `requestPolicy.insecure.action`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum SecurityModel {
    /// Secure when `x-forwarded-proto` is `https` (Envoy sets it from the connection unless
    /// proxies in front are trusted).
    Xfp,
    /// Every request is secure.
    Secure,
    /// Every request is insecure.
    Insecure,
}

/// One filter chain of a Listener and the route configuration its connection manager
/// takes from RDS.
#[derive(Clone, Debug, Serialize)]
pub struct Chain {
    pub name: String,
    /// TLS termination (certificate and SNI names); `None` for the cleartext chain, which
    /// matches any connection the TLS chains do not take.
    pub tls: Option<ServerTls>,
    pub route_config: String,
    /// The virtual hosts served here, by name (of [`Ir::virtual_hosts`]), in hostname order.
    pub virtual_hosts: Vec<String>,
}

/// A server certificate used for TLS termination, chosen by SNI.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ServerTls {
    pub server_names: Vec<String>,
    /// Kubernetes Secret holding the certificate (`namespace/name`).
    pub secret: String,
    /// Kubernetes Secret holding the CA that client certificates must chain to
    /// (`ca_secret`, `namespace/name`): clients are asked for a certificate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_secret: Option<String>,
    /// `cert_required`: a client without a certificate is refused.
    pub cert_required: bool,
    /// `cipher_suites` and `ecdh_curves`, as Envoy names them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cipher_suites: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ecdh_curves: Vec<String>,
    pub min_tls_version: Option<String>,
    pub max_tls_version: Option<String>,
    pub alpn_protocols: Vec<String>,
}

/// What a Host does with cleartext requests (`requestPolicy.insecure.action`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum InsecureAction {
    Route,
    Redirect,
    Reject,
}

/// One virtual host: a set of domains and the ordered routes Envoy tries first-match.
#[derive(Clone, Debug, Serialize)]
pub struct VirtualHost {
    /// Stable name, derived from the Host (or `*` for the synthesised catch-all).
    pub name: String,
    /// Envoy domain patterns: exact, `*.suffix`, `prefix*` or `*`.
    pub domains: Vec<String>,
    /// The Host object, or `None` for the synthesised catch-all host.
    pub source: Option<SourceRef>,
    pub insecure: InsecureAction,
    /// Routes in evaluation order: Envoy takes the first that matches. Shared by the
    /// virtual hosts the same Mappings attach to (every Mapping on `hostname: "*"` makes one
    /// table for all of them); changed through `Arc::make_mut`.
    pub routes: std::sync::Arc<Vec<Route>>,
    /// Virtual-host level CORS, if any.
    pub cors: Option<Cors>,
}

/// One route: a match and what to do with matching requests.
#[derive(Clone, Debug, Serialize)]
pub struct Route {
    /// Stable name, derived from the group's match; unique within its virtual host.
    pub name: String,
    pub matcher: RouteMatch,
    pub action: RouteAction,
    /// The `precedence` of the group (first ordering key).
    pub precedence: i64,
    /// The Mappings that form this route (a canary group has several), in weight order.
    pub sources: Vec<SourceRef>,
    /// Query conditions a redirect Mapping sets that Emissary leaves out of the route's
    /// match (the redirect then catches requests without them) but still ranks it by.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unmatched_query: Vec<QueryMatch>,
}

/// The request conditions of a route. All must hold.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct RouteMatch {
    pub path: PathMatch,
    /// Path matching case: `case_sensitive`, true unless set otherwise.
    pub case_sensitive: bool,
    /// Header conditions, including `:authority` from `host` and `:method` from `method`.
    pub headers: Vec<HeaderMatch>,
    pub query_parameters: Vec<QueryMatch>,
}

/// How the path is matched.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum PathMatch {
    Prefix(String),
    Exact(String),
    /// An RE2 regex that must match the whole path.
    Regex(String),
}

impl PathMatch {
    pub fn text(&self) -> &str {
        match self {
            PathMatch::Prefix(s) | PathMatch::Exact(s) | PathMatch::Regex(s) => s,
        }
    }
}

/// A condition on a header (or pseudo-header such as `:authority` or `:method`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct HeaderMatch {
    pub name: String,
    pub value: ValueMatch,
}

/// A condition on a query parameter.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct QueryMatch {
    pub name: String,
    pub value: ValueMatch,
}

/// How a header or query value is matched.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum ValueMatch {
    Exact(String),
    /// An RE2 regex that must match the whole value.
    Regex(String),
    /// The header or parameter is present, with any value.
    Present,
    /// A Mapping's host glob on `:authority`, as Emissary emits it: `*` is no condition,
    /// `*.x` a suffix, `x.*` a prefix, anything else the exact text. Each is compared with
    /// the whole `Host` header, case-sensitively and port included.
    Host(String),
}

/// What a route does.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RouteAction {
    Forward(Box<Forward>),
    Redirect(Box<Redirect>),
}

/// Settings most routes and Mappings leave at their defaults: nothing is allocated for the
/// defaults, and reads of them see [`Empty::EMPTY`]. A writable borrow allocates the
/// defaults first. Compares and serializes as the settings it stands for.
#[derive(Clone, Debug, Default)]
pub struct Sparse<T: 'static>(Option<Box<T>>);

/// A type's default as a constant, for [`Sparse`] to lend.
pub trait Empty: Default + PartialEq + 'static {
    const EMPTY: &'static Self;
}

impl<T: Empty> Sparse<T> {
    pub fn new(value: T) -> Sparse<T> {
        Sparse((value != T::default()).then(|| Box::new(value)))
    }
}

impl<T: Empty> std::ops::Deref for Sparse<T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.0.as_deref().unwrap_or(T::EMPTY)
    }
}

impl<T: Empty> std::ops::DerefMut for Sparse<T> {
    fn deref_mut(&mut self) -> &mut T {
        self.0.get_or_insert_with(Box::default)
    }
}

impl<T: Empty> PartialEq for Sparse<T> {
    fn eq(&self, other: &Sparse<T>) -> bool {
        **self == **other
    }
}

impl<T: Empty + Eq> Eq for Sparse<T> {}

impl<T: Empty> From<T> for Sparse<T> {
    fn from(value: T) -> Sparse<T> {
        Sparse::new(value)
    }
}

impl<T: Empty + Serialize> Serialize for Sparse<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (**self).serialize(s)
    }
}

/// Proxy the request to one or more clusters.
#[derive(Clone, Debug, Serialize)]
pub struct Forward {
    /// Backends with their effective weights, in the order Envoy tries them. Emissary gives
    /// each member of a canary group an Envoy route of its own (the same match, a
    /// cumulative share of the requests, and the member's own rewrite, timeouts, host
    /// rewrite and path case), so each backend carries those settings. Weights sum to 100
    /// unless the group's weights add up to less; a single backend has 100.
    pub clusters: Vec<WeightedCluster>,
    /// Mirror a fraction of the traffic to another cluster (`shadow: true`).
    pub shadow: Option<Box<Shadow>>,
    /// The group's settings, with the Module's defaults applied. Flattened, so the
    /// serialized route keeps one level; sparse, since most routes have none.
    #[serde(flatten)]
    pub settings: Sparse<RouteSettings>,
}

/// The settings each member of a canary group keeps on its own Envoy route (Emissary reads
/// them from the member, not from the group).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct MemberSettings {
    /// Replace the matched prefix with this (`rewrite`). `None` keeps the path. On a regex
    /// route Envoy replaces the whole path. Inline when short: nearly every Mapping has one
    /// (Emissary's default is `/`), and each member route copies it.
    pub prefix_rewrite: Option<Name>,
    /// Route timeout in milliseconds; 0 disables it. `None` on a Mapping that sets none;
    /// lowering fills in the Module's `cluster_request_timeout_ms`, so a route always has one.
    pub timeout_ms: Option<u64>,
    pub idle_timeout_ms: Option<u64>,
    pub host_rewrite: Option<Name>,
    pub auto_host_rewrite: bool,
    /// `bypass_auth` and `auth_context_extensions` (Emissary reads both from the member).
    pub auth: RouteAuth,
}

/// Settings that belong to a group's route: what a Mapping sets, and what its group's route
/// carries (Emissary's: the last member that sets each, with the Module's CORS applied). One
/// declaration for both, so a new setting is added once.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RouteSettings {
    /// `regex_rewrite`: wins over a member's `prefix_rewrite`.
    pub regex_rewrite: Option<RegexRewrite>,
    // Rarely set: boxed, so a route without them stays small (95,000 routes at 50,000
    // Services).
    pub retry: Option<Box<RetryPolicy>>,
    /// A Mapping's own policy; on a route, the Module's when the Mapping sets none.
    pub cors: Option<Box<Cors>>,
    /// Protocol upgrades allowed on this route (`allow_upgrade`, `use_websocket`), lower case.
    pub upgrades: Vec<String>,
    pub request_headers_to_add: Vec<HeaderValue>,
    pub request_headers_to_remove: Vec<String>,
    pub response_headers_to_add: Vec<HeaderValue>,
    pub response_headers_to_remove: Vec<String>,
    /// Consistent-hash policy from `load_balancer` (ring_hash or maglev).
    pub hash_policy: Option<Box<HashPolicy>>,
    /// Rate limits (`labels` of the RateLimitService's domain, with the Module's
    /// `default_labels`); empty without a RateLimitService.
    pub rate_limits: Vec<RateLimitGroup>,
}

impl Empty for RouteSettings {
    const EMPTY: &'static RouteSettings = &RouteSettings {
        regex_rewrite: None,
        retry: None,
        cors: None,
        upgrades: Vec::new(),
        request_headers_to_add: Vec::new(),
        request_headers_to_remove: Vec::new(),
        response_headers_to_add: Vec::new(),
        response_headers_to_remove: Vec::new(),
        hash_policy: None,
        rate_limits: Vec::new(),
    };
}

/// One backend of a route and its share of traffic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WeightedCluster {
    pub cluster: String,
    /// Effective weight in percent, after normalisation (the shares of a route sum to 100).
    pub weight: u32,
    /// The Mapping this backend came from.
    pub source: SourceRef,
    /// The member's path case: its own `case_sensitive`, else the group's.
    pub case_sensitive: bool,
    #[serde(flatten)]
    pub settings: MemberSettings,
}

/// `regex_rewrite: {pattern, substitution}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RegexRewrite {
    pub pattern: String,
    pub substitution: String,
}

/// `retry_policy`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RetryPolicy {
    pub retry_on: Option<String>,
    pub num_retries: Option<u32>,
    pub per_try_timeout_ms: Option<u64>,
}

/// A CORS policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Cors {
    /// Allowed origins: exact strings, or `*`.
    pub origins: Vec<String>,
    pub methods: Vec<String>,
    pub headers: Vec<String>,
    pub exposed_headers: Vec<String>,
    pub credentials: Option<bool>,
    pub max_age: Option<String>,
}

/// Traffic mirroring to a shadow cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Shadow {
    pub cluster: String,
    /// Percentage of requests mirrored (the shadow Mapping's `weight`, 100 by default).
    pub percent: u32,
    pub source: SourceRef,
}

/// A header to add, and whether it is appended to an existing value or replaces it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HeaderValue {
    pub name: String,
    pub value: String,
    pub append: bool,
}

/// Consistent hashing key for ring_hash and maglev.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum HashPolicy {
    Header {
        name: String,
    },
    Cookie {
        name: String,
        ttl: Option<String>,
        path: Option<String>,
    },
    SourceIp,
}

/// An HTTP redirect instead of proxying (`host_redirect: true`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Redirect {
    /// The redirect host (the Mapping's `service`, without scheme), with an optional port.
    pub host: String,
    pub port: Option<u16>,
    /// `https://` in `service` switches the scheme.
    pub https: bool,
    pub path: Option<RedirectPath>,
    /// 301 unless `redirect_response_code` says otherwise: one of 301, 302, 303, 307, 308.
    pub response_code: u16,
}

/// The path part of a redirect: exactly one kind may be given.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum RedirectPath {
    Path(String),
    Prefix(String),
    Regex(RegexRewrite),
}

/// An upstream cluster. The default (no name, no host) is a placeholder, not a cluster.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Cluster {
    pub name: String,
    /// The DNS name or address to connect to, e.g. `quote.default` or `10.0.0.1`.
    pub host: String,
    pub port: u16,
    /// Further endpoints besides `host:port`, with the same settings: the services of
    /// several AuthServices, which Emissary merges into one cluster.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub more_endpoints: Vec<(String, u16)>,
    /// How endpoints are found.
    pub discovery: Discovery,
    /// Originate TLS to the upstream (`https://` or a TLSContext). Boxed: most clusters
    /// have none, and a cluster map holds one entry per upstream.
    pub tls: Option<Box<UpstreamTls>>,
    /// HTTP/2 to the upstream (`grpc: true`).
    pub http2: bool,
    pub connect_timeout_ms: u64,
    pub idle_timeout_ms: Option<u64>,
    pub max_connection_lifetime_ms: Option<u64>,
    pub lb_policy: LbPolicy,
    pub circuit_breakers: Vec<CircuitBreaker>,
    /// Mappings that send traffic here.
    pub sources: Vec<SourceRef>,
}

/// How a cluster's endpoints are discovered.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Discovery {
    /// Resolve `host` through DNS (Ambassador's default `kubernetes-service` resolver).
    #[default]
    Dns,
    /// Endpoints are pushed through EDS (`kubernetes-endpoint` resolver), keyed by the
    /// Kubernetes Service `namespace/name` and port.
    Eds {
        service: String,
        namespace: String,
        port: u16,
    },
    /// A literal IP address.
    Static,
}

/// TLS origination towards an upstream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UpstreamTls {
    /// SNI sent to the upstream.
    pub sni: Option<String>,
    /// The TLSContext used, if any.
    pub context: Option<String>,
    /// Client certificate Secret (`namespace/name`), if the TLSContext names one.
    pub client_secret: Option<String>,
    pub ca_secret: Option<String>,
    pub alpn_protocols: Vec<String>,
}

/// The load-balancing policy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LbPolicy {
    #[default]
    RoundRobin,
    LeastRequest,
    RingHash,
    Maglev,
}

/// `circuit_breakers` thresholds for one priority.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CircuitBreaker {
    /// `default` or `high`.
    pub priority: String,
    pub max_connections: Option<u32>,
    pub max_pending_requests: Option<u32>,
    pub max_requests: Option<u32>,
    pub max_retries: Option<u32>,
}

/// A TCP listener built from TCPMappings.
#[derive(Clone, Debug, Serialize)]
pub struct TcpListener {
    pub name: String,
    pub port: u16,
    /// Filter chains: by SNI when `host` is set (TLS terminated there), otherwise a catch-all.
    pub routes: Vec<TcpRoute>,
}

/// One TCPMapping's share of a TCP listener.
#[derive(Clone, Debug, Serialize)]
pub struct TcpRoute {
    /// SNI to match, if the TCPMapping sets `host`.
    pub sni: Option<String>,
    /// The TLS terminated for that SNI (a TCPMapping with `host` always has it: one without
    /// is left out, as in Emissary). The upstream receives the decrypted bytes.
    pub tls: Option<ServerTls>,
    /// The TLSContext that gives `tls`, if one does (a Host's, or one listing the `host`).
    pub tls_context: Option<String>,
    pub clusters: Vec<WeightedCluster>,
    pub idle_timeout_ms: Option<u64>,
    pub source: SourceRef,
}

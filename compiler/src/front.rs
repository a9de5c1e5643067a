//! Manifests and `getambassador.io/config` annotations to resources as the user wrote them.
//!
//! Only this module knows YAML. It finds Ambassador configuration in two places: the
//! annotation on Services (YAML documents inside a YAML string, read with positions mapped
//! back to the outer file by [`scalar`]) and `getambassador.io` custom resources. It applies
//! namespace and label defaulting and `ambassador_id` filtering, and checks every field
//! against [`schema`]. It never fails: what it cannot read becomes a diagnostic.

pub mod cases;
pub mod scalar;
pub mod schema;
pub mod yaml;

use std::collections::BTreeMap;

use serde::Serialize;

use crate::diag::{did_you_mean, Code, Diagnostic, ObjectRef};
use crate::source::{FileId, Pos, Sources, Span};
use yaml::{Node, NodeKind, ParseError, Shift};

/// The annotation Ambassador reads its configuration from.
pub const ANNOTATION: &str = "getambassador.io/config";

/// Settings of one compilation.
#[derive(Clone, Debug)]
pub struct Options {
    /// This instance's `ambassador_id` (`--ambassador-id`), `default` unless set.
    pub ambassador_id: String,
    /// The namespace of objects that name none (kubectl's `-n`, else `default`).
    pub default_namespace: String,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            ambassador_id: "default".into(),
            default_namespace: "default".into(),
        }
    }
}

/// The apiVersions Ambassador configuration comes in, oldest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum ApiVersion {
    /// `ambassador/v0`: Ambassador 0.x annotations; read as v1 with a deprecation warning.
    V0,
    /// `ambassador/v1` and `getambassador.io/v1`.
    V1,
    /// `getambassador.io/v2`.
    V2,
    /// `getambassador.io/v3alpha1`.
    V3alpha1,
}

impl ApiVersion {
    pub fn parse(s: &str) -> Option<ApiVersion> {
        Some(match s {
            "ambassador/v0" => ApiVersion::V0,
            "ambassador/v1" | "getambassador.io/v1" => ApiVersion::V1,
            "getambassador.io/v2" => ApiVersion::V2,
            "getambassador.io/v3alpha1" => ApiVersion::V3alpha1,
            _ => return None,
        })
    }

    pub const KNOWN: &'static [&'static str] = &[
        "getambassador.io/v3alpha1",
        "getambassador.io/v2",
        "getambassador.io/v1",
        "ambassador/v1",
        "ambassador/v0",
    ];
}

/// The Ambassador kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Kind {
    Mapping,
    TcpMapping,
    Host,
    Module,
    TlsContext,
    AuthService,
    RateLimitService,
    Listener,
    KubernetesServiceResolver,
    KubernetesEndpointResolver,
    ConsulResolver,
    LogService,
    TracingService,
    DevPortal,
}

impl Kind {
    pub const ALL: &'static [Kind] = &[
        Kind::Mapping,
        Kind::TcpMapping,
        Kind::Host,
        Kind::Module,
        Kind::TlsContext,
        Kind::AuthService,
        Kind::RateLimitService,
        Kind::Listener,
        Kind::KubernetesServiceResolver,
        Kind::KubernetesEndpointResolver,
        Kind::ConsulResolver,
        Kind::LogService,
        Kind::TracingService,
        Kind::DevPortal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Mapping => "Mapping",
            Kind::TcpMapping => "TCPMapping",
            Kind::Host => "Host",
            Kind::Module => "Module",
            Kind::TlsContext => "TLSContext",
            Kind::AuthService => "AuthService",
            Kind::RateLimitService => "RateLimitService",
            Kind::Listener => "Listener",
            Kind::KubernetesServiceResolver => "KubernetesServiceResolver",
            Kind::KubernetesEndpointResolver => "KubernetesEndpointResolver",
            Kind::ConsulResolver => "ConsulResolver",
            Kind::LogService => "LogService",
            Kind::TracingService => "TracingService",
            Kind::DevPortal => "DevPortal",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.iter().copied().find(|k| k.as_str() == s)
    }

    fn schema(self) -> &'static [schema::Field] {
        match self {
            Kind::Mapping => schema::MAPPING,
            Kind::TcpMapping => schema::TCP_MAPPING,
            Kind::Host => schema::HOST,
            Kind::Module => schema::MODULE,
            Kind::TlsContext => schema::TLS_CONTEXT,
            Kind::AuthService => schema::AUTH_SERVICE,
            Kind::RateLimitService => schema::RATE_LIMIT_SERVICE,
            Kind::Listener => schema::LISTENER,
            Kind::KubernetesServiceResolver | Kind::KubernetesEndpointResolver => schema::RESOLVER,
            Kind::ConsulResolver => schema::CONSUL_RESOLVER,
            Kind::LogService => schema::LOG_SERVICE,
            Kind::TracingService => schema::TRACING_SERVICE,
            Kind::DevPortal => schema::OPEN_SCHEMA,
        }
    }

    /// Fields that must be present.
    fn required(self) -> &'static [&'static str] {
        match self {
            Kind::Mapping => &["prefix", "service"],
            Kind::TcpMapping => &["port", "service"],
            // A missing `auth_service` is `auth-service-missing`, reported by lowering,
            // which also keeps the routes the AuthService protects closed.
            // A missing `service` is `ratelimit-service-missing`, reported by lowering.
            // Likewise `logservice-missing` and `tracing-service-missing`.
            Kind::Listener => &["port", "securityModel"],
            _ => &[],
        }
    }

    /// Kinds that are checked but not compiled into Envoy configuration here.
    pub fn applied(self) -> bool {
        !matches!(self, Kind::ConsulResolver | Kind::DevPortal)
    }
}

/// Where a resource was written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Origin {
    /// A document of the `getambassador.io/config` annotation of this object.
    Annotation { object: ObjectRef },
    /// A `getambassador.io` custom resource.
    CustomResource,
}

/// An object's labels, sorted by key, shared by the documents of one annotation. A list
/// rather than a map: objects have a few labels, and a map's node holds eleven (at 20,000
/// Services that was 10 MB).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
/// Keys and values are inline names when short, as they nearly always are.
pub struct Labels(std::sync::Arc<[(crate::ir::Name, crate::ir::Name)]>);

impl Labels {
    pub fn new(map: BTreeMap<String, String>) -> Labels {
        Labels(map.into_iter().map(|(k, v)| (k.into(), v.into())).collect())
    }

    /// The value of a label.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .binary_search_by(|(k, _)| k.as_str().cmp(key))
            .ok()
            .map(|i| self.0[i].1.as_str())
    }

    /// The labels as a map.
    pub fn to_map(&self) -> BTreeMap<String, String> {
        self.0
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }
}

/// An Ambassador object as the user wrote it, with positions.
#[derive(Clone, Debug)]
pub struct Resource {
    pub kind: Kind,
    pub version: ApiVersion,
    pub id: ObjectRef,
    /// The position of the object's name (or of its `kind` when it has no name).
    pub span: Span,
    pub origin: Origin,
    /// Shared by the documents of one annotation.
    pub labels: Labels,
    /// The ids from `ambassador_id`; `default` when absent. Inline names: one allocation
    /// per object, not two.
    pub ambassador_ids: Vec<crate::ir::Name>,
    /// The mapping holding the spec fields (the flat document for annotations).
    pub spec: Node,
    /// `""` for annotations, `spec.` for custom resources: how field paths are written.
    pub field_prefix: &'static str,
    /// The IR's reference to this object, made when first asked for (`lower::source_ref`).
    pub(crate) source_ref: std::sync::OnceLock<crate::ir::SourceRef>,
}

impl Resource {
    /// A field of the spec, if set and not null.
    pub fn field(&self, name: &str) -> Option<&Node> {
        self.spec.field(name)
    }

    /// The position of a field's key, or of the object.
    pub fn key_span(&self, name: &str) -> Span {
        self.spec.key_span_or(name, self.span)
    }

    pub fn path(&self, field: &str) -> String {
        format!("{}{field}", self.field_prefix)
    }
}

/// A Kubernetes Service seen in the input: what `service-not-found` and endpoint routing need.
#[derive(Clone, Debug, Serialize)]
pub struct ServiceInfo {
    // Inline when short, as names and ports nearly always are: one Service read is then
    // one allocation (its ports), not five.
    pub namespace: crate::ir::Name,
    pub name: crate::ir::Name,
    pub ports: Vec<ServicePort>,
    pub span: Span,
}

#[derive(Clone, Debug, Serialize)]
pub struct ServicePort {
    pub name: Option<crate::ir::Name>,
    pub port: u16,
    pub target_port: Option<crate::ir::Name>,
}

/// Endpoints of a Service, from Endpoints or EndpointSlice objects.
#[derive(Clone, Debug, Serialize)]
pub struct EndpointsInfo {
    pub namespace: String,
    /// The Service name (an EndpointSlice's `kubernetes.io/service-name` label).
    pub service: String,
    /// Addresses with their ports: `(port name, port)` for each.
    pub addresses: Vec<String>,
    pub ports: Vec<(Option<String>, u16)>,
}

/// A Kubernetes Secret seen in the input, with the certificate material TLS needs decoded
/// (`tls.crt`, `tls.key`, `ca.crt`, from `data` or `stringData`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretInfo {
    pub namespace: String,
    pub name: String,
    /// `type`, e.g. `kubernetes.io/tls`.
    pub kind: String,
    pub cert_chain: Option<Vec<u8>>,
    pub private_key: Option<Vec<u8>>,
    pub ca: Option<Vec<u8>>,
    pub span: Span,
}

/// Everything read from the input.
#[derive(Clone, Debug, Default)]
pub struct Manifests {
    pub resources: Vec<Resource>,
    pub services: Vec<ServiceInfo>,
    pub endpoints: Vec<EndpointsInfo>,
    pub secrets: Vec<SecretInfo>,
    pub diagnostics: Vec<Diagnostic>,
    /// Number of Kubernetes objects read, of any kind.
    pub objects: usize,
    /// Ambassador objects whose `ambassador_id` leaves them out of this instance: not
    /// compiled, kept so that `trace` can name one that would have taken a request.
    pub excluded: Vec<Resource>,
}

/// Reads every file of `sources`.
pub fn read_all(sources: &Sources, opts: &Options) -> Manifests {
    let mut out = Manifests::default();
    for (id, _) in sources.iter() {
        read_file(sources, id, opts, &mut out);
    }
    out
}

/// Reads one file into `out`. Large files are read on several threads, each taking runs of
/// whole documents; the parts are appended in the order of the file.
pub fn read_file(sources: &Sources, file: FileId, opts: &Options, out: &mut Manifests) {
    gather(parse_file(sources, file, opts, false), out);
}

/// The objects of one file, read on all cores, in parts (one per run of documents) to
/// [`gather`]. They hold nothing of the file's text. `lean`: each annotation Mapping's
/// identifying keys ([`schema::ANNOTATION_META`]) are dropped from its spec once read into
/// its id and checked, for callers that read its other fields only through lowering (a
/// third of the tree of a usual annotation Mapping).
pub fn parse_file(sources: &Sources, file: FileId, opts: &Options, lean: bool) -> Vec<Manifests> {
    let text = &sources.get(file).text;
    yaml::parse_parallel(
        text,
        file,
        &Shift { first_line: 1 },
        // A chunk is one document, at most one Service and, usually, one resource: the lists
        // grow once rather than doubling (each doubling leaves the list before it freed,
        // beside the text at reading's peak: 1.3 MiB of `lint` over 20,000 Services).
        |docs| {
            let mut m = Manifests::default();
            m.resources.reserve(docs);
            m.services.reserve(docs);
            m
        },
        |part, doc| match doc.root {
            Err(e) => part.diagnostics.push(parse_error(file, e, None)),
            Ok(None) => {}
            Ok(Some(root)) => read_object(sources, &root, opts, part, 0),
        },
        // The lists of every run are alive together with the list they are copied into
        // ([`gather`]): without the room they grew into, a third less (5 MB at 20,000
        // Services).
        |part| {
            if lean {
                part.resources.iter_mut().for_each(drop_meta_keys);
            }
            part.resources.shrink_to_fit();
            part.services.shrink_to_fit();
        },
    )
}

/// Drops an annotation Mapping's identifying keys from its spec (see [`parse_file`]).
fn drop_meta_keys(r: &mut Resource) {
    if r.kind != Kind::Mapping || !matches!(r.origin, Origin::Annotation { .. }) {
        return;
    }
    if let NodeKind::Map(entries) = &mut r.spec.kind {
        entries.retain(|(k, _)| {
            !k.scalar()
                .is_some_and(|k| schema::ANNOTATION_META.contains(&k))
        });
        entries.shrink_to_fit();
    }
}

/// Adds the parts of a file ([`parse_file`]) to `out`, in order.
pub fn gather(parts: Vec<Manifests>, out: &mut Manifests) {
    // Each list grows once, to its final length, rather than doubling part by part.
    out.resources
        .reserve(parts.iter().map(|p| p.resources.len()).sum());
    out.services
        .reserve(parts.iter().map(|p| p.services.len()).sum());
    out.diagnostics
        .reserve(parts.iter().map(|p| p.diagnostics.len()).sum());
    for mut part in parts {
        out.resources.append(&mut part.resources);
        out.services.append(&mut part.services);
        out.endpoints.append(&mut part.endpoints);
        out.secrets.append(&mut part.secrets);
        out.diagnostics.append(&mut part.diagnostics);
        out.excluded.append(&mut part.excluded);
        out.objects += part.objects;
    }
}

fn parse_error(file: FileId, e: ParseError, object: Option<&ObjectRef>) -> Diagnostic {
    let (code, at, message) = match e {
        ParseError::Syntax { at, message } => (Code::YamlSyntax, at, message),
        ParseError::Limit { at, message } => (Code::YamlLimit, at, message),
    };
    let mut d = Diagnostic::at(code, Span::point(file, at), message);
    if let Some(o) = object {
        d = d.with_object(o);
    }
    d
}

/// Reads one Kubernetes object (or a `List` of them).
fn read_object(sources: &Sources, root: &Node, opts: &Options, out: &mut Manifests, depth: usize) {
    if root.as_map().is_none() {
        if !root.is_null() {
            out.diagnostics.push(Diagnostic::at(
                Code::NotAnObject,
                root.span,
                format!(
                    "this document is {}, not a Kubernetes object",
                    root.type_name()
                ),
            ));
        }
        return;
    }
    let api_version = root.get("apiVersion").and_then(Node::as_str);
    let kind = root.get("kind").and_then(Node::as_str);
    let (Some(api_version), Some(kind)) = (api_version, kind) else {
        // A route test file (`kubectl ambassador test --cases`) kept beside the
        // configuration is known YAML, not a mistake.
        if root.get("tests").and_then(Node::as_seq).is_some() {
            return;
        }
        out.diagnostics.push(Diagnostic::at(
            Code::NotAnObject,
            Span::point(root.span.file, root.span.start),
            "this document has no `apiVersion` and `kind`, so it is not a Kubernetes object",
        ));
        return;
    };
    out.objects += 1;
    if (kind.ends_with("List") && api_version == "v1") || kind == "List" {
        if depth > 2 {
            return;
        }
        if let Some(items) = root.get("items").and_then(Node::as_seq) {
            for item in items {
                read_object(sources, item, opts, out, depth + 1);
            }
        }
        return;
    }
    let meta = root.get("metadata");
    let name = meta
        .and_then(|m| m.get("name"))
        .and_then(Node::as_str)
        .unwrap_or_default();
    let namespace = meta
        .and_then(|m| m.get("namespace"))
        .and_then(Node::as_str)
        .unwrap_or(&opts.default_namespace)
        .to_string();
    let labels: Labels = Labels::new(
        meta.and_then(|m| m.get("labels"))
            .map(string_map)
            .unwrap_or_default(),
    );
    let object = ObjectRef {
        kind: kind.into(),
        namespace: namespace.clone().into(),
        name: name.into(),
    };

    if api_version.split('/').next() == Some("getambassador.io") {
        read_custom_resource(root, api_version, kind, &object, labels, opts, out);
        return;
    }
    match (api_version, kind) {
        ("v1", "Service") => read_service(root, &object, out),
        ("v1", "Secret") => read_secret(root, &object, out),
        ("v1", "Endpoints") => read_endpoints(root, &object, out),
        ("discovery.k8s.io/v1", "EndpointSlice") => read_endpoint_slice(root, &object, out),
        _ => {}
    }
    if let Some((key, value)) = meta
        .and_then(|m| m.get("annotations"))
        .and_then(|a| a.get_entry(ANNOTATION))
    {
        if matches!(kind, "Service" | "Ingress") {
            read_annotation(sources, key, value, &object, &labels, opts, out);
        } else {
            out.diagnostics.push(
                Diagnostic::at(
                    Code::AnnotationIgnored,
                    key.span,
                    format!("Ambassador reads `{ANNOTATION}` on Services, not on a {kind}"),
                )
                .with_object(&object),
            );
        }
    }
}

fn string_map(n: &Node) -> BTreeMap<String, String> {
    n.as_map()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.scalar()?.to_string(), v.scalar()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

fn read_secret(root: &Node, object: &ObjectRef, out: &mut Manifests) {
    let mut value = |key: &str| -> Option<Vec<u8>> {
        if let Some(v) = root.get("stringData").and_then(|d| d.get(key)) {
            return v.scalar().map(|s| s.as_bytes().to_vec());
        }
        let v = root.get("data")?.get(key)?;
        let text = v.scalar()?;
        match crate::base64::decode(text) {
            Some(bytes) => Some(bytes),
            None => {
                out.diagnostics.push(
                    Diagnostic::at(
                        Code::InvalidValue,
                        v.span,
                        format!(
                            "`data.{key}` of Secret `{}/{}` is not base64",
                            object.namespace, object.name
                        ),
                    )
                    .with_object(object)
                    .with_field(format!("data.{key}")),
                );
                None
            }
        }
    };
    let cert_chain = value("tls.crt");
    let private_key = value("tls.key");
    let ca = value("ca.crt");
    out.secrets.push(SecretInfo {
        namespace: object.namespace.to_string(),
        name: object.name.to_string(),
        kind: root
            .get("type")
            .and_then(Node::as_str)
            .unwrap_or("Opaque")
            .to_string(),
        cert_chain,
        private_key,
        ca,
        span: root
            .get("metadata")
            .and_then(|m| m.get("name"))
            .map_or(root.span, |n| n.span),
    });
}

fn read_service(root: &Node, object: &ObjectRef, out: &mut Manifests) {
    let mut ports = root
        .get("spec")
        .and_then(|s| s.get("ports"))
        .and_then(Node::as_seq)
        .map(|ports| {
            ports
                .iter()
                .filter_map(|p| {
                    Some(ServicePort {
                        name: p.get("name").and_then(Node::as_str).map(Into::into),
                        port: u16::try_from(p.get("port")?.as_int()?).ok()?,
                        target_port: p.get("targetPort").and_then(Node::scalar).map(Into::into),
                    })
                })
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    // Without the room collecting leaves (four ports): kept to the end of lowering.
    ports.shrink_to_fit();
    out.services.push(ServiceInfo {
        namespace: object.namespace.clone(),
        name: object.name.clone(),
        ports,
        span: root.span,
    });
}

fn read_endpoints(root: &Node, object: &ObjectRef, out: &mut Manifests) {
    for subset in root
        .get("subsets")
        .and_then(Node::as_seq)
        .unwrap_or_default()
    {
        let addresses = subset
            .get("addresses")
            .and_then(Node::as_seq)
            .unwrap_or_default()
            .iter()
            .filter_map(|a| a.get("ip").and_then(Node::as_str).map(str::to_string))
            .collect();
        out.endpoints.push(EndpointsInfo {
            namespace: object.namespace.to_string(),
            service: object.name.to_string(),
            addresses,
            ports: ports_of(subset.get("ports")),
        });
    }
}

fn ports_of(n: Option<&Node>) -> Vec<(Option<String>, u16)> {
    n.and_then(Node::as_seq)
        .unwrap_or_default()
        .iter()
        .filter_map(|p| {
            Some((
                p.get("name").and_then(Node::as_str).map(str::to_string),
                u16::try_from(p.get("port")?.as_int()?).ok()?,
            ))
        })
        .collect()
}

fn read_endpoint_slice(root: &Node, object: &ObjectRef, out: &mut Manifests) {
    let service = root
        .get("metadata")
        .and_then(|m| m.get("labels"))
        .and_then(|l| l.get("kubernetes.io/service-name"))
        .and_then(Node::as_str)
        .unwrap_or(&object.name)
        .to_string();
    let addresses = root
        .get("endpoints")
        .and_then(Node::as_seq)
        .unwrap_or_default()
        .iter()
        .filter(|e| {
            e.get("conditions")
                .and_then(|c| c.get("ready"))
                .and_then(Node::as_bool)
                != Some(false)
        })
        .flat_map(|e| {
            e.get("addresses")
                .and_then(Node::as_seq)
                .unwrap_or_default()
        })
        .filter_map(|a| a.as_str().map(str::to_string))
        .collect();
    out.endpoints.push(EndpointsInfo {
        namespace: object.namespace.to_string(),
        service,
        addresses,
        ports: ports_of(root.get("ports")),
    });
}

/// Reads the `getambassador.io/config` annotation of a Service.
fn read_annotation(
    sources: &Sources,
    key: &Node,
    value: &Node,
    owner: &ObjectRef,
    labels: &Labels,
    opts: &Options,
    out: &mut Manifests,
) {
    let NodeKind::Scalar { text, style, .. } = &value.kind else {
        out.diagnostics.push(
            Diagnostic::at(
                Code::AnnotationNotString,
                value.span,
                format!(
                    "`{ANNOTATION}` must be a string holding YAML, found {}",
                    value.type_name()
                ),
            )
            .with_object(owner)
            .with_field(format!("metadata.annotations.{ANNOTATION}")),
        );
        return;
    };
    if value.is_null() || text.trim().is_empty() {
        out.diagnostics.push(
            Diagnostic::at(
                Code::EmptyAnnotation,
                key.span,
                format!("`{ANNOTATION}` is empty"),
            )
            .with_object(owner),
        );
        return;
    }
    let file = value.span.file;
    let map = scalar::ScalarMap::build(sources.get(file), value.span.start, *style, text);
    for doc in yaml::parse(text, file, &map) {
        match doc.root {
            Err(e) => out.diagnostics.push(parse_error(file, e, Some(owner))),
            Ok(None) => {}
            Ok(Some(root)) => read_annotation_doc(root, owner, labels, opts, out),
        }
    }
}

/// Reads a file whose whole text is the value of a `getambassador.io/config` annotation of
/// `owner`: positions are then lines and columns inside the annotation, which is what the
/// admission webhook reports.
pub fn read_annotation_file(
    sources: &Sources,
    file: FileId,
    owner: &ObjectRef,
    labels: &Labels,
    opts: &Options,
    out: &mut Manifests,
) {
    let text = &sources.get(file).text;
    if text.trim().is_empty() {
        out.diagnostics.push(
            Diagnostic::new(
                Code::EmptyAnnotation,
                None,
                format!("`{ANNOTATION}` is empty"),
            )
            .with_object(owner),
        );
        return;
    }
    for doc in yaml::parse(text, file, &Shift { first_line: 1 }) {
        match doc.root {
            Err(e) => out.diagnostics.push(parse_error(file, e, Some(owner))),
            Ok(None) => {}
            Ok(Some(root)) => read_annotation_doc(root, owner, labels, opts, out),
        }
    }
}

fn read_annotation_doc(
    root: Node,
    owner: &ObjectRef,
    labels: &Labels,
    opts: &Options,
    out: &mut Manifests,
) {
    let Some(_) = root.as_map() else {
        out.diagnostics.push(
            Diagnostic::at(
                Code::NotAnObject,
                root.span,
                format!(
                    "a document of `{ANNOTATION}` must be a mapping, found {}",
                    root.type_name()
                ),
            )
            .with_object(owner),
        );
        return;
    };
    let at = Span::point(root.span.file, root.span.start);
    let Some(version) = read_version(&root, at, owner, out) else {
        return;
    };
    let Some(kind) = read_kind(&root, at, owner, out) else {
        return;
    };
    let name_node = root.get("name");
    let namespace = root
        .get("namespace")
        .and_then(Node::as_str)
        .unwrap_or(&owner.namespace)
        .to_string();
    let name = name_node
        .and_then(Node::as_str)
        .unwrap_or_default()
        .to_string();
    let id = ObjectRef {
        kind: kind.as_str().into(),
        namespace: namespace.into(),
        name: name.into(),
    };
    let span = name_node.map_or_else(
        || root.get_entry("kind").map_or(at, |(k, _)| k.span),
        |n| n.span,
    );
    if id.name.is_empty() {
        out.diagnostics.push(
            Diagnostic::at(
                Code::MissingName,
                span,
                format!("this {} has no `name`", kind.as_str()),
            )
            .with_object(owner)
            .with_field("name"),
        );
        return;
    }
    let labels = root
        .get("metadata_labels")
        .map(|n| Labels::new(string_map(n)))
        .unwrap_or_else(|| labels.clone());
    let resource = Resource {
        kind,
        version,
        id,
        span,
        origin: Origin::Annotation {
            object: owner.clone(),
        },
        labels,
        ambassador_ids: Vec::new(),
        spec: root, // moved, not cloned: the document is the spec
        field_prefix: "",
        source_ref: Default::default(),
    };
    admit(resource, schema::ANNOTATION_META, opts, out);
}

fn read_version(
    root: &Node,
    at: Span,
    owner: &ObjectRef,
    out: &mut Manifests,
) -> Option<ApiVersion> {
    let Some(v) = root.get("apiVersion") else {
        out.diagnostics.push(
            Diagnostic::at(
                Code::MissingField,
                at,
                "this annotation document has no `apiVersion`",
            )
            .with_object(owner)
            .with_field("apiVersion")
            .with_help("add `apiVersion: getambassador.io/v3alpha1`"),
        );
        return None;
    };
    let text = v.as_str().unwrap_or_default();
    match ApiVersion::parse(text) {
        Some(version) => {
            if version <= ApiVersion::V1 {
                out.diagnostics.push(
                    Diagnostic::at(
                        Code::DeprecatedApiVersion,
                        v.span,
                        format!("`{text}` is deprecated (Emissary 2.x and later refuse `ambassador/v0`)"),
                    )
                    .with_object(owner),
                );
            }
            Some(version)
        }
        None => {
            let mut d = Diagnostic::at(
                Code::UnknownApiVersion,
                v.span,
                format!("unknown apiVersion `{text}`"),
            )
            .with_object(owner)
            .with_field("apiVersion");
            if let Some(s) = did_you_mean(text, ApiVersion::KNOWN.iter().copied()) {
                d = d.with_help(format!("did you mean `{s}`?"));
            }
            out.diagnostics.push(d);
            None
        }
    }
}

fn read_kind(root: &Node, at: Span, owner: &ObjectRef, out: &mut Manifests) -> Option<Kind> {
    let Some(k) = root.get("kind") else {
        out.diagnostics.push(
            Diagnostic::at(
                Code::MissingField,
                at,
                "this annotation document has no `kind`",
            )
            .with_object(owner)
            .with_field("kind"),
        );
        return None;
    };
    let text = k.as_str().unwrap_or_default();
    match Kind::parse(text) {
        Some(kind) => Some(kind),
        None => {
            out.diagnostics.push(unknown_kind(text, k.span, owner));
            None
        }
    }
}

fn unknown_kind(text: &str, span: Span, owner: &ObjectRef) -> Diagnostic {
    let mut d = Diagnostic::at(
        Code::UnknownKind,
        span,
        format!("unknown Ambassador kind `{text}`"),
    )
    .with_object(owner)
    .with_field("kind");
    let lower = text.to_ascii_lowercase();
    let exact_case = Kind::ALL
        .iter()
        .find(|k| k.as_str().to_ascii_lowercase() == lower);
    if let Some(k) = exact_case
        .map(|k| k.as_str())
        .or_else(|| did_you_mean(text, Kind::ALL.iter().map(|k| k.as_str())))
    {
        d = d.with_help(format!("did you mean `{k}`?"));
    }
    d
}

fn read_custom_resource(
    root: &Node,
    api_version: &str,
    kind_text: &str,
    object: &ObjectRef,
    labels: Labels,
    opts: &Options,
    out: &mut Manifests,
) {
    let at = root.get("apiVersion").map_or(root.span, |n| n.span);
    let version = match ApiVersion::parse(api_version) {
        Some(v @ (ApiVersion::V2 | ApiVersion::V3alpha1)) => v,
        Some(_) | None => {
            let mut d = Diagnostic::at(
                Code::UnknownApiVersion,
                at,
                format!("custom resources of `{api_version}` are not served; use `getambassador.io/v3alpha1` or `getambassador.io/v2`"),
            )
            .with_object(object)
            .with_field("apiVersion");
            if let Some(s) = did_you_mean(api_version, ApiVersion::KNOWN[..2].iter().copied()) {
                d = d.with_help(format!("did you mean `{s}`?"));
            }
            out.diagnostics.push(d);
            return;
        }
    };
    let kind_span = root.get("kind").map_or(root.span, |n| n.span);
    let Some(kind) = Kind::parse(kind_text) else {
        out.diagnostics
            .push(unknown_kind(kind_text, kind_span, object));
        return;
    };
    let name_span = root
        .get("metadata")
        .and_then(|m| m.get("name"))
        .map_or(kind_span, |n| n.span);
    if object.name.is_empty() {
        out.diagnostics.push(
            Diagnostic::at(
                Code::MissingName,
                kind_span,
                format!("this {kind_text} has no `metadata.name`"),
            )
            .with_object(object)
            .with_field("metadata.name"),
        );
        return;
    }
    let spec = match root.get("spec") {
        Some(s) if s.as_map().is_some() => s.clone(),
        Some(s) if !s.is_null() => {
            out.diagnostics.push(
                Diagnostic::at(
                    Code::WrongType,
                    s.span,
                    format!("`spec` must be a mapping, found {}", s.type_name()),
                )
                .with_object(object)
                .with_field("spec"),
            );
            return;
        }
        _ => Node {
            kind: NodeKind::Map(Vec::new()),
            span: kind_span,
        },
    };
    let resource = Resource {
        kind,
        version,
        id: ObjectRef {
            kind: kind.as_str().into(),
            ..object.clone()
        },
        span: name_span,
        origin: Origin::CustomResource,
        labels,
        ambassador_ids: Vec::new(),
        spec,
        field_prefix: "spec.",
        source_ref: Default::default(),
    };
    admit(resource, &[], opts, out);
}

/// Checks a resource's fields, applies `ambassador_id`, and keeps it if it is for us.
fn admit(mut r: Resource, skip: &[&str], opts: &Options, out: &mut Manifests) {
    let ctx = schema::Ctx {
        object: &r.id,
        version: r.version,
        prefix: r.field_prefix,
        skip,
    };
    schema::check(&r.spec, r.kind.schema(), &ctx, "", &mut out.diagnostics);
    for req in r.kind.required() {
        if r.field(req).is_none() {
            out.diagnostics.push(
                Diagnostic::at(
                    Code::MissingField,
                    r.span,
                    format!(
                        "{} `{}` has no `{}{req}`",
                        r.kind.as_str(),
                        r.id.name,
                        r.field_prefix
                    ),
                )
                .with_object(&r.id)
                .with_field(r.path(req)),
            );
        }
    }
    if !r.kind.applied() {
        out.diagnostics.push(
            Diagnostic::at(
                Code::UnsupportedKind,
                r.span,
                format!(
                    "{} is checked but not compiled into Envoy configuration by this compiler",
                    r.kind.as_str()
                ),
            )
            .with_object(&r.id),
        );
    }
    r.ambassador_ids = ambassador_ids(&r);
    let ours = r
        .ambassador_ids
        .iter()
        .any(|id| id == opts.ambassador_id.as_str() || id == "_automatic_");
    if !ours {
        out.diagnostics.push(
            Diagnostic::at(
                Code::ExcludedByAmbassadorId,
                r.key_span(if r.spec.get("ambassador_id").is_some() {
                    "ambassador_id"
                } else {
                    "ambassadorId"
                }),
                format!(
                    "{} `{}` is for ambassador_id {} and this instance is `{}`",
                    r.kind.as_str(),
                    r.id.name,
                    r.ambassador_ids
                        .iter()
                        .map(|i| format!("`{i}`"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    opts.ambassador_id
                ),
            )
            .with_object(&r.id),
        );
        out.excluded.push(r);
        return;
    }
    out.resources.push(r);
}

fn ambassador_ids(r: &Resource) -> Vec<crate::ir::Name> {
    let node = r.field("ambassador_id").or_else(|| r.field("ambassadorId"));
    let ids: Vec<crate::ir::Name> = match node {
        Some(n) => match n.as_seq() {
            Some(items) => items
                .iter()
                .filter_map(Node::scalar)
                .map(Into::into)
                .collect(),
            None => n.scalar().map(|s| vec![s.into()]).unwrap_or_default(),
        },
        None => Vec::new(),
    };
    if ids.is_empty() {
        vec!["default".into()]
    } else {
        ids
    }
}

/// A point span at the start of a node.
pub fn start_of(n: &Node) -> Span {
    Span::point(n.span.file, n.span.start)
}

/// The position just before `pos` on the same line, for carets under a key.
pub fn pos_of(span: Span) -> Pos {
    span.start
}

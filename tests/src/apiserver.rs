//! An in-process stand-in for the Kubernetes API server: just enough of its HTTP API for
//! kube-rs lists, watches, status patches and Events, on 127.0.0.1 over plain HTTP.
//!
//! What it serves, by path:
//!
//! - `GET /api/v1[/namespaces/{ns}]/services`, `GET /apis/{group}/{version}[/namespaces/{ns}]/{plural}`:
//!   a `List` with `metadata.resourceVersion`, paged by `limit`/`continue`; with
//!   `?watch=true`, newline-delimited watch events from `resourceVersion` on, streamed
//!   until `timeoutSeconds` or [`Config::max_watch`] (whichever is shorter) has passed.
//! - `GET .../{plural}/{name}`: one object.
//! - `PATCH .../{plural}/{name}/status`: a JSON merge patch of `status`.
//! - `POST .../namespaces/{ns}/{plural}`: creates an object (`409 AlreadyExists` when it
//!   exists); `PUT .../namespaces/{ns}/{plural}/{name}`: replaces one, `409 Conflict`
//!   when the body's `metadata.resourceVersion` is not the stored one (an update without
//!   one is unconditional, as for Leases on a real server). This is what leader election
//!   needs of `coordination.k8s.io/v1` Leases, which the default [`Config`] serves.
//! - `POST .../namespaces/{ns}/events` (core or `events.k8s.io`): records an Event.
//!
//! A request's `x-client` header, if any, names who sent it
//! ([`ApiServer::requests_by_client`]): tests give each of several clients its own.
//!
//! A resource that is not configured, or a version not in its list, answers 404 with a
//! `Status` body, as a server without the CRD does. Label selectors are ignored. Field
//! selectors (`fieldSelector`, terms `f=v`, `f==v`, `f!=v` joined by commas) filter lists
//! and watches on `metadata.name`, `metadata.namespace` and, for Secrets, `type`, the
//! fields a real server supports there; any other field answers `400 BadRequest` as a
//! real server does. A change that moves an object into or out of a selection is not
//! turned into `ADDED`/`DELETED` (a Secret's `type` is immutable on a real server). There
//! is no authentication: tests write a kubeconfig without credentials
//! ([`write_kubeconfig`]).
//! Objects are stored once and served at whatever version is asked, the way CRDs with
//! `conversion: None` behave. Every change gets the next resourceVersion and is kept, so a
//! watch can start from any version, until [`ApiServer::compact`] makes older versions
//! answer `410 Gone` (which makes kube-rs re-list).

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Map, Value};
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// A resource the server knows.
#[derive(Clone, Debug)]
pub struct Resource {
    /// `""` for the core group.
    pub group: String,
    pub kind: String,
    pub plural: String,
    /// Versions served; empty: known to [`ApiServer::apply`] but not served (404).
    pub versions: Vec<String>,
}

impl Resource {
    pub fn new(group: &str, kind: &str, plural: &str, versions: &[&str]) -> Resource {
        Resource {
            group: group.into(),
            kind: kind.into(),
            plural: plural.into(),
            versions: versions.iter().map(|v| v.to_string()).collect(),
        }
    }
}

/// The `getambassador.io` kinds, as the CRDs name them.
pub const AMBASSADOR_KINDS: [&str; 14] = [
    "Mapping",
    "TCPMapping",
    "Host",
    "Module",
    "TLSContext",
    "AuthService",
    "RateLimitService",
    "Listener",
    "KubernetesServiceResolver",
    "KubernetesEndpointResolver",
    "ConsulResolver",
    "LogService",
    "TracingService",
    "DevPortal",
];

/// What the server serves and how long a watch may last.
#[derive(Clone, Debug)]
pub struct Config {
    pub resources: Vec<Resource>,
    /// The longest a watch stays open, whatever `timeoutSeconds` asks, so that tests end.
    pub max_watch: Duration,
}

impl Default for Config {
    /// Services, Secrets, EndpointSlices, Leases, and every `getambassador.io` kind at
    /// `v3alpha1` and `v2`.
    fn default() -> Self {
        let mut resources = vec![
            Resource::new("", "Service", "services", &["v1"]),
            Resource::new("", "Secret", "secrets", &["v1"]),
            Resource::new("coordination.k8s.io", "Lease", "leases", &["v1"]),
            Resource::new(
                "discovery.k8s.io",
                "EndpointSlice",
                "endpointslices",
                &["v1"],
            ),
        ];
        for kind in AMBASSADOR_KINDS {
            resources.push(Resource::new(
                "getambassador.io",
                kind,
                &format!("{}s", kind.to_ascii_lowercase()),
                &["v3alpha1", "v2"],
            ));
        }
        Config {
            resources,
            max_watch: Duration::from_secs(5),
        }
    }
}

impl Config {
    /// Serves `plural` only at `versions` (none: not at all, like a missing CRD).
    pub fn serve_versions(mut self, plural: &str, versions: &[&str]) -> Self {
        for r in &mut self.resources {
            if r.plural == plural {
                r.versions = versions.iter().map(|v| v.to_string()).collect();
            }
        }
        self
    }
}

/// One change, as a watch sees it.
#[derive(Clone, Debug)]
struct Change {
    rv: u64,
    plural: String,
    group: String,
    namespace: String,
    kind: &'static str,
    object: Value,
}

#[derive(Default)]
struct Inner {
    rv: u64,
    /// Watches from a resourceVersion below this get 410 Gone.
    oldest: u64,
    /// `(group, plural)` → `(namespace, name)` → object.
    objects: BTreeMap<(String, String), BTreeMap<(String, String), Value>>,
    log: Vec<Arc<Change>>,
    forbidden: HashSet<String>,
    fail_next: u32,
    requests: Vec<String>,
    /// `(x-client header, request line)`.
    by_client: Vec<(String, String)>,
    status_patches: Vec<(String, Value)>,
    events: Vec<Value>,
    next_uid: u64,
}

struct Shared {
    config: Config,
    inner: Mutex<Inner>,
    changes: broadcast::Sender<Arc<Change>>,
    /// Bumped by [`ApiServer::close_watches`]: every open watch ends.
    epoch: watch::Sender<u64>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A test that panicked while holding the lock has failed already; go on.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn resource_of(&self, group: &str, kind: &str) -> Option<&Resource> {
        self.config
            .resources
            .iter()
            .find(|r| r.group == group && r.kind == kind)
    }
}

/// A running stand-in API server. Dropping it stops accepting connections; open watches
/// end within [`Config::max_watch`].
pub struct ApiServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ApiServer {
    /// Starts serving on an ephemeral port of 127.0.0.1.
    pub async fn start(config: Config) -> ApiServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        let (changes, _) = broadcast::channel(4096);
        let (epoch, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            config,
            inner: Mutex::new(Inner::default()),
            changes,
            epoch,
        });
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        ApiServer { addr, shared, task }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Adds or replaces an object (by `apiVersion` group, `kind`, namespace and name) and
    /// tells every matching watch (`ADDED` or `MODIFIED`). Returns its resourceVersion.
    /// A replaced object keeps its `status`, as if it had a status subresource; a new one
    /// keeps the `status` it is given, so tests can seed one.
    /// Panics when the kind is not configured: that is a mistake in the test.
    pub fn apply(&self, mut object: Value) -> u64 {
        let (group, kind, ns, name) = identity(&object);
        let plural = self
            .shared
            .resource_of(&group, &kind)
            .unwrap_or_else(|| panic!("the stand-in API server has no resource for {kind}"))
            .plural
            .clone();
        let mut inner = self.shared.lock();
        inner.rv += 1;
        let rv = inner.rv;
        let existing = inner
            .objects
            .get(&(group.clone(), plural.clone()))
            .and_then(|m| m.get(&(ns.clone(), name.clone())))
            .cloned();
        let uid = match existing.as_ref().and_then(|o| o["metadata"].get("uid")) {
            Some(uid) => uid.clone(),
            None => {
                inner.next_uid += 1;
                json!(format!("00000000-0000-0000-0000-{:012}", inner.next_uid))
            }
        };
        if let Some(meta) = object["metadata"].as_object_mut() {
            meta.insert("resourceVersion".into(), json!(rv.to_string()));
            meta.insert("uid".into(), uid);
        }
        // As with a status subresource, writes of the object leave its status alone.
        if let Some(status) = existing.as_ref().and_then(|o| o.get("status")) {
            object["status"] = status.clone();
        }
        let kind_of_change = if existing.is_some() {
            "MODIFIED"
        } else {
            "ADDED"
        };
        inner
            .objects
            .entry((group.clone(), plural.clone()))
            .or_default()
            .insert((ns.clone(), name), object.clone());
        self.record(&mut inner, rv, &group, &plural, &ns, kind_of_change, object);
        rv
    }

    /// Deletes an object and tells every matching watch (`DELETED`). False when absent.
    pub fn delete(&self, api_version: &str, kind: &str, namespace: &str, name: &str) -> bool {
        let group = group_of(api_version);
        let Some(plural) = self
            .shared
            .resource_of(&group, kind)
            .map(|r| r.plural.clone())
        else {
            return false;
        };
        let mut inner = self.shared.lock();
        let removed = inner
            .objects
            .get_mut(&(group.clone(), plural.clone()))
            .and_then(|m| m.remove(&(namespace.to_string(), name.to_string())));
        let Some(mut object) = removed else {
            return false;
        };
        inner.rv += 1;
        let rv = inner.rv;
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
        self.record(
            &mut inner, rv, &group, &plural, namespace, "DELETED", object,
        );
        true
    }

    #[allow(clippy::too_many_arguments)]
    fn record(
        &self,
        inner: &mut Inner,
        rv: u64,
        group: &str,
        plural: &str,
        namespace: &str,
        kind: &'static str,
        object: Value,
    ) {
        let change = Arc::new(Change {
            rv,
            plural: plural.into(),
            group: group.into(),
            namespace: namespace.into(),
            kind,
            object,
        });
        inner.log.push(change.clone());
        // Sent under the lock, so a watch that replays the log and then subscribes sees
        // every change exactly once.
        let _ = self.shared.changes.send(change);
    }

    /// The stored object, if any.
    pub fn object(&self, group: &str, plural: &str, namespace: &str, name: &str) -> Option<Value> {
        self.shared
            .lock()
            .objects
            .get(&(group.to_string(), plural.to_string()))
            .and_then(|m| m.get(&(namespace.to_string(), name.to_string())))
            .cloned()
    }

    /// Requests for `plural` answer 403 Forbidden from now on.
    pub fn forbid(&self, plural: &str) {
        self.shared.lock().forbidden.insert(plural.into());
    }

    /// Undoes [`ApiServer::forbid`].
    pub fn allow(&self, plural: &str) {
        self.shared.lock().forbidden.remove(plural);
    }

    /// The next `n` requests of any kind answer 500.
    pub fn fail_next(&self, n: u32) {
        self.shared.lock().fail_next = n;
    }

    /// Ends every open watch now (clients reconnect).
    pub fn close_watches(&self) {
        self.shared.epoch.send_modify(|e| *e += 1);
    }

    /// Forgets history: a watch from any resourceVersion before now gets `410 Gone`.
    pub fn compact(&self) {
        let mut inner = self.shared.lock();
        inner.oldest = inner.rv + 1;
        inner.log.clear();
    }

    /// Every request so far, as `METHOD path?query`.
    pub fn requests(&self) -> Vec<String> {
        self.shared.lock().requests.clone()
    }

    /// Every request so far, as `(client, METHOD path?query)`, where the client is the
    /// request's `x-client` header (empty without one).
    pub fn requests_by_client(&self) -> Vec<(String, String)> {
        self.shared.lock().by_client.clone()
    }

    /// Every status patch so far, as `(path, patch body)`.
    pub fn status_patches(&self) -> Vec<(String, Value)> {
        self.shared.lock().status_patches.clone()
    }

    /// Every Event posted so far.
    pub fn events(&self) -> Vec<Value> {
        self.shared.lock().events.clone()
    }

    /// A kubeconfig context pointing here.
    pub fn context<'a>(&self, name: &'a str, namespace: Option<&'a str>) -> KubeContext<'a> {
        KubeContext {
            name,
            server: self.url(),
            namespace,
        }
    }
}

fn group_of(api_version: &str) -> String {
    match api_version.rsplit_once('/') {
        Some((g, _)) => g.to_string(),
        None => String::new(),
    }
}

fn identity(object: &Value) -> (String, String, String, String) {
    let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
    (
        group_of(object["apiVersion"].as_str().unwrap_or_default()),
        s(&object["kind"]),
        s(&object["metadata"]["namespace"]),
        s(&object["metadata"]["name"]),
    )
}

/// One context of a kubeconfig.
#[derive(Clone, Debug)]
pub struct KubeContext<'a> {
    pub name: &'a str,
    pub server: String,
    pub namespace: Option<&'a str>,
}

/// Writes a kubeconfig with one cluster per context, no credentials, and `current` as
/// the current context. JSON is YAML, so it is written as JSON.
pub fn write_kubeconfig(
    path: &Path,
    contexts: &[KubeContext<'_>],
    current: Option<&str>,
) -> std::io::Result<()> {
    let clusters: Vec<Value> = contexts
        .iter()
        .map(|c| json!({"name": format!("cluster-{}", c.name), "cluster": {"server": c.server}}))
        .collect();
    let named: Vec<Value> = contexts
        .iter()
        .map(|c| {
            let mut context = json!({"cluster": format!("cluster-{}", c.name), "user": "test"});
            if let Some(ns) = c.namespace {
                context["namespace"] = json!(ns);
            }
            json!({"name": c.name, "context": context})
        })
        .collect();
    let mut config = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": clusters,
        "contexts": named,
        "users": [{"name": "test", "user": {}}],
    });
    if let Some(current) = current {
        config["current-context"] = json!(current);
    }
    std::fs::write(path, serde_json::to_string_pretty(&config)?)
}

/// A parsed request path.
#[derive(Debug)]
struct Target {
    group: String,
    version: String,
    namespace: Option<String>,
    plural: String,
    name: Option<String>,
    subresource: Option<String>,
}

fn parse_path(path: &str) -> Option<Target> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match parts.as_slice() {
        ["api", version, rest @ ..] => (String::new(), version.to_string(), rest),
        ["apis", group, version, rest @ ..] => (group.to_string(), version.to_string(), rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some(ns.to_string()), rest),
        _ => (None, rest),
    };
    let (plural, name, subresource) = match rest {
        [plural] => (plural, None, None),
        [plural, name] => (plural, Some(name.to_string()), None),
        [plural, name, sub] => (plural, Some(name.to_string()), Some(sub.to_string())),
        _ => return None,
    };
    Some(Target {
        group,
        version,
        namespace,
        plural: plural.to_string(),
        name,
        subresource,
    })
}

fn status(code: StatusCode, reason: &str, message: String) -> Response {
    let body = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code.as_u16(),
    });
    (
        code,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn json_response(code: StatusCode, body: &Value) -> Response {
    (
        code,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn query(req: &Request) -> BTreeMap<String, String> {
    req.uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (k.to_string(), percent_decode(v)),
            None => (p.to_string(), String::new()),
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(high), Some(low)) => {
                    out.push(high * 16 + low);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn handle(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let q = query(&req);
    {
        let mut inner = shared.lock();
        let line = match req.uri().query() {
            Some(query) => format!("{method} {path}?{query}"),
            None => format!("{method} {path}"),
        };
        let client = req
            .headers()
            .get("x-client")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        inner.by_client.push((client, line.clone()));
        inner.requests.push(line);
        if inner.fail_next > 0 {
            inner.fail_next -= 1;
            return status(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                "injected failure".into(),
            );
        }
    }
    let not_found = || {
        status(
            StatusCode::NOT_FOUND,
            "NotFound",
            "the server could not find the requested resource".into(),
        )
    };
    let Some(target) = parse_path(&path) else {
        return not_found();
    };

    // Events are write-only here: record and echo.
    if target.plural == "events"
        && method == Method::POST
        && (target.group.is_empty() || target.group == "events.k8s.io")
    {
        let body = match axum::body::to_bytes(req.into_body(), 1 << 20).await {
            Ok(b) => b,
            Err(_) => return status(StatusCode::BAD_REQUEST, "BadRequest", "body".into()),
        };
        let Ok(mut event) = serde_json::from_slice::<Value>(&body) else {
            return status(StatusCode::BAD_REQUEST, "BadRequest", "not JSON".into());
        };
        let mut inner = shared.lock();
        inner.next_uid += 1;
        let n = inner.next_uid;
        if let Some(meta) = event["metadata"].as_object_mut() {
            if !meta.contains_key("name") {
                let prefix = meta
                    .get("generateName")
                    .and_then(Value::as_str)
                    .unwrap_or("event.")
                    .to_string();
                meta.insert("name".into(), json!(format!("{prefix}{n:05}")));
            }
            meta.insert("namespace".into(), json!(target.namespace));
        }
        inner.events.push(event.clone());
        return json_response(StatusCode::CREATED, &event);
    }

    let Some(resource) = shared
        .config
        .resources
        .iter()
        .find(|r| r.group == target.group && r.plural == target.plural)
        .filter(|r| r.versions.contains(&target.version))
        .cloned()
    else {
        return not_found();
    };
    if shared.lock().forbidden.contains(&resource.plural) {
        let verb = match (&method, &target.name, q.contains_key("watch")) {
            (&Method::GET, None, true) => "watch",
            (&Method::GET, None, false) => "list",
            (&Method::GET, Some(_), _) => "get",
            (&Method::POST, _, _) => "create",
            (&Method::PUT, _, _) => "update",
            _ => "patch",
        };
        let scope = match &target.namespace {
            Some(ns) => format!("in the namespace \"{ns}\""),
            None => "at the cluster scope".into(),
        };
        return status(
            StatusCode::FORBIDDEN,
            "Forbidden",
            format!(
                "{}{} is forbidden: User \"test\" cannot {verb} resource \"{}\" in API group \"{}\" {scope}",
                resource.plural,
                if resource.group.is_empty() { String::new() } else { format!(".{}", resource.group) },
                resource.plural,
                resource.group,
            ),
        );
    }
    let api_version = if resource.group.is_empty() {
        target.version.clone()
    } else {
        format!("{}/{}", resource.group, target.version)
    };

    let fields = match FieldSelector::parse(
        &resource,
        q.get("fieldSelector").map(String::as_str).unwrap_or(""),
    ) {
        Ok(f) => f,
        Err(message) => return status(StatusCode::BAD_REQUEST, "BadRequest", message),
    };
    match (&method, &target.name, target.subresource.as_deref()) {
        (&Method::GET, None, None) if q.get("watch").is_some_and(|w| w == "true" || w == "1") => {
            watch_response(&shared, &resource, &target, &api_version, &q, fields)
        }
        (&Method::GET, None, None) => list(&shared, &resource, &target, &api_version, &q, &fields),
        (&Method::GET, Some(name), None) => {
            let ns = target.namespace.clone().unwrap_or_default();
            match shared
                .lock()
                .objects
                .get(&(resource.group.clone(), resource.plural.clone()))
                .and_then(|m| m.get(&(ns, name.clone())))
            {
                Some(o) => json_response(StatusCode::OK, &at_version(o, &api_version)),
                None => status(
                    StatusCode::NOT_FOUND,
                    "NotFound",
                    format!("{} \"{name}\" not found", resource.plural),
                ),
            }
        }
        (&Method::PATCH, Some(name), Some("status")) => {
            let name = name.clone();
            let body = match axum::body::to_bytes(req.into_body(), 1 << 20).await {
                Ok(b) => b,
                Err(_) => return status(StatusCode::BAD_REQUEST, "BadRequest", "body".into()),
            };
            let Ok(patch) = serde_json::from_slice::<Value>(&body) else {
                return status(StatusCode::BAD_REQUEST, "BadRequest", "not JSON".into());
            };
            patch_status(
                &shared,
                &resource,
                &target,
                &name,
                &path,
                patch,
                &api_version,
            )
        }
        (&Method::POST, None, None) | (&Method::PUT, Some(_), None) => {
            let name = target.name.clone();
            let body = match axum::body::to_bytes(req.into_body(), 1 << 20).await {
                Ok(b) => b,
                Err(_) => return status(StatusCode::BAD_REQUEST, "BadRequest", "body".into()),
            };
            let Ok(object) = serde_json::from_slice::<Value>(&body) else {
                return status(StatusCode::BAD_REQUEST, "BadRequest", "not JSON".into());
            };
            write(
                &shared,
                &resource,
                &target,
                name.as_deref(),
                object,
                &api_version,
            )
        }
        _ => status(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!("{method} is not supported by the stand-in API server here"),
        ),
    }
}

fn at_version(object: &Value, api_version: &str) -> Value {
    let mut o = object.clone();
    o["apiVersion"] = json!(api_version);
    o
}

fn list(
    shared: &Shared,
    resource: &Resource,
    target: &Target,
    api_version: &str,
    q: &BTreeMap<String, String>,
    fields: &FieldSelector,
) -> Response {
    let inner = shared.lock();
    let all: Vec<Value> = inner
        .objects
        .get(&(resource.group.clone(), resource.plural.clone()))
        .map(|m| {
            m.iter()
                .filter(|((ns, _), _)| target.namespace.as_ref().is_none_or(|t| t == ns))
                .filter(|(_, o)| fields.matches(o))
                .map(|(_, o)| {
                    // Real list items carry no apiVersion or kind.
                    let mut o = o.clone();
                    if let Some(map) = o.as_object_mut() {
                        map.shift_remove("apiVersion");
                        map.shift_remove("kind");
                    }
                    o
                })
                .collect()
        })
        .unwrap_or_default();
    let start: usize = q.get("continue").and_then(|c| c.parse().ok()).unwrap_or(0);
    let limit: usize = q
        .get("limit")
        .and_then(|l| l.parse().ok())
        .filter(|l| *l > 0)
        .unwrap_or(usize::MAX);
    let end = start.saturating_add(limit).min(all.len());
    let items = all.get(start..end).unwrap_or_default().to_vec();
    let mut metadata = Map::new();
    metadata.insert("resourceVersion".into(), json!(inner.rv.to_string()));
    if end < all.len() {
        metadata.insert("continue".into(), json!(end.to_string()));
    }
    json_response(
        StatusCode::OK,
        &json!({
            "apiVersion": api_version,
            "kind": format!("{}List", resource.kind),
            "metadata": metadata,
            "items": items,
        }),
    )
}

fn event_line(kind: &str, object: &Value) -> Bytes {
    let mut line = json!({"type": kind, "object": object}).to_string();
    line.push('\n');
    Bytes::from(line)
}

fn watch_response(
    shared: &Arc<Shared>,
    resource: &Resource,
    target: &Target,
    api_version: &str,
    q: &BTreeMap<String, String>,
    fields: FieldSelector,
) -> Response {
    let since: u64 = q
        .get("resourceVersion")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let timeout = q
        .get("timeoutSeconds")
        .and_then(|t| t.parse().ok())
        .map(Duration::from_secs)
        .unwrap_or(shared.config.max_watch)
        .min(shared.config.max_watch);
    let filter = Filter {
        group: resource.group.clone(),
        plural: resource.plural.clone(),
        namespace: target.namespace.clone(),
        api_version: api_version.to_string(),
        fields,
    };
    let mut replay = VecDeque::new();
    let rx = {
        let inner = shared.lock();
        if since != 0 && since + 1 < inner.oldest {
            let gone = json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": format!("too old resource version: {since} ({})", inner.oldest),
                "reason": "Expired", "code": 410,
            });
            replay.push_back(event_line("ERROR", &gone));
        } else if since == 0 {
            // No version: the current state as ADDED events, then changes.
            if let Some(m) = inner
                .objects
                .get(&(filter.group.clone(), filter.plural.clone()))
            {
                for ((ns, _), o) in m {
                    if filter.namespace.as_ref().is_none_or(|t| t == ns) && filter.fields.matches(o)
                    {
                        replay.push_back(event_line("ADDED", &at_version(o, api_version)));
                    }
                }
            }
        } else {
            for c in inner.log.iter().filter(|c| c.rv > since) {
                if filter.matches(c) {
                    replay.push_back(event_line(c.kind, &at_version(&c.object, api_version)));
                }
            }
        }
        shared.changes.subscribe()
    };
    let expired = replay
        .front()
        .is_some_and(|l| l.starts_with(b"{\"type\":\"ERROR\""));
    let state = WatchState {
        replay,
        rx,
        filter,
        deadline: Instant::now() + timeout,
        epoch: shared.epoch.subscribe(),
        done: false,
        expired,
    };
    let stream = futures::stream::unfold(state, next_line);
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

struct Filter {
    group: String,
    plural: String,
    namespace: Option<String>,
    api_version: String,
    fields: FieldSelector,
}

impl Filter {
    fn matches(&self, c: &Change) -> bool {
        c.group == self.group
            && c.plural == self.plural
            && self.namespace.as_ref().is_none_or(|n| *n == c.namespace)
            && self.fields.matches(&c.object)
    }
}

/// A parsed `fieldSelector`: every term must hold.
#[derive(Clone, Debug, Default)]
struct FieldSelector {
    /// `(field path, value, equal)`: `equal` false for `!=`.
    terms: Vec<(String, String, bool)>,
}

impl FieldSelector {
    /// Parses `selector` for `resource`; `Err` names an unsupported field or a bad term,
    /// with the message a real server gives.
    fn parse(resource: &Resource, selector: &str) -> Result<FieldSelector, String> {
        let mut terms = Vec::new();
        for term in selector.split(',').filter(|t| !t.is_empty()) {
            let (field, value, equal) = if let Some((f, v)) = term.split_once("!=") {
                (f, v, false)
            } else if let Some((f, v)) = term.split_once("==") {
                (f, v, true)
            } else if let Some((f, v)) = term.split_once('=') {
                (f, v, true)
            } else {
                return Err(format!(
                    "invalid selector: '{selector}'; can't understand '{term}'"
                ));
            };
            let supported = matches!(field, "metadata.name" | "metadata.namespace")
                || (resource.group.is_empty() && resource.kind == "Secret" && field == "type");
            if !supported {
                return Err(format!("field label not supported: {field}"));
            }
            terms.push((field.to_string(), value.to_string(), equal));
        }
        Ok(FieldSelector { terms })
    }

    fn matches(&self, object: &Value) -> bool {
        self.terms.iter().all(|(field, value, equal)| {
            let got = field
                .split('.')
                .try_fold(object, |o, k| o.get(k))
                .and_then(Value::as_str)
                .unwrap_or("");
            (got == value) == *equal
        })
    }
}

struct WatchState {
    replay: VecDeque<Bytes>,
    rx: broadcast::Receiver<Arc<Change>>,
    filter: Filter,
    deadline: Instant,
    epoch: watch::Receiver<u64>,
    done: bool,
    /// The stream holds only a 410 and ends after it.
    expired: bool,
}

async fn next_line(mut s: WatchState) -> Option<(Result<Bytes, Infallible>, WatchState)> {
    if s.done {
        return None;
    }
    if let Some(line) = s.replay.pop_front() {
        if s.expired {
            s.done = true;
        }
        return Some((Ok(line), s));
    }
    loop {
        tokio::select! {
            change = s.rx.recv() => match change {
                Ok(c) if s.filter.matches(&c) => {
                    let line = event_line(c.kind, &at_version(&c.object, &s.filter.api_version));
                    return Some((Ok(line), s));
                }
                Ok(_) => continue,
                // Lagged or closed: end the watch; the client resumes from its last version.
                Err(_) => return None,
            },
            _ = tokio::time::sleep_until(s.deadline) => return None,
            _ = s.epoch.changed() => return None,
        }
    }
}

fn patch_status(
    shared: &Arc<Shared>,
    resource: &Resource,
    target: &Target,
    name: &str,
    path: &str,
    patch: Value,
    api_version: &str,
) -> Response {
    let ns = target.namespace.clone().unwrap_or_default();
    let mut inner = shared.lock();
    inner.status_patches.push((path.to_string(), patch.clone()));
    let key = (resource.group.clone(), resource.plural.clone());
    let Some(object) = inner
        .objects
        .get(&key)
        .and_then(|m| m.get(&(ns.clone(), name.to_string())))
        .cloned()
    else {
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("{} \"{name}\" not found", resource.plural),
        );
    };
    let mut object = object;
    if let Some(new_status) = patch.get("status") {
        let mut current = object.get("status").cloned().unwrap_or(json!({}));
        merge(&mut current, new_status);
        object["status"] = current;
    }
    inner.rv += 1;
    let rv = inner.rv;
    object["metadata"]["resourceVersion"] = json!(rv.to_string());
    inner
        .objects
        .entry(key)
        .or_default()
        .insert((ns.clone(), name.to_string()), object.clone());
    let change = Arc::new(Change {
        rv,
        plural: resource.plural.clone(),
        group: resource.group.clone(),
        namespace: ns,
        kind: "MODIFIED",
        object: object.clone(),
    });
    inner.log.push(change.clone());
    let _ = shared.changes.send(change);
    json_response(StatusCode::OK, &at_version(&object, api_version))
}

/// `POST` (no `name`: create) or `PUT` (replace `name`) of a whole object.
fn write(
    shared: &Arc<Shared>,
    resource: &Resource,
    target: &Target,
    name: Option<&str>,
    mut object: Value,
    api_version: &str,
) -> Response {
    let ns = target.namespace.clone().unwrap_or_default();
    let Some(body_name) = object["metadata"]["name"].as_str().map(str::to_string) else {
        return status(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            "metadata.name: Required value".into(),
        );
    };
    if name.is_some_and(|n| n != body_name) {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "the name of the object does not match the name on the URL".into(),
        );
    }
    let qualified = if resource.group.is_empty() {
        resource.plural.clone()
    } else {
        format!("{}.{}", resource.plural, resource.group)
    };
    let key = (resource.group.clone(), resource.plural.clone());
    let mut inner = shared.lock();
    let existing = inner
        .objects
        .get(&key)
        .and_then(|m| m.get(&(ns.clone(), body_name.clone())))
        .cloned();
    let created = name.is_none();
    match (&existing, created) {
        (Some(_), true) => {
            return status(
                StatusCode::CONFLICT,
                "AlreadyExists",
                format!("{qualified} \"{body_name}\" already exists"),
            )
        }
        (None, false) => {
            return status(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!("{qualified} \"{body_name}\" not found"),
            )
        }
        (Some(old), false) => {
            let sent = object["metadata"]["resourceVersion"].as_str().unwrap_or("");
            let stored = old["metadata"]["resourceVersion"].as_str().unwrap_or("");
            if !sent.is_empty() && sent != stored {
                return status(
                    StatusCode::CONFLICT,
                    "Conflict",
                    format!(
                        "Operation cannot be fulfilled on {qualified} \"{body_name}\": the object has been modified; please apply your changes to the latest version and try again"
                    ),
                );
            }
        }
        (None, true) => {}
    }
    inner.rv += 1;
    let rv = inner.rv;
    let uid = match existing.as_ref().map(|o| o["metadata"]["uid"].clone()) {
        Some(uid) if !uid.is_null() => uid,
        _ => {
            inner.next_uid += 1;
            json!(format!("00000000-0000-0000-0000-{:012}", inner.next_uid))
        }
    };
    object["apiVersion"] = json!(api_version);
    object["kind"] = json!(resource.kind);
    if let Some(meta) = object["metadata"].as_object_mut() {
        meta.insert("namespace".into(), json!(ns));
        meta.insert("resourceVersion".into(), json!(rv.to_string()));
        meta.insert("uid".into(), uid);
    }
    // As with a status subresource, writes of the object leave its status alone.
    match existing.as_ref().and_then(|o| o.get("status")) {
        Some(status) => object["status"] = status.clone(),
        None => {
            if let Some(o) = object.as_object_mut() {
                o.shift_remove("status");
            }
        }
    }
    inner
        .objects
        .entry(key)
        .or_default()
        .insert((ns.clone(), body_name), object.clone());
    let change = Arc::new(Change {
        rv,
        plural: resource.plural.clone(),
        group: resource.group.clone(),
        namespace: ns,
        kind: if created { "ADDED" } else { "MODIFIED" },
        object: object.clone(),
    });
    inner.log.push(change.clone());
    let _ = shared.changes.send(change);
    let code = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    json_response(code, &object)
}

/// RFC 7386 JSON merge patch.
fn merge(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    if let Value::Object(t) = target {
        for (k, v) in p {
            if v.is_null() {
                t.shift_remove(k);
            } else {
                merge(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        let t = parse_path("/api/v1/namespaces/ns/services").unwrap();
        assert_eq!(
            (t.group.as_str(), t.namespace.as_deref(), t.plural.as_str()),
            ("", Some("ns"), "services")
        );
        let t = parse_path("/apis/getambassador.io/v2/mappings").unwrap();
        assert_eq!(
            (t.group.as_str(), t.version.as_str(), t.namespace),
            ("getambassador.io", "v2", None)
        );
        let t =
            parse_path("/apis/getambassador.io/v3alpha1/namespaces/a/mappings/m/status").unwrap();
        assert_eq!(
            (t.name.as_deref(), t.subresource.as_deref()),
            (Some("m"), Some("status"))
        );
        assert!(parse_path("/healthz").is_none());
    }

    #[test]
    fn merge_patch() {
        let mut v = json!({"state": "Error", "reason": "x", "keep": 1});
        merge(&mut v, &json!({"state": "Ok", "reason": null}));
        assert_eq!(v, json!({"state": "Ok", "keep": 1}));
    }

    #[test]
    fn field_selectors() {
        let secrets = Resource::new("", "Secret", "secrets", &["v1"]);
        let tls = json!({"metadata": {"name": "a", "namespace": "n"}, "type": "kubernetes.io/tls"});
        let opaque = json!({"metadata": {"name": "b", "namespace": "n"}, "type": "Opaque"});
        let f = FieldSelector::parse(&secrets, "type=kubernetes.io/tls").unwrap();
        assert!(f.matches(&tls) && !f.matches(&opaque));
        let f = FieldSelector::parse(&secrets, "type!=kubernetes.io/tls,metadata.name==b").unwrap();
        assert!(!f.matches(&tls) && f.matches(&opaque));
        assert!(FieldSelector::parse(&secrets, "").unwrap().matches(&opaque));
        let services = Resource::new("", "Service", "services", &["v1"]);
        assert_eq!(
            FieldSelector::parse(&services, "type=x").unwrap_err(),
            "field label not supported: type"
        );
        assert!(FieldSelector::parse(&secrets, "type").is_err());
    }

    #[test]
    fn decoding() {
        assert_eq!(percent_decode("a%3Db+c"), "a=b c");
        assert_eq!(percent_decode("100%"), "100%");
    }
}

//! The view fed by the cluster: kube-rs watchers on Services, EndpointSlices, TLS Secrets
//! and every `getambassador.io` kind, and the way findings go back to the objects.
//!
//! One task per resource lists, then watches, and sends what it sees to one writer, which
//! applies it to the [`View`] in batches. A re-list (after a watch expired, or an error)
//! lands atomically at its `InitDone`: objects that are gone from the new list leave the
//! view then. The view is synced once every resource has completed its first list or is
//! known to be absent, so the server does not report ready on a partial view.
//!
//! Resource versions: each `getambassador.io` kind is read at `v3alpha1` when the server
//! serves it, else at `v2`. A kind the server does not serve (404: the CRD is not
//! installed) or that this service account may not list (403) is left out and probed
//! again every [`KubeOptions::reprobe`]; it does not hold back readiness. Services and
//! EndpointSlices are required: errors on them are retried with backoff and do hold it back.
//!
//! Secrets: only those of type `kubernetes.io/tls`, selected by the API server
//! ([`TLS_SECRETS`], on the probe as well as the list and watch, so no other Secret is
//! ever sent to this process), in every namespace (Hosts may name a Secret in another
//! namespace), or in the one namespace of [`KubeOptions::namespace`]. Of each, the view
//! keeps its name, namespace, `type` and the `data` keys `tls.crt`, `tls.key` and `ca.crt`
//! ([`tls_secret`]): labels, annotations (a last-applied copy would hold the whole Secret)
//! and other keys are dropped on arrival, and nothing here logs an object. Secrets are
//! optional: when they may not be listed (403) the view syncs without them and every Host
//! that names one loses its TLS (AMB417), with a warning in the log. The admission side
//! does not see them ([`super::Snapshot::compile_input`] leaves them out); the publisher
//! does ([`super::Snapshot::sources`]).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ambassador_compiler::admission::as_written;
use ambassador_compiler::diag::Severity;
use ambassador_compiler::front::Kind;
use futures::StreamExt;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher::{self, watcher};
use kube::runtime::WatchStreamExt;
use kube::Client;
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{Key, Snapshot, View};
use crate::lease::Leadership;
use crate::pipeline::Finding;

/// The `getambassador.io` versions tried for each kind, newest first.
const VERSIONS: [&str; 2] = ["v3alpha1", "v2"];

/// The field selector of the Secrets watch: TLS Secrets only, chosen by the API server.
/// RBAC cannot be limited by type, so this is what keeps other Secrets from being read.
pub const TLS_SECRETS: &str = "type=kubernetes.io/tls";

/// The keys of a Secret's `data` the view keeps; the compiler reads no others.
pub const SECRET_KEYS: [&str; 3] = ["tls.crt", "tls.key", "ca.crt"];

/// What to watch.
#[derive(Clone, Debug)]
pub struct KubeOptions {
    /// One namespace, or `None` for every namespace.
    pub namespace: Option<String>,
    /// How often a kind that is not served (or not permitted) is probed again.
    pub reprobe: Duration,
    /// Longest wait between retries of a failing list or watch.
    pub max_backoff: Duration,
}

impl Default for KubeOptions {
    fn default() -> Self {
        KubeOptions {
            namespace: None,
            reprobe: Duration::from_secs(60),
            max_backoff: Duration::from_secs(30),
        }
    }
}

/// One watched resource.
#[derive(Clone, Debug)]
struct Watched {
    group: &'static str,
    kind: &'static str,
    plural: String,
    /// Versions to try, in order.
    versions: Vec<&'static str>,
    /// A required resource holds back readiness until listed; an optional one is skipped
    /// when it is not served or not permitted.
    required: bool,
    /// A field selector for the probe, list and watch.
    fields: Option<&'static str>,
}

fn watched() -> Vec<Watched> {
    let mut out = vec![
        Watched {
            group: "",
            kind: "Service",
            plural: "services".into(),
            versions: vec!["v1"],
            required: true,
            fields: None,
        },
        Watched {
            group: "discovery.k8s.io",
            kind: "EndpointSlice",
            plural: "endpointslices".into(),
            versions: vec!["v1"],
            required: true,
            fields: None,
        },
        // The certificates Hosts terminate TLS with, served over SDS.
        Watched {
            group: "",
            kind: "Secret",
            plural: "secrets".into(),
            versions: vec!["v1"],
            required: false,
            fields: Some(TLS_SECRETS),
        },
    ];
    for kind in Kind::ALL {
        out.push(Watched {
            group: "getambassador.io",
            kind: kind.as_str(),
            plural: format!("{}s", kind.as_str().to_ascii_lowercase()),
            versions: VERSIONS.to_vec(),
            required: false,
            fields: None,
        });
    }
    out
}

fn resource(w: &Watched, version: &str) -> ApiResource {
    ApiResource {
        group: w.group.into(),
        version: version.into(),
        api_version: if w.group.is_empty() {
            version.into()
        } else {
            format!("{}/{version}", w.group)
        },
        kind: w.kind.into(),
        plural: w.plural.clone(),
    }
}

fn api(client: &Client, namespace: Option<&str>, ar: &ApiResource) -> Api<DynamicObject> {
    match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, ar),
        None => Api::all_with(client.clone(), ar),
    }
}

/// What a resource task tells the writer.
enum Msg {
    Event(usize, ApiResource, Box<watcher::Event<DynamicObject>>),
    /// The resource is not served or not permitted: none of its objects are in the view.
    Absent(usize),
}

/// Watches the cluster into `view` until the returned task is aborted.
pub fn spawn(client: Client, view: View, options: KubeOptions) -> JoinHandle<()> {
    tokio::spawn(run(client, view, options))
}

/// Watches the cluster into `view`; runs until dropped.
pub async fn run(client: Client, view: View, options: KubeOptions) {
    let resources = watched();
    let (tx, mut rx) = mpsc::channel(1024);
    let mut tasks = Vec::new();
    for (i, w) in resources.iter().enumerate() {
        tasks.push(AbortOnDrop(tokio::spawn(drive(
            client.clone(),
            i,
            w.clone(),
            options.clone(),
            tx.clone(),
        ))));
    }
    drop(tx);
    let mut writer = Writer {
        resources,
        synced: Vec::new(),
        buffers: Vec::new(),
    };
    writer.synced = vec![false; writer.resources.len()];
    writer.buffers = vec![None; writer.resources.len()];
    while let Some(first) = rx.recv().await {
        view.update(|batch| {
            writer.handle(first, batch);
            // Coalesce what is already queued into the same batch.
            for _ in 0..4096 {
                match rx.try_recv() {
                    Ok(msg) => writer.handle(msg, batch),
                    Err(_) => break,
                }
            }
            if writer.synced.iter().all(|s| *s) {
                batch.set_synced();
            }
        });
    }
    drop(tasks);
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

struct Writer {
    resources: Vec<Watched>,
    synced: Vec<bool>,
    /// Objects of a re-list in progress, per resource.
    buffers: Vec<Option<Vec<Value>>>,
}

impl Writer {
    fn handle(&mut self, msg: Msg, batch: &mut super::Batch<'_>) {
        match msg {
            Msg::Absent(i) => {
                let w = &self.resources[i];
                batch.replace_kind(w.group, w.kind, Vec::new());
                self.buffers[i] = None;
                self.synced[i] = true;
            }
            Msg::Event(i, ar, event) => match *event {
                watcher::Event::Init => self.buffers[i] = Some(Vec::new()),
                watcher::Event::InitApply(o) => {
                    if let Some(v) = to_value(&ar, o) {
                        self.buffers[i].get_or_insert_with(Vec::new).push(v);
                    }
                }
                watcher::Event::InitDone => {
                    let w = &self.resources[i];
                    let objects = self.buffers[i].take().unwrap_or_default();
                    batch.replace_kind(w.group, w.kind, objects);
                    self.synced[i] = true;
                }
                watcher::Event::Apply(o) => {
                    if let Some(v) = to_value(&ar, o) {
                        batch.upsert(v);
                    }
                }
                watcher::Event::Delete(o) => {
                    if let Some(name) = o.metadata.name.as_deref() {
                        let ns = o.metadata.namespace.as_deref().unwrap_or("");
                        batch.remove(&Key::new(&ar.group, &ar.kind, ns, name));
                    }
                }
            },
        }
    }
}

/// The object as the view keeps it ([`clean`]); `None` for what the view never holds: a
/// Secret that is not of type `kubernetes.io/tls` (the field selector keeps them away; this
/// holds should a server ignore it).
fn to_value(ar: &ApiResource, object: DynamicObject) -> Option<Value> {
    let value = serde_json::to_value(object).ok()?;
    if is_secret(ar) && value.get("type").and_then(Value::as_str) != Some("kubernetes.io/tls") {
        return None;
    }
    Some(clean(ar, value))
}

fn is_secret(ar: &ApiResource) -> bool {
    ar.group.is_empty() && ar.kind == "Secret"
}

/// A Secret reduced to what TLS uses: `apiVersion`, `kind`, `metadata.name` and
/// `metadata.namespace`, `type`, and the `data` keys in [`SECRET_KEYS`]. Everything else
/// (labels, annotations, `stringData`, other keys) is dropped, so it is neither kept nor
/// rendered.
pub fn tls_secret(object: &Value) -> Value {
    let mut metadata = Map::new();
    for k in ["name", "namespace"] {
        if let Some(v) = object["metadata"].get(k) {
            metadata.insert(k.into(), v.clone());
        }
    }
    let mut out = Map::new();
    out.insert("apiVersion".into(), "v1".into());
    out.insert("kind".into(), "Secret".into());
    out.insert("metadata".into(), Value::Object(metadata));
    if let Some(t) = object.get("type") {
        out.insert("type".into(), t.clone());
    }
    let mut data = Map::new();
    if let Some(d) = object.get("data").and_then(Value::as_object) {
        for k in SECRET_KEYS {
            if let Some(v) = d.get(k) {
                data.insert(k.into(), v.clone());
            }
        }
    }
    out.insert("data".into(), Value::Object(data));
    Value::Object(out)
}

/// The object as the compiler should read it: `apiVersion` and `kind` first (list items
/// come without them), without `managedFields`, `resourceVersion`, the last-applied copy,
/// and without `status` except on `getambassador.io` objects, where [`report_status`]
/// compares against it. `resourceVersion` goes so that an object whose content did not
/// change does not wake the compiler. A Secret keeps only what [`tls_secret`] keeps.
pub fn clean(ar: &ApiResource, object: Value) -> Value {
    if is_secret(ar) {
        return tls_secret(&object);
    }
    as_written(
        &ar.api_version,
        &ar.kind,
        object,
        ar.group == "getambassador.io",
    )
}

/// How a resource's version was resolved.
enum Probe {
    Served(ApiResource),
    /// 404 or (for optional resources) 403: skip it for now.
    Absent(String),
    /// Anything else: try again after a backoff.
    Failed(String),
}

async fn probe(client: &Client, namespace: Option<&str>, w: &Watched) -> Probe {
    let mut absent = Vec::new();
    for version in &w.versions {
        let ar = resource(w, version);
        let mut params = ListParams::default().limit(1);
        if let Some(fields) = w.fields {
            params = params.fields(fields);
        }
        match api(client, namespace, &ar).list(&params).await {
            Ok(_) => return Probe::Served(ar),
            Err(kube::Error::Api(s)) if s.code == 404 => {
                absent.push(format!("{}: not served", ar.api_version))
            }
            Err(kube::Error::Api(s)) if s.code == 403 && !w.required => {
                absent.push(format!("{}: forbidden: {}", ar.api_version, s.message))
            }
            Err(e) => return Probe::Failed(format!("{}: {e}", ar.api_version)),
        }
    }
    Probe::Absent(absent.join("; "))
}

/// Exponential backoff with a ceiling, reset after progress.
struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(200);

    fn new(max: Duration) -> Backoff {
        Backoff {
            next: Backoff::FIRST,
            max,
        }
    }

    fn reset(&mut self) {
        self.next = Backoff::FIRST;
    }

    fn step(&mut self) -> Duration {
        let now = self.next.min(self.max);
        self.next = (self.next * 2).min(self.max);
        now
    }
}

/// One resource, forever: probe its version, list and watch it, start over when it
/// disappears. kube-rs's watcher re-lists by itself after an expired watch (410) and,
/// with `default_backoff`, waits between failing attempts.
async fn drive(client: Client, i: usize, w: Watched, options: KubeOptions, tx: mpsc::Sender<Msg>) {
    let namespace = options.namespace.as_deref();
    let mut backoff = Backoff::new(options.max_backoff);
    loop {
        let ar = match probe(&client, namespace, &w).await {
            Probe::Served(ar) => ar,
            Probe::Absent(why) => {
                if w.kind == "Secret" {
                    // Every Host that names a Secret loses its TLS meanwhile (AMB417).
                    tracing::warn!(%why, "not watching TLS Secrets for now: Hosts that name one are served without TLS");
                } else {
                    tracing::info!(kind = w.kind, %why, "not watching this kind for now");
                }
                if tx.send(Msg::Absent(i)).await.is_err() {
                    return;
                }
                tokio::time::sleep(options.reprobe).await;
                continue;
            }
            Probe::Failed(why) => {
                tracing::warn!(kind = w.kind, %why, "listing failed; retrying");
                tokio::time::sleep(backoff.step()).await;
                continue;
            }
        };
        let mut config = watcher::Config::default();
        if let Some(fields) = w.fields {
            config = config.fields(fields);
        }
        let mut events = watcher(api(&client, namespace, &ar), config)
            .default_backoff()
            .boxed();
        while let Some(item) = events.next().await {
            match item {
                Ok(event) => {
                    backoff.reset();
                    if tx
                        .send(Msg::Event(i, ar.clone(), Box::new(event)))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                Err(e) => {
                    tracing::warn!(kind = w.kind, error = %e, "watch failed; retrying");
                    if gone(&e) {
                        // The CRD or this version went away: probe again.
                        break;
                    }
                }
            }
        }
        tokio::time::sleep(backoff.step()).await;
    }
}

/// A 404 on list or watch: the resource is no longer served.
fn gone(e: &watcher::Error) -> bool {
    let inner = match e {
        watcher::Error::InitialListFailed(e)
        | watcher::Error::WatchStartFailed(e)
        | watcher::Error::WatchFailed(e) => e,
        _ => return false,
    };
    matches!(inner, kube::Error::Api(s) if s.code == 404)
}

/// The verdict on one object after a compilation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Valid,
    /// The first error, e.g. `AMB105 unknown field `prefx` (12:7)`.
    Invalid(String),
}

/// The verdict on every object of `snapshot` but its Secrets, from the findings of the
/// pipeline that compiled [`Snapshot::sources`]: `Invalid` with the first error-severity
/// finding in the object's source (its code, message and `line:col` in the rendered object),
/// else `Valid`. Files (directory mode) have no object to report on and are left out.
pub fn verdicts(snapshot: &Snapshot, findings: &[Finding]) -> Vec<(Key, Verdict)> {
    let mut first: HashMap<&str, &Finding> = HashMap::new();
    for f in findings {
        let Some(file) = &f.file else { continue };
        if f.severity >= Severity::Error {
            first.entry(file.as_str()).or_insert(f);
        }
    }
    snapshot
        .keys()
        .filter(|key| !key.is_secret())
        .map(|key| {
            let verdict = match first.get(key.source_name().as_str()) {
                Some(f) => Verdict::Invalid(format!(
                    "{} {} ({}:{})",
                    f.code,
                    f.message,
                    f.line.unwrap_or_default(),
                    f.column.unwrap_or_default()
                )),
                None => Verdict::Valid,
            };
            (key.clone(), verdict)
        })
        .collect()
}

/// What [`report_status`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reported {
    /// Nothing to write: the object already says so, or this was written before.
    Unchanged,
    /// The `status` of a `getambassador.io` object was patched.
    Status,
    /// An Event was recorded on a Service.
    Event,
    /// Neither a `getambassador.io` object nor a Service: nowhere to report.
    Unsupported,
}

/// Why a report could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The object lacks `apiVersion`, `kind`, `metadata.name` or `metadata.namespace`.
    #[error("the object has no apiVersion, kind, name or namespace")]
    NotAnObject,
    /// Another replica holds the Lease: this one writes nothing.
    #[error("not the leader: another replica writes status and Events")]
    NotLeader,
    /// The API server refused or could not be reached.
    #[error("writing the {what} of {key}: {source}")]
    Kube {
        what: &'static str,
        key: String,
        source: kube::Error,
    },
}

/// Who writes reports, and what was written last for each object: reports are written
/// only when their text changes. Share one per process.
///
/// With [`Reporter::with_leadership`], only the replica holding the Lease writes
/// ([`crate::lease`]); the others return [`ReportError::NotLeader`] without a request.
/// What was written is remembered per term of leadership: after another replica may
/// have written, nothing is taken as already said.
pub struct Reporter {
    client: Client,
    /// `reportingController` of Events, e.g. `getambassador.io/ambassador-webhook`.
    pub controller: String,
    /// `reportingInstance` of Events: the pod name.
    pub instance: String,
    leadership: Option<Leadership>,
    /// The term the map belongs to, and what was written in it.
    last: Mutex<(Option<u64>, HashMap<Key, Verdict>)>,
}

impl Reporter {
    pub fn new(client: Client, controller: &str, instance: &str) -> Reporter {
        Reporter {
            client,
            controller: controller.into(),
            instance: instance.into(),
            leadership: None,
            last: Mutex::new((None, HashMap::new())),
        }
    }

    /// Writes only while `leadership` says this replica leads.
    pub fn with_leadership(mut self, leadership: Leadership) -> Reporter {
        self.leadership = Some(leadership);
        self
    }

    /// The election this reporter follows, if any.
    pub fn leadership(&self) -> Option<Leadership> {
        self.leadership.clone()
    }

    /// Whether this replica may write now: always without an election.
    pub fn may_write(&self) -> bool {
        self.term().is_some()
    }

    /// `Some(0)` without an election, the term while leading, `None` while not.
    fn term(&self) -> Option<u64> {
        match &self.leadership {
            None => Some(0),
            Some(l) => l.term(),
        }
    }

    fn with_last<T>(&self, f: impl FnOnce(&mut HashMap<Key, Verdict>) -> T) -> Option<T> {
        let term = self.term();
        let mut guard = self.last.lock().ok()?;
        let (seen, map) = &mut *guard;
        if *seen != term {
            // Another replica may have written since: forget what this one wrote.
            *seen = term;
            map.clear();
        }
        Some(f(map))
    }

    /// Whether this replica already wrote `verdict` for `key` in the current term (what
    /// [`report_status`] would skip, known without reading the object).
    pub fn wrote(&self, key: &Key, verdict: &Verdict) -> bool {
        self.last(key).as_ref() == Some(verdict)
    }

    fn last(&self, key: &Key) -> Option<Verdict> {
        self.with_last(|m| m.get(key).cloned()).flatten()
    }

    fn remember(&self, key: Key, verdict: Verdict) {
        self.with_last(|m| m.insert(key, verdict));
    }
}

/// The status a verdict is written as: `{state: Error, reason}` or `{state: Ok}` (a merge
/// patch's `reason: null` removes an old reason).
fn status_of(verdict: &Verdict) -> Value {
    match verdict {
        Verdict::Invalid(reason) => json!({"state": "Error", "reason": reason}),
        Verdict::Valid => json!({"state": "Ok", "reason": null}),
    }
}

/// Whether `object`'s current status already says what `verdict` would write. A valid
/// object that never had a status needs none.
fn status_says(object: &Value, verdict: &Verdict) -> bool {
    let status = object.get("status");
    let state = status.and_then(|s| s.get("state")).and_then(Value::as_str);
    let reason = status.and_then(|s| s.get("reason")).and_then(Value::as_str);
    match verdict {
        Verdict::Invalid(r) => state == Some("Error") && reason == Some(r.as_str()),
        Verdict::Valid => matches!(state, None | Some("Ok")) && reason.is_none(),
    }
}

/// Writes `verdict` where the owner of `object` will see it: the `status` subresource
/// of a `getambassador.io` object (a JSON merge patch), or an Event (events.k8s.io/v1)
/// regarding a Service, for its annotation. Writes only when the text differs from what
/// the object already says and from what this reporter wrote last, and only while the
/// reporter may write ([`Reporter::may_write`]).
pub async fn report_status(
    reporter: &Reporter,
    object: &Value,
    verdict: &Verdict,
) -> Result<Reported, ReportError> {
    let key = Key::of(object).ok_or(ReportError::NotAnObject)?;
    if key.namespace.is_empty() {
        return Err(ReportError::NotAnObject);
    }
    // Checked here, with no await before the write below: a lost lease stops writing.
    if !reporter.may_write() {
        return Err(ReportError::NotLeader);
    }
    let api_version = object["apiVersion"].as_str().unwrap_or_default();
    if reporter.last(&key).as_ref() == Some(verdict) {
        return Ok(Reported::Unchanged);
    }
    if key.group == "getambassador.io" {
        if status_says(object, verdict) {
            reporter.remember(key, verdict.clone());
            return Ok(Reported::Unchanged);
        }
        let version = api_version.rsplit('/').next().unwrap_or("v2");
        let ar = ApiResource {
            group: key.group.clone(),
            version: version.into(),
            api_version: api_version.into(),
            kind: key.kind.clone(),
            plural: format!("{}s", key.kind.to_ascii_lowercase()),
        };
        let api: Api<DynamicObject> =
            Api::namespaced_with(reporter.client.clone(), &key.namespace, &ar);
        let patch = json!({"status": status_of(verdict)});
        api.patch_status(&key.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|source| ReportError::Kube {
                what: "status",
                key: key.to_string(),
                source,
            })?;
        reporter.remember(key, verdict.clone());
        return Ok(Reported::Status);
    }
    if key.group.is_empty() && key.kind == "Service" {
        // A valid Service that was never reported on needs no Event.
        if *verdict == Verdict::Valid && reporter.last(&key).is_none() {
            reporter.remember(key, verdict.clone());
            return Ok(Reported::Unchanged);
        }
        let event = service_event(reporter, object, &key, verdict);
        let ar = ApiResource {
            group: "events.k8s.io".into(),
            version: "v1".into(),
            api_version: "events.k8s.io/v1".into(),
            kind: "Event".into(),
            plural: "events".into(),
        };
        let api: Api<DynamicObject> =
            Api::namespaced_with(reporter.client.clone(), &key.namespace, &ar);
        let event: DynamicObject =
            serde_json::from_value(event).map_err(|e| ReportError::Kube {
                what: "event",
                key: key.to_string(),
                source: kube::Error::SerdeError(e),
            })?;
        api.create(&PostParams::default(), &event)
            .await
            .map_err(|source| ReportError::Kube {
                what: "event",
                key: key.to_string(),
                source,
            })?;
        reporter.remember(key, verdict.clone());
        return Ok(Reported::Event);
    }
    Ok(Reported::Unsupported)
}

fn service_event(reporter: &Reporter, object: &Value, key: &Key, verdict: &Verdict) -> Value {
    let (kind, reason, note) = match verdict {
        Verdict::Invalid(r) => ("Warning", "InvalidConfiguration", r.clone()),
        Verdict::Valid => (
            "Normal",
            "ValidConfiguration",
            "the getambassador.io/config annotation is valid again".to_string(),
        ),
    };
    json!({
        "apiVersion": "events.k8s.io/v1",
        "kind": "Event",
        "metadata": {
            "generateName": format!("{}.", key.name),
            "namespace": key.namespace,
        },
        "eventTime": micro_time(SystemTime::now()),
        "reportingController": reporter.controller,
        "reportingInstance": reporter.instance,
        "action": "Validate",
        "reason": reason,
        "type": kind,
        // The API server limits `note` to 1 kB.
        "note": truncate(&note, 1024),
        "regarding": {
            "apiVersion": "v1",
            "kind": "Service",
            "namespace": key.namespace,
            "name": key.name,
            "uid": object["metadata"]["uid"],
        },
    })
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// RFC 3339 UTC with microseconds, the format of a Kubernetes `MicroTime`.
fn micro_time(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_micros()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use ambassador_compiler::admission::LAST_APPLIED;

    #[test]
    fn micro_time_is_rfc3339() {
        let t = UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456);
        assert_eq!(micro_time(t), "2023-11-14T22:13:20.123456Z");
        assert_eq!(micro_time(UNIX_EPOCH), "1970-01-01T00:00:00.000000Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(micro_time(leap), "2000-02-29T00:00:00.000000Z");
    }

    #[test]
    fn clean_keeps_status_only_on_ambassador_objects() {
        let svc = ApiResource::erase::<k8s_openapi::api::core::v1::Service>(&());
        let raw = json!({
            "metadata": {"name": "a", "namespace": "n", "resourceVersion": "7",
                         "managedFields": [], "annotations": {LAST_APPLIED: "{}"}},
            "status": {"x": 1},
        });
        let v = clean(&svc, raw.clone());
        assert_eq!(
            v,
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a", "namespace": "n"}})
        );
        let w = &watched().into_iter().find(|w| w.kind == "Mapping").unwrap();
        let m = clean(&resource(w, "v2"), raw);
        assert_eq!(m["apiVersion"], "getambassador.io/v2");
        assert_eq!(m["kind"], "Mapping");
        assert_eq!(m["status"], json!({"x": 1}));
        // Key order survives: it is the line order of the rendered YAML.
        let watched_event = json!({"apiVersion": "getambassador.io/v2", "kind": "Mapping",
            "metadata": {"name": "m"}, "spec": {}, "status": {}});
        let keys: Vec<String> = clean(&resource(w, "v2"), watched_event)
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        assert_eq!(keys, ["apiVersion", "kind", "metadata", "spec", "status"]);
    }

    #[test]
    fn secrets_keep_only_what_tls_uses() {
        let secrets = watched().into_iter().find(|w| w.kind == "Secret").unwrap();
        assert_eq!(secrets.fields, Some("type=kubernetes.io/tls"));
        assert!(!secrets.required);
        let ar = resource(&secrets, "v1");
        let raw = json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "cert", "namespace": "n", "uid": "u", "resourceVersion": "3",
                "labels": {"a": "b"}, "annotations": {LAST_APPLIED: "{\"data\": {}}"}},
            "type": "kubernetes.io/tls",
            "data": {"tls.key": "a2V5", "extra": "c2VjcmV0", "tls.crt": "Y3J0", "ca.crt": "Y2E="},
        });
        let object: DynamicObject = serde_json::from_value(raw.clone()).unwrap();
        let kept = to_value(&ar, object).unwrap();
        assert_eq!(
            kept,
            json!({"apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "cert", "namespace": "n"},
                "type": "kubernetes.io/tls",
                "data": {"tls.crt": "Y3J0", "tls.key": "a2V5", "ca.crt": "Y2E="}})
        );
        // List items come without apiVersion and kind; the view names them.
        let mut item = raw.clone();
        item.as_object_mut().unwrap().shift_remove("apiVersion");
        item.as_object_mut().unwrap().shift_remove("kind");
        assert_eq!(clean(&ar, item), kept);
        // Another type is never kept, should a server ignore the field selector.
        let mut opaque = raw;
        opaque["type"] = json!("Opaque");
        assert!(to_value(&ar, serde_json::from_value(opaque).unwrap()).is_none());
    }

    #[test]
    fn status_comparison() {
        let bad = Verdict::Invalid("AMB105 x (3:4)".into());
        let o = json!({"status": {"state": "Error", "reason": "AMB105 x (3:4)"}});
        assert!(status_says(&o, &bad));
        assert!(!status_says(&o, &Verdict::Valid));
        assert!(status_says(&json!({}), &Verdict::Valid));
        assert!(!status_says(&json!({}), &bad));
    }

    #[test]
    fn backoff_doubles_to_a_ceiling() {
        let mut b = Backoff::new(Duration::from_millis(700));
        let steps: Vec<u128> = (0..4).map(|_| b.step().as_millis()).collect();
        assert_eq!(steps, [200, 400, 700, 700]);
        b.reset();
        assert_eq!(b.step().as_millis(), 200);
    }
}

//! The watched view: one store of everything the compiler reads, fed by a directory or the cluster.
//!
//! The store holds either manifest files as text ([`dir`]: the compiler owns YAML, so a
//! file stays text) or Kubernetes objects as JSON ([`kube`]: Services, EndpointSlices,
//! `kubernetes.io/tls` Secrets and the `getambassador.io` kinds), keyed by [`Key`]. Readers take a [`Snapshot`]: a few
//! reference-counted pointers, immutable, cheap to clone and to keep across an `await`.
//! Writers change the store in batches; a batch that changes something bumps the
//! generation and wakes every [`View::subscribe`]r, a batch that changes nothing wakes
//! nobody. [`Snapshot::sources`] is everything, for the publisher;
//! [`Snapshot::compile_input`] is what admission and status reports compile (without the
//! Secrets) and says, for each source, where it came from, so findings can be reported on
//! their object.
//!
//! **Architecture Invariant:** no YAML parsing here. Objects become text with the plugin's
//! YAML writer (the same bytes `kubectl ambassador lint` shows for a cluster object), and
//! only the compiler reads text.

pub mod dir;
pub mod kube;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, OnceLock};

use ambassador_compiler::source::Sources;
use serde_json::Value;
use tokio::sync::watch;

/// Identity of an object: API group (`""` for the core group), kind, namespace, name.
/// The version is not part of it: a Mapping read as `v2` and as `v3alpha1` is one object.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    pub group: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

impl Key {
    pub fn new(group: &str, kind: &str, namespace: &str, name: &str) -> Key {
        Key {
            group: group.into(),
            kind: kind.into(),
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// The key of a Kubernetes object: from `apiVersion`, `kind` and `metadata`.
    pub fn of(object: &Value) -> Option<Key> {
        let api_version = object.get("apiVersion")?.as_str()?;
        let group = match api_version.rsplit_once('/') {
            Some((group, _)) => group,
            None => "",
        };
        let meta = object.get("metadata")?;
        Some(Key::new(
            group,
            object.get("kind")?.as_str()?,
            meta.get("namespace").and_then(Value::as_str).unwrap_or(""),
            meta.get("name")?.as_str()?,
        ))
    }

    /// Whether this is a core `Secret` (the cluster view holds only `kubernetes.io/tls` ones).
    pub fn is_secret(&self) -> bool {
        self.group.is_empty() && self.kind == "Secret"
    }

    /// The compiler source name, `cluster:<namespace>/<Kind>/<name>`, as the plugin names it.
    pub fn source_name(&self) -> String {
        format!("cluster:{self}")
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ns = if self.namespace.is_empty() {
            "-"
        } else {
            &self.namespace
        };
        write!(f, "{ns}/{}/{}", self.kind, self.name)
    }
}

/// An object, kept as its compact JSON text (a tenth of what its `serde_json::Value` tree
/// takes: at 10,000 objects, about 20 MiB), and its YAML text, rendered on first use and
/// then shared by every snapshot that holds the same version of the object.
struct Object {
    json: Box<str>,
    /// Its name as a compiler source ([`Key::source_name`]).
    source_name: Arc<str>,
    yaml: OnceLock<Arc<str>>,
}

impl Object {
    fn new(key: &Key, json: String) -> Arc<Object> {
        Arc::new(Object {
            json: json.into_boxed_str(),
            source_name: key.source_name().into(),
            yaml: OnceLock::new(),
        })
    }

    fn value(&self) -> Value {
        // The text was written from a `Value`: it reads back.
        serde_json::from_str(&self.json).unwrap_or(Value::Null)
    }

    fn yaml(&self) -> Arc<str> {
        self.yaml
            .get_or_init(|| ambassador_yaml_out::to_string(&self.value()).into())
            .clone()
    }
}

/// Where one compiler source came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// A manifest file of a watched directory, by its path.
    File(String),
    /// A Kubernetes object of a watched cluster.
    Object(Key),
}

/// An immutable state of the view.
#[derive(Clone, Default)]
pub struct Snapshot {
    generation: u64,
    synced: bool,
    // Keys and names behind `Arc`s: a batch that changes a shared snapshot copies the map,
    // and a copy of 10,000 entries must not copy 40,000 strings.
    objects: Arc<BTreeMap<Arc<Key>, Arc<Object>>>,
    files: Arc<BTreeMap<Arc<str>, Arc<str>>>,
    problems: Arc<BTreeMap<String, String>>,
}

impl fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Snapshot")
            .field("generation", &self.generation)
            .field("synced", &self.synced)
            .field("objects", &self.objects.len())
            .field("files", &self.files.len())
            .field("problems", &self.problems)
            .finish()
    }
}

impl Snapshot {
    /// Bumped by every batch that changed something; 0 for the empty view.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Whether the source has delivered its complete initial state (every initial list of
    /// the cluster, or the first scan of the directory). Stays true across re-lists.
    pub fn is_synced(&self) -> bool {
        self.synced
    }

    /// The object, read back from the text it is kept as.
    pub fn get(&self, key: &Key) -> Option<Value> {
        self.objects.get(key).map(|o| o.value())
    }

    /// Objects in key order.
    pub fn objects(&self) -> impl Iterator<Item = (&Key, Value)> {
        self.objects.iter().map(|(k, o)| (&**k, o.value()))
    }

    /// The objects' keys, in order.
    pub fn keys(&self) -> impl Iterator<Item = &Key> {
        self.objects.keys().map(|k| &**k)
    }

    /// Files in path order, with their text.
    pub fn files(&self) -> impl Iterator<Item = (&str, &str)> {
        self.files.iter().map(|(k, t)| (&**k, &**t))
    }

    pub fn file(&self, name: &str) -> Option<&str> {
        self.files.get(name).map(|t| &**t)
    }

    /// Files whose latest version was not taken, and why (the last good text stays in
    /// the view). Empty for a cluster view.
    pub fn problems(&self) -> &BTreeMap<String, String> {
        &self.problems
    }

    /// Objects plus files.
    pub fn len(&self) -> usize {
        self.objects.len() + self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Objects per kind, for the `ambassador_watched_objects` gauge.
    pub fn counts_by_kind(&self) -> BTreeMap<&str, u64> {
        let mut counts = BTreeMap::new();
        for key in self.objects.keys() {
            *counts.entry(key.kind.as_str()).or_insert(0) += 1;
        }
        counts
    }

    /// Every source for the compiler, as `(name, text)`: files first, in path order, then
    /// objects in key order, each rendered as YAML and named `cluster:<ns>/<Kind>/<name>`.
    pub fn sources(&self) -> Vec<(Arc<str>, Arc<str>)> {
        let mut out = Vec::with_capacity(self.len());
        for (name, text) in self.files.iter() {
            out.push((Arc::clone(name), Arc::clone(text)));
        }
        for object in self.objects.values() {
            out.push((Arc::clone(&object.source_name), object.yaml()));
        }
        out
    }

    /// What admission checks against and status reports come from: [`Snapshot::sources`]
    /// as compiler [`Sources`] without the cluster's Secrets, with the origin of each file:
    /// `origins[id.0]` is where `FileId` `id` came from.
    ///
    /// Secrets are left out: admission judges Ambassador objects and needs no key material
    /// (a Host whose Secret it does not see gets a note, `AMB417`, which admits it), and a
    /// Secret has no status to report on. The publisher reads [`Snapshot::sources`], which
    /// holds them. Secrets inside a watched directory's files stay: files are text here.
    pub fn compile_input(&self) -> (Sources, Vec<Origin>) {
        let mut sources = Sources::new();
        let mut origins = Vec::with_capacity(self.len());
        for (name, text) in self.files.iter() {
            sources.add(name.to_string(), text.to_string());
            origins.push(Origin::File(name.to_string()));
        }
        for (key, object) in self.objects.iter() {
            if key.is_secret() {
                continue;
            }
            sources.add(object.source_name.to_string(), object.yaml().to_string());
            origins.push(Origin::Object(Key::clone(key)));
        }
        (sources, origins)
    }
}

/// Changes to the store, applied together by [`View::update`].
pub struct Batch<'a> {
    snapshot: &'a mut Snapshot,
    changed: bool,
}

impl Batch<'_> {
    /// Adds or replaces an object (it must have `apiVersion`, `kind` and `metadata.name`).
    /// Returns false, changing nothing, when the object is equal to the stored one.
    pub fn upsert(&mut self, object: Value) -> bool {
        let Some(key) = Key::of(&object) else {
            return false;
        };
        // Equal texts are equal objects; different texts may hold the same object with its
        // keys in another order (maps keep the order they were written in).
        let json = object.to_string();
        if self
            .snapshot
            .objects
            .get(&key)
            .is_some_and(|o| *o.json == *json || o.value() == object)
        {
            return false;
        }
        let object = Object::new(&key, json);
        Arc::make_mut(&mut self.snapshot.objects).insert(Arc::new(key), object);
        self.changed = true;
        true
    }

    pub fn remove(&mut self, key: &Key) -> bool {
        if !self.snapshot.objects.contains_key(key) {
            return false;
        }
        Arc::make_mut(&mut self.snapshot.objects).remove(key);
        self.changed = true;
        true
    }

    /// Makes `objects` the complete set of `group`/`kind`: others of that kind go away.
    /// This is how a re-list lands, atomically.
    pub fn replace_kind(&mut self, group: &str, kind: &str, objects: Vec<Value>) {
        let mut incoming: BTreeMap<Key, Value> = BTreeMap::new();
        for o in objects {
            if let Some(key) = Key::of(&o) {
                if key.group == group && key.kind == kind {
                    incoming.insert(key, o);
                }
            }
        }
        let stale: Vec<Key> = self
            .snapshot
            .objects
            .keys()
            .filter(|k| k.group == group && k.kind == kind && !incoming.contains_key(&***k))
            .map(|k| Key::clone(k))
            .collect();
        for key in &stale {
            self.remove(key);
        }
        for (_, object) in incoming {
            self.upsert(object);
        }
    }

    /// Adds or replaces a file's text; clears its problem. False when nothing changed.
    pub fn set_file(&mut self, name: &str, text: &str) -> bool {
        self.clear_problem(name);
        if self.snapshot.files.get(name).map(|t| &**t) == Some(text) {
            return false;
        }
        Arc::make_mut(&mut self.snapshot.files).insert(name.into(), text.into());
        self.changed = true;
        true
    }

    pub fn remove_file(&mut self, name: &str) -> bool {
        self.clear_problem(name);
        if !self.snapshot.files.contains_key(name) {
            return false;
        }
        Arc::make_mut(&mut self.snapshot.files).remove(name);
        self.changed = true;
        true
    }

    /// Records why the latest version of a file was not taken.
    pub fn set_problem(&mut self, name: &str, problem: String) {
        if self.snapshot.problems.get(name) != Some(&problem) {
            Arc::make_mut(&mut self.snapshot.problems).insert(name.to_string(), problem);
            self.changed = true;
        }
    }

    fn clear_problem(&mut self, name: &str) {
        if self.snapshot.problems.contains_key(name) {
            Arc::make_mut(&mut self.snapshot.problems).remove(name);
            self.changed = true;
        }
    }

    /// File names currently held.
    pub fn file_names(&self) -> Vec<String> {
        self.snapshot.files.keys().map(|k| k.to_string()).collect()
    }

    pub fn is_synced(&self) -> bool {
        self.snapshot.synced
    }

    /// Marks the initial state complete (once; later calls change nothing).
    pub fn set_synced(&mut self) {
        if !self.snapshot.synced {
            self.snapshot.synced = true;
            self.changed = true;
        }
    }
}

/// The store. Clones share it: sources write, the server and the compiler pipeline read.
#[derive(Clone)]
pub struct View {
    tx: Arc<watch::Sender<Snapshot>>,
}

impl Default for View {
    fn default() -> Self {
        View::new()
    }
}

impl fmt::Debug for View {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("View").field(&*self.tx.borrow()).finish()
    }
}

impl View {
    pub fn new() -> View {
        let (tx, _) = watch::channel(Snapshot::default());
        View { tx: Arc::new(tx) }
    }

    /// The current state: cheap (a few `Arc` clones), immutable.
    pub fn snapshot(&self) -> Snapshot {
        self.tx.borrow().clone()
    }

    /// A receiver that is woken after every batch that changed something. Use
    /// `changed().await`, then `borrow_and_update().clone()`; intermediate generations may
    /// be skipped, the latest is never missed.
    pub fn subscribe(&self) -> watch::Receiver<Snapshot> {
        self.tx.subscribe()
    }

    /// Waits until the source has delivered its initial state.
    pub async fn synced(&self) -> Snapshot {
        let mut rx = self.subscribe();
        let snapshot = match rx.wait_for(Snapshot::is_synced).await {
            Ok(s) => s.clone(),
            // The sender lives in `self`, so it cannot be gone.
            Err(_) => self.snapshot(),
        };
        snapshot
    }

    /// Waits until a snapshot satisfies `f` (tests and start-up).
    pub async fn wait_for(&self, mut f: impl FnMut(&Snapshot) -> bool) -> Snapshot {
        let mut rx = self.subscribe();
        let snapshot = match rx.wait_for(|s| f(s)).await {
            Ok(s) => s.clone(),
            Err(_) => self.snapshot(),
        };
        snapshot
    }

    /// Applies a batch of changes. Subscribers are woken, and the generation bumped, only
    /// when something changed. Returns whether it did.
    pub fn update(&self, f: impl FnOnce(&mut Batch<'_>)) -> bool {
        self.tx.send_if_modified(|snapshot| {
            let mut batch = Batch {
                snapshot,
                changed: false,
            };
            f(&mut batch);
            let changed = batch.changed;
            if changed {
                snapshot.generation += 1;
            }
            changed
        })
    }
}

/// Sets `readiness` once the view has synced, and keeps the `ambassador_watched_objects`
/// gauge equal to the view's objects per kind, until the task is aborted. This is the
/// wiring `main` needs in place of its unconditional `set_ready(true)`.
pub fn publish_health(
    view: &View,
    readiness: crate::server::Readiness,
    metrics: Arc<crate::metrics::Metrics>,
) -> tokio::task::JoinHandle<()> {
    let view = view.clone();
    tokio::spawn(async move {
        let mut rx = view.subscribe();
        let mut ready = false;
        let mut shown: BTreeMap<String, u64> = BTreeMap::new();
        loop {
            let snapshot = rx.borrow_and_update().clone();
            let counts: BTreeMap<String, u64> = snapshot
                .counts_by_kind()
                .into_iter()
                .map(|(k, n)| (k.to_string(), n))
                .collect();
            // Kinds that are gone show 0 rather than their last count.
            for kind in shown.keys() {
                if !counts.contains_key(kind) {
                    metrics.set_view_size(kind, 0);
                }
            }
            for (kind, n) in &counts {
                metrics.set_view_size(kind, *n);
            }
            shown.extend(counts);
            if snapshot.is_synced() && !ready {
                ready = true;
                readiness.set_ready(true);
                tracing::info!(
                    objects = snapshot.len(),
                    generation = snapshot.generation(),
                    "view synced; ready"
                );
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    })
}

#[cfg(test)]
mod tests;

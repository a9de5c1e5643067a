//! Source texts in, a published xDS [`Snapshot`] out: the glue between the compiler and the ADS publisher.
//!
//! [`Pipeline::update`] takes the whole current set of manifest texts (from a directory, or
//! from the watched view of the cluster), compiles them, fills EDS endpoints from the
//! Endpoints and EndpointSlices among them, and publishes a snapshot through the
//! `tokio::sync::watch` channel that [`crate::ads::Publisher`] follows. Objects with errors
//! are left out by the compiler and listed in the [`UpdateReport`]; everything else keeps
//! flowing, so one bad Mapping never holds back the others.
//!
//! Repeated updates are cheap where it pays (see `docs/PERFORMANCE.md`, "Reconfiguration"):
//!
//! - a file whose text did not change is not read again: its front-end result (the parsed
//!   resources with their positions) is kept, and the per-file results are spliced together
//!   in input order before lowering;
//! - an update in which no text changed does nothing at all;
//! - a resource whose version (a hash of its encoding) did not change keeps the very
//!   `Arc<Resource>` of the previous snapshot, so the publisher resends only what changed
//!   and no bytes are copied or hashed twice.
//!
//! **Architecture invariant:** the pipeline never fails on user input; only the compiler
//! decides what is served, and the pipeline adds nothing to it but the EDS endpoints.

pub mod dir;
mod front_cache;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ambassador_compiler::diag::{Diagnostic, ObjectRef, Severity};
use ambassador_compiler::envoy::Resources;
use ambassador_compiler::front::Options;
use ambassador_compiler::lower::LowerOptions;
use ambassador_compiler::{check, diag, lower, Compilation};
use tokio::sync::watch;

use crate::ads::{type_url, Resource, Snapshot};

use front_cache::FrontCache;

/// What a pipeline compiles with: the front end's options (`ambassador_id`, default
/// namespace) and where Envoy's listeners listen.
#[derive(Clone, Debug, Default)]
pub struct PipelineOptions {
    /// `ambassador_id` and the namespace of objects that name none.
    pub front: Options,
    /// Listen address and the HTTP and HTTPS ports of Envoy's listeners.
    pub lower: LowerOptions,
}

impl PipelineOptions {
    /// Builder: Envoy's listeners listen on `address` (e.g. `127.0.0.1` in tests), cleartext
    /// HTTP on `http_port`.
    pub fn listen(mut self, address: impl Into<String>, http_port: u16) -> Self {
        self.lower.listen_address = address.into();
        self.lower.http_port = http_port;
        self
    }

    /// Builder: the TLS port, used when a Host terminates TLS.
    pub fn https_port(mut self, port: u16) -> Self {
        self.lower.https_port = port;
        self
    }

    /// Builder: only objects whose `ambassador_id` includes `id` are compiled.
    pub fn ambassador_id(mut self, id: impl Into<String>) -> Self {
        self.front.ambassador_id = id.into();
        self
    }
}

/// One diagnostic, resolved to a file name, for logs and reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// `error`, `warning` or `info`.
    pub severity: Severity,
    /// The stable code, e.g. `AMB202`.
    pub code: &'static str,
    /// The message, lowercase, naming things in backticks.
    pub message: String,
    /// The object the finding is about, when known.
    pub object: Option<ObjectRef>,
    /// The field path inside the object, when known.
    pub field: Option<String>,
    /// The file (the name given to [`Pipeline::update`]), when the finding has a position.
    pub file: Option<String>,
    /// 1-based line and column in that file.
    pub line: Option<u32>,
    pub column: Option<u32>,
}

impl std::fmt::Display for Finding {
    /// `file:line:column: severity[code]: object: message`, leaving out what is unknown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{file}")?;
            if let (Some(line), Some(column)) = (self.line, self.column) {
                write!(f, ":{line}:{column}")?;
            }
            write!(f, ": ")?;
        }
        write!(f, "{}[{}]: ", self.severity.as_str(), self.code)?;
        if let Some(object) = &self.object {
            write!(f, "{object}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// How a resource differs from the previous snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    Added,
    Changed,
    Removed,
}

/// One resource that differs from the previous snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// The xDS type URL.
    pub type_url: &'static str,
    /// The resource name.
    pub name: String,
    pub kind: ChangeKind,
}

/// Where the time of one update went.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timings {
    /// Reading the files that changed (YAML, annotations, schema).
    pub front: Duration,
    /// Splicing per-file results, lowering to the IR and the whole-configuration checks.
    pub lower: Duration,
    /// Translating the IR to Envoy resources and encoding them, endpoints included.
    pub emit: Duration,
    /// Comparing versions with the previous snapshot and building the new one.
    pub snapshot: Duration,
    /// The whole update, publishing included.
    pub total: Duration,
}

/// What one [`Pipeline::update`] did.
#[derive(Clone, Debug, Default)]
pub struct UpdateReport {
    /// Whether anything was compiled: false when no text changed since the last update.
    pub compiled: bool,
    /// Whether a new snapshot was published: false when nothing Envoy sees changed.
    pub published: bool,
    /// Files read again because their text changed (or they are new).
    pub files_read: usize,
    /// Every finding of the compilation (also when `compiled` is false: the last ones).
    pub findings: Vec<Finding>,
    /// Resources added, changed or removed, in type then name order.
    pub changes: Vec<Change>,
    /// How many resources the snapshot holds per type URL.
    pub counts: Vec<(&'static str, usize)>,
    pub timings: Timings,
}

impl UpdateReport {
    /// The findings of severity error: objects (or parts of them) that were left out.
    pub fn errors(&self) -> impl Iterator<Item = &Finding> {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
    }
}

/// Where source texts come from: a directory ([`dir::DirFeed`]) today, the watched view of
/// the cluster later. Each call waits for the next change and returns the whole current set.
pub trait Feed: Send {
    /// Why the feed cannot go on.
    type Error: std::error::Error + Send + Sync + 'static;

    /// The whole set of sources: at once on the first call, then after each change.
    fn next(
        &mut self,
    ) -> impl std::future::Future<Output = Result<Vec<(String, String)>, Self::Error>> + Send;
}

/// Feeds every change of `feed` through `pipeline`, for as long as the feed goes on.
/// `on_update` sees each report (the binary logs; tests count).
pub async fn follow<F: Feed>(
    pipeline: &mut Pipeline,
    feed: &mut F,
    mut on_update: impl FnMut(&UpdateReport) + Send,
) -> Result<std::convert::Infallible, F::Error> {
    loop {
        let sources = feed.next().await?;
        let report = pipeline.update(sources);
        on_update(&report);
    }
}

/// The four types the compiler emits, in the order reports list them.
const TYPES: [&str; 4] = [
    type_url::CLUSTER,
    type_url::ENDPOINT,
    type_url::LISTENER,
    type_url::ROUTE,
];

/// The last published resource of one name: its compiler version (FNV of the encoding)
/// and the shared resource that carries it.
#[derive(Debug)]
struct Published {
    version: String,
    resource: Arc<Resource>,
}

/// Compiles source texts and publishes snapshots. See the module documentation.
#[derive(Debug)]
pub struct Pipeline {
    options: PipelineOptions,
    sender: watch::Sender<Arc<Snapshot>>,
    front: FrontCache,
    /// Per type URL, by name.
    published: HashMap<&'static str, HashMap<String, Published>>,
    /// Findings of the last compilation, for updates that change nothing.
    findings: Vec<Finding>,
    /// Whether at least one compilation ran (the first always publishes).
    started: bool,
    /// Raw resources added to every snapshot after the compiled ones (see [`Pipeline::set_extra`]).
    extra: Vec<Arc<Resource>>,
    extra_changed: bool,
    /// The extras of the last published snapshot.
    extra_published: Vec<Arc<Resource>>,
}

impl Pipeline {
    /// A pipeline and the receiver for [`crate::ads::Publisher::new`]. The channel starts
    /// with an empty snapshot; the first [`Pipeline::update`] fills it.
    pub fn new(options: PipelineOptions) -> (Pipeline, watch::Receiver<Arc<Snapshot>>) {
        let (sender, receiver) = watch::channel(Arc::new(Snapshot::new()));
        let pipeline = Pipeline {
            options,
            sender,
            front: FrontCache::default(),
            published: HashMap::new(),
            findings: Vec::new(),
            started: false,
            extra: Vec::new(),
            extra_changed: false,
            extra_published: Vec::new(),
        };
        (pipeline, receiver)
    }

    /// The options this pipeline compiles with.
    pub fn options(&self) -> &PipelineOptions {
        &self.options
    }

    /// The snapshot published last.
    pub fn current(&self) -> Arc<Snapshot> {
        self.sender.borrow().clone()
    }

    /// Another receiver of the published snapshots (e.g. for a second publisher).
    pub fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.sender.subscribe()
    }

    /// Resources served next to the compiled ones, replacing compiled resources of the same
    /// type and name; applied at the next [`Pipeline::update`]. For configuration the
    /// compiler does not produce (and for tests that need Envoy to see something the
    /// compiler would never emit). An empty list removes them again.
    pub fn set_extra(&mut self, resources: Vec<Resource>) {
        self.extra = resources.into_iter().map(Arc::new).collect();
        self.extra_changed = true;
    }

    /// Compiles `sources` (file name and text, in the order objects should be read: a later
    /// duplicate replaces an earlier one) and publishes the result if Envoy would see a change.
    pub fn update(&mut self, sources: Vec<(String, String)>) -> UpdateReport {
        let start = Instant::now();
        let mut report = UpdateReport::default();

        let t = Instant::now();
        let read = self.front.update(sources, &self.options.front);
        report.timings.front = t.elapsed();
        report.files_read = read.files_read;
        if !read.changed && self.started && !self.extra_changed {
            report.findings = self.findings.clone();
            report.counts = self.counts();
            report.timings.total = start.elapsed();
            tracing::debug!("no source changed; nothing compiled");
            return report;
        }
        self.started = true;
        self.extra_changed = false;
        report.compiled = true;

        let t = Instant::now();
        let compilation = self.lower();
        report.timings.lower = t.elapsed();

        let t = Instant::now();
        let resources = ambassador_compiler::envoy_resources(&compilation);
        report.timings.emit = t.elapsed();

        let t = Instant::now();
        let (snapshot, changes) = self.diff(&resources);
        report.timings.snapshot = t.elapsed();

        report.findings = self.findings(&compilation.diagnostics);
        self.findings = report.findings.clone();
        // The compilation holds the manifests, which belong to the cache: hand them back.
        let Compilation { manifests, ir, .. } = compilation;
        self.front.restore(manifests);
        // Freeing an IR and resources of 10,000 Mappings takes milliseconds: not on the
        // path to Envoy.
        drop_later((ir, resources));

        report.changes = changes;
        if !report.changes.is_empty() || self.sender.borrow().type_urls().next().is_none() {
            self.sender.send_replace(Arc::new(snapshot));
            report.published = true;
        }
        report.counts = self.counts();
        report.timings.total = start.elapsed();
        log(&report);
        report
    }

    /// Lowers the spliced manifests and runs the checks: [`ambassador_compiler::compile`]
    /// after its front end, which the cache has already done file by file.
    fn lower(&mut self) -> Compilation {
        let manifests = self.front.take();
        let (ir, mut diags) = lower::lower(&manifests, &self.options.lower);
        check::check(&ir, &mut diags);
        let mut diagnostics = manifests.diagnostics.clone();
        diagnostics.append(&mut diags);
        diag::sort(&mut diagnostics);
        Compilation {
            manifests,
            ir,
            diagnostics,
        }
    }

    /// The snapshot for `resources`, sharing every unchanged resource with the last one,
    /// and what changed.
    fn diff(&mut self, resources: &Resources) -> (Snapshot, Vec<Change>) {
        let mut snapshot = Snapshot::new();
        let mut changes = Vec::new();
        for type_url in TYPES {
            let set = resources
                .packed(type_url)
                .expect("the compiler emits every type the pipeline lists");
            let old = self.published.remove(type_url).unwrap_or_default();
            let mut old = old;
            let mut new: HashMap<String, Published> = HashMap::with_capacity(set.resources.len());
            for (name, version, any) in set.resources {
                let (resource, kind) = match old.remove(name) {
                    Some(p) if p.version == version => (p.resource, None),
                    Some(_) => (
                        Arc::new(Resource::new(name, any.clone())),
                        Some(ChangeKind::Changed),
                    ),
                    None => (
                        Arc::new(Resource::new(name, any.clone())),
                        Some(ChangeKind::Added),
                    ),
                };
                if let Some(kind) = kind {
                    changes.push(Change {
                        type_url,
                        name: name.to_owned(),
                        kind,
                    });
                }
                snapshot.insert_arc(Arc::clone(&resource));
                new.insert(
                    name.to_owned(),
                    Published {
                        version: version.to_owned(),
                        resource,
                    },
                );
            }
            let mut removed: Vec<String> = old.into_keys().collect();
            removed.sort();
            changes.extend(removed.into_iter().map(|name| Change {
                type_url,
                name,
                kind: ChangeKind::Removed,
            }));
            self.published.insert(type_url, new);
        }
        for extra in &self.extra {
            let (type_url, name) = (static_type(extra.type_url()), extra.name());
            let replaced = snapshot.insert_arc(Arc::clone(extra));
            // What Envoy sees under this name is the extra: a compiled change below it is none.
            changes.retain(|c| !(c.type_url == type_url && c.name == name));
            let before = self
                .extra_published
                .iter()
                .find(|e| e.type_url() == type_url && e.name() == name);
            let kind = match before {
                Some(b) if b.version() == extra.version() => continue,
                Some(_) => ChangeKind::Changed,
                None if replaced.is_some() => ChangeKind::Changed,
                None => ChangeKind::Added,
            };
            changes.push(Change {
                type_url,
                name: name.to_owned(),
                kind,
            });
        }
        // Extras that went away leave their name to a compiled resource or to nobody.
        for gone in std::mem::take(&mut self.extra_published) {
            let (type_url, name) = (gone.type_url(), gone.name());
            if self
                .extra
                .iter()
                .any(|e| e.type_url() == type_url && e.name() == name)
            {
                continue;
            }
            let kind = match snapshot.get(type_url, name) {
                None => ChangeKind::Removed,
                Some(now) if now.version() != gone.version() => ChangeKind::Changed,
                Some(_) => continue,
            };
            changes.retain(|c| !(c.type_url == type_url && c.name == name));
            changes.push(Change {
                type_url: static_type(type_url),
                name: name.to_owned(),
                kind,
            });
        }
        self.extra_published = self.extra.clone();
        (snapshot, changes)
    }

    fn findings(&self, diagnostics: &[Diagnostic]) -> Vec<Finding> {
        diagnostics
            .iter()
            .map(|d| Finding {
                severity: d.severity,
                code: d.code.as_str(),
                message: d.message.clone(),
                object: d.object.clone(),
                field: d.field.clone(),
                file: d.span.map(|s| self.front.file_name(s.file).to_owned()),
                line: d.span.map(|s| s.start.line),
                column: d.span.map(|s| s.start.column),
            })
            .collect()
    }

    fn counts(&self) -> Vec<(&'static str, usize)> {
        let snapshot = self.sender.borrow();
        TYPES
            .iter()
            .map(|t| (*t, snapshot.resources(t).len()))
            .collect()
    }
}

/// Drops `value` on another thread when it is large enough to matter, else here.
fn drop_later<T: Send + 'static>(value: T) {
    let spawned = std::thread::Builder::new()
        .name("pipeline-drop".into())
        .spawn(move || drop(value));
    // If no thread can be started, the value was dropped with the closure.
    drop(spawned);
}

/// The `'static` spelling of a type URL the pipeline knows, for [`Change::type_url`].
fn static_type(type_url: &str) -> &'static str {
    [
        type_url::CLUSTER,
        type_url::ENDPOINT,
        type_url::LISTENER,
        type_url::ROUTE,
        type_url::SECRET,
    ]
    .into_iter()
    .find(|t| *t == type_url)
    .unwrap_or("unknown")
}

/// Logs the findings (errors and warnings one line each, infos at debug) and a summary.
fn log(report: &UpdateReport) {
    for f in &report.findings {
        match f.severity {
            Severity::Error => tracing::warn!(finding = %f, "left out of the configuration"),
            Severity::Warning => tracing::info!(finding = %f, "configuration warning"),
            Severity::Info => tracing::debug!(finding = %f, "configuration note"),
        }
    }
    let short = |t: &str| t.rsplit('.').next().unwrap_or(t).to_owned();
    tracing::info!(
        published = report.published,
        files_read = report.files_read,
        changes = report.changes.len(),
        errors = report.errors().count(),
        counts = ?report.counts.iter().map(|(t, n)| (short(t), *n)).collect::<Vec<_>>(),
        took = ?report.timings.total,
        "configuration compiled"
    );
}

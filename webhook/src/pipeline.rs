//! Source texts in, a published xDS [`Snapshot`] out: the glue between the compiler and the ADS publisher.
//!
//! [`Pipeline::update`] takes the whole current set of manifest texts (from a directory, or
//! from the watched view of the cluster), compiles them, fills EDS endpoints from the
//! Endpoints and EndpointSlices among them, and publishes a snapshot through the
//! `tokio::sync::watch` channel that [`crate::ads::Publisher`] follows. Objects with errors
//! are left out by the compiler and listed in the [`UpdateReport`]; everything else keeps
//! flowing, so one bad Mapping never holds back the others.
//!
//! Repeated updates cost what changed (see `docs/PERFORMANCE.md`, "Reconfiguration"): the
//! compiling is done by an [`ambassador_compiler::incremental::Session`], which reads only
//! the files whose text changed, rebuilds only the routes and clusters a Mapping change
//! touches, and answers with the resources that changed. The pipeline turns those into the
//! next snapshot, which shares every unchanged resource (and every unchanged type) with the
//! last one, so the publisher resends only what changed and no bytes are copied or hashed
//! twice. An update in which no text changed does nothing at all.
//!
//! **Architecture invariant:** the pipeline never fails on user input; only the compiler
//! decides what is served, and the pipeline adds nothing to it but the EDS endpoints.

pub mod dir;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::{Duration, Instant};

use ambassador_compiler::diag::{ObjectRef, Severity};
use ambassador_compiler::front::Options;
use ambassador_compiler::incremental::{Delta, Session, ViewChange};
use ambassador_compiler::lower::LowerOptions;
use tokio::sync::watch;

use crate::ads::{type_url, Resource, Snapshot};

/// What a pipeline compiles with: the front end's options (`ambassador_id`, default
/// namespace) and where Envoy's listeners listen.
#[derive(Clone, Debug)]
pub struct PipelineOptions {
    /// `ambassador_id` and the namespace of objects that name none.
    pub front: Options,
    /// Listen address and the HTTP and HTTPS ports of Envoy's listeners.
    pub lower: LowerOptions,
}

impl Default for PipelineOptions {
    /// The publisher sees every Secret it can serve: a Host whose Secret it does not hold
    /// has its TLS left out (reported), instead of keeping the whole listener waiting for a
    /// certificate that never comes.
    fn default() -> Self {
        PipelineOptions {
            front: Options::default(),
            lower: LowerOptions {
                secrets_known: true,
                // The time the publisher starts: a certificate that expires while it runs
                // is reported at its next start.
                now: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .ok()
                    .and_then(|d| i64::try_from(d.as_secs()).ok()),
                ..LowerOptions::default()
            },
        }
    }
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
    /// Lowering what changed to the IR, and the checks of the virtual hosts it touched.
    pub lower: Duration,
    /// Encoding what changed and assembling the resources that hold it, the findings.
    pub emit: Duration,
    /// Building the next snapshot from the changed resources.
    pub snapshot: Duration,
    /// From the start of the update to the snapshot's publication: what Envoy waits for.
    pub published: Duration,
    /// The route-table checks and the findings, after publishing.
    pub findings: Duration,
    /// The whole update, publishing included.
    pub total: Duration,
}

/// What one [`Pipeline::update`] did.
#[derive(Clone, Debug, Default)]
pub struct UpdateReport {
    /// Whether anything was compiled: false when no text changed since the last update.
    pub compiled: bool,
    /// Whether the compiler started from the files (a change beyond Mappings, or the first
    /// update) rather than from its last result.
    pub full: bool,
    /// Whether a new snapshot was published: false when nothing Envoy sees changed.
    pub published: bool,
    /// Files read again because their text changed (or they are new).
    pub files_read: usize,
    /// Every finding of the compilation (also when `compiled` is false: the last ones).
    pub findings: Vec<Finding>,
    /// Resources added, changed or removed, in type then name order.
    pub changes: Vec<Change>,
    /// The AuthServices (`namespace/name`) that cannot be compiled: the published
    /// configuration refuses every request they would have checked (500) until they are
    /// fixed. Empty when authorization works or there is none.
    pub auth_refusing: Vec<String>,
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

/// The types the compiler emits, in the order reports list them.
const TYPES: [&str; 5] = [
    type_url::CLUSTER,
    type_url::ENDPOINT,
    type_url::LISTENER,
    type_url::ROUTE,
    type_url::SECRET,
];

/// Compiles source texts and publishes snapshots. See the module documentation.
#[derive(Debug)]
pub struct Pipeline {
    options: PipelineOptions,
    sender: watch::Sender<Arc<Snapshot>>,
    session: Session,
    /// The compiled resources alone (the published snapshot adds the extras).
    compiled: Snapshot,
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
            options: options.clone(),
            sender,
            session: Session::new(options.front.clone(), options.lower.clone()),
            compiled: Snapshot::new(),
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
    pub fn update<N: AsRef<str>, T: AsRef<str>>(&mut self, sources: Vec<(N, T)>) -> UpdateReport {
        self.update_then(sources, |_, _| {})
    }

    /// [`Pipeline::update`], and once the snapshot is published (before the findings are
    /// made), `compiled` with the session and what the update changed in it: how the
    /// admission view follows the same compilation (`CompilerValidator::follow`). Not called
    /// when no text changed.
    pub fn update_then<N: AsRef<str>, T: AsRef<str>>(
        &mut self,
        sources: Vec<(N, T)>,
        compiled: impl FnOnce(&Session, &ViewChange),
    ) -> UpdateReport {
        let start = Instant::now();
        let mut report = UpdateReport::default();
        let update = self.session.update(sources);
        report.timings.front = update.timings.front;
        report.files_read = update.files_read;
        if !update.compiled && self.started && !self.extra_changed {
            report.findings = self.findings.clone();
            report.auth_refusing = self.auth_refusing();
            report.counts = self.counts();
            report.timings.total = start.elapsed();
            tracing::debug!("no source changed; nothing compiled");
            return report;
        }
        self.started = true;
        self.extra_changed = false;
        report.compiled = update.compiled;
        report.full = update.full;
        report.timings.lower = update.timings.lower;
        report.timings.emit = update.timings.emit;

        let t = Instant::now();
        let (snapshot, changes) = self.next_snapshot(update.deltas);
        report.timings.snapshot = t.elapsed();

        report.changes = changes;
        if !report.changes.is_empty() || self.sender.borrow().type_urls().next().is_none() {
            self.sender.send_replace(Arc::new(snapshot));
            report.published = true;
        }
        report.timings.published = start.elapsed();
        if update.compiled {
            compiled(&self.session, &update.view);
        }
        // Findings never change what is served: Envoy has the update before they are made.
        let t = Instant::now();
        report.findings = self.findings();
        self.findings = report.findings.clone();
        report.auth_refusing = self.auth_refusing();
        report.timings.findings = t.elapsed();
        report.counts = self.counts();
        report.timings.total = start.elapsed();
        log(&report);
        report
    }

    /// The next snapshot: the compiled resources with `deltas` applied, then the extras;
    /// and what changed.
    fn next_snapshot(&mut self, deltas: Vec<Delta>) -> (Snapshot, Vec<Change>) {
        let mut changes = Vec::with_capacity(deltas.len());
        for d in deltas {
            let kind = match d.resource {
                Some(p) => {
                    let resource = Resource::with_version(p.name, p.any, p.version);
                    match self.compiled.insert_arc(Arc::new(resource)) {
                        Some(_) => ChangeKind::Changed,
                        None => ChangeKind::Added,
                    }
                }
                None => match self.compiled.remove(d.type_url, &d.name) {
                    Some(_) => ChangeKind::Removed,
                    None => continue,
                },
            };
            changes.push(Change {
                type_url: d.type_url,
                name: d.name,
                kind,
            });
        }
        let mut snapshot = self.compiled.clone();
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

    fn findings(&mut self) -> Vec<Finding> {
        let session = &mut self.session;
        session.diagnostics();
        let session = &self.session;
        session
            .current_diagnostics()
            .iter()
            .map(|d| Finding {
                severity: d.severity,
                code: d.code.as_str(),
                message: d.message.clone(),
                object: d.object.clone(),
                field: d.field.clone(),
                file: d.span.map(|s| session.file_name(s.file).to_owned()),
                line: d.span.map(|s| s.start.line),
                column: d.span.map(|s| s.start.column),
            })
            .collect()
    }

    /// The misconfigured AuthServices, `namespace/name` (see [`UpdateReport::auth_refusing`]).
    fn auth_refusing(&self) -> Vec<String> {
        self.session
            .auth_misconfigured()
            .unwrap_or_default()
            .iter()
            .map(|s| format!("{}/{}", s.namespace, s.name))
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
    if !report.auth_refusing.is_empty() {
        // Not "left out": the routes these AuthServices protect are closed, not open.
        tracing::error!(
            auth_services = ?report.auth_refusing,
            "AuthService misconfigured: every request it would check is refused with 500 until it is fixed"
        );
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

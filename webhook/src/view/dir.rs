//! The view fed by a directory of manifests, watched with inotify and debounced.
//!
//! Each manifest file ([`source::is_manifest_name`]: `.yaml`, `.yml` or `.json`, not hidden)
//! is one entry of the view, kept as text. After a
//! quiet period (20 ms unless configured) the files named by the collected events are
//! read again, and only those; an event on anything else (a directory, the `..data`
//! symlink a ConfigMap volume swaps) rescans the directory, which still only changes the
//! entries whose text changed. A file whose new text cannot be used (unreadable, not
//! UTF-8, or YAML that does not parse) keeps its last good text in the view; the problem
//! is logged, passed to the callback and listed in [`Snapshot::problems`](super::Snapshot::problems).
//! Hidden files and directories (a leading `.`) are skipped, as editors and volume
//! plumbing put their temporaries there: the same rule as the plugin's.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ambassador_compiler::diag::Code;
use ambassador_compiler::front::{self, Manifests, Options};
use ambassador_compiler::source::{self, Sources};
use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::View;

/// Files larger than this are not read: no manifest set comes near it.
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// Why a directory cannot be watched at all.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The directory does not exist or cannot be listed.
    #[error("{path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    /// inotify refused the watch (e.g. the per-user watch limit).
    #[error("watching {path}: {source}")]
    Watch {
        path: PathBuf,
        source: notify::Error,
    },
}

/// Why the latest version of one file was not taken.
#[derive(Debug, thiserror::Error)]
pub enum Problem {
    /// The file cannot be read.
    #[error("{path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// The file is over [`MAX_FILE_BYTES`].
    #[error("{path}: {size} bytes; files over {MAX_FILE_BYTES} bytes are not read")]
    TooLarge { path: String, size: u64 },
    /// The file is not UTF-8 text.
    #[error("{path}: not UTF-8 text")]
    NotText { path: String },
    /// The YAML does not parse; the last good text stays in the view.
    #[error("{path}:{line}:{column}: {message}")]
    Syntax {
        path: String,
        line: u32,
        column: u32,
        message: String,
    },
    /// inotify reported an error; the directory is rescanned.
    #[error("watching: {0}")]
    Watch(String),
}

/// Called for every problem, on the watcher's task.
pub type OnProblem = Arc<dyn Fn(&Problem) + Send + Sync>;

/// How the directory is watched.
#[derive(Clone)]
pub struct DirOptions {
    /// Quiet period after the last event before files are read.
    pub debounce: Duration,
    /// Read subdirectories too (kubectl's `-R`).
    pub recursive: bool,
    /// Told about every file whose new version is not taken.
    pub on_problem: Option<OnProblem>,
}

impl Default for DirOptions {
    fn default() -> Self {
        DirOptions {
            debounce: Duration::from_millis(20),
            recursive: false,
            on_problem: None,
        }
    }
}

/// A running directory watch. Dropping it stops the watch; the view keeps its contents.
pub struct DirWatch {
    _watcher: notify::RecommendedWatcher,
    task: JoinHandle<()>,
    reads: Arc<AtomicU64>,
}

impl DirWatch {
    /// How many times a file was read since the watch began (the first scan included).
    pub fn files_read(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }
}

impl Drop for DirWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What the debouncer hands to the reader.
enum Raw {
    Paths(Vec<PathBuf>),
    Rescan,
}

/// Scans `dir` into `view`, marks the view synced, and keeps it up to date until the
/// returned [`DirWatch`] is dropped. Must be called inside a tokio runtime.
pub async fn watch(dir: &Path, view: View, options: DirOptions) -> Result<DirWatch, Error> {
    let root = std::fs::canonicalize(dir).map_err(|source| Error::Dir {
        path: dir.to_path_buf(),
        source,
    })?;
    // Start inotify before the first scan, so that nothing written in between is missed.
    let (tx, rx) = mpsc::unbounded_channel();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let raw = match event {
            Ok(e) if e.need_rescan() => Raw::Rescan,
            // Our own reads are events too: taking them as changes reread without end.
            Ok(e) if !crate::fsevents::may_change(&e.kind) => return,
            Ok(e) => Raw::Paths(e.paths),
            Err(_) => Raw::Rescan,
        };
        let _ = tx.send(raw);
    })
    .map_err(|source| Error::Watch {
        path: root.clone(),
        source,
    })?;
    let mode = if options.recursive {
        RecursiveMode::Recursive
    } else {
        RecursiveMode::NonRecursive
    };
    watcher.watch(&root, mode).map_err(|source| Error::Watch {
        path: root.clone(),
        source,
    })?;

    let reads = Arc::new(AtomicU64::new(0));
    let reader = Reader {
        root,
        view,
        options,
        reads: Arc::clone(&reads),
    };
    reader.rescan();
    reader.view.update(|b| b.set_synced());
    let task = tokio::spawn(reader.run(rx));
    Ok(DirWatch {
        _watcher: watcher,
        task,
        reads,
    })
}

struct Reader {
    root: PathBuf,
    view: View,
    options: DirOptions,
    reads: Arc<AtomicU64>,
}

impl Reader {
    async fn run(self, mut rx: mpsc::UnboundedReceiver<Raw>) {
        while let Some(first) = rx.recv().await {
            let mut paths = BTreeSet::new();
            let mut rescan = false;
            let mut add = |raw: Raw| match raw {
                Raw::Paths(p) => paths.extend(p),
                Raw::Rescan => rescan = true,
            };
            add(first);
            // Debounce: collect until the directory has been quiet for the whole period.
            loop {
                match tokio::time::timeout(self.options.debounce, rx.recv()).await {
                    Ok(Some(raw)) => add(raw),
                    Ok(None) => return,
                    Err(_quiet) => break,
                }
            }
            let mut files = Vec::new();
            for path in paths {
                if self.is_manifest(&path) {
                    files.push(path);
                } else if path != self.root {
                    rescan = true;
                }
            }
            if rescan {
                self.rescan();
            } else {
                self.reread(&files);
            }
        }
    }

    /// Whether `path` names a manifest file directly in the watched tree (by name: it
    /// may not exist any more).
    fn is_manifest(&self, path: &Path) -> bool {
        let Ok(rel) = path.strip_prefix(&self.root) else {
            return false;
        };
        let parts: Vec<_> = rel.components().collect();
        if parts.is_empty() || (!self.options.recursive && parts.len() > 1) {
            return false;
        }
        let (file, dirs) = parts.split_last().expect("not empty");
        let hidden_dir = dirs
            .iter()
            .any(|c| source::is_hidden_name(&c.as_os_str().to_string_lossy()));
        !hidden_dir
            && source::is_manifest_name(&file.as_os_str().to_string_lossy())
            && !path.is_dir()
    }

    fn read(&self, path: &Path) -> Read {
        self.reads.fetch_add(1, Ordering::Relaxed);
        read(path)
    }

    /// Reads the named files again; a file that is gone leaves the view.
    fn reread(&self, files: &[PathBuf]) {
        let results: Vec<(String, Read)> = files.iter().map(|p| (name(p), self.read(p))).collect();
        self.apply(results, None);
    }

    /// Lists the whole directory: new and changed files come in, missing ones go away.
    fn rescan(&self) {
        let mut found = Vec::new();
        self.walk(&self.root, &mut found);
        let results: Vec<(String, Read)> = found.iter().map(|p| (name(p), self.read(p))).collect();
        let present: BTreeSet<String> = results.iter().map(|(n, _)| n.clone()).collect();
        self.apply(results, Some(present));
    }

    fn walk(&self, dir: &Path, out: &mut Vec<PathBuf>) {
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(source) => {
                self.report(&Problem::Read {
                    path: dir.display().to_string(),
                    source,
                });
                return;
            }
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            // `metadata` follows symlinks: ConfigMap volumes link every file into `..data`.
            match std::fs::metadata(&path) {
                Ok(md)
                    if md.is_dir() && self.options.recursive && !source::is_hidden_name(&name) =>
                {
                    self.walk(&path, out)
                }
                Ok(md) if md.is_file() && source::is_manifest_name(&name) => out.push(path),
                _ => {}
            }
        }
    }

    /// Applies read results in one batch. With `present`, files of the view that are not
    /// in it are removed (a rescan).
    fn apply(&self, results: Vec<(String, Read)>, present: Option<BTreeSet<String>>) {
        // Problems are reported before the batch is published, so that whoever sees the
        // problem in the view has been told about it too.
        for (_, result) in &results {
            if let Read::Problem(p) = result {
                self.report(p);
            }
        }
        self.view.update(|batch| {
            if let Some(present) = &present {
                for old in batch.file_names() {
                    if !present.contains(&old) {
                        batch.remove_file(&old);
                    }
                }
            }
            for (name, result) in results {
                match result {
                    Read::Text(text) => {
                        batch.set_file(&name, &text);
                    }
                    Read::Gone => {
                        batch.remove_file(&name);
                    }
                    Read::Problem(p) => batch.set_problem(&name, p.to_string()),
                }
            }
        });
    }

    fn report(&self, problem: &Problem) {
        tracing::warn!(%problem, "manifest directory: keeping the last good version");
        if let Some(f) = &self.options.on_problem {
            f(problem);
        }
    }
}

enum Read {
    Text(String),
    Gone,
    Problem(Problem),
}

fn name(path: &Path) -> String {
    path.display().to_string()
}

fn read(path: &Path) -> Read {
    let name = name(path);
    let md = match std::fs::metadata(path) {
        Ok(md) => md,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Read::Gone,
        Err(source) => return Read::Problem(Problem::Read { path: name, source }),
    };
    if md.is_dir() {
        return Read::Gone;
    }
    if md.len() > MAX_FILE_BYTES {
        return Read::Problem(Problem::TooLarge {
            path: name,
            size: md.len(),
        });
    }
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Read::Gone,
        Err(source) => return Read::Problem(Problem::Read { path: name, source }),
    };
    let Ok(text) = String::from_utf8(bytes) else {
        return Read::Problem(Problem::NotText { path: name });
    };
    let text = match text.strip_prefix('\u{feff}') {
        Some(t) => t.to_string(),
        None => text,
    };
    match syntax_error(&name, &text) {
        Some(p) => Read::Problem(p),
        None => Read::Text(text),
    }
}

/// The first YAML syntax (or safety limit) error of `text`, found by the compiler's own
/// reader: the view never parses YAML itself. Other findings are the compiler's business
/// and do not stop a file from being taken.
fn syntax_error(name: &str, text: &str) -> Option<Problem> {
    let mut sources = Sources::new();
    let id = sources.add(name, text);
    let mut manifests = Manifests::default();
    front::read_file(&sources, id, &Options::default(), &mut manifests);
    let d = manifests
        .diagnostics
        .iter()
        .find(|d| matches!(d.code, Code::YamlSyntax | Code::YamlLimit))?;
    let at = d.span.map(|s| s.start).unwrap_or_default();
    Some(Problem::Syntax {
        path: name.to_string(),
        line: at.line,
        column: at.column,
        message: d.message.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syntax_errors_come_from_the_compiler() {
        assert!(syntax_error("a.yaml", "kind: Service\nmetadata: {name: a}\n").is_none());
        let p = syntax_error("a.yaml", "kind: [\n").expect("a syntax error");
        assert!(matches!(p, Problem::Syntax { line: 2, .. }), "{p}");
        // A finding that is not about syntax does not hold the file back.
        assert!(syntax_error("a.yaml", "apiVersion: getambassador.io/v3alpha1\nkind: Mapping\nmetadata: {name: m}\nspec: {prefx: /}\n").is_none());
    }
}

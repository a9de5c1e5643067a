//! A directory of manifests as a [`Feed`]: polls modification times, debounced, and reads the files that changed.
//!
//! This is the stand-in for the watched view of the cluster: a poll is portable, needs no
//! inotify limits, and sees editors that replace files by renaming. A scan costs one
//! `stat` per file; a file is read only when its time or size changed and the directory
//! then stayed still for the debounce time, so a half-written file is not compiled. The
//! texts of the other files are kept from their last read.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use ambassador_compiler::source;

use super::Feed;

/// Failures of reading the directory (the operator's, not the user's configuration).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The directory could not be listed.
    #[error("cannot read the directory {}", path.display())]
    List {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// What identifies a version of a file without reading it.
type Stamp = Vec<(PathBuf, Option<SystemTime>, u64)>;

/// Polls a directory (recursively) for manifests: `*.yaml`, `*.yml` and `*.json` files, hidden
/// files and directories left out ([`source::is_manifest_name`]).
#[derive(Debug)]
pub struct DirFeed {
    dir: PathBuf,
    interval: Duration,
    debounce: Duration,
    last: Option<Stamp>,
    /// The text of each file as last read, with the time and size it was read at.
    texts: std::collections::HashMap<PathBuf, (Option<SystemTime>, u64, String)>,
}

impl DirFeed {
    /// Scans `dir` every `interval`; a change is reported once the files stayed unchanged
    /// for `debounce`.
    pub fn new(dir: impl Into<PathBuf>, interval: Duration, debounce: Duration) -> Self {
        Self {
            dir: dir.into(),
            interval: interval.max(Duration::from_millis(1)),
            debounce,
            last: None,
            texts: std::collections::HashMap::new(),
        }
    }

    /// The manifest files under the directory with their modification times and sizes,
    /// sorted by path so that the compile order is stable.
    fn scan(&self) -> Result<Stamp, Error> {
        let mut out = Vec::new();
        let mut stack = vec![self.dir.clone()];
        while let Some(dir) = stack.pop() {
            let entries = std::fs::read_dir(&dir).map_err(|source| Error::List {
                path: dir.clone(),
                source,
            })?;
            for entry in entries.flatten() {
                let path = entry.path();
                // Follows symlinks, as a mounted ConfigMap is made of them.
                let Ok(meta) = std::fs::metadata(&path) else {
                    continue;
                };
                let name = entry.file_name();
                let name = name.to_string_lossy();
                if meta.is_dir() {
                    // `..data` and timestamped folders of a ConfigMap mount hold the
                    // same files again.
                    if !source::is_hidden_name(&name) {
                        stack.push(path);
                    }
                } else if source::is_manifest_name(&name) {
                    out.push((path, meta.modified().ok(), meta.len()));
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// The text of every file of `stamp`, read again where its time or size changed; a
    /// file that vanished or is not UTF-8 is skipped with a warning (the next change brings
    /// it back).
    fn read(&mut self, stamp: &Stamp) -> Vec<(String, String)> {
        let mut out = Vec::with_capacity(stamp.len());
        let mut texts = std::collections::HashMap::with_capacity(stamp.len());
        for (path, modified, len) in stamp {
            let name = path
                .strip_prefix(&self.dir)
                .unwrap_or(path)
                .display()
                .to_string();
            let kept = self
                .texts
                .remove(path)
                .filter(|(m, l, _)| m == modified && l == len);
            let text = match kept {
                Some((_, _, text)) => text,
                None => match std::fs::read(path).map(String::from_utf8) {
                    Ok(Ok(text)) => text,
                    Ok(Err(_)) => {
                        tracing::warn!(file = %name, "skipped: not UTF-8 text");
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!(file = %name, error = %e, "skipped: cannot read");
                        continue;
                    }
                },
            };
            out.push((name, text.clone()));
            texts.insert(path.clone(), (*modified, *len, text));
        }
        self.texts = texts;
        out
    }
}

impl Feed for DirFeed {
    type Error = Error;

    async fn next(&mut self) -> Result<Vec<(String, String)>, Error> {
        loop {
            if self.last.is_some() {
                tokio::time::sleep(self.interval).await;
            }
            let mut stamp = self.scan()?;
            if self.last.as_ref() == Some(&stamp) {
                continue;
            }
            // Wait until the files stop changing (bounded: a directory that changes
            // faster than the debounce forever is read after ten rounds anyway).
            for _ in 0..10 {
                if self.last.is_none() || self.debounce.is_zero() {
                    break;
                }
                tokio::time::sleep(self.debounce).await;
                let again = self.scan()?;
                if again == stamp {
                    break;
                }
                stamp = again;
            }
            let texts = self.read(&stamp);
            self.last = Some(stamp);
            return Ok(texts);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reports_the_first_set_then_changes_only() {
        let dir = tempfile_dir();
        std::fs::write(dir.join("a.yaml"), "a: 1\n").unwrap();
        std::fs::write(dir.join("notes.txt"), "ignored").unwrap();
        std::fs::create_dir(dir.join("sub")).unwrap();
        std::fs::write(dir.join("sub/b.yml"), "b: 1\n").unwrap();
        let mut feed = DirFeed::new(&dir, Duration::from_millis(5), Duration::from_millis(5));
        let first = feed.next().await.unwrap();
        let names: Vec<&str> = first.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["a.yaml", "sub/b.yml"]);

        let unchanged = tokio::time::timeout(Duration::from_millis(60), feed.next()).await;
        assert!(unchanged.is_err(), "nothing changed: {unchanged:?}");

        std::fs::write(dir.join("a.yaml"), "a: 22\n").unwrap();
        let second = tokio::time::timeout(Duration::from_secs(5), feed.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(second[0], ("a.yaml".to_owned(), "a: 22\n".to_owned()));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "dirfeed-{}-{}",
            std::process::id(),
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}

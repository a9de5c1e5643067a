//! The front end, file by file: a file whose text did not change is not read again.
//!
//! The compiler's front end reads one file into a [`Manifests`], and every position it
//! records names the file by its [`FileId`]. The cache keeps one append-only [`Sources`]:
//! a changed text is added as a new file (a new id), so the positions in every kept
//! result stay right. Texts nobody refers to any more are dropped by a compaction that
//! reads everything again once they outweigh the live ones.
//!
//! Per-file results live in [`Chunk`]s in input order. Before lowering they are moved (not
//! cloned) into one [`Manifests`] with [`FrontCache::take`], and split back afterwards with
//! [`FrontCache::restore`].

use std::collections::HashMap;

use ambassador_compiler::front::{self, Manifests, Options};
use ambassador_compiler::source::{FileId, Sources};

/// Dead text below this many bytes is never worth a compaction.
const COMPACT_FLOOR: usize = 4 << 20;

/// One input file and what the front end read from it.
#[derive(Debug)]
struct Chunk {
    name: String,
    id: FileId,
    /// What was read; empty while the results are lent out by [`FrontCache::take`].
    manifests: Manifests,
    /// How many of each list belong to this file while lent out.
    lent: [usize; 4],
}

/// What [`FrontCache::update`] found.
#[derive(Debug, Default)]
pub(super) struct Read {
    /// Whether any file was added, removed, reordered or changed.
    pub changed: bool,
    /// How many files were read.
    pub files_read: usize,
}

#[derive(Debug, Default)]
pub(super) struct FrontCache {
    sources: Sources,
    chunks: Vec<Chunk>,
    /// The options the chunks were read with.
    options: Option<(String, String)>,
    /// Bytes of text in `sources` that no chunk refers to.
    dead: usize,
    live: usize,
}

impl FrontCache {
    /// Brings the cache to `inputs`, reading only the files that are new or changed.
    pub fn update(&mut self, inputs: Vec<(String, String)>, opts: &Options) -> Read {
        let key = (opts.ambassador_id.clone(), opts.default_namespace.clone());
        if self.options.as_ref() != Some(&key) {
            // Other options read the same text differently: start over.
            *self = FrontCache {
                options: Some(key),
                ..FrontCache::default()
            };
        }
        if self.dead > COMPACT_FLOOR && self.dead > self.live {
            tracing::debug!(
                dead = self.dead,
                live = self.live,
                "compacting the source cache"
            );
            self.sources = Sources::new();
            self.chunks.clear();
            self.dead = 0;
        }
        // The common case: the same files in the same order, some texts changed. Each
        // file keeps its place, and only the changed ones are read.
        let same_files = inputs.len() == self.chunks.len()
            && inputs
                .iter()
                .zip(&self.chunks)
                .all(|((name, _), c)| *name == c.name);
        if same_files {
            let mut read = Read::default();
            for (i, (name, text)) in inputs.into_iter().enumerate() {
                let old = &self.sources.get(self.chunks[i].id).text;
                if *old == text {
                    continue;
                }
                let old_len = old.len();
                self.dead += old_len;
                self.live = self.live + text.len() - old_len;
                self.chunks[i] = self.read(name, text, opts);
                read.changed = true;
                read.files_read += 1;
            }
            return read;
        }
        let mut old: HashMap<String, Chunk> =
            self.chunks.drain(..).map(|c| (c.name.clone(), c)).collect();
        let mut read = Read {
            changed: true,
            files_read: 0,
        };
        let mut live = 0;
        for (name, text) in inputs {
            live += text.len();
            let kept = old
                .remove(&name)
                .filter(|c| self.sources.get(c.id).text == text);
            let chunk = match kept {
                Some(c) => c,
                None => {
                    read.files_read += 1;
                    self.read(name, text, opts)
                }
            };
            // A name given twice is read twice, as the compiler would: its second copy
            // is a new chunk, since the first was taken out of `old` already.
            self.chunks.push(chunk);
        }
        // Removed files and the old texts of changed ones stay in `sources` until compacted.
        let total: usize = self.sources.iter().map(|(_, f)| f.text.len()).sum();
        self.dead = total.saturating_sub(live);
        self.live = live;
        read
    }

    /// Adds a text to the sources and reads it.
    fn read(&mut self, name: String, text: String, opts: &Options) -> Chunk {
        let id = self.sources.add(name.clone(), text);
        let mut manifests = Manifests::default();
        front::read_file(&self.sources, id, opts, &mut manifests);
        Chunk {
            name,
            id,
            manifests,
            lent: [0; 4],
        }
    }

    /// The name of a file, for diagnostics.
    pub fn file_name(&self, id: FileId) -> &str {
        self.sources.name(id)
    }

    /// Every file's results, moved into one [`Manifests`] in input order.
    pub fn take(&mut self) -> Manifests {
        let mut all = Manifests::default();
        for c in &mut self.chunks {
            let m = &mut c.manifests;
            c.lent = [
                m.resources.len(),
                m.services.len(),
                m.endpoints.len(),
                m.diagnostics.len(),
            ];
            all.resources.append(&mut m.resources);
            all.services.append(&mut m.services);
            all.endpoints.append(&mut m.endpoints);
            all.diagnostics.append(&mut m.diagnostics);
            all.objects += m.objects;
        }
        all
    }

    /// Splits what [`FrontCache::take`] returned back into the files it came from.
    pub fn restore(&mut self, mut all: Manifests) {
        for c in self.chunks.iter_mut().rev() {
            let [r, s, e, d] = c.lent;
            let m = &mut c.manifests;
            m.resources = all.resources.split_off(all.resources.len() - r);
            m.services = all.services.split_off(all.services.len() - s);
            m.endpoints = all.endpoints.split_off(all.endpoints.len() - e);
            m.diagnostics = all.diagnostics.split_off(all.diagnostics.len() - d);
        }
        debug_assert!(all.resources.is_empty() && all.diagnostics.is_empty());
    }
}

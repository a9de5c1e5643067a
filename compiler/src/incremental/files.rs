//! The front end, file by file: a file whose text did not change is not read again.
//!
//! Every position the front end records names its file by a [`FileId`]. The cache keeps
//! one append-only [`Sources`]: a changed text is added as a new file (a new id), so the
//! positions in every kept result stay right. Texts nobody refers to any more are dropped
//! by a compaction that reads everything again once they outweigh the live ones.
//!
//! Each file's result lives in a slot that keeps its index for as long as the file exists,
//! so the rest of the session can point at a resource by (slot, index).

use std::collections::HashMap;
use std::sync::Arc;

use crate::front::{self, Manifests, Options};
use crate::source::{FileId, Sources};

/// Dead text below this many bytes is never worth a compaction.
const COMPACT_FLOOR: usize = 4 << 20;

/// One input file and what the front end read from it.
#[derive(Debug)]
pub(crate) struct Chunk {
    pub name: String,
    pub id: FileId,
    /// Shared with the admission view ([`crate::context::Context`]), which points at the
    /// resources it indexes instead of copying them.
    pub manifests: Arc<Manifests>,
}

/// A file that is new, gone or changed: its slot, and what it held before.
#[derive(Debug)]
pub(crate) struct Changed {
    pub slot: usize,
    /// `None` for a new file.
    pub old: Option<Arc<Manifests>>,
    /// Whether the slot holds a file now (false for a removed file).
    pub present: bool,
}

/// What [`Files::update`] did.
#[derive(Debug, Default)]
pub(crate) struct FileChanges {
    /// Every file that was added, removed or whose text changed.
    pub changed: Vec<Changed>,
    /// Whether the order of the files changed (files kept their slots).
    pub reordered: bool,
    /// Whether everything was read again (new options or a compaction): every earlier
    /// position is void.
    pub reset: bool,
    pub files_read: usize,
}

#[derive(Debug, Default)]
pub(crate) struct Files {
    sources: Sources,
    slots: Vec<Option<Chunk>>,
    free: Vec<usize>,
    /// Slots in input order.
    order: Vec<usize>,
    options: Option<(String, String)>,
    /// Bytes of text in `sources` that no chunk refers to, and that chunks refer to.
    dead: usize,
    live: usize,
}

impl Files {
    /// Brings the files to `inputs` (name and text, in input order).
    pub fn update<N: AsRef<str>, T: AsRef<str>>(
        &mut self,
        inputs: Vec<(N, T)>,
        opts: &Options,
    ) -> FileChanges {
        let key = (opts.ambassador_id.clone(), opts.default_namespace.clone());
        let mut changes = FileChanges::default();
        if self.options.as_ref() != Some(&key)
            || (self.dead > COMPACT_FLOOR && self.dead > self.live)
        {
            // Other options read the same text differently, or dead text outweighs the
            // live: start over.
            *self = Files {
                options: Some(key),
                ..Files::default()
            };
            changes.reset = true;
        }
        // The common case: the same files in the same order, some texts changed.
        let same_files = inputs.len() == self.order.len()
            && inputs
                .iter()
                .zip(&self.order)
                .all(|((name, _), &slot)| self.chunk(slot).name == name.as_ref());
        if same_files {
            for (i, (name, text)) in inputs.into_iter().enumerate() {
                let slot = self.order[i];
                let id = self.chunk(slot).id;
                if self.sources.get(id).text == text.as_ref() {
                    continue;
                }
                self.reread(slot, name.as_ref(), text.as_ref(), opts, &mut changes);
            }
            return changes;
        }
        // Files came or went, or moved: match them by name. A name given twice is read
        // twice, as the compiler would.
        let mut by_name: HashMap<String, Vec<usize>> = HashMap::new();
        for &slot in self.order.iter().rev() {
            by_name
                .entry(self.chunk(slot).name.clone())
                .or_default()
                .push(slot);
        }
        let old_order = std::mem::take(&mut self.order);
        for (name, text) in inputs {
            let kept = by_name.get_mut(name.as_ref()).and_then(Vec::pop);
            let slot = match kept {
                Some(slot) => {
                    let id = self.chunk(slot).id;
                    if self.sources.get(id).text != text.as_ref() {
                        self.reread(slot, name.as_ref(), text.as_ref(), opts, &mut changes);
                    }
                    slot
                }
                None => {
                    let chunk = self.read(name.as_ref(), text.as_ref(), opts);
                    let slot = match self.free.pop() {
                        Some(s) => {
                            self.slots[s] = Some(chunk);
                            s
                        }
                        None => {
                            self.slots.push(Some(chunk));
                            self.slots.len() - 1
                        }
                    };
                    changes.changed.push(Changed {
                        slot,
                        old: None,
                        present: true,
                    });
                    changes.files_read += 1;
                    slot
                }
            };
            self.order.push(slot);
        }
        for slots in by_name.into_values() {
            for slot in slots {
                let old = self.slots[slot].take().map(|c| self.retire(c));
                self.free.push(slot);
                changes.changed.push(Changed {
                    slot,
                    old,
                    present: false,
                });
            }
        }
        let kept_old: Vec<usize> = old_order
            .iter()
            .copied()
            .filter(|s| self.slots[*s].is_some())
            .collect();
        let kept_new: Vec<usize> = self
            .order
            .iter()
            .copied()
            .filter(|s| kept_old.contains(s))
            .collect();
        changes.reordered = kept_old.len() > 1 && kept_old != kept_new;
        changes
    }

    /// Reads the new text of the file in `slot`, and records the change.
    fn reread(
        &mut self,
        slot: usize,
        name: &str,
        text: &str,
        opts: &Options,
        changes: &mut FileChanges,
    ) {
        let chunk = self.read(name, text, opts);
        let old = self.slots[slot].replace(chunk).map(|c| self.retire(c));
        changes.changed.push(Changed {
            slot,
            old,
            present: true,
        });
        changes.files_read += 1;
    }

    /// Adds a text to the sources and reads it.
    fn read(&mut self, name: &str, text: &str, opts: &Options) -> Chunk {
        self.live += text.len();
        let id = self.sources.add(name.to_owned(), text.to_owned());
        let mut manifests = Manifests::default();
        front::read_file(&self.sources, id, opts, &mut manifests);
        // Kept for as long as the file is: no room to grow.
        manifests.resources.shrink_to_fit();
        manifests.services.shrink_to_fit();
        manifests.endpoints.shrink_to_fit();
        manifests.diagnostics.shrink_to_fit();
        Chunk {
            name: name.to_owned(),
            id,
            manifests: Arc::new(manifests),
        }
    }

    /// Counts a chunk's text as dead and hands back what it held.
    fn retire(&mut self, c: Chunk) -> Arc<Manifests> {
        let len = self.sources.get(c.id).text.len();
        self.live -= len;
        self.dead += len;
        c.manifests
    }

    fn chunk(&self, slot: usize) -> &Chunk {
        self.slots[slot]
            .as_ref()
            .expect("every slot in the order holds a file")
    }

    /// The file in `slot`.
    pub fn get(&self, slot: usize) -> Option<&Chunk> {
        self.slots.get(slot).and_then(Option::as_ref)
    }

    /// The files in input order, with their slots.
    pub fn in_order(&self) -> impl Iterator<Item = (usize, &Chunk)> {
        self.order.iter().map(|&s| (s, self.chunk(s)))
    }

    /// The name of a file, for diagnostics.
    pub fn file_name(&self, id: FileId) -> &str {
        self.sources.name(id)
    }
}

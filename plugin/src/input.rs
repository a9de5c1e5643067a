//! Reading `-f` paths: files, directories (`-R`), stdin; text checks before the compiler sees anything.

use std::io::Read;
use std::path::{Path, PathBuf};

use ambassador_compiler::diag::{Code, Diagnostic};
use ambassador_compiler::front::{Manifests, Options};
use ambassador_compiler::source::{self, FileId, Pos, Sources, Span};

/// Files larger than this are refused: no manifest set comes near it.
pub const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// A file that could not be read at all. The run goes on with the others, and exits 2.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: the file is {size} bytes; files over {MAX_FILE_BYTES} bytes are not read")]
    TooLarge { path: String, size: u64 },
    #[error("{path}: no such file or directory")]
    Missing { path: String },
}

/// What was read: the sources, plus diagnostics for files that are not text.
#[derive(Default)]
pub struct Input {
    pub sources: Sources,
    pub diagnostics: Vec<Diagnostic>,
    pub errors: Vec<ReadError>,
    /// The files read whole and clean from a path, which can be read again.
    pub paths: Vec<(FileId, PathBuf)>,
}

impl Input {
    /// Reads the objects of every file but those in `skip`. `lean`: the text of each file
    /// that can be read again (see [`Input::restore_texts`]) is freed as soon as its objects
    /// are parsed; after that, only findings shown with their source line read it.
    pub fn read_objects(&mut self, skip: &[FileId], opts: &Options, lean: bool) -> Manifests {
        if !lean {
            return ambassador_compiler::read_files(&self.sources, skip, opts);
        }
        let paths = &self.paths;
        ambassador_compiler::read_files_releasing(&mut self.sources, skip, opts, |id| {
            paths.iter().any(|(p, _)| *p == id)
        })
    }

    /// Reads again the released files among `files`. A file that changed since (another
    /// length, other lines) stays released: its findings are shown without the line.
    pub fn restore_texts(&mut self, files: impl IntoIterator<Item = FileId>) {
        let wanted: std::collections::BTreeSet<FileId> = files.into_iter().collect();
        for (id, path) in &self.paths {
            if !wanted.contains(id) || !self.sources.is_released(*id) {
                continue;
            }
            if let Some(text) = std::fs::read(path).ok().and_then(text_of) {
                self.sources.restore_text(*id, text);
            }
        }
    }
}

/// Reads every path. Directories are read one level deep, or recursively with `recursive`;
/// inside directories only manifests count (`.yaml`, `.yml` and `.json` files, hidden ones
/// left out: [`source::is_manifest_name`]), while a file named here is read whatever its name.
pub fn read(paths: &[String], recursive: bool) -> Input {
    let mut input = Input::default();
    for p in paths {
        if p == "-" {
            let mut buf = Vec::new();
            match std::io::stdin()
                .take(MAX_FILE_BYTES + 1)
                .read_to_end(&mut buf)
            {
                Ok(n) if n as u64 > MAX_FILE_BYTES => input.errors.push(ReadError::TooLarge {
                    path: "<stdin>".into(),
                    size: n as u64,
                }),
                Ok(_) => {
                    // Not read again: stdin's text stays (see `Input::read_objects`).
                    add(&mut input, "<stdin>".into(), buf);
                }
                Err(source) => input.errors.push(ReadError::Io {
                    path: "<stdin>".into(),
                    source,
                }),
            }
            continue;
        }
        let path = Path::new(p);
        match std::fs::metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                input.errors.push(ReadError::Missing { path: p.clone() })
            }
            Err(source) => input.errors.push(ReadError::Io {
                path: p.clone(),
                source,
            }),
            Ok(md) if md.is_dir() => {
                let mut files = Vec::new();
                walk(path, recursive, &mut files, &mut input.errors);
                files.sort();
                for f in files {
                    read_file(&f, &mut input);
                }
            }
            Ok(_) => read_file(path, &mut input),
        }
    }
    input
}

fn walk(dir: &Path, recursive: bool, files: &mut Vec<PathBuf>, errors: &mut Vec<ReadError>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(source) => {
            errors.push(ReadError::Io {
                path: dir.display().to_string(),
                source,
            });
            return;
        }
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(ft) = entry.file_type() else { continue };
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if ft.is_dir() {
            if recursive && !source::is_hidden_name(&name) {
                walk(&path, recursive, files, errors);
            }
        } else if source::is_manifest_name(&name) {
            files.push(path);
        }
    }
}

fn read_file(path: &Path, input: &mut Input) {
    let name = path.display().to_string();
    let len = match std::fs::metadata(path) {
        Ok(md) if md.len() > MAX_FILE_BYTES => {
            input.errors.push(ReadError::TooLarge {
                path: name,
                size: md.len(),
            });
            return;
        }
        Err(source) => {
            input.errors.push(ReadError::Io { path: name, source });
            return;
        }
        Ok(md) => md.len(),
    };
    match read_whole(path, len) {
        Ok(bytes) => {
            if let Some(id) = add(input, name, bytes) {
                input.paths.push((id, path.to_path_buf()));
            }
        }
        Err(source) => input.errors.push(ReadError::Io { path: name, source }),
    }
}

/// Files at least this large are read in parts, one per core: the copy out of the page
/// cache, and the faults on the fresh pages it is copied into, side by side (a file of
/// 12.7 MB took 7.3 ms read at once, most of `lint`'s time before the parse starts).
const PARTS_FROM_BYTES: u64 = 1 << 20;

/// The bytes of a file whose length was `len` a moment ago, as [`std::fs::read`] gives
/// them (a large file read in parts on all cores).
fn read_whole(path: &Path, len: u64) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let threads = ambassador_compiler::par::threads();
    if len < PARTS_FROM_BYTES || threads == 1 {
        return std::fs::read(path);
    }
    let file = std::fs::File::open(path)?;
    let mut bytes = vec![0u8; len as usize];
    let part = bytes.len().div_ceil(threads);
    let read: std::io::Result<()> = std::thread::scope(|s| {
        let parts: Vec<_> = bytes
            .chunks_mut(part)
            .enumerate()
            .map(|(k, chunk)| {
                let file = &file;
                s.spawn(move || file.read_exact_at(chunk, (k * part) as u64))
            })
            .collect();
        parts.into_iter().try_for_each(|p| {
            p.join()
                .unwrap_or_else(|_| Err(std::io::Error::other("a read failed")))
        })
    });
    match read {
        Ok(()) => {
            // Anything written past the length read before is read too, as `fs::read`
            // would.
            let mut rest = Vec::new();
            let mut tail = &file;
            std::io::Seek::seek(&mut tail, std::io::SeekFrom::Start(len))?;
            tail.read_to_end(&mut rest)?;
            bytes.append(&mut rest);
            Ok(bytes)
        }
        // Shorter than it was: read as it is now.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => std::fs::read(path),
        Err(e) => Err(e),
    }
}

/// A file's text as it is compiled (see [`add`]), if it is clean.
fn text_of(bytes: Vec<u8>) -> Option<String> {
    if is_binary(&bytes) {
        return None;
    }
    String::from_utf8(bytes).ok().map(without_bom)
}

/// NUL bytes near the start: a binary file.
fn is_binary(bytes: &[u8]) -> bool {
    bytes[..bytes.len().min(8192)].contains(&0)
}

fn without_bom(text: String) -> String {
    text.strip_prefix('\u{feff}')
        .map(str::to_string)
        .unwrap_or(text)
}

/// Adds a file's bytes; binary or non-UTF-8 content becomes a diagnostic, not a panic.
/// The file's id when its text is clean.
pub fn add(input: &mut Input, name: String, bytes: Vec<u8>) -> Option<FileId> {
    if is_binary(&bytes) {
        let id = input.sources.add(name, String::new());
        input.diagnostics.push(Diagnostic::at(
            Code::NotText,
            Span::point(id, Pos::new(1, 1)),
            "this is a binary file (it contains NUL bytes), not YAML",
        ));
        return None;
    }
    match String::from_utf8(bytes) {
        Ok(text) => Some(input.sources.add(name, without_bom(text))),
        Err(e) => {
            let valid = e.utf8_error().valid_up_to();
            let bytes = e.into_bytes();
            let before = String::from_utf8_lossy(&bytes[..valid]);
            let line = before.matches('\n').count() as u32 + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) as u32 + 1;
            let text = String::from_utf8_lossy(&bytes).into_owned();
            let id = input.sources.add(name, text);
            input.diagnostics.push(Diagnostic::at(
                Code::NotText,
                Span::point(id, Pos::new(line, column)),
                format!("invalid UTF-8 byte 0x{:02x}", bytes[valid]),
            ));
            None
        }
    }
}

/// Which files were added with a text diagnostic, so the compiler skips them.
pub fn unreadable(input: &Input) -> Vec<ambassador_compiler::source::FileId> {
    input
        .diagnostics
        .iter()
        .filter_map(|d| d.span.map(|s| s.file))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_released_file_comes_back_unless_it_changed() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.yaml");
        let b = dir.path().join("b.yaml");
        std::fs::write(&a, "kind: Mapping\nname: a\n").unwrap();
        std::fs::write(&b, "\u{feff}kind: Mapping\nname: b\n").unwrap();
        let mut input = read(&[dir.path().display().to_string()], false);
        assert_eq!(input.paths.len(), 2);
        let (ia, ib) = (input.paths[0].0, input.paths[1].0);
        let m = input.read_objects(&[], &Options::default(), true);
        assert_eq!(m.objects, 0, "neither file is a Kubernetes object");
        assert_eq!(input.sources.get(ia).line(2), None);
        assert_eq!(input.sources.get(ib).line(2), None);
        // `a` gets another line; `b` is the same (its byte order mark is read again too).
        std::fs::write(&a, "kind: Mapping\nname: a\nprefix: /\n").unwrap();
        input.restore_texts([ia, ib]);
        assert!(input.sources.is_released(ia));
        assert_eq!(input.sources.get(ia).line(2), None);
        assert_eq!(input.sources.get(ib).line(2), Some("name: b"));
    }

    /// A large file read in parts is the file, byte for byte, also when it grew or shrank
    /// after its length was read.
    #[test]
    fn a_large_file_read_in_parts_is_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("large.yaml");
        let bytes: Vec<u8> = (0..(3 * PARTS_FROM_BYTES as usize + 12_345))
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        std::fs::write(&path, &bytes).unwrap();
        let len = bytes.len() as u64;
        assert_eq!(read_whole(&path, len).unwrap(), bytes);
        // Grown since: the rest is read too.
        assert_eq!(read_whole(&path, len - 1000).unwrap(), bytes);
        // Shrunk since: what is there now.
        assert_eq!(read_whole(&path, len + 1000).unwrap(), bytes);
        let missing = dir.path().join("missing.yaml");
        assert!(read_whole(&missing, len).is_err());
    }
}

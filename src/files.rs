//! Files, safely: every file the engine writes appears whole or not at all, outputs never
//! overlap their inputs, and file names taken from a model's metadata stay inside its
//! directory.
//!
//! - [`AtomicFile`]: written as a temporary beside the target, renamed over it on
//!   [`AtomicFile::commit`]; removed when dropped uncommitted (an error) and by
//!   [`remove_pending`] (the Ctrl-C handler).
//! - [`prepare_output_dir`]: refuses an output directory that is, contains or lies in the
//!   source, or that already holds files (unless forced: then stale weights are removed).
//! - [`model_file`]: a name from `model.safetensors.index.json` (or any model metadata) as a
//!   path inside the model directory, or an error.

use crate::error::{Error, Result};
use std::io::Write;
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;

/// Temporaries not yet committed, removed by [`remove_pending`] when the process is
/// interrupted.
static PENDING: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Removes every temporary file still being written (called on Ctrl-C before exiting).
pub fn remove_pending() {
    if let Ok(list) = PENDING.lock() {
        for p in list.iter() {
            let _ = std::fs::remove_file(p);
        }
    }
}

fn forget(tmp: &Path) {
    if let Ok(mut list) = PENDING.lock() {
        list.retain(|p| p != tmp);
    }
}

/// A file written through a temporary in the same directory and renamed into place (an
/// existing target that is not a regular file — `/dev/null`, a pipe — is written directly).
pub struct AtomicFile {
    path: PathBuf,
    /// None: writing the target itself.
    tmp: Option<PathBuf>,
    out: Option<std::io::BufWriter<std::fs::File>>,
}

impl AtomicFile {
    /// Starts writing `path` (its directory must exist); nothing appears at `path` before
    /// [`Self::commit`].
    pub fn create(path: &Path) -> Result<Self> {
        if std::fs::metadata(path).is_ok_and(|m| !m.is_file() && !m.is_dir()) {
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(|e| Error::io(path, e))?;
            return Ok(AtomicFile {
                path: path.to_path_buf(),
                tmp: None,
                out: Some(std::io::BufWriter::new(file)),
            });
        }
        let name = path
            .file_name()
            .ok_or_else(|| Error::Invalid(format!("{}: not a file path", path.display())))?;
        let tmp = path.with_file_name(format!(".{}.tmp-{}", name.to_string_lossy(), std::process::id()));
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .or_else(|e| match e.kind() {
                // A temporary left by a killed run of the same pid: ours to replace.
                std::io::ErrorKind::AlreadyExists => std::fs::File::create(&tmp),
                _ => Err(e),
            })
            .map_err(|e| Error::io(path, e))?;
        if let Ok(mut list) = PENDING.lock() {
            list.push(tmp.clone());
        }
        Ok(AtomicFile {
            path: path.to_path_buf(),
            tmp: Some(tmp),
            out: Some(std::io::BufWriter::with_capacity(1 << 22, file)),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Flushes, syncs and renames the temporary over the target.
    pub fn commit(mut self) -> Result<()> {
        let out = self.out.take().expect("committed once");
        // The file is closed at the end of this block, before the rename.
        let tmp = {
            let file = out.into_inner().map_err(|e| Error::io(&self.path, e.into_error()))?;
            let Some(tmp) = self.tmp.take() else { return Ok(()) };
            file.sync_all().map_err(|e| Error::io(&self.path, e))?;
            tmp
        };
        let renamed = std::fs::rename(&tmp, &self.path).map_err(|e| Error::io(&self.path, e));
        if renamed.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        forget(&tmp);
        renamed
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.out.as_mut().expect("not committed").write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.out.as_mut().expect("not committed").write_all(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.as_mut().expect("not committed").flush()
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if let (Some(_), Some(tmp)) = (self.out.take(), &self.tmp) {
            let _ = std::fs::remove_file(tmp);
            forget(tmp);
        }
    }
}

/// Writes `bytes` to `path` atomically.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = AtomicFile::create(path)?;
    f.write_all(bytes).map_err(|e| Error::io(path, e))?;
    f.commit()
}

/// Copies `from` to `to` atomically.
pub fn copy_atomic(from: &Path, to: &Path) -> Result<()> {
    let mut src = std::fs::File::open(from).map_err(|e| Error::io(from, e))?;
    let mut f = AtomicFile::create(to)?;
    std::io::copy(&mut src, &mut f).map_err(|e| Error::io(to, e))?;
    f.commit()
}

/// Checks, before any long work, that a file can be written at `path`: its directory exists
/// and is writable, and `path` is not a directory.
pub fn check_output_file(path: &Path) -> Result<()> {
    let bad = |msg: &str| Error::Invalid(format!("output {}: {msg}", path.display()));
    if path.is_dir() {
        return Err(bad("is a directory"));
    }
    if std::fs::metadata(path).is_ok_and(|m| !m.is_file()) {
        // A device or pipe is written in place.
        return std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .map(|_| ())
            .map_err(|e| bad(&format!("cannot be written: {e}")));
    }
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !parent.is_dir() {
        return Err(bad(&format!("the directory {} does not exist", parent.display())));
    }
    let probe = parent.join(format!(".lfm-write-probe-{}", std::process::id()));
    match std::fs::File::create(&probe) {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => Err(bad(&format!("the directory {} is not writable: {e}", parent.display()))),
    }
}

/// `path` made absolute with symlinks resolved, also when its last components do not exist
/// yet (they are appended to the canonical form of the deepest existing ancestor).
fn canonical(path: &Path) -> Result<PathBuf> {
    let abs = match path.is_absolute() {
        true => path.to_path_buf(),
        false => std::env::current_dir().map_err(|e| Error::io(path, e))?.join(path),
    };
    let mut rest = Vec::new();
    let mut at = abs.as_path();
    loop {
        match at.canonicalize() {
            Ok(c) => return Ok(rest.iter().rev().fold(c, |p: PathBuf, n| p.join(n))),
            Err(_) => match (at.parent(), at.file_name()) {
                (Some(parent), Some(name)) => {
                    rest.push(name.to_os_string());
                    at = parent;
                }
                _ => return Ok(abs),
            },
        }
    }
}

/// Whether two existing paths are the same file or directory (device and inode; on other
/// systems, equal canonical paths).
fn same_file(a: &Path, b: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match (std::fs::metadata(a), std::fs::metadata(b)) {
            (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
            _ => false,
        }
    }
    #[cfg(not(unix))]
    {
        matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y)
    }
}

/// Weight files a model directory may hold (removed from an output directory by `force`).
fn is_weight_file(name: &str) -> bool {
    name.ends_with(".safetensors") || name == "model.safetensors.index.json"
}

/// Makes `out` ready to receive a model (converted from the model directory `src`, if any):
/// - refused when `out` is `src` (by path or by inode), lies inside it or contains it;
/// - refused when `out` exists and is not empty, unless `force`: then its weight files
///   (`*.safetensors`, the shard index) are removed so no stale shard is loaded with the new
///   ones;
/// - created when missing.
pub fn prepare_output_dir(out: &Path, src: Option<&Path>, force: bool) -> Result<()> {
    let bad = |msg: String| Error::Invalid(format!("output directory {}: {msg}", out.display()));
    if let Some(src) = src {
        check_no_overlap(out, src)?;
    }
    if out.exists() {
        if !out.is_dir() {
            return Err(bad("exists and is not a directory".into()));
        }
        let entries: Vec<PathBuf> = std::fs::read_dir(out)
            .map_err(|e| Error::io(out, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        if !entries.is_empty() && !force {
            return Err(bad(format!(
                "is not empty ({} entries); choose a new directory, or pass --force to replace the \
                 model in it",
                entries.len()
            )));
        }
        for p in entries {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if p.is_file() && is_weight_file(&name) {
                std::fs::remove_file(&p).map_err(|e| Error::io(&p, e))?;
            }
        }
    }
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))
}

/// Refuses an output directory that is `src` (by path or by inode), lies inside it or
/// contains it.
fn check_no_overlap(out: &Path, src: &Path) -> Result<()> {
    let bad = |msg: String| Error::Invalid(format!("output directory {}: {msg}", out.display()));
    let (o, s) = (canonical(out)?, canonical(src)?);
    if o == s || (out.exists() && same_file(out, src)) {
        return Err(bad(format!(
            "is the source model directory {}: writing there would destroy the weights being read",
            src.display()
        )));
    }
    if o.starts_with(&s) {
        return Err(bad(format!("lies inside the source model directory {}", src.display())));
    }
    if s.starts_with(&o) {
        return Err(bad(format!("contains the source model directory {}", src.display())));
    }
    Ok(())
}

/// Checks that `name`, taken from a model's own metadata (`source`: the file it came from),
/// is a plain relative path: no `..`, `.`, root, drive letter, backslash, NUL or empty part.
pub fn check_relative_name(source: &Path, name: &str) -> Result<()> {
    let bad = |why: &str| Error::UnsafeName {
        source_file: source.to_path_buf(),
        name: name.to_string(),
        why: why.to_string(),
    };
    if name.is_empty() {
        return Err(bad("empty"));
    }
    if name.contains('\0') || name.contains('\\') {
        return Err(bad("contains a NUL or a backslash"));
    }
    if name.starts_with('/') {
        return Err(bad("is an absolute path"));
    }
    let b = name.as_bytes();
    if b.len() >= 2 && b[1] == b':' && b[0].is_ascii_alphabetic() {
        return Err(bad("starts with a drive letter"));
    }
    if name
        .split('/')
        .any(|part| part.is_empty() || part == "." || part == "..")
    {
        return Err(bad(
            "has an empty, `.` or `..` component; only names inside the model directory are allowed",
        ));
    }
    if Path::new(name).components().any(|c| !matches!(c, Component::Normal(_))) {
        return Err(bad("is not a plain relative path"));
    }
    Ok(())
}

/// `dir/name` for a file name from the model's metadata, checked: a plain relative name
/// ([`check_relative_name`]) naming a regular file whose real location (symlinks followed)
/// is inside `dir` — or, for a Hugging Face cache snapshot (`…/snapshots/<rev>/`), inside
/// the repo's `blobs/`, where the snapshot's symlinks point.
pub fn model_file(dir: &Path, source: &Path, name: &str) -> Result<PathBuf> {
    check_relative_name(source, name)?;
    let path = dir.join(name);
    let bad = |why: String| Error::UnsafeName {
        source_file: source.to_path_buf(),
        name: name.to_string(),
        why,
    };
    let real = path.canonicalize().map_err(|e| Error::io(&path, e))?;
    let home = dir.canonicalize().map_err(|e| Error::io(dir, e))?;
    let blobs = match home.parent() {
        Some(snapshots) if snapshots.file_name().is_some_and(|n| n == "snapshots") => {
            snapshots.parent().map(|repo| repo.join("blobs"))
        }
        _ => None,
    };
    let inside = real.starts_with(&home) || blobs.is_some_and(|b| real.starts_with(b));
    if !inside {
        return Err(bad(format!(
            "resolves to {}, outside the model directory {}",
            real.display(),
            home.display()
        )));
    }
    if !real.is_file() {
        return Err(bad(format!("{} is not a regular file", real.display())));
    }
    Ok(path)
}

//! The data directory: what makes it Headwater's, and who may use it.
//!
//! ```text
//! <data-dir>/headwater.json   marker: {"format": 1} — a directory without it is not ours
//! <data-dir>/headwater.lock   held (flock) by the running server, holds its pid
//! <data-dir>/secrets.key      the key secrets are encrypted with, 0600 (unless given elsewhere)
//! <data-dir>/fjall/           formats 2 and 3: the fjall store (catalog, rows, source offsets)
//! <data-dir>/images/          format 3: table images (state::image)
//! <data-dir>/state/           format 1: the same in sled (still opened; new directories get 2)
//! ```
//! Opening refuses, with a message that says what to do: a directory holding other files (a
//! typo in `--data-dir` must not make Headwater write into someone's home directory), a data
//! format this binary does not know, and a directory another server has open (two writers
//! would corrupt it). The directory is kept at mode 0700.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Format 1: the store is sled, under `state/`.
pub const FORMAT_SLED: u32 = 1;
/// Format 2: the store is fjall, under `fjall/`; every row of every table is in it.
pub const FORMAT_FJALL: u32 = 2;
/// Format 3 (what new data directories get): format 2 plus table images under `images/`,
/// which hold a table's rows as of a checkpoint, the store only what changed since
/// ([`super::image`]). Format 2 directories stay format 2 (no images), so an older binary
/// still opens them.
pub const FORMAT_IMAGES: u32 = 3;
/// The formats this binary reads.
const KNOWN: [u32; 3] = [FORMAT_SLED, FORMAT_FJALL, FORMAT_IMAGES];

const MARKER: &str = "headwater.json";
/// The secrets key's file, when the operator gives no other (`catalog::secrets`).
pub const SECRETS_KEY: &str = "secrets.key";
const LOCK: &str = "headwater.lock";

#[derive(Serialize, Deserialize)]
struct Marker {
    format: u32,
    created_by: String,
}

/// An open, locked data directory; the lock is released when this is dropped.
pub struct DataDir {
    pub path: PathBuf,
    /// True when this open made the directory Headwater's (it was new or empty).
    pub created: bool,
    /// The data format (which store engine) the directory holds.
    pub format: u32,
    _lock: File,
}

impl DataDir {
    /// Creates `dir` if needed (with format `new_format`), checks it is a Headwater data
    /// directory of a known format, and locks it.
    pub fn open(dir: &Path, new_format: u32) -> Result<DataDir> {
        let io = |what: &str, e: std::io::Error| Error::Storage(format!("{what} {}: {e}", dir.display()));
        std::fs::create_dir_all(dir).map_err(|e| io("cannot create the data directory", e))?;
        // Its files hold the data and the secrets key: only the server's user may enter it.
        {
            use std::os::unix::fs::PermissionsExt;
            // A directory the server may write but not chmod (owned by another user) still
            // opens: the operator chose its permissions.
            if let Err(e) = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)) {
                tracing::warn!(dir = %dir.display(), "cannot make the data directory private (0700): {e}");
            }
        }
        let lock = lock(dir)?;
        let marker = dir.join(MARKER);
        let mut created = false;
        let format = match std::fs::read(&marker) {
            Ok(bytes) => {
                let m: Marker = serde_json::from_slice(&bytes).map_err(|e| {
                    Error::Storage(format!(
                        "{} is damaged ({e}); it should read {{\"format\": {FORMAT_IMAGES}, ...}}",
                        marker.display()
                    ))
                })?;
                if !KNOWN.contains(&m.format) {
                    return Err(Error::Storage(format!(
                        "{} holds data format {}, written by {}; this Headwater ({}) reads formats {KNOWN:?}",
                        dir.display(),
                        m.format,
                        m.created_by,
                        env!("CARGO_PKG_VERSION")
                    )));
                }
                m.format
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let foreign: Vec<String> = std::fs::read_dir(dir)
                    .map_err(|e| io("cannot list", e))?
                    .filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n != LOCK && n != SECRETS_KEY)
                    .collect();
                if !foreign.is_empty() {
                    return Err(Error::Storage(format!(
                        "{} is not a Headwater data directory (it holds {}, and no {MARKER}); \
                         point --data-dir at an empty or new directory",
                        dir.display(),
                        foreign.iter().take(3).cloned().collect::<Vec<_>>().join(", ")
                    )));
                }
                let m = Marker { format: new_format, created_by: format!("headwater {}", env!("CARGO_PKG_VERSION")) };
                let text = serde_json::to_vec_pretty(&m).map_err(|e| Error::Internal(e.to_string()))?;
                let tmp = dir.join(format!("{MARKER}.tmp"));
                std::fs::write(&tmp, text).map_err(|e| io("cannot write the marker in", e))?;
                std::fs::rename(&tmp, &marker).map_err(|e| io("cannot write the marker in", e))?;
                created = true;
                new_format
            }
            Err(e) => return Err(io("cannot read the marker in", e)),
        };
        Ok(DataDir { path: dir.to_path_buf(), created, format, _lock: lock })
    }
}

fn lock(dir: &Path) -> Result<File> {
    let path = dir.join(LOCK);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| Error::Storage(format!("cannot open {}: {e}", path.display())))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            return Err(Error::Storage(format!(
                "the data directory {} is in use by another Headwater server (pid {}); stop it, or give this \
                 one another --data-dir",
                dir.display(),
                pid.trim()
            )));
        }
        Err(TryLockError::Error(e)) => {
            return Err(Error::Storage(format!("cannot lock {}: {e}", path.display())));
        }
    }
    let _ = file.set_len(0);
    let _ = file.rewind();
    let _ = write!(file, "{}", std::process::id());
    let _ = file.sync_all();
    Ok(file)
}

/// A data directory's durable store, and where its table images live.
pub struct OpenedStore {
    /// The key-value store.
    pub store: std::sync::Arc<dyn super::StateStore>,
    /// `images/` in the directory when its format keeps table images (format 3).
    pub images_dir: Option<std::path::PathBuf>,
}

/// Opens the store of `dir` with the engine its format names (new directories: fjall), and
/// checks the store's own format record, so that a store that lost its files (damage, a
/// wrong copy) is refused rather than coming up empty as if nothing was lost.
pub fn open_store(dir: &Path) -> Result<OpenedStore> {
    let data_dir = DataDir::open(dir, FORMAT_IMAGES)?;
    Ok(match data_dir.format {
        FORMAT_SLED => {
            OpenedStore { store: std::sync::Arc::new(super::SledStore::open_in(data_dir)?), images_dir: None }
        }
        _ => {
            let fjall = super::fjall_store::FjallStore::open_in(data_dir)?;
            OpenedStore { images_dir: fjall.images_dir(), store: std::sync::Arc::new(fjall) }
        }
    })
}

/// The store in `dir` cannot be opened: what to do about it.
pub fn unreadable(dir: &Path, e: impl std::fmt::Display) -> Error {
    Error::Storage(format!(
        "cannot open the state in {}: {e}. The data directory may be damaged: restore it from a backup, or move \
         it away to start empty (docs/operations.md)",
        dir.display()
    ))
}

/// The check [`open_store`] describes, for a store just opened in `data_dir`.
pub fn verify_format_record(store: &dyn super::StateStore, data_dir: &DataDir) -> Result<()> {
    match store.get(super::keys::FORMAT)? {
        Some(_) => Ok(()),
        None if data_dir.created => {
            let mut b = super::WriteBatch::default();
            b.put(super::keys::FORMAT.to_vec(), data_dir.format.to_be_bytes().to_vec());
            store.apply(b)?;
            store.flush()
        }
        None => Err(Error::Storage(format!(
            "the state in {} is missing or damaged (it has no format record). Restore the data directory \
             from a backup, or move it away to start empty (docs/operations.md)",
            data_dir.path.display()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_foreign_directories_second_users_and_unknown_formats() {
        let tmp = tempfile::tempdir().unwrap();
        let foreign = tmp.path().join("home");
        std::fs::create_dir_all(&foreign).unwrap();
        std::fs::write(foreign.join("notes.txt"), "mine").unwrap();
        let err = DataDir::open(&foreign, FORMAT_FJALL).err().unwrap().to_string();
        assert!(err.contains("not a Headwater data directory") && err.contains("notes.txt"), "{err}");

        let dir = tmp.path().join("data");
        let first = DataDir::open(&dir, FORMAT_FJALL).unwrap();
        let err = DataDir::open(&dir, FORMAT_FJALL).err().unwrap().to_string();
        assert!(err.contains("in use by another Headwater server") && err.contains(&std::process::id().to_string()));
        drop(first);
        let again = DataDir::open(&dir, FORMAT_FJALL).unwrap();
        drop(again);

        std::fs::write(dir.join(MARKER), r#"{"format": 99, "created_by": "headwater 9"}"#).unwrap();
        let err = DataDir::open(&dir, FORMAT_FJALL).err().unwrap().to_string();
        assert!(err.contains("data format 99"), "{err}");
        std::fs::write(dir.join(MARKER), r#"{"format": 1, "created_by": "headwater 0.1"}"#).unwrap();
        assert_eq!(DataDir::open(&dir, FORMAT_FJALL).unwrap().format, FORMAT_SLED);
    }
}

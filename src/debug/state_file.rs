//! The state file: the `state_json` of the last checkpoint, byte for byte, as a host keeps it.
//!
//! Saving is atomic and durable: the text goes to a temporary file in the same directory, is
//! fsynced, renamed over the old file, and the directory is fsynced. Killed at any moment, the
//! file holds either the previous state or the new one, never a mix or nothing.

use std::io::Write as _;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum StateFileError {
    #[error("cannot read the state file {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write the state file {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Debug, Clone)]
pub struct StateFile {
    path: PathBuf,
}

impl StateFile {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The saved state, or `None` before the first checkpoint (no file, or an empty one).
    pub fn load(&self) -> Result<Option<String>, StateFileError> {
        match std::fs::read_to_string(&self.path) {
            Ok(text) if text.trim().is_empty() => Ok(None),
            Ok(text) => Ok(Some(text)),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StateFileError::Read {
                path: self.path.clone(),
                source,
            }),
        }
    }

    /// Replaces the state atomically (see the module doc).
    pub fn save(&self, state_json: &str) -> Result<(), StateFileError> {
        self.write_atomically(state_json)
            .map_err(|source| StateFileError::Write {
                path: self.path.clone(),
                source,
            })
    }

    fn write_atomically(&self, text: &str) -> std::io::Result<()> {
        let dir = match self.path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&dir)?;
        let mut temporary = tempfile::Builder::new()
            .prefix(".state-")
            .suffix(".tmp")
            .tempfile_in(&dir)?;
        temporary.write_all(text.as_bytes())?;
        temporary.as_file().sync_all()?;
        temporary.persist(&self.path).map_err(|err| err.error)?;
        sync_directory(&dir)
    }
}

/// Makes the rename itself durable (the directory entry lives in the directory's data).
#[cfg(unix)]
fn sync_directory(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_directory(_dir: &Path) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_verbatim_and_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let file = StateFile::new(dir.path().join("files/state.json"));
        assert_eq!(file.load().unwrap(), None);
        let state = "{\"v\":1,  \"tables\":{\"public.t\":{\"cursor\":\"2024-05-01 00:00:00\"}}}";
        file.save(state).unwrap();
        assert_eq!(file.load().unwrap().as_deref(), Some(state));
        file.save("{\"v\":2}").unwrap();
        assert_eq!(file.load().unwrap().as_deref(), Some("{\"v\":2}"));
        // No temporary files are left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path().join("files"))
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("state.json")]);
    }

    #[test]
    fn an_empty_file_means_no_state() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        std::fs::write(&path, "\n").unwrap();
        assert_eq!(StateFile::new(path).load().unwrap(), None);
    }
}

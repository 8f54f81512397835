//! The files commands send (`File` frames: a profile's flame graph and
//! folded stacks), saved in the `--out` directory.
//!
//! A server names its files; the name is checked again here (a plain file
//! name, never a path) and the file is created new, mode 0600, so that a
//! server can neither write outside the directory nor replace a file that
//! is there: a name already taken gets `-2`, `-3`… before its extension.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use ispyd_core::{Frame, is_file_name};

/// The most one file may hold; past it the file is given up on and its
/// part removed, so a broken or hostile server cannot fill the disk.
pub const MAX_FILE: u64 = 256 * 1024 * 1024;

/// A file saved, or why it was not.
pub type Saved = Result<SavedFile, String>;

/// A file written to the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedFile {
    /// Where it is.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
}

impl std::fmt::Display for SavedFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let size = match self.size {
            n if n < 1024 => format!("{n} bytes"),
            n if n < 1024 * 1024 => format!("{:.1} KiB", n as f64 / 1024.0),
            n => format!("{:.1} MiB", n as f64 / (1024.0 * 1024.0)),
        };
        write!(f, "saved {} ({size})", self.path.display())
    }
}

/// Writes the files of a session into one directory as their pieces come.
#[derive(Debug)]
pub struct Saver {
    dir: PathBuf,
    current: Option<Current>,
    limit: u64,
}

#[derive(Debug)]
struct Current {
    name: String,
    /// `None` once the file failed: its further pieces are dropped.
    file: Option<(File, PathBuf, u64)>,
    failure: Option<String>,
}

impl Saver {
    /// Saves into `dir`, which is created when the first file comes.
    pub fn new(dir: impl Into<PathBuf>) -> Saver {
        Saver {
            dir: dir.into(),
            current: None,
            limit: MAX_FILE,
        }
    }

    /// Takes a `File` frame. A piece with another name than the file being
    /// written ends that file first: its result is returned.
    pub fn piece(&mut self, name: &str, bytes: &[u8]) -> Option<Saved> {
        let ended = match &self.current {
            Some(current) if current.name == name => None,
            Some(_) => self.finish(),
            None => None,
        };
        let current = self.current.get_or_insert_with(|| {
            let (file, failure) = match create(&self.dir, name) {
                Ok((file, path)) => (Some((file, path, 0)), None),
                Err(why) => (None, Some(why)),
            };
            Current {
                name: name.to_owned(),
                file,
                failure,
            }
        });
        if let Some((file, path, size)) = &mut current.file {
            let written = if *size + bytes.len() as u64 > self.limit {
                Err(format!(
                    "the server's file {name} is over {} bytes; gave up on it",
                    self.limit
                ))
            } else {
                file.write_all(bytes)
                    .map_err(|err| format!("cannot write {}: {err}", path.display()))
            };
            match written {
                Ok(()) => *size += bytes.len() as u64,
                Err(why) => {
                    let _ = std::fs::remove_file(&*path);
                    current.file = None;
                    current.failure = Some(why);
                }
            }
        }
        ended
    }

    /// Takes any frame the server sent: a `File` piece is written, any
    /// other frame ends the file being written. What ended, if anything.
    pub fn see(&mut self, frame: &Frame) -> Option<Saved> {
        match frame {
            Frame::File { name, bytes } => self.piece(name, bytes),
            _ => self.finish(),
        }
    }

    /// Ends the file being written, if any (at any frame that is not its
    /// next piece): where it was saved, or why it was not.
    pub fn finish(&mut self) -> Option<Saved> {
        let current = self.current.take()?;
        Some(match (current.file, current.failure) {
            (Some((file, path, size)), _) => match file.sync_all() {
                Ok(()) => Ok(SavedFile { path, size }),
                Err(err) => Err(format!("cannot write {}: {err}", path.display())),
            },
            (None, failure) => Err(failure.unwrap_or_default()),
        })
    }
}

/// Creates `dir/name`, or `dir/STEM-N.EXT` when that is taken.
fn create(dir: &Path, name: &str) -> Result<(File, PathBuf), String> {
    if !is_file_name(name) {
        return Err(format!(
            "the server sent a file named {name:?}, which is not a plain file name; not saved"
        ));
    }
    std::fs::create_dir_all(dir)
        .map_err(|err| format!("cannot create the directory {}: {err}", dir.display()))?;
    let (stem, ext) = match name.rfind('.') {
        Some(dot) => name.split_at(dot),
        None => (name, ""),
    };
    for n in 1..=1000 {
        let path = if n == 1 {
            dir.join(name)
        } else {
            dir.join(format!("{stem}-{n}{ext}"))
        };
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
        {
            Ok(file) => return Ok((file, path)),
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {}
            Err(err) => return Err(format!("cannot create {}: {err}", path.display())),
        }
    }
    Err(format!(
        "cannot save {name}: {} and a thousand like it are taken",
        dir.join(name).display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempDir;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn pieces_make_one_file_and_a_new_name_ends_it() {
        let dir = TempDir::new();
        let mut saver = Saver::new(dir.path().join("out"));
        assert_eq!(saver.piece("a.svg", b"<svg"), None);
        assert_eq!(saver.piece("a.svg", b"/>"), None);
        let first = saver.piece("b.txt", b"x").unwrap().unwrap();
        assert_eq!(first.size, 6);
        assert_eq!(std::fs::read(&first.path).unwrap(), b"<svg/>");
        let mode = std::fs::metadata(&first.path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let second = saver.finish().unwrap().unwrap();
        assert_eq!(second.path, dir.path().join("out/b.txt"));
        assert_eq!(saver.finish(), None);
    }

    #[test]
    fn a_taken_name_is_never_overwritten() {
        let dir = TempDir::new();
        std::fs::write(dir.path().join("p.svg"), b"mine").unwrap();
        let mut saver = Saver::new(dir.path());
        saver.piece("p.svg", b"theirs");
        let saved = saver.finish().unwrap().unwrap();
        assert_eq!(saved.path, dir.path().join("p-2.svg"));
        assert_eq!(std::fs::read(dir.path().join("p.svg")).unwrap(), b"mine");
    }

    #[test]
    fn bad_input_a_path_or_hidden_name_is_refused() {
        let dir = TempDir::new();
        let mut saver = Saver::new(dir.path());
        for name in ["../escape", "/etc/passwd", ".bashrc", "-rf", ""] {
            saver.piece(name, b"x");
            let why = saver.finish().unwrap().unwrap_err();
            assert!(why.contains("not a plain file name"), "{why}");
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn bad_input_a_file_past_the_limit_is_removed() {
        let dir = TempDir::new();
        let mut saver = Saver::new(dir.path());
        saver.limit = 1000;
        saver.piece("big.bin", &[b'x'; 1000]);
        saver.piece("big.bin", b"one more");
        let why = saver.finish().unwrap().unwrap_err();
        assert!(why.contains("over 1000 bytes"), "{why}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}

//! Where the bytes go: a small trait over "files in one directory", with a real
//! implementation ([`FileStorage`]) and an in-memory one with fault injection
//! ([`crate::MemStorage`]).
//!
//! The trait is object safe so the log can hold an `Arc<dyn Storage>` and the
//! [`crate::Wal`] handle stays non-generic. Every method maps to one system call of
//! the file implementation, which is what the crash tests count as "an operation".

use std::fs;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// A flat directory of files. Names are plain file names (no separators).
pub trait Storage: Send + Sync + 'static {
    /// Names of all files in the directory, in no particular order.
    fn list(&self) -> io::Result<Vec<String>>;
    /// Creates `name` empty (replacing any file of that name) and opens it for appending.
    fn create(&self, name: &str) -> io::Result<Box<dyn StorageFile>>;
    /// Opens an existing file for appending at its end.
    fn open_append(&self, name: &str) -> io::Result<Box<dyn StorageFile>>;
    /// Opens an existing file for reading.
    fn open_read(&self, name: &str) -> io::Result<Box<dyn StorageReader>>;
    /// Cuts `name` to `len` bytes and makes the new length durable.
    fn truncate(&self, name: &str, len: u64) -> io::Result<()>;
    /// Renames `from` to `to`, replacing `to` atomically if it exists.
    fn rename(&self, from: &str, to: &str) -> io::Result<()>;
    /// Removes `name`.
    fn remove(&self, name: &str) -> io::Result<()>;
    /// Makes the directory entries (creates, renames, removes) durable.
    fn sync_dir(&self) -> io::Result<()>;
    /// A short description for error messages (the directory path).
    fn describe(&self) -> String;
}

/// A file opened for appending.
pub trait StorageFile: Send + 'static {
    /// Appends a prefix of `bytes`, returning how many were written (a short write
    /// is not an error; the caller writes the rest).
    fn append(&mut self, bytes: &[u8]) -> io::Result<usize>;
    /// Makes every appended byte durable (`fdatasync`).
    fn sync_data(&mut self) -> io::Result<()>;
}

/// A file opened for reading.
pub trait StorageReader: Send + 'static {
    /// Current length of the file.
    fn file_len(&mut self) -> io::Result<u64>;
    /// Reads up to `buf.len()` bytes at `offset`; 0 means end of file.
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<usize>;

    /// Reads exactly `buf.len()` bytes at `offset`.
    ///
    /// # Errors
    /// `UnexpectedEof` when the file ends first, or the underlying error.
    fn read_exact_at(&mut self, mut offset: u64, mut buf: &mut [u8]) -> io::Result<()> {
        while !buf.is_empty() {
            let n = self.read_at(offset, buf)?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            offset += n as u64;
            buf = &mut buf[n..];
        }
        Ok(())
    }
}

impl<S: Storage + ?Sized> Storage for std::sync::Arc<S> {
    fn list(&self) -> io::Result<Vec<String>> {
        (**self).list()
    }
    fn create(&self, name: &str) -> io::Result<Box<dyn StorageFile>> {
        (**self).create(name)
    }
    fn open_append(&self, name: &str) -> io::Result<Box<dyn StorageFile>> {
        (**self).open_append(name)
    }
    fn open_read(&self, name: &str) -> io::Result<Box<dyn StorageReader>> {
        (**self).open_read(name)
    }
    fn truncate(&self, name: &str, len: u64) -> io::Result<()> {
        (**self).truncate(name, len)
    }
    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        (**self).rename(from, to)
    }
    fn remove(&self, name: &str) -> io::Result<()> {
        (**self).remove(name)
    }
    fn sync_dir(&self) -> io::Result<()> {
        (**self).sync_dir()
    }
    fn describe(&self) -> String {
        (**self).describe()
    }
}

/// Real files under one directory.
#[derive(Debug, Clone)]
pub struct FileStorage {
    dir: PathBuf,
}

impl FileStorage {
    /// Uses `dir`, creating it (and its parents) if needed.
    ///
    /// # Errors
    /// The directory cannot be created.
    pub fn new(dir: impl Into<PathBuf>) -> io::Result<Self> {
        let dir = dir.into();
        fs::create_dir_all(&dir)?;
        Ok(Self { dir })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

struct RealFile(fs::File);

impl StorageFile for RealFile {
    fn append(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.write(bytes)
    }
    fn sync_data(&mut self) -> io::Result<()> {
        self.0.sync_data()
    }
}

struct RealReader(fs::File);

impl StorageReader for RealReader {
    fn file_len(&mut self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        self.0.seek(SeekFrom::Start(offset))?;
        self.0.read(buf)
    }
}

impl Storage for FileStorage {
    fn list(&self) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                if let Some(name) = entry.file_name().to_str() {
                    names.push(name.to_owned());
                }
            }
        }
        Ok(names)
    }

    fn create(&self, name: &str) -> io::Result<Box<dyn StorageFile>> {
        let file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(self.path(name))?;
        Ok(Box::new(RealFile(file)))
    }

    fn open_append(&self, name: &str) -> io::Result<Box<dyn StorageFile>> {
        let file = fs::OpenOptions::new().append(true).open(self.path(name))?;
        Ok(Box::new(RealFile(file)))
    }

    fn open_read(&self, name: &str) -> io::Result<Box<dyn StorageReader>> {
        Ok(Box::new(RealReader(fs::File::open(self.path(name))?)))
    }

    fn truncate(&self, name: &str, len: u64) -> io::Result<()> {
        let file = fs::OpenOptions::new().write(true).open(self.path(name))?;
        file.set_len(len)?;
        file.sync_all()
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        fs::rename(self.path(from), self.path(to))
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        fs::remove_file(self.path(name))
    }

    fn sync_dir(&self) -> io::Result<()> {
        // Opening a directory read-only and fsyncing it is how POSIX makes its
        // entries durable; std exposes it through `File::sync_all`.
        fs::File::open(&self.dir)?.sync_all()
    }

    fn describe(&self) -> String {
        self.dir.display().to_string()
    }
}

/// Appends all of `bytes`, retrying short writes (a zero-byte write is an error).
pub(crate) fn write_all(
    file: &mut dyn StorageFile,
    mut bytes: &[u8],
    name: &str,
) -> Result<(), crate::WalError> {
    while !bytes.is_empty() {
        match file.append(bytes) {
            Ok(0) => {
                return Err(crate::WalError::io(
                    "append",
                    name,
                    io::ErrorKind::WriteZero.into(),
                ))
            }
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(crate::WalError::io("append", name, e)),
        }
    }
    Ok(())
}

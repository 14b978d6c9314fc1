//! [`FileStorage`]: the core's [`Storage`] trait over one real directory.
//!
//! Segment files, checkpoints and markers are plain files: appends are positioned writes at
//! a size kept in memory (no `stat` per call), reads are positioned reads, `sync` is
//! `fdatasync`. Index files (`.index`, `.timeindex`) are memory-mapped as Kafka maps them:
//! the file is preallocated (64 KiB, then doubling) and its logical length is kept in memory,
//! so an index append is a copy into the mapping; `close` trims the file to that length.
//! Creating, renaming and removing files fsyncs the directory, so names are as durable as
//! contents.
//!
//! Handles are opened lazily on first use and kept until `close` or `delete`; dropping a
//! `FileStorage` trims every mapped index to its logical length (best effort). After a crash
//! an index file may keep a zero-filled preallocated tail; the core's index decoding drops it.
//!
//! **Architecture invariant:** nothing else may shrink the directory's files while a
//! `FileStorage` has them open: touching a mapped page past the end of its file kills the
//! process (`SIGBUS`). Tests that damage files on disk do so between two storages.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, ErrorKind, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use brook_core::storage::{Storage, StorageError};
use memmap2::MmapMut;

/// Suffix of the temporary files `write_atomic` renames into place; `list` skips them.
const TMP_SUFFIX: &str = ".tmp";
/// Size a mapped index file is first preallocated to; it doubles from there.
const INDEX_CAPACITY_BYTES_MIN: u64 = 64 * 1024;
/// The file `open` writes and removes to check that the directory is writable.
const PROBE_FILE: &str = ".brook-write-probe.tmp";

/// One directory of files on disk, implementing [`Storage`]. See the module doc.
pub struct FileStorage {
    dir: PathBuf,
    /// The directory itself, kept open to fsync it after its entries change.
    dir_handle: File,
    /// Open files by name. A mutex because `size` and `read_at` take `&self` yet may open a
    /// file; `&mut self` methods reach the map without locking.
    files: Mutex<HashMap<String, OpenFile>>,
}

impl std::fmt::Debug for FileStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileStorage")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl FileStorage {
    /// Opens the directory `dir` as storage, creating it (and its parents) if missing. Fails
    /// if `dir` is not a directory or cannot be written; removes temporary files left by an
    /// interrupted `write_atomic`.
    pub fn open(dir: &Path) -> Result<FileStorage, StorageError> {
        let dir_name = dir.display().to_string();
        match fs::metadata(dir) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                let source = io::Error::new(ErrorKind::InvalidInput, "not a directory");
                return Err(io_error("open directory", &dir_name, source));
            }
            Err(err) if err.kind() == ErrorKind::NotFound => {
                fs::create_dir_all(dir)
                    .map_err(|err| io_error("create directory", &dir_name, err))?;
            }
            Err(err) => return Err(io_error("open directory", &dir_name, err)),
        }
        let probe = dir.join(PROBE_FILE);
        File::create(&probe)
            .and_then(|_| fs::remove_file(&probe))
            .map_err(|err| io_error("check writable", &dir_name, err))?;
        remove_tmp_files(dir, &dir_name)?;
        let dir_handle =
            File::open(dir).map_err(|err| io_error("open directory", &dir_name, err))?;
        Ok(FileStorage {
            dir: dir.to_path_buf(),
            dir_handle,
            files: Mutex::new(HashMap::new()),
        })
    }

    /// The directory this storage works in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The path of the named file, for the server to `sendfile` a segment's bytes.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The open-file map, reached through `&mut self` without locking.
    fn files_mut(&mut self) -> &mut HashMap<String, OpenFile> {
        self.files.get_mut().unwrap_or_else(PoisonError::into_inner)
    }

    /// The named file, opened (and remembered) if it was not open yet.
    fn file_mut(&mut self, name: &str) -> Result<&mut OpenFile, StorageError> {
        check_name(name)?;
        let dir = &self.dir;
        let files = self.files.get_mut().unwrap_or_else(PoisonError::into_inner);
        open_entry(files, dir, name)
    }

    /// Runs `f` on the named file, opening it first if needed, from a `&self` method.
    fn with_file<T>(
        &self,
        name: &str,
        f: impl FnOnce(&mut OpenFile) -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        check_name(name)?;
        let mut files = self.files.lock().unwrap_or_else(PoisonError::into_inner);
        f(open_entry(&mut files, &self.dir, name)?)
    }

    /// Makes the directory's entries (created, renamed, removed names) durable.
    fn fsync_dir(&self) -> Result<(), StorageError> {
        self.dir_handle
            .sync_all()
            .map_err(|err| io_error("sync directory", &self.dir.display().to_string(), err))
    }
}

impl Storage for FileStorage {
    fn list(&self) -> Result<Vec<String>, StorageError> {
        let dir_name = self.dir.display().to_string();
        let list_error = |err| io_error("list", &dir_name, err);
        let mut names = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(list_error)? {
            let entry = entry.map_err(list_error)?;
            if !entry.file_type().map_err(list_error)?.is_file() {
                continue;
            }
            // Names that are not UTF-8 were not written by Brook.
            if let Ok(name) = entry.file_name().into_string() {
                if !name.ends_with(TMP_SUFFIX) {
                    names.push(name);
                }
            }
        }
        Ok(names)
    }

    fn create(&mut self, name: &str) -> Result<(), StorageError> {
        check_name(name)?;
        if self.files_mut().contains_key(name) {
            return Ok(());
        }
        let path = self.dir.join(name);
        let created = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path);
        let file = match created {
            Ok(file) => {
                self.fsync_dir()?;
                OpenFile::from_file(file, name)?
            }
            Err(err) if err.kind() == ErrorKind::AlreadyExists => OpenFile::open(&path, name)?,
            Err(err) => return Err(io_error("create", name, err)),
        };
        self.files_mut().insert(name.to_owned(), file);
        Ok(())
    }

    fn size(&self, name: &str) -> Result<u64, StorageError> {
        check_name(name)?;
        let files = self.files.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(file) = files.get(name) {
            return Ok(file.size());
        }
        drop(files);
        match fs::metadata(self.dir.join(name)) {
            Ok(meta) if meta.is_file() => Ok(meta.len()),
            Ok(_) => Err(StorageError::NotFound(name.to_owned())),
            Err(err) => Err(open_error("size", name, err)),
        }
    }

    fn append(&mut self, name: &str, data: &[u8]) -> Result<(), StorageError> {
        let result = self.file_mut(name)?.append(name, data);
        if result.is_err() {
            // The write may have been partial: forget the tracked size, re-read it on reopen.
            self.files_mut().remove(name);
        }
        result
    }

    fn read_at(&self, name: &str, position: u64, buf: &mut [u8]) -> Result<(), StorageError> {
        self.with_file(name, |file| file.read_at(name, position, buf))
    }

    fn sync(&mut self, name: &str) -> Result<(), StorageError> {
        self.file_mut(name)?.sync(name)
    }

    fn sync_dir(&mut self) -> Result<(), StorageError> {
        // Creates and deletes already fsync the directory; this covers anything else.
        self.fsync_dir()
    }

    fn truncate(&mut self, name: &str, size: u64) -> Result<(), StorageError> {
        self.file_mut(name)?.truncate(name, size)
    }

    fn delete(&mut self, name: &str) -> Result<(), StorageError> {
        check_name(name)?;
        self.files_mut().remove(name);
        match fs::remove_file(self.dir.join(name)) {
            Ok(()) => self.fsync_dir(),
            Err(err) if err.kind() == ErrorKind::NotFound => Ok(()),
            Err(err) => Err(io_error("delete", name, err)),
        }
    }

    fn write_atomic(&mut self, name: &str, data: &[u8]) -> Result<(), StorageError> {
        check_name(name)?;
        // A handle on the old file would keep reading the replaced content.
        self.files_mut().remove(name);
        let tmp_name = format!("{name}{TMP_SUFFIX}");
        let tmp_path = self.dir.join(&tmp_name);
        let written = File::create(&tmp_path).and_then(|mut file| {
            file.write_all(data)?;
            file.sync_data()
        });
        if let Err(err) = written {
            let _ = fs::remove_file(&tmp_path);
            return Err(io_error("write", &tmp_name, err));
        }
        if let Err(err) = fs::rename(&tmp_path, self.dir.join(name)) {
            let _ = fs::remove_file(&tmp_path);
            return Err(io_error("rename", name, err));
        }
        self.fsync_dir()
    }

    fn close(&mut self, name: &str) -> Result<(), StorageError> {
        check_name(name)?;
        match self.files_mut().remove(name) {
            Some(file) => file.close(name),
            None => match fs::metadata(self.dir.join(name)) {
                Ok(meta) if meta.is_file() => Ok(()),
                Ok(_) => Err(StorageError::NotFound(name.to_owned())),
                Err(err) => Err(open_error("close", name, err)),
            },
        }
    }
}

impl Drop for FileStorage {
    /// Trims every mapped index to its logical length, so a drop without `close` leaves no
    /// preallocated tails. Best effort: failures are logged, not raised.
    fn drop(&mut self) {
        for (name, file) in self.files_mut().drain() {
            if let Err(err) = file.close(&name) {
                tracing::warn!(%err, "closing {name} while dropping the storage");
            }
        }
    }
}

/// The entry for `name` in `files`, opening the file if it is not there yet.
fn open_entry<'a>(
    files: &'a mut HashMap<String, OpenFile>,
    dir: &Path,
    name: &str,
) -> Result<&'a mut OpenFile, StorageError> {
    if !files.contains_key(name) {
        let file = OpenFile::open(&dir.join(name), name)?;
        files.insert(name.to_owned(), file);
    }
    files
        .get_mut(name)
        .ok_or_else(|| StorageError::NotFound(name.to_owned()))
}

/// Refuses names that are not a single plain file name in the directory.
fn check_name(name: &str) -> Result<(), StorageError> {
    let plain = !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains('/')
        && !name.contains('\0');
    if plain {
        return Ok(());
    }
    let source = io::Error::new(ErrorKind::InvalidInput, "not a plain file name");
    Err(io_error("name", name, source))
}

/// Whether a file is an index that is memory-mapped rather than written with `pwrite`.
fn is_index(name: &str) -> bool {
    name.ends_with(".index") || name.ends_with(".timeindex")
}

/// Removes the temporary files an interrupted `write_atomic` may have left.
fn remove_tmp_files(dir: &Path, dir_name: &str) -> Result<(), StorageError> {
    let list_error = |err| io_error("list", dir_name, err);
    for entry in fs::read_dir(dir).map_err(list_error)? {
        let entry = entry.map_err(list_error)?;
        let is_tmp = entry.file_name().to_string_lossy().ends_with(TMP_SUFFIX);
        if is_tmp && entry.file_type().map_err(list_error)?.is_file() {
            fs::remove_file(entry.path())
                .map_err(|err| io_error("delete", &entry.path().display().to_string(), err))?;
        }
    }
    Ok(())
}

/// An OS error on `name`.
fn io_error(op: &'static str, name: &str, source: io::Error) -> StorageError {
    StorageError::Io {
        op,
        name: name.to_owned(),
        source,
    }
}

/// An OS error on `name`, where "no such file" means the file is missing.
fn open_error(op: &'static str, name: &str, source: io::Error) -> StorageError {
    match source.kind() {
        ErrorKind::NotFound => StorageError::NotFound(name.to_owned()),
        _ => io_error(op, name, source),
    }
}

/// The error for a read of `len` bytes at `position` of a file of `size` bytes.
fn past_end(name: &str, position: u64, len: usize, size: u64) -> StorageError {
    StorageError::ReadPastEnd {
        name: name.to_owned(),
        position,
        len,
        size,
    }
}

/// Where a read of `len` bytes at `position` ends, if it stays within `size` bytes.
fn read_end(position: u64, len: usize, size: u64) -> Option<u64> {
    position.checked_add(len as u64).filter(|&end| end <= size)
}

/// One open file.
enum OpenFile {
    /// Written with positioned writes at its tracked end.
    Plain(PlainFile),
    /// An index, memory-mapped.
    Index(IndexFile),
}

impl OpenFile {
    /// Opens an existing file for reading and writing.
    fn open(path: &Path, name: &str) -> Result<OpenFile, StorageError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|err| open_error("open", name, err))?;
        OpenFile::from_file(file, name)
    }

    /// Wraps a file opened for reading and writing, taking its current size.
    fn from_file(file: File, name: &str) -> Result<OpenFile, StorageError> {
        let meta = file.metadata().map_err(|err| io_error("open", name, err))?;
        if !meta.is_file() {
            return Err(StorageError::NotFound(name.to_owned()));
        }
        let size = meta.len();
        if !is_index(name) {
            return Ok(OpenFile::Plain(PlainFile { file, size }));
        }
        let map = match size {
            0 => None,
            _ => Some(map_file(&file, name)?),
        };
        Ok(OpenFile::Index(IndexFile {
            file,
            map,
            len: size,
            capacity: size,
            resized: false,
        }))
    }

    fn size(&self) -> u64 {
        match self {
            OpenFile::Plain(file) => file.size,
            OpenFile::Index(file) => file.len,
        }
    }

    fn append(&mut self, name: &str, data: &[u8]) -> Result<(), StorageError> {
        match self {
            OpenFile::Plain(file) => file.append(name, data),
            OpenFile::Index(file) => file.append(name, data),
        }
    }

    fn read_at(&self, name: &str, position: u64, buf: &mut [u8]) -> Result<(), StorageError> {
        match self {
            OpenFile::Plain(file) => file.read_at(name, position, buf),
            OpenFile::Index(file) => file.read_at(name, position, buf),
        }
    }

    fn sync(&mut self, name: &str) -> Result<(), StorageError> {
        match self {
            OpenFile::Plain(file) => file.file.sync_data().map_err(|e| io_error("sync", name, e)),
            OpenFile::Index(file) => file.sync(name),
        }
    }

    fn truncate(&mut self, name: &str, size: u64) -> Result<(), StorageError> {
        match self {
            OpenFile::Plain(file) => file.truncate(name, size),
            OpenFile::Index(file) => {
                file.truncate(size);
                Ok(())
            }
        }
    }

    /// Lets go of the file; an index is flushed and trimmed to its logical length first.
    fn close(self, name: &str) -> Result<(), StorageError> {
        match self {
            OpenFile::Plain(_) => Ok(()),
            OpenFile::Index(file) => file.close(name),
        }
    }
}

/// A plain file and its size, which only this storage changes.
struct PlainFile {
    file: File,
    size: u64,
}

impl PlainFile {
    fn append(&mut self, name: &str, data: &[u8]) -> Result<(), StorageError> {
        self.file
            .write_all_at(data, self.size)
            .map_err(|err| io_error("append", name, err))?;
        self.size += data.len() as u64;
        Ok(())
    }

    fn read_at(&self, name: &str, position: u64, buf: &mut [u8]) -> Result<(), StorageError> {
        if read_end(position, buf.len(), self.size).is_none() {
            return Err(past_end(name, position, buf.len(), self.size));
        }
        self.file
            .read_exact_at(buf, position)
            .map_err(|err| io_error("read", name, err))
    }

    fn truncate(&mut self, name: &str, size: u64) -> Result<(), StorageError> {
        if size < self.size {
            self.file
                .set_len(size)
                .map_err(|err| io_error("truncate", name, err))?;
            self.size = size;
        }
        Ok(())
    }
}

/// A memory-mapped index file: `capacity` bytes on disk and mapped, the first `len` of
/// them meaningful, the rest zero.
struct IndexFile {
    file: File,
    /// Maps the whole file (`capacity` bytes); `None` while the file is empty.
    map: Option<MmapMut>,
    /// The logical length: bytes appended and not truncated.
    len: u64,
    /// The file's size on disk.
    capacity: u64,
    /// Whether the file's size changed since the last sync (then sync must fsync it too).
    resized: bool,
}

impl IndexFile {
    fn append(&mut self, name: &str, data: &[u8]) -> Result<(), StorageError> {
        if data.is_empty() {
            return Ok(());
        }
        let end = self.len + data.len() as u64;
        if end > self.capacity {
            self.grow(name, end)?;
        }
        let Some(map) = self.map.as_mut() else {
            let source = io::Error::other("index has no mapping after growing");
            return Err(io_error("append", name, source));
        };
        map[self.len as usize..end as usize].copy_from_slice(data);
        self.len = end;
        Ok(())
    }

    /// Extends the file to the next capacity of at least `needed` bytes and remaps it. The
    /// old mapping stays valid until replaced, since the file only grows.
    fn grow(&mut self, name: &str, needed: u64) -> Result<(), StorageError> {
        let mut capacity = self.capacity.max(INDEX_CAPACITY_BYTES_MIN);
        while capacity < needed {
            capacity = capacity.saturating_mul(2);
        }
        self.file
            .set_len(capacity)
            .map_err(|err| io_error("grow", name, err))?;
        self.resized = true;
        self.map = Some(map_file(&self.file, name)?);
        self.capacity = capacity;
        Ok(())
    }

    fn read_at(&self, name: &str, position: u64, buf: &mut [u8]) -> Result<(), StorageError> {
        let Some(end) = read_end(position, buf.len(), self.len) else {
            return Err(past_end(name, position, buf.len(), self.len));
        };
        if let Some(map) = &self.map {
            buf.copy_from_slice(&map[position as usize..end as usize]);
        }
        Ok(())
    }

    fn sync(&mut self, name: &str) -> Result<(), StorageError> {
        if let Some(map) = &self.map {
            map.flush().map_err(|err| io_error("sync", name, err))?;
        }
        if self.resized {
            self.file
                .sync_data()
                .map_err(|err| io_error("sync", name, err))?;
            self.resized = false;
        }
        Ok(())
    }

    /// Lowers the logical length, zeroing the cut bytes so a crash cannot revive them.
    fn truncate(&mut self, size: u64) {
        if size >= self.len {
            return;
        }
        if let Some(map) = self.map.as_mut() {
            map[size as usize..self.len as usize].fill(0);
        }
        self.len = size;
    }

    /// Flushes, unmaps and trims the file to its logical length.
    fn close(mut self, name: &str) -> Result<(), StorageError> {
        if let Some(map) = self.map.take() {
            map.flush().map_err(|err| io_error("close", name, err))?;
        }
        if self.capacity != self.len {
            self.file
                .set_len(self.len)
                .map_err(|err| io_error("close", name, err))?;
        }
        Ok(())
    }
}

/// Maps the whole of `file` read-write.
fn map_file(file: &File, name: &str) -> Result<MmapMut, StorageError> {
    // SAFETY: the mapping is shared with the file, which this storage opened read-write and
    // only grows while it is mapped (it is shrunk only after the mapping is dropped). Other
    // processes must not shrink it meanwhile: see the module's architecture invariant.
    unsafe { MmapMut::map_mut(file) }.map_err(|err| io_error("map", name, err))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn storage() -> (tempfile::TempDir, FileStorage) {
        let dir = tempfile::tempdir().expect("temp dir");
        let storage = FileStorage::open(dir.path()).expect("open storage");
        (dir, storage)
    }

    fn disk_len(storage: &FileStorage, name: &str) -> u64 {
        fs::metadata(storage.path(name))
            .expect("file on disk")
            .len()
    }

    #[test]
    fn file_storage_can_move_between_threads_and_be_shared() {
        fn send_and_sync<T: Send + Sync>() {}
        send_and_sync::<FileStorage>();
    }

    #[test]
    fn file_storage_open_creates_a_missing_directory() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("a/b/partition-0");
        let storage = FileStorage::open(&nested).unwrap();
        assert!(nested.is_dir());
        assert_eq!(storage.dir(), nested.as_path());
        assert_eq!(storage.path("x.log"), nested.join("x.log"));
        assert!(
            storage.list().unwrap().is_empty(),
            "the write probe is gone"
        );
    }

    #[test]
    fn file_storage_open_refuses_a_regular_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-dir");
        fs::write(&file, b"x").unwrap();
        let err = FileStorage::open(&file).unwrap_err();
        assert!(
            matches!(
                err,
                StorageError::Io {
                    op: "open directory",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn file_storage_open_removes_leftover_tmp_files() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("log.checkpoint.tmp"), b"half").unwrap();
        fs::write(dir.path().join("keep"), b"x").unwrap();
        let storage = FileStorage::open(dir.path()).unwrap();
        assert_eq!(storage.list().unwrap(), vec!["keep".to_string()]);
        assert!(!dir.path().join("log.checkpoint.tmp").exists());
    }

    #[test]
    fn file_storage_create_keeps_existing_content() {
        let (_dir, mut storage) = storage();
        storage.create("a.log").unwrap();
        assert_eq!(storage.size("a.log").unwrap(), 0);
        storage.append("a.log", b"hello").unwrap();
        storage.create("a.log").unwrap();
        assert_eq!(storage.read_all("a.log").unwrap().unwrap(), b"hello");
        fs::write(storage.path("b.log"), b"old").unwrap();
        storage.create("b.log").unwrap();
        assert_eq!(storage.read_all("b.log").unwrap().unwrap(), b"old");
    }

    #[test]
    fn file_storage_append_and_read_at_round_trip() {
        let (_dir, mut storage) = storage();
        storage.create("0.log").unwrap();
        storage.append("0.log", b"abc").unwrap();
        storage.append("0.log", b"defg").unwrap();
        assert_eq!(storage.size("0.log").unwrap(), 7);
        assert_eq!(disk_len(&storage, "0.log"), 7);
        let mut buf = [0u8; 4];
        storage.read_at("0.log", 2, &mut buf).unwrap();
        assert_eq!(&buf, b"cdef");
        storage.sync("0.log").unwrap();
    }

    #[test]
    fn file_storage_read_past_end_is_an_error() {
        let (_dir, mut storage) = storage();
        for name in ["0.log", "0.index"] {
            storage.create(name).unwrap();
            storage.append(name, b"abc").unwrap();
            let mut buf = [0u8; 4];
            let err = storage.read_at(name, 0, &mut buf).unwrap_err();
            assert!(
                matches!(
                    err,
                    StorageError::ReadPastEnd {
                        size: 3,
                        len: 4,
                        ..
                    }
                ),
                "{name}: {err}"
            );
            let err = storage.read_at(name, u64::MAX, &mut buf).unwrap_err();
            assert!(matches!(err, StorageError::ReadPastEnd { .. }), "{name}");
        }
    }

    #[test]
    fn file_storage_missing_files_are_not_found() {
        let (_dir, mut storage) = storage();
        let mut buf = [0u8; 1];
        for name in ["missing.log", "missing.index"] {
            let not_found = |result: Result<(), StorageError>| {
                assert!(matches!(result, Err(StorageError::NotFound(_))), "{name}");
            };
            not_found(storage.size(name).map(drop));
            not_found(storage.append(name, b"x"));
            not_found(storage.read_at(name, 0, &mut buf));
            not_found(storage.sync(name));
            not_found(storage.truncate(name, 0));
            not_found(storage.close(name));
            assert_eq!(storage.read_all(name).unwrap(), None);
            storage.delete(name).unwrap();
        }
    }

    #[test]
    fn file_storage_refuses_names_outside_the_directory() {
        let (_dir, mut storage) = storage();
        for name in ["", ".", "..", "../escape", "a/b", "nul\0"] {
            let err = storage.create(name).unwrap_err();
            assert!(
                matches!(err, StorageError::Io { op: "name", .. }),
                "{name:?}"
            );
            assert!(storage.write_atomic(name, b"x").is_err(), "{name:?}");
        }
    }

    #[test]
    fn file_storage_truncate_cuts_and_never_extends() {
        let (_dir, mut storage) = storage();
        storage.create("0.log").unwrap();
        storage.append("0.log", b"0123456789").unwrap();
        storage.truncate("0.log", 4).unwrap();
        assert_eq!(storage.size("0.log").unwrap(), 4);
        assert_eq!(disk_len(&storage, "0.log"), 4);
        storage.truncate("0.log", 100).unwrap();
        assert_eq!(storage.size("0.log").unwrap(), 4);
        storage.append("0.log", b"xy").unwrap();
        assert_eq!(storage.read_all("0.log").unwrap().unwrap(), b"0123xy");
    }

    #[test]
    fn file_storage_delete_removes_the_file_and_its_handle() {
        let (_dir, mut storage) = storage();
        storage.create("0.log").unwrap();
        storage.append("0.log", b"abc").unwrap();
        storage.delete("0.log").unwrap();
        assert!(!storage.path("0.log").exists());
        assert!(matches!(
            storage.size("0.log"),
            Err(StorageError::NotFound(_))
        ));
        storage.delete("0.log").unwrap();
        storage.create("0.log").unwrap();
        assert_eq!(storage.size("0.log").unwrap(), 0);
    }

    #[test]
    fn file_storage_write_atomic_replaces_content_and_open_handles() {
        let (_dir, mut storage) = storage();
        storage.write_atomic("log.checkpoint", b"first").unwrap();
        assert_eq!(
            storage.read_all("log.checkpoint").unwrap().unwrap(),
            b"first"
        );
        storage.write_atomic("log.checkpoint", b"second!").unwrap();
        assert_eq!(storage.size("log.checkpoint").unwrap(), 7);
        assert_eq!(
            storage.read_all("log.checkpoint").unwrap().unwrap(),
            b"second!"
        );
        assert!(!storage.path("log.checkpoint.tmp").exists());
        storage.write_atomic(".clean-shutdown", b"").unwrap();
        assert_eq!(storage.size(".clean-shutdown").unwrap(), 0);
    }

    #[test]
    fn file_storage_list_shows_regular_files_only() {
        let (_dir, mut storage) = storage();
        storage.create("0.log").unwrap();
        storage.create("0.index").unwrap();
        storage.write_atomic("log.checkpoint", b"x").unwrap();
        fs::write(storage.path("stale.tmp"), b"x").unwrap();
        fs::create_dir(storage.path("subdir")).unwrap();
        let mut names = storage.list().unwrap();
        names.sort();
        assert_eq!(names, ["0.index", "0.log", "log.checkpoint"]);
    }

    #[test]
    fn file_storage_close_keeps_content_and_reopens_lazily() {
        let (_dir, mut storage) = storage();
        storage.create("0.log").unwrap();
        storage.append("0.log", b"abc").unwrap();
        storage.close("0.log").unwrap();
        storage.close("0.log").unwrap();
        assert_eq!(storage.size("0.log").unwrap(), 3);
        storage.append("0.log", b"d").unwrap();
        assert_eq!(storage.read_all("0.log").unwrap().unwrap(), b"abcd");
    }

    #[test]
    fn file_storage_index_is_preallocated_and_trimmed_on_close() {
        let (_dir, mut storage) = storage();
        storage.create("0.index").unwrap();
        storage.append("0.index", &[1; 8]).unwrap();
        assert_eq!(storage.size("0.index").unwrap(), 8);
        assert_eq!(disk_len(&storage, "0.index"), INDEX_CAPACITY_BYTES_MIN);
        storage.sync("0.index").unwrap();
        storage.close("0.index").unwrap();
        assert_eq!(disk_len(&storage, "0.index"), 8);
        storage.append("0.index", &[2; 8]).unwrap();
        assert_eq!(
            storage.read_all("0.index").unwrap().unwrap(),
            [[1; 8], [2; 8]].concat()
        );
    }

    #[test]
    fn file_storage_index_grows_by_doubling_past_its_capacity() {
        let (dir, mut storage) = storage();
        storage.create("0.timeindex").unwrap();
        let entry: Vec<u8> = (0..12).collect();
        let entries = 3 * INDEX_CAPACITY_BYTES_MIN as usize / entry.len();
        for _ in 0..entries {
            storage.append("0.timeindex", &entry).unwrap();
        }
        let len = (entries * entry.len()) as u64;
        assert_eq!(storage.size("0.timeindex").unwrap(), len);
        assert_eq!(
            disk_len(&storage, "0.timeindex"),
            4 * INDEX_CAPACITY_BYTES_MIN
        );
        let mut buf = [0u8; 12];
        storage.read_at("0.timeindex", len - 12, &mut buf).unwrap();
        assert_eq!(buf.as_slice(), entry.as_slice());
        storage.sync("0.timeindex").unwrap();
        drop(storage);
        assert_eq!(
            fs::metadata(dir.path().join("0.timeindex")).unwrap().len(),
            len
        );
    }

    #[test]
    fn file_storage_index_truncate_zeroes_the_cut_bytes() {
        let (_dir, mut storage) = storage();
        storage.create("0.index").unwrap();
        storage.append("0.index", &[7; 24]).unwrap();
        storage.truncate("0.index", 8).unwrap();
        storage.truncate("0.index", 100).unwrap();
        assert_eq!(storage.size("0.index").unwrap(), 8);
        storage.append("0.index", &[9; 4]).unwrap();
        assert_eq!(
            storage.read_all("0.index").unwrap().unwrap(),
            [[7; 8].as_slice(), &[9; 4]].concat()
        );
        // Beyond the logical end the preallocated bytes are zero again.
        storage.sync("0.index").unwrap();
        let raw = fs::read(storage.path("0.index")).unwrap();
        assert!(raw[12..].iter().all(|&b| b == 0));
        storage.truncate("0.index", 0).unwrap();
        storage.close("0.index").unwrap();
        assert_eq!(disk_len(&storage, "0.index"), 0);
    }

    #[test]
    fn file_storage_existing_index_length_is_its_file_size() {
        let dir = tempfile::tempdir().unwrap();
        let mut raw = vec![5u8; 16];
        raw.resize(4096, 0); // a crash left a zero-filled preallocated tail
        fs::write(dir.path().join("0.index"), &raw).unwrap();
        let mut storage = FileStorage::open(dir.path()).unwrap();
        assert_eq!(storage.size("0.index").unwrap(), 4096);
        assert_eq!(storage.read_all("0.index").unwrap().unwrap(), raw);
        storage.truncate("0.index", 16).unwrap();
        storage.close("0.index").unwrap();
        assert_eq!(fs::read(dir.path().join("0.index")).unwrap(), vec![5u8; 16]);
    }

    #[test]
    fn file_storage_drop_keeps_written_bytes_for_the_next_storage() {
        let dir = tempfile::tempdir().unwrap();
        let mut storage = FileStorage::open(dir.path()).unwrap();
        storage.create("0.log").unwrap();
        storage.append("0.log", b"batch").unwrap();
        storage.create("0.index").unwrap();
        storage.append("0.index", &[3; 8]).unwrap();
        drop(storage);
        let storage = FileStorage::open(dir.path()).unwrap();
        assert_eq!(storage.read_all("0.log").unwrap().unwrap(), b"batch");
        assert_eq!(storage.read_all("0.index").unwrap().unwrap(), [3; 8]);
    }
}

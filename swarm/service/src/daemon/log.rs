//! The daemon's log file: bounded, so a daemon that runs for weeks cannot
//! fill the disk. Past [`LOG_LIMIT`] the file is rotated once (`.1`), and
//! the older copy is dropped.

use std::path::Path;
use std::sync::Mutex;

use file_rotate::compression::Compression;
use file_rotate::suffix::AppendCount;
use file_rotate::{ContentLimit, FileRotate};

/// Bytes one log file holds before it is rotated.
pub const LOG_LIMIT: usize = 8 << 20;

/// A writer for the daemon's log at `path` (its directory is created).
pub fn log_writer(path: &Path) -> std::io::Result<Mutex<FileRotate<AppendCount>>> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    use std::os::unix::fs::OpenOptionsExt;
    let mut private = std::fs::OpenOptions::new();
    private.read(true).create(true).append(true).mode(0o600);
    let limit = ContentLimit::BytesSurpassed(LOG_LIMIT);
    Ok(Mutex::new(FileRotate::new(path, AppendCount::new(1), limit, Compression::None, Some(private))))
}

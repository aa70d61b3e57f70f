//! Why a workflow could not be loaded or run.

use std::path::PathBuf;

use skep_swarm::{FileError, Invalid};

/// What went wrong before or around a run (a failing step is not an error:
/// it is recorded in the run's profile).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkflowError {
    /// The workflow file could not be read, or is wrong somewhere: where, why and what to do.
    #[error(transparent)]
    File(#[from] FileError),
    /// The run's state directory (`.skep/`) could not be written or read.
    #[error("cannot use {path}")]
    State {
        /// The file or directory.
        path: PathBuf,
        /// The underlying failure.
        #[source]
        source: std::io::Error,
    },
    /// A run record in history is not valid JSON.
    #[error("run record {path} is corrupt: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The parser's complaint.
        reason: String,
    },
    /// No run by that id (or baseline by that name) exists.
    #[error("no run {what} in {dir}; `skep profile` lists what is there")]
    NoSuchRun {
        /// The id or name asked for.
        what: String,
        /// The state directory searched.
        dir: PathBuf,
    },
}

impl From<Invalid> for WorkflowError {
    fn from(invalid: Invalid) -> Self {
        WorkflowError::File(FileError::Invalid(invalid))
    }
}

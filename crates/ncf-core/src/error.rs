//! The one error type of ncf-core. Every variant says what went wrong and where;
//! binaries print it once as `tool: <message>` and exit 1.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be opened, read or written.
    /// (Not a `#[source]`: the message already includes it, and chains print once.)
    #[error("{}: {error}", path.display())]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    /// Input data is malformed: `location` is `file:line` (or `file`), `what` says what was expected.
    #[error("{location}: {what}")]
    Parse { location: String, what: String },
    /// A file is valid but does not fit what it is used with (wrong dataset, wrong shape, ...).
    #[error("{0}")]
    Invalid(String),
    /// The user asked for something impossible (K too large, output exists, ...).
    #[error("{0}")]
    Usage(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            error: source,
        }
    }
    pub fn parse(location: impl Into<String>, what: impl Into<String>) -> Self {
        Error::Parse {
            location: location.into(),
            what: what.into(),
        }
    }
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::Invalid(msg.into())
    }
    pub fn usage(msg: impl Into<String>) -> Self {
        Error::Usage(msg.into())
    }
}

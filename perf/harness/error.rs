//! The harness's error type: one line each, saying what failed and why.

use std::fmt;
use std::io;

#[derive(Debug)]
pub enum Error {
    /// A system call or file operation failed.
    Io { what: String, source: io::Error },
    /// A capture file, corpus line or measurement file is not what it should be.
    Format(String),
    /// The agent broke the SPOP contract (bad HELLO, unexpected frame, closed connection).
    Protocol(String),
    /// Something the harness needs is missing or did not start (HAProxy, the agent).
    Setup(String),
    /// Bad command-line arguments.
    Usage(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { what, source } => write!(f, "cannot {what}: {source}"),
            Error::Format(m) => write!(f, "bad input: {m}"),
            Error::Protocol(m) => write!(f, "agent protocol error: {m}"),
            Error::Setup(m) => write!(f, "setup failed: {m}"),
            Error::Usage(m) => write!(f, "usage: {m}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// `map_err(io("read x"))`.
pub fn io(what: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

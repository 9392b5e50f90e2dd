//! The seam between the SPOP agent and whatever evaluates messages (the WAF engine, or a test
//! double).
//!
//! Owns the [`Inspector`] trait, its error type, and the agent's own error codes for the
//! `error` variable. The agent calls [`Inspector::inspect`] once per message of every NOTIFY, on
//! the worker thread that owns the connection, with the message's arguments borrowed from the
//! read buffer and an [`AckWriter`] appending to the connection's write buffer.
//!
//! Must not: know about sockets or frames, or block. An inspector that cannot evaluate returns
//! `Err` (or, by accident, panics): the agent then sets `txn.coraza.error` and the request
//! passes. A fault never becomes a block.

use std::fmt;

use crate::spop::{AckWriter, Message, TypedData, VarScope};

/// Evaluates NOTIFY messages and answers with variables.
pub trait Inspector: Send + Sync + 'static {
    /// Per-worker mutable state (caches, scratch buffers), created on the worker thread after
    /// pinning, never shared.
    type Worker;

    fn new_worker(&self, worker_index: usize) -> Self::Worker;

    /// Handles one message of a NOTIFY (any name: the inspector ignores names it does not know).
    /// Appends the variables to set to `ack`. `Err` means "could not evaluate": the agent then
    /// sets the `error` variable (txn scope) and the request passes.
    ///
    /// On `Err` or a panic, whatever this call appended to `ack` is discarded. A panic is caught
    /// and logged, and `worker` is kept: it must stay usable after an unwind (reset per-request
    /// scratch at the start of each call rather than relying on the end of the previous one).
    fn inspect(
        &self,
        worker: &mut Self::Worker,
        message: &Message<'_>,
        ack: &mut AckWriter<'_>,
    ) -> Result<(), InspectError>;
}

/// "Could not evaluate this message": a static reason plus optional detail for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InspectError {
    pub reason: &'static str,
    pub detail: Option<String>,
}

impl InspectError {
    pub fn new(reason: &'static str) -> Self {
        InspectError {
            reason,
            detail: None,
        }
    }

    pub fn with_detail(reason: &'static str, detail: impl Into<String>) -> Self {
        InspectError {
            reason,
            detail: Some(detail.into()),
        }
    }
}

impl fmt::Display for InspectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.detail {
            Some(d) => write!(f, "{}: {d}", self.reason),
            None => f.write_str(self.reason),
        }
    }
}

impl std::error::Error for InspectError {}

impl From<crate::spop::EncodeError> for InspectError {
    fn from(e: crate::spop::EncodeError) -> Self {
        InspectError::with_detail("cannot encode the answer", e.to_string())
    }
}

/// Name of the variable (txn scope) the agent sets when it could not evaluate a message.
pub const ERROR_VAR: &[u8] = b"error";

/// Values the agent stores in `txn.coraza.error`. They start at 1000 so they never collide with
/// what HAProxy's own `option set-on-error error` stores in the same variable (1 to 5, 255, and
/// 256 + a DISCONNECT status); like those, they are integers, so `-m int gt 0` matches both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AgentError {
    /// The inspector returned `Err`.
    InspectFailed,
    /// The inspector panicked (caught, logged).
    InspectPanicked,
    /// The NOTIFY's message list could not be decoded.
    MalformedMessage,
}

impl AgentError {
    pub fn code(self) -> i64 {
        match self {
            AgentError::InspectFailed => 1000,
            AgentError::InspectPanicked => 1001,
            AgentError::MalformedMessage => 1002,
        }
    }

    /// The value written in the ACK.
    pub fn value(self) -> TypedData<'static> {
        TypedData::Int64(self.code())
    }
}

/// Bytes the agent keeps free at the end of every ACK so that the `error` action always fits,
/// however much the inspector wrote: action header (3), name (1 + 5), INT64 (1 + up to 10).
pub const ERROR_ACTION_RESERVE: usize = 3 + 1 + ERROR_VAR.len() + 1 + 10;

/// Writes `txn.<prefix>.error = code` (the reserve guarantees room).
pub(crate) fn set_error(ack: &mut AckWriter<'_>, error: AgentError) {
    ack.reserve(0);
    // Cannot fail: the name is valid and ERROR_ACTION_RESERVE bytes were kept free.
    let _ = ack.set_var(VarScope::Transaction, ERROR_VAR, error.value());
}

/// Answers every message with an empty ACK: evaluates nothing. For benchmarks of the agent
/// alone, and for the binary until the engine is wired in (it then logs a loud warning).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoopInspector;

impl Inspector for NoopInspector {
    type Worker = ();

    fn new_worker(&self, _worker_index: usize) -> Self::Worker {}

    fn inspect(
        &self,
        _worker: &mut Self::Worker,
        _message: &Message<'_>,
        _ack: &mut AckWriter<'_>,
    ) -> Result<(), InspectError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_action_fits_its_reserve() {
        let mut out = Vec::new();
        let mut ack = AckWriter::new(&mut out, 1, 1, 256);
        let before = ack.frame_len();
        set_error(&mut ack, AgentError::InspectPanicked);
        // INT64 1001 is 2 varint bytes; the reserve covers the 10-byte worst case.
        assert!(ack.frame_len() - before <= ERROR_ACTION_RESERVE);
    }
}

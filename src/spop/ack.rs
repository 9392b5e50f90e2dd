//! ACK frames: the list of set-var / unset-var actions answering one NOTIFY.
//!
//! `LIST-OF-ACTIONS = *( <type: u8> <nb-args: u8> <args> )`, with
//! set-var = `01 03 <scope> <name> <typed data>` and unset-var = `02 02 <scope> <name>`.
//! HAProxy stops applying actions (silently) at the first one it cannot parse, and silently
//! ignores variables whose full name does not fit its 64-byte buffer; [`AckWriter`] refuses both
//! kinds of mistakes up front so they surface as an `Err` in our code instead.

use super::data::{encode_name, encoded_name_len, Reader, TypedData};
use super::error::{DecodeError, EncodeError};
use super::frame::{finish_frame, start_frame, FrameType, FLAG_FIN, LENGTH_PREFIX};
use super::MIN_FRAME_SIZE;

/// The `var-prefix` of coraza-spoa's SPOE configuration (`option var-prefix coraza`).
pub const VAR_PREFIX: &str = "coraza";
/// HAProxy formats `"<scope>.<prefix>.<name>"` into a 64-byte buffer (NUL included).
pub const VAR_NAME_MAX: usize = 63;

const ACTION_SET_VAR: u8 = 1;
const ACTION_UNSET_VAR: u8 = 2;
/// Action type, argument count, scope.
const ACTION_HEADER: usize = 3;

/// Variable scope of an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VarScope {
    Process,
    Session,
    Transaction,
    Request,
    Response,
}

impl VarScope {
    pub fn code(self) -> u8 {
        match self {
            VarScope::Process => 0,
            VarScope::Session => 1,
            VarScope::Transaction => 2,
            VarScope::Request => 3,
            VarScope::Response => 4,
        }
    }

    pub fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0 => VarScope::Process,
            1 => VarScope::Session,
            2 => VarScope::Transaction,
            3 => VarScope::Request,
            4 => VarScope::Response,
            _ => return None,
        })
    }

    /// The scope as HAProxy spells it in variable names (`txn` in `txn.coraza.action`).
    pub fn prefix(self) -> &'static str {
        match self {
            VarScope::Process => "proc",
            VarScope::Session => "sess",
            VarScope::Transaction => "txn",
            VarScope::Request => "req",
            VarScope::Response => "res",
        }
    }

    /// Longest variable name HAProxy will accept in this scope with prefix [`VAR_PREFIX`]
    /// (52 for `txn`).
    pub fn max_name_len(self) -> usize {
        VAR_NAME_MAX - self.prefix().len() - 1 - VAR_PREFIX.len() - 1
    }
}

/// One decoded action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action<'a> {
    SetVar {
        scope: VarScope,
        name: &'a [u8],
        value: TypedData<'a>,
    },
    UnsetVar {
        scope: VarScope,
        name: &'a [u8],
    },
}

/// The actions of an ACK payload (tests, tools). Stops after the first error.
#[derive(Debug, Clone)]
pub struct AckActions<'a> {
    reader: Reader<'a>,
    failed: bool,
}

impl<'a> AckActions<'a> {
    pub fn new(payload: &'a [u8]) -> Self {
        AckActions {
            reader: Reader::new(payload),
            failed: false,
        }
    }

    fn next_action(&mut self) -> Result<Action<'a>, DecodeError> {
        let action = self.reader.u8("action type")?;
        let nb_args = self.reader.u8("action argument count")?;
        let set = match (action, nb_args) {
            (ACTION_SET_VAR, 3) => true,
            (ACTION_UNSET_VAR, 2) => false,
            _ => return Err(DecodeError::InvalidAction { action, nb_args }),
        };
        let code = self.reader.u8("variable scope")?;
        let scope = VarScope::from_code(code).ok_or(DecodeError::InvalidScope { scope: code })?;
        let name = self.reader.len_prefixed("variable name")?;
        if set {
            let value = self.reader.typed_data("variable value")?;
            Ok(Action::SetVar { scope, name, value })
        } else {
            Ok(Action::UnsetVar { scope, name })
        }
    }
}

impl<'a> Iterator for AckActions<'a> {
    type Item = Result<Action<'a>, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.reader.is_empty() {
            return None;
        }
        let item = self.next_action();
        self.failed = item.is_err();
        Some(item)
    }
}

/// Appends actions to the ACK frame being built at the end of a connection's reusable write
/// buffer. The frame is complete and valid after every call (its length is patched each time),
/// and never longer than the negotiated max-frame-size: an action that would not fit, or whose
/// name HAProxy would drop, is refused with nothing written.
#[derive(Debug)]
pub struct AckWriter<'a> {
    out: &'a mut Vec<u8>,
    /// Offset of the length prefix in `out`.
    start: usize,
    /// Offset just after the frame header: where the actions begin.
    actions_start: usize,
    /// Largest frame length allowed (the length prefix excluded).
    limit: usize,
    /// Bytes kept back from `limit` for an action the agent itself may append afterwards.
    reserved: usize,
}

impl<'a> AckWriter<'a> {
    /// Starts an ACK (FIN set) answering NOTIFY `(stream_id, frame_id)`. A `max_frame_size`
    /// below SPOP's minimum of 256 is raised to it.
    pub fn new(out: &'a mut Vec<u8>, stream_id: u64, frame_id: u64, max_frame_size: u32) -> Self {
        let start = start_frame(out, FrameType::Ack, FLAG_FIN, stream_id, frame_id);
        finish_frame(out, start);
        let actions_start = out.len();
        let limit = usize::try_from(max_frame_size.max(MIN_FRAME_SIZE)).unwrap_or(usize::MAX);
        AckWriter {
            out,
            start,
            actions_start,
            limit,
            reserved: 0,
        }
    }

    /// `set-var(scope, name, value)`; a NULL value makes HAProxy unset the variable.
    pub fn set_var(
        &mut self,
        scope: VarScope,
        name: &[u8],
        value: TypedData<'_>,
    ) -> Result<(), EncodeError> {
        check_name(scope, name)?;
        let needed = ACTION_HEADER + encoded_name_len(name) + value.encoded_len();
        self.ensure_room(needed)?;
        self.out
            .extend_from_slice(&[ACTION_SET_VAR, 3, scope.code()]);
        encode_name(name, self.out);
        value.encode(self.out);
        finish_frame(self.out, self.start);
        Ok(())
    }

    /// `unset-var(scope, name)`.
    pub fn unset_var(&mut self, scope: VarScope, name: &[u8]) -> Result<(), EncodeError> {
        check_name(scope, name)?;
        let needed = ACTION_HEADER + encoded_name_len(name);
        self.ensure_room(needed)?;
        self.out
            .extend_from_slice(&[ACTION_UNSET_VAR, 2, scope.code()]);
        encode_name(name, self.out);
        finish_frame(self.out, self.start);
        Ok(())
    }

    /// Current frame length (the length prefix excluded).
    pub fn frame_len(&self) -> usize {
        self.out.len() - self.start - LENGTH_PREFIX
    }

    /// Bytes still available for actions.
    pub fn remaining(&self) -> usize {
        self.limit
            .saturating_sub(self.reserved)
            .saturating_sub(self.frame_len())
    }

    /// No action written yet.
    pub fn is_empty(&self) -> bool {
        self.out.len() == self.actions_start
    }

    /// The frame so far, length prefix included.
    pub fn frame(&self) -> &[u8] {
        self.out.get(self.start..).unwrap_or(&[])
    }

    /// Keeps `bytes` back from what callers may use, so the agent can always append its own
    /// final action (the `error` variable) afterwards.
    pub(crate) fn reserve(&mut self, bytes: usize) {
        self.reserved = bytes;
    }

    /// A point to [`AckWriter::rollback`] to.
    pub(crate) fn checkpoint(&self) -> usize {
        self.out.len()
    }

    /// Drops every action written after `checkpoint`.
    pub(crate) fn rollback(&mut self, checkpoint: usize) {
        if checkpoint >= self.actions_start && checkpoint <= self.out.len() {
            self.out.truncate(checkpoint);
            finish_frame(self.out, self.start);
        }
    }

    fn ensure_room(&self, needed: usize) -> Result<(), EncodeError> {
        let available = self.remaining();
        if needed > available {
            return Err(EncodeError::FrameFull { needed, available });
        }
        Ok(())
    }
}

/// HAProxy keeps a variable only if `<scope>.<prefix>.<name>` fits 63 bytes and uses
/// `[A-Za-z0-9._]`; anything else it drops without a word, so we refuse it loudly.
fn check_name(scope: VarScope, name: &[u8]) -> Result<(), EncodeError> {
    if name.is_empty()
        || !name
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_')
    {
        return Err(EncodeError::InvalidName);
    }
    let max = scope.max_name_len();
    if name.len() > max {
        return Err(EncodeError::NameTooLong {
            len: name.len(),
            max,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spop::frame::split_frame;

    fn decode_actions(frame: &[u8]) -> Vec<Action<'_>> {
        let (f, used) = split_frame(frame, u32::MAX).unwrap().unwrap();
        assert_eq!(used, frame.len());
        AckActions::new(f.payload)
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn writes_and_reads_back() {
        let mut out = Vec::new();
        let mut ack = AckWriter::new(&mut out, 8, 1, 16380);
        assert!(ack.is_empty());
        ack.set_var(VarScope::Transaction, b"action", TypedData::String(b"deny"))
            .unwrap();
        ack.set_var(VarScope::Transaction, b"status", TypedData::Int64(403))
            .unwrap();
        ack.unset_var(VarScope::Request, b"x.y_z").unwrap();
        assert!(!ack.is_empty());
        let frame = ack.frame().to_vec();
        assert_eq!(
            decode_actions(&frame),
            vec![
                Action::SetVar {
                    scope: VarScope::Transaction,
                    name: b"action",
                    value: TypedData::String(b"deny")
                },
                Action::SetVar {
                    scope: VarScope::Transaction,
                    name: b"status",
                    value: TypedData::Int64(403)
                },
                Action::UnsetVar {
                    scope: VarScope::Request,
                    name: b"x.y_z"
                },
            ]
        );
    }

    /// docs/spop.md §1.4: with prefix `coraza`, a txn name of 53 bytes or more is dropped.
    #[test]
    fn name_limits() {
        assert_eq!(VarScope::Transaction.max_name_len(), 52);
        assert_eq!(VarScope::Process.max_name_len(), 51);
        let mut out = Vec::new();
        let mut ack = AckWriter::new(&mut out, 0, 1, 16380);
        ack.set_var(VarScope::Transaction, &[b'a'; 52], TypedData::Null)
            .unwrap();
        let before = ack.frame_len();
        assert_eq!(
            ack.set_var(VarScope::Transaction, &[b'a'; 53], TypedData::Null),
            Err(EncodeError::NameTooLong { len: 53, max: 52 })
        );
        assert_eq!(
            ack.unset_var(VarScope::Session, &[b'a'; 52]),
            Err(EncodeError::NameTooLong { len: 52, max: 51 })
        );
        for bad in [&b""[..], b"a-b", b"a b", b"caf\xe9"] {
            assert_eq!(
                ack.set_var(VarScope::Transaction, bad, TypedData::Null),
                Err(EncodeError::InvalidName)
            );
        }
        assert_eq!(ack.frame_len(), before, "refused actions write nothing");
    }

    #[test]
    fn frame_never_exceeds_max_frame_size() {
        let mut out = vec![0xaa; 3]; // earlier frames in the same write buffer
        let mut ack = AckWriter::new(&mut out, 1, 1, 256);
        let value = [b'v'; 100];
        let mut written = 0;
        loop {
            match ack.set_var(VarScope::Transaction, b"data", TypedData::Binary(&value)) {
                Ok(()) => written += 1,
                Err(EncodeError::FrameFull { needed, available }) => {
                    assert!(needed > available);
                    break;
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(written, 2);
        assert!(ack.frame_len() <= 256);
        // A small action still fits in what is left.
        ack.set_var(VarScope::Transaction, b"id", TypedData::Int32(1))
            .unwrap();
        assert!(ack.frame_len() <= 256);
        assert_eq!(&out[..3], &[0xaa; 3]);
    }

    #[test]
    fn reserve_and_rollback() {
        let mut out = Vec::new();
        let mut ack = AckWriter::new(&mut out, 1, 1, 256);
        ack.reserve(40);
        let header = ack.frame_len();
        assert_eq!(ack.remaining(), 256 - 40 - header);
        let cp = ack.checkpoint();
        ack.set_var(VarScope::Transaction, b"a", TypedData::Int32(1))
            .unwrap();
        ack.rollback(cp);
        assert!(ack.is_empty());
        assert_eq!(ack.frame_len(), header);
        let frame = ack.frame().to_vec();
        assert!(decode_actions(&frame).is_empty());
    }

    #[test]
    fn malformed_action_lists() {
        let table: &[(&[u8], DecodeError)] = &[
            (
                &[0x03, 0x03],
                DecodeError::InvalidAction {
                    action: 3,
                    nb_args: 3,
                },
            ),
            (
                &[0x01, 0x02],
                DecodeError::InvalidAction {
                    action: 1,
                    nb_args: 2,
                },
            ),
            (&[0x01, 0x03, 0x05], DecodeError::InvalidScope { scope: 5 }),
            (
                &[0x02, 0x02, 0x02, 0x04, b'a'],
                DecodeError::Truncated {
                    what: "variable name",
                },
            ),
            (
                &[0x01, 0x03, 0x02, 0x01, b'a'],
                DecodeError::Truncated {
                    what: "variable value",
                },
            ),
            (
                &[0x01],
                DecodeError::Truncated {
                    what: "action argument count",
                },
            ),
        ];
        for (payload, err) in table {
            let mut it = AckActions::new(payload);
            assert_eq!(it.next(), Some(Err(err.clone())), "{payload:02x?}");
            assert_eq!(it.next(), None);
        }
    }
}

//! NOTIFY payloads: a list of messages, each a name and its typed arguments.
//!
//! `LIST-OF-MESSAGES = *( <name> <nb-args: u8> nb-args * ( <name> <typed data> ) )`.
//! Arguments arrive in configured order; an argument declared without `name=` has an empty name.

use super::data::{encode_name, Reader, TypedData};
use super::error::{DecodeError, EncodeError};
use super::frame::{finish_frame, start_frame, FrameType, FLAG_FIN};

/// The messages of a NOTIFY payload. Each item walks (and so validates) its arguments; after an
/// error the iterator stops. Iterating it to the end is how a caller validates a whole NOTIFY
/// before acting on any message of it.
#[derive(Debug, Clone)]
pub struct Messages<'a> {
    reader: Reader<'a>,
    failed: bool,
}

impl<'a> Messages<'a> {
    pub fn new(payload: &'a [u8]) -> Self {
        Messages {
            reader: Reader::new(payload),
            failed: false,
        }
    }

    fn next_message(&mut self) -> Result<Message<'a>, DecodeError> {
        let name = self.reader.len_prefixed("message name")?;
        let nb_args = self.reader.u8("argument count")?;
        let start = self.reader.position();
        for _ in 0..nb_args {
            self.reader.len_prefixed("argument name")?;
            self.reader.typed_data("argument value")?;
        }
        Ok(Message {
            name,
            nb_args,
            args: self.reader.since(start),
        })
    }
}

impl<'a> Iterator for Messages<'a> {
    type Item = Result<Message<'a>, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.reader.is_empty() {
            return None;
        }
        let item = self.next_message();
        self.failed = item.is_err();
        Some(item)
    }
}

/// One message of a NOTIFY (e.g. `coraza-req`). Its arguments stay encoded in the frame and are
/// decoded on demand, borrowing the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message<'a> {
    pub name: &'a [u8],
    nb_args: u8,
    args: &'a [u8],
}

impl<'a> Message<'a> {
    /// Number of arguments the message declares.
    pub fn nb_args(&self) -> usize {
        usize::from(self.nb_args)
    }

    /// The `(name, value)` arguments in order. A message obtained from [`Messages`] has already
    /// been walked once, so these never fail in practice; the `Result` keeps the API total.
    pub fn args(&self) -> Args<'a> {
        Args {
            reader: Reader::new(self.args),
            remaining: self.nb_args,
            failed: false,
        }
    }

    /// The first argument named `name` (names are matched byte for byte).
    pub fn arg(&self, name: &[u8]) -> Option<TypedData<'a>> {
        self.args()
            .map_while(Result::ok)
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v)
    }
}

/// Iterator over a message's arguments; see [`Message::args`].
#[derive(Debug, Clone)]
pub struct Args<'a> {
    reader: Reader<'a>,
    remaining: u8,
    failed: bool,
}

impl<'a> Iterator for Args<'a> {
    type Item = Result<(&'a [u8], TypedData<'a>), DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let item = (|| {
            let name = self.reader.len_prefixed("argument name")?;
            let value = self.reader.typed_data("argument value")?;
            Ok((name, value))
        })();
        self.failed = item.is_err();
        Some(item)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(usize::from(self.remaining)))
    }
}

/// Builds a NOTIFY frame (HAProxy's side) in a caller-owned buffer: for tests, tools and the
/// benchmark. The frame length is kept up to date after every message.
#[derive(Debug)]
pub struct NotifyWriter<'a> {
    out: &'a mut Vec<u8>,
    start: usize,
}

impl<'a> NotifyWriter<'a> {
    /// Starts a NOTIFY with FIN set.
    pub fn new(out: &'a mut Vec<u8>, stream_id: u64, frame_id: u64) -> Self {
        let start = start_frame(out, FrameType::Notify, FLAG_FIN, stream_id, frame_id);
        finish_frame(out, start);
        NotifyWriter { out, start }
    }

    /// Appends one message with its arguments.
    pub fn message(
        &mut self,
        name: &[u8],
        args: &[(&[u8], TypedData<'_>)],
    ) -> Result<(), EncodeError> {
        let nb_args =
            u8::try_from(args.len()).map_err(|_| EncodeError::TooManyArgs { count: args.len() })?;
        encode_name(name, self.out);
        self.out.push(nb_args);
        for (arg_name, value) in args {
            encode_name(arg_name, self.out);
            value.encode(self.out);
        }
        finish_frame(self.out, self.start);
        Ok(())
    }

    /// Appends raw payload bytes (for malformed-input tests).
    pub fn raw(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
        finish_frame(self.out, self.start);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spop::frame::split_frame;
    use std::net::Ipv4Addr;

    #[test]
    fn messages_and_arguments_borrow_the_frame() {
        let mut out = Vec::new();
        let mut w = NotifyWriter::new(&mut out, 0, 1);
        w.message(
            b"coraza-req",
            &[
                (b"app", TypedData::String(b"sample_app")),
                (b"src-ip", TypedData::Ipv4(Ipv4Addr::LOCALHOST)),
                (b"", TypedData::Null),
                (b"body", TypedData::Binary(b"\xff\x00")),
            ],
        )
        .unwrap();
        w.message(b"other", &[]).unwrap();
        let (frame, _) = split_frame(&out, 16380).unwrap().unwrap();
        let msgs: Vec<_> = Messages::new(frame.payload)
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(msgs.len(), 2);
        assert_eq!(msgs[0].name, b"coraza-req");
        assert_eq!(msgs[0].nb_args(), 4);
        assert_eq!(msgs[0].arg(b"app"), Some(TypedData::String(b"sample_app")));
        assert_eq!(msgs[0].arg(b"body"), Some(TypedData::Binary(b"\xff\x00")));
        assert_eq!(msgs[0].arg(b""), Some(TypedData::Null));
        assert_eq!(msgs[0].arg(b"missing"), None);
        assert_eq!(msgs[1].name, b"other");
        assert_eq!(msgs[1].args().count(), 0);
    }

    #[test]
    fn malformed_message_lists() {
        let table: &[(&[u8], DecodeError)] = &[
            // Name length past the end.
            (
                &[0x05, b'a'],
                DecodeError::Truncated {
                    what: "message name",
                },
            ),
            // Missing argument count.
            (
                &[0x01, b'm'],
                DecodeError::Truncated {
                    what: "argument count",
                },
            ),
            // Declares two arguments, carries one.
            (
                &[0x01, b'm', 0x02, 0x01, b'a', 0x00],
                DecodeError::Truncated {
                    what: "argument name",
                },
            ),
            // Reserved type 0x0a.
            (
                &[0x01, b'm', 0x01, 0x01, b'a', 0x0a],
                DecodeError::ReservedDataType {
                    type_byte: 0x0a,
                    what: "argument value",
                },
            ),
            // STRING length past the end.
            (
                &[0x01, b'm', 0x01, 0x01, b'a', 0x08, 0x09, b'x'],
                DecodeError::Truncated {
                    what: "argument value",
                },
            ),
        ];
        for (payload, err) in table {
            let mut it = Messages::new(payload);
            assert_eq!(it.next(), Some(Err(err.clone())), "{payload:02x?}");
            assert_eq!(it.next(), None);
        }
    }

    #[test]
    fn too_many_arguments_are_refused() {
        let mut out = Vec::new();
        let args = vec![(&b"a"[..], TypedData::Null); 256];
        let mut w = NotifyWriter::new(&mut out, 0, 1);
        assert_eq!(
            w.message(b"m", &args),
            Err(EncodeError::TooManyArgs { count: 256 })
        );
    }
}

//! Decode and encode errors, the DISCONNECT status table, and the one mapping between them.

use std::fmt;

use super::varint::VarintError;

/// The `status-code` of a DISCONNECT frame. Codes and messages are HAProxy's (2.6 and 3.x share
/// them); the message is what we put in the `message` key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DisconnectStatus {
    Normal,
    Io,
    Timeout,
    TooBig,
    Invalid,
    NoVersion,
    NoFrameSize,
    NoCapabilities,
    BadVersion,
    BadFrameSize,
    FragmentationNotSupported,
    InterlacedFrames,
    FrameIdNotFound,
    Resource,
    Unknown,
}

impl DisconnectStatus {
    /// Every status, in code order.
    pub const ALL: [DisconnectStatus; 15] = [
        Self::Normal,
        Self::Io,
        Self::Timeout,
        Self::TooBig,
        Self::Invalid,
        Self::NoVersion,
        Self::NoFrameSize,
        Self::NoCapabilities,
        Self::BadVersion,
        Self::BadFrameSize,
        Self::FragmentationNotSupported,
        Self::InterlacedFrames,
        Self::FrameIdNotFound,
        Self::Resource,
        Self::Unknown,
    ];

    pub fn code(self) -> u32 {
        match self {
            Self::Normal => 0,
            Self::Io => 1,
            Self::Timeout => 2,
            Self::TooBig => 3,
            Self::Invalid => 4,
            Self::NoVersion => 5,
            Self::NoFrameSize => 6,
            Self::NoCapabilities => 7,
            Self::BadVersion => 8,
            Self::BadFrameSize => 9,
            Self::FragmentationNotSupported => 10,
            Self::InterlacedFrames => 11,
            Self::FrameIdNotFound => 12,
            Self::Resource => 13,
            Self::Unknown => 99,
        }
    }

    /// The status for a code received from the peer; codes outside the table are `Unknown`.
    pub fn from_code(code: u64) -> Self {
        Self::ALL
            .iter()
            .copied()
            .find(|s| u64::from(s.code()) == code)
            .unwrap_or(Self::Unknown)
    }

    /// HAProxy's message string for this status.
    pub fn message(self) -> &'static str {
        match self {
            Self::Normal => "normal",
            Self::Io => "I/O error",
            Self::Timeout => "a timeout occurred",
            Self::TooBig => "frame is too big",
            Self::Invalid => "invalid frame received",
            Self::NoVersion => "version value not found",
            Self::NoFrameSize => "max-frame-size value not found",
            Self::NoCapabilities => "capabilities value not found",
            Self::BadVersion => "unsupported version",
            Self::BadFrameSize => "max-frame-size too big or too small",
            Self::FragmentationNotSupported => "fragmentation not supported",
            Self::InterlacedFrames => "invalid interlaced frames",
            Self::FrameIdNotFound => "frame-id not found",
            Self::Resource => "resource allocation error",
            Self::Unknown => "an unknown error occurred",
        }
    }
}

impl fmt::Display for DisconnectStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.code(), self.message())
    }
}

/// Why bytes from the peer could not be decoded. `what` names the field being read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The frame (or payload) ended inside `what`.
    Truncated { what: &'static str },
    /// A varint longer than 10 bytes or above `u64::MAX`.
    OverlongVarint { what: &'static str },
    /// A length above the negotiated (or, before HELLO, configured) max-frame-size.
    FrameTooBig { len: u32, max: u32 },
    /// A length too small to hold a frame header.
    FrameTooSmall { len: u32 },
    /// A frame without FIN, or a continuation fragment: we never announce fragmentation.
    Fragmented { frame_type: u8 },
    /// A frame that is valid but not allowed here (e.g. NOTIFY before HELLO, a second HELLO).
    UnexpectedFrame {
        frame_type: u8,
        reason: &'static str,
    },
    /// A HELLO or DISCONNECT whose stream-id / frame-id are not 0.
    NonZeroIds { frame_type: u8 },
    /// A typed-data type in the reserved range 10..=15.
    ReservedDataType { type_byte: u8, what: &'static str },
    /// A value of the wrong type for a known key.
    WrongType { what: &'static str, type_byte: u8 },
    /// An integer that does not fit the declared type (INT32, UINT32, max-frame-size).
    IntegerOutOfRange { what: &'static str, value: u64 },
    /// An empty KV key.
    EmptyKey,
    /// An unknown action type or a wrong argument count in an ACK.
    InvalidAction { action: u8, nb_args: u8 },
    /// A variable scope outside 0..=4.
    InvalidScope { scope: u8 },
    /// HELLO without `supported-versions` / `version`.
    MissingVersion,
    /// HELLO without `max-frame-size`.
    MissingMaxFrameSize,
    /// No version we speak (we speak only 2.0).
    UnsupportedVersion,
    /// max-frame-size below 256 (or above what the peer allowed).
    BadMaxFrameSize { value: u64 },
}

impl DecodeError {
    /// The DISCONNECT status this error earns when it ends a connection. This is the only place
    /// where decode errors meet status codes.
    pub fn disconnect_status(&self) -> DisconnectStatus {
        match self {
            DecodeError::FrameTooBig { .. } => DisconnectStatus::TooBig,
            DecodeError::Fragmented { .. } => DisconnectStatus::FragmentationNotSupported,
            DecodeError::MissingVersion => DisconnectStatus::NoVersion,
            DecodeError::MissingMaxFrameSize => DisconnectStatus::NoFrameSize,
            DecodeError::UnsupportedVersion => DisconnectStatus::BadVersion,
            DecodeError::BadMaxFrameSize { .. } => DisconnectStatus::BadFrameSize,
            DecodeError::Truncated { .. }
            | DecodeError::OverlongVarint { .. }
            | DecodeError::FrameTooSmall { .. }
            | DecodeError::UnexpectedFrame { .. }
            | DecodeError::NonZeroIds { .. }
            | DecodeError::ReservedDataType { .. }
            | DecodeError::WrongType { .. }
            | DecodeError::IntegerOutOfRange { .. }
            | DecodeError::EmptyKey
            | DecodeError::InvalidAction { .. }
            | DecodeError::InvalidScope { .. } => DisconnectStatus::Invalid,
        }
    }

    pub(crate) fn from_varint(err: VarintError, what: &'static str) -> Self {
        match err {
            VarintError::Truncated => DecodeError::Truncated { what },
            VarintError::Overlong => DecodeError::OverlongVarint { what },
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Truncated { what } => write!(f, "truncated {what}"),
            DecodeError::OverlongVarint { what } => write!(f, "overlong varint in {what}"),
            DecodeError::FrameTooBig { len, max } => {
                write!(f, "frame length {len} exceeds max-frame-size {max}")
            }
            DecodeError::FrameTooSmall { len } => {
                write!(f, "frame length {len} cannot hold a frame header")
            }
            DecodeError::Fragmented { frame_type } => {
                write!(
                    f,
                    "fragmented frame (type {frame_type}) but fragmentation was not announced"
                )
            }
            DecodeError::UnexpectedFrame { frame_type, reason } => {
                write!(f, "unexpected frame type {frame_type}: {reason}")
            }
            DecodeError::NonZeroIds { frame_type } => {
                write!(
                    f,
                    "frame type {frame_type} must have stream-id and frame-id 0"
                )
            }
            DecodeError::ReservedDataType { type_byte, what } => {
                write!(f, "reserved data type {type_byte:#04x} in {what}")
            }
            DecodeError::WrongType { what, type_byte } => {
                write!(f, "{what} has unexpected data type {type_byte:#04x}")
            }
            DecodeError::IntegerOutOfRange { what, value } => {
                write!(f, "{what} value {value} out of range")
            }
            DecodeError::EmptyKey => f.write_str("empty key in KV list"),
            DecodeError::InvalidAction { action, nb_args } => {
                write!(f, "invalid action type {action} with {nb_args} arguments")
            }
            DecodeError::InvalidScope { scope } => write!(f, "invalid variable scope {scope}"),
            DecodeError::MissingVersion => f.write_str("HELLO has no version"),
            DecodeError::MissingMaxFrameSize => f.write_str("HELLO has no max-frame-size"),
            DecodeError::UnsupportedVersion => {
                f.write_str("HELLO offers no supported version (need 2.0)")
            }
            DecodeError::BadMaxFrameSize { value } => {
                write!(f, "max-frame-size {value} out of range")
            }
        }
    }
}

impl std::error::Error for DecodeError {}

/// Why an action could not be appended to a frame being built. Nothing was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EncodeError {
    /// The action would make the frame longer than the negotiated max-frame-size.
    FrameFull { needed: usize, available: usize },
    /// The variable's full HAProxy name (`<scope>.<prefix>.<name>`) would exceed 63 bytes.
    NameTooLong { len: usize, max: usize },
    /// Empty, or a character HAProxy does not allow in variable names (`[A-Za-z0-9._]`).
    InvalidName,
    /// More arguments than one NOTIFY message can carry (its count is a `u8`).
    TooManyArgs { count: usize },
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeError::FrameFull { needed, available } => {
                write!(
                    f,
                    "action needs {needed} bytes but only {available} fit in the frame"
                )
            }
            EncodeError::NameTooLong { len, max } => {
                write!(f, "variable name of {len} bytes exceeds {max}")
            }
            EncodeError::InvalidName => {
                f.write_str("variable name is empty or has characters outside [A-Za-z0-9._]")
            }
            EncodeError::TooManyArgs { count } => {
                write!(f, "{count} arguments exceed the 255 a message can carry")
            }
        }
    }
}

impl std::error::Error for EncodeError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_round_trip() {
        for s in DisconnectStatus::ALL {
            assert_eq!(DisconnectStatus::from_code(u64::from(s.code())), s);
        }
        assert_eq!(DisconnectStatus::from_code(42), DisconnectStatus::Unknown);
    }

    /// The mapping HAProxy itself applies to the same faults (docs/spop.md §7.1, §7.4).
    #[test]
    fn decode_errors_map_to_haproxy_statuses() {
        let table: &[(DecodeError, u32)] = &[
            (
                DecodeError::FrameTooBig {
                    len: 20000,
                    max: 16380,
                },
                3,
            ),
            (DecodeError::Truncated { what: "x" }, 4),
            (DecodeError::OverlongVarint { what: "x" }, 4),
            (DecodeError::EmptyKey, 4),
            (DecodeError::MissingVersion, 5),
            (DecodeError::MissingMaxFrameSize, 6),
            (DecodeError::UnsupportedVersion, 8),
            (DecodeError::BadMaxFrameSize { value: 100 }, 9),
            (DecodeError::Fragmented { frame_type: 0 }, 10),
        ];
        for (err, code) in table {
            assert_eq!(err.disconnect_status().code(), *code, "{err}");
        }
    }
}

//! The `healthcheck` client: plays HAProxy's `option spop-check` against a running agent.
//!
//! Sends the exact health-check HAPROXY-HELLO HAProxy 2.6 sends (max-frame-size 16380, empty
//! capabilities, `healthcheck` true) and expects a valid AGENT-HELLO back within the deadline.
//! Blocking std I/O: this runs in its own short-lived process (the Docker HEALTHCHECK).

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::spop::{self, AgentHello, DecodeError, Disconnect, Frame, FrameType};

/// The Docker HEALTHCHECK's budget for the whole exchange.
pub const HEALTHCHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// max-frame-size announced by the check, as HAProxy's own check does.
const CHECK_FRAME_SIZE: u32 = 16380;

/// What a healthy agent answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthReport {
    pub max_frame_size: u32,
    pub capabilities: String,
}

#[derive(Debug)]
pub enum HealthcheckError {
    Connect(io::Error),
    Io(io::Error),
    Timeout,
    Closed,
    Protocol(DecodeError),
    UnexpectedFrame(u8),
    Disconnected { status: u32, message: String },
}

impl fmt::Display for HealthcheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HealthcheckError::Connect(e) => write!(f, "cannot connect: {e}"),
            HealthcheckError::Io(e) => write!(f, "I/O error: {e}"),
            HealthcheckError::Timeout => f.write_str("no AGENT-HELLO in time"),
            HealthcheckError::Closed => f.write_str("connection closed before AGENT-HELLO"),
            HealthcheckError::Protocol(e) => write!(f, "invalid AGENT-HELLO: {e}"),
            HealthcheckError::UnexpectedFrame(t) => {
                write!(f, "expected AGENT-HELLO, got frame type {t}")
            }
            HealthcheckError::Disconnected { status, message } => {
                write!(f, "agent disconnected with status {status}: {message}")
            }
        }
    }
}

impl std::error::Error for HealthcheckError {}

/// Connects to `addr`, sends the health-check HELLO, and validates the answer, all within
/// `timeout`.
pub fn healthcheck(addr: SocketAddr, timeout: Duration) -> Result<HealthReport, HealthcheckError> {
    let deadline = Instant::now() + timeout;
    let remaining = || {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or(HealthcheckError::Timeout)
    };
    let mut stream =
        TcpStream::connect_timeout(&addr, remaining()?).map_err(|e| match e.kind() {
            io::ErrorKind::TimedOut => HealthcheckError::Timeout,
            _ => HealthcheckError::Connect(e),
        })?;
    let mut hello = Vec::new();
    spop::encode_haproxy_hello(&mut hello, CHECK_FRAME_SIZE, b"", None, true);
    stream
        .set_write_timeout(Some(remaining()?))
        .map_err(HealthcheckError::Io)?;
    stream.write_all(&hello).map_err(io_error)?;

    let mut prefix = [0u8; spop::LENGTH_PREFIX];
    read_exact(&mut stream, &mut prefix, remaining()?)?;
    let total = spop::peek_frame_len(&prefix, CHECK_FRAME_SIZE)
        .map_err(HealthcheckError::Protocol)?
        .ok_or(HealthcheckError::Closed)?;
    let mut body = vec![0u8; total.saturating_sub(spop::LENGTH_PREFIX)];
    read_exact(&mut stream, &mut body, remaining()?)?;
    let frame = Frame::decode(&body).map_err(HealthcheckError::Protocol)?;
    match frame.header.frame_type {
        FrameType::AgentHello => {
            let h = AgentHello::decode(frame.payload).map_err(HealthcheckError::Protocol)?;
            if h.max_frame_size > CHECK_FRAME_SIZE {
                return Err(HealthcheckError::Protocol(DecodeError::BadMaxFrameSize {
                    value: u64::from(h.max_frame_size),
                }));
            }
            Ok(HealthReport {
                max_frame_size: h.max_frame_size,
                capabilities: String::from_utf8_lossy(h.capabilities).into_owned(),
            })
        }
        FrameType::AgentDisconnect => {
            let d = Disconnect::decode(frame.payload).map_err(HealthcheckError::Protocol)?;
            Err(HealthcheckError::Disconnected {
                status: d.status_code,
                message: String::from_utf8_lossy(d.message).into_owned(),
            })
        }
        other => Err(HealthcheckError::UnexpectedFrame(other.code())),
    }
}

fn read_exact(
    stream: &mut TcpStream,
    buf: &mut [u8],
    timeout: Duration,
) -> Result<(), HealthcheckError> {
    stream
        .set_read_timeout(Some(timeout))
        .map_err(HealthcheckError::Io)?;
    stream.read_exact(buf).map_err(io_error)
}

fn io_error(e: io::Error) -> HealthcheckError {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => HealthcheckError::Timeout,
        io::ErrorKind::UnexpectedEof => HealthcheckError::Closed,
        _ => HealthcheckError::Io(e),
    }
}

//! The SPOP agent's server: thread-per-core workers, listeners, signals and drain.
//!
//! Owns the process-level shape: `workers` threads (one per available core by default), each
//! pinned with `core_affinity`, each with its own mio `Poll` and its own `SO_REUSEPORT` listener
//! on the configured address, so the kernel spreads connections and a connection belongs to one
//! worker for its life. Inside a worker, [`connection::Connection`] is the sans-IO protocol
//! state machine and `worker` is the event loop that feeds it.
//!
//! Shutdown (SIGTERM/SIGINT in [`run`], or [`ServerHandle::shutdown`]): each worker is poked
//! through its `mio::Waker` (the only cross-thread signal), stops accepting, answers the frames
//! it has already received, sends AGENT-DISCONNECT, and exits when its connections are closed
//! or after a bounded drain.
//!
//! Must not: share mutable state between workers, take locks on the request path, or let a
//! fault in an inspector or in a peer's bytes stop a worker.

pub mod connection;
mod healthcheck;
mod logging;
pub(crate) mod panic_report;
mod worker;

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use log::{error, info, warn};
use mio::{Interest, Poll, Waker};
use socket2::{Domain, Protocol, Socket, Type};

use crate::config::Config;
use crate::inspect::Inspector;

pub use healthcheck::{healthcheck, HealthReport, HealthcheckError, HEALTHCHECK_TIMEOUT};
pub use logging::{format_json_line, init_logging};

/// Listen backlog: HAProxy 2.6 opens about one connection per concurrent request in a burst.
const LISTEN_BACKLOG: i32 = 1024;

/// A server-level failure, in one line.
#[derive(Debug)]
pub enum ServerError {
    Bind {
        addr: SocketAddr,
        source: io::Error,
    },
    Setup {
        what: &'static str,
        source: io::Error,
    },
    Signals(io::Error),
    /// A worker thread ended with a panic that escaped its own recovery.
    WorkerLost {
        index: usize,
    },
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerError::Bind { addr, source } => write!(f, "cannot listen on {addr}: {source}"),
            ServerError::Setup { what, source } => write!(f, "cannot {what}: {source}"),
            ServerError::Signals(e) => write!(f, "cannot install signal handlers: {e}"),
            ServerError::WorkerLost { index } => write!(f, "worker {index} died"),
        }
    }
}

impl std::error::Error for ServerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ServerError::Bind { source, .. } | ServerError::Setup { source, .. } => Some(source),
            ServerError::Signals(e) => Some(e),
            ServerError::WorkerLost { .. } => None,
        }
    }
}

/// Starts and stops the workers.
pub struct Server;

impl Server {
    /// Binds one listener per worker on `config.bind` (port 0 picks one free port for all),
    /// starts the workers and returns at once. Bind errors are reported here, before any
    /// worker runs.
    pub fn start<I: Inspector>(
        config: &Config,
        inspector: Arc<I>,
    ) -> Result<ServerHandle, ServerError> {
        panic_report::install_hook();
        let workers = config.worker_count().max(1);
        let first = bind_listener(config.bind)?;
        let local_addr = first.local_addr().map_err(|source| ServerError::Setup {
            what: "read the listener's address",
            source,
        })?;
        let mut listeners = vec![first];
        for _ in 1..workers {
            listeners.push(bind_listener(local_addr)?);
        }
        let cores = core_affinity::get_core_ids().unwrap_or_default();
        let mut handle = ServerHandle {
            local_addr,
            wakers: Vec::new(),
            threads: Vec::new(),
        };
        for (index, listener) in listeners.into_iter().enumerate() {
            let setup = |what| move |source| ServerError::Setup { what, source };
            let poll = Poll::new().map_err(setup("create a poll instance"))?;
            let waker =
                Waker::new(poll.registry(), worker::WAKER).map_err(setup("create a waker"))?;
            let mut listener = mio::net::TcpListener::from_std(listener);
            poll.registry()
                .register(&mut listener, worker::LISTENER, Interest::READABLE)
                .map_err(setup("register the listener"))?;
            let core = if cores.is_empty() {
                None
            } else {
                cores.get(index % cores.len()).copied()
            };
            let worker_setup = worker::WorkerSetup {
                index,
                core,
                poll,
                listener,
                max_frame_size: config.limits.max_frame_size,
            };
            let inspector = Arc::clone(&inspector);
            let thread = std::thread::Builder::new()
                .name(format!("coraza-worker-{index}"))
                .spawn(move || worker::run(worker_setup, inspector))
                .map_err(setup("spawn a worker thread"))?;
            // On an error above, dropping `handle` stops the workers already started.
            handle.wakers.push(waker);
            handle.threads.push(thread);
        }
        info!("SPOP agent listening on {local_addr} with {workers} workers");
        Ok(handle)
    }
}

/// A running server. Dropping it shuts the server down (and waits for the drain).
pub struct ServerHandle {
    local_addr: SocketAddr,
    wakers: Vec<Waker>,
    threads: Vec<JoinHandle<()>>,
}

impl ServerHandle {
    /// The address the workers listen on (with the real port when 0 was configured).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting, answers frames already received, sends AGENT-DISCONNECT on every
    /// connection, and returns when every worker has exited (within the drain timeout).
    pub fn shutdown(mut self) -> Result<(), ServerError> {
        self.stop()
    }

    fn stop(&mut self) -> Result<(), ServerError> {
        for (index, waker) in self.wakers.iter().enumerate() {
            if let Err(e) = waker.wake() {
                error!("cannot wake worker {index}: {e}");
            }
        }
        let mut result = Ok(());
        for (index, thread) in self.threads.drain(..).enumerate() {
            if thread.join().is_err() {
                result = Err(ServerError::WorkerLost { index });
            }
        }
        self.wakers.clear();
        result
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            if let Err(e) = self.stop() {
                error!("{e}");
            }
        }
    }
}

/// Runs the agent until SIGTERM or SIGINT, then drains (at most a few seconds) and returns.
/// A second signal during the drain exits the process at once.
pub fn run<I: Inspector>(config: &Config, inspector: Arc<I>) -> Result<(), ServerError> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    use signal_hook::iterator::Signals;

    raise_fd_limit();
    // Installed before the workers start, so an early signal is not lost.
    let mut signals = Signals::new([SIGTERM, SIGINT]).map_err(ServerError::Signals)?;
    let handle = Server::start(config, inspector)?;
    let signal = signals.forever().next();
    let started = Instant::now();
    info!("signal {}: draining", signal.unwrap_or(0));
    std::thread::Builder::new()
        .name("coraza-signals".into())
        .spawn(move || {
            if let Some(again) = signals.forever().next() {
                warn!("signal {again} during drain: exiting now");
                std::process::exit(1);
            }
        })
        .map_err(|source| ServerError::Setup {
            what: "spawn the signal thread",
            source,
        })?;
    let result = handle.shutdown();
    info!(
        "stopped after {} ms of drain",
        started.elapsed().as_millis()
    );
    result
}

fn bind_listener(addr: SocketAddr) -> Result<std::net::TcpListener, ServerError> {
    let bind_err = |source| ServerError::Bind { addr, source };
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
        .map_err(bind_err)?;
    socket.set_reuse_address(true).map_err(bind_err)?;
    // One listener per worker on the same port; the kernel balances accepted connections.
    socket.set_reuse_port(true).map_err(bind_err)?;
    socket.set_nonblocking(true).map_err(bind_err)?;
    socket.bind(&addr.into()).map_err(bind_err)?;
    socket.listen(LISTEN_BACKLOG).map_err(bind_err)?;
    Ok(socket.into())
}

/// HAProxy opens a connection per concurrent request in bursts: lift the soft file-descriptor
/// limit to the hard one, as servers (and Go's runtime, which coraza-spoa uses) do.
fn raise_fd_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read/write the struct we pass, which outlives the calls.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            let wanted = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) != 0 {
                warn!("cannot raise the open-files limit above {}", limit.rlim_cur);
            }
        }
    }
}

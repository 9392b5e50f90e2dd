//! The `coraza-spoa` binary: command-line entry point.
//!
//! - `coraza-spoa [--config FILE]`: runs the SPOP agent until SIGTERM/SIGINT.
//! - `coraza-spoa healthcheck [--addr HOST:PORT]`: the Docker HEALTHCHECK (exit 0 when the agent
//!   answers HAProxy's health-check HELLO within 2 s; otherwise one line on stderr, exit 1).

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use argh::FromArgs;
use coraza_spoa::config::Config;
use coraza_spoa::inspect::NoopInspector;
use coraza_spoa::server;

/// WAF sidecar for HAProxy (SPOP agent running the OWASP Core Rule Set).
#[derive(FromArgs)]
struct Cli {
    /// print version information and exit
    #[argh(switch)]
    version: bool,

    /// path to config.yaml (default: built-in defaults, listening on 0.0.0.0:9000)
    #[argh(option)]
    config: Option<PathBuf>,

    #[argh(subcommand)]
    command: Option<Command>,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum Command {
    Healthcheck(HealthcheckCmd),
}

/// Check that an agent answers HAProxy's health-check HELLO (for Docker HEALTHCHECK).
#[derive(FromArgs)]
#[argh(subcommand, name = "healthcheck")]
struct HealthcheckCmd {
    /// agent address (default 127.0.0.1:9000)
    #[argh(option, default = "String::from(\"127.0.0.1:9000\")")]
    addr: String,
}

fn main() -> ExitCode {
    let cli: Cli = argh::from_env();
    if cli.version {
        println!("coraza-spoa {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    match cli.command {
        Some(Command::Healthcheck(cmd)) => healthcheck(&cmd.addr),
        None => run(cli.config),
    }
}

fn run(config_path: Option<PathBuf>) -> ExitCode {
    let config = match &config_path {
        Some(path) => match Config::load(path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("coraza-spoa: {e}");
                return ExitCode::FAILURE;
            }
        },
        None => Config::default(),
    };
    if let Err(e) = server::init_logging(&config.log_level, config.log_format) {
        eprintln!("coraza-spoa: cannot set up logging: {e}");
        return ExitCode::FAILURE;
    }
    if config_path.is_none() {
        log::info!("no --config given: using built-in defaults");
    }
    // Until the WAF engine is wired in, every message is answered with no variables.
    log::warn!(
        "NO RULES ARE EVALUATED: this build answers every SPOE message with an empty ACK \
         (no-op inspector); every request passes uninspected"
    );
    match server::run(&config, Arc::new(NoopInspector)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn healthcheck(addr: &str) -> ExitCode {
    let resolved: Option<SocketAddr> = addr.to_socket_addrs().ok().and_then(|mut a| a.next());
    let Some(resolved) = resolved else {
        eprintln!("healthcheck: cannot resolve {addr:?}");
        return ExitCode::FAILURE;
    };
    match server::healthcheck(resolved, server::HEALTHCHECK_TIMEOUT) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("healthcheck: {resolved}: {e}");
            ExitCode::FAILURE
        }
    }
}

//! The `coraza-spoa` binary: command-line entry point.
//!
//! - `coraza-spoa [--config FILE]`: runs the SPOP agent until SIGTERM/SIGINT.
//! - `coraza-spoa check [--rules FILE] [--log]`: the offline evaluator (JSON Lines).
//! - `coraza-spoa healthcheck [--addr HOST:PORT]`: the Docker HEALTHCHECK (exit 0 when the agent
//!   answers HAProxy's health-check HELLO within 2 s; otherwise one line on stderr, exit 1).

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use argh::FromArgs;
use coraza_spoa::audit::AuditLog;
use coraza_spoa::config::Config;
use coraza_spoa::engine::Ruleset;
use coraza_spoa::server;
use coraza_spoa::waf::Waf;

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
    Check(CheckCmd),
    Healthcheck(HealthcheckCmd),
}

/// Evaluate requests given as JSON Lines on stdin; one verdict per line on stdout.
#[derive(FromArgs)]
#[argh(subcommand, name = "check")]
struct CheckCmd {
    /// compile this SecLang file at run time instead of using the built-in ruleset
    #[argh(option)]
    rules: Option<PathBuf>,
    /// add ModSecurity-style log lines to each verdict
    #[argh(switch)]
    log: bool,
    /// compile every regex before the first request (steady-state timing)
    #[argh(switch)]
    warm_up: bool,
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
        println!("{}", coraza_spoa::builtin::version_line());
        return ExitCode::SUCCESS;
    }
    match cli.command {
        Some(Command::Check(c)) => check(c),
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
    let started = std::time::Instant::now();
    let ruleset: &'static Ruleset = match coraza_spoa::builtin::ruleset() {
        Ok(r) => Box::leak(Box::new(r)),
        Err(e) => {
            log::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let (mut audit, sender) = match AuditLog::spawn(&config.audit) {
        Ok(x) => x,
        Err(e) => {
            log::error!("audit log: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = audit.install_sighup_handler() {
        log::error!("audit log: {e}");
        return ExitCode::FAILURE;
    }
    // Regexes compile on first use; compile the rest (and build the prefilter) in the
    // background so steady state never pays for it on the request path.
    ruleset.spawn_warm_up();
    let waf = Waf::new(ruleset, config.clone(), Some(sender));
    log::info!(
        "{}; ruleset ready in {} ms; audit log {}",
        coraza_spoa::builtin::version_line(),
        started.elapsed().as_millis(),
        config.audit.path.display()
    );
    let served = server::run(&config, Arc::new(waf));
    // Everything the workers queued is written before exit (the workers are gone by now).
    let flushed = audit.shutdown();
    match (served, flushed) {
        (Ok(()), Ok(())) => ExitCode::SUCCESS,
        (Err(e), _) => {
            log::error!("{e}");
            ExitCode::FAILURE
        }
        (_, Err(e)) => {
            log::error!("audit log: {e}");
            ExitCode::FAILURE
        }
    }
}

fn check(c: CheckCmd) -> ExitCode {
    // `Include ${CRS_DIR}/...` in a --rules file: default to the CRS this binary was built with.
    if std::env::var_os("CRS_DIR").is_none()
        && std::path::Path::new(coraza_spoa::builtin::CRS_DIR_AT_BUILD).is_dir()
    {
        std::env::set_var("CRS_DIR", coraza_spoa::builtin::CRS_DIR_AT_BUILD);
    }
    let rs = match &c.rules {
        Some(path) => coraza_spoa::seclang::compile_file(path)
            .map_err(|e| e.to_string())
            .and_then(|p| Ruleset::new(p).map_err(|e| e.to_string())),
        None => coraza_spoa::builtin::ruleset(),
    };
    let rs = match rs {
        Ok(r) => r,
        Err(e) => {
            eprintln!("coraza-spoa check: {e}");
            return ExitCode::from(2);
        }
    };
    if c.warm_up {
        rs.warm_up();
    }
    let stdin = std::io::stdin().lock();
    let stdout = std::io::BufWriter::new(std::io::stdout().lock());
    match coraza_spoa::check::run(&rs, stdin, stdout, c.log) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("coraza-spoa check: {e}");
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

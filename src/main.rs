//! The `coraza-spoa` binary: command-line entry point.

use std::path::PathBuf;
use std::process::ExitCode;

use argh::FromArgs;
use coraza_spoa::engine::Ruleset;

/// WAF sidecar for HAProxy (SPOP agent running the OWASP Core Rule Set).
#[derive(FromArgs)]
struct Cli {
    /// print version information and exit
    #[argh(switch)]
    version: bool,
    /// configuration file (default: config.yaml)
    #[argh(option, default = "PathBuf::from(\"config.yaml\")")]
    config: PathBuf,
    #[argh(subcommand)]
    command: Option<Command>,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum Command {
    Check(CheckCmd),
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
}

fn main() -> ExitCode {
    let cli: Cli = argh::from_env();
    if cli.version {
        println!("{}", coraza_spoa::builtin::version_line());
        return ExitCode::SUCCESS;
    }
    match cli.command {
        Some(Command::Check(c)) => check(c),
        None => {
            eprintln!(
                "coraza-spoa: the SPOP server is not wired in yet (config {})",
                cli.config.display()
            );
            ExitCode::FAILURE
        }
    }
}

fn check(c: CheckCmd) -> ExitCode {
    let rules = c
        .rules
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/rules/main.conf")));
    if std::env::var_os("CRS_DIR").is_none() {
        std::env::set_var(
            "CRS_DIR",
            concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/crs/v4.25.1"),
        );
    }
    let program = match coraza_spoa::seclang::compile_file(&rules) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("coraza-spoa check: {e}");
            return ExitCode::from(2);
        }
    };
    let rs = match Ruleset::new(program) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("coraza-spoa check: {e}");
            return ExitCode::from(2);
        }
    };
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

//! The `coraza-spoa` binary: command-line entry point.

use argh::FromArgs;

/// WAF sidecar for HAProxy (SPOP agent running the OWASP Core Rule Set).
#[derive(FromArgs)]
struct Cli {
    /// print version information and exit
    #[argh(switch)]
    version: bool,
}

fn main() {
    let cli: Cli = argh::from_env();
    if cli.version {
        println!("coraza-spoa {}", env!("CARGO_PKG_VERSION"));
    }
}

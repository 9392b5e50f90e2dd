//! `cargo bench --bench perf [-- COMMAND ...]`: the perf harness (issue #8). With no command it
//! runs everything: capture through HAProxy, replay against the null inspector and the full
//! ruleset, report. See `perf/README.md` and `perf/harness/mod.rs`.

// Cargo compiles benches with `--cfg test`, so the harness's unit tests are compiled (never
// run) here too: their helpers would all warn as unused.
#[allow(dead_code, unused_imports)]
mod harness;

fn main() -> std::process::ExitCode {
    harness::cli::main()
}

//! Diagnostics set-up: env_logger on stderr, at `log_level`, as text or one JSON object per line.

use std::io::Write;

use crate::config::LogFormat;

/// Installs the global logger. `RUST_LOG`, when set, overrides `level` (for debugging a single
/// module without editing the configuration). Fails only if a logger is already installed.
pub fn init_logging(level: &str, format: LogFormat) -> Result<(), log::SetLoggerError> {
    let mut builder = env_logger::Builder::new();
    match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.trim().is_empty() => builder.parse_filters(&spec),
        _ => builder.parse_filters(level),
    };
    if format == LogFormat::Json {
        builder.format(|buf, record| {
            let ts = buf.timestamp_millis().to_string();
            let line = format_json_line(
                &ts,
                record.level().as_str(),
                record.target(),
                &record.args().to_string(),
            );
            writeln!(buf, "{line}")
        });
    }
    builder.try_init()
}

/// One log record as a single-line JSON object: `{"ts","level","target","msg"}`.
pub fn format_json_line(ts: &str, level: &str, target: &str, msg: &str) -> String {
    serde_json::json!({ "ts": ts, "level": level, "target": target, "msg": msg }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_line_is_one_object_on_one_line() {
        let line = format_json_line(
            "2026-01-01T00:00:00.000Z",
            "WARN",
            "coraza_spoa::server",
            "a \"quoted\"\nmulti-line msg",
        );
        assert!(!line.contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["level"], "WARN");
        assert_eq!(v["msg"], "a \"quoted\"\nmulti-line msg");
        assert_eq!(v["target"], "coraza_spoa::server");
    }
}

//! `config.yaml`: the sidecar's run-time settings (never its rules, which are compiled in).
//!
//! Owns parsing and validation of the file into [`Config`]. Keys keep coraza-spoa's names where
//! they mean the same thing (`bind`, `log_level`, `log_format`, `default_application`,
//! `applications[].name`, `applications[].response_check`); the rest are ours. Unknown keys are an
//! error that names the key, so a typo never silently falls back to a default.
//! Must not: touch sockets, files other than the config itself, or global state.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Default location of the audit log (bind-mounted in the container).
pub const DEFAULT_AUDIT_PATH: &str = "/var/log/coraza/audit.log";

/// Validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Address the SPOP listeners bind (one `SO_REUSEPORT` listener per worker).
    pub bind: SocketAddr,
    /// Diagnostics level for env_logger (`error`, `warn`, `info`, `debug`, `trace`).
    pub log_level: String,
    /// Diagnostics format: `console` (human) or `json` (one object per line).
    pub log_format: LogFormat,
    /// Number of worker threads; 0 means one per available core.
    pub workers: usize,
    /// Application used when a message names an unknown `app`.
    pub default_application: String,
    pub applications: Vec<Application>,
    pub limits: Limits,
    pub audit: Audit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Console,
    Json,
}

/// One HAProxy-side application (the `app` argument of the SPOE messages).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Application {
    pub name: String,
    /// Evaluate `coraza-res` messages (phases 3-4). Off by default, as in coraza-spoa.
    #[serde(default)]
    pub response_check: bool,
}

/// Bounds on what one request may cost. Defaults are documented on each field.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest SPOP frame accepted before the HELLO negotiated a size (default 1 MiB; HAProxy
    /// never sends more than `tune.bufsize - 4`). Also caps the size the agent echoes back
    /// when HAProxy announces more (it then warns once).
    pub max_frame_size: u32,
    /// Request body bytes inspected (default 1 MiB; HAProxy's buffer is usually the real cap).
    pub request_body_bytes: usize,
    /// Response body bytes inspected (default 512 KiB, as coraza's recommended config).
    pub response_body_bytes: usize,
    /// Most arguments (query + body) parsed per request (default 1024).
    pub max_args: usize,
    /// Deepest JSON/XML nesting parsed (default 512).
    pub max_depth: usize,
    /// Most multipart parts parsed (default 256).
    pub max_parts: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_frame_size: 1 << 20,
            request_body_bytes: 1 << 20,
            response_body_bytes: 512 << 10,
            max_args: 1024,
            max_depth: 512,
            max_parts: 256,
        }
    }
}

/// The audit log (JSON lines written by the dedicated writer thread).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Audit {
    /// File the events are appended to; reopened on SIGHUP and after rotation.
    pub path: PathBuf,
    /// Capacity of the queue between workers and the writer; events beyond it are dropped and
    /// counted, never waited for.
    pub queue: usize,
    /// Header names (case-insensitive) whose values are written as `[redacted]`.
    pub redact_headers: Vec<String>,
}

impl Default for Audit {
    fn default() -> Self {
        Audit {
            path: PathBuf::from(DEFAULT_AUDIT_PATH),
            queue: 65536,
            redact_headers: [
                "authorization",
                "proxy-authorization",
                "cookie",
                "set-cookie",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            bind: SocketAddr::from(([0, 0, 0, 0], 9000)),
            log_level: "info".into(),
            log_format: LogFormat::Console,
            workers: 0,
            default_application: "default".into(),
            applications: vec![Application {
                name: "default".into(),
                response_check: false,
            }],
            limits: Limits::default(),
            audit: Audit::default(),
        }
    }
}

/// The file as written; converted into [`Config`] by [`Config::from_yaml`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    bind: Option<String>,
    log_level: Option<String>,
    log_format: Option<LogFormat>,
    workers: Option<usize>,
    default_application: Option<String>,
    applications: Option<Vec<Application>>,
    limits: Option<Limits>,
    audit: Option<Audit>,
}

/// A configuration error: which file, and what is wrong with it, in one line.
#[derive(Debug)]
pub struct ConfigError {
    pub path: Option<PathBuf>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.path {
            Some(p) => write!(f, "{}: {}", p.display(), self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            path: Some(path.to_owned()),
            message: format!("cannot read: {e}"),
        })?;
        Config::from_yaml(&text).map_err(|mut e| {
            e.path = Some(path.to_owned());
            e
        })
    }

    /// Parses and validates configuration text.
    pub fn from_yaml(text: &str) -> Result<Config, ConfigError> {
        let err = |message: String| ConfigError {
            path: None,
            message,
        };
        // An empty file is a valid "all defaults" configuration.
        let raw: RawConfig = if text.trim().is_empty() {
            serde_yaml::from_str("{}")
        } else {
            serde_yaml::from_str(text)
        }
        .map_err(|e| err(explain_yaml_error(&e.to_string())))?;

        let mut cfg = Config::default();
        if let Some(bind) = raw.bind {
            cfg.bind = parse_bind(&bind).map_err(err)?;
        }
        if let Some(level) = raw.log_level {
            let l = level.to_ascii_lowercase();
            if !["off", "error", "warn", "info", "debug", "trace"].contains(&l.as_str()) {
                return Err(err(format!("log_level: unknown level {level:?}")));
            }
            cfg.log_level = l;
        }
        if let Some(f) = raw.log_format {
            cfg.log_format = f;
        }
        if let Some(w) = raw.workers {
            if w > 1024 {
                return Err(err(format!("workers: {w} is more than 1024")));
            }
            cfg.workers = w;
        }
        if let Some(apps) = raw.applications {
            if apps.is_empty() {
                return Err(err("applications: the list is empty".into()));
            }
            for (i, a) in apps.iter().enumerate() {
                if a.name.is_empty() {
                    return Err(err(format!("applications[{i}].name: empty")));
                }
                if apps[..i].iter().any(|b| b.name == a.name) {
                    return Err(err(format!("applications: {:?} is listed twice", a.name)));
                }
            }
            cfg.default_application = apps[0].name.clone();
            cfg.applications = apps;
        }
        if let Some(d) = raw.default_application {
            cfg.default_application = d;
        }
        if !cfg
            .applications
            .iter()
            .any(|a| a.name == cfg.default_application)
        {
            return Err(err(format!(
                "default_application: {:?} is not in applications",
                cfg.default_application
            )));
        }
        if let Some(l) = raw.limits {
            if l.max_frame_size < 256 {
                return Err(err(
                    "limits.max_frame_size: below SPOP's minimum of 256".into()
                ));
            }
            cfg.limits = l;
        }
        if let Some(a) = raw.audit {
            if a.queue == 0 {
                return Err(err("audit.queue: must be at least 1".into()));
            }
            cfg.audit = a;
        }
        Ok(cfg)
    }

    /// Number of workers after resolving 0 to the available cores.
    pub fn worker_count(&self) -> usize {
        if self.workers > 0 {
            self.workers
        } else {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        }
    }

    /// The application named `name`, or the default one.
    pub fn application(&self, name: &[u8]) -> &Application {
        self.applications
            .iter()
            .find(|a| a.name.as_bytes() == name)
            .or_else(|| {
                self.applications
                    .iter()
                    .find(|a| a.name == self.default_application)
            })
            .unwrap_or(&self.applications[0])
    }
}

fn parse_bind(s: &str) -> Result<SocketAddr, String> {
    // coraza-spoa accepts ":9000" for "all interfaces".
    let full = if s.starts_with(':') {
        format!("0.0.0.0{s}")
    } else {
        s.to_string()
    };
    full.parse()
        .map_err(|_| format!("bind: {s:?} is not an address:port"))
}

/// Rewrites serde's message for the keys coraza-spoa had and we deliberately dropped.
fn explain_yaml_error(msg: &str) -> String {
    if msg.contains("unknown field `directives`") {
        return "applications[].directives: rules are compiled into the binary; edit \
                overrides.conf and rebuild instead"
            .into();
    }
    msg.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_defaults() {
        assert_eq!(Config::from_yaml("").unwrap(), Config::default());
    }

    #[test]
    fn unknown_key_is_named() {
        let e = Config::from_yaml("bind: :9000\nworkerz: 2\n").unwrap_err();
        assert!(e.message.contains("workerz"), "{e}");
        let e = Config::from_yaml("audit:\n  pth: /tmp/x\n").unwrap_err();
        assert!(e.message.contains("pth"), "{e}");
    }

    #[test]
    fn coraza_spoa_keys() {
        let c = Config::from_yaml(
            "bind: :9000\nlog_level: debug\nlog_format: json\ndefault_application: b\n\
             applications:\n  - name: a\n  - name: b\n    response_check: true\n",
        )
        .unwrap();
        assert_eq!(c.bind.port(), 9000);
        assert_eq!(c.log_format, LogFormat::Json);
        assert!(c.application(b"zzz").response_check);
        assert!(!c.application(b"a").response_check);
    }

    #[test]
    fn directives_are_refused_with_a_reason() {
        let e = Config::from_yaml("applications:\n  - name: a\n    directives: x\n").unwrap_err();
        assert!(e.message.contains("compiled"), "{e}");
    }
}

//! One log-filter rule for both binaries: `--log-level` wins, else
//! `RUST_LOG`, else `info`; and, whatever was asked, the crates whose
//! events describe our own I/O machinery stay quiet, so that writing a log
//! line can never cause another one (e.g. `notify` reporting, at trace, the
//! change a log write made to a watched directory; `mio`/`tokio` reporting
//! the wake-ups of the writer).

/// Directives always appended (they win over a bare level in `RUST_LOG`):
/// HTTP/2, TLS and runtime internals at info or quieter.
pub const QUIET_DIRECTIVES: &str = "h2=info,hyper=info,hyper_util=info,rustls=info,\
     tokio_rustls=info,tower=info,reqwest=info,notify=info,inotify=warn,mio=info,\
     tokio=info,runtime=info,tokio_util=info,polling=info";

/// The levels `--log-level` takes.
pub const LEVELS: [&str; 5] = ["error", "warn", "info", "debug", "trace"];

/// Why logging cannot be set up (either binary).
#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    /// `--log-level` is not a level.
    #[error("--log-level `{0}`: use error, warn, info, debug or trace")]
    Level(String),
    /// The filter (from `RUST_LOG`) does not parse.
    #[error("bad log filter: {0}")]
    Filter(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The global subscriber could not be installed.
    #[error("cannot install the logger: {0}")]
    Install(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// The filter directives in force: `flag` (a level) wins over `rust_log`
/// (any `EnvFilter` directives), else `info`; [`QUIET_DIRECTIVES`] after
/// either. `Err` names a bad `--log-level`.
pub fn directives(flag: Option<&str>, rust_log: Option<&str>) -> Result<String, LoggingError> {
    let base = match (flag, rust_log.map(str::trim).filter(|r| !r.is_empty())) {
        (Some(level), _) => {
            let level = level.to_ascii_lowercase();
            if !LEVELS.contains(&level.as_str()) {
                return Err(LoggingError::Level(level));
            }
            level
        }
        (None, Some(env)) => env.to_owned(),
        (None, None) => "info".to_owned(),
    };
    Ok(format!("{base},{QUIET_DIRECTIVES}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_wins_then_rust_log_then_info() {
        let d = directives(Some("debug"), Some("trace")).expect("flag");
        assert!(d.starts_with("debug,"), "{d}");
        let d = directives(None, Some("vibectl_edge=trace")).expect("env");
        assert!(d.starts_with("vibectl_edge=trace,"), "{d}");
        assert!(
            directives(None, Some(" "))
                .expect("blank")
                .starts_with("info,")
        );
        assert!(directives(None, None).expect("none").starts_with("info,"));
        assert!(d.contains("notify=info") && d.contains("mio=info"), "{d}");
        let err = directives(Some("loud"), None).expect_err("bad level");
        assert!(err.to_string().contains("--log-level `loud`"), "{err}");
    }
}

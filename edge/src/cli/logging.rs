//! Log set-up: `--log-level` (else `RUST_LOG`, else info),
//! `--log-format text|json`, to stderr. HTTP/2, TLS and runtime internals
//! stay at info even at debug or trace, so debug shows the edge's own
//! decisions and a log write never causes another log event.

use crate::cli::LogFormat;
use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;
use vibectl_config::logging::LoggingError;

/// Installs the global subscriber: `level` (`--log-level`) wins over
/// `RUST_LOG`, else `info` ([`vibectl_config::logging::directives`]: one
/// rule for both binaries, with the crates that could log about our own log
/// writes kept quiet). Errors name the bad level.
pub fn init(level: Option<&str>, format: LogFormat) -> Result<(), LoggingError> {
    let rust_log = std::env::var("RUST_LOG").ok();
    let directives = vibectl_config::logging::directives(level, rust_log.as_deref())?;
    let filter = EnvFilter::try_new(directives).map_err(|e| LoggingError::Filter(e.into()))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    result.map_err(LoggingError::Install)
}

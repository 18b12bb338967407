//! Log set-up: `--log-level` (or `RUST_LOG`), `--log-format text|json`,
//! to stderr. HTTP/2 internals stay at info even at debug, so debug shows
//! the edge's own decisions.

use crate::cli::LogFormat;
use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. Errors name the bad level.
pub fn init(level: &str, format: LogFormat) -> Result<(), String> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.is_empty() => EnvFilter::try_new(directives),
        _ => {
            let level = level.to_ascii_lowercase();
            if !["error", "warn", "info", "debug", "trace"].contains(&level.as_str()) {
                return Err(format!(
                    "--log-level `{level}`: use error, warn, info, debug or trace"
                ));
            }
            EnvFilter::try_new(format!(
                "{level},h2=info,hyper=info,hyper_util=info,rustls=info"
            ))
        }
    }
    .map_err(|e| format!("bad log filter: {e}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    result.map_err(|e| format!("cannot install the logger: {e}"))
}

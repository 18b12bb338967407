//! The `vibectl-core` command line: `serve`, `models` and `health`, logging
//! set-up, the signal that starts a drain, and the models table.

use crate::{registry::Registry, secrets::Credentials};
use clap::{Args, Parser, Subcommand};
use std::{path::PathBuf, time::Duration};
use vibectl_config::{Config, ProviderKind};

/// Exit status for a configuration that cannot be used (EX_USAGE).
pub const EXIT_BAD_CONFIG: u8 = 64;

/// Exit status of `health` when the core is not SERVING or not reachable.
pub const EXIT_UNHEALTHY: u8 = 1;

/// Time `health` allows by default.
pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

/// The vibectl LLM proxy core: plaintext gRPC on loopback, models, providers.
#[derive(Debug, Parser)]
#[command(name = "vibectl-core", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve gRPC (h2c) until SIGTERM or SIGINT, then drain.
    Serve(ServeArgs),
    /// Print the configured models and whether their credentials are present.
    Models(ConfigArg),
    /// Check that a running core is SERVING (grpc.health.v1); exit 0 if it
    /// is, else 1 with the reason. For Kubernetes exec probes.
    Health(HealthArgs),
    /// Usage from the ledger: calls, tokens and cost by subject, model, day.
    Usage(crate::usage_cli::UsageArgs),
    /// Token and cost quotas.
    #[command(subcommand)]
    Quota(crate::usage_cli::QuotaCommand),
}

/// Options of `health`.
#[derive(Debug, Args)]
pub struct HealthArgs {
    /// The configuration file, read for `core.listen` when no `--address`
    /// is given.
    #[command(flatten)]
    pub config: ConfigArg,
    /// The core's address: `host:port` or `unix:/path` (default:
    /// `core.listen` of the configuration).
    #[arg(long, value_name = "ADDR")]
    pub address: Option<String>,
    /// Longest the whole check may take, e.g. `2s` or `500ms`.
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_duration)]
    pub timeout: Duration,
}

/// Why `--timeout` is refused.
#[derive(Debug, thiserror::Error)]
pub enum TimeoutArgError {
    /// Zero.
    #[error("must be more than 0")]
    Zero,
    /// Not a duration.
    #[error("{0} (e.g. 2s, 500ms)")]
    NotADuration(#[source] humantime::DurationError),
}

fn parse_duration(text: &str) -> Result<Duration, TimeoutArgError> {
    match humantime::parse_duration(text) {
        Ok(d) if d > Duration::ZERO => Ok(d),
        Ok(_) => Err(TimeoutArgError::Zero),
        Err(e) => Err(TimeoutArgError::NotADuration(e)),
    }
}

/// Which configuration file to read.
#[derive(Debug, Args)]
pub struct ConfigArg {
    /// Configuration file (default: $VIBECTL_PROXY_CONFIG, else
    /// <state dir>/config.toml if it exists, else built-in defaults).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// Options of `serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The configuration file.
    #[command(flatten)]
    pub config: ConfigArg,
    /// Listen address, overriding `core.listen`: `host:port` or `unix:/path`.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Log filter, e.g. `info` or `vibectl_core=debug` (default: $RUST_LOG,
    /// else `info`).
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// Serve Prometheus `/metrics` (as `[metrics] enabled = true`), on
    /// `[metrics] core_listen` (default 127.0.0.1:9096).
    #[arg(long)]
    pub enable_metrics: bool,
    /// The port of `/metrics`, on the address of `[metrics] core_listen`
    /// (loopback unless another address is configured).
    #[arg(long, value_name = "PORT")]
    pub metrics_port: Option<u16>,
}

impl ServeArgs {
    /// Applies the command line over the configuration.
    pub fn apply(&self, config: &mut Config) {
        if let Some(listen) = &self.listen {
            config.core.listen.clone_from(listen);
        }
        if self.enable_metrics {
            config.metrics.enabled = true;
        }
        if let Some(port) = self.metrics_port {
            config.metrics.core_listen.set_port(port);
        }
    }
}

impl ConfigArg {
    /// Loads and validates the configuration.
    pub fn load(&self) -> Result<Config, vibectl_config::ConfigError> {
        Config::load(self.config.as_deref())
    }
}

/// Logs to stderr, filtered by `level` (`--log-level`), else `RUST_LOG`,
/// else `info`: the edge's rule ([`vibectl_config::logging::directives`]),
/// with the crates that could log about our own log writes kept quiet.
/// Errors name the bad level.
pub fn init_logging(level: Option<&str>) -> Result<(), vibectl_config::logging::LoggingError> {
    use tracing_subscriber::EnvFilter;
    let rust_log = std::env::var("RUST_LOG").ok();
    let directives = vibectl_config::logging::directives(level, rust_log.as_deref())?;
    let filter = EnvFilter::try_new(directives)
        .map_err(|e| vibectl_config::logging::LoggingError::Filter(e.into()))?;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
    Ok(())
}

/// Resolves at the first SIGTERM or SIGINT.
pub async fn shutdown_signal() -> std::io::Result<&'static str> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    })
}

/// The `models` table: id, provider, aliases, context, prices and whether
/// the credentials are present. Never prints a key.
pub fn models_table(config: &Config) -> String {
    let registry = Registry::from_config(config);
    let mut rows = vec![[
        "ID".to_owned(),
        "PROVIDER".to_owned(),
        "ALIASES".to_owned(),
        "CONTEXT".to_owned(),
        "USD/MTOK IN".to_owned(),
        "USD/MTOK OUT".to_owned(),
        "CREDENTIALS".to_owned(),
    ]];
    let price = |p: Option<f64>| p.map_or("-".to_owned(), |p| format!("{p}"));
    for m in registry.models() {
        let credentials = config
            .providers
            .get(&m.provider)
            .map(|p| Credentials::lookup(&m.provider, p).describe())
            .unwrap_or_else(|| "provider not configured".to_owned());
        let default = if registry.default_model() == Some(m.id.as_str()) {
            " (default)"
        } else {
            ""
        };
        rows.push([
            format!("{}{default}", m.id),
            provider_cell(config, &m.provider),
            if m.aliases.is_empty() {
                "-".to_owned()
            } else {
                m.aliases.join(",")
            },
            m.max_context_length
                .map_or("-".to_owned(), |n| n.to_string()),
            price(m.input_usd_per_mtok),
            price(m.output_usd_per_mtok),
            credentials,
        ]);
    }
    let mut widths = [0usize; 7];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// The provider's name, with the echo benchmark knobs when set.
fn provider_cell(config: &Config, name: &str) -> String {
    let Some(p) = config.providers.get(name) else {
        return name.to_owned();
    };
    let mut knobs = Vec::new();
    if p.kind == ProviderKind::Echo {
        if let Some(n) = p.chunks {
            knobs.push(format!("chunks={n}"));
        }
        if let Some(n) = p.answer_chars {
            knobs.push(format!("answer_chars={n}"));
        }
    }
    if knobs.is_empty() {
        name.to_owned()
    } else {
        format!("{name}[{}]", knobs.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_parses() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from([
            "vibectl-core",
            "serve",
            "--listen",
            "unix:/tmp/x.sock",
            "--log-level",
            "debug",
        ])
        .expect("parse");
        match cli.command {
            Command::Serve(a) => assert_eq!(a.listen.as_deref(), Some("unix:/tmp/x.sock")),
            _ => panic!("wrong subcommand"),
        }
    }

    #[test]
    fn serve_metrics_flags_apply_over_the_config() {
        let cli = Cli::try_parse_from([
            "vibectl-core",
            "serve",
            "--enable-metrics",
            "--metrics-port",
            "9999",
        ])
        .expect("parse");
        let Command::Serve(args) = cli.command else {
            panic!("wrong subcommand")
        };
        let mut cfg = Config::default();
        assert!(!cfg.metrics.enabled);
        args.apply(&mut cfg);
        assert!(cfg.metrics.enabled);
        assert_eq!(cfg.metrics.core_listen.to_string(), "127.0.0.1:9999");
    }

    #[test]
    fn health_parses_address_and_timeout() {
        let cli = Cli::try_parse_from([
            "vibectl-core",
            "health",
            "--address",
            "unix:/run/core.sock",
            "--timeout",
            "500ms",
        ])
        .expect("parse");
        let Command::Health(args) = cli.command else {
            panic!("wrong subcommand")
        };
        assert_eq!(args.address.as_deref(), Some("unix:/run/core.sock"));
        assert_eq!(args.timeout, Duration::from_millis(500));
        let defaults = Cli::try_parse_from(["vibectl-core", "health"]).expect("parse");
        let Command::Health(args) = defaults.command else {
            panic!("wrong subcommand")
        };
        assert_eq!(args.timeout, HEALTH_TIMEOUT);
        assert!(Cli::try_parse_from(["vibectl-core", "health", "--timeout", "0s"]).is_err());
    }

    #[test]
    fn table_shows_echo_knobs() {
        let text = "[providers.bench]\nkind = \"echo\"\nchunks = 200\nanswer_chars = 4096\n\
                    [[models]]\nid = \"bench\"\nprovider = \"bench\"\n";
        let cfg = Config::from_toml(text, std::path::Path::new("t.toml")).expect("config");
        let table = models_table(&cfg);
        assert!(
            table.contains("bench[chunks=200,answer_chars=4096]"),
            "{table}"
        );
    }

    #[test]
    fn table_lists_models_and_credentials_without_keys() {
        let text = "[providers.echo]\nkind = \"echo\"\n\
                    [providers.openai]\nkind = \"openai\"\napi_key_env = \"VIBECTL_TEST_NEVER_SET_KEY\"\n\
                    [[models]]\nid = \"echo\"\nprovider = \"echo\"\n\
                    [[models]]\nid = \"gpt-x\"\nprovider = \"openai\"\naliases = [\"x\"]\nmax_context_length = 1000\n\
                    input_usd_per_mtok = 2.5\noutput_usd_per_mtok = 10.0\n";
        let cfg = Config::from_toml(text, std::path::Path::new("t.toml")).expect("config");
        let table = models_table(&cfg);
        assert!(table.contains("echo (default)"), "{table}");
        assert!(table.contains("built in"), "{table}");
        assert!(
            table.contains("missing: set VIBECTL_TEST_NEVER_SET_KEY"),
            "{table}"
        );
        assert!(
            table.contains("2.5") && table.contains("10") && table.contains("1000"),
            "{table}"
        );
    }
}

//! The `vibectl-core` command line: `serve` and `models`, logging set-up,
//! the signal that starts a drain, and the models table.

use crate::{registry::Registry, secrets::Credentials};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use vibectl_config::Config;

/// Exit status for a configuration that cannot be used (EX_USAGE).
pub const EXIT_BAD_CONFIG: u8 = 64;

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
}

impl ConfigArg {
    /// Loads and validates the configuration.
    pub fn load(&self) -> Result<Config, vibectl_config::ConfigError> {
        Config::load(self.config.as_deref())
    }
}

/// Logs to stderr, filtered by `level`, else `RUST_LOG`, else `info`.
pub fn init_logging(level: Option<&str>) {
    use tracing_subscriber::EnvFilter;
    let filter = match level {
        Some(level) => EnvFilter::try_new(level).ok(),
        None => EnvFilter::try_from_default_env().ok(),
    }
    .unwrap_or_else(|| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
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
            m.provider.clone(),
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
            Command::Models(_) => panic!("wrong subcommand"),
        }
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

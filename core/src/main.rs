//! `vibectl-core serve | models | health`: parse args → load config (on
//! error print it and exit 64) → bind → serve → on SIGTERM/SIGINT drain and
//! exit. `health` checks a running core and exits 0 when it is SERVING.

use anyhow::Context;
use std::{process::ExitCode, sync::Arc};
use tokio_util::sync::CancellationToken;
use vibectl_core::{
    CoreListener,
    cli::{self, Cli, Command, ConfigArg, HealthArgs},
};

/// mimalloc instead of glibc's malloc, as in the edge: fewer instructions
/// per allocation (issue 17, callgrind on the core alone: 115.4k -> 106.3k
/// instructions per call at 1 stream, 112.3k -> 100.2k at 64).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let args = match <Cli as clap::Parser>::parse().command {
        Command::Health(args) => return health(&args).await,
        Command::Models(config_arg) => {
            return match load(&config_arg) {
                Ok(config) => {
                    print!("{}", cli::models_table(&config));
                    ExitCode::SUCCESS
                }
                Err(code) => code,
            };
        }
        Command::Usage(args) => {
            let config = match load(&ConfigArg {
                config: args.config.clone(),
            }) {
                Ok(config) => config,
                Err(code) => return code,
            };
            return report(vibectl_core::usage_cli::usage(&config, &args).await);
        }
        Command::Quota(vibectl_core::usage_cli::QuotaCommand::Status(args)) => {
            let config = match load(&ConfigArg {
                config: args.config.clone(),
            }) {
                Ok(config) => config,
                Err(code) => return code,
            };
            return report(vibectl_core::usage_cli::quota_status(&config, &args).await);
        }
        Command::Serve(args) => args,
    };
    let mut config = match load(&args.config) {
        Ok(config) => config,
        Err(code) => return code,
    };
    if let Err(message) = cli::init_logging(args.log_level.as_deref()) {
        eprintln!("vibectl-core: {message}");
        return ExitCode::from(cli::EXIT_BAD_CONFIG);
    }
    args.apply(&mut config);
    match run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Once, on stderr (where the log goes too).
            eprintln!("vibectl-core: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// The configuration, or exit 64 after printing why it cannot be used.
fn load(arg: &ConfigArg) -> Result<vibectl_config::Config, ExitCode> {
    arg.load().map_err(|e| {
        eprintln!("vibectl-core: {e}");
        ExitCode::from(cli::EXIT_BAD_CONFIG)
    })
}

/// `usage` / `quota status`: the report on stdout, or the error on stderr (exit 1).
fn report(result: Result<String, vibectl_core::usage_cli::ReportError>) -> ExitCode {
    match result {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("vibectl-core: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `health`: one line on stdout when SERVING, one line on stderr otherwise.
async fn health(args: &HealthArgs) -> ExitCode {
    let address = match &args.address {
        Some(address) => address.clone(),
        None => match load(&args.config) {
            Ok(config) => config.core.listen,
            Err(code) => return code,
        },
    };
    match vibectl_core::health::check(&address, args.timeout).await {
        Ok(()) => {
            println!("vibectl-core at {address} is SERVING");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("vibectl-core health: {e}");
            ExitCode::from(cli::EXIT_UNHEALTHY)
        }
    }
}

async fn run(config: vibectl_config::Config) -> anyhow::Result<()> {
    // Bind both listeners before serving, so a taken port fails at once.
    let listener = CoreListener::bind(&config.core.listen).await?;
    let metrics = if config.metrics.enabled {
        Some(vibectl_core::bind_metrics(config.metrics.core_listen).await?)
    } else {
        None
    };
    let shutdown = CancellationToken::new();
    let mut server = tokio::spawn(vibectl_core::serve_with_metrics(
        listener,
        metrics,
        Arc::new(config),
        shutdown.clone(),
    ));
    tokio::select! {
        ended = &mut server => return Ok(ended.context("the server task failed")??),
        signal = cli::shutdown_signal() => {
            let signal = signal.context("cannot install signal handlers")?;
            tracing::info!(signal, "shutdown requested");
        }
    }
    shutdown.cancel();
    server.await.context("the server task failed")??;
    Ok(())
}

/// The error and its causes on one line, each text once.
fn one_line(error: &anyhow::Error) -> String {
    vibectl_proto::wire::error_chain(error.as_ref())
}

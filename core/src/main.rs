//! `vibectl-core serve | models`: parse args → load config (on error print
//! it and exit 64) → bind → serve → on SIGTERM/SIGINT drain and exit.

use anyhow::Context;
use std::{process::ExitCode, sync::Arc};
use tokio_util::sync::CancellationToken;
use vibectl_core::{
    CoreListener,
    cli::{self, Cli, Command},
};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = <Cli as clap::Parser>::parse();
    let config_arg = match &cli.command {
        Command::Serve(args) => &args.config,
        Command::Models(args) => args,
    };
    let mut config = match config_arg.load() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("vibectl-core: {e}");
            return ExitCode::from(cli::EXIT_BAD_CONFIG);
        }
    };
    let args = match cli.command {
        Command::Models(_) => {
            print!("{}", cli::models_table(&config));
            return ExitCode::SUCCESS;
        }
        Command::Serve(args) => args,
    };
    cli::init_logging(args.log_level.as_deref());
    if let Some(listen) = args.listen {
        config.core.listen = listen;
    }
    match run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("vibectl-core: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: vibectl_config::Config) -> anyhow::Result<()> {
    let listener = CoreListener::bind(&config.core.listen).await?;
    let shutdown = CancellationToken::new();
    let mut server = tokio::spawn(vibectl_core::serve(
        listener,
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

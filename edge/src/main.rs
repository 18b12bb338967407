//! `vibectl-edge`: parse the command line, load the configuration (on error
//! print it and exit 64), then run the command; serving commands stop on
//! SIGTERM/SIGINT and drain in-flight streams before exiting.

use anyhow::Context;
use clap::Parser;
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;
use vibectl_config::Config;
use vibectl_edge::{
    cli::{self, Cli, Command},
    shutdown,
};

/// mimalloc instead of glibc's malloc: the request path allocates ~80 times
/// per call, and mimalloc's thread-local free lists take fewer instructions
/// per allocation (issue 17, callgrind, `scripts/profile-edge callgrind`:
/// 143.5k -> 137.9k instructions per call at 1 stream, 129.8k -> 117.2k at
/// 64). Its `no_thp` feature keeps idle RSS where glibc's was (without it,
/// transparent huge pages made the idle edge 27 MiB). The `system-allocator`
/// feature keeps glibc's, for heap profilers that hook malloc (heaptrack).
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// sysexits.h `EX_USAGE`: the configuration is wrong.
const EXIT_CONFIG: u8 = 64;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(message) = cli::logging::init(cli.log_level.as_deref(), cli.log_format) {
        eprintln!("vibectl-edge: {message}");
        return ExitCode::from(EXIT_CONFIG);
    }
    if let Command::InitConfig { output, force } = &cli.command {
        return report(cli::init_config(output.as_deref(), *force).map(|path| {
            println!("wrote {}", path.display());
        }));
    }
    let config = match Config::load(cli.config.as_deref()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("vibectl-edge: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    report(run(cli.command, config))
}

fn run(command: Command, config: Config) -> anyhow::Result<()> {
    // Every client connection is a file descriptor: take the whole hard limit.
    match vibectl_edge::raise_nofile() {
        Some(limit) if limit.now > limit.before => tracing::info!(
            from = limit.before,
            to = limit.now,
            "raised the file-descriptor limit (RLIMIT_NOFILE)"
        ),
        Some(_) => {}
        None => tracing::warn!("cannot read or raise the file-descriptor limit (RLIMIT_NOFILE)"),
    }
    let runtime = runtime().context("cannot start the async runtime")?;
    runtime.block_on(async {
        let token = CancellationToken::new();
        let on_signal = token.clone();
        tokio::spawn(async move {
            shutdown::signal().await;
            on_signal.cancel();
        });
        cli::run(command, config, token).await?;
        Ok(())
    })
}

/// The async runtime: one worker thread per CPU this process may run on
/// (its affinity mask). With one CPU, the current-thread scheduler: the same
/// single worker as the multi-threaded one, without its cross-thread
/// queues, atomics and the hand-off between the main thread and the worker
/// (the edge pinned to one CPU beside the core is the common deployment).
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    if cpus == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Runtime::new()
    }
}

fn report<E: Into<anyhow::Error>>(result: Result<(), E>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("vibectl-edge: {}", one_line(&error.into()));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, each text once.
fn one_line(error: &anyhow::Error) -> String {
    vibectl_proto::wire::error_chain(error.as_ref())
}

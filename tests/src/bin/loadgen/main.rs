//! `loadgen`: drives `Execute` or `StreamExecute` of a vibectl LLM proxy
//! (the edge over TLS, or the core over h2c) over N connections × M
//! concurrent streams, for a fixed time or number of calls, and reports
//! calls/s, latency percentiles (HDR histogram), time to first chunk, and
//! errors by gRPC status. `--fresh-connections` opens a new connection (a
//! full or resumed TLS handshake) for every call, to measure handshakes.
//! `--watch-pid NAME=PID` adds the RSS and CPU per call of the processes
//! under test; `--hold` keeps many streams open at once (memory per stream).

mod args;
mod connect;
mod hold;
mod procstat;
mod report;
mod run;

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = args::Args::parse();
    let target = connect::Target::from_args(&args)?;
    if args.hold {
        let result = hold::hold(&args, &target).await?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&result.to_json())?);
        } else {
            print!("{}", result.to_text());
        }
        if !result.complete() {
            // Not an error of loadgen's: the report says how many were held.
            eprintln!("loadgen: not every stream was held (see the report)");
            std::process::exit(3);
        }
        return Ok(());
    }
    let result = run::run(&args, &target).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&result.to_json())?);
    } else {
        print!("{}", result.to_text());
    }
    if result.calls_ok() == 0 {
        anyhow::bail!("no call succeeded");
    }
    Ok(())
}

//! Command-line arguments of `loadgen`.

use crate::procstat::{Watch, parse_watch};
use clap::{Parser, ValueEnum};
use std::{path::PathBuf, time::Duration};

/// Which RPC to drive.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Method {
    /// Unary `Execute`.
    Execute,
    /// Server-streaming `StreamExecute`.
    Stream,
    /// `GetServerInfo` (no model call at all).
    Info,
}

/// Load generator for the vibectl LLM proxy.
#[derive(Debug, Clone, Parser)]
#[command(name = "loadgen")]
pub struct Args {
    /// `https://host:port` (TLS, ALPN h2) or `http://host:port` (h2c).
    #[arg(long)]
    pub target: String,
    /// PEM CA bundle to verify the server with (TLS targets).
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// Server name to verify (default: the target's host).
    #[arg(long)]
    pub server_name: Option<String>,
    /// File holding a JWT sent as `authorization: Bearer …`.
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// The RPC to call.
    #[arg(long, value_enum, default_value = "execute")]
    pub method: Method,
    /// Model to ask for (default: the server's default).
    #[arg(long)]
    pub model: Option<String>,
    /// The user fragment sent with every call.
    #[arg(long, default_value = "ping from loadgen")]
    pub text: String,
    /// HTTP/2 connections.
    #[arg(long, default_value_t = 1)]
    pub connections: usize,
    /// Concurrent calls per connection.
    #[arg(long, default_value_t = 1)]
    pub concurrency: usize,
    /// Run for this long (e.g. `10s`); the default.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5s")]
    pub duration: Duration,
    /// Stop after this many calls in all (instead of `--duration`).
    #[arg(long)]
    pub requests: Option<u64>,
    /// Calls before measuring starts (per worker), to warm connections.
    #[arg(long, default_value_t = 10)]
    pub warmup: u64,
    /// Open a new connection for every call (measures TLS handshakes).
    #[arg(long)]
    pub fresh_connections: bool,
    /// Disable TLS session resumption (with `--fresh-connections`: full handshakes).
    #[arg(long)]
    pub no_resumption: bool,
    /// Per-call deadline.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "30s")]
    pub timeout: Duration,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
    /// Watch a process under test (repeatable): report its RSS at the end
    /// and the CPU it spent in the measured window (`/proc/PID`).
    #[arg(long = "watch-pid", value_name = "NAME=PID", value_parser = parse_watch)]
    pub watch: Vec<Watch>,
    /// Hold mode: open connections × concurrency `StreamExecute` calls, wait
    /// until every one received its first text chunk, report (with the
    /// watched processes' RSS at that moment), keep them open for
    /// `--hold-for`, then drop them all. For a provider that holds streams.
    #[arg(long, conflicts_with_all = ["fresh_connections", "requests"])]
    pub hold: bool,
    /// Hold mode: how long to keep the streams open after all are held.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "1s")]
    pub hold_for: Duration,
    /// Hold mode: give up waiting for first chunks after this long.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "60s")]
    pub hold_timeout: Duration,
}

//! The `vibectl-edge` command line (clap). `main.rs` parses it, loads the
//! configuration and calls [`run`]; every command lives in a module here
//! and returns a typed [`EdgeError`].

mod acme;
mod ca;
mod commands;
mod duration;
pub mod logging;
mod serve;

#[cfg(feature = "test-support")]
pub mod keys;
#[cfg(not(feature = "test-support"))]
mod keys;
#[cfg(feature = "test-support")]
pub mod token;
#[cfg(not(feature = "test-support"))]
mod token;

pub use commands::{generate_certs, init_config};
pub use duration::parse_expires_in;
pub use serve::{ServeArgs, ServeMode, serve};

use crate::EdgeError;
use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use tokio_util::sync::CancellationToken;
use vibectl_config::Config;

/// The vibectl LLM proxy edge: TLS, JWT and HSTS in front of the core.
///
/// The three global options are listed after each command's own (a high
/// display order), not interleaved with them.
#[derive(Debug, Parser)]
#[command(name = "vibectl-edge", version, about, long_about = None, next_display_order = 1000)]
pub struct Cli {
    /// Configuration file (TOML). Default: <state dir>/config.toml if present.
    #[arg(long, global = true, env = "VIBECTL_PROXY_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Log level: error, warn, info, debug, trace. The flag wins over
    /// RUST_LOG (full filter directives), which is used without it; else info.
    #[arg(long, global = true, value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve over TLS with the configured certificates (self-signed by default).
    Serve(ServeArgs),
    /// Serve plaintext h2c, WITHOUT TLS (local development only).
    ServeInsecure(ServeArgs),
    /// Serve over TLS with the given PEM certificate chain and key.
    ServeCustom {
        /// Listener and core overrides.
        #[command(flatten)]
        serve: ServeArgs,
        /// PEM certificate chain, leaf first.
        #[arg(long, value_name = "FILE")]
        cert_file: PathBuf,
        /// PEM private key of the leaf.
        #[arg(long, value_name = "FILE")]
        key_file: PathBuf,
    },
    /// Serve over TLS with a private CA's server certificate
    /// (DIR/server.crt and DIR/server.key, reloaded when they change).
    ServeCa {
        /// Listener and core overrides.
        #[command(flatten)]
        serve: ServeArgs,
        /// The CA directory (`vibectl-edge ca init` and `ca create-server-cert`).
        #[arg(long, value_name = "DIR")]
        ca_dir: PathBuf,
    },
    /// Serve over TLS with certificates from an ACME CA (Let's Encrypt by
    /// default), ordered and renewed in the background; self-signed until
    /// the first one is issued.
    ServeAcme(acme::ServeAcmeArgs),
    /// Private CA: init, create-server-cert, create-client-cert, status,
    /// check-expiry, bundle.
    #[command(subcommand)]
    Ca(ca::CaCommand),
    /// Mint a JWT for SUBJECT (signed with jwt.default_kid, --kid, or the HS256 secret).
    GenerateToken(token::GenerateTokenArgs),
    /// Token tools (`token inspect`).
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// Revoke a token (by --jti, or the token from --token-file/--token-env).
    RevokeToken(token::RevokeArgs),
    /// The JWT key set: generate, import, list, retire.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Generate the self-signed CA and server certificate now.
    GenerateCerts {
        /// Extra host name for the certificate (repeatable; added to edge.hostnames).
        #[arg(long = "hostname", value_name = "NAME")]
        hostnames: Vec<String>,
        /// Replace the existing CA and certificate (clients must fetch the new bundle).
        #[arg(long)]
        force: bool,
    },
    /// Write the annotated default configuration.
    InitConfig {
        /// Where (default: <state dir>/config.toml).
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Overwrite an existing file.
        #[arg(long)]
        force: bool,
    },
}

/// Runs a command that needs the configuration (all but `init-config`,
/// which [`init_config`] handles before any configuration is loaded).
/// Serving commands return after `shutdown` fires and the drain is done.
pub async fn run(
    command: Command,
    config: Config,
    shutdown: CancellationToken,
) -> Result<(), EdgeError> {
    match command {
        Command::Serve(args) if config.tls.acme.is_some() => {
            // `[tls.acme]` in the file: the same program as `serve-acme`.
            let args = acme::ServeAcmeArgs {
                serve: args,
                ..Default::default()
            };
            acme::serve_acme(&args, config, shutdown).await
        }
        Command::Serve(args) => serve(ServeMode::Tls, &args, config, shutdown).await,
        Command::ServeInsecure(args) => serve(ServeMode::Insecure, &args, config, shutdown).await,
        Command::ServeCustom {
            serve: args,
            cert_file,
            key_file,
        } => {
            serve(
                ServeMode::Custom {
                    cert_file,
                    key_file,
                },
                &args,
                config,
                shutdown,
            )
            .await
        }
        Command::ServeCa {
            serve: args,
            ca_dir,
        } => {
            serve(
                ServeMode::PrivateCa { dir: ca_dir },
                &args,
                config,
                shutdown,
            )
            .await
        }
        Command::ServeAcme(args) => acme::serve_acme(&args, config, shutdown).await,
        Command::Ca(command) => ca::run(command, &config),
        Command::GenerateToken(args) => {
            let env = crate::auth::SecretEnv::from_process();
            let token = token::generate_token(&config, &env, &args)?;
            match &args.output {
                Some(path) => {
                    eprintln!("token for `{}` written to {}", args.subject, path.display())
                }
                None => println!("{token}"),
            }
            Ok(())
        }
        Command::Token(token::TokenCommand::Inspect { source, url }) => {
            if let Some(url) = &url {
                token::check_url(url)?;
                if source.token_file.is_none() && source.token_env.is_none() {
                    println!("the URL holds no token");
                    return Ok(());
                }
            }
            let jwt = token::read_token(&source)?;
            let env = crate::auth::SecretEnv::from_process();
            let inspection = token::inspect(&config, &env, &jwt).await?;
            print!("{inspection}");
            if !inspection.accepted() {
                // Non-zero, for scripts: the edge would refuse this token.
                return Err(EdgeError::Jwt(crate::auth::JwtError::Refused(
                    "this edge would refuse the token (see above)".to_owned(),
                )));
            }
            Ok(())
        }
        Command::RevokeToken(args) => {
            print!("{}", token::revoke(&config, &args).await?);
            Ok(())
        }
        Command::Keys(command) => keys::run(command, &config),
        Command::GenerateCerts { hostnames, force } => {
            let made = generate_certs(&config, &hostnames, force)?;
            println!("CA certificate:     {}", made.ca_cert_path.display());
            println!("CA bundle (clients): {}", made.ca_bundle_path.display());
            println!("server certificate: {}", made.cert_path.display());
            println!("server key:         {}", made.key_path.display());
            println!("CA SHA-256 fingerprint: {}", made.ca_fingerprint);
            Ok(())
        }
        Command::InitConfig { output, force } => {
            let path = init_config(output.as_deref(), force)?;
            println!("wrote {}", path.display());
            Ok(())
        }
    }
}

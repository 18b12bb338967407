//! `keys …`: the JWT key set. `generate` makes a key pair (the private key
//! into `jwt.keys_dir`, mode 0600, never overwritten; the public JWK into
//! the key set), `import` adds a public key made elsewhere, `list` shows
//! the set, `retire` stops a key: tokens signed with it are refused by
//! every edge within `jwt.reload_interval`.

use crate::auth::now_secs;
use crate::{
    EdgeError,
    auth::{
        JwtError, KeySet, KeyStatus,
        key_set::JwksDoc,
        keygen::{self, Generated},
        keys::{KeyAlg, is_plain_kid},
    },
    fsutil,
};
use clap::Subcommand;
use std::path::PathBuf;
use vibectl_config::Config;

use super::token::private_key_path;

/// `keys …`.
#[derive(Debug, Clone, Subcommand)]
pub enum KeysCommand {
    /// Make a key pair: the private key (0600) for signing, the public key
    /// into the key set for verifying.
    Generate {
        /// ES256, RS256, EdDSA or HS256 (a shared secret: the key set then holds it).
        #[arg(long, value_parser = str::parse::<KeyAlg>, value_name = "ALG")]
        alg: KeyAlg,
        /// The key id (default: <alg>-<date>-<random>).
        #[arg(long, value_name = "KID")]
        kid: Option<String>,
    },
    /// Add a public key made elsewhere (PEM) to the key set.
    Import {
        /// ES256, RS256 or EdDSA.
        #[arg(long, value_parser = str::parse::<KeyAlg>, value_name = "ALG")]
        alg: KeyAlg,
        /// The key id tokens signed with it carry.
        #[arg(long, value_name = "KID")]
        kid: String,
        /// The public key, PEM (`PUBLIC KEY` or `RSA PUBLIC KEY`).
        #[arg(long, value_name = "FILE")]
        public_key_file: PathBuf,
    },
    /// List the keys: kid, algorithm, status, created, private key here or not.
    List,
    /// Retire a key: tokens signed with it stop working.
    Retire {
        /// The key id.
        #[arg(long, value_name = "KID")]
        kid: String,
    },
}

fn file_error(action: &'static str, path: PathBuf) -> impl FnOnce(std::io::Error) -> EdgeError {
    move |source| EdgeError::File {
        action,
        path,
        source,
    }
}

/// What `keys generate` made.
#[derive(Debug)]
pub struct MadeKey {
    /// The key id.
    pub kid: String,
    /// The algorithm.
    pub alg: KeyAlg,
    /// The private key file (0600).
    pub private_key: PathBuf,
    /// The key set file.
    pub key_set: PathBuf,
}

/// Makes a key pair for `alg` (see [`KeysCommand::Generate`]).
pub fn generate(config: &Config, alg: KeyAlg, kid: Option<&str>) -> Result<MadeKey, EdgeError> {
    let now = now_secs();
    let kid = kid.map_or_else(|| keygen::new_kid(alg, now), str::to_owned);
    if !is_plain_kid(&kid) {
        return Err(JwtError::Refused(format!(
            "kid `{kid}`: use 1-128 characters of A-Z a-z 0-9 . _ : -"
        ))
        .into());
    }
    let state_dir = config.edge.state_dir();
    let mut doc = JwksDoc::open(&config.jwt.jwks_path(&state_dir))?;
    if doc.key_set()?.get(&kid).is_some() {
        return Err(JwtError::Refused(format!(
            "kid `{kid}` is already in {}; keys are never replaced (choose another --kid)",
            doc.path().display()
        ))
        .into());
    }
    let keys_dir = config.jwt.keys_path(&state_dir);
    let private_key = private_key_path(&keys_dir, &kid, alg);
    if private_key.exists() {
        return Err(JwtError::Refused(format!(
            "{} exists; a private key is never overwritten",
            private_key.display()
        ))
        .into());
    }
    let Generated { private, jwk } = keygen::generate(alg, &kid, now).map_err(JwtError::Key)?;
    fsutil::create_private_dir(&keys_dir)
        .map_err(file_error("cannot create directory", keys_dir.clone()))?;
    fsutil::write_private(&private_key, private.as_bytes())
        .map_err(file_error("cannot write", private_key.clone()))?;
    let added = doc.add(jwk).and_then(|()| doc.save());
    if let Err(error) = added {
        // No orphan private key whose public half is nowhere.
        let _ = std::fs::remove_file(&private_key);
        return Err(error.into());
    }
    Ok(MadeKey {
        kid,
        alg,
        private_key,
        key_set: doc.path().to_owned(),
    })
}

/// Adds a public key (see [`KeysCommand::Import`]).
pub fn import(
    config: &Config,
    alg: KeyAlg,
    kid: &str,
    public_key_file: &std::path::Path,
) -> Result<PathBuf, EdgeError> {
    let pem = std::fs::read(public_key_file)
        .map_err(file_error("cannot read", public_key_file.to_owned()))?;
    let jwk = keygen::public_jwk_from_pem(&pem, alg, kid, now_secs()).map_err(|reason| {
        JwtError::KeyFile {
            path: public_key_file.to_owned(),
            reason,
        }
    })?;
    let mut doc = JwksDoc::open(&config.jwt.jwks_path(&config.edge.state_dir()))?;
    doc.add(jwk)?;
    doc.save()?;
    Ok(doc.path().to_owned())
}

/// Retires `kid`; returns the key set file.
pub fn retire(config: &Config, kid: &str) -> Result<PathBuf, EdgeError> {
    let mut doc = JwksDoc::open(&config.jwt.jwks_path(&config.edge.state_dir()))?;
    if !doc.retire(kid, now_secs())? {
        eprintln!("key `{kid}` was already retired");
    }
    doc.save()?;
    Ok(doc.path().to_owned())
}

/// The `keys list` table.
pub fn list(config: &Config) -> Result<String, EdgeError> {
    let state_dir = config.edge.state_dir();
    let path = config.jwt.jwks_path(&state_dir);
    let set = KeySet::read(&path)?.unwrap_or_default();
    let keys_dir = config.jwt.keys_path(&state_dir);
    let default = config.jwt.default_kid.as_deref();
    let mut out = format!("key set: {}\n", path.display());
    out.push_str(&format!(
        "{:<32} {:<6} {:<8} {:<20} {:<8} {}\n",
        "KID", "ALG", "STATUS", "CREATED", "PRIVATE", "THUMBPRINT"
    ));
    for key in set.iter() {
        let kid = key.kid.as_deref().unwrap_or_default();
        let created = key
            .created
            .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok())
            .map_or_else(
                || "-".to_owned(),
                |t| {
                    format!(
                        "{:04}-{:02}-{:02} {:02}:{:02}",
                        t.year(),
                        u8::from(t.month()),
                        t.day(),
                        t.hour(),
                        t.minute()
                    )
                },
            );
        let status = match (key.status, Some(kid) == default) {
            (KeyStatus::Active, true) => "default",
            (status, _) => status.name(),
        };
        let private = if private_key_path(&keys_dir, kid, key.alg).exists() {
            "here"
        } else {
            "-"
        };
        out.push_str(&format!(
            "{kid:<32} {:<6} {status:<8} {created:<20} {private:<8} {}\n",
            key.alg.name(),
            key.thumbprint
        ));
    }
    if default.is_none() {
        out.push_str(
            "(no kid)                         HS256  default  -                    -        \
             the HS256 secret (tokens without kid, vibectl-server's)\n",
        );
    }
    Ok(out)
}

/// Runs a `keys` command, printing what it did.
pub fn run(command: KeysCommand, config: &Config) -> Result<(), EdgeError> {
    match command {
        KeysCommand::Generate { alg, kid } => {
            let made = generate(config, alg, kid.as_deref())?;
            println!("generated {} key `{}`", made.alg, made.kid);
            println!(
                "  private key (keep it where tokens are signed): {}",
                made.private_key.display()
            );
            println!(
                "  public key added to the key set:               {}",
                made.key_set.display()
            );
            if made.alg.is_symmetric() {
                println!(
                    "  note: an HS256 key is a shared secret; the key set now holds it (mode 0600)"
                );
            }
            println!(
                "  sign with it: `vibectl-edge generate-token SUBJECT --kid {}`, or set \
                 jwt.default_kid = \"{}\"; give every edge the new key set",
                made.kid, made.kid
            );
        }
        KeysCommand::Import {
            alg,
            kid,
            public_key_file,
        } => {
            let path = import(config, alg, &kid, &public_key_file)?;
            println!("imported {alg} key `{kid}` into {}", path.display());
        }
        KeysCommand::List => print!("{}", list(config)?),
        KeysCommand::Retire { kid } => {
            let path = retire(config, &kid)?;
            println!(
                "retired `{kid}` in {}: tokens signed with it are refused within jwt.reload_interval ({})",
                path.display(),
                humantime::format_duration(config.jwt.reload_interval)
            );
            if config.jwt.default_kid.as_deref() == Some(kid.as_str()) {
                eprintln!(
                    "warning: `{kid}` is jwt.default_kid: tokens without kid are now refused; \
                     point jwt.default_kid at an active key"
                );
            }
        }
    }
    Ok(())
}

//! `vibectl-edge ca …`: the private CA (see [`crate::tls::ca`]) from the
//! command line. Results go to stdout (tables, paths, fingerprints, the
//! bundle), logs to stderr. `check-expiry` exits non-zero, listing the
//! certificates, when one expires within the window: usable from cron or a
//! probe. The container image has no shell tools, so `bundle` prints the CA
//! bundle itself.

use crate::{
    EdgeError,
    tls::{
        ca::{self, Outcome, Validity},
        files::unix_to_rfc3339,
        inspect::{self, CertInfo},
    },
};
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};
use vibectl_config::{Config, defaults};

/// Where the CA lives.
#[derive(Debug, Clone, Args)]
pub struct CaDir {
    /// The CA directory (default: <state dir>/ca).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

impl CaDir {
    fn resolve(&self, config: &Config) -> PathBuf {
        self.dir
            .clone()
            .unwrap_or_else(|| config.edge.state_dir().join("ca"))
    }
}

/// The `ca` subcommands.
#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Create a root CA and an intermediate CA (the intermediate signs; move
    /// the root key offline afterwards). On an existing complete CA, does
    /// nothing and says so.
    Init {
        /// The CA directory.
        #[command(flatten)]
        dir: CaDir,
        /// Validity of the root CA, in days.
        #[arg(long, value_name = "DAYS", default_value_t = defaults::CA_ROOT_VALIDITY_DAYS)]
        root_days: u32,
        /// Validity of the intermediate CA, in days.
        #[arg(long, value_name = "DAYS", default_value_t = defaults::CA_INTERMEDIATE_VALIDITY_DAYS)]
        intermediate_days: u32,
        /// Replace an existing CA (clients then need the new ca-bundle.crt).
        #[arg(long)]
        force: bool,
    },
    /// Issue the server certificate (server.crt: leaf + intermediate;
    /// server.key) for HOST… (DNS names and IP addresses).
    CreateServerCert {
        /// The CA directory.
        #[command(flatten)]
        dir: CaDir,
        /// DNS names and IP addresses the server answers for.
        #[arg(required = true, value_name = "HOST")]
        hosts: Vec<String>,
        /// Validity, in days.
        #[arg(long, value_name = "DAYS", default_value_t = defaults::CA_LEAF_VALIDITY_DAYS)]
        days: u32,
        /// Replace an existing server certificate that differs.
        #[arg(long)]
        force: bool,
    },
    /// Issue a client certificate for mutual TLS: clients/NAME.crt and .key.
    CreateClientCert {
        /// The CA directory.
        #[command(flatten)]
        dir: CaDir,
        /// The client's name (the certificate's common name).
        #[arg(value_name = "NAME")]
        name: String,
        /// Validity, in days.
        #[arg(long, value_name = "DAYS", default_value_t = defaults::CA_LEAF_VALIDITY_DAYS)]
        days: u32,
        /// Replace an existing certificate of that name.
        #[arg(long)]
        force: bool,
    },
    /// Show every certificate: subject, issuer, SANs, expiry, serial, SHA-256.
    Status {
        /// The CA directory.
        #[command(flatten)]
        dir: CaDir,
    },
    /// Exit non-zero, listing them, if certificates expire within DAYS.
    CheckExpiry {
        /// The CA directory.
        #[command(flatten)]
        dir: CaDir,
        /// The window, in days.
        #[arg(long, value_name = "DAYS", default_value_t = 30)]
        days: u32,
    },
    /// Print ca-bundle.crt (what clients trust) to stdout.
    Bundle {
        /// The CA directory.
        #[command(flatten)]
        dir: CaDir,
    },
}

/// Runs a `ca` subcommand.
pub fn run(command: CaCommand, config: &Config) -> Result<(), EdgeError> {
    let now = inspect::now_unix();
    match command {
        CaCommand::Init {
            dir,
            root_days,
            intermediate_days,
            force,
        } => {
            let dir = dir.resolve(config);
            let validity = Validity {
                root_days,
                intermediate_days,
            };
            let report = ca::init(&dir, validity, force)?;
            print!("{}", init_text(&dir, &report));
        }
        CaCommand::CreateServerCert {
            dir,
            hosts,
            days,
            force,
        } => {
            let dir = dir.resolve(config);
            let report = ca::create_server_cert(&dir, &hosts, days, force)?;
            print!("{}", leaf_text("server", &dir, &report, now));
        }
        CaCommand::CreateClientCert {
            dir,
            name,
            days,
            force,
        } => {
            let dir = dir.resolve(config);
            let report = ca::create_client_cert(&dir, &name, days, force)?;
            print!("{}", leaf_text("client", &dir, &report, now));
        }
        CaCommand::Status { dir } => {
            let dir = dir.resolve(config);
            print!("{}", status_table(&dir, &ca::status(&dir)?, now));
        }
        CaCommand::CheckExpiry { dir, days } => {
            let dir = dir.resolve(config);
            let expiring = ca::expiring(&dir, days, now)?;
            if expiring.is_empty() {
                println!(
                    "OK: no certificate in {} expires within {days} days",
                    dir.display()
                );
            } else {
                print!("{}", status_table(&dir, &expiring, now));
                return Err(ca::CaError::Expiring {
                    dir,
                    count: expiring.len(),
                    days,
                }
                .into());
            }
        }
        CaCommand::Bundle { dir } => {
            print!("{}", ca::bundle(&dir.resolve(config))?);
        }
    }
    Ok(())
}

fn init_text(dir: &Path, report: &ca::InitReport) -> String {
    let mut out = String::new();
    let intro = match report.outcome {
        Outcome::Created => format!("created a new CA in {}", dir.display()),
        Outcome::Replaced => format!(
            "REPLACED the CA in {} (--force): clients must fetch the new bundle",
            dir.display()
        ),
        Outcome::Kept => format!(
            "a complete CA already exists in {}: kept it, nothing written (--force replaces it)",
            dir.display()
        ),
    };
    out.push_str(&format!("{intro}\n"));
    out.push_str(&format!(
        "CA bundle (give it to clients, --ca-bundle): {}\n",
        report.bundle.display()
    ));
    out.push_str(&format!(
        "root CA SHA-256:         {}\n",
        report.root_sha256
    ));
    out.push_str(&format!(
        "intermediate CA SHA-256: {}\n",
        report.intermediate_sha256
    ));
    out.push_str("Publish the root fingerprint so clients can check the bundle they receive.\n");
    if let Some(root_key) = &report.root_key {
        out.push_str(&format!(
            "The root key {} only signs intermediates: move it offline.\n",
            root_key.display()
        ));
    }
    for orphan in &report.orphaned {
        out.push_str(&format!(
            "warning: {} was issued by the replaced CA; re-issue it (--force)\n",
            orphan.display()
        ));
    }
    out
}

fn leaf_text(kind: &str, dir: &Path, report: &ca::LeafReport, now: i64) -> String {
    let verb = match report.outcome {
        Outcome::Created => "issued",
        Outcome::Replaced => "re-issued (replacing the previous one)",
        Outcome::Kept => "kept the existing, matching",
    };
    let mut out = format!("{verb} {kind} certificate\n");
    out.push_str(&format!("certificate (chain): {}\n", report.cert.display()));
    out.push_str(&format!("key:                 {}\n", report.key.display()));
    if !report.info.sans.is_empty() {
        out.push_str(&format!(
            "names:               {}\n",
            report.info.sans.join(", ")
        ));
    }
    out.push_str(&format!("subject:             {}\n", report.info.subject));
    out.push_str(&format!(
        "expires:             {} ({} days)\n",
        unix_to_rfc3339(report.info.not_after),
        report.info.days_left(now)
    ));
    out.push_str(&format!("SHA-256:             {}\n", report.info.sha256));
    if report.outcome == Outcome::Kept {
        out.push_str("nothing written; --force re-issues it\n");
    }
    out.push_str(&format!(
        "clients verify it with {}\n",
        dir.join(ca::files::BUNDLE).display()
    ));
    out
}

/// Two aligned tables: what each certificate is and when it expires, then
/// its serial and fingerprint (too wide for one line together).
pub fn status_table(dir: &Path, certs: &[(PathBuf, CertInfo)], now: i64) -> String {
    let name = |path: &Path| path.strip_prefix(dir).unwrap_or(path).display().to_string();
    let cn = |dn: &str| common_name_of(dn).unwrap_or_else(|| dn.to_owned());
    let days = |info: &CertInfo| {
        let left = info.days_left(now);
        if info.not_after <= now {
            format!("{left} (EXPIRED)")
        } else {
            left.to_string()
        }
    };
    let mut rows = vec![[
        "FILE".to_owned(),
        "KIND".to_owned(),
        "SUBJECT (CN)".to_owned(),
        "ISSUER (CN)".to_owned(),
        "SANS".to_owned(),
        "NOT AFTER".to_owned(),
        "DAYS LEFT".to_owned(),
    ]];
    for (path, info) in certs {
        rows.push([
            name(path),
            if info.is_ca { "CA" } else { "leaf" }.to_owned(),
            cn(&info.subject),
            cn(&info.issuer),
            if info.sans.is_empty() {
                "-".to_owned()
            } else {
                info.sans.join(",")
            },
            unix_to_rfc3339(info.not_after),
            days(info),
        ]);
    }
    let mut out = align(&rows);
    out.push('\n');
    let mut ids = vec![["FILE".to_owned(), "SERIAL".to_owned(), "SHA-256".to_owned()]];
    for (path, info) in certs {
        ids.push([name(path), info.serial.clone(), info.sha256.clone()]);
    }
    out.push_str(&align(&ids));
    out
}

fn common_name_of(dn: &str) -> Option<String> {
    dn.split(", ")
        .find_map(|part| part.strip_prefix("CN="))
        .map(str::to_owned)
}

fn align<const N: usize>(rows: &[[String; N]]) -> String {
    let mut widths = [0usize; N];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
            if i + 1 == N {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  "));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(subject: &str, not_after: i64, sans: &[&str]) -> CertInfo {
        CertInfo {
            subject: format!("O=vibectl LLM proxy, CN={subject}"),
            common_name: Some(subject.to_owned()),
            issuer: "O=vibectl LLM proxy, CN=issuer".to_owned(),
            sans: sans.iter().map(|s| (*s).to_owned()).collect(),
            serial: "01:02".to_owned(),
            sha256: "AA:BB".to_owned(),
            not_before: 0,
            not_after,
            is_ca: false,
        }
    }

    #[test]
    fn table_is_aligned_and_marks_expired() {
        let dir = Path::new("/ca");
        let certs = vec![
            (
                dir.join("server.crt"),
                info("proxy.example", 40 * 86_400, &["proxy.example", "10.0.0.1"]),
            ),
            (dir.join("clients/old.crt"), info("old", 86_400, &[])),
        ];
        let text = status_table(dir, &certs, 2 * 86_400);
        let lines: Vec<_> = text.lines().collect();
        assert!(lines[0].starts_with("FILE"), "{text}");
        assert!(lines[1].starts_with("server.crt "), "{text}");
        assert!(lines[1].contains("proxy.example,10.0.0.1"), "{text}");
        assert!(lines[1].contains(" issuer "), "{text}");
        assert!(lines[1].ends_with("38"), "{text}");
        assert!(lines[2].contains("(EXPIRED)"), "{text}");
        let col = lines[0].find("SUBJECT").expect("column");
        assert_eq!(&lines[1][col..col + 13], "proxy.example");
        assert!(text.contains("SERIAL") && text.contains("AA:BB"), "{text}");
    }
}

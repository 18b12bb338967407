//! A throwaway PostgreSQL cluster from Debian's `postgresql` package:
//! `initdb` in a temporary directory, `pg_ctl start` on a free loopback
//! port (socket directory in the same temporary directory), run as
//! `nobody` when the tests run as root (PostgreSQL refuses root). Trust
//! authentication on loopback only; stopped when dropped.
//!
//! Debian keeps the binaries in `/usr/lib/postgresql/<version>/bin`, not
//! on `PATH`; `scripts/test` installs the package.

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Command, Output},
};

/// A running cluster.
pub struct Postgres {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    as_nobody: bool,
    _dir: tempfile::TempDir,
}

fn bin_dir() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL (Debian package postgresql) must be installed")
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    found.sort();
    found.pop().expect("no /usr/lib/postgresql/*/bin/initdb")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

impl Postgres {
    /// Creates and starts a cluster (bounded by `pg_ctl -w`'s own timeout).
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let as_nobody = is_root();
        if as_nobody {
            let chown = Command::new("chown")
                .arg("nobody")
                .arg(dir.path())
                .status()
                .expect("chown");
            assert!(chown.success(), "chown nobody");
        }
        let pg = Self {
            bin: bin_dir(),
            data: dir.path().join("data"),
            port: 0,
            as_nobody,
            _dir: dir,
        };
        let init = pg.run(
            "initdb",
            &[
                "-D",
                &pg.data.display().to_string(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            ],
        );
        assert!(
            init.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&init.stderr)
        );
        let mut pg = pg;
        // A free port now; another process could take it first, so retry.
        for _ in 0..5 {
            pg.port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("free port")
                .port();
            let dir = pg._dir.path().display().to_string();
            let options = format!(
                "-p {} -k {dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=50",
                pg.port
            );
            let log = format!("{dir}/postgres.log");
            let started = pg.run(
                "pg_ctl",
                &[
                    "-D",
                    &pg.data.display().to_string(),
                    "-l",
                    &log,
                    "-o",
                    &options,
                    "-w",
                    "-t",
                    "30",
                    "start",
                ],
            );
            if started.status.success() {
                return pg;
            }
        }
        panic!(
            "PostgreSQL did not start: see its log in {}",
            pg._dir.path().display()
        );
    }

    fn run(&self, tool: &str, args: &[&str]) -> Output {
        let path = self.bin.join(tool);
        let mut cmd = if self.as_nobody {
            let mut c = Command::new("runuser");
            c.args(["-u", "nobody", "--"]).arg(&path);
            c
        } else {
            Command::new(&path)
        };
        cmd.args(args)
            .current_dir(Path::new("/"))
            .output()
            .unwrap_or_else(|e| panic!("{tool}: {e}"))
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres` (trust: no password).
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The loopback port.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data.display().to_string(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        );
    }
}

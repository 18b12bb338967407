//! A real authoritative DNS server for DNS-01 tests: Debian's BIND 9
//! (`named`) on 127.0.0.1 at a port that was free a moment ago (UDP and
//! TCP), in a temporary directory, serving one test zone that takes RFC
//! 2136 updates of TXT records signed with a TSIG key made by
//! `tsig-keygen` (the key file is what the edge's `secret_file` reads).
//! [`Bind::txt`] asks it with `dig`, an independent client. Killed when
//! dropped.
//!
//! ```ignore
//! let bind = Bind::start("vibectl.test").await;
//! // [tls.acme.dns01] server = bind.address(), zone, key_name = bind.key_name(),
//! //                  secret_file = bind.key_file()
//! // pebble -dnsserver bind.address()
//! ```

use crate::server_process::ServerProcess;
use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Command,
};

/// The TSIG key's name in the test zone's `update-policy`.
pub const KEY_NAME: &str = "acme-test-key";

/// A running `named`.
pub struct Bind {
    named: ServerProcess,
    port: u16,
    zone: String,
    dir: tempfile::TempDir,
}

/// `name` from PATH, else from /usr/sbin (where Debian puts `named` and
/// `tsig-keygen`, which a non-root PATH may lack).
fn tool(name: &str) -> Command {
    let in_path = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(name).is_file()));
    let sbin = Path::new("/usr/sbin").join(name);
    if in_path || !sbin.is_file() {
        Command::new(name)
    } else {
        Command::new(sbin)
    }
}

fn run(command: &mut Command) -> String {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?} (Debian packages bind9, bind9-dnsutils): {e}"));
    assert!(output.status.success(), "{command:?}: {output:?}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `dig` over TCP at 127.0.0.1:`port`, short answers.
fn dig(port: u16, name: &str, kind: &str) -> String {
    run(Command::new("dig")
        .args(["+short", "+tcp", "+norecurse", "+time=2", "+tries=1"])
        .args(["-p", &port.to_string(), "@127.0.0.1", name, kind]))
}

/// `named -g` serving `zone` on `port` (named.conf written in `dir`).
fn named_command(dir: &Path, zone: &str, port: u16) -> Command {
    let d = dir.display();
    let conf = format!(
        "options {{\n  directory \"{d}\";\n  pid-file \"{d}/named.pid\";\n\
         session-keyfile \"{d}/session.key\";\n  managed-keys-directory \"{d}\";\n\
         listen-on port {port} {{ 127.0.0.1; }};\n  listen-on-v6 {{ none; }};\n\
         recursion no;\n  allow-query {{ any; }};\n  dnssec-validation no;\n  notify no;\n}};\n\
         controls {{ }};\n\
         include \"{d}/acme.key\";\n\
         zone \"{zone}\" {{\n  type primary;\n  file \"{d}/zone.db\";\n\
         journal \"{d}/zone.jnl\";\n  update-policy {{ grant {KEY_NAME} zonesub TXT; }};\n}};\n"
    );
    let conf_file = dir.join("named.conf");
    std::fs::write(&conf_file, conf).expect("write named.conf");
    let mut named = tool("named");
    named.arg("-g").arg("-c").arg(&conf_file);
    named
}

impl Bind {
    /// Starts `named` serving `zone` (its apex has an SOA, an NS and an A
    /// record 127.0.0.1; [`KEY_NAME`] may update TXT records anywhere in
    /// it) and waits, bounded, until it answers for the zone.
    pub async fn start(zone: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = run(tool("tsig-keygen").args(["-a", "hmac-sha256", KEY_NAME]));
        std::fs::write(dir.path().join("acme.key"), &key).expect("write key");
        std::fs::write(
            dir.path().join("zone.db"),
            format!(
                "$TTL 60\n@ IN SOA ns1.{zone}. hostmaster.{zone}. ( 1 60 60 600 60 )\n\
                 @ IN NS ns1.{zone}.\nns1 IN A 127.0.0.1\n@ IN A 127.0.0.1\n"
            ),
        )
        .expect("write zone");
        let log = dir.path().join("named.log");
        let (child, ports) = ServerProcess::start(
            "named",
            &log,
            1,
            |ports| named_command(dir.path(), zone, ports[0]),
            |ports| {
                std::fs::read_to_string(&log).is_ok_and(|l| l.contains("running"))
                    && !dig(ports[0], zone, "SOA").trim().is_empty()
            },
        )
        .await;
        Self {
            named: child,
            port: ports[0],
            zone: zone.to_owned(),
            dir,
        }
    }

    fn dig(&self, name: &str, kind: &str) -> String {
        dig(self.port, name, kind)
    }

    /// `127.0.0.1:PORT` (UDP and TCP).
    pub fn address(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The zone served.
    pub fn zone(&self) -> &str {
        &self.zone
    }

    /// The key file `tsig-keygen` wrote (`key "…" { algorithm …; secret "…"; };`).
    pub fn key_file(&self) -> PathBuf {
        self.dir.path().join("acme.key")
    }

    /// A key file with [`KEY_NAME`] but another secret (what the server
    /// refuses), in `dir`.
    pub fn wrong_key_file(&self, dir: &Path) -> PathBuf {
        let key = run(tool("tsig-keygen").args(["-a", "hmac-sha256", KEY_NAME]));
        let file = dir.join("wrong.key");
        std::fs::write(&file, key).expect("write");
        file
    }

    /// The TXT values served for `name`, asked with `dig` over TCP.
    pub fn txt(&self, name: &str) -> Vec<String> {
        self.dig(name, "TXT")
            .lines()
            .map(|l| l.trim().trim_matches('"').to_owned())
            .filter(|l| !l.is_empty())
            .collect()
    }

    /// named's log (for failure messages; its update lines show what changed).
    pub fn log(&self) -> String {
        self.named.log()
    }
}

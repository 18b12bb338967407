//! The alert rules shipped in config/alerts: `promtool` checks them and
//! runs their unit tests on synthetic series, and every `vibectl_*` series
//! an alert uses is exposed under that name by a running edge and core and
//! stored by a real Prometheus scraping them.

use crate::support::sample;
use std::{path::PathBuf, process::Command};
use vibectl_proto::llm_proxy::GetServerInfoRequest;
use vibectl_tests::harness::{Stack, authed, execute_request, http_get};

fn alerts_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../config/alerts")
}

#[test]
fn promtool_checks_the_rules_and_their_tests_pass() {
    let dir = alerts_dir();
    let rules = std::fs::read_to_string(dir.join("vibectl-rules.yml")).expect("rules");
    // The PrometheusRule of the kind overlays carries the same groups,
    // indented under `spec:`.
    let operator = std::fs::read_to_string(dir.join("../../kind/monitoring/prometheusrule.yaml"))
        .expect("PrometheusRule");
    let spec = operator.split_once("\nspec:\n").expect("spec").1;
    let dedented: String = spec
        .lines()
        .map(|l| format!("{}\n", l.strip_prefix("  ").unwrap_or(l)))
        .collect();
    let groups = &rules[rules.find("groups:").expect("groups")..];
    assert_eq!(
        dedented, groups,
        "kind/monitoring/prometheusrule.yaml spec must be config/alerts/vibectl-rules.yml's groups"
    );
    for args in [
        ["check", "rules", "vibectl-rules.yml"],
        ["test", "rules", "vibectl-rules.test.yml"],
    ] {
        let out = Command::new("promtool")
            .args(args)
            .current_dir(&dir)
            .output()
            .expect("promtool (Debian package prometheus) runs");
        assert!(
            out.status.success(),
            "promtool {args:?}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_series_an_alert_uses_is_exposed_by_the_running_processes() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("key");
    std::fs::write(&key, "sk-test").expect("key");
    let config = format!(
        "[metrics]\nenabled = true\ncore_listen = \"127.0.0.1:{port}\"\n\
         [limits.per_token.limited]\nmax_requests_per_minute = 1\nburst = 1\n\
         [providers.echo]\nkind = \"echo\"\n\
         [providers.broken]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\n\
         api_key_file = \"{}\"\nmax_retries = 0\n\
         [[models]]\nid = \"echo\"\nprovider = \"echo\"\n\
         [[models]]\nid = \"broken-model\"\nprovider = \"broken\"\n",
        key.display()
    );
    let stack = Stack::builder().config(&config).start().await;
    let mut client = stack.client().await;
    let limited = stack.token("limited");
    for _ in 0..2 {
        let _ = client
            .get_server_info(authed(GetServerInfoRequest {}, &limited))
            .await;
    }
    let token = stack.token("alice");
    let _ = client
        .execute(authed(execute_request(Some("echo"), "hi"), &token))
        .await;
    let _ = client
        .execute(authed(execute_request(Some("broken-model"), "hi"), &token))
        .await;
    let edge = stack.admin_get("/metrics").await.1;
    let core = http_get(core_addr(port), "/metrics").await.1;
    // The ACME series exist only on an edge in ACME mode: acme_pebble and
    // acme_renewal check them on one (see `acme_alert_series`).
    let names: Vec<String> = alert_series()
        .into_iter()
        .filter(|n| !n.starts_with("vibectl_acme_"))
        .collect();
    assert!(names.len() >= 9, "{names:?}");
    for name in &names {
        let name = name.as_str();
        let exposed = sample(&edge, name, &[]).is_some() || sample(&core, name, &[]).is_some();
        assert!(
            exposed,
            "{name} is used by an alert but exposed by neither process\nedge:\n{edge}\ncore:\n{core}"
        );
    }
    // A real Prometheus scraping both processes stores every one of them
    // under the name the alert uses.
    let prometheus = Prometheus::start(&[stack.admin_addr, core_addr(port)]);
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    prometheus.wait_for_series(&names).await;
    stack.shutdown().await;
}

/// Every `vibectl_*` counter and gauge (`_total`, `_seconds`) an alert uses.
pub(crate) fn alert_series() -> Vec<String> {
    let rules = std::fs::read_to_string(alerts_dir().join("vibectl-rules.yml")).expect("rules");
    let mut names: Vec<String> = rules
        .match_indices("vibectl_")
        .map(|(i, _)| {
            let rest = &rules[i..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            rest[..end].to_owned()
        })
        .filter(|n| n.ends_with("_total") || n.ends_with("_seconds"))
        .collect();
    names.sort_unstable();
    names.dedup();
    names
}

/// The ACME series alerts use (an ACME-mode edge's), but `except`.
pub(crate) fn acme_alert_series(except: &[&str]) -> Vec<String> {
    let names: Vec<String> = alert_series()
        .into_iter()
        .filter(|n| n.starts_with("vibectl_acme_") && !except.contains(&n.as_str()))
        .collect();
    assert!(!names.is_empty(), "the ACME renewal alert uses ACME series");
    names
}

fn core_addr(port: u16) -> std::net::SocketAddr {
    format!("127.0.0.1:{port}").parse().expect("addr")
}

/// `prometheus` (Debian package) on 127.0.0.1 with a temporary TSDB,
/// scraping the given targets every 500 ms; killed on drop.
struct Prometheus {
    child: std::process::Child,
    addr: std::net::SocketAddr,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(targets: &[std::net::SocketAddr]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port");
        let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        let config = format!(
            "global:\n  scrape_interval: 500ms\n  scrape_timeout: 400ms\n\
             scrape_configs:\n  - job_name: vibectl\n    static_configs:\n      - targets: [{}]\n",
            targets.join(", ")
        );
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).expect("prometheus.yml");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("prometheus (Debian package prometheus) runs");
        Self {
            child,
            addr,
            _dir: dir,
        }
    }

    /// Waits (at most 30 s) until a query for each name returns a series.
    async fn wait_for_series(&self, names: &[&str]) {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
        let mut missing: Vec<&str> = names.to_vec();
        while !missing.is_empty() {
            let mut still = Vec::new();
            for name in missing {
                let path = format!("/api/v1/query?query=count({name})");
                let answered = tokio::time::timeout(
                    std::time::Duration::from_secs(2),
                    try_http_get(self.addr, &path),
                )
                .await
                .ok()
                .flatten();
                let found = answered.is_some_and(|(status, body)| {
                    status == 200
                        && body.contains("\"status\":\"success\"")
                        && !body.contains("\"result\":[]")
                });
                if !found {
                    still.push(name);
                }
            }
            missing = still;
            if missing.is_empty() {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "Prometheus scraping the edge and the core has no series for {missing:?}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// GET over HTTP/1.1; `None` while nothing listens yet.
async fn try_http_get(addr: std::net::SocketAddr, path: &str) -> Option<(u16, String)> {
    tokio::net::TcpStream::connect(addr).await.ok()?;
    Some(http_get(addr, path).await)
}

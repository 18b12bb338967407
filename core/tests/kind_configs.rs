//! The pod's configuration files (`kind/config/*.toml`, the ConfigMaps of
//! the overlays) load with the real config model, which rejects unknown
//! keys, and put the edge and the core on the same Unix socket in the pod's
//! shared `run` volume (mounted at /run/vibectl).

use std::path::Path;
use vibectl_config::Config;

#[test]
fn every_pod_config_loads_and_puts_the_core_on_the_shared_socket() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../kind/config");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("kind/config") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read");
        let config = Config::from_toml(&text, &path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            config.core.listen,
            "unix:/run/vibectl/core/core.sock",
            "{}",
            path.display()
        );
        assert_eq!(
            config.edge.core_address,
            config.core.listen,
            "{}",
            path.display()
        );
        seen += 1;
    }
    assert_eq!(seen, 4, "ca, acme, acme-http, cert-manager");
}

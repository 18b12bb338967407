//! [`StackBuilder`]: what a [`Stack`] runs with (extra TOML, plaintext,
//! where the core listens or which external core, trusted CA, config
//! watching), and starting it.

use super::{Stack, Task, init_logs, tokens::JWT_SECRET};
use std::{path::PathBuf, sync::Arc};
use tokio_util::sync::CancellationToken;
use vibectl_config::{Config, Secret, SelfSignedTls};
use vibectl_edge::{
    app::{Binds, EdgeApp},
    auth::SecretEnv,
};

/// Builds a [`Stack`].
#[derive(Debug, Default)]
pub struct StackBuilder {
    toml: String,
    insecure: bool,
    core_listen: Option<String>,
    external_core: Option<String>,
    trust: Option<PathBuf>,
    watch_config: bool,
}

impl StackBuilder {
    /// Extra configuration (TOML) read by both the core and the edge. The
    /// harness then sets the core address, state dir, certificate dir and
    /// JWT secret itself.
    pub fn config(mut self, toml: &str) -> Self {
        self.toml = toml.to_owned();
        self
    }

    /// Serve plaintext h2c (`serve-insecure`) instead of TLS.
    pub fn insecure(mut self) -> Self {
        self.insecure = true;
        self
    }

    /// Where the in-process core listens (default `127.0.0.1:0`; a
    /// `unix:/path` socket works too).
    pub fn core_listen(mut self, listen: &str) -> Self {
        self.core_listen = Some(listen.to_owned());
        self
    }

    /// The CA bundle clients trust when the config names `[tls.files]`
    /// (self-signed stacks trust their own `ca-bundle.crt`).
    pub fn trust(mut self, ca_bundle: &std::path::Path) -> Self {
        self.trust = Some(ca_bundle.to_owned());
        self
    }

    /// Write the configuration to [`Stack::config_path`] and let the edge
    /// watch it (hot reload of `[limits]`, as `serve --config FILE` does).
    pub fn watch_config(mut self) -> Self {
        self.watch_config = true;
        self
    }

    /// Start no core; point the edge at `address` (another server, or a
    /// dead port).
    pub fn external_core(mut self, address: &str) -> Self {
        self.external_core = Some(address.to_owned());
        self
    }

    /// Starts the core (unless external), then the edge and its admin
    /// listener, and waits until `/ready` is 200 (unless the core is external).
    pub async fn start(self) -> Stack {
        init_logs();
        let dir = tempfile::tempdir().expect("tempdir");
        let config_path = dir.path().join("harness.toml");
        std::fs::write(&config_path, &self.toml).expect("write harness.toml");
        let mut config = Config::from_toml(&self.toml, &config_path)
            .unwrap_or_else(|e| panic!("harness config: {e}"));
        config.edge.state_dir = Some(dir.path().to_owned());
        config.jwt.secret_key = Some(Secret::new(JWT_SECRET));
        if config.tls.files.is_none() {
            config.tls.self_signed = Some(SelfSignedTls {
                dir: Some(dir.path().join("certs")),
                ..SelfSignedTls::default()
            });
        }
        let core_listener = match &self.external_core {
            Some(address) => {
                config.edge.core_address = address.clone();
                None
            }
            None => {
                let listen = self.core_listen.as_deref().unwrap_or("127.0.0.1:0");
                let listener = vibectl_core::CoreListener::bind(listen)
                    .await
                    .expect("bind core");
                config.edge.core_address = listener.local_addr_string();
                Some(listener)
            }
        };
        let config = Arc::new(config);
        let core = core_listener.map(|listener| {
            let token = CancellationToken::new();
            let handle = tokio::spawn(vibectl_core::serve(listener, config.clone(), token.clone()));
            Task { token, handle }
        });
        let binds = Binds::loopback(false).await.expect("bind edge");
        // The secret is the configuration's (`jwt.secret_key`), whatever
        // the environment of the test process says.
        let mut app = EdgeApp::new(Config::clone(&config))
            .secret_env(SecretEnv::default())
            .watch_config(self.watch_config);
        if self.insecure {
            app = app.plaintext();
        }
        let edge_token = CancellationToken::new();
        let running = app
            .build(binds, edge_token.clone())
            .await
            .unwrap_or_else(|e| panic!("the edge did not start: {e}"));
        let ca_bundle = match (running.self_signed(), self.trust, self.insecure) {
            (_, _, true) => None,
            (Some(made), _, false) => Some(made.ca_bundle_path.clone()),
            (None, Some(trust), false) => Some(trust),
            (None, None, false) => {
                panic!("[tls.files] stacks need StackBuilder::trust(ca_bundle)")
            }
        };
        let stack = Stack {
            core_address: config.edge.core_address.clone(),
            config,
            edge: running.edge().clone(),
            edge_addr: running.main_addr(),
            admin_addr: running.admin_addr(),
            ca_bundle,
            cert_resolver: running.resolver().cloned(),
            edge_token,
            core,
            running: Some(running),
            config_path,
            dir,
        };
        if self.external_core.is_none() {
            stack.wait_ready().await;
        }
        stack
    }
}

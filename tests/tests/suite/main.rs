//! The end-to-end suite: one test binary (one link, one copy on disk) holding
//! every scenario module. cargo-nextest still runs each test in its own process.

mod journey_support;
mod support;
mod tls_common;
mod token_common;

mod acme_common;
mod acme_orders;
mod acme_pebble;
mod acme_renewal;
mod acme_startup;
mod core_bench;
mod core_echo;
mod core_shutdown;
mod e2e_auth;
mod e2e_forward;
mod e2e_lifecycle;
mod e2e_many_streams;
mod edge_tls;
mod hardening_common;
mod hardening_connections;
mod hardening_fdlimit;
mod hardening_requests;
mod journey_dev;
mod journey_manual;
mod ledger_postgres;
mod ledger_sqlite;
mod limits_contract;
mod limits_core;
mod limits_edge;
mod limits_redis;
mod metrics_core;
mod metrics_edge;
mod providers_anthropic;
mod providers_openai;
mod quota_memory;
mod quota_redis;
mod reload_limits;
mod tls_mtls;
mod tls_policy;
mod tls_private_ca;
mod tls_rotation;
mod tls_testssl;
mod token_keys;
mod token_policy;

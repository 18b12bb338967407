//! The edge's integration tests: one test binary (one link, one copy on disk).

mod binary;
mod ca_cli;
mod ca_serve;
mod cli;
mod start_order;
mod token_cli;
mod token_layer;

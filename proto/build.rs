//! Compiles `proto/llm_proxy.proto` in pure Rust (protox: no `protoc` needed)
//! and generates the tonic client and server, plus a descriptor set for
//! server reflection.

use std::{env, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/llm_proxy.proto");
    let fds = protox::compile(["llm_proxy.proto"], ["proto"])?;
    let out = PathBuf::from(env::var("OUT_DIR")?);
    std::fs::write(
        out.join("llm_proxy_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}

//! The vibectl LLM proxy wire contract: `vibectl.llm_proxy.VibectlLLMProxy`,
//! wire-compatible with the real vibectl client (0.11.6). This crate only
//! holds generated code (messages, tonic client and server) and the encoded
//! descriptor set used by gRPC server reflection, and [`wire`]: the header
//! names, method paths and values the edge and the core must agree on.

/// Generated messages, client and server of package `vibectl.llm_proxy`.
#[allow(clippy::all, missing_docs)]
pub mod llm_proxy {
    tonic::include_proto!("vibectl.llm_proxy");
}

/// Encoded `FileDescriptorSet` of `llm_proxy.proto`, for tonic-reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/llm_proxy_descriptor.bin"));

pub mod wire;

pub use wire::SERVICE_NAME;

pub use llm_proxy::*;

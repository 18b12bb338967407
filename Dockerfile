# syntax=docker/dockerfile:1
#
# The vibectl LLM proxy image: both binaries, `vibectl-edge` and
# `vibectl-core`, in one minimal image. In Kubernetes they run as two
# containers of one pod (see kind/base/deployment.yaml); each container names
# its binary in `command`, so this image has no ENTRYPOINT of its own.
#
#   docker build -t vibectl-proxy:local .
#   docker run --rm vibectl-proxy:local vibectl-edge --help
#
# Build stage: the official Rust image (Debian bookworm, so the binaries link
# against the same glibc as the distroless runtime below). The cache mounts
# keep the crates.io index, downloaded crates and `target/` between builds;
# the binaries are copied out of the cache mount in the same RUN step. The
# edge is built on its own: built together with the core, cargo would unify
# their features and give the edge sqlx's tracing "log" feature (span
# bookkeeping on every call that the edge does not need).

ARG RUST_VERSION=1.95
FROM rust:${RUST_VERSION}-bookworm AS builder
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p vibectl-edge --bin vibectl-edge \
 && cargo build --release --locked -p vibectl-core --bin vibectl-core \
 && install -D -m 0755 target/release/vibectl-edge /out/vibectl-edge \
 && install -D -m 0755 target/release/vibectl-core /out/vibectl-core

# Runtime stage: distroless "cc" (glibc, libgcc, CA certificates, tzdata; no
# shell, no package manager), as the fixed non-root user 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /out/vibectl-edge /out/vibectl-core /usr/local/bin/
# State (self-signed certificates, ACME cache, generated secrets). In
# Kubernetes this is an emptyDir or a volume: the root filesystem is read-only.
ENV VIBECTL_PROXY_HOME=/var/lib/vibectl-proxy
USER 65532:65532
# 8443 TLS (gRPC), 8080 plain HTTP (ACME HTTP-01 + redirect), 9095 the edge's
# admin listener (/live, /ready, /metrics). The core's 50052 stays on loopback.
EXPOSE 8443 8080 9095
CMD ["/usr/local/bin/vibectl-edge", "--help"]

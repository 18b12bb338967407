//! gRPC-shaped answers the edge makes itself: HTTP 200,
//! `content-type: application/grpc`, `grpc-status` and a percent-encoded
//! `grpc-message`, as a trailers-only response (or as the trailers that end
//! a forwarded stream), so every gRPC client reads them as status codes.

use crate::http::EdgeBody;
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode, header::CONTENT_TYPE};
use http_body_util::{BodyExt, Empty};

/// `grpc-status`, parsed once (a `&str` name is parsed on every use, and
/// copied on every insert).
pub const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
/// `grpc-message`.
pub const GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");
/// `limit-type` ([`vibectl_proto::wire::LIMIT_TYPE`]).
pub const LIMIT_TYPE_NAME: HeaderName = HeaderName::from_static(vibectl_proto::wire::LIMIT_TYPE);

/// The gRPC status codes the edge uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum GrpcCode {
    /// The call was cancelled.
    Cancelled = 1,
    /// A deadline or timeout passed.
    DeadlineExceeded = 4,
    /// A limit was hit (used by the later rate-limit layer).
    ResourceExhausted = 8,
    /// The method is not served (request policy).
    Unimplemented = 12,
    /// A bug or an unexpected failure in the edge.
    Internal = 13,
    /// The core cannot be reached; retrying may help.
    Unavailable = 14,
    /// No valid credentials.
    Unauthenticated = 16,
}

impl GrpcCode {
    /// The numeric code.
    pub fn as_u8(self) -> u8 {
        self as u8
    }
}

/// The `grpc-status` and `grpc-message` headers for `code` and `message`.
pub fn status_headers(code: GrpcCode, message: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(GRPC_STATUS, HeaderValue::from(u16::from(code.as_u8())));
    if let Ok(value) = HeaderValue::from_str(&percent_encode(message)) {
        headers.insert(GRPC_MESSAGE, value);
    }
    headers
}

/// A trailers-only gRPC response carrying `code` and `message`.
pub fn response(code: GrpcCode, message: &str) -> Response<EdgeBody> {
    let mut response = Response::new(Empty::new().map_err(|never| match never {}).boxed_unsync());
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    headers.extend(status_headers(code, message));
    response
}

/// Percent-encodes a `grpc-message` as the gRPC spec asks: every byte
/// outside printable ASCII, and `%` itself, becomes `%XX`.
pub fn percent_encode(message: &str) -> String {
    let plain = |byte: u8| (0x20..=0x7e).contains(&byte) && byte != b'%';
    // The common case (a `sub`, a `jti`, most messages): nothing to encode.
    if message.bytes().all(plain) {
        return message.to_owned();
    }
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(message.len() + 8);
    for byte in message.bytes() {
        if plain(byte) {
            out.push(char::from(byte));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0xf)]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailers_only_response_shape() {
        let r = response(GrpcCode::Unauthenticated, "no token: 100% wrong\né");
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["content-type"], "application/grpc");
        assert_eq!(r.headers()["grpc-status"], "16");
        assert_eq!(
            r.headers()["grpc-message"],
            "no token: 100%25 wrong%0A%C3%A9"
        );
        assert_eq!(percent_encode("alice@example.com"), "alice@example.com");
        assert_eq!(percent_encode("\u{7f}~"), "%7F~");
    }
}

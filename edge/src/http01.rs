//! The plain HTTP/1.1 listener of ACME mode (`serve-acme --http-listen`,
//! `tls.acme.http_listen`; port 80 as the CA and browsers see it):
//!
//! - `GET /.well-known/acme-challenge/<token>`: 200 `text/plain` with the
//!   key authorization while that HTTP-01 challenge is pending, else 404.
//!   This path is never redirected (the CA must get the answer over HTTP).
//! - everything else: 308 to `https://<host>[:<https port>]<path>?<query>`
//!   (the request's host without its port; the https port only when it is
//!   not 443), so clients that typed `http://` land on TLS.
//!
//! No `Strict-Transport-Security` here: browsers ignore it over plain HTTP
//! and RFC 6797 §7.2 says not to send it; the TLS listener sends it.

use crate::{EdgeError, conn::ConnTable, tls::acme::KeyAuthorizations};
use bytes::Bytes;
use http::{
    HeaderValue, Method, Request, Response, StatusCode,
    header::{ALLOW, CONTENT_TYPE, HOST, LOCATION},
    uri::Authority,
};
use http_body_util::Full;
use hyper::body::Incoming;
use std::{convert::Infallible, sync::Arc};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The HTTP-01 challenge path prefix (RFC 8555 §8.3).
pub const CHALLENGE_PREFIX: &str = "/.well-known/acme-challenge/";

/// What the plain HTTP listener needs.
#[derive(Clone)]
pub struct Http01 {
    /// The pending HTTP-01 answers.
    pub answers: KeyAuthorizations,
    /// The port of https URLs in redirects (none in the URL when 443).
    pub https_port: u16,
    /// The host redirected to when the request names none (HTTP/1.0
    /// without `Host`) or an unusable one: the first ACME domain.
    pub default_host: String,
}

/// Serves [`Http01`] on `listener` until `shutdown` fires, then lets
/// in-flight requests finish (at most 5 s). Its connections are in `table`,
/// the edge's one connection table ([`crate::Edge::connections`]).
pub async fn serve_http01(
    listener: TcpListener,
    http01: Http01,
    table: Arc<ConnTable>,
    shutdown: CancellationToken,
) -> Result<(), EdgeError> {
    let local = listener.local_addr().map_err(EdgeError::Listener)?;
    tracing::info!(
        %local,
        https_port = http01.https_port,
        "plain HTTP listening: ACME HTTP-01 answers, everything else redirected to https"
    );
    let http01 = Arc::new(http01);
    let handler = move |request: Request<Incoming>| {
        let response = route(&http01, &request);
        async move { Ok::<_, Infallible>(response) }
    };
    crate::plain_http::serve(listener, "http01", table, handler, shutdown).await;
    Ok(())
}

fn route(http01: &Http01, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    answer(http01, request.method(), request.uri(), request.headers())
}

/// The response to one request (no body needed).
pub fn answer(
    http01: &Http01,
    method: &Method,
    uri: &http::Uri,
    headers: &http::HeaderMap,
) -> Response<Full<Bytes>> {
    if let Some(token) = uri.path().strip_prefix(CHALLENGE_PREFIX) {
        if method != Method::GET && method != Method::HEAD {
            let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "use GET".to_owned());
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
            return response;
        }
        let known = is_token(token).then(|| (http01.answers)(token)).flatten();
        return match known {
            Some(key_authorization) => {
                tracing::info!(token, "ACME HTTP-01 challenge answered");
                text(StatusCode::OK, key_authorization)
            }
            None => {
                tracing::debug!(token, "unknown ACME HTTP-01 token");
                text(StatusCode::NOT_FOUND, "no such ACME challenge".to_owned())
            }
        };
    }
    let location = https_location(http01, uri, headers);
    let mut response = text(
        StatusCode::PERMANENT_REDIRECT,
        format!("use https: {location}"),
    );
    match HeaderValue::from_str(&location) {
        Ok(value) => {
            response.headers_mut().insert(LOCATION, value);
        }
        Err(_) => *response.status_mut() = StatusCode::BAD_REQUEST,
    }
    response
}

/// A token as ACME makes them: base64url characters only.
fn is_token(token: &str) -> bool {
    !token.is_empty()
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `https://host[:port]/path?query` for a request: its host (from an
/// absolute URI, else `Host`) without the port, the https port unless 443.
fn https_location(http01: &Http01, uri: &http::Uri, headers: &http::HeaderMap) -> String {
    let host = uri
        .authority()
        .cloned()
        .or_else(|| {
            headers
                .get(HOST)
                .and_then(|h| h.to_str().ok())
                .and_then(|h| h.parse::<Authority>().ok())
        })
        .map(|authority| authority.host().to_owned())
        .filter(|host| !host.is_empty())
        .unwrap_or_else(|| http01.default_host.clone());
    let port = match http01.https_port {
        443 => String::new(),
        port => format!(":{port}"),
    };
    let path = uri
        .path_and_query()
        .map(|pq| pq.as_str())
        .filter(|pq| pq.starts_with('/'))
        .unwrap_or("/");
    format!("https://{host}{port}{path}")
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http01(https_port: u16) -> Http01 {
        Http01 {
            answers: Arc::new(|token| (token == "tok-EN_1").then(|| "tok-EN_1.thumb".to_owned())),
            https_port,
            default_host: "proxy.example.com".to_owned(),
        }
    }

    fn get(
        http01: &Http01,
        method: Method,
        target: &str,
        host: Option<&str>,
    ) -> Response<Full<Bytes>> {
        let uri: http::Uri = target.parse().expect("uri");
        let mut headers = http::HeaderMap::new();
        if let Some(host) = host {
            headers.insert(HOST, HeaderValue::from_str(host).expect("host"));
        }
        answer(http01, &method, &uri, &headers)
    }

    fn location(response: &Response<Full<Bytes>>) -> &str {
        response.headers()[LOCATION].to_str().expect("ascii")
    }

    #[test]
    fn challenge_answered_unknown_404_never_redirected() {
        let h = http01(8443);
        let ok = get(
            &h,
            Method::GET,
            "/.well-known/acme-challenge/tok-EN_1",
            Some("a.example:8080"),
        );
        assert_eq!(ok.status(), StatusCode::OK);
        assert!(
            ok.headers()[CONTENT_TYPE]
                .to_str()
                .expect("ct")
                .starts_with("text/plain")
        );
        for path in [
            "/.well-known/acme-challenge/other",
            "/.well-known/acme-challenge/",
            "/.well-known/acme-challenge/../../etc",
        ] {
            let r = get(&h, Method::GET, path, Some("a.example"));
            assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
            assert!(r.headers().get(LOCATION).is_none());
        }
        let post = get(
            &h,
            Method::POST,
            "/.well-known/acme-challenge/tok-EN_1",
            Some("a.example"),
        );
        assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED);
    }

    #[test]
    fn everything_else_is_308_to_https_same_host_path_query_no_hsts() {
        let h = http01(8443);
        let r = get(
            &h,
            Method::GET,
            "/v1/x?a=1&b=2",
            Some("proxy.example.com:8080"),
        );
        assert_eq!(r.status(), StatusCode::PERMANENT_REDIRECT);
        assert_eq!(location(&r), "https://proxy.example.com:8443/v1/x?a=1&b=2");
        assert!(r.headers().get("strict-transport-security").is_none());
        let post = get(&h, Method::POST, "/", Some("[::1]:8080"));
        assert_eq!(location(&post), "https://[::1]:8443/");
        let std_port = get(&http01(443), Method::GET, "/", Some("proxy.example.com"));
        assert_eq!(location(&std_port), "https://proxy.example.com/");
        let no_host = get(&http01(443), Method::GET, "/p", None);
        assert_eq!(location(&no_host), "https://proxy.example.com/p");
        let absolute = get(
            &h,
            Method::GET,
            "http://b.example:80/q?x",
            Some("ignored.example"),
        );
        assert_eq!(location(&absolute), "https://b.example:8443/q?x");
        let bad_host = get(&h, Method::GET, "/", Some("bad host"));
        assert_eq!(location(&bad_host), "https://proxy.example.com:8443/");
    }
}

//! The HTTPS client instant-acme speaks to the CA with: hyper over rustls
//! (ring) trusting the webpki roots plus `--acme-ca-file`, every request
//! bounded in time, and the `Retry-After` of every 429/503 answer kept for
//! the order flow to honour (instant-acme honours it on order polls only).

use bytes::Bytes;
use http::{Request, StatusCode};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use instant_acme::{BodyWrapper, BytesResponse, Error, HttpClient};
use std::{
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};
use vibectl_proto::wire::error_chain;

/// Longest one request to the CA may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The last `Retry-After`s the CA named: on a 429 or 503 answer (`busy`),
/// and on any answer (an order or authorization poll).
#[derive(Debug, Clone, Default)]
pub struct RetryAfter {
    busy: Arc<Mutex<Option<SystemTime>>>,
    any: Arc<Mutex<Option<SystemTime>>>,
}

fn take(slot: &Mutex<Option<SystemTime>>) -> Option<SystemTime> {
    slot.lock().unwrap_or_else(|e| e.into_inner()).take()
}

impl RetryAfter {
    /// The time a 429/503 named since the last call, if any.
    pub fn take(&self) -> Option<SystemTime> {
        take(&self.busy)
    }

    /// The time any answer named since the last call, if any.
    pub fn take_any(&self) -> Option<SystemTime> {
        take(&self.any)
    }

    fn set(&self, at: SystemTime, busy: bool) {
        *self.any.lock().unwrap_or_else(|e| e.into_inner()) = Some(at);
        if busy {
            *self.busy.lock().unwrap_or_else(|e| e.into_inner()) = Some(at);
        }
    }
}

/// The client, shared by the account and every order.
pub struct AcmeHttp {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, BodyWrapper<Bytes>>,
    retry_after: RetryAfter,
}

impl AcmeHttp {
    /// A client with `tls` (see [`super::directory::client_config`]).
    pub fn new(tls: Arc<rustls::ClientConfig>, retry_after: RetryAfter) -> Self {
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config((*tls).clone())
            .https_only()
            .enable_http1()
            .enable_http2()
            .build();
        Self {
            client: Client::builder(TokioExecutor::new()).build(connector),
            retry_after,
        }
    }

    /// `GET url`: status and body (for the directory check).
    pub async fn get(&self, url: &str) -> Result<(StatusCode, Bytes), GetError> {
        let request = Request::get(url)
            .header(http::header::USER_AGENT, user_agent())
            .body(BodyWrapper::default())
            .map_err(GetError::Request)?;
        let response = self.request(request).await.map_err(GetError::Send)?;
        let status = response.parts.status;
        let mut body = response.body;
        let bytes = body.into_bytes().await.map_err(GetError::Body)?;
        Ok((status, bytes))
    }
}

/// Why [`AcmeHttp::get`] got no answer; shown as the whole chain on one line.
#[derive(Debug, thiserror::Error)]
pub enum GetError {
    /// The URL cannot make a request.
    #[error("{}", error_chain(.0))]
    Request(http::Error),
    /// The request failed (connect, TLS, timeout).
    #[error("{}", error_chain(.0))]
    Send(Error),
    /// The body could not be read.
    #[error("{}", error_chain(&**.0))]
    Body(Box<dyn std::error::Error + Send + Sync>),
}

impl HttpClient for AcmeHttp {
    fn request(
        &self,
        req: Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, Error>> + Send>> {
        let response = self.client.request(req);
        let retry_after = self.retry_after.clone();
        Box::pin(async move {
            let response = tokio::time::timeout(REQUEST_TIMEOUT, response)
                .await
                .map_err(|_| Error::Str("the CA did not answer within 30 s"))?
                .map_err(|e| Error::Other(error_chain(&e).into()))?;
            let status = response.status();
            if let Some(at) = parse_retry_after(response.headers()) {
                let busy = status == StatusCode::TOO_MANY_REQUESTS
                    || status == StatusCode::SERVICE_UNAVAILABLE;
                retry_after.set(at, busy);
            }
            Ok(BytesResponse::from(response))
        })
    }
}

fn user_agent() -> String {
    format!("vibectl-edge/{}", env!("CARGO_PKG_VERSION"))
}

/// `Retry-After`: delay-seconds or an HTTP-date (RFC 9110 §10.2.3).
pub fn parse_retry_after(headers: &http::HeaderMap) -> Option<SystemTime> {
    let value = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    match value.parse::<u64>() {
        Ok(seconds) => Some(SystemTime::now() + Duration::from_secs(seconds)),
        Err(_) => httpdate::parse_http_date(value).ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds_and_dates() {
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::RETRY_AFTER, "120".parse().expect("value"));
        let at = parse_retry_after(&headers).expect("seconds");
        let left = at.duration_since(SystemTime::now()).expect("future");
        assert!(left > Duration::from_secs(118) && left <= Duration::from_secs(120));
        headers.insert(
            http::header::RETRY_AFTER,
            "Wed, 21 Oct 2037 07:28:00 GMT".parse().expect("value"),
        );
        let at = parse_retry_after(&headers).expect("date");
        assert_eq!(httpdate::fmt_http_date(at), "Wed, 21 Oct 2037 07:28:00 GMT");
        headers.insert(http::header::RETRY_AFTER, "soon".parse().expect("value"));
        assert!(parse_retry_after(&headers).is_none());
    }
}

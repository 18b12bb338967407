//! `Strict-Transport-Security` on every response over TLS, the edge's own
//! refusals (401-style `UNAUTHENTICATED`, `UNAVAILABLE`, …) included. Never
//! on plaintext (RFC 6797 §7.2): `serve-insecure` gets no layer at all.

use crate::Transport;
use http::{HeaderValue, header::STRICT_TRANSPORT_SECURITY};
use tower_http::set_header::SetResponseHeaderLayer;
use vibectl_config::HstsConfig;

/// The HSTS layer for this transport, or `None` (plaintext, or HSTS off).
/// It overrides any `Strict-Transport-Security` the core might send.
pub fn layer(
    hsts: &HstsConfig,
    transport: &Transport,
) -> Option<SetResponseHeaderLayer<HeaderValue>> {
    if !matches!(transport, Transport::Tls(_)) {
        return None;
    }
    let value = HeaderValue::from_str(&hsts.header_value()?).ok()?;
    Some(SetResponseHeaderLayer::overriding(
        STRICT_TRANSPORT_SECURITY,
        value,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use tower::{Layer, ServiceExt, service_fn};

    async fn header_with(hsts: &HstsConfig, transport: &Transport) -> Option<String> {
        let inner = service_fn(|_: http::Request<()>| async {
            Ok::<_, Infallible>(http::Response::new(()))
        });
        let svc = tower::util::option_layer(layer(hsts, transport)).layer(inner);
        let response = svc
            .oneshot(http::Request::new(()))
            .await
            .expect("infallible");
        response
            .headers()
            .get(STRICT_TRANSPORT_SECURITY)
            .map(|v| v.to_str().expect("ascii").to_owned())
    }

    fn tls() -> Transport {
        crate::tls::install_crypto_provider();
        let tmp = tempfile::tempdir().expect("tempdir");
        let made = crate::tls::self_signed::ensure(tmp.path(), &[], 30, false).expect("certs");
        let key = crate::tls::files::load(&made.cert_path, &made.key_path).expect("load");
        let setup = crate::tls::sources::Serving::fixed(&vibectl_config::Config::default(), key)
            .expect("setup");
        Transport::Tls(setup.server_config)
    }

    #[tokio::test]
    async fn value_on_tls_only() {
        let default = HstsConfig::default();
        assert_eq!(
            header_with(&default, &tls()).await.as_deref(),
            Some("max-age=31536000")
        );
        let full = HstsConfig {
            include_subdomains: true,
            preload: true,
            ..HstsConfig::default()
        };
        assert_eq!(
            header_with(&full, &tls()).await.as_deref(),
            Some("max-age=31536000; includeSubDomains; preload")
        );
        assert_eq!(header_with(&default, &Transport::Insecure).await, None);
        let off = HstsConfig {
            enabled: false,
            ..HstsConfig::default()
        };
        assert_eq!(header_with(&off, &tls()).await, None);
    }
}

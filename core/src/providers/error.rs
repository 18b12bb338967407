//! How a provider call fails. The message never contains the API key (a
//! provider's own error text is scrubbed with [`crate::secrets::redact`]);
//! [`ProviderError::code`] is the specific code sent in `error_details`.

use std::time::Duration;

/// A failed provider call.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// No API key is available.
    #[error("no API key: {hint}")]
    MissingApiKey {
        /// What to set, e.g. `set OPENAI_API_KEY`.
        hint: String,
    },
    /// `response_model_schema` is not JSON.
    #[error("response_model_schema is not valid JSON: {0}")]
    InvalidSchema(String),
    /// The model names a provider that is not configured.
    #[error("provider `{0}` is not configured")]
    NotConfigured(String),
    /// The provider could not be reached.
    #[error("cannot connect to the provider: {0}")]
    Connect(String),
    /// The provider answered with an HTTP error.
    #[error("HTTP {status}: {message}")]
    Http {
        /// The HTTP status.
        status: u16,
        /// The provider's error message (key scrubbed).
        message: String,
    },
    /// No complete answer within the provider's `timeout`.
    #[error("no complete answer within {0:?} (the provider's timeout)")]
    Timeout(Duration),
    /// The stream ended or broke before its end marker.
    #[error("the response stream broke: {0}")]
    StreamBroken(String),
    /// The provider sent an error event in the stream.
    #[error("the provider reported an error ({kind}): {message}")]
    Upstream {
        /// The provider's error type, e.g. `overloaded_error`.
        kind: String,
        /// Its message (key scrubbed).
        message: String,
    },
    /// The provider sent something that is not its documented format.
    #[error("unexpected response: {0}")]
    BadResponse(String),
}

impl ProviderError {
    /// The specific code for `ExecuteError.error_details`, e.g.
    /// `provider_http_401`, `provider_timeout`, `missing_api_key`.
    pub fn code(&self) -> String {
        match self {
            Self::MissingApiKey { .. } => "missing_api_key".to_owned(),
            Self::InvalidSchema(_) => "invalid_response_schema".to_owned(),
            Self::NotConfigured(_) => "provider_not_configured".to_owned(),
            Self::Connect(_) => "provider_connect_failed".to_owned(),
            Self::Http { status, .. } => format!("provider_http_{status}"),
            Self::Timeout(_) => "provider_timeout".to_owned(),
            Self::StreamBroken(_) => "provider_stream_broken".to_owned(),
            Self::Upstream { kind, .. } => {
                let kind: String = kind
                    .chars()
                    .map(|c| {
                        if c.is_ascii_alphanumeric() {
                            c.to_ascii_lowercase()
                        } else {
                            '_'
                        }
                    })
                    .take(64)
                    .collect();
                format!("provider_error_{kind}")
            }
            Self::BadResponse(_) => "provider_bad_response".to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        let http = ProviderError::Http {
            status: 401,
            message: "bad key".into(),
        };
        assert_eq!(http.code(), "provider_http_401");
        assert_eq!(http.to_string(), "HTTP 401: bad key");
        let up = ProviderError::Upstream {
            kind: "overloaded_error".into(),
            message: "Overloaded".into(),
        };
        assert_eq!(up.code(), "provider_error_overloaded_error");
        assert_eq!(
            ProviderError::Timeout(Duration::from_secs(3)).code(),
            "provider_timeout"
        );
    }
}

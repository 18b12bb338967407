//! What the edge knows about one request, as ONE type in its extensions: the
//! accept loop creates it (peer address, client certificate), auth adds the
//! verified [`Identity`], limits add the headers for the core, forward reads
//! both. Outer layers that answer after the inner ones ran (metrics) keep a
//! [`Subject`] handle taken before the call.

use crate::{
    auth::Verified, http::grpc_status::percent_encode, limits::deadline::ResponseWait,
    metrics::SubjectLabel, tls::ClientIdentity,
};
use http::{HeaderMap, HeaderName, HeaderValue, Request};
use std::{
    net::SocketAddr,
    sync::{Arc, OnceLock},
};
use vibectl_proto::wire::{ALLOWED_MODELS_HEADER, Caller, header_names::CALLER};

/// The scope header for the core, parsed once (a `&str` name is parsed on
/// every use and copied on every insert).
const ALLOWED_MODELS_NAME: HeaderName = HeaderName::from_static(ALLOWED_MODELS_HEADER);

/// Who a verified request is from: the verified token, shared (a token
/// remembered by the verifier's cache costs no copy per call).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity(Arc<Verified>);

impl Identity {
    /// The identity of a verified token.
    pub fn new(verified: Arc<Verified>) -> Self {
        Self(verified)
    }

    /// The token's `sub`.
    pub fn sub(&self) -> &str {
        &self.0.claims.sub
    }

    /// The `kid` of the key that verified the token (`None`: the legacy
    /// HS256 secret). Limits may key on it (`LimitsConfig::for_token`).
    pub fn kid(&self) -> Option<&str> {
        self.0.kid.as_deref()
    }

    /// The token's `jti`.
    pub fn jti(&self) -> Option<&str> {
        self.0.claims.jti.as_deref()
    }

    /// The models the token may use (`models` claim); `None`: any.
    pub fn models(&self) -> Option<&[String]> {
        self.0.claims.models.as_deref()
    }

    /// The value of [`ALLOWED_MODELS_HEADER`] for this identity, if it is
    /// restricted: `a,b` (names were checked to be header-safe, comma-free).
    pub fn allowed_models_header(&self) -> Option<HeaderValue> {
        let models = self.models()?;
        HeaderValue::from_str(&models.join(",")).ok()
    }

    /// Sets (or removes) [`ALLOWED_MODELS_HEADER`] on a request to the core.
    /// Call it after client-sent `x-vibectl-*` headers were stripped.
    #[cfg(test)]
    pub fn apply_scope(&self, headers: &mut HeaderMap) {
        headers.remove(&ALLOWED_MODELS_NAME);
        if let Some(value) = self.allowed_models_header() {
            headers.insert(ALLOWED_MODELS_NAME, value);
        }
    }

    /// Sets the identity headers for the core: `x-vibectl-caller` (`sub`,
    /// `kid`, `jti`, percent-encoded) and, if the token restricts models,
    /// `x-vibectl-allowed-models`. Made once per verified token (kept with
    /// it), then copied by reference count. Call it after client-sent
    /// `x-vibectl-*` headers were stripped.
    pub fn set_core_headers(&self, headers: &mut HeaderMap) {
        for (name, value) in self.0.memo.get_or_init(|| self.core_headers()) {
            headers.insert(name.clone(), value.clone());
        }
    }

    fn core_headers(&self) -> Vec<(HeaderName, HeaderValue)> {
        let (kid, jti) = (
            self.kid().map(percent_encode),
            self.jti().map(percent_encode),
        );
        let caller = Caller {
            sub: &percent_encode(self.sub()),
            kid: kid.as_deref(),
            jti: jti.as_deref(),
        };
        let mut out: Vec<_> = HeaderValue::try_from(caller.to_header())
            .ok()
            .map(|value| (CALLER, value))
            .into_iter()
            .collect();
        if let Some(value) = self.allowed_models_header() {
            out.push((ALLOWED_MODELS_NAME, value));
        }
        out
    }
}

/// The verified subject of a request, readable after the request was
/// handed on (by the metrics layer, which runs outside auth and so counts
/// refusals too), with its metrics label once the limits layer looked it
/// up (so a call looks its label up once, not twice).
#[derive(Debug, Clone, Default)]
pub struct Subject(Arc<SubjectCell>);

#[derive(Debug, Default)]
struct SubjectCell {
    identity: OnceLock<Identity>,
    label: OnceLock<SubjectLabel>,
}

impl Subject {
    /// The subject, if the token was verified.
    pub fn get(&self) -> Option<&str> {
        self.0.identity.get().map(Identity::sub)
    }

    /// The subject's metrics label, if it was looked up.
    pub fn label(&self) -> Option<&SubjectLabel> {
        self.0.label.get()
    }

    /// Keeps the subject's metrics label (the first one given).
    pub fn keep_label(&self, label: &SubjectLabel) {
        let _ = self.0.label.set(label.clone());
    }
}

/// Headers for the core, made once and shared by every call that sends
/// the same (a clone is one reference count; a `HeaderMap` clone and
/// merge cost some 2,400 instructions per call).
#[derive(Debug, Clone, Default)]
pub struct CoreHeaders(Arc<[(HeaderName, HeaderValue)]>);

impl CoreHeaders {
    /// These headers.
    pub fn new(headers: Vec<(HeaderName, HeaderValue)>) -> Self {
        Self(headers.into())
    }

    /// The value of `name`, if it is one of them.
    #[cfg(test)]
    pub fn get(&self, name: &str) -> Option<&HeaderValue> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// Sets each of them on `headers` (replacing any value there).
    pub fn set_on(&self, headers: &mut HeaderMap) {
        for (name, value) in self.0.iter() {
            headers.insert(name.clone(), value.clone());
        }
    }
}

/// The request's context (see the module doc).
#[derive(Debug, Clone, Default)]
pub struct RequestContext {
    /// The TCP peer of the connection (never `x-forwarded-for`: clients can
    /// write that). The failure budget and the audit log read it.
    pub peer: Option<SocketAddr>,
    /// The verified client certificate, under mutual TLS (no layer reads
    /// it yet: it is there for the audit log and per-client policy).
    #[allow(dead_code, reason = "carried for the layers to come")]
    pub client: Option<ClientIdentity>,
    /// The verified token, once auth accepted it.
    identity: Option<Identity>,
    /// Headers the edge's own layers send the core (the caller's
    /// `x-vibectl-limits`); forward adds them after stripping every
    /// client-sent `x-vibectl-*`.
    pub core_headers: CoreHeaders,
    /// How long forward waits for the core's response headers when the
    /// call has a deadline (set by limits; else `edge.core_response_timeout`).
    pub response_wait: Option<ResponseWait>,
    subject: Subject,
}

impl RequestContext {
    /// The context of a request on a connection from `peer`.
    pub fn new(peer: SocketAddr, client: Option<ClientIdentity>) -> Self {
        Self {
            peer: Some(peer),
            client,
            ..Self::default()
        }
    }

    /// The context of `request`, if it has one.
    pub fn of<B>(request: &Request<B>) -> Option<&Self> {
        request.extensions().get::<Self>()
    }

    /// The context of `request`, created empty if it has none.
    pub fn of_mut<B>(request: &mut Request<B>) -> &mut Self {
        request.extensions_mut().get_or_insert_default::<Self>()
    }

    /// The verified token, if auth accepted one.
    pub fn identity(&self) -> Option<&Identity> {
        self.identity.as_ref()
    }

    /// Records the verified token (auth).
    pub fn verified(&mut self, identity: Identity) {
        let _ = self.subject.0.identity.set(identity.clone());
        self.identity = Some(identity);
    }

    /// A handle on the verified subject, to read after the call.
    pub fn subject(&self) -> Subject {
        self.subject.clone()
    }

    /// The verified subject, shared (the limits layer keeps its label).
    pub fn subject_ref(&self) -> &Subject {
        &self.subject
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::auth::{Claims, KeyAlg};

    /// The identity of a token of `sub` limited to `models`.
    pub(crate) fn identity(sub: &str, models: Option<Vec<String>>) -> Identity {
        Identity::new(Arc::new(Verified {
            claims: Claims {
                sub: sub.to_owned(),
                models,
                ..Claims::default()
            },
            kid: None,
            alg: KeyAlg::HS256,
            memo: Default::default(),
        }))
    }

    #[test]
    fn scope_header_replaces_any_client_copy() {
        let mut headers = HeaderMap::new();
        headers.insert(ALLOWED_MODELS_HEADER, HeaderValue::from_static("*"));
        let open = tests::identity("alice", None);
        open.apply_scope(&mut headers);
        assert!(headers.get(ALLOWED_MODELS_HEADER).is_none());
        let scoped = tests::identity("alice", Some(vec!["echo".to_owned(), "4o".to_owned()]));
        scoped.apply_scope(&mut headers);
        assert_eq!(headers[ALLOWED_MODELS_HEADER], "echo,4o");
    }

    #[test]
    fn the_core_gets_the_caller_in_one_header_percent_encoded() {
        let verified = |kid: Option<&str>, jti: Option<&str>| {
            Identity::new(Arc::new(Verified {
                claims: Claims {
                    sub: "zoé\tx".to_owned(),
                    jti: jti.map(str::to_owned),
                    ..Claims::default()
                },
                kid: kid.map(str::to_owned),
                alg: KeyAlg::HS256,
                memo: Default::default(),
            }))
        };
        let mut headers = HeaderMap::new();
        verified(Some("k1"), Some("j-1")).set_core_headers(&mut headers);
        assert_eq!(headers.len(), 1, "{headers:?}");
        assert_eq!(headers[CALLER], "zo%C3%A9%09x\tkid=k1\tjti=j-1");
        let mut headers = HeaderMap::new();
        verified(None, None).set_core_headers(&mut headers);
        assert_eq!(headers[CALLER], "zo%C3%A9%09x");
    }

    #[test]
    fn the_subject_is_readable_after_the_request_moved_on() {
        let mut request = Request::new(());
        let subject = RequestContext::of_mut(&mut request).subject();
        assert_eq!(subject.get(), None);
        RequestContext::of_mut(&mut request).verified(identity("alice", None));
        drop(request);
        assert_eq!(subject.get(), Some("alice"));
    }
}

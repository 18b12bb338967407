//! One order, from new-order to the downloaded certificate, with
//! instant-acme. Never wastes an order:
//!
//! - every request goes through `retried!`, which asks [`Steps::judge`]
//!   after each failure (`badNonce` re-sent with a fresh nonce, 503/429
//!   `Retry-After` waited out, reads repeated after a network error) — a
//!   failed request never starts a new order;
//! - the answer of every pending authorization is put in place first (for
//!   DNS-01: the TXT records added and visible on the zone's authoritative
//!   servers, [`Dns01`]), then each challenge is responded to exactly once;
//! - DNS-01 checks the TSIG key before new-order (a refused key orders
//!   nothing); a TXT record the server does not take deactivates the
//!   order's pending authorizations (no order is left pending);
//! - the order is polled as its `Retry-After` says (else 1 s, growing to
//!   5 s) until it is ready or invalid; an invalid order's authorizations
//!   are polled until each is final; only then are the answers removed;
//! - finalize and the certificate download are retried the same way; a
//!   finalize whose answer was lost is recognised by the order's state.
//!
//! Each step logs one line with the order URL; no key is ever logged.

use super::{
    answers::Answers,
    ari,
    dns01::{self, Dns01, TxtRecord},
    steps::{OrderError, Steps, describe, retried},
    storage::{Answer, AnswerKind, OrderRecord, Storage},
};
use instant_acme::{
    Account, AuthorizationStatus, CertificateIdentifier, ChallengeStatus, ChallengeType,
    Identifier, Order, OrderStatus,
};
use std::time::{Duration, Instant, SystemTime};
use vibectl_config::AcmeChallenge;

/// How long an order may stay pending or processing before it is given up.
pub const ORDER_DEADLINE: Duration = Duration::from_secs(600);
const FIRST_POLL: Duration = Duration::from_secs(1);
const LONGEST_POLL: Duration = Duration::from_secs(5);

/// A certificate just downloaded.
#[derive(Debug)]
pub struct Issued {
    /// The private key (PKCS#8 PEM), then the chain (PEM), as cached.
    pub pem: String,
    /// The order's URL.
    pub order_url: String,
    /// When the download ended.
    pub downloaded_at: SystemTime,
}

/// What one order needs.
pub struct Flow<'a> {
    /// The registered account.
    pub account: &'a Account,
    /// The names on the certificate.
    pub domains: &'a [String],
    /// How the CA validates.
    pub challenge: AcmeChallenge,
    /// Where TLS-ALPN-01 and HTTP-01 answers are served from.
    pub answers: &'a Answers,
    /// The retries of each request.
    pub steps: &'a Steps,
    /// Where the order in flight and the answers are shared (Redis), or not.
    pub storage: &'a dyn Storage,
    /// The order a replica left behind (its lease expired): resumed.
    pub resume: Option<OrderRecord>,
    /// DNS-01's server, zone and key (with `AcmeChallenge::Dns01`).
    pub dns01: Option<&'a Dns01>,
    /// ARI: the certificate this order replaces (RFC 9773 §5).
    pub replaces: Option<CertificateIdentifier<'static>>,
}

impl Flow<'_> {
    /// Orders, validates, finalizes and downloads.
    pub async fn run(&self) -> Result<Issued, OrderError> {
        let identifiers: Vec<Identifier> = self
            .domains
            .iter()
            .map(|d| Identifier::Dns(d.clone()))
            .collect();
        let mut order = match self.resumed().await {
            Some(order) => order,
            None => {
                if let Some(dns) = self.dns01 {
                    // A key the server refuses orders nothing.
                    dns.check().await.map_err(OrderError::Dns)?;
                }
                let replaces = self.replaces.as_ref();
                let order =
                    ari::new_order(self.account, self.steps, &identifiers, replaces).await?;
                tracing::info!(order = %order.url(), domains = ?self.domains, "ACME: order created");
                self.record(order.url(), None).await?;
                order
            }
        };
        let url = order.url().to_owned();
        let deadline = Instant::now() + ORDER_DEADLINE;

        let (mut served, mut txt) = (Vec::new(), Vec::new());
        let mut result = self.respond(&mut order, &url, &mut served, &mut txt).await;
        if result.is_ok() {
            result = self.wait_until_authorized(&mut order, &url, deadline).await;
        }
        if let (Some(dns), false) = (self.dns01, txt.is_empty()) {
            dns.remove(&txt, &url).await;
        }
        // Also after a failure: a stale answer would fail the next order.
        if !served.is_empty() {
            let name = |kind| {
                let of_kind = served.iter().filter(move |a: &&Answer| a.kind == kind);
                of_kind.map(|a| a.name.clone()).collect::<Vec<_>>()
            };
            self.answers
                .remove(&name(AnswerKind::TlsAlpn), &name(AnswerKind::Http));
            if let Err(error) = self.storage.withdraw_answers(&served).await {
                tracing::warn!(order = %url, %error, "ACME: the shared answers could not be removed (they expire)");
            }
            tracing::info!(order = %url, "ACME: challenge answers removed");
        }
        result?;
        self.finalize(&mut order, &url, deadline).await
    }

    /// Fetches the authorizations, serves the answer of each pending one
    /// (on every replica), then responds to each challenge once (not again
    /// when a resumed order's challenge is already processing). Returns
    /// what is served in `served` (and the DNS-01 TXT records written in `txt`).
    async fn respond(
        &self,
        order: &mut Order,
        url: &str,
        served: &mut Vec<Answer>,
        txt: &mut Vec<TxtRecord>,
    ) -> Result<(), OrderError> {
        retried!(self.steps, "authorizations", url, true, async {
            let mut authorizations = order.authorizations();
            while let Some(authorization) = authorizations.next().await {
                authorization?;
            }
            Ok::<_, instant_acme::Error>(())
        })?;
        let wanted = match self.challenge {
            AcmeChallenge::TlsAlpn01 => ChallengeType::TlsAlpn01,
            AcmeChallenge::Http01 => ChallengeType::Http01,
            AcmeChallenge::Dns01 => ChallengeType::Dns01,
        };
        // (index, domain, challenge URL) of each pending authorization.
        let mut pending = Vec::new();
        let mut authorizations = order.authorizations();
        let mut index = 0;
        while let Some(authorization) = authorizations.next().await {
            let mut authorization = authorization.map_err(|e| OrderError::Local(e.to_string()))?;
            index += 1;
            if authorization.status != AuthorizationStatus::Pending {
                continue;
            }
            let domain = authorization.identifier().to_string();
            let Some(challenge) = authorization.challenge(wanted.clone()) else {
                return Err(OrderError::Local(format!(
                    "the CA offers no {wanted:?} challenge for {domain}"
                )));
            };
            let key_authorization = challenge.key_authorization().as_str().to_owned();
            let (kind, name) = match self.challenge {
                AcmeChallenge::TlsAlpn01 => {
                    self.answers
                        .add_tls_alpn(&domain, &key_authorization)
                        .map_err(OrderError::Cache)?;
                    (AnswerKind::TlsAlpn, domain.clone())
                }
                AcmeChallenge::Http01 => {
                    self.answers.add_http(&challenge.token, &key_authorization);
                    (AnswerKind::Http, challenge.token.clone())
                }
                AcmeChallenge::Dns01 => {
                    let dns = self.dns01.ok_or_else(|| {
                        OrderError::Local("dns-01 without [tls.acme.dns01]".to_owned())
                    })?;
                    let value = challenge.key_authorization().dns_value();
                    txt.push(dns.record(&domain, value).map_err(OrderError::Dns)?);
                    if challenge.status == ChallengeStatus::Pending {
                        pending.push((index - 1, domain, challenge.url.clone()));
                    }
                    continue;
                }
            };
            served.push(Answer {
                kind,
                name,
                key_authorization,
            });
            if challenge.status == ChallengeStatus::Pending {
                pending.push((index - 1, domain, challenge.url.clone()));
            }
        }
        self.share(served, url).await?;
        if let (Some(dns), false) = (self.dns01, txt.is_empty())
            && let Err(error) = dns.publish(txt, url).await
        {
            dns01::deactivate_pending(order, url).await;
            return Err(OrderError::Dns(error));
        }
        for (index, domain, challenge_url) in pending {
            let responded = retried!(self.steps, "challenge", url, false, async {
                let mut authorizations = order.authorizations();
                let mut at = 0;
                while let Some(authorization) = authorizations.next().await {
                    let mut authorization = authorization?;
                    if at == index {
                        let mut challenge = authorization
                            .challenge(wanted.clone())
                            .ok_or(instant_acme::Error::Str("challenge vanished"))?;
                        return challenge.set_ready().await;
                    }
                    at += 1;
                }
                Err(instant_acme::Error::Str("authorization vanished"))
            });
            if let Err(error) = responded {
                // A resumed order's challenge the crashed replica responded
                // to may have become valid meanwhile.
                if self.resume.is_none() || !Self::responded_before(order, index, &wanted).await {
                    return Err(error);
                }
                tracing::info!(order = url, %domain, "ACME: the challenge was responded to before the takeover");
                continue;
            }
            tracing::info!(order = url, %domain, challenge = %challenge_url, "ACME: challenge responded to (once)");
        }
        Ok(())
    }

    /// Polls the order until it is ready (or further); an invalid order
    /// becomes [`OrderError::Validation`] once every authorization is final.
    async fn wait_until_authorized(
        &self,
        order: &mut Order,
        url: &str,
        deadline: Instant,
    ) -> Result<(), OrderError> {
        let status = self
            .poll(order, url, deadline, OrderStatus::Pending)
            .await?;
        if status != OrderStatus::Invalid {
            tracing::info!(order = url, ?status, "ACME: order authorized");
            return Ok(());
        }
        let mut failures = Vec::new();
        let mut authorizations = order.authorizations();
        while let Some(authorization) = authorizations.next().await {
            let Ok(mut authorization) = authorization else {
                continue;
            };
            let mut polls = 0;
            while authorization.status == AuthorizationStatus::Pending && polls < 30 {
                polls += 1;
                tokio::time::sleep(FIRST_POLL).await;
                if authorization.refresh().await.is_err() {
                    break;
                }
            }
            let domain = authorization.identifier().to_string();
            let errors: Vec<String> = authorization
                .challenges
                .iter()
                .filter_map(|c| c.error.as_ref().map(describe))
                .collect();
            if authorization.status != AuthorizationStatus::Valid {
                failures.push(format!(
                    "{domain} is {:?}: {}",
                    authorization.status,
                    errors.join("; ")
                ));
            }
        }
        tracing::warn!(order = url, failures = ?failures, "ACME: order invalid");
        Err(OrderError::Validation(failures.join(", ")))
    }

    /// Refreshes the order while it is `while_status`, honouring
    /// `Retry-After`; returns the first other status.
    async fn poll(
        &self,
        order: &mut Order,
        url: &str,
        deadline: Instant,
        while_status: OrderStatus,
    ) -> Result<OrderStatus, OrderError> {
        let mut pause = FIRST_POLL;
        self.steps.retry_after.take_any();
        loop {
            let wait = self
                .steps
                .retry_after
                .take_any()
                .and_then(|at| at.duration_since(SystemTime::now()).ok())
                .unwrap_or(pause);
            if Instant::now() + wait > deadline {
                return Err(OrderError::Timeout(format!(
                    "order {url} still {while_status:?} after {ORDER_DEADLINE:?}"
                )));
            }
            tokio::time::sleep(wait).await;
            pause = (pause * 3 / 2).min(LONGEST_POLL);
            let status = retried!(self.steps, "poll order", url, true, async {
                order.refresh().await.map(|state| state.status)
            })?;
            if status != while_status {
                return Ok(status);
            }
        }
    }

    /// Finalizes with a fresh P-256 key and downloads the chain.
    async fn finalize(
        &self,
        order: &mut Order,
        url: &str,
        deadline: Instant,
    ) -> Result<Issued, OrderError> {
        let csr_error = |e: rcgen::Error| OrderError::Local(format!("certificate request: {e}"));
        let kept = self.resume.as_ref().and_then(|r| r.key_pem.as_deref());
        let key = match kept {
            Some(pem) => rcgen::KeyPair::from_pem(pem).map_err(csr_error)?,
            None if order.state().status != OrderStatus::Ready => {
                return Err(OrderError::Local(format!(
                    "order {url} was finalized by a replica whose key is not stored"
                )));
            }
            None => {
                let key = rcgen::KeyPair::generate().map_err(csr_error)?;
                self.record(url, Some(key.serialize_pem())).await?;
                key
            }
        };
        let mut params = rcgen::CertificateParams::new(self.domains.to_vec()).map_err(csr_error)?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        let csr = params.serialize_request(&key).map_err(csr_error)?;
        if order.state().status == OrderStatus::Ready {
            let finalized = retried!(
                self.steps,
                "finalize",
                url,
                false,
                order.finalize_csr(csr.der())
            );
            if let Err(error) = finalized {
                // A finalize the CA took but whose answer was lost leaves
                // the order processing or valid: go on with it.
                let status = retried!(self.steps, "poll order", url, true, async {
                    order.refresh().await.map(|state| state.status)
                })?;
                if !matches!(status, OrderStatus::Processing | OrderStatus::Valid) {
                    return Err(error);
                }
            }
            tracing::info!(order = url, "ACME: order finalized");
        }
        let mut status = order.state().status;
        if status == OrderStatus::Processing {
            status = self
                .poll(order, url, deadline, OrderStatus::Processing)
                .await?;
        }
        if status != OrderStatus::Valid {
            let problem = order.state().error.as_ref().map(describe);
            return Err(OrderError::Refused {
                step: "finalize",
                problem: format!("order is {status:?}: {}", problem.unwrap_or_default()),
            });
        }
        let chain = retried!(self.steps, "certificate", url, true, order.certificate())?
            .ok_or_else(|| OrderError::Local("the CA sent no certificate".to_owned()))?;
        tracing::info!(order = url, "ACME: certificate downloaded");
        Ok(Issued {
            pem: format!("{}{chain}", key.serialize_pem()),
            order_url: url.to_owned(),
            downloaded_at: SystemTime::now(),
        })
    }
}

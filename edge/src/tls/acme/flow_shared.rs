//! What the order flow ([`Flow`]) does for replicas sharing Redis:
//! records the order in flight (its URL, then the finalize key) so a
//! replica that takes over resumes it instead of ordering anew; shares
//! the challenge answers and waits (bounded) until every live replica
//! serves them before the challenge is responded to; and recognises a
//! challenge the crashed replica had already responded to. With the
//! directory storage each of these is a no-op.

use super::{
    flow::Flow,
    steps::{OrderError, retried},
    storage::{Answer, OrderRecord},
};
use instant_acme::{AuthorizationStatus, ChallengeStatus, ChallengeType, Order, OrderStatus};
use std::time::{Duration, Instant};

/// How long the answers may take to reach every live replica.
const REPLICA_WAIT: Duration = Duration::from_secs(10);

impl Flow<'_> {
    /// The order left behind by a replica whose lease expired, unless it
    /// is gone or invalid.
    pub(super) async fn resumed(&self) -> Option<Order> {
        let record = self.resume.as_ref()?;
        let url = record.url.as_str();
        let fetched = retried!(self.steps, "resume order", url, true, async {
            self.account.order(url.to_owned()).await
        });
        match fetched.map(|mut order| (order.state().status, order)) {
            Ok((status, order)) if status != OrderStatus::Invalid => {
                tracing::info!(
                    order = url,
                    ?status,
                    "ACME: resuming the order of a replica whose lease expired"
                );
                Some(order)
            }
            Ok(_) => {
                tracing::warn!(
                    order = url,
                    "ACME: the order left behind is invalid; ordering anew"
                );
                None
            }
            Err(error) => {
                tracing::warn!(order = url, %error, "ACME: the order left behind cannot be fetched; ordering anew");
                None
            }
        }
    }

    /// Shares the order in flight (Redis), so another replica can resume it.
    pub(super) async fn record(
        &self,
        url: &str,
        key_pem: Option<String>,
    ) -> Result<(), OrderError> {
        let record = OrderRecord {
            url: url.to_owned(),
            key_pem,
        };
        self.storage
            .save_order_record(&record)
            .await
            .map_err(OrderError::Cache)
    }

    /// Waits (bounded) until every live replica serves `version` of the
    /// shared answers, so the CA's validation may reach any of them.
    pub(super) async fn share(&self, answers: &[Answer], url: &str) -> Result<(), OrderError> {
        if answers.is_empty() || !self.storage.shared() {
            return Ok(());
        }
        let version = self
            .storage
            .publish_answers(answers)
            .await
            .map_err(OrderError::Cache)?;
        let deadline = Instant::now() + REPLICA_WAIT;
        loop {
            match self.storage.replicas_behind(version).await {
                Ok(0) => break,
                Ok(behind) if Instant::now() >= deadline => {
                    tracing::warn!(
                        order = url,
                        behind,
                        "ACME: some replicas do not serve the answers yet; responding anyway"
                    );
                    break;
                }
                Err(error) if Instant::now() >= deadline => return Err(OrderError::Cache(error)),
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        tracing::info!(
            order = url,
            version,
            "ACME: every live replica serves the challenge answers"
        );
        Ok(())
    }

    /// Whether the `index`th authorization is no longer waiting for a
    /// response (valid, or its challenge processing or final).
    pub(super) async fn responded_before(
        order: &mut Order,
        index: usize,
        wanted: &ChallengeType,
    ) -> bool {
        let mut authorizations = order.authorizations();
        let mut at = 0;
        while let Some(authorization) = authorizations.next().await {
            let Ok(mut authorization) = authorization else {
                return false;
            };
            if at == index {
                // The order keeps the state read before: read it again.
                if authorization.refresh().await.is_err() {
                    return false;
                }
                return authorization.status != AuthorizationStatus::Pending
                    || authorization
                        .challenge(wanted.clone())
                        .is_none_or(|c| c.status != ChallengeStatus::Pending);
            }
            at += 1;
        }
        false
    }
}

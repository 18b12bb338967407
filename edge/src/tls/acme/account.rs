//! The ACME account: read from the cache (instant-acme's credentials, or
//! the PKCS#8 key rustls-acme kept there), else registered with the CA and
//! cached (0600). Every request of the registration is retried on
//! `badNonce` by [`super::steps`].

use super::{
    AcmeError,
    client::{AcmeHttp, RetryAfter},
    steps::{OrderError, Steps, retried},
    storage::Storage,
};
use instant_acme::{Account, AccountCredentials, Key, NewAccount};
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use std::sync::Arc;

/// What the account is made from.
pub(super) struct AccountSource {
    pub(super) tls: Arc<rustls::ClientConfig>,
    pub(super) retry_after: RetryAfter,
    pub(super) contact: String,
    pub(super) directory_url: String,
    pub(super) storage: Arc<dyn Storage>,
}

impl AccountSource {
    fn http(&self) -> Box<AcmeHttp> {
        Box::new(AcmeHttp::new(self.tls.clone(), self.retry_after.clone()))
    }

    /// The cached account, or a new one (then cached).
    pub(super) async fn account(&self, steps: &Steps) -> Result<Account, OrderError> {
        let cached = self.storage.account().await.map_err(OrderError::Cache)?;
        if let Some(bytes) = cached {
            if serde_json::from_slice::<AccountCredentials>(&bytes).is_ok() {
                let account = retried!(steps, "account (cached)", "", true, async {
                    let credentials = serde_json::from_slice(&bytes)?;
                    Account::builder_with_http(self.http())
                        .from_credentials(credentials)
                        .await
                })?;
                tracing::debug!(id = account.id(), "ACME: cached account");
                return Ok(account);
            }
            // rustls-acme's cache held the account key (PKCS#8 DER).
            if Key::from_pkcs8_der(PrivatePkcs8KeyDer::from(bytes.as_slice())).is_ok() {
                let (account, credentials) =
                    retried!(steps, "account (rustls-acme key)", "", false, async {
                        let key = Key::from_pkcs8_der(PrivatePkcs8KeyDer::from(bytes.as_slice()))?;
                        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(bytes.clone()));
                        Account::builder_with_http(self.http())
                            .create_from_key((key, der), self.directory_url.clone())
                            .await
                    })?;
                self.store(&credentials).await?;
                tracing::info!(
                    id = account.id(),
                    "ACME: account key from rustls-acme's cache kept"
                );
                return Ok(account);
            }
            tracing::warn!(
                storage = %self.storage.describe(),
                "ACME: the cached account cannot be read; registering a new account"
            );
        }
        let contact = [self.contact.as_str()];
        let new = NewAccount {
            contact: &contact,
            terms_of_service_agreed: true,
            only_return_existing: false,
        };
        let (account, credentials) = retried!(
            steps,
            "new-account",
            "",
            false,
            Account::builder_with_http(self.http()).create(&new, self.directory_url.clone(), None)
        )?;
        self.store(&credentials).await?;
        tracing::info!(id = account.id(), "ACME: account registered and cached");
        Ok(account)
    }

    async fn store(&self, credentials: &AccountCredentials) -> Result<(), OrderError> {
        let json = serde_json::to_vec(credentials)
            .map_err(|e| OrderError::Cache(AcmeError::Task(e.to_string())))?;
        self.storage
            .store_account(json)
            .await
            .map_err(OrderError::Cache)
    }
}

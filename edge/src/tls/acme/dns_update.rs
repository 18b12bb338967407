//! The DNS side of DNS-01, on hickory-proto: RFC 2136 dynamic updates of
//! the zone's primary server signed with a TSIG key (RFC 8945, HMAC on
//! ring; the server's answers are verified with the same key), and plain
//! queries of an authoritative server for the TXT values it serves. Each
//! exchange is one TCP connection, bounded by [`EXCHANGE_TIMEOUT`]. Errors
//! name the server, the zone and the key's name — never the secret.

use futures::StreamExt;
use hickory_proto::{
    ProtoError, ProtoErrorKind,
    dnssec::{rdata::tsig::TsigAlgorithm, tsig::TSigner},
    op::{Message, MessageFinalizer, MessageType, OpCode, Query, ResponseCode, update_message},
    rr::{DNSClass, Name, RData, Record, RecordSet, RecordType, rdata::TXT},
    runtime::{TokioRuntimeProvider, TokioTime},
    tcp::TcpClientStream,
    xfer::{DnsExchange, DnsHandle, DnsMultiplexer, DnsRequest, DnsRequestOptions},
};
use std::{net::SocketAddr, sync::Arc, time::Duration};
use vibectl_config::TsigAlgorithm as ConfigAlgorithm;

/// The longest one DNS exchange (connect, send, answer) may take.
pub const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);
/// Allowed clock difference with the server (TSIG `fudge`, RFC 8945 §5.2.3).
const FUDGE_SECS: u16 = 300;

/// Why a DNS update or query failed.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// The server could not be reached or did not answer in time.
    #[error("DNS server {server} (tls.acme.dns01): {message}")]
    Unreachable {
        /// `host:port`.
        server: String,
        /// The transport's words.
        message: String,
    },
    /// The server refused the signed request (or its answer did not verify).
    #[error(
        "DNS server {server} refused {action} in zone {zone} signed with TSIG key \"{key}\": {message} (check tls.acme.dns01.key_name, algorithm and the secret, and that the server's update-policy grants this key TXT records under _acme-challenge)"
    )]
    Refused {
        /// `host:port`.
        server: String,
        /// What was asked.
        action: String,
        /// The zone.
        zone: String,
        /// The TSIG key's name.
        key: String,
        /// The server's answer (response code), or why it did not verify.
        message: String,
    },
    /// A setting that cannot work.
    #[error("{0}")]
    Invalid(String),
}

/// Writes and reads one zone on one primary server with one TSIG key.
#[derive(Clone)]
pub struct DnsUpdater {
    server: String,
    zone: Name,
    key_name: String,
    signer: Arc<dyn MessageFinalizer>,
}

impl std::fmt::Debug for DnsUpdater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnsUpdater")
            .field("server", &self.server)
            .field("zone", &self.zone.to_string())
            .field("key_name", &self.key_name)
            .finish_non_exhaustive()
    }
}

/// `name` as an absolute DNS name.
pub fn fqdn(name: &str) -> Result<Name, DnsError> {
    let mut parsed = Name::from_ascii(name.trim_end_matches('.'))
        .map_err(|e| DnsError::Invalid(format!("{name:?} is not a DNS name: {e}")))?;
    parsed.set_fqdn(true);
    Ok(parsed)
}

impl DnsUpdater {
    /// An updater for `zone` on `server` (`host:port`), signing with the
    /// key `key_name` whose (decoded) secret is `secret`.
    pub fn new(
        server: &str,
        zone: &str,
        key_name: &str,
        algorithm: ConfigAlgorithm,
        secret: Vec<u8>,
    ) -> Result<Self, DnsError> {
        let algorithm = match algorithm {
            ConfigAlgorithm::HmacSha256 => TsigAlgorithm::HmacSha256,
            ConfigAlgorithm::HmacSha384 => TsigAlgorithm::HmacSha384,
            ConfigAlgorithm::HmacSha512 => TsigAlgorithm::HmacSha512,
        };
        let signer = TSigner::new(secret, algorithm, fqdn(key_name)?, FUDGE_SECS)
            .map_err(|e| DnsError::Invalid(format!("TSIG key \"{key_name}\": {e}")))?;
        Ok(Self {
            server: server.to_owned(),
            zone: fqdn(zone)?,
            key_name: key_name.to_owned(),
            signer: Arc::new(signer),
        })
    }

    /// The zone (absolute).
    pub fn zone(&self) -> &Name {
        &self.zone
    }

    /// Checks that the server takes signed updates of the zone from this
    /// key: an update whose only content is the prerequisite "the zone's
    /// SOA exists" (RFC 2136 §2.4.1), which changes nothing.
    pub async fn check_key(&self) -> Result<(), DnsError> {
        let apex = RecordSet::new(self.zone.clone(), RecordType::SOA, 0);
        let message = update_message::append(apex, self.zone.clone(), true, false);
        self.update(message, "a signed no-op update").await
    }

    /// Adds the TXT record `name` = `value` (other values of `name` stay).
    pub async fn add_txt(&self, name: &Name, value: &str, ttl: u32) -> Result<(), DnsError> {
        let message =
            update_message::append(txt(name, value, ttl), self.zone.clone(), false, false);
        self.update(message, &format!("adding TXT {name}")).await
    }

    /// Removes the TXT record `name` = `value` (only that value).
    pub async fn remove_txt(&self, name: &Name, value: &str) -> Result<(), DnsError> {
        let message =
            update_message::delete_by_rdata(txt(name, value, 0), self.zone.clone(), false);
        self.update(message, &format!("removing TXT {name}")).await
    }

    async fn update(&self, message: Message, action: &str) -> Result<(), DnsError> {
        let refused = |message: String| DnsError::Refused {
            server: self.server.clone(),
            action: action.to_owned(),
            zone: self.zone.to_string().trim_end_matches('.').to_owned(),
            key: self.key_name.clone(),
            message,
        };
        let answer = exchange(&self.server, message, Some(self.signer.clone()))
            .await
            .map_err(|e| match e {
                Exchange::Transport(message) => self.unreachable(message),
                Exchange::Answer(message) => refused(message),
            })?;
        match answer.response_code() {
            ResponseCode::NoError => Ok(()),
            code => Err(refused(format!("{code}"))),
        }
    }

    fn unreachable(&self, message: String) -> DnsError {
        DnsError::Unreachable {
            server: self.server.clone(),
            message,
        }
    }
}

/// The TXT values `server` (`host:port`) serves for `name`, asked
/// directly and without recursion (an authoritative answer).
pub async fn txt_values(server: &str, name: &Name) -> Result<Vec<String>, DnsError> {
    let mut message = Message::new();
    message
        .set_id(rand::random())
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(false);
    message.add_query(Query::query(name.clone(), RecordType::TXT));
    let answer = exchange(server, message, None)
        .await
        .map_err(|e| DnsError::Unreachable {
            server: server.to_owned(),
            message: match e {
                Exchange::Transport(m) | Exchange::Answer(m) => m,
            },
        })?;
    Ok(answer
        .answers()
        .iter()
        .filter_map(|record| match record.data() {
            RData::TXT(txt) => Some(
                txt.txt_data()
                    .iter()
                    .map(|part| String::from_utf8_lossy(part).into_owned())
                    .collect(),
            ),
            _ => None,
        })
        .collect())
}

fn txt(name: &Name, value: &str, ttl: u32) -> RecordSet {
    let mut record = Record::from_rdata(
        name.clone(),
        ttl,
        RData::TXT(TXT::new(vec![value.to_owned()])),
    );
    record.set_dns_class(DNSClass::IN);
    let mut set = RecordSet::new(name.clone(), RecordType::TXT, 0);
    set.insert(record, 0);
    set
}

/// How an exchange failed: no answer, or an answer that did not verify.
enum Exchange {
    Transport(String),
    Answer(String),
}

/// One request over a new TCP connection to `server`, signed by `signer`
/// (updates only: hickory signs UPDATE messages and verifies the answer).
async fn exchange(
    server: &str,
    message: Message,
    signer: Option<Arc<dyn MessageFinalizer>>,
) -> Result<Message, Exchange> {
    let run = async {
        let address = resolve(server).await?;
        let (stream, handle) = TcpClientStream::new(
            address,
            None,
            Some(EXCHANGE_TIMEOUT),
            TokioRuntimeProvider::new(),
        );
        let multiplexer = DnsMultiplexer::with_timeout(stream, handle, EXCHANGE_TIMEOUT, signer);
        let (client, background) = DnsExchange::connect::<_, _, TokioTime>(multiplexer)
            .await
            .map_err(|e| Exchange::Transport(e.to_string()))?;
        let background = tokio::spawn(background);
        let mut options = DnsRequestOptions::default();
        options.use_edns = false;
        let answer = client
            .send(DnsRequest::new(message, options))
            .next()
            .await
            .ok_or_else(|| Exchange::Transport("the connection closed without an answer".into()))?
            .map_err(classify);
        background.abort();
        answer.map(|response| response.into_message())
    };
    tokio::time::timeout(EXCHANGE_TIMEOUT, run)
        .await
        .unwrap_or_else(|_| {
            Err(Exchange::Transport(format!(
                "no answer within {EXCHANGE_TIMEOUT:?}"
            )))
        })
}

fn classify(error: ProtoError) -> Exchange {
    match error.kind() {
        ProtoErrorKind::Io(_)
        | ProtoErrorKind::Timeout
        | ProtoErrorKind::Busy
        | ProtoErrorKind::NoConnections => Exchange::Transport(error.to_string()),
        _ => {
            // BIND answers a key it does not know (BADKEY) or a wrong secret
            // (BADSIG) unsigned: hickory's verification fails on that.
            tracing::debug!(%error, "DNS answer did not verify");
            Exchange::Answer(format!(
                "its answer carries no valid signature of this key: the server does not know the key or the secret differs (TSIG BADKEY/BADSIG), or the clocks differ by more than {FUDGE_SECS} s"
            ))
        }
    }
}

async fn resolve(server: &str) -> Result<SocketAddr, Exchange> {
    tokio::net::lookup_host(server)
        .await
        .map_err(|e| Exchange::Transport(format!("cannot resolve: {e}")))?
        .next()
        .ok_or_else(|| Exchange::Transport("resolves to no address".into()))
}

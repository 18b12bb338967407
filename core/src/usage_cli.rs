//! `vibectl-core usage` (the ledger, summed) and `vibectl-core quota
//! status` (each budget's used, reserved, limit and reset time).

use crate::{
    ledger::{
        self, LedgerError, LedgerStore,
        report::{self, Format, GroupBy},
    },
    quota::{
        backend::QuotaBackend, memory::MemoryBackend, policy::Policy, redis::RedisQuota,
        status_rows,
    },
};
use clap::{Args, Subcommand};
use jiff::{Timestamp, ToSpan, civil::Date};
use std::sync::Arc;
use vibectl_config::{Config, LimitsBackend};

/// Options of `usage`.
#[derive(Debug, Args)]
pub struct UsageArgs {
    /// Configuration file (default: $VIBECTL_PROXY_CONFIG, else
    /// <state dir>/config.toml if it exists, else built-in defaults).
    #[arg(long, value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,
    /// Calls of the last DURATION (e.g. `7d`, `12h`); default: this month.
    #[arg(long, value_name = "DURATION", conflicts_with = "month")]
    pub since: Option<humantime::Duration>,
    /// Calls of one calendar month, e.g. `2026-11` (in `[quota] time_zone`).
    #[arg(long, value_name = "YYYY-MM")]
    pub month: Option<String>,
    /// Group by these columns: sub, model, day, kid (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "sub,model")]
    pub by: Vec<GroupBy>,
    /// Only this subject's calls.
    #[arg(long)]
    pub sub: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

/// `quota …`.
#[derive(Debug, Subcommand)]
pub enum QuotaCommand {
    /// Each budget's used, reserved and limit in its window, and when it resets.
    Status(QuotaStatusArgs),
}

/// Options of `quota status`.
#[derive(Debug, Args)]
pub struct QuotaStatusArgs {
    /// Configuration file (default: $VIBECTL_PROXY_CONFIG, else
    /// <state dir>/config.toml if it exists, else built-in defaults).
    #[arg(long, value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,
    /// Only this subject (default: every subject with a `[limits.per_token]`
    /// table or calls this month, and every `[limits.per_model]` model).
    #[arg(long)]
    pub sub: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

/// Why a report cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A bad option.
    #[error("{0}")]
    Usage(String),
    /// The ledger cannot be read.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// The quota backend cannot be read.
    #[error(transparent)]
    Backend(#[from] crate::quota::backend::BackendError),
    /// The SQLite ledger's file does not exist (a report never creates it).
    #[error("no usage ledger at {}: {why}", path.display())]
    NoLedger {
        /// The file looked for.
        path: std::path::PathBuf,
        /// Why there is none, and what to do.
        why: &'static str,
    },
}

/// The ledger a report reads. The default backend is an SQLite file that
/// the core creates at its first start: when it does not exist, the
/// error says so instead of creating an empty database (and the state
/// directory) to report nothing from.
async fn report_store(config: &Config) -> Result<Arc<dyn LedgerStore>, ReportError> {
    let ledger = &config.ledger;
    let sqlite = ledger.url.is_none() && ledger.url_env.is_none() && ledger.url_file.is_none();
    let path = ledger.sqlite_file(&config.edge.state_dir());
    if sqlite && !path.exists() {
        let why = if ledger.enabled {
            "no core has recorded a call there yet (`vibectl-core serve` creates it; \
             [ledger] sqlite_path or url names another ledger)"
        } else {
            "the ledger is off ([ledger] enabled = false), so no call is recorded"
        };
        return Err(ReportError::NoLedger { path, why });
    }
    Ok(ledger::open_store(config).await?)
}

/// The `usage` report.
pub async fn usage(config: &Config, args: &UsageArgs) -> Result<String, ReportError> {
    let policy = Policy::from_config(config);
    let now = Timestamp::now();
    let (since, until) = if let Some(d) = args.since {
        let d = std::time::Duration::from(d);
        let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        (now.as_millisecond().saturating_sub(ms), i64::MAX)
    } else {
        let first = match &args.month {
            Some(m) => Date::strptime("%Y-%m-%d", format!("{m}-01")).map_err(|_| {
                ReportError::Usage(format!("--month {m}: expected YYYY-MM, e.g. 2026-11"))
            })?,
            None => now.to_zoned(policy.tz.clone()).date().first_of_month(),
        };
        let start = |d: Date| {
            d.to_zoned(policy.tz.clone())
                .map(|z| z.timestamp().as_millisecond())
                .unwrap_or(0)
        };
        let next = first.checked_add(1.month()).map(start).unwrap_or(i64::MAX);
        (start(first), next)
    };
    let store = report_store(config).await?;
    let rows = store.rows(since, until, args.sub.as_deref()).await?;
    let report = report::aggregate(&rows, &args.by, &policy.tz);
    if report.is_empty() && args.format == Format::Table {
        return Ok(no_calls(since, until, args.sub.as_deref()));
    }
    Ok(report::render(&report, &args.by, args.format))
}

/// What `usage` says, rather than a bare header, when the period has no
/// call: the period (UTC) and the subject asked about.
fn no_calls(since: i64, until: i64, sub: Option<&str>) -> String {
    let at = |ms: i64| {
        Timestamp::from_millisecond(ms).map_or_else(|_| ms.to_string(), |t| format!("{t:.0}"))
    };
    let until = match until {
        i64::MAX => "now".to_owned(),
        ms => at(ms),
    };
    let whom = sub.map_or(String::new(), |s| format!(" by `{s}`"));
    format!(
        "no calls{whom} from {} to {until} in the usage ledger\n",
        at(since)
    )
}

/// The `quota status` report.
pub async fn quota_status(config: &Config, args: &QuotaStatusArgs) -> Result<String, ReportError> {
    let policy = Policy::from_config(config);
    let backend: Arc<dyn QuotaBackend> = match config.limits.backend {
        LimitsBackend::Redis => Arc::new(RedisQuota::new(
            config
                .limits
                .redis_url
                .as_ref()
                .map(|u| u.expose())
                .unwrap_or_default(),
            config.limits.key_prefix(),
        )?),
        // The serving core's reservations live in its memory: show what the
        // ledger says was used (what the core restores at start).
        LimitsBackend::Memory => Arc::new(MemoryBackend::default()),
    };
    let (mut subs, models) = policy.configured();
    // No ledger kept, or none yet: nothing used, the budgets still show.
    let store = match config.ledger.enabled {
        false => None,
        true => match report_store(config).await {
            Ok(store) => Some(store),
            Err(ReportError::NoLedger { .. }) => None,
            Err(e) => return Err(e),
        },
    };
    if let Some(store) = &store {
        let month = crate::quota::policy::Window::of(
            crate::quota::policy::Period::Month,
            Timestamp::now(),
            &policy.tz,
        );
        let totals = store.totals(month.starts.as_millisecond()).await?;
        subs.extend(totals.iter().map(|t| t.sub.clone()));
        if config.limits.backend == LimitsBackend::Memory {
            let memory = MemoryBackend::default();
            crate::quota::restore(&memory, store.as_ref(), &policy).await?;
            return render_status(&policy, &memory, args, subs, models).await;
        }
    }
    render_status(&policy, backend.as_ref(), args, subs, models).await
}

async fn render_status(
    policy: &Policy,
    backend: &dyn QuotaBackend,
    args: &QuotaStatusArgs,
    mut subs: Vec<String>,
    mut models: Vec<String>,
) -> Result<String, ReportError> {
    if let Some(sub) = &args.sub {
        subs = vec![sub.clone()];
        models.clear();
    }
    subs.sort();
    subs.dedup();
    let rows = status_rows(policy, backend, &subs, &models).await?;
    if args.format == Format::Json {
        return Ok(serde_json::to_string_pretty(&rows).unwrap_or_default() + "\n");
    }
    if rows.is_empty() && args.format == Format::Table {
        let whom = args
            .sub
            .as_ref()
            .map_or(String::new(), |s| format!(" to `{s}`"));
        return Ok(format!("no quota budget applies{whom}: {HOW_TO_SET}"));
    }
    let lines = rows.into_iter().map(|r| {
        [
            r.owner,
            r.budget.to_owned(),
            r.window,
            r.used.to_string(),
            r.reserved.to_string(),
            r.limit.to_string(),
            r.enforce.to_string(),
            r.resets_at,
        ]
    });
    let table: Vec<[String; 8]> = std::iter::once(STATUS_HEADER.map(str::to_owned))
        .chain(lines)
        .collect();
    Ok(report::text_table(&table, args.format))
}

/// The columns of `quota status`.
const STATUS_HEADER: [&str; 8] = [
    "OWNER",
    "BUDGET",
    "WINDOW",
    "USED",
    "RESERVED",
    "LIMIT",
    "ENFORCE",
    "RESETS_AT",
];

/// What `quota status` says, rather than an empty table, when no budget
/// applies.
const HOW_TO_SET: &str = "set max_tokens_per_day, \
max_tokens_per_month, max_cost_usd_per_day or max_cost_usd_per_month in [limits.global], \
[limits.per_token.\"SUB\"] or [limits.per_model.\"MODEL\"] (README, \"Quotas and the usage ledger\")\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_period_is_named() {
        let nov = 1_793_491_200_000; // 2026-11-01T00:00:00Z
        let dec = 1_796_083_200_000; // 2026-12-01T00:00:00Z
        assert_eq!(
            no_calls(nov, dec, None),
            "no calls from 2026-11-01T00:00:00Z to 2026-12-01T00:00:00Z in the usage ledger\n"
        );
        assert!(no_calls(nov, i64::MAX, Some("alice")).starts_with("no calls by `alice` from"));
        assert!(no_calls(nov, i64::MAX, None).contains("to now"));
    }
}

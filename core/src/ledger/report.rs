//! `vibectl-core usage`: the ledger's rows summed by subject, model, day
//! (in `[quota] time_zone`), as a table, JSON or CSV.

use super::LedgerRow;
use jiff::{Timestamp, tz::TimeZone};
use serde::Serialize;
use std::{collections::BTreeMap, fmt::Write as _};
use vibectl_config::Usd;

/// A grouping column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    /// The token's `sub`.
    Sub,
    /// The model id.
    Model,
    /// The calendar day.
    Day,
    /// The key id.
    Kid,
}

/// A `--group-by` column that does not exist.
#[derive(Debug, thiserror::Error)]
#[error("unknown column `{0}` (use sub, model, day, kid)")]
pub struct UnknownColumn(String);

impl std::str::FromStr for GroupBy {
    type Err = UnknownColumn;
    fn from_str(s: &str) -> Result<Self, UnknownColumn> {
        match s.trim() {
            "sub" => Ok(Self::Sub),
            "model" => Ok(Self::Model),
            "day" => Ok(Self::Day),
            "kid" => Ok(Self::Kid),
            other => Err(UnknownColumn(other.to_owned())),
        }
    }
}

impl GroupBy {
    fn name(self) -> &'static str {
        match self {
            Self::Sub => "sub",
            Self::Model => "model",
            Self::Day => "day",
            Self::Kid => "kid",
        }
    }
}

/// One group's sums.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ReportRow {
    /// The group's column values, in `--by` order.
    pub group: BTreeMap<String, String>,
    /// Calls.
    pub calls: u64,
    /// Input tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Input + output.
    pub total_tokens: u64,
    /// USD.
    pub cost_usd: f64,
    /// Calls whose counts are (partly) the core's estimate.
    pub estimated_calls: u64,
    /// Calls refused (quota) or failed.
    pub not_ok_calls: u64,
}

/// Sums `rows` by `by` (all rows in one group when empty).
pub fn aggregate(rows: &[LedgerRow], by: &[GroupBy], tz: &TimeZone) -> Vec<ReportRow> {
    let mut groups: BTreeMap<Vec<String>, (ReportRow, u64)> = BTreeMap::new();
    for r in rows {
        let key: Vec<String> = by
            .iter()
            .map(|g| match g {
                GroupBy::Sub => r.sub.clone(),
                GroupBy::Model => r.model.clone(),
                GroupBy::Kid => r.kid.clone().unwrap_or_else(|| "-".into()),
                GroupBy::Day => Timestamp::from_millisecond(r.ts_ms)
                    .map(|t| t.to_zoned(tz.clone()).date().to_string())
                    .unwrap_or_default(),
            })
            .collect();
        let (row, cost) = groups.entry(key.clone()).or_insert_with(|| {
            let group = by.iter().map(|g| g.name().to_owned()).zip(key).collect();
            (
                ReportRow {
                    group,
                    ..ReportRow::default()
                },
                0,
            )
        });
        let input = u64::try_from(r.input_tokens).unwrap_or(0);
        let output = u64::try_from(r.output_tokens).unwrap_or(0);
        row.calls += 1;
        row.input_tokens += input;
        row.output_tokens += output;
        row.total_tokens += input + output;
        *cost += u64::try_from(r.cost_nanousd).unwrap_or(0);
        row.estimated_calls += u64::from(r.estimated);
        row.not_ok_calls += u64::from(r.outcome != "ok");
    }
    groups
        .into_values()
        .map(|(mut row, cost)| {
            row.cost_usd = Usd::from_nanos(cost).as_f64();
            row
        })
        .collect()
}

/// How `usage` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns.
    Table,
    /// A JSON array.
    Json,
    /// Comma-separated, with a header line.
    Csv,
}

/// The report in `format`.
pub fn render(rows: &[ReportRow], by: &[GroupBy], format: Format) -> String {
    if format == Format::Json {
        return serde_json::to_string_pretty(rows).unwrap_or_default() + "\n";
    }
    let mut header: Vec<String> = by.iter().map(|g| g.name().to_uppercase()).collect();
    header.extend(
        [
            "CALLS",
            "INPUT",
            "OUTPUT",
            "TOTAL",
            "COST_USD",
            "ESTIMATED",
            "NOT_OK",
        ]
        .map(String::from),
    );
    let lines = rows.iter().map(|r| {
        let mut cells: Vec<String> = by
            .iter()
            .map(|g| r.group.get(g.name()).cloned().unwrap_or_default())
            .collect();
        cells.extend([
            r.calls.to_string(),
            r.input_tokens.to_string(),
            r.output_tokens.to_string(),
            r.total_tokens.to_string(),
            format!("{:.6}", r.cost_usd),
            r.estimated_calls.to_string(),
            r.not_ok_calls.to_string(),
        ]);
        cells
    });
    let table: Vec<Vec<String>> = std::iter::once(header).chain(lines).collect();
    text_table(&table, format)
}

/// `table` (its first row the header) as CSV, a cell quoted when it holds
/// a comma, a quote or a newline; in any other format as columns, each as
/// wide as its widest cell. What `usage` and `quota status` print.
pub fn text_table<R: AsRef<[String]>>(table: &[R], format: Format) -> String {
    let mut out = String::new();
    if format == Format::Csv {
        let quote = |c: &String| match c.contains([',', '"', '\n']) {
            true => format!("\"{}\"", c.replace('"', "\"\"")),
            false => c.clone(),
        };
        for row in table {
            let cells: Vec<String> = row.as_ref().iter().map(quote).collect();
            let _ = writeln!(out, "{}", cells.join(","));
        }
        return out;
    }
    let mut widths: Vec<usize> = Vec::new();
    for row in table {
        for (i, cell) in row.as_ref().iter().enumerate() {
            let width = cell.chars().count();
            match widths.get_mut(i) {
                Some(w) => *w = (*w).max(width),
                None => widths.push(width),
            }
        }
    }
    for row in table {
        let cells: Vec<String> = row
            .as_ref()
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", cells.join("  ").trim_end());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(sub: &str, model: &str, ts_ms: i64, tokens: (i64, i64), cost: i64) -> LedgerRow {
        LedgerRow {
            ts_ms,
            request_id: "r".into(),
            sub: sub.into(),
            kid: None,
            jti: None,
            model: model.into(),
            provider: "p".into(),
            method: "Execute".into(),
            input_tokens: tokens.0,
            output_tokens: tokens.1,
            estimated: false,
            cost_nanousd: cost,
            duration_ms: 1,
            outcome: "ok".into(),
            status: "OK".into(),
        }
    }

    #[test]
    fn sums_by_sub_and_day_and_renders() {
        let day1 = 1_764_979_200_000; // 2025-12-06T00:00:00Z
        let rows = [
            row("alice", "m", day1, (10, 5), 1_500),
            row("alice", "m", day1 + 1000, (1, 1), 500),
            row("bob", "m", day1 + 86_400_000, (3, 4), 0),
        ];
        let by = [GroupBy::Sub, GroupBy::Day];
        let out = aggregate(&rows, &by, &TimeZone::UTC);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].group["day"], "2025-12-06");
        assert_eq!((out[0].calls, out[0].total_tokens), (2, 17));
        assert!((out[0].cost_usd - 2e-6).abs() < 1e-15);
        let csv = render(&out, &by, Format::Csv);
        assert!(csv.starts_with("SUB,DAY,CALLS"), "{csv}");
        assert!(csv.contains("bob,2025-12-07,1,3,4,7"), "{csv}");
        let table = render(&out, &by, Format::Table);
        assert!(table.contains("alice"), "{table}");
    }

    #[test]
    fn the_table_is_aligned_and_the_csv_quoted() {
        let row = |owner: &str| [owner.to_owned(), "max_tokens_per_day".to_owned()];
        let table = [row("OWNER"), row("token `a,b`"), row("token `alice`")];
        let text = text_table(&table, Format::Table);
        let starts: Vec<usize> = text
            .lines()
            .map(|l| l.find("max_tokens_per_day").expect("column"))
            .collect();
        assert_eq!(starts, [15, 15, 15], "{text}");
        assert_eq!(
            text_table(&table[1..2], Format::Csv),
            "\"token `a,b`\",max_tokens_per_day\n"
        );
    }
}

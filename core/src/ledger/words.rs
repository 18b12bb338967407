//! The row's words from small fixed sets (`method`, `outcome`, `status`),
//! written to SQLite as integers that the `INSERT` turns back into the
//! same text (`CASE ?n WHEN 0 THEN 'ok' … ELSE ?m END`): an integer bind
//! costs SQLite no copy of a string, no allocation and no free, and the
//! stored rows are unchanged (the same TEXT columns, the same values). A
//! word outside its set (a provider's own error code) is bound as text to
//! the `ELSE` parameter.

use crate::call::EXECUTION_FAILED;
use vibectl_proto::wire::Method;

/// One column's words, most frequent first (each `WHEN` is a compare).
pub(super) struct Words(&'static [&'static str]);

/// `method`: the RPCs' names as the contract spells them.
pub(super) const METHOD: Words = Words(&[Method::StreamExecute.name(), Method::Execute.name()]);
/// `outcome`.
pub(super) const OUTCOME: Words =
    Words(&["ok", "failed", "refused", "cancelled", "deadline_exceeded"]);
/// `status`.
pub(super) const STATUS: Words = Words(&[
    "OK",
    EXECUTION_FAILED,
    "RESOURCE_EXHAUSTED",
    "UNAVAILABLE",
    "CANCELLED",
    "DEADLINE_EXCEEDED",
    "NO_MODEL",
    "MODEL_NOT_FOUND",
    "INTERNAL",
]);

impl Words {
    /// The code of `word`, `None` outside the set (then the text is bound).
    pub(super) fn code(&self, word: &str) -> Option<i64> {
        self.0.iter().position(|w| *w == word).map(|i| i as i64)
    }

    /// `CASE ?{code} WHEN 0 THEN '…' … ELSE ?{text} END`. The words are
    /// our constants (letters and `_` only: checked by a test), never input.
    pub(super) fn case(&self, code: usize, text: usize) -> String {
        let mut sql = format!("CASE ?{code}");
        for (i, w) in self.0.iter().enumerate() {
            sql.push_str(&format!(" WHEN {i} THEN '{w}'"));
        }
        sql.push_str(&format!(" ELSE ?{text} END"));
        sql
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_plain_and_coded_both_ways() {
        for set in [&METHOD, &OUTCOME, &STATUS] {
            for (i, w) in set.0.iter().enumerate() {
                assert!(w.bytes().all(|b| b.is_ascii_alphabetic() || b == b'_'));
                assert_eq!(set.code(w), Some(i as i64));
            }
        }
        assert_eq!(STATUS.code("provider_http_500"), None);
        assert_eq!(
            METHOD.case(8, 16),
            "CASE ?8 WHEN 0 THEN 'StreamExecute' WHEN 1 THEN 'Execute' ELSE ?16 END"
        );
    }
}

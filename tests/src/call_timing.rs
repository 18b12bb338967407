//! How `ttft` and `fake_provider` time a call's legs: `ttft` tags each
//! prompt with its call's id ([`tagged`]); the fake provider finds it
//! ([`id_in`]), records the wall-clock instant the call arrived and the one
//! its first token left ([`CallTiming`]), and serves every record at
//! `{base_url}`[`PATH`] as JSON. Both processes read the same clock
//! ([`now_ns`]), so `ttft` can subtract their instants from its own.

use serde::{Deserialize, Serialize};
use std::{
    collections::BTreeMap,
    time::{SystemTime, UNIX_EPOCH},
};

/// Where the fake provider serves the records, under its base URL.
pub const PATH: &str = "/_timings";

/// One timed call's provider-side instants, in ns since the Unix epoch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallTiming {
    /// When the request arrived.
    pub received_ns: u128,
    /// When its first token left (none yet: not sent).
    pub first_sent_ns: Option<u128>,
}

/// The records by call id, as [`PATH`] serves them.
pub type Timings = BTreeMap<u64, CallTiming>;

/// `prompt` tagged with call `id`.
pub fn tagged(prompt: &str, id: u64) -> String {
    format!("{prompt} [call {id}]")
}

/// The call id a [`tagged`] text carries.
pub fn id_in(text: &str) -> Option<u64> {
    let (_, rest) = text.split_once("[call ")?;
    rest.split_once(']')?.0.parse().ok()
}

/// Wall-clock now, in ns since the Unix epoch (the same in every process).
pub fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tagged_prompt_gives_its_id_back_and_records_survive_json() {
        assert_eq!(id_in(&tagged("how do I list pods?", 17)), Some(17));
        assert_eq!(id_in("how do I list pods?"), None);
        let timings = Timings::from([(
            17,
            CallTiming {
                received_ns: 1_765_000_000_000_000_001,
                first_sent_ns: Some(1_765_000_000_050_000_002),
            },
        )]);
        let json = serde_json::to_string(&timings).expect("json");
        assert_eq!(
            serde_json::from_str::<Timings>(&json).expect("parse"),
            timings
        );
    }
}

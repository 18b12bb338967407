//! The caller's limits as the edge passes them to the core: one header,
//! [`LIMITS_HEADER`], `rpm=60,concurrency=4,input-length=32000,timeout=300`,
//! a key only for a limit that is set (no header: every limit unlimited).
//! One header rather than one per limit: the edge sends it on every call,
//! and each header costs HPACK on the edge and the decoder on the core
//! (some 500 instructions a side, indexed or not).

/// The header (see the module doc).
pub const LIMITS_HEADER: &str = "x-vibectl-limits";

/// The keys, in the order the edge writes them.
const KEYS: [&str; 4] = ["rpm", "concurrency", "input-length", "timeout"];

/// The caller's limits as [`LIMITS_HEADER`] carries them (`None`: unlimited).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LimitValues {
    /// `rpm`: sustained requests per minute.
    pub requests_per_minute: Option<u32>,
    /// `concurrency`: calls in flight at once.
    pub concurrency: Option<u32>,
    /// `input-length`: the longest input, in characters of system + user
    /// fragments.
    pub input_length: Option<u32>,
    /// `timeout`: the longest call, in seconds.
    pub timeout_seconds: Option<u32>,
}

impl LimitValues {
    /// The values in [`KEYS`] order.
    fn values(&self) -> [Option<u32>; 4] {
        [
            self.requests_per_minute,
            self.concurrency,
            self.input_length,
            self.timeout_seconds,
        ]
    }

    /// The field of `key` (the fields in [`KEYS`] order, as [`Self::values`]).
    fn slot(&mut self, key: &str) -> Option<&mut Option<u32>> {
        let i = KEYS.iter().position(|k| *k == key)?;
        let fields = [
            &mut self.requests_per_minute,
            &mut self.concurrency,
            &mut self.input_length,
            &mut self.timeout_seconds,
        ];
        fields.into_iter().nth(i)
    }

    /// The header's value; `None` when every limit is unlimited (the edge
    /// sends no header then).
    pub fn to_header(&self) -> Option<String> {
        let parts: Vec<String> = KEYS
            .iter()
            .zip(self.values())
            .filter_map(|(key, value)| Some(format!("{key}={}", value?)))
            .collect();
        (!parts.is_empty()).then(|| parts.join(","))
    }

    /// Reads a header value. A part that is not `key=N` with a known key
    /// and N > 0 is left out (unlimited) and returned, for the core to log
    /// (only the edge sets the header).
    pub fn parse(value: &str) -> (Self, Vec<&str>) {
        let mut limits = Self::default();
        let mut malformed = Vec::new();
        for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let parsed = part.split_once('=').and_then(|(key, number)| {
                let n = number.trim().parse::<u32>().ok().filter(|n| *n > 0)?;
                Some((limits.slot(key.trim())?, n))
            });
            match parsed {
                Some((slot, n)) => *slot = Some(n),
                None => malformed.push(part),
            }
        }
        (limits, malformed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_round_trip_and_bad_parts_are_named() {
        let limits = LimitValues {
            requests_per_minute: Some(60),
            input_length: Some(32000),
            timeout_seconds: Some(5),
            ..LimitValues::default()
        };
        let header = limits.to_header().expect("some limits");
        assert_eq!(header, "rpm=60,input-length=32000,timeout=5");
        assert_eq!(LimitValues::parse(&header), (limits, vec![]));
        assert_eq!(LimitValues::default().to_header(), None);

        let (parsed, bad) = LimitValues::parse("rpm=0, concurrency=4,timeout=many,color=red,x");
        assert_eq!(
            parsed,
            LimitValues {
                concurrency: Some(4),
                ..LimitValues::default()
            }
        );
        assert_eq!(bad, ["rpm=0", "timeout=many", "color=red", "x"]);
    }
}

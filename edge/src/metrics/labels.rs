//! Bounded label values: the `sub` of at most `max_subjects` subjects,
//! the three RPC names, the gRPC status names, the limit types.

use prometheus::IntCounter;
use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, OnceLock, PoisonError,
        atomic::{AtomicBool, AtomicI64, Ordering},
    },
};

/// The `sub` of requests without a verified subject.
pub use vibectl_proto::wire::ANONYMOUS_SUBJECT as ANONYMOUS;
/// The `sub` of every subject past `max_subjects`, and the `method` of any
/// path that is not one of the three RPCs.
pub use vibectl_proto::wire::OTHER_LABEL as OTHER;
use vibectl_proto::wire::{LimitType, Method};

/// One `sub` label value, shared (no allocation per call), with its calls
/// in flight (an atomic read at scrape time, not a measurement per call)
/// and its `vibectl_requests_total` series, each resolved at its first
/// call and then only incremented.
#[derive(Debug)]
struct Slot {
    label: Arc<str>,
    in_flight: AtomicI64,
    used: AtomicBool,
    requests: [OnceLock<IntCounter>; MethodLabel::COUNT * Code::COUNT],
}

impl Slot {
    fn new(label: &str) -> Arc<Self> {
        Arc::new(Self {
            label: Arc::from(label),
            in_flight: AtomicI64::new(0),
            used: AtomicBool::new(false),
            requests: std::array::from_fn(|_| OnceLock::new()),
        })
    }
}

/// The `sub` label of a request (see [`Subjects::label`]).
#[derive(Debug, Clone)]
pub struct SubjectLabel(Arc<Slot>);

impl SubjectLabel {
    /// The label value.
    pub fn as_str(&self) -> &str {
        &self.0.label
    }

    /// The label value for an attribute (an `Arc` clone, no copy).
    pub(crate) fn value(&self) -> opentelemetry::Value {
        opentelemetry::Value::String(self.0.label.clone().into())
    }

    /// One more call of this subject in flight.
    pub(crate) fn enter(&self) {
        self.0.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    /// One call of this subject less in flight.
    pub(crate) fn leave(&self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    /// This subject's series of `method` and `code`, made by `resolve` the
    /// first time.
    pub(crate) fn requests(
        &self,
        method: MethodLabel,
        code: Code,
        resolve: impl FnOnce() -> IntCounter,
    ) -> &IntCounter {
        self.0.requests[usize::from(method.0) * Code::COUNT + usize::from(code.0)]
            .get_or_init(resolve)
    }
}

impl PartialEq<&str> for SubjectLabel {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// The first `max` distinct subjects keep their own label.
#[derive(Debug)]
pub(crate) struct Subjects {
    max: usize,
    /// Keyed by verified subjects only; foldhash (keyed per process), as
    /// every call looks its subject up.
    seen: Mutex<HashMap<Box<str>, Arc<Slot>, foldhash::fast::RandomState>>,
    anonymous: Arc<Slot>,
    other: Arc<Slot>,
}

impl Subjects {
    pub(crate) fn new(max: usize) -> Self {
        Self {
            max,
            seen: Mutex::new(HashMap::default()),
            anonymous: Slot::new(ANONYMOUS),
            other: Slot::new(OTHER),
        }
    }

    pub(crate) fn label(&self, sub: Option<&str>) -> SubjectLabel {
        let Some(sub) = sub else {
            return SubjectLabel(self.anonymous.clone());
        };
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(slot) = seen.get(sub) {
            return SubjectLabel(slot.clone());
        }
        if seen.len() < self.max {
            let slot = Slot::new(sub);
            seen.insert(Box::from(sub), slot.clone());
            return SubjectLabel(slot);
        }
        self.other.used.store(true, Ordering::Relaxed);
        SubjectLabel(self.other.clone())
    }

    /// Calls in flight per label: `anonymous` always, every subject seen,
    /// and `other` once used.
    pub(crate) fn in_flight(&self, mut each: impl FnMut(&Arc<str>, i64)) {
        let read = |slot: &Slot| slot.in_flight.load(Ordering::Relaxed);
        each(&self.anonymous.label, read(&self.anonymous));
        for slot in self
            .seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
        {
            each(&slot.label, read(slot));
        }
        if self.other.used.load(Ordering::Relaxed) {
            each(&self.other.label, read(&self.other));
        }
    }
}

/// A `method` label value: one of the three RPCs, or `other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MethodLabel(u8);

impl MethodLabel {
    /// How many values there are.
    pub const COUNT: usize = Method::ALL.len() + 1;

    /// The label value.
    pub fn as_str(self) -> &'static str {
        Method::ALL
            .get(usize::from(self.0))
            .map_or(OTHER, |m| m.name())
    }

    /// Its position among the [`Self::COUNT`] values.
    pub fn index(self) -> usize {
        usize::from(self.0)
    }
}

/// The `method` label of a request path.
pub fn method(path: &str) -> MethodLabel {
    let of = |m: Method| Method::ALL.iter().position(|x| *x == m);
    let index = Method::from_path(path)
        .and_then(of)
        .unwrap_or(Method::ALL.len());
    MethodLabel(u8::try_from(index).unwrap_or(u8::MAX))
}

/// A `code` label value: a gRPC status, by its number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Code(u8);

/// The gRPC status names, by number.
const CODE_NAMES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

impl Code {
    /// How many values there are.
    pub const COUNT: usize = CODE_NAMES.len();
    /// `CANCELLED`.
    pub const CANCELLED: Self = Self(1);
    /// `UNKNOWN`.
    pub const UNKNOWN: Self = Self(2);
    /// `INTERNAL`.
    pub const INTERNAL: Self = Self(13);

    /// The status name (`OK`, `RESOURCE_EXHAUSTED`, …).
    pub fn as_str(self) -> &'static str {
        CODE_NAMES[usize::from(self.0)]
    }
}

/// The status of a numeric `grpc-status` (`UNKNOWN` for anything else).
pub fn code(value: &str) -> Code {
    // Exactly the decimal numbers, as gRPC sends them ("01", "+1": UNKNOWN).
    let n = match value.trim().as_bytes() {
        [d @ b'0'..=b'9'] => d - b'0',
        [b'1', d @ b'0'..=b'6'] => 10 + (d - b'0'),
        _ => return Code::UNKNOWN,
    };
    Code(n)
}

/// The `limit_type` label of a `limit-type` value.
pub fn limit_type(value: &str) -> &'static str {
    LimitType::parse(value.trim()).map_or(OTHER, |t| t.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_bounded() {
        let s = Subjects::new(2);
        assert_eq!(s.label(Some("a")), "a");
        assert_eq!(s.label(Some("b")), "b");
        assert_eq!(s.label(Some("c")), OTHER);
        assert_eq!(s.label(Some("a")), "a");
        assert_eq!(s.label(None), ANONYMOUS);
        assert_eq!(method("/grpc.health.v1.Health/Check").as_str(), OTHER);
        for m in Method::ALL {
            assert_eq!(method(m.path()).as_str(), m.name());
        }
        assert_eq!(code("8").as_str(), "RESOURCE_EXHAUSTED");
        assert_eq!(code(" 0").as_str(), "OK");
        assert_eq!(code("16").as_str(), "UNAUTHENTICATED");
        assert_eq!(code("99").as_str(), "UNKNOWN");
        assert_eq!(code("+1").as_str(), "UNKNOWN");
        assert_eq!(code("01").as_str(), "UNKNOWN");
        assert_eq!(code("17").as_str(), "UNKNOWN");
        assert_eq!(code("2").as_str(), "UNKNOWN");
        assert_eq!(code("x").as_str(), "UNKNOWN");
        assert_eq!(limit_type("rpm"), "rpm");
        assert_eq!(limit_type("tokens"), OTHER);
    }
}

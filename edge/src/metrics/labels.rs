//! Bounded label values: the `sub` of at most `max_subjects` subjects,
//! the three RPC names, the gRPC status names, the limit types.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, PoisonError,
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
/// in flight (an atomic read at scrape time, not a measurement per call).
#[derive(Debug)]
struct Slot {
    label: Arc<str>,
    in_flight: AtomicI64,
    used: AtomicBool,
}

impl Slot {
    fn new(label: &str) -> Arc<Self> {
        Arc::new(Self {
            label: Arc::from(label),
            in_flight: AtomicI64::new(0),
            used: AtomicBool::new(false),
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
    seen: Mutex<HashMap<Box<str>, Arc<Slot>>>,
    anonymous: Arc<Slot>,
    other: Arc<Slot>,
}

impl Subjects {
    pub(crate) fn new(max: usize) -> Self {
        Self {
            max,
            seen: Mutex::new(HashMap::new()),
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

/// The `method` label of a request path.
pub fn method(path: &str) -> &'static str {
    Method::from_path(path).map_or(OTHER, Method::name)
}

/// The name of a numeric `grpc-status`.
pub fn code_name(code: &str) -> &'static str {
    match code.trim() {
        "0" => "OK",
        "1" => "CANCELLED",
        "3" => "INVALID_ARGUMENT",
        "4" => "DEADLINE_EXCEEDED",
        "5" => "NOT_FOUND",
        "6" => "ALREADY_EXISTS",
        "7" => "PERMISSION_DENIED",
        "8" => "RESOURCE_EXHAUSTED",
        "9" => "FAILED_PRECONDITION",
        "10" => "ABORTED",
        "11" => "OUT_OF_RANGE",
        "12" => "UNIMPLEMENTED",
        "13" => "INTERNAL",
        "14" => "UNAVAILABLE",
        "15" => "DATA_LOSS",
        "16" => "UNAUTHENTICATED",
        _ => "UNKNOWN",
    }
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
        assert_eq!(method("/grpc.health.v1.Health/Check"), OTHER);
        assert_eq!(method(Method::Execute.path()), "Execute");
        assert_eq!(code_name("8"), "RESOURCE_EXHAUSTED");
        assert_eq!(code_name("99"), "UNKNOWN");
        assert_eq!(limit_type("rpm"), "rpm");
        assert_eq!(limit_type("tokens"), OTHER);
    }
}

//! Bounded label values: the `sub` of at most `max_subjects` subjects,
//! the three RPC names, the gRPC status names, the limit types.

use std::{
    collections::HashSet,
    sync::{Mutex, PoisonError},
};

/// The `sub` of requests without a verified subject.
pub use vibectl_proto::wire::ANONYMOUS_SUBJECT as ANONYMOUS;
/// The `sub` of every subject past `max_subjects`, and the `method` of any
/// path that is not one of the three RPCs.
pub use vibectl_proto::wire::OTHER_LABEL as OTHER;
use vibectl_proto::wire::{LimitType, Method};

/// The first `max` distinct subjects keep their own label.
#[derive(Debug)]
pub(crate) struct Subjects {
    max: usize,
    seen: Mutex<HashSet<String>>,
}

impl Subjects {
    pub(crate) fn new(max: usize) -> Self {
        Self {
            max,
            seen: Mutex::new(HashSet::new()),
        }
    }

    pub(crate) fn label(&self, sub: Option<&str>) -> String {
        let Some(sub) = sub else {
            return ANONYMOUS.to_owned();
        };
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if seen.contains(sub) {
            return sub.to_owned();
        }
        if seen.len() < self.max {
            seen.insert(sub.to_owned());
            return sub.to_owned();
        }
        OTHER.to_owned()
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

//! What an admitted call tells the core about its limits: the caller's
//! `x-vibectl-limits` header (absent = unlimited, set on the request's
//! context for forward to add after stripping the client's) and the call's
//! deadline. When the token's `request_timeout_seconds` is the deadline,
//! `timeout=N` in `x-vibectl-limits` says so and no `grpc-timeout` goes
//! (the core's deadline is the shorter of the two, so a client's longer
//! one is removed: one header less per call, its HPACK work here and
//! there); when the client's own `grpc-timeout` is the shorter, it goes.
//! The last ones made are kept: nearly every call has the limits of the call before
//! (the global set, or the same token's) and the same deadline, and
//! formatting them anew cost about 2,500 instructions per call.

use super::context::{CoreHeaders, RequestContext};
use crate::limits::deadline::{CallDeadline, DeadlineSource};
use http::{HeaderValue, Request};
use std::sync::{Mutex, PoisonError};
use vibectl_config::LimitSet;
use vibectl_proto::wire::header_names::{GRPC_TIMEOUT as DEADLINE, LIMITS};
use vibectl_proto::wire::{LimitValues, format_grpc_timeout};

/// The last stamped limits and deadline as headers (see the module doc).
#[derive(Debug, Default)]
pub struct Stamps(Mutex<Last>);

#[derive(Debug, Default)]
struct Last {
    limits: Option<(LimitSet, CoreHeaders)>,
    deadline: Option<(std::time::Duration, HeaderValue)>,
}

impl Stamps {
    /// Stamps `limits` and `deadline` on `request`, from the kept headers
    /// when they are the last ones.
    pub fn stamp<B>(&self, request: &mut Request<B>, limits: &LimitSet, deadline: CallDeadline) {
        let mut last = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let core = match &last.limits {
            Some((kept, headers)) if kept == limits => headers.clone(),
            _ => {
                let headers = core_headers(limits);
                last.limits = Some((*limits, headers.clone()));
                headers
            }
        };
        RequestContext::of_mut(request).core_headers = core;
        match deadline.source {
            DeadlineSource::Client => {}
            // In `x-vibectl-limits` (`timeout=N`).
            DeadlineSource::Token => {
                request.headers_mut().remove(DEADLINE);
                return;
            }
            // The edge's own bound is not sent (absent there = no deadline
            // asked); the backstop enforces it.
            DeadlineSource::Default => return,
        }
        let value = match &last.deadline {
            Some((after, value)) if *after == deadline.after => value.clone(),
            _ => {
                let Ok(value) = HeaderValue::try_from(format_grpc_timeout(deadline.after)) else {
                    return;
                };
                last.deadline = Some((deadline.after, value.clone()));
                value
            }
        };
        request.headers_mut().insert(DEADLINE, value);
    }
}

/// The caller's limits as headers for the core.
fn core_headers(limits: &LimitSet) -> CoreHeaders {
    let values = LimitValues {
        requests_per_minute: limits.max_requests_per_minute.map(|n| n.get()),
        concurrency: limits.max_concurrent_requests.map(|n| n.get()),
        input_length: limits.max_input_length.map(|n| n.get()),
        timeout_seconds: limits.request_timeout_seconds.map(|n| n.get()),
    };
    let header = values
        .to_header()
        .and_then(|v| HeaderValue::try_from(v).ok());
    CoreHeaders::new(header.map(|value| (LIMITS, value)).into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{num::NonZeroU32, time::Duration};
    use vibectl_proto::wire::{GRPC_TIMEOUT, LIMITS_HEADER};

    #[test]
    fn limits_and_the_shorter_deadline_are_stamped() {
        let limits = LimitSet {
            max_requests_per_minute: NonZeroU32::new(60),
            max_input_length: NonZeroU32::new(100),
            request_timeout_seconds: NonZeroU32::new(5),
            ..LimitSet::default()
        };
        let mut request = Request::new(());
        request
            .headers_mut()
            .insert(GRPC_TIMEOUT, HeaderValue::from_static("1H"));
        let token = CallDeadline::of(Some(Duration::from_secs(3600)), Some(5)).expect("one");
        let stamps = Stamps::default();
        stamps.stamp(&mut request, &limits, token);
        assert!(
            request.headers().get(GRPC_TIMEOUT).is_none(),
            "the token's 5 s goes as timeout=5, the client's 1 H is removed"
        );
        let core = &RequestContext::of(&request).expect("set").core_headers;
        assert_eq!(
            core.get(LIMITS_HEADER).map(HeaderValue::as_bytes),
            Some(&b"rpm=60,input-length=100,timeout=5"[..]),
            "unlimited (concurrency) = absent"
        );
        assert!(
            core_headers(&LimitSet::default())
                .get(LIMITS_HEADER)
                .is_none(),
            "no limits: no header"
        );
        let mut request = Request::new(());
        let client = CallDeadline::of(Some(Duration::from_secs(2)), Some(5)).expect("one");
        stamps.stamp(&mut request, &limits, client);
        assert_eq!(
            request.headers()[GRPC_TIMEOUT],
            "2000m",
            "the client's, shorter"
        );
        let mut request = Request::new(());
        stamps.stamp(
            &mut request,
            &limits,
            CallDeadline::default_bound(Duration::from_secs(9)),
        );
        assert!(
            request.headers().get(GRPC_TIMEOUT).is_none(),
            "the edge's own bound"
        );
    }
}

//! What an admitted call tells the core about its limits: the caller's
//! `x-vibectl-limit-*` headers (absent = unlimited, set on the request's
//! context for forward to add after stripping the client's) and the call's
//! `grpc-timeout`, the shorter of the client's and the token's. The last
//! ones made are kept: nearly every call has the limits of the call before
//! (the global set, or the same token's) and the same deadline, and
//! formatting them anew cost about 2,500 instructions per call.

use super::context::{CoreHeaders, RequestContext};
use crate::limits::deadline::CallDeadline;
use http::{HeaderValue, Request};
use std::sync::{Mutex, PoisonError};
use vibectl_config::LimitSet;
use vibectl_proto::wire::format_grpc_timeout;
use vibectl_proto::wire::header_names::{
    GRPC_TIMEOUT as DEADLINE, LIMIT_CONCURRENCY as CONCURRENCY,
    LIMIT_INPUT_LENGTH as INPUT_LENGTH, LIMIT_RPM as RPM, LIMIT_TIMEOUT as TIMEOUT,
};

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
    pub fn stamp<B>(
        &self,
        request: &mut Request<B>,
        limits: &LimitSet,
        deadline: Option<CallDeadline>,
    ) {
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
        let Some(deadline) = deadline else { return };
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
    let headers = [
        (RPM, limits.max_requests_per_minute),
        (CONCURRENCY, limits.max_concurrent_requests),
        (INPUT_LENGTH, limits.max_input_length),
        (TIMEOUT, limits.request_timeout_seconds),
    ]
    .into_iter()
    .filter_map(|(name, value)| Some((name, HeaderValue::from(value?.get()))))
    .collect();
    CoreHeaders::new(headers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{num::NonZeroU32, time::Duration};
    use vibectl_proto::wire::{
        GRPC_TIMEOUT, LIMIT_CONCURRENCY_HEADER, LIMIT_INPUT_LENGTH_HEADER, LIMIT_RPM_HEADER,
        LIMIT_TIMEOUT_HEADER,
    };

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
        let deadline = CallDeadline::of(Some(Duration::from_secs(3600)), Some(5));
        Stamps::default().stamp(&mut request, &limits, deadline);
        assert_eq!(request.headers()[GRPC_TIMEOUT], "5000m");
        let core = &RequestContext::of(&request).expect("set").core_headers;
        let value = |name| core.get(name).map(HeaderValue::as_bytes);
        assert_eq!(value(LIMIT_RPM_HEADER), Some(&b"60"[..]));
        assert_eq!(value(LIMIT_INPUT_LENGTH_HEADER), Some(&b"100"[..]));
        assert_eq!(value(LIMIT_TIMEOUT_HEADER), Some(&b"5"[..]));
        assert!(
            core.get(LIMIT_CONCURRENCY_HEADER).is_none(),
            "unlimited = absent"
        );
    }
}

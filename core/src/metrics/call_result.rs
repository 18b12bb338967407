//! How a call ended (the `result` label) and the `model` label of an
//! unconfigured model: shared by the instruments and their series.

/// The `model` label of a name that is not a configured model id.
pub const UNKNOWN_MODEL: &str = "unknown";

/// How a call ended, as the `result` label says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallResult {
    /// `ok`.
    Ok,
    /// An in-band `ExecuteError` code, lower-cased (`no_model`,
    /// `model_not_found`, `execution_failed`).
    Error(&'static str),
    /// `cancelled`: the client went away.
    Cancelled,
    /// `deadline_exceeded`.
    DeadlineExceeded,
    /// `input_length`: refused before any provider call.
    InputLength,
}

impl CallResult {
    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Error(code) => code,
            Self::Cancelled => "cancelled",
            Self::DeadlineExceeded => "deadline_exceeded",
            Self::InputLength => vibectl_proto::wire::LimitType::InputLength.as_str(),
        }
    }

    /// The result of an in-band error code.
    pub fn from_code(code: &str) -> Self {
        match code {
            "NO_MODEL" => Self::Error("no_model"),
            "MODEL_NOT_FOUND" => Self::Error("model_not_found"),
            "RESOURCE_EXHAUSTED" => Self::Error("quota"),
            _ => Self::Error("execution_failed"),
        }
    }
}

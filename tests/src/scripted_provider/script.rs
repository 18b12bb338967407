//! What a fake provider answers: a [`Script`] of [`Reply`]s, one per
//! request, built with chained methods.

/// One streamed answer.
#[derive(Debug, Clone, Default)]
pub struct StreamReply {
    /// The text deltas, in order.
    pub chunks: Vec<String>,
    /// Reported prompt tokens.
    pub input_tokens: u32,
    /// Reported completion tokens.
    pub output_tokens: u32,
    /// End the response after this many text chunks, without the
    /// stream's end marker (`[DONE]`, `message_stop`), and close the
    /// connection.
    pub cut_after: Option<usize>,
    /// With `cut_after`: abort the connection instead (no HTTP chunked
    /// terminator either, the client sees a broken body). What was sent
    /// before is flushed first (deterministic on a current-thread
    /// runtime, as `#[tokio::test]` uses).
    pub abort: bool,
    /// Hold the stream after the first text chunk until `release_gate()`.
    pub gated: bool,
    /// After the text chunks, send this in-stream error `(type, message)`
    /// instead of the normal end.
    pub error_event: Option<(String, String)>,
}

/// One HTTP error answer.
#[derive(Debug, Clone, Default)]
pub struct ErrorReply {
    /// HTTP status.
    pub status: u16,
    /// The error message.
    pub message: String,
    /// The error `type` (default: the provider's for this status).
    pub kind: Option<String>,
    /// The error `code` (OpenAI only; default: the provider's).
    pub code: Option<String>,
    /// A `retry-after` header value.
    pub retry_after: Option<String>,
    /// A `location` header value (a redirect).
    pub location: Option<String>,
}

/// One answer.
#[derive(Debug, Clone)]
pub enum Reply {
    /// 200 with an SSE stream.
    Stream(StreamReply),
    /// An HTTP error with the provider's error body.
    Error(ErrorReply),
}

/// What the fake answers: one [`Reply`] per request in order; the last
/// one answers every later request. Builder methods after `text`/`error`
/// change the last reply.
#[derive(Debug, Clone)]
pub struct Script {
    pub(super) replies: Vec<Reply>,
}

impl Script {
    /// A stream of these text deltas; usage defaults to 10 prompt tokens
    /// and one completion token per delta.
    pub fn text<I: IntoIterator<Item = S>, S: Into<String>>(chunks: I) -> Self {
        let chunks: Vec<String> = chunks.into_iter().map(Into::into).collect();
        let output_tokens = u32::try_from(chunks.len()).unwrap_or(u32::MAX);
        Self {
            replies: vec![Reply::Stream(StreamReply {
                chunks,
                input_tokens: 10,
                output_tokens,
                ..StreamReply::default()
            })],
        }
    }

    /// An HTTP error with the provider's error body around `message`.
    pub fn error(status: u16, message: impl Into<String>) -> Self {
        Self {
            replies: vec![Reply::Error(ErrorReply {
                status,
                message: message.into(),
                ..ErrorReply::default()
            })],
        }
    }

    /// A redirect: `status` (301, 302, 303, 307, 308) to `location`.
    pub fn redirect(status: u16, location: impl Into<String>) -> Self {
        let location = location.into();
        Self::error(status, format!("moved to {location}"))
            .with_last_error(|e| e.location = Some(location))
    }

    /// This script's replies, then `next`'s.
    pub fn then(mut self, next: Script) -> Self {
        self.replies.extend(next.replies);
        self
    }

    fn with_last_stream(mut self, f: impl FnOnce(&mut StreamReply)) -> Self {
        if let Some(Reply::Stream(s)) = self.replies.last_mut() {
            f(s);
        }
        self
    }

    fn with_last_error(mut self, f: impl FnOnce(&mut ErrorReply)) -> Self {
        if let Some(Reply::Error(e)) = self.replies.last_mut() {
            f(e);
        }
        self
    }

    /// The usage the stream reports.
    pub fn usage(self, input_tokens: u32, output_tokens: u32) -> Self {
        self.with_last_stream(|s| {
            s.input_tokens = input_tokens;
            s.output_tokens = output_tokens;
        })
    }

    /// Hold the stream after its first text chunk until `release_gate()`.
    pub fn gated(self) -> Self {
        self.with_last_stream(|s| s.gated = true)
    }

    /// End the stream after `n` text chunks without its end marker and
    /// close the connection.
    pub fn cut_after(self, n: usize) -> Self {
        self.with_last_stream(|s| s.cut_after = Some(n))
    }

    /// Abort the connection after `n` text chunks (a broken HTTP body).
    pub fn abort_after(self, n: usize) -> Self {
        self.with_last_stream(|s| {
            s.cut_after = Some(n);
            s.abort = true;
        })
    }

    /// End the stream with an in-stream error event instead.
    pub fn error_event(self, kind: &str, message: &str) -> Self {
        self.with_last_stream(|s| s.error_event = Some((kind.to_owned(), message.to_owned())))
    }

    /// The error body's `type`.
    pub fn error_type(self, kind: &str) -> Self {
        self.with_last_error(|e| e.kind = Some(kind.to_owned()))
    }

    /// The error body's `code` (OpenAI).
    pub fn error_code(self, code: &str) -> Self {
        self.with_last_error(|e| e.code = Some(code.to_owned()))
    }

    /// A `retry-after` header on the error.
    pub fn retry_after(self, value: &str) -> Self {
        self.with_last_error(|e| e.retry_after = Some(value.to_owned()))
    }
}

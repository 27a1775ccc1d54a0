//! The service's error enum and its HTTP mapping. OpenFaaS answers errors with `text/plain`
//! bodies; we keep that everywhere, so clients that print the body show a useful sentence.

use std::time::Duration;

use actix_web::{HttpResponse, ResponseError, http::StatusCode};

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// Bad input; the message names the field.
    #[error("{0}")]
    BadRequest(String),
    #[error("function {0} not found")]
    FunctionNotFound(String),
    #[error("secret {0} not found")]
    SecretNotFound(String),
    #[error("secret {0} already exists")]
    SecretExists(String),
    #[error("unauthorized")]
    Unauthorized,
    /// The per-function queue (scale from zero / no ready replica) is full.
    #[error("queue for function {function} is full ({capacity} requests waiting), retry later")]
    QueueFull {
        function: String,
        capacity: usize,
        retry_after: Duration,
    },
    /// No replica became ready in time.
    #[error("no replica of function {0} became ready in time")]
    Unavailable(String),
    /// The function process failed to answer (connection refused, reset...).
    #[error("function {function} failed: {message}")]
    Upstream { function: String, message: String },
    /// The function process was stopped by its memory limit; `detail` says which and how it
    /// is known.
    #[error("function {function} {detail}")]
    MemoryExceeded { function: String, detail: String },
    /// The function answered more than the gateway reads.
    #[error("function {function} failed: answer larger than {limit} bytes")]
    AnswerTooLarge { function: String, limit: usize },
    #[error("function {0} timed out")]
    UpstreamTimeout(String),
    /// Classic watchdog exec timeout.
    #[error("function {0} exceeded its exec timeout")]
    ExecTimeout(String),
    #[error("internal error: {0:#}")]
    Internal(#[from] anyhow::Error),
}

impl ResponseError for GatewayError {
    fn status_code(&self) -> StatusCode {
        match self {
            GatewayError::BadRequest(_) => StatusCode::BAD_REQUEST,
            GatewayError::FunctionNotFound(_) | GatewayError::SecretNotFound(_) => {
                StatusCode::NOT_FOUND
            }
            GatewayError::SecretExists(_) => StatusCode::CONFLICT,
            GatewayError::Unauthorized => StatusCode::UNAUTHORIZED,
            GatewayError::QueueFull { .. } => StatusCode::TOO_MANY_REQUESTS,
            GatewayError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            GatewayError::Upstream { .. }
            | GatewayError::MemoryExceeded { .. }
            | GatewayError::AnswerTooLarge { .. } => StatusCode::BAD_GATEWAY,
            GatewayError::UpstreamTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            GatewayError::ExecTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            GatewayError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status_code());
        for (name, value) in self.headers() {
            res.insert_header((name, value));
        }
        res.body(self.body())
    }
}

impl GatewayError {
    /// The headers of this error's answer: its `text/plain` content type, and what the status
    /// asks for (`WWW-Authenticate` with 401, `Retry-After` with a full queue's 429).
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut headers = vec![("Content-Type", "text/plain; charset=utf-8".to_string())];
        match self {
            GatewayError::Unauthorized => {
                headers.push(("WWW-Authenticate", "Basic realm=\"Restricted\"".to_string()));
            }
            GatewayError::QueueFull { retry_after, .. } => {
                headers.push(("Retry-After", retry_after.as_secs().max(1).to_string()));
            }
            _ => {}
        }
        headers
    }

    /// The body of this error's answer: one sentence.
    pub fn body(&self) -> String {
        format!("{self}\n")
    }
}

pub type GatewayResult<T> = Result<T, GatewayError>;

//! The errors of the service layer ([`ServiceError`]) and the HTTP answer each one gets: a
//! status code chosen here and a JSON [`ErrorBody`] ([`ApiError`]).

use crate::clients::{LimitExceeded, TokenError, retry_after_secs};
use crate::repository::RepoError;
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use model::protocol::{ErrorBody, Refusal};
use model::{FieldError, NodeId};
use std::fmt;

/// Errors of the service layer; `routes` maps each to a status code and a JSON body.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The SLA is invalid (400 `invalid_sla`).
    #[error("{0}")]
    InvalidSla(FieldError),
    /// Some other input field is invalid (400 `invalid_request`).
    #[error("{0}")]
    InvalidRequest(FieldError),
    #[error("no fog node is known by id or name `{0}`")]
    UnknownTargetNode(String),
    #[error("target node `{name}` ({id}) is not alive (no heartbeat recently)")]
    TargetNodeDead { id: NodeId, name: String },
    #[error("{message}")]
    NoFeasibleNode {
        message: String,
        refusals: Vec<Refusal>,
    },
    #[error("{what} `{id}` not found")]
    NotFound { what: &'static str, id: String },
    #[error("{0}")]
    InvalidState(String),
    #[error("{0}")]
    Conflict(String),
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// A client API request without a valid client token while tokens are required (401
    /// with `WWW-Authenticate: Bearer`).
    #[error("{0}")]
    ClientToken(TokenError),
    /// A client went over one of its limits (429, with `Retry-After` when known).
    #[error("{0}")]
    ClientLimit(LimitExceeded),
    /// Validly signed, but not by someone allowed to ask (403 `forbidden`).
    #[error("forbidden: {0}")]
    Forbidden(String),
    #[error("{0}")]
    NodeCallFailed(String),
    /// A fault of the marketplace itself (500).
    #[error("internal error: {0}")]
    Internal(String),
    #[error(transparent)]
    Repo(#[from] RepoError),
}

/// An error answer of the HTTP API.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub body: ErrorBody,
    /// Extra response headers (`Retry-After`, `WWW-Authenticate`); boxed, as few answers
    /// have any and errors travel by value.
    pub headers: Option<Box<Vec<(&'static str, String)>>>,
}

impl ApiError {
    pub fn new(status: StatusCode, error: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            body: ErrorBody {
                error: error.to_string(),
                message: message.into(),
                field: None,
                refusals: Vec::new(),
            },
            headers: None,
        }
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers
            .get_or_insert_with(Box::default)
            .push((name, value.into()));
        self
    }

    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.body.field = Some(field.into());
        self
    }

    /// 400 naming the offending field.
    pub fn bad_request(error: &str, field: &str, reason: impl fmt::Display) -> Self {
        Self::new(StatusCode::BAD_REQUEST, error, format!("{field}: {reason}")).with_field(field)
    }

    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("request body larger than {limit} bytes"),
        )
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status, self.body.error, self.body.message
        )
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }
    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        for (name, value) in self.headers.iter().flat_map(|h| h.iter()) {
            response.insert_header((*name, value.as_str()));
        }
        response.json(&self.body)
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        let message = e.to_string();
        match e {
            ServiceError::InvalidSla(f) => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_sla", message).with_field(f.field)
            }
            ServiceError::InvalidRequest(f) => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", message)
                    .with_field(f.field)
            }
            ServiceError::UnknownTargetNode(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "unknown_target_node", message)
                    .with_field("targetNode")
            }
            ServiceError::TargetNodeDead { .. } => {
                ApiError::new(StatusCode::CONFLICT, "target_node_dead", message)
                    .with_field("targetNode")
            }
            ServiceError::NoFeasibleNode { refusals, .. } => {
                let mut err = ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "no_feasible_node",
                    message,
                );
                err.body.refusals = refusals;
                err
            }
            ServiceError::NotFound { .. } => {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
            }
            ServiceError::InvalidState(_) => {
                ApiError::new(StatusCode::CONFLICT, "invalid_state", message)
            }
            ServiceError::Conflict(_) => ApiError::new(StatusCode::CONFLICT, "conflict", message),
            ServiceError::Unauthorized(_) => {
                ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
            }
            ServiceError::ClientToken(_) => {
                ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
                    .with_header("www-authenticate", r#"Bearer realm="fogmarket client API""#)
            }
            ServiceError::ClientLimit(limit) => {
                let (error, retry_after) = match &limit {
                    LimitExceeded::Rate { retry_after, .. } => ("rate_limited", Some(*retry_after)),
                    LimitExceeded::AuctionsInFlight { .. } => ("too_many_auctions_in_flight", None),
                    LimitExceeded::LivePlacements { .. } => ("too_many_live_placements", None),
                };
                let err = ApiError::new(StatusCode::TOO_MANY_REQUESTS, error, message);
                match retry_after {
                    Some(d) => err.with_header("retry-after", retry_after_secs(d).to_string()),
                    None => err,
                }
            }
            ServiceError::Forbidden(_) => {
                ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
            }
            ServiceError::NodeCallFailed(_) => {
                ApiError::new(StatusCode::BAD_GATEWAY, "node_call_failed", message)
            }
            ServiceError::Internal(_) => {
                tracing::error!(error = %message, "internal failure");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
            }
            ServiceError::Repo(RepoError::Conflict(_)) => {
                ApiError::new(StatusCode::CONFLICT, "conflict", message)
            }
            ServiceError::Repo(e) => {
                tracing::error!(error = %e, "database failure");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error (database); see the marketplace log",
                )
            }
        }
    }
}

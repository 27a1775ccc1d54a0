//! The node's API errors. Each maps to a status code and a JSON [`ErrorBody`].

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use model::FieldError;
use model::auth::AuthError;
use model::ledger::LedgerError;
use model::protocol::ErrorBody;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(FieldError),
    #[error("unauthorized: {0}")]
    Unauthorized(#[from] AuthError),
    #[error("this node is not enrolled with the marketplace yet")]
    NotEnrolled,
    #[error("forbidden: {0}")]
    Forbidden(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    NotFound(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<FieldError> for ApiError {
    fn from(e: FieldError) -> Self {
        ApiError::BadRequest(e)
    }
}

impl From<LedgerError> for ApiError {
    fn from(e: LedgerError) -> Self {
        ApiError::Conflict(e.to_string())
    }
}

impl ApiError {
    fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "invalid_request",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::NotEnrolled => "not_enrolled",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::Conflict(_) => "conflict",
            ApiError::NotFound(_) => "not_found",
            ApiError::Internal(_) => "internal",
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::NotEnrolled => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let field = match self {
            ApiError::BadRequest(f) => Some(f.field.clone()),
            _ => None,
        };
        HttpResponse::build(self.status_code()).json(ErrorBody {
            error: self.code().to_string(),
            message: self.to_string(),
            field,
            refusals: Vec::new(),
        })
    }
}

//! `ApiError`: every way a request or the server fails, and the HTTP
//! status and JSON body (`{"error": …, "kind": …}`) each one answers with.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use nucleus_sandbox::SandboxError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A request field that was refused.
    #[error("invalid `{field}`: `{value}`: {reason}")]
    Invalid {
        field: &'static str,
        value: String,
        reason: String,
    },
    #[error("no sandbox `{0}`")]
    NotFound(String),
    #[error("sandbox `{0}` is not running")]
    NotRunning(String),
    #[error("path `{path}` in sandbox `{id}`: {reason}")]
    Path {
        id: String,
        path: String,
        reason: String,
        status: StatusCode,
    },
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    #[error("--listen needs --token-file: a TCP socket is never served without a token")]
    TokenRequired,
    #[error("cannot read the token file `{path}`: {reason}")]
    Token { path: String, reason: String },
    #[error("cannot listen on `{addr}`: {reason}")]
    Listen { addr: String, reason: String },
    #[error("cannot run `nucleus exec`: {0}")]
    Exec(String),
    #[error("server runtime: {0}")]
    Runtime(String),
}

impl ApiError {
    pub(crate) fn invalid(
        field: &'static str,
        value: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        ApiError::Invalid {
            field,
            value: value.into(),
            reason: reason.into(),
        }
    }

    /// The whole message, with the causes of a library error.
    pub fn message(&self) -> String {
        match self {
            ApiError::Sandbox(e) => nucleus_sandbox::error::render_chain(e),
            e => e.to_string(),
        }
    }

    fn status(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::Invalid { .. } => (StatusCode::BAD_REQUEST, "invalid"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::NotRunning(_) => (StatusCode::CONFLICT, "not_running"),
            ApiError::Path { status, .. } => (*status, "path"),
            ApiError::Sandbox(e) => sandbox_status(e),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

/// Bad input is the client's fault; a missing container is 404.
fn sandbox_status(e: &SandboxError) -> (StatusCode, &'static str) {
    match e {
        SandboxError::InvalidValue { .. } => (StatusCode::BAD_REQUEST, "invalid"),
        SandboxError::Resolve { .. } => (StatusCode::NOT_FOUND, "not_found"),
        SandboxError::ClaimName { .. } => (StatusCode::CONFLICT, "name_in_use"),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "sandbox"),
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, kind) = self.status();
        let message = self.message();
        (
            status,
            axum::Json(serde_json::json!({ "error": message, "kind": kind })),
        )
            .into_response()
    }
}

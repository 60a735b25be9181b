//! Bearer tokens for the TCP listener. The unix socket needs none: its mode
//! (0600) already limits it to the owner.

use crate::error::ApiError;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::path::Path;
use std::sync::Arc;

/// Reads the token; a TCP listener without one is refused.
pub fn load_token(tcp: bool, file: Option<&Path>) -> Result<Option<Arc<str>>, ApiError> {
    let Some(file) = file else {
        return if tcp {
            Err(ApiError::TokenRequired)
        } else {
            Ok(None)
        };
    };
    let fail = |reason: String| ApiError::Token {
        path: file.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(file).map_err(|e| fail(e.to_string()))?;
    let token = text.trim();
    if token.len() < 16 {
        return Err(fail("the token must be at least 16 characters".into()));
    }
    Ok(Some(Arc::from(token)))
}

/// Compares without stopping at the first difference.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Middleware: 401 unless `Authorization: Bearer <token>` matches.
pub async fn require_token(State(token): State<Arc<str>>, req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(g) if same(g.as_bytes(), token.as_bytes()) => next.run(req).await,
        _ => (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            axum::Json(serde_json::json!({"error": "a valid bearer token is required", "kind": "unauthorized"})),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_without_a_token_is_refused() {
        assert!(matches!(
            load_token(true, None),
            Err(ApiError::TokenRequired)
        ));
        assert!(load_token(false, None).unwrap().is_none());
    }

    #[test]
    fn short_tokens_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("t");
        std::fs::write(&f, "short\n").unwrap();
        let e = load_token(true, Some(&f)).unwrap_err().to_string();
        assert!(e.contains("at least 16"), "{e}");
        std::fs::write(&f, "0123456789abcdef0123\n").unwrap();
        assert_eq!(
            &*load_token(true, Some(&f)).unwrap().unwrap(),
            "0123456789abcdef0123"
        );
    }

    #[test]
    fn comparison() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"abcd"));
    }
}

//! The HTTP front's bearer token: 32 random bytes in a 0600 file in skep's
//! state directory, created on first start and kept across restarts (so a
//! client's config stays valid), and the check every request passes first.
//! Origin, Host and body-size checks are rmcp's (http.rs configures them).

use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::observe_dir::uid;

/// Why the token file cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// Reading, creating or checking the file failed.
    #[error("cannot use the MCP token file {path}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The underlying failure.
        #[source]
        source: std::io::Error,
    },
    /// The file exists but others may read it, or it is not ours.
    #[error("the MCP token file {path} {reason}; remove it and skep makes a new one")]
    Unsafe {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// Reads the token at `path`, creating it (mode 0600) first if missing.
pub fn load_or_create_token(path: &Path) -> Result<String, TokenError> {
    let io = |source| TokenError::Io { path: path.to_path_buf(), source };
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(io)?;
    }
    match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
        Ok(mut file) => {
            let token = fresh_token().map_err(io)?;
            file.write_all(token.as_bytes()).map_err(io)?;
            return Ok(token);
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io(e)),
    }
    let meta = std::fs::symlink_metadata(path).map_err(io)?;
    let refuse = |reason: String| TokenError::Unsafe { path: path.to_path_buf(), reason };
    if !meta.is_file() {
        return Err(refuse("is not a regular file".to_owned()));
    }
    if meta.uid() != uid() {
        return Err(refuse(format!("is owned by uid {}, not by you", meta.uid())));
    }
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(refuse(format!("has mode {:o}: others may read it", meta.permissions().mode() & 0o777)));
    }
    let token = std::fs::read_to_string(path).map_err(io)?.trim().to_owned();
    if token.len() < 32 {
        return Err(refuse("holds no token".to_owned()));
    }
    Ok(token)
}

fn fresh_token() -> std::io::Result<String> {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Whether `authorization` is `Bearer <token>`, compared in constant time.
pub(crate) fn authorized(authorization: Option<&HeaderValue>, token: &str) -> bool {
    let Some(given) = authorization.and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")) else {
        return false;
    };
    given.len() == token.len() && given.bytes().zip(token.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

/// What the guard checks a request against.
#[derive(Debug, Clone)]
pub(crate) struct Guard {
    /// The bearer token.
    pub token: std::sync::Arc<str>,
    /// The largest body read.
    pub max_body: usize,
}

/// The middleware: a request without the right token gets 401 and goes no
/// further; a POST body past the limit gets 413, and one that is not JSON a
/// 400 with a JSON-RPC parse error (rmcp alone would answer it 415).
pub(crate) async fn guard(State(guard): State<Guard>, request: Request, next: Next) -> Response {
    if !authorized(request.headers().get(header::AUTHORIZATION), &guard.token) {
        let body = "missing or wrong bearer token: see `skep mcp --print-config`";
        return (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, "Bearer")], body).into_response();
    }
    if request.method() != axum::http::Method::POST {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let bytes = match http_body_util::BodyExt::collect(http_body_util::Limited::new(body, guard.max_body)).await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            let body = format!("the request body is over the limit of {} bytes ([mcp] max_body)", guard.max_body);
            return (StatusCode::PAYLOAD_TOO_LARGE, body).into_response();
        }
    };
    if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(&bytes) {
        let error = serde_json::json!({"jsonrpc": "2.0", "id": null,
            "error": {"code": skep_bridge::code::PARSE_ERROR, "message": format!("parse error: {e}")}});
        return (StatusCode::BAD_REQUEST, [(header::CONTENT_TYPE, "application/json")], error.to_string())
            .into_response();
    }
    next.run(Request::from_parts(parts, axum::body::Body::from(bytes))).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_file_is_made_0600_once_and_then_reused() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("state").join("mcp.token");
        let token = load_or_create_token(&path).unwrap();
        assert_eq!(token.len(), 64);
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(load_or_create_token(&path).unwrap(), token);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = load_or_create_token(&path).unwrap_err().to_string();
        assert!(err.contains("mode 644"), "{err}");
    }

    #[test]
    fn only_the_exact_bearer_token_passes() {
        let ok = HeaderValue::from_static("Bearer abc");
        assert!(authorized(Some(&ok), "abc"));
        for bad in ["Bearer abd", "Bearer ab", "bearer abc", "abc", "Basic abc"] {
            assert!(!authorized(Some(&HeaderValue::from_static(bad)), "abc"), "{bad}");
        }
        assert!(!authorized(None, "abc"));
    }
}

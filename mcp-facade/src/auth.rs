//! Optional bearer-token authentication for `/mcp`: the token comes from a file or the environment, never from
//! the command line (where `ps` would show it).

use std::path::Path;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The environment variable that can carry the token.
pub const TOKEN_ENV: &str = "GPUSCOPE_MCP_BEARER_TOKEN";

/// A shared secret clients present as `Authorization: Bearer <token>`.
#[derive(Clone)]
pub struct BearerToken(String);

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BearerToken(<redacted>)")
    }
}

/// Why no usable token could be read.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The token file could not be read.
    #[error("cannot read the bearer token file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The token is empty, too short or not printable.
    #[error("the bearer token from {0} is unusable: it must be at least 16 printable ASCII characters without spaces")]
    Weak(String),
}

impl BearerToken {
    /// A token from text (surrounding whitespace, e.g. a file's trailing newline, is dropped).
    pub fn new(text: &str, source: &str) -> Result<BearerToken, TokenError> {
        let token = text.trim();
        if token.len() < 16 || !token.chars().all(|c| c.is_ascii_graphic()) {
            return Err(TokenError::Weak(source.to_string()));
        }
        Ok(BearerToken(token.to_string()))
    }

    /// The token from `file` if given, else from [`TOKEN_ENV`] if set, else none.
    pub fn load(file: Option<&Path>, env: Option<String>) -> Result<Option<BearerToken>, TokenError> {
        if let Some(path) = file {
            let text = std::fs::read_to_string(path)
                .map_err(|source| TokenError::Read { path: path.display().to_string(), source })?;
            return BearerToken::new(&text, &path.display().to_string()).map(Some);
        }
        env.filter(|v| !v.is_empty()).map(|v| BearerToken::new(&v, TOKEN_ENV)).transpose()
    }

    /// Whether an `Authorization` header value presents this token. Compares in constant time, so the time taken
    /// does not reveal how much of a guess was right.
    pub fn accepts(&self, authorization: Option<&str>) -> bool {
        let Some(presented) =
            authorization.and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        else {
            return false;
        };
        let (a, b) = (presented.trim().as_bytes(), self.0.as_bytes());
        let mut diff = u8::from(a.len() != b.len());
        for (i, byte) in b.iter().enumerate() {
            diff |= byte ^ a.get(i).copied().unwrap_or(0);
        }
        diff == 0
    }
}

/// axum middleware: refuse requests that do not present the token.
pub async fn require(State(token): State<BearerToken>, request: Request, next: Next) -> Response {
    let presented = request.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    if token.accepts(presented) {
        return next.run(request).await;
    }
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer realm=\"gpuscope-mcp\"")],
        "Unauthorized: send the facade's token as `Authorization: Bearer <token>`\n",
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_only_the_exact_token() {
        let t = BearerToken::new("s3cret-token-0123456789\n", "test").expect("token");
        assert!(t.accepts(Some("Bearer s3cret-token-0123456789")));
        assert!(!t.accepts(Some("Bearer s3cret-token-012345678")));
        assert!(!t.accepts(Some("Bearer s3cret-token-01234567890")));
        assert!(!t.accepts(Some("Basic s3cret-token-0123456789")));
        assert!(!t.accepts(None));
        assert_eq!(format!("{t:?}"), "BearerToken(<redacted>)");
    }

    #[test]
    fn weak_tokens_and_missing_files_are_refused() {
        assert!(matches!(BearerToken::new("short", "x"), Err(TokenError::Weak(_))));
        assert!(matches!(BearerToken::new("has a space in it!!", "x"), Err(TokenError::Weak(_))));
        let missing = BearerToken::load(Some(Path::new("/nonexistent/token")), None).expect_err("missing file");
        assert!(missing.to_string().contains("/nonexistent/token"), "{missing}");
        assert!(BearerToken::load(None, None).expect("none").is_none());
        assert!(BearerToken::load(None, Some("0123456789abcdef".into())).expect("env").is_some());
    }
}

//! Errors as OpenAI's clients read them: `{"error": {"message", "type", "param", "code"}}`
//! with the HTTP status in `code`, one line naming the field or limit.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub param: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        let message: String = message.into();
        // One line, whatever the source.
        let message = message.lines().next().unwrap_or("").to_string();
        Self {
            status,
            message,
            param: None,
        }
    }

    /// 400 naming the request field at fault.
    pub fn field(param: &str, message: impl std::fmt::Display) -> Self {
        let mut e = Self::new(StatusCode::BAD_REQUEST, format!("{param}: {message}"));
        e.param = Some(param.to_string());
        e
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 413: a body or prompt over its limit.
    pub fn too_large(param: &str, message: impl std::fmt::Display) -> Self {
        let mut e = Self::new(StatusCode::PAYLOAD_TOO_LARGE, format!("{param}: {message}"));
        e.param = Some(param.to_string());
        e
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// The label of `/metrics`' request counter for this error.
    pub fn outcome(&self) -> &'static str {
        match self.status.as_u16() {
            429 | 503 => "rejected",
            408 | 504 => "timeout",
            400..=499 => "bad_request",
            _ => "error",
        }
    }

    fn kind(&self) -> &'static str {
        match self.status.as_u16() {
            400 | 405 | 413 => "BadRequestError",
            401 => "AuthenticationError",
            404 => "NotFoundError",
            408 | 504 => "TimeoutError",
            429 => "RateLimitError",
            503 => "ServiceUnavailableError",
            _ => "InternalServerError",
        }
    }

    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({
            "error": {
                "message": self.message,
                "type": self.kind(),
                "param": self.param,
                "code": self.status.as_u16(),
            }
        })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body())).into_response()
    }
}

impl From<ethos_model::Error> for ApiError {
    fn from(e: ethos_model::Error) -> Self {
        match e {
            ethos_model::Error::Limit(m) => ApiError::too_large("prompt", m),
            other => ApiError::bad_request(other.to_string()),
        }
    }
}

impl From<ethos_steer::Error> for ApiError {
    fn from(e: ethos_steer::Error) -> Self {
        match e {
            ethos_steer::Error::Model(m) => m.into(),
            other => ApiError::bad_request(other.to_string()),
        }
    }
}

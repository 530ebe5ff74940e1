use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// A failed request. The message is completed with the request path by the `error_body`
/// middleware into DVID's `"<message> (<path>)."` text/plain body.
#[derive(Debug)]
pub struct ApiError(pub tessera_engine::Error);

/// Marks an error response whose body `error_body` should complete.
#[derive(Clone)]
pub struct ErrorMessage(pub String);

pub type ApiResult<T> = Result<T, ApiError>;

impl From<tessera_engine::Error> for ApiError {
    fn from(e: tessera_engine::Error) -> Self {
        ApiError(e)
    }
}

impl ApiError {
    pub fn bad(msg: impl Into<String>) -> Self {
        ApiError(tessera_engine::Error::bad(msg))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.0.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status.is_server_error() {
            tracing::error!(error = %self.0, "request failed");
        }
        let mut resp = (status, self.0.to_string()).into_response();
        if let tessera_engine::Error::RangeNotSatisfiable { len } = self.0 {
            resp.headers_mut().insert(
                axum::http::header::CONTENT_RANGE,
                format!("bytes */{len}").parse().expect("valid header"),
            );
        }
        resp.extensions_mut()
            .insert(ErrorMessage(self.0.to_string()));
        resp
    }
}

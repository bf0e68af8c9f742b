//! The answers the bundle's registry gives: a body whole or streamed, and the distribution
//! API's error shape.

use bytes::Bytes;
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full};
use hyper::{Response, StatusCode};

/// A response body: whole, or a file streamed.
pub(crate) type Body = UnsyncBoxBody<Bytes, std::io::Error>;

/// A distribution error answer.
pub(crate) fn error(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    let body = serde_json::json!({"errors": [{"code": code, "message": message}]}).to_string();
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(full(body.into_bytes()))
        .unwrap_or_else(|_| internal())
}

pub(crate) fn full(bytes: Vec<u8>) -> Body {
    BodyExt::boxed_unsync(Full::new(Bytes::from(bytes)).map_err(|never| match never {}))
}

pub(crate) fn empty() -> Body {
    full(Vec::new())
}

pub(crate) fn internal() -> Response<Body> {
    let mut r = Response::new(empty());
    *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    r
}

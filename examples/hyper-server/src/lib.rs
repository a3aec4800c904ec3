//! One hyper service, served two ways with the same code: on Wave (the host's workers run
//! hyper's connections as tasks over our TCP/IP stack) and on tokio (one worker thread over
//! the kernel's TCP). HTTP/1.1 and HTTP/2 (prior knowledge, or h2c) on one port, chosen per
//! connection by `hyper_util`'s auto builder.
//!
//! The service: `GET /` (or any path) answers `hello from hyper\n`; `POST /echo` answers the
//! request's body; `GET /bytes/N` answers N bytes (at most 1 MiB).

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};

/// The largest body `/bytes/N` sends.
pub const BYTES_MAX: usize = 1 << 20;

/// The service both runtimes serve.
pub async fn handle(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let response = match (request.method(), request.uri().path()) {
        (&Method::POST, "/echo") => match request.into_body().collect().await {
            Ok(body) => Response::new(Full::new(body.to_bytes())),
            Err(_) => status(StatusCode::BAD_REQUEST),
        },
        (&Method::GET, path) if path.starts_with("/bytes/") => {
            match path["/bytes/".len()..].parse::<usize>() {
                Ok(n) if n <= BYTES_MAX => Response::new(Full::new(Bytes::from(vec![b'x'; n]))),
                _ => status(StatusCode::BAD_REQUEST),
            }
        }
        (&Method::GET | &Method::HEAD, _) => {
            Response::new(Full::new(Bytes::from_static(b"hello from hyper\n")))
        }
        _ => status(StatusCode::METHOD_NOT_ALLOWED),
    };
    Ok(response)
}

fn status(code: StatusCode) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = code;
    response
}

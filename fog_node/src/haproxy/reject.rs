//! The built-in reject listener: answers every request with `429 Too Many Requests`, the
//! target of [`ServerKind::Reject`] servers.

use super::*;

/// The body of every rejected request.
pub const REJECT_BODY: &str =
    r#"{"error":"overloaded","message":"this fog node is overloaded; retry in a second"}"#;

pub(super) fn reject_response() -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(REJECT_BODY.as_bytes())));
    *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(RETRY_AFTER, HeaderValue::from_static("1"));
    headers.insert(
        "x-fogmarket-reject-reason",
        HeaderValue::from_static("overloaded"),
    );
    headers.insert("x-fogmarket-decision", HeaderValue::from_static("rejected"));
    response
}

/// Binds 127.0.0.1:0 and answers every HTTP/1 request with [`reject_response`].
pub(super) async fn start_reject_listener() -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        // Dropping the set (when this task is aborted) aborts the connection tasks.
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        connections.spawn(async move {
                            let service = service_fn(|_req: Request<Incoming>| async {
                                Ok::<_, Infallible>(reject_response())
                            });
                            let _ = http1::Builder::new()
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        });
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "reject listener accept failed");
                        sleep(Duration::from_millis(50)).await;
                    }
                },
                Some(_) = connections.join_next() => {}
            }
        }
    });
    Ok((addr, task))
}

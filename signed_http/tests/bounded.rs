//! A peer that answers more than the caller's cap gets `TooLarge`, whether it says so in
//! `Content-Length` or streams without one; the caller never reads past the cap.

use actix_web::{App, HttpResponse, HttpServer, web};
use bytes::Bytes;
use futures::stream;
use signed_http::{Call, CallError, ClientOptions, SignedClient, Signer};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

const CAP: usize = 64 * 1024;

/// A server on port 0: `/sized/{n}` answers n bytes with `Content-Length`, `/stream/{n}`
/// streams n bytes in 8 KiB chunks without one and counts the chunks it was asked for.
async fn server(streamed: Arc<AtomicUsize>) -> (String, actix_web::dev::ServerHandle) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = HttpServer::new(move || {
        let streamed = streamed.clone();
        App::new()
            .route(
                "/sized/{n}",
                web::get().to(|n: web::Path<usize>| async move {
                    HttpResponse::Ok().body(vec![b'x'; n.into_inner()])
                }),
            )
            .route(
                "/stream/{n}",
                web::get().to(move |n: web::Path<usize>| {
                    let streamed = streamed.clone();
                    async move {
                        let chunks = n.into_inner() / 8192;
                        let body = stream::iter((0..chunks).map(move |_| {
                            streamed.fetch_add(1, Ordering::SeqCst);
                            Ok::<_, std::io::Error>(Bytes::from(vec![b'y'; 8192]))
                        }));
                        HttpResponse::Ok().streaming(body)
                    }
                }),
            )
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .unwrap()
    .run();
    let handle = server.handle();
    tokio::spawn(server);
    (url, handle)
}

fn client() -> SignedClient {
    SignedClient::new(&ClientOptions {
        max_answer: CAP,
        ..ClientOptions::default()
    })
    .unwrap()
}

#[tokio::test]
async fn an_answer_within_the_cap_is_read_whole() {
    let (url, handle) = server(Arc::default()).await;
    let body = client()
        .send(Call::get(&url, format!("/sized/{CAP}")), Signer::Anonymous)
        .await
        .unwrap();
    assert_eq!(body.len(), CAP);
    handle.stop(false).await;
}

#[tokio::test]
async fn an_oversized_answer_with_a_length_is_refused_before_reading() {
    let (url, handle) = server(Arc::default()).await;
    let err = client()
        .send(
            Call::get(&url, format!("/sized/{}", CAP + 1)),
            Signer::Anonymous,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, CallError::TooLarge { limit, .. } if limit == CAP),
        "{err}"
    );
    handle.stop(false).await;
}

#[tokio::test]
async fn an_endless_stream_is_cut_at_the_cap() {
    let streamed = Arc::new(AtomicUsize::new(0));
    let (url, handle) = server(streamed.clone()).await;
    // 64 MiB offered, 64 KiB accepted.
    let err = client()
        .send(Call::get(&url, "/stream/67108864"), Signer::Anonymous)
        .await
        .unwrap_err();
    assert!(matches!(err, CallError::TooLarge { .. }), "{err}");
    let produced = streamed.load(Ordering::SeqCst) * 8192;
    assert!(
        produced < 16 * 1024 * 1024,
        "the caller stopped reading early; the peer produced {produced} bytes"
    );
    handle.stop(false).await;
}

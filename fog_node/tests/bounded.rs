//! Bounded reads: the node's clients of an OpenFaaS gateway and of its peers' data planes read
//! an answer up to a cap and refuse the rest, without buffering it whole. The upstream is a
//! tiny HTTP server on port 0 that answers far more than the cap, with or without a
//! `Content-Length`.

use fog_node::faas::{FaasError, OpenFaasClient};
use fog_node::upstream::{UpstreamClient, UpstreamError};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// The client's cap in these tests.
const CAP: usize = 64 * 1024;
/// What the server tries to send: far beyond the cap and any socket buffers on loopback.
const OFFERED: u64 = 64 * 1024 * 1024;

/// How the oversized answer announces itself.
#[derive(Clone, Copy)]
enum Framing {
    /// `Content-Length: OFFERED`: refused from the header alone.
    Declared,
    /// Chunked, no length: refused while streaming.
    Chunked,
}

/// A server answering every request with `OFFERED` bytes of JSON-ish filler; counts what it
/// managed to write, so a test can tell the client stopped reading.
struct Flood {
    addr: SocketAddr,
    written: Arc<AtomicU64>,
}

async fn flood(framing: Framing) -> Flood {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let written = Arc::new(AtomicU64::new(0));
    let count = written.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let count = count.clone();
            tokio::spawn(async move {
                // The request head (bodies in these tests are small enough for one read).
                let mut buf = vec![0u8; 16 * 1024];
                let _ = socket.read(&mut buf).await;
                let head = match framing {
                    Framing::Declared => format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {OFFERED}\r\n\r\n"
                    ),
                    Framing::Chunked => "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n".to_string(),
                };
                if socket.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let piece = vec![b'x'; 64 * 1024];
                let mut sent = 0u64;
                while sent < OFFERED {
                    let ok = match framing {
                        Framing::Declared => socket.write_all(&piece).await.is_ok(),
                        Framing::Chunked => {
                            let size = format!("{:x}\r\n", piece.len());
                            socket.write_all(size.as_bytes()).await.is_ok()
                                && socket.write_all(&piece).await.is_ok()
                                && socket.write_all(b"\r\n").await.is_ok()
                        }
                    };
                    if !ok {
                        return;
                    }
                    sent += piece.len() as u64;
                    count.store(sent, Ordering::Relaxed);
                }
                if matches!(framing, Framing::Chunked) {
                    let _ = socket.write_all(b"0\r\n\r\n").await;
                }
            });
        }
    });
    Flood { addr, written }
}

fn gateway(addr: SocketAddr) -> OpenFaasClient {
    OpenFaasClient::new(reqwest::Client::new(), &format!("http://{addr}"), None)
        .with_timeout(Duration::from_secs(20))
        .with_max_answer(CAP)
}

fn assert_faas_too_large(result: Result<impl std::fmt::Debug, FaasError>, what: &str) {
    match result {
        Err(FaasError::TooLarge { limit, .. }) => assert_eq!(limit, CAP, "{what}"),
        other => panic!("{what}: expected TooLarge, got {other:?}"),
    }
}

/// The client stopped reading long before the server could send everything.
async fn assert_stopped_reading(server: &Flood) {
    // The server's writes fail once the client has dropped the connection.
    let until = std::time::Instant::now() + Duration::from_secs(10);
    let mut last = u64::MAX;
    loop {
        let now = server.written.load(Ordering::Relaxed);
        if now == last {
            break;
        }
        assert!(
            std::time::Instant::now() < until,
            "the server kept writing ({now} bytes)"
        );
        last = now;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        last < OFFERED,
        "the client read all {OFFERED} bytes of an answer capped at {CAP}"
    );
}

#[tokio::test]
async fn an_openfaas_answer_declared_larger_than_the_cap_is_refused() {
    let server = flood(Framing::Declared).await;
    let client = gateway(server.addr);
    assert_faas_too_large(client.status("echo").await, "status");
    assert_faas_too_large(client.list().await, "list");
    let invoked = client
        .invoke("echo", "", reqwest::Method::POST, b"hi".to_vec())
        .await;
    assert_faas_too_large(invoked.map(|i| i.status), "invoke");
    assert_stopped_reading(&server).await;
}

#[tokio::test]
async fn an_openfaas_answer_streamed_past_the_cap_is_refused_without_reading_it_all() {
    let server = flood(Framing::Chunked).await;
    let client = gateway(server.addr);
    let err = client
        .status("echo")
        .await
        .expect_err("an oversized status is an error");
    assert!(
        err.to_string()
            .contains(&format!("answer larger than {CAP} bytes")),
        "{err}"
    );
    assert_faas_too_large(
        client
            .invoke("echo", "", reqwest::Method::POST, b"hi".to_vec())
            .await
            .map(|i| i.status),
        "invoke",
    );
    assert_stopped_reading(&server).await;
}

#[tokio::test]
async fn a_data_plane_answer_larger_than_the_cap_is_refused_either_way() {
    for framing in [Framing::Declared, Framing::Chunked] {
        let server = flood(framing).await;
        let client = UpstreamClient::new(None, CAP).expect("client");
        let result = client
            .send(
                http::Method::POST,
                &format!("http://{}/function/echo", server.addr),
                http::HeaderMap::new(),
                bytes::Bytes::from_static(b"hi"),
                Duration::from_secs(20),
            )
            .await;
        match result {
            Err(UpstreamError::TooLarge { limit, .. }) => assert_eq!(limit, CAP),
            other => panic!("expected TooLarge, got {other:?}"),
        }
        assert_stopped_reading(&server).await;
    }
}

#[tokio::test]
async fn an_answer_within_the_cap_is_read_whole() {
    // The same server shape, but a cap above what it sends: the answer arrives intact.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                let _ = socket.read(&mut buf).await;
                let body = r#"{"name":"echo","image":"x/echo","availableReplicas":1}"#;
                let _ = socket
                    .write_all(
                        format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                            body.len()
                        )
                        .as_bytes(),
                    )
                    .await;
            });
        }
    });
    let status = gateway(addr)
        .status("echo")
        .await
        .expect("a small answer is read")
        .expect("the function exists");
    assert_eq!(status.available_replicas, 1);
}

//! The server in-process: health routes, pass-through of method/path/query/headers/body, body
//! limit, panic isolation and graceful shutdown.

use std::time::Duration;

use fn_common::testing::send;
use fn_common::{Config, Handler, Request, Response, Server, StatusCode};

fn echo_details(req: Request) -> Response {
    if req.path == "/panic" {
        panic!("handler asked to panic");
    }
    let header = req.header("x-test").unwrap_or("-").to_owned();
    Response::text(
        StatusCode::ACCEPTED,
        format!(
            "{} {} {} {} {}",
            req.method,
            req.path,
            req.query,
            header,
            String::from_utf8_lossy(&req.body)
        ),
    )
}

/// Runs a server with `handler` on a background thread; returns its address and a stop sender.
fn spawn(
    handler: Handler,
    max_body_bytes: usize,
) -> (
    std::net::SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    std::thread::JoinHandle<()>,
) {
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let config = Config {
                port: 0,
                max_body_bytes,
                ..Config::default()
            };
            let server = Server::bind(&config, handler).await.unwrap();
            addr_tx.send(server.local_addr()).unwrap();
            server
                .run_until(async {
                    let _ = stop_rx.await;
                })
                .await
                .unwrap();
        });
    });
    let addr = addr_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    (addr, stop_tx, thread)
}

#[test]
fn health_and_ready_answer_ok_without_calling_the_handler() {
    let (addr, stop, thread) = spawn(
        Handler::blocking(|_| panic!("handler must not be called")),
        1024,
    );
    for path in ["/_/health", "/_/ready"] {
        let resp = send(addr, "GET", path, &[], b"");
        assert_eq!(resp.status, 200, "{path}");
        assert_eq!(resp.text(), "OK");
    }
    stop.send(()).unwrap();
    thread.join().unwrap();
}

#[test]
fn other_requests_reach_the_handler_with_method_path_query_headers_and_body() {
    let (addr, stop, thread) = spawn(Handler::blocking(echo_details), 1024);
    let resp = send(
        addr,
        "PUT",
        "/sub/path?a=1&b=two",
        &[("X-Test", "yes")],
        b"payload",
    );
    assert_eq!(resp.status, 202);
    assert_eq!(resp.text(), "PUT /sub/path a=1&b=two yes payload");
    stop.send(()).unwrap();
    thread.join().unwrap();
}

#[test]
fn bodies_over_the_limit_answer_413() {
    let (addr, stop, thread) = spawn(Handler::blocking(echo_details), 16);
    let resp = send(addr, "POST", "/", &[], &[b'x'; 17]);
    assert_eq!(resp.status, 413);
    let resp = send(addr, "POST", "/", &[], &[b'x'; 16]);
    assert_eq!(resp.status, 202);
    stop.send(()).unwrap();
    thread.join().unwrap();
}

#[test]
fn a_panicking_handler_answers_500_and_the_server_keeps_serving() {
    for handler in [
        Handler::blocking(echo_details),
        Handler::from_async(|req| async move { echo_details(req) }),
    ] {
        let (addr, stop, thread) = spawn(handler, 1024);
        let resp = send(addr, "GET", "/panic", &[], b"");
        assert_eq!(resp.status, 500);
        assert!(resp.text().contains("panicked"), "{}", resp.text());
        let resp = send(addr, "GET", "/fine", &[], b"");
        assert_eq!(resp.status, 202);
        stop.send(()).unwrap();
        thread.join().unwrap();
    }
}

#[test]
fn shutdown_lets_an_in_flight_request_finish() {
    let (started_tx, started_rx) = std::sync::mpsc::channel::<()>();
    let started_tx = std::sync::Mutex::new(started_tx);
    let handler = Handler::from_async(move |_req| {
        let _ = started_tx.lock().unwrap().send(());
        async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            Response::text(StatusCode::OK, "done")
        }
    });
    let (addr, stop, thread) = spawn(handler, 1024);
    let client = std::thread::spawn(move || send(addr, "GET", "/", &[], b""));
    started_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    stop.send(()).unwrap();
    let resp = client.join().unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.text(), "done");
    thread.join().unwrap();
}

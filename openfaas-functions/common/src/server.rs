//! The HTTP server: configuration from the environment, binding, the accept loop, health routes,
//! body limits, panic isolation and graceful shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http::{Method, StatusCode, header};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tracing::Instrument;

use crate::message::{Request, Response};

/// The port OpenFaaS functions listen on when `$PORT` is unset.
pub const DEFAULT_PORT: u16 = 8080;
/// Largest request body a function accepts; larger bodies answer 413.
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
/// How long in-flight requests may run after SIGTERM before the process exits anyway.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Where and how to listen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `$BIND_ADDR`, default `127.0.0.1` (containers set `0.0.0.0`).
    pub bind: IpAddr,
    /// `$PORT`, default 8080; 0 picks a free port.
    pub port: u16,
    /// Request bodies above this answer 413.
    pub max_body_bytes: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: DEFAULT_PORT,
            max_body_bytes: MAX_BODY_BYTES,
        }
    }
}

impl Config {
    /// Reads `PORT` and `BIND_ADDR` from the process environment.
    pub fn from_env() -> anyhow::Result<Self> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads `PORT` and `BIND_ADDR` through `lookup` (empty values count as unset).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let mut config = Self::default();
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        if let Some(port) = get("PORT") {
            config.port = port.trim().parse().with_context(|| {
                format!("invalid PORT {port:?}: expected a port number 0-65535")
            })?;
        }
        if let Some(bind) = get("BIND_ADDR") {
            config.bind = bind.trim().parse().with_context(|| {
                format!("invalid BIND_ADDR {bind:?}: expected an IP address such as 0.0.0.0")
            })?;
        }
        Ok(config)
    }
}

type BoxFuture = Pin<Box<dyn Future<Output = Response> + Send>>;

/// A function's request handler, shared by all connections.
#[derive(Clone)]
pub struct Handler(Arc<dyn Fn(Request) -> BoxFuture + Send + Sync>);

impl Handler {
    /// A synchronous handler, run on tokio's blocking pool so it may burn CPU or block without
    /// stalling other requests; a panic answers 500.
    pub fn blocking<H>(handler: H) -> Self
    where
        H: Fn(Request) -> Response + Send + Sync + 'static,
    {
        let handler = Arc::new(handler);
        Self(Arc::new(move |req| {
            let handler = handler.clone();
            // The invocation's span, also on the blocking thread.
            let span = tracing::Span::current();
            Box::pin(async move {
                match tokio::task::spawn_blocking(move || span.in_scope(|| handler(req))).await {
                    Ok(resp) => resp,
                    Err(e) => handler_failed(e),
                }
            })
        }))
    }

    /// An asynchronous handler, run as a task (for functions that mostly wait); it must not
    /// block. A panic answers 500.
    pub fn from_async<H, F>(handler: H) -> Self
    where
        H: Fn(Request) -> F + Send + Sync + 'static,
        F: Future<Output = Response> + Send + 'static,
    {
        Self(Arc::new(move |req| {
            let task = tokio::spawn(handler(req).in_current_span());
            Box::pin(async move {
                match task.await {
                    Ok(resp) => resp,
                    Err(e) => handler_failed(e),
                }
            })
        }))
    }

    /// Runs the handler on `req`.
    pub async fn call(&self, req: Request) -> Response {
        (self.0)(req).await
    }
}

fn handler_failed(e: tokio::task::JoinError) -> Response {
    let what = if e.is_panic() {
        "the function panicked"
    } else {
        "the function was cancelled"
    };
    eprintln!("request failed: {what}");
    Response::text(StatusCode::INTERNAL_SERVER_ERROR, format!("{what}\n"))
}

/// Serves `handler` (run on the blocking pool) with the configuration from the environment
/// until SIGTERM or SIGINT. This is what a function's `main` calls.
pub fn run<H>(handler: H) -> anyhow::Result<()>
where
    H: Fn(Request) -> Response + Send + Sync + 'static,
{
    serve(Handler::blocking(handler))
}

/// Like [`run`] for an async handler.
pub fn run_async<H, F>(handler: H) -> anyhow::Result<()>
where
    H: Fn(Request) -> F + Send + Sync + 'static,
    F: Future<Output = Response> + Send + 'static,
{
    serve(Handler::from_async(handler))
}

fn serve(handler: Handler) -> anyhow::Result<()> {
    let config = Config::from_env()?;
    // Logs on stderr, spans over OTLP when configured; dropped after the runtime (declared
    // before it), which sends the spans of the last requests.
    let _telemetry = match telemetry::init(function_name()) {
        Ok(guard) => guard,
        // The function installed its own subscriber: keep it, without the export.
        Err(telemetry::InitError::AlreadyInstalled) => telemetry::Guard::disabled(),
        Err(e) => return Err(e.into()),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let result = runtime.block_on(async {
        // Install the signal handlers before announcing the port, so a launcher that sends
        // SIGTERM right after reading the line never kills us with the default action.
        let shutdown = shutdown_signal()?;
        let server = Server::bind(&config, handler).await?;
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "listening on http://{}", server.local_addr())
            .and_then(|()| stdout.flush())
            .context("writing the listening line to stdout")?;
        drop(stdout);
        server.run_until(shutdown).await
    });
    // Blocking handlers still running after the drain timeout are abandoned.
    runtime.shutdown_timeout(Duration::from_secs(1));
    result
}

fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => eprintln!("SIGTERM received, shutting down"),
            _ = int.recv() => eprintln!("SIGINT received, shutting down"),
        }
    })
}

/// A bound server; [`Server::run_until`] serves until the shutdown future completes.
pub struct Server {
    listener: TcpListener,
    local_addr: SocketAddr,
    handler: Handler,
    max_body_bytes: usize,
}

impl Server {
    /// Binds `config.bind:config.port` (port 0 picks a free port).
    pub async fn bind(config: &Config, handler: Handler) -> anyhow::Result<Self> {
        let addr = SocketAddr::new(config.bind, config.port);
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {addr}"))?;
        let local_addr = listener.local_addr().context("reading the bound address")?;
        Ok(Self {
            listener,
            local_addr,
            handler,
            max_body_bytes: config.max_body_bytes,
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Accepts connections until `shutdown` completes, then stops accepting and waits (up to
    /// 10 s) for in-flight requests.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let graceful = GracefulShutdown::new();
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let (stream, _peer) = tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Typically EMFILE; back off instead of spinning.
                        eprintln!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            let _ = stream.set_nodelay(true);
            let handler = self.handler.clone();
            let max_body_bytes = self.max_body_bytes;
            let service = service_fn(move |req| {
                let handler = handler.clone();
                async move { Ok::<_, Infallible>(dispatch(req, &handler, max_body_bytes).await) }
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .serve_connection(TokioIo::new(stream), service);
            let conn = graceful.watch(conn);
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    eprintln!("connection error: {e}");
                }
            });
        }
        drop(self.listener);
        tokio::select! {
            () = graceful.shutdown() => {}
            () = tokio::time::sleep(DRAIN_TIMEOUT) => {
                eprintln!("in-flight requests still running after {DRAIN_TIMEOUT:?}; exiting");
            }
        }
        Ok(())
    }
}

/// The executable's name (`fn-echo`), naming the function in its spans.
fn function_name() -> &'static str {
    static NAME: OnceLock<String> = OnceLock::new();
    NAME.get_or_init(|| {
        std::env::current_exe()
            .ok()
            .or_else(|| std::env::args_os().next().map(Into::into))
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "function".to_string())
    })
}

/// The invocation's server span, child of the caller's `traceparent` (none when tracing is off).
fn invocation_span(req: &hyper::Request<Incoming>) -> tracing::Span {
    if !tracing::enabled!(target: telemetry::TRACE_TARGET, tracing::Level::INFO) {
        return tracing::Span::none();
    }
    let method = req.method().as_str();
    telemetry::server_span(
        "function",
        &format!("{method} {}", function_name()),
        method,
        None,
        telemetry::extract(req.headers()),
    )
}

async fn dispatch(
    req: hyper::Request<Incoming>,
    handler: &Handler,
    max_body_bytes: usize,
) -> hyper::Response<Full<Bytes>> {
    let is_probe = matches!(*req.method(), Method::GET | Method::HEAD)
        && matches!(req.uri().path(), "/_/health" | "/_/ready");
    let resp = if is_probe {
        Response::text(StatusCode::OK, "OK")
    } else {
        let span = invocation_span(&req);
        let resp = async {
            match read_request(req, max_body_bytes).await {
                Ok(req) => handler.call(req).await,
                Err(resp) => resp,
            }
        }
        .instrument(span.clone())
        .await;
        telemetry::record_status(&span, resp.status.as_u16());
        resp
    };
    let mut out = hyper::Response::new(Full::new(resp.body));
    *out.status_mut() = resp.status;
    *out.headers_mut() = resp.headers;
    out
}

async fn read_request(
    req: hyper::Request<Incoming>,
    max_body_bytes: usize,
) -> Result<Request, Response> {
    let too_large = || {
        Response::text(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body larger than {max_body_bytes} bytes\n"),
        )
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > max_body_bytes as u64) {
        return Err(too_large());
    }
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, max_body_bytes).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => return Err(too_large()),
        Err(e) => {
            return Err(Response::text(
                StatusCode::BAD_REQUEST,
                format!("reading the request body: {e}\n"),
            ));
        }
    };
    Ok(Request {
        method: parts.method,
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().unwrap_or_default().to_owned(),
        headers: parts.headers,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_to_localhost_8080() {
        let config = Config::from_lookup(|_| None).unwrap();
        assert_eq!(config, Config::default());
        assert_eq!(config.bind, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(config.port, 8080);
    }

    #[test]
    fn config_reads_port_and_bind_addr() {
        let config = Config::from_lookup(|name| match name {
            "PORT" => Some("0".into()),
            "BIND_ADDR" => Some("0.0.0.0".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(config.port, 0);
        assert_eq!(config.bind, IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    }

    #[test]
    fn config_errors_name_the_variable() {
        let err = Config::from_lookup(|name| (name == "PORT").then(|| "80x".into())).unwrap_err();
        assert!(err.to_string().contains("PORT"), "{err}");
        let err = Config::from_lookup(|name| (name == "BIND_ADDR").then(|| "localhost".into()))
            .unwrap_err();
        assert!(err.to_string().contains("BIND_ADDR"), "{err}");
    }
}

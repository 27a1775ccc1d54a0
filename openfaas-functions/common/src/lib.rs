//! `fn_common`: the OpenFaaS workload contract shared by every Fogmarket function.
//!
//! A function is a long-lived HTTP server, as of-watchdog's `mode=http` expects, so the same
//! binary runs unchanged behind a real OpenFaaS watchdog and under Fogmarket's embedded gateway
//! (`faas_gateway/`), which starts it as a local process:
//!
//! - it listens on `$PORT` (default 8080; `0` picks a free port) at `$BIND_ADDR`
//!   (default `127.0.0.1`; the Dockerfiles set `0.0.0.0`);
//! - once bound it prints exactly one line, `listening on http://IP:PORT`, to stdout (logs go to
//!   stderr), so a launcher can use `PORT=0` and learn the port;
//! - `GET /_/health` and `GET /_/ready` answer 200 `OK`;
//! - every other request (any method, path, query, headers, body up to 16 MiB, 413 beyond) goes to
//!   the function's handler, a plain `Fn(Request) -> Response`;
//! - a panicking handler answers 500 and the process keeps serving;
//! - SIGTERM or SIGINT stops accepting, lets in-flight requests finish (up to 10 s) and exits 0;
//! - with `OTEL_EXPORTER_OTLP_ENDPOINT` set (the gateway passes it on), every invocation is a
//!   server span named `METHOD <executable name>` (e.g. `POST fn-echo`), child of the
//!   `traceparent` the gateway sent, exported over OTLP (see the `telemetry` crate); the
//!   remaining spans are sent on SIGTERM/SIGINT.
//!
//! The runtime is a tokio current-thread runtime (small idle footprint, benchmarked per replica);
//! handlers given to [`run`] run on tokio's blocking pool so CPU-heavy functions never stall the
//! accept loop, handlers given to [`run_async`] run as tasks (for functions that mostly wait).
//!
//! A function's `main` is one line: `fn main() -> anyhow::Result<()> { fn_common::run(handle) }`.

mod message;
mod server;
pub mod testing;

pub use message::{FnError, Request, Response};
pub use server::{Config, DEFAULT_PORT, Handler, MAX_BODY_BYTES, Server, run, run_async};

/// Re-exported so functions and their tests name the same `http` types as this crate.
pub use bytes::Bytes;
pub use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};

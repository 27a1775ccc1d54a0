//! HAProxy as a fog node's data plane.
//!
//! This module owns one HAProxy master-worker process (`haproxy -W -db -S <master.sock> -f
//! <haproxy.cfg>`) and everything that process needs: its generated configuration, its
//! master CLI socket, its admin ("stats") socket and its stderr log, all inside
//! [`HaproxySettings::work_dir`]; plus a tiny built-in HTTP/1 *reject listener* that answers
//! every request with `429 Too Many Requests` (the target of [`ServerKind::Reject`] servers).
//!
//! The node's control loop computes per-function weights (local gateway / each peer / reject,
//! per mille) every 250 ms and hands them to [`Haproxy::apply`]:
//!
//! * when only weights changed, `apply` sends `set weight <backend>/<server> <w>` for the
//!   servers whose weight changed, batched over one admin-socket connection (commands separated
//!   by `;`). No reload, no lost request, counters and the worker PID are kept.
//! * when the *structure* changed (functions, aliases, servers' names or addresses, request
//!   headers), `apply` renders a new configuration, validates it with `haproxy -c`, and asks the
//!   master to `reload`. The admin socket has `expose-fd listeners`, so the new worker inherits
//!   the listening sockets (master-worker passes `-x sockpair@…`): no connection is refused.
//!   `option idle-close-on-response` makes the old worker answer one more request on each idle
//!   keep-alive connection (with `Connection: close`) instead of closing it under the client's
//!   feet. `apply` returns once the new worker answers on the admin socket and the old one
//!   reports `Stopping: 1`, so connections opened afterwards see the new configuration; a
//!   client's *already open, idle* keep-alive connection still gets one last answer from the
//!   old configuration. A `reload` the master did not act on (refused connection, no
//!   re-execution within 3 s) is sent again; success is read from `show proc`'s reload count.
//!
//! Weight semantics: HAProxy weights are `0..=256`; per mille maps proportionally
//! ([`haproxy_weight`]), a positive per mille never maps to 0, and 0 means "no traffic". The
//! backends use `balance random(1)`: plain weighted random over HAProxy's consistent-hash tree,
//! where `set weight` takes effect on the very next request. `roundrobin` is *not* used on
//! purpose: measured with HAProxy 2.6, after weights went 256/0 → 26/230 (a server coming back
//! from 0) the other server got 0 of the next 2000 requests instead of ~10 % (the
//! "re-integration" caveat in the `roundrobin` docs), which our 250 ms weight flips would hit
//! constantly. Plain `random` means `random(2)`, "power of two choices", which bends the
//! weights towards the least loaded server — not wanted either. When every server of a backend
//! has weight 0, HAProxy answers 503.
//!
//! Every request of a function backend gets the backend's `peer_headers` (HAProxy picks the
//! server after the `http-request` rules run, so these cannot depend on the chosen server);
//! a per-server value travels as the server's name (`server_name_header`).
//! A connection failure is retried once on another server (`retries 1` + `option redispatch`).

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr, TcpListener as StdTcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UnixStream};
use tokio::process::{Child, Command};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{Instant, sleep, timeout};

mod cli;
mod desired;
mod process;
mod reject;
mod render;

#[allow(unused_imports)]
use self::{cli::*, desired::*, process::*, reject::*, render::*};
pub use cli::{ServerState, parse_servers_state};
pub use desired::{
    ApplyOutcome, BACKEND_PREFIX, Desired, FRONTEND_NAME, FunctionBackend, HaproxyError,
    HaproxySettings, MAX_HAPROXY_WEIGHT, NOT_FOUND_BACKEND, PER_MILLE, ServerKind, ServerSpec,
    backend_name, free_port, haproxy_weight,
};
pub use process::Haproxy;
pub use reject::REJECT_BODY;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_mille_maps_proportionally_and_positive_stays_positive() {
        assert_eq!(haproxy_weight(0), 0);
        assert_eq!(haproxy_weight(1), 1);
        assert_eq!(haproxy_weight(2), 1);
        assert_eq!(haproxy_weight(500), 128);
        assert_eq!(haproxy_weight(100), 26);
        assert_eq!(haproxy_weight(1000), 256);
        assert_eq!(haproxy_weight(5000), 256);
        assert_eq!(haproxy_weight(u32::MAX), 256);
    }

    #[test]
    fn show_proc_is_parsed() {
        let text = "#<PID>          <type>          <reloads>       <uptime>        <version>      \n\
                    7883            master          1 [failed: 2]   0d00h10m20s     2.6.12\n\
                    # workers\n\
                    29318           worker          0               0d00h00m01s     2.6.12\n\
                    # old workers\n\
                    7886            worker          1               0d00h10m20s     2.6.12\n\
                    # programs\n\n";
        assert_eq!(
            parse_show_proc(text),
            Some(MasterProcs {
                reloads: 1,
                failed: 2,
                workers: vec![29318]
            })
        );
        assert_eq!(parse_show_proc("Unknown command\n"), None);
    }

    #[test]
    fn header_values_are_escaped_for_haproxy() {
        assert_eq!(escape_log_format(r#"a%b"c\d$e"#), r#"a%%b\"c\\d\$e"#);
    }

    #[test]
    fn names_are_validated() {
        assert!(validate_name("x", "fogfn-3f2a.v1_x").is_ok());
        for bad in ["", "a b", "a/b", "..", "é", "a\nb", "a#b"] {
            assert!(validate_name("x", bad).is_err(), "{bad:?}");
        }
    }
}

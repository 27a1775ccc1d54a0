//! `faas-gateway --listen ADDR [--catalog DIR] [--basic-auth user:password] [--run-as USER]
//! [--limits auto|rlimit] [--tls-cert PEM --tls-key PEM]`: the embedded OpenFaaS-compatible
//! gateway as a process. Prints `listening on http://IP:PORT` (`https://` with TLS) once bound.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use faas_gateway::{Gateway, GatewaySettings, LimitMode, default_catalog_dir};

/// mimalloc: every request makes many small, short-lived allocations (headers, JSON, spans),
/// which cost glibc's allocator about a tenth of the federation's CPU under load
/// (`docs/performance.md`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(about = "Embedded OpenFaaS-compatible gateway running functions as local processes")]
struct Args {
    #[arg(long, env = "FAAS_GATEWAY_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Directory of `fn-<name>` executables (default: next to this binary).
    #[arg(long, env = "FAAS_GATEWAY_CATALOG")]
    catalog: Option<PathBuf>,
    /// `user:password` required on /system/* routes.
    #[arg(long, env = "FAAS_GATEWAY_BASIC_AUTH")]
    basic_auth: Option<String>,
    /// Unprivileged user (name or uid) function processes run as when the gateway is root.
    #[arg(long, env = "FAAS_GATEWAY_RUN_AS", default_value = "nobody")]
    run_as: String,
    /// `auto`: cgroup v2 when available, else rlimits; `rlimit`: rlimits only.
    #[arg(long, env = "FAAS_GATEWAY_LIMITS", default_value = "auto", value_parser = ["auto", "rlimit"])]
    limits: String,
    /// Certificate chain (PEM) to serve HTTPS with; goes with `--tls-key`.
    #[arg(long, env = "FAAS_GATEWAY_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// Private key (PEM) of `--tls-cert`.
    #[arg(long, env = "FAAS_GATEWAY_TLS_KEY")]
    tls_key: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Logs, and spans over OTLP when OTEL_EXPORTER_OTLP_ENDPOINT is set; dropped at the end of
    // `main` (after SIGTERM/Ctrl-C stopped the server), which sends the remaining spans.
    let _telemetry = telemetry::init("faas-gateway")?;
    let args = Args::parse();
    let mut settings = GatewaySettings::new(
        args.listen,
        args.catalog.unwrap_or_else(default_catalog_dir),
    );
    settings.isolation.run_as = Some(args.run_as);
    settings.tls = signed_http::tls::TlsFiles {
        cert: args.tls_cert,
        key: args.tls_key,
        ca: None,
    };
    settings.isolation.limits = match args.limits.as_str() {
        "rlimit" => LimitMode::Rlimit,
        _ => LimitMode::Auto,
    };
    if let Some(auth) = args.basic_auth {
        let (user, password) = auth
            .split_once(':')
            .ok_or_else(|| anyhow::anyhow!("--basic-auth must be user:password"))?;
        settings.basic_auth = Some((user.to_string(), password.to_string()));
    }
    let gateway = Gateway::build(settings).await?;
    println!("listening on {}", gateway.url());
    gateway.run_until_stopped(shutdown_signal()).await
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

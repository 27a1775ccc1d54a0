use clap::Parser;
use fog_node::{Application, Config};
use std::io::Write;
use std::path::PathBuf;

/// mimalloc: every request makes many small, short-lived allocations (headers, JSON, spans),
/// which cost glibc's allocator about a tenth of the federation's CPU under load
/// (`docs/performance.md`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A Fogmarket fog node.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// Node configuration (TOML); fields can be overridden by FOG_NODE_<FIELD> env vars.
    #[arg(long, env = "FOG_NODE_CONFIG")]
    config: PathBuf,
}

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    // Logs, and spans over OTLP when OTEL_EXPORTER_OTLP_ENDPOINT is set (the embedded gateway's
    // too); dropped at the end of `main`, after SIGTERM/Ctrl-C stopped the node, which sends
    // the remaining spans.
    let _telemetry = telemetry::init_with(
        "fog-node",
        &telemetry::Options {
            default_log_filter: "info,actix_server=warn".to_string(),
        },
    )?;
    let args = Args::parse();
    let config = Config::load(&args.config)?;
    let app = Application::build(config)?;
    println!("listening on {}", app.url());
    std::io::stdout().flush()?;
    let shutdown = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler can be installed");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    };
    app.run_until_stopped(shutdown).await
}

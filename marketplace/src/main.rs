//! `marketplace` binary: flags (and env vars) -> [`marketplace::Settings`] -> run.

use clap::Parser;
use marketplace::settings::DEV_ENROLLMENT_SECRET;
use marketplace::{Application, Settings};
use model::auction::AuctionRule;
use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

/// Fogmarket marketplace: runs reverse auctions over a federation of fog nodes.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Address to listen on (port 0 picks a free port; the bound one is printed on stdout).
    #[arg(long, env = "FOGMARKET_LISTEN", default_value = "127.0.0.1:8000")]
    listen: SocketAddr,
    /// sqlite://FILE?mode=rwc or postgres://…
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite://fogmarket.db?mode=rwc"
    )]
    database_url: String,
    /// Secret fog nodes sign their enrollment with. Required unless --dev.
    #[arg(long, env = "FOGMARKET_ENROLLMENT_SECRET", hide_env_values = true)]
    enrollment_secret: Option<String>,
    /// Development mode: allows the well-known enrollment secret `dev-secret`.
    #[arg(long, env = "FOGMARKET_DEV")]
    dev: bool,
    /// vickrey | first_price | random
    #[arg(long, env = "FOGMARKET_AUCTION_RULE", default_value = "vickrey")]
    auction_rule: AuctionRule,
    /// Auction deadline in milliseconds.
    #[arg(long, env = "FOGMARKET_AUCTION_TIMEOUT_MS", default_value_t = 2000,
          value_parser = clap::value_parser!(u64).range(1..=600_000))]
    auction_timeout_ms: u64,
    /// Heartbeat interval handed to nodes; 3 missed heartbeats mark a node dead.
    #[arg(long, env = "FOGMARKET_HEARTBEAT_INTERVAL_MS", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(10..=3_600_000))]
    heartbeat_interval_ms: u64,
    /// Hours an SLA that is over (finished, cancelled, failed or never placed) is kept with its
    /// auction and bids before it is deleted.
    #[arg(long, env = "FOGMARKET_HISTORY_RETENTION_HOURS", default_value_t = 168,
          value_parser = clap::value_parser!(u64).range(1..=87_600))]
    history_retention_hours: u64,
}

fn main() -> std::process::ExitCode {
    // Logs, and spans over OTLP when OTEL_EXPORTER_OTLP_ENDPOINT is set. Dropped last (after
    // the server stopped, SIGTERM/SIGINT included): that sends the remaining spans.
    let _telemetry = match telemetry::init("marketplace") {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let secret = match (cli.enrollment_secret, cli.dev) {
        (Some(s), _) if !s.is_empty() => s,
        (_, true) => {
            tracing::warn!(
                "DEVELOPMENT MODE: enrollment secret is the well-known `{DEV_ENROLLMENT_SECRET}`; \
                 anyone can join this federation. Never use --dev outside a laptop."
            );
            DEV_ENROLLMENT_SECRET.to_string()
        }
        _ => anyhow::bail!(
            "--enrollment-secret (or FOGMARKET_ENROLLMENT_SECRET) is required; use --dev for the development secret"
        ),
    };
    let settings = Settings {
        listen: cli.listen,
        auction_rule: cli.auction_rule,
        auction_timeout: Duration::from_millis(cli.auction_timeout_ms),
        heartbeat_interval: Duration::from_millis(cli.heartbeat_interval_ms),
        history_retention: Duration::from_secs(cli.history_retention_hours * 3600),
        ..Settings::new(cli.database_url, secret)
    };
    let app = Application::build(settings).await?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on http://{}", app.address())?;
        out.flush()?;
    }
    app.run_until_stopped().await
}

//! `iot-emulation` binary: `run` a scenario, `serve` GIRAFF's cron API, or re-render a `report`.

use clap::{Parser, Subcommand};
use iot_emulation::cron::{CronServer, CronSettings};
use iot_emulation::dispatch::DispatchOptions;
use iot_emulation::run::{RunOptions, render_report, run, write_cron_records};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Fogmarket IoT emulator: places functions through the marketplace and sends open-loop
/// requests to the access nodes, then reports SLA, latency, spending and earnings.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

fn duration(s: &str) -> Result<Duration, String> {
    model::units::parse_duration(s).map_err(|e| e.to_string())
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a scenario file against a marketplace.
    Run {
        /// The scenario (TOML; see iot_emulation/README.md).
        #[arg(long)]
        scenario: PathBuf,
        /// Marketplace URL (overrides the scenario's `marketplace_url`).
        #[arg(long)]
        marketplace: Option<String>,
        /// Output directory (default target/iot-emulation/<name>-<unix seconds>).
        #[arg(long)]
        out: Option<PathBuf>,
        /// How long to send requests, e.g. "30 s" (overrides the scenario).
        #[arg(long, value_parser = duration)]
        duration: Option<Duration>,
        /// Random seed (overrides the scenario).
        #[arg(long)]
        seed: Option<u64>,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
        /// PEM file of the CA to trust for https:// marketplaces and nodes (a federation
        /// started with `testbed run --tls`: its run directory's `tls/ca.pem`).
        #[arg(long, env = "FOGMARKET_TLS_CA")]
        tls_ca: Option<PathBuf>,
        /// Client API token, for a marketplace that requires one (`marketplace token
        /// create`); sent to the marketplace only.
        #[arg(long, env = "FOGMARKET_TOKEN", hide_env_values = true)]
        token: Option<String>,
    },
    /// Serve GIRAFF's `PUT /api/cron` (and `GET /api/records`).
    Serve {
        /// Address to listen on (port 0 picks one; the bound one is printed on stdout).
        #[arg(long, default_value = "127.0.0.1:3003")]
        listen: SocketAddr,
        /// Where to write the records, report and plots when stopped (Ctrl-C).
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Requests waiting for an answer at once, over all jobs of one kind.
        #[arg(long, default_value_t = 1024)]
        max_in_flight: usize,
        #[arg(long, value_parser = duration, default_value = "30 s")]
        request_timeout: Duration,
        /// PEM file of the CA to trust for https:// access nodes.
        #[arg(long, env = "FOGMARKET_TLS_CA")]
        tls_ca: Option<PathBuf>,
    },
    /// Re-render report.json, report.md and the plots from a records CSV (and the
    /// placements.json beside it, if any).
    Report {
        #[arg(long)]
        records: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
}

fn main() -> std::process::ExitCode {
    // Logs on stderr, and spans over OTLP when OTEL_EXPORTER_OTLP_ENDPOINT is set. Dropped last
    // (after the runtime): that sends the remaining spans.
    let _telemetry = match telemetry::init_with(
        "iot-emulation",
        &telemetry::Options {
            default_log_filter: "warn,iot_emulation=info".to_string(),
        },
    ) {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(execute(cli.command)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn execute(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Run {
            scenario,
            marketplace,
            out,
            duration,
            seed,
            quiet,
            tls_ca,
            token,
        } => {
            let outcome = run(RunOptions {
                scenario,
                marketplace_url: marketplace,
                out,
                duration,
                seed,
                progress: !quiet,
                tls_ca,
                token,
            })
            .await?;
            let r = &outcome.report;
            println!(
                "{} requests: SLA respected {:.1} %, success {:.1} %, spending {:.4}, Jain's index of earnings {}",
                outcome.requests,
                r.overall.sla_met_ratio * 100.0,
                r.overall.success_ratio * 100.0,
                r.spending_total,
                r.earnings_jain
                    .map_or("undefined".into(), |j| format!("{j:.3}"))
            );
            println!("report: {}", outcome.out_dir.join("report.md").display());
            Ok(())
        }
        Command::Serve {
            listen,
            out,
            seed,
            max_in_flight,
            request_timeout,
            tls_ca,
        } => {
            let client = iot_emulation::dispatch::device_client_trusting(tls_ca.as_deref())?;
            let server = CronServer::build_with_client(
                listen,
                CronSettings {
                    seed,
                    dispatch: DispatchOptions {
                        max_in_flight,
                        request_timeout,
                    },
                },
                client,
            )?;
            println!("listening on http://{}", server.addr());
            let _ = std::io::stdout().flush();
            let state = server.state();
            let handle = server.handle();
            tokio::spawn(async move {
                let _ = tokio::signal::ctrl_c().await;
                handle.stop(true).await;
            });
            server.run_until_stopped().await?;
            if let Some(out) = out {
                write_cron_records(&state.records(), &out)?;
                println!("report: {}", out.join("report.md").display());
            }
            Ok(())
        }
        Command::Report { records, out } => {
            let report = render_report(&records, &out)?;
            println!(
                "{} requests: SLA respected {:.1} %",
                report.overall.requests,
                report.overall.sla_met_ratio * 100.0
            );
            println!("report: {}", out.join("report.md").display());
            Ok(())
        }
    }
}

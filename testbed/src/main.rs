//! `testbed`: run a local federation (`testbed run`) or a benchmark (`testbed bench auction`,
//! `testbed bench faas`, `testbed bench proxy`, `testbed bench offload`, `testbed bench
//! footprint`), and rewrite the README's table of results (`testbed bench table`).

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;
use testbed::bench::{AuctionBenchOptions, run_auction_bench};
use testbed::bench_faas::{FaasBenchOptions, run_faas_bench};
use testbed::bench_footprint::{FootprintBenchOptions, run_footprint_bench};
use testbed::bench_offload::{OffloadBenchOptions, SCENARIOS, run_offload_bench};
use testbed::bench_proxy::{ProxyBenchOptions, run_proxy_bench};
use testbed::{Federation, LaunchOptions, Topology, TopologyFileExt, default_bin_dir};

#[derive(Parser)]
#[command(
    name = "testbed",
    about = "Run a Fogmarket federation on this machine",
    version
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the marketplace and every fog node of a topology; Ctrl-C stops them all.
    Run {
        #[arg(long, default_value = "testbed/topologies/local.toml")]
        topology: PathBuf,
        /// The marketplace's listen address.
        #[arg(long, default_value = "127.0.0.1:8000")]
        listen: String,
        /// The marketplace's database (default: SQLite in the run directory).
        #[arg(long, env = "DATABASE_URL")]
        database_url: Option<String>,
        /// Use the binaries of `target/release` (next to this executable's profile dir).
        #[arg(long)]
        release_bins: bool,
        /// Directory holding `marketplace` and `fog-node` (overrides --release-bins).
        #[arg(long)]
        bin_dir: Option<PathBuf>,
        /// Where configs, logs and node state go (default: .run/<topology>-<unix time>).
        #[arg(long)]
        run_dir: Option<PathBuf>,
        /// Enrollment secret shared by the marketplace and the nodes (default: random).
        #[arg(long, env = "FOGMARKET_ENROLLMENT_SECRET", hide_env_values = true)]
        enrollment_secret: Option<String>,
        /// Do not emulate the topology's link latencies (traffic between nodes then runs at
        /// loopback speed, and configured latencies only enter the auctions' arithmetic).
        #[arg(long)]
        no_link_emulation: bool,
        /// Serve every API over HTTPS: a throwaway CA and one certificate per process are made
        /// in the run directory (`tls/ca.pem` is what clients must trust).
        #[arg(long)]
        tls: bool,
    },
    /// Write each fog node's configuration file for a federation whose members run on hosts
    /// of their own (used by the deployment package testbed/enos). The enrollment secret comes
    /// from FOGMARKET_ENROLLMENT_SECRET.
    HostsConfig {
        #[arg(long)]
        topology: PathBuf,
        /// JSON: `{"marketplace_url": "...", "nodes": {"<node>": "<address>", ...}}`.
        #[arg(long)]
        hosts: PathBuf,
        /// Where `<node>.toml` files go.
        #[arg(long)]
        out: PathBuf,
        /// The port every fog node listens on, on its host's address.
        #[arg(long, default_value_t = 8080)]
        port: u16,
        /// The node's state directory on its host.
        #[arg(long, default_value = "/opt/fogmarket/state")]
        state_dir: PathBuf,
        /// The links between hosts are shaped for real (NetemHTB): do not emulate latency in
        /// process.
        #[arg(long)]
        no_link_emulation: bool,
        /// A real OpenFaaS gateway on each host at this URL instead of the embedded gateway.
        #[arg(long)]
        openfaas_gateway_url: Option<String>,
    },
    /// Kubernetes manifests of a topology's fog nodes (a Deployment, a Service and a ConfigMap
    /// per node, with their kustomization.yaml) for the kustomize tree testbed/k8s/.
    K8s {
        #[arg(long, default_value = "testbed/topologies/local.toml")]
        topology: PathBuf,
        /// Where the files go (files of an earlier generation that are no longer needed are
        /// removed; other files are left alone).
        #[arg(long, default_value = "testbed/k8s/fog-nodes")]
        out: PathBuf,
        /// The namespace the manifests are applied in (part of each node's advertised URL).
        #[arg(long, default_value = testbed::k8s::DEFAULT_NAMESPACE)]
        namespace: String,
        /// Deploy won placements on the OpenFaaS gateway at this URL instead of the embedded
        /// gateway (basic-auth user `admin`, password from the Secret `openfaas-basic-auth`).
        #[arg(long)]
        openfaas_gateway_url: Option<String>,
        /// Do not emulate the topology's link latencies in the nodes (the cluster's network
        /// then carries the traffic as it is).
        #[arg(long)]
        no_link_emulation: bool,
    },
    /// Topology files: generate a GIRAFF-like tree, list the path between every pair of nodes.
    Topology {
        #[command(subcommand)]
        command: TopologyCommand,
    },
    /// Benchmarks.
    Bench {
        #[command(subcommand)]
        bench: Bench,
    },
    /// The fault campaign: each scenario on a fresh federation under load; writes
    /// faults.json and faults.md.
    Faults {
        #[arg(long, default_value = "testbed/topologies/local.toml")]
        topology: PathBuf,
        /// Requests per second sent to the function's access node.
        #[arg(long, default_value_t = 20.0)]
        rate: f64,
        /// Load before the fault, e.g. `10s`.
        #[arg(long, default_value = "10s", value_parser = parse_duration)]
        before: Duration,
        /// Load after the fault, e.g. `20s` (at least 30 s for the SIGSTOP scenario).
        #[arg(long, default_value = "20s", value_parser = parse_duration)]
        after: Duration,
        /// Only these scenarios, comma-separated (default: all).
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
        #[arg(long, default_value = "bench/results")]
        out: PathBuf,
        /// Directory holding the binaries (default: next to this executable).
        #[arg(long)]
        bin_dir: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum Bench {
    /// Closed-loop placement requests against a generated federation.
    Auction {
        /// Federation sizes, each a fresh federation, e.g. `50,200,500`.
        #[arg(long, value_delimiter = ',', default_values_t = [50])]
        nodes: Vec<usize>,
        #[arg(long, default_value_t = 4)]
        depth: usize,
        /// How long to send placements, e.g. `10s`, `30 s`, `1 min`.
        #[arg(long, default_value = "10s", value_parser = parse_duration)]
        duration: Duration,
        /// Requests in flight, one load per value on each federation, e.g. `16,1`.
        #[arg(long, value_delimiter = ',', default_values_t = [16, 1])]
        concurrency: Vec<usize>,
        #[arg(long, default_value = "bench/results")]
        out: PathBuf,
        /// Seed of the generated topology.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Directory holding `marketplace` and `fog-node` (default: next to this executable).
        #[arg(long)]
        bin_dir: Option<PathBuf>,
    },
    /// The embedded FaaS gateway: cold starts, overhead against calling the function directly,
    /// memory per idle replica.
    Faas {
        /// Deploy -> first 200 samples.
        #[arg(long, default_value_t = 30)]
        cold_starts: usize,
        /// How long to load each target (direct, gateway) after a 1 s warm-up, e.g. `10s`.
        #[arg(long, default_value = "10s", value_parser = parse_duration)]
        duration: Duration,
        /// Requests in flight.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// Size of each request body of the load.
        #[arg(long, default_value_t = 64)]
        body_bytes: usize,
        /// Replicas whose idle memory is measured.
        #[arg(long, default_value_t = 5)]
        idle_replicas: usize,
        #[arg(long, default_value = "bench/results")]
        out: PathBuf,
        /// Directory holding `faas-gateway` and `fn-echo`, also the gateway's catalog
        /// (default: next to this executable).
        #[arg(long)]
        bin_dir: Option<PathBuf>,
    },
    /// What each layer in front of a function costs, with wrk: the function directly, HAProxy,
    /// the embedded gateway, a fog node, HAProxy in front of the gateway.
    Proxy {
        /// Measured wrk run per arm (after a 1 s warm-up), e.g. `10s`.
        #[arg(long, default_value = "10s", value_parser = parse_duration)]
        duration: Duration,
        /// wrk connections (`-c`).
        #[arg(long, default_value_t = 16)]
        connections: usize,
        /// wrk threads (`-t`).
        #[arg(long, default_value_t = 1)]
        threads: usize,
        /// Size of each POST body.
        #[arg(long, default_value_t = 64)]
        body_bytes: usize,
        #[arg(long, default_value = "bench/results")]
        out: PathBuf,
        /// Directory holding `marketplace`, `fog-node`, `faas-gateway` and `fn-echo`
        /// (default: next to this executable).
        #[arg(long)]
        bin_dir: Option<PathBuf>,
        /// The wrk executable.
        #[arg(long, default_value = "wrk")]
        wrk: PathBuf,
        /// The HAProxy executable.
        #[arg(long, default_value = "haproxy")]
        haproxy: PathBuf,
    },
    /// Offloading scenarios against a real federation (links emulated), once per offloading
    /// strategy: DFaaS's CloudNet'21 `demo` and `issue48` overload, `hot3` (three nodes of six
    /// overloaded together), `burst` (2-s bursts of 3 × a node's capacity every 6 s), `far`
    /// (spare capacity 3 hops away), `shift` (the hot access node changes every 4 s). Success
    /// per second, requests served per node, latency percentiles and the aims (99 % every second
    /// from s1, p95 within 3 × echo's delay).
    Offload {
        /// Load per run, e.g. `30s`.
        #[arg(long, default_value = "30s", value_parser = parse_duration)]
        duration: Duration,
        /// Strategies to compare, comma-separated.
        #[arg(long, value_delimiter = ',', default_values_t = testbed::topology::OFFLOAD_STRATEGIES.iter().map(|s| s.to_string()))]
        strategies: Vec<String>,
        /// Scenarios, comma-separated (`demo`, `issue48`, `hot3`, `burst`, `far`, `shift`).
        #[arg(long, value_delimiter = ',', default_values_t = SCENARIOS.iter().map(|s| s.to_string()))]
        scenarios: Vec<String>,
        /// echo's delay per request in ms; node capacities follow from it.
        #[arg(long, default_value_t = 200)]
        delay_ms: u64,
        #[arg(long, default_value = "bench/results")]
        out: PathBuf,
        /// Directory holding `marketplace`, `fog-node`, `faas-gateway` and `fn-echo`
        /// (default: next to this executable).
        #[arg(long)]
        bin_dir: Option<PathBuf>,
    },
    /// Resident memory of an idle federation's processes (`/proc/<pid>/status`): every fog
    /// node with its embedded gateway, its function replicas and the marketplace, before any
    /// placement and again after serving one.
    Footprint {
        #[arg(long, default_value = "testbed/topologies/local.toml")]
        topology: PathBuf,
        /// How long to invoke the placed function before the second reading, e.g. `2s`.
        #[arg(long, default_value = "2s", value_parser = parse_duration)]
        load: Duration,
        /// Invocations in flight during the load.
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
        #[arg(long, default_value = "bench/results")]
        out: PathBuf,
        /// Directory holding `marketplace`, `fog-node` and `fn-echo` (default: next to this
        /// executable).
        #[arg(long)]
        bin_dir: Option<PathBuf>,
    },
    /// Rewrite the README's performance table (between `<!-- bench-table:start -->` and
    /// `<!-- bench-table:end -->`) from the result files present.
    Table {
        #[arg(long, default_value = "bench/results")]
        results: PathBuf,
        #[arg(long, default_value = "README.md")]
        readme: PathBuf,
        /// Change nothing; exit non-zero when the README's table differs from the results.
        #[arg(long)]
        check: bool,
    },
}

#[derive(Subcommand)]
enum TopologyCommand {
    /// A seeded random 4-tier tree after GIRAFF's Grid'5000 testbed (tiers, links and prices:
    /// model/src/topology/giraff.rs). The same size multiplier and seed give the same file.
    Generate {
        /// GIRAFF's tiers (the only generator so far).
        #[arg(long, required = true)]
        giraff: bool,
        /// M: tiers 3 and 4 have 4M to 8M nodes each (about 7.5 + 12 M nodes in all).
        #[arg(long, value_parser = size_multiplier)]
        size_multiplier: u32,
        #[arg(long)]
        seed: u64,
        /// Write the file here instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Every unordered pair of nodes (a < b by name) with its path's one-way latency (us),
    /// smallest rate (bit/s, none: unlimited) and compounded loss (%).
    Links {
        #[arg(long)]
        topology: PathBuf,
        /// JSON: `[{"a", "b", "delay_us", "rate_bps" (or null), "loss_percent"}, ...]`.
        #[arg(long)]
        json: bool,
    },
}

fn size_multiplier(s: &str) -> Result<u32, String> {
    let max = testbed::topology_gen::MAX_SIZE_MULTIPLIER;
    match s.parse::<u32>() {
        Ok(m) if (1..=max).contains(&m) => Ok(m),
        _ => Err(format!("must be a whole number from 1 to {max}")),
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    model::units::parse_duration(s).map_err(|e| e.to_string())
}

fn bin_dir(explicit: Option<PathBuf>, release: bool) -> anyhow::Result<PathBuf> {
    if let Some(dir) = explicit {
        return Ok(dir);
    }
    let dir = default_bin_dir()?;
    if release {
        // target/<profile>/ -> target/release/
        let target = dir
            .parent()
            .context("the executable's directory has no parent")?;
        return Ok(target.join("release"));
    }
    Ok(dir)
}

fn hosts_config(
    topology: &std::path::Path,
    hosts: &std::path::Path,
    out: &std::path::Path,
    settings: testbed::hosts::HostSettings,
) -> anyhow::Result<()> {
    let topology = Topology::from_file(topology)?;
    let text = std::fs::read_to_string(hosts)
        .with_context(|| format!("cannot read the hosts file {}", hosts.display()))?;
    let inventory: testbed::hosts::Inventory =
        serde_json::from_str(&text).with_context(|| format!("hosts file {}", hosts.display()))?;
    let files = testbed::hosts::node_configs(&topology, &inventory, &settings)?;
    testbed::hosts::write_node_configs(out, &files)
        .with_context(|| format!("cannot write the node configurations to {}", out.display()))?;
    println!("{} node configurations in {}", files.len(), out.display());
    Ok(())
}

/// `testbed topology ...`.
fn topology_command(command: TopologyCommand) -> anyhow::Result<()> {
    use std::io::Write;
    match command {
        TopologyCommand::Generate {
            giraff: _,
            size_multiplier,
            seed,
            out,
        } => {
            let generated = testbed::topology_gen::giraff(testbed::topology_gen::GiraffOptions {
                size_multiplier,
                seed,
            })?;
            match out {
                Some(path) => {
                    std::fs::write(&path, &generated.text)
                        .with_context(|| format!("cannot write {}", path.display()))?;
                    eprintln!(
                        "wrote {} nodes to {}",
                        generated.topology.nodes().len(),
                        path.display()
                    );
                }
                None => {
                    let mut out = std::io::stdout().lock();
                    ended_reader(
                        out.write_all(generated.text.as_bytes())
                            .and_then(|()| out.flush()),
                    )?;
                }
            }
            Ok(())
        }
        TopologyCommand::Links { topology, json } => {
            let topo = Topology::from_file(&topology)?;
            let rows: Vec<testbed::topology::LinkRow> =
                topo.pair_links().iter().map(Into::into).collect();
            ended_reader(print_links(&rows, json))?;
            Ok(())
        }
    }
}

/// A reader that stops early (`| head`) is not an error of ours.
fn ended_reader(written: std::io::Result<()>) -> anyhow::Result<()> {
    match written {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

/// `testbed topology links`: JSON with `--json`, else a table.
fn print_links(rows: &[testbed::topology::LinkRow], json: bool) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if json {
        // One pair per line: a 663-node tree has 219,453 of them.
        writeln!(out, "[")?;
        for (i, row) in rows.iter().enumerate() {
            let comma = if i + 1 < rows.len() { "," } else { "" };
            writeln!(out, "{}{comma}", serde_json::to_string(row)?)?;
        }
        writeln!(out, "]")?;
    } else {
        let width = rows
            .iter()
            .map(|r| r.a.len().max(r.b.len()))
            .max()
            .unwrap_or(0)
            .max(4);
        writeln!(
            out,
            "{:<width$} {:<width$} {:>10} {:>14} {:>12}",
            "a", "b", "delay_us", "rate_bps", "loss_percent"
        )?;
        for r in rows {
            let rate = r
                .rate_bps
                .map_or_else(|| "unlimited".to_string(), |b| b.to_string());
            writeln!(
                out,
                "{:<width$} {:<width$} {:>10} {:>14} {:>12}",
                r.a, r.b, r.delay_us, rate, r.loss_percent
            )?;
        }
    }
    out.flush()
}

fn main() -> anyhow::Result<()> {
    // Logs on stderr, and spans over OTLP when OTEL_EXPORTER_OTLP_ENDPOINT is set. Dropped last
    // (after the runtime): that sends the remaining spans.
    let _telemetry = telemetry::init_with(
        "testbed",
        &telemetry::Options {
            default_log_filter: "warn,testbed=info".to_string(),
        },
    )?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(run(Cli::parse().command))
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Run {
            topology,
            listen,
            database_url,
            release_bins,
            bin_dir: explicit_bin_dir,
            run_dir,
            enrollment_secret,
            no_link_emulation,
            tls,
        } => {
            let topo = Topology::from_file(&topology)?;
            let run_dir = match run_dir {
                Some(d) => d,
                None => {
                    let stem = topology
                        .file_stem()
                        .map(|s| s.to_string_lossy().to_string())
                        .unwrap_or_else(|| "topology".to_string());
                    let secs = model::Timestamp::now().as_millis() / 1000;
                    PathBuf::from(".run").join(format!("{stem}-{secs}"))
                }
            };
            let mut options = LaunchOptions::new(run_dir)?;
            options.bin_dir = bin_dir(explicit_bin_dir, release_bins)?;
            options.database_url = database_url;
            options.marketplace_listen = listen;
            if let Some(s) = enrollment_secret {
                options.enrollment_secret = s;
            }
            options.readiness_deadline = Duration::from_secs(60);
            options.emulate_links = !no_link_emulation;
            options.tls = tls;
            eprintln!(
                "starting {} fog nodes from {} ...",
                topo.nodes().len(),
                topology.display()
            );
            let mut federation = Federation::start(topo, options).await?;
            print_federation(&federation);
            // Until Ctrl-C: a process that exits is shown and started again with backoff.
            let mut supervision = testbed::Supervision::new();
            let stop = tokio::signal::ctrl_c();
            tokio::pin!(stop);
            loop {
                tokio::select! {
                    r = &mut stop => {
                        r.context("cannot wait for Ctrl-C")?;
                        break;
                    }
                    () = tokio::time::sleep(Duration::from_millis(250)) => {
                        let now = tokio::time::Instant::now();
                        for event in supervision.step(&mut federation, now).await {
                            eprintln!("{event}");
                        }
                    }
                }
            }
            eprintln!("stopping every process ...");
            federation.stop().await?;
            eprintln!("stopped");
            Ok(())
        }
        Command::Bench {
            bench:
                Bench::Auction {
                    nodes,
                    depth,
                    duration,
                    concurrency,
                    out,
                    seed,
                    bin_dir: explicit_bin_dir,
                },
        } => {
            let options = AuctionBenchOptions {
                nodes,
                depth,
                duration,
                concurrency,
                out: out.clone(),
                seed,
                bin_dir: bin_dir(explicit_bin_dir, false)?,
            };
            let report = run_auction_bench(&options).await?;
            println!("{}", report.markdown());
            println!(
                "wrote {} and {}",
                out.join("auction.json").display(),
                out.join("auction.md").display()
            );
            Ok(())
        }
        Command::Bench {
            bench:
                Bench::Faas {
                    cold_starts,
                    duration,
                    concurrency,
                    body_bytes,
                    idle_replicas,
                    out,
                    bin_dir: explicit_bin_dir,
                },
        } => {
            let options = FaasBenchOptions {
                cold_starts,
                duration,
                concurrency,
                body_bytes,
                idle_replicas,
                out: out.clone(),
                bin_dir: bin_dir(explicit_bin_dir, false)?,
            };
            let report = run_faas_bench(&options).await?;
            println!("{}", report.markdown());
            println!(
                "wrote {} and {}",
                out.join("faas.json").display(),
                out.join("faas.md").display()
            );
            Ok(())
        }
        Command::Bench {
            bench:
                Bench::Proxy {
                    duration,
                    connections,
                    threads,
                    body_bytes,
                    out,
                    bin_dir: explicit_bin_dir,
                    wrk,
                    haproxy,
                },
        } => {
            let options = ProxyBenchOptions {
                duration,
                connections,
                threads,
                body_bytes,
                out: out.clone(),
                bin_dir: bin_dir(explicit_bin_dir, false)?,
                wrk,
                haproxy,
            };
            let report = run_proxy_bench(&options).await?;
            println!("{}", report.markdown());
            println!(
                "wrote {} and {}",
                out.join("proxy.json").display(),
                out.join("proxy.md").display()
            );
            Ok(())
        }
        Command::HostsConfig {
            topology,
            hosts,
            out,
            port,
            state_dir,
            no_link_emulation,
            openfaas_gateway_url,
        } => {
            let enrollment_secret = std::env::var("FOGMARKET_ENROLLMENT_SECRET")
                .context("FOGMARKET_ENROLLMENT_SECRET must hold the enrollment secret")?;
            let settings = testbed::hosts::HostSettings {
                port,
                state_dir,
                emulate_links: !no_link_emulation,
                enrollment_secret,
                openfaas_gateway_url,
            };
            hosts_config(&topology, &hosts, &out, settings)
        }
        Command::K8s {
            topology,
            out,
            namespace,
            openfaas_gateway_url,
            no_link_emulation,
        } => {
            let topo = Topology::from_file(&topology)?;
            let source = topology.file_name().map_or_else(
                || topology.display().to_string(),
                |n| n.to_string_lossy().to_string(),
            );
            let options = testbed::k8s::K8sOptions {
                namespace,
                openfaas_gateway_url,
                emulate_links: !no_link_emulation,
                source,
            };
            let files = testbed::k8s::generate(&topo, &options)?;
            let done = testbed::k8s::write(&out, &files)?;
            for path in &done.removed {
                eprintln!("removed {} (no longer generated)", path.display());
            }
            println!(
                "wrote {} files for {} fog nodes in {}",
                done.written.len(),
                topo.nodes().len(),
                out.display()
            );
            Ok(())
        }
        Command::Topology { command } => topology_command(command),
        Command::Faults {
            topology,
            rate,
            before,
            after,
            only,
            out,
            bin_dir: explicit_bin_dir,
        } => {
            faults(testbed::faults::FaultOptions {
                topology,
                rate,
                before,
                after,
                only,
                out,
                bin_dir: bin_dir(explicit_bin_dir, false)?,
            })
            .await
        }
        Command::Bench {
            bench:
                Bench::Footprint {
                    topology,
                    load,
                    concurrency,
                    out,
                    bin_dir: explicit_bin_dir,
                },
        } => {
            if concurrency == 0 {
                anyhow::bail!("--concurrency: must be at least 1");
            }
            let options = FootprintBenchOptions {
                topology,
                load,
                concurrency,
                out: out.clone(),
                bin_dir: bin_dir(explicit_bin_dir, false)?,
            };
            let report = run_footprint_bench(&options).await?;
            println!("{}", report.markdown());
            println!(
                "wrote {} and {}",
                out.join("footprint.json").display(),
                out.join("footprint.md").display()
            );
            Ok(())
        }
        Command::Bench {
            bench:
                Bench::Table {
                    results,
                    readme,
                    check,
                },
        } => bench_table(&results, &readme, check),
        Command::Bench {
            bench:
                Bench::Offload {
                    duration,
                    strategies,
                    scenarios,
                    delay_ms,
                    out,
                    bin_dir: explicit_bin_dir,
                },
        } => {
            let options = OffloadBenchOptions {
                duration,
                strategies,
                scenarios,
                delay_ms,
                out: out.clone(),
                bin_dir: bin_dir(explicit_bin_dir, false)?,
            };
            let report = run_offload_bench(&options).await?;
            println!("{}", report.markdown());
            println!(
                "wrote {} and {}",
                out.join("offload.json").display(),
                out.join("offload.md").display()
            );
            Ok(())
        }
    }
}

/// `testbed bench table`: rewrites the README's table, or (`check`) fails when it is stale.
fn bench_table(
    results: &std::path::Path,
    readme: &std::path::Path,
    check: bool,
) -> anyhow::Result<()> {
    use testbed::bench_table::{Outcome, update_readme};
    match update_readme(results, readme, check)? {
        Outcome::Unchanged => println!("{}: the benchmark table is up to date", readme.display()),
        Outcome::Rewritten => println!(
            "{}: the benchmark table was rewritten from {}",
            readme.display(),
            results.display()
        ),
        Outcome::Stale { first_difference } => anyhow::bail!(
            "{}: the benchmark table differs from what {} gives ({first_difference}); \
             `just bench-table` rewrites it",
            readme.display(),
            results.display()
        ),
    }
    Ok(())
}

/// `testbed faults`.
async fn faults(options: testbed::faults::FaultOptions) -> anyhow::Result<()> {
    let known: Vec<&str> = testbed::faults::SCENARIOS.iter().map(|s| s.name).collect();
    if let Some(unknown) = options.only.iter().find(|o| !known.contains(&o.as_str())) {
        anyhow::bail!(
            "--only: no scenario `{unknown}` (known: {})",
            known.join(", ")
        );
    }
    if !(options.rate.is_finite() && options.rate > 0.0) {
        anyhow::bail!("--rate: must be a positive number of requests per second");
    }
    let report = testbed::faults::run_faults(&options).await?;
    println!("{}", report.markdown());
    println!(
        "wrote {} and {}",
        options.out.join("faults.json").display(),
        options.out.join("faults.md").display()
    );
    Ok(())
}

/// Whether a URL's host is a loopback address (`http://127.0.0.1:8000`, `https://[::1]:8000`).
fn listens_on_loopback(url: &str) -> bool {
    let authority = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = authority.split('/').next().unwrap_or_default();
    let host = authority
        .rsplit_once(':')
        .map_or(authority, |(host, _port)| host)
        .trim_start_matches('[')
        .trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn print_federation(f: &Federation) {
    let t = f.topology();
    let m = f.marketplace_url();
    println!("marketplace");
    println!("  dashboard: {m}/");
    println!("  API:       {m}/api/  (e.g. {m}/api/fog, PUT {m}/api/function)");
    println!("  metrics:   {m}/metrics");
    println!("  database:  {}", f.database_url());
    if listens_on_loopback(&m) {
        println!(
            "  client API: open, no token needed (the marketplace listens on loopback); on any \
             other address it requires tokens (`marketplace token create --client NAME`)"
        );
    } else {
        println!(
            "  client API: tokens required (not a loopback address): \
             `marketplace token create --client NAME --database-url {}`",
            f.database_url()
        );
    }
    println!("run dir:     {} (configs and logs)", f.run_dir().display());
    if let Some(ca) = f.ca_path() {
        println!(
            "TLS:         every API is HTTPS; trust the run's CA {} (e.g. curl --cacert {})",
            ca.display(),
            ca.display()
        );
    }
    if f.emulates_links() {
        println!(
            "links:       emulated in process: traffic between nodes takes the one-way latency of its path"
        );
    } else {
        println!("links:       not emulated (loopback speed)");
    }
    println!();
    println!(
        "{:<16} {:<12} {:<18} {:<14} {:<8} {:<28} id",
        "node", "owner", "tier", "parent", "link", "url"
    );
    for spec in t.nodes() {
        println!(
            "{:<16} {:<12} {:<18} {:<14} {:<8} {:<28} {}",
            spec.name,
            spec.owner,
            t.tier(&spec.name).unwrap_or_default(),
            spec.parent.as_deref().unwrap_or("-"),
            spec.latency
                .map(|l| l.to_string())
                .unwrap_or_else(|| "-".into()),
            f.node_url(&spec.name).unwrap_or("?"),
            f.node_id(&spec.name)
                .map(|id| id.to_string())
                .unwrap_or_default()
        );
    }
    println!();
    println!(
        "each node: <url>/metrics (Prometheus), <url>/api/offload (weights, peers), <url>/function/<name> (invoke)"
    );
    println!("IoT traffic: `just demo` in another terminal. Ctrl-C stops every process.");
}

#[cfg(test)]
mod tests {
    use super::listens_on_loopback;

    #[test]
    fn loopback_marketplace_urls_are_told_apart_from_others() {
        for url in [
            "http://127.0.0.1:8000",
            "https://127.0.0.1:8000/",
            "http://[::1]:8000",
            "http://localhost:8000",
        ] {
            assert!(listens_on_loopback(url), "{url}");
        }
        for url in [
            "http://10.0.0.2:8000",
            "https://[2001:db8::1]:8000",
            "http://0.0.0.0:8000",
        ] {
            assert!(!listens_on_loopback(url), "{url}");
        }
    }
}

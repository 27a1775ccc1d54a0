//! `marketplace` binary: flags (and env vars) -> [`marketplace::Settings`] -> run; or, with
//! `token create|list|revoke`, manages client API tokens in the same database.

use clap::{Parser, Subcommand};
use marketplace::clients::{
    self, ClientAuth, ClientId, ClientLimits, ClientName, ClientSelector, PlacementRate,
};
use marketplace::repository::Repository;
use marketplace::settings::DEV_ENROLLMENT_SECRET;
use marketplace::{Application, Settings};
use model::auction::AuctionRule;
use signed_http::tls::TlsFiles;
use std::io::Write;
use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroU64};
use std::path::PathBuf;
use std::time::Duration;

/// mimalloc: every request makes many small, short-lived allocations (headers, JSON, spans),
/// which cost glibc's allocator about a tenth of the federation's CPU under load
/// (`docs/performance.md`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Fogmarket marketplace: runs reverse auctions over a federation of fog nodes.
///
/// Without a command it serves; `marketplace token --help` manages client API tokens.
#[derive(Debug, Parser)]
#[command(version, about, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
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
    /// Client API tokens: auto (required unless the listen address is loopback) | token
    /// (always required) | none (never: open on any address).
    #[arg(long, env = "FOGMARKET_CLIENT_AUTH", default_value_t = ClientAuth::Auto)]
    client_auth: ClientAuth,
    /// Placement requests (PUT /api/function) per second allowed to one client on average
    /// (a client is its token, or in open mode its IP address; loopback is not limited).
    #[arg(long, env = "FOGMARKET_CLIENT_RATE", default_value_t = ClientLimits::default().placement_rate)]
    client_rate: PlacementRate,
    /// Placement requests one client may send at once above --client-rate.
    #[arg(long, env = "FOGMARKET_CLIENT_BURST", default_value_t = ClientLimits::default().placement_burst)]
    client_burst: NonZeroU32,
    /// Auctions one client may have running at once (each makes nodes hold resources).
    #[arg(long, env = "FOGMARKET_CLIENT_MAX_AUCTIONS", default_value_t = ClientLimits::default().max_auctions_in_flight)]
    client_max_auctions: NonZeroU32,
    /// Placements not over yet (reserved, provisioning, live) one client may hold.
    #[arg(long, env = "FOGMARKET_CLIENT_MAX_PLACEMENTS", default_value_t = ClientLimits::default().max_live_placements)]
    client_max_placements: NonZeroU64,
    /// PEM certificate chain to serve HTTPS with (needs --tls-key).
    #[arg(long, env = "FOGMARKET_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "FOGMARKET_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// PEM certificate of the CA trusted when calling https:// fog nodes.
    #[arg(long, env = "FOGMARKET_TLS_CA")]
    tls_ca: Option<PathBuf>,
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
    if let Some(Command::Token(command)) = cli.command {
        return token_command(command).await;
    }
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
        client_auth: cli.client_auth,
        client_limits: ClientLimits {
            placement_rate: cli.client_rate,
            placement_burst: cli.client_burst,
            max_auctions_in_flight: cli.client_max_auctions,
            max_live_placements: cli.client_max_placements,
        },
        tls: TlsFiles {
            cert: cli.tls_cert,
            key: cli.tls_key,
            ca: cli.tls_ca,
        },
        ..Settings::new(cli.database_url, secret)
    };
    let app = Application::build(settings).await?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on {}", app.url())?;
        out.flush()?;
    }
    // stdout carries only the listening line (launchers read it); this is for the operator.
    eprintln!("client API: {}", app.marketplace().client_access());
    app.run_until_stopped().await
}

/// Commands besides serving.
#[derive(Debug, Subcommand)]
enum Command {
    /// Client API tokens: create, list, revoke. A running marketplace sees changes at once.
    #[command(subcommand)]
    Token(TokenCommand),
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Creates a client and prints its token, once: stdout is the token alone (only its
    /// SHA-256 is stored). Clients send it as `Authorization: Bearer <token>`.
    Create {
        /// The client's name: 1 to 128 letters, digits, `.`, `_` or `-`.
        #[arg(long)]
        client: String,
        /// Give a client that has a live token a new one (the old one stops working).
        #[arg(long)]
        rotate: bool,
        #[command(flatten)]
        database: DatabaseArg,
    },
    /// Lists the clients: name, id, token prefix, when the token was made, active or revoked
    /// (never a token).
    List {
        #[command(flatten)]
        database: DatabaseArg,
    },
    /// Revokes a client's token: its requests are refused (401) from now on; its placements
    /// stay until they end. `token create` for the same name makes a new token.
    Revoke {
        /// The client's name.
        #[arg(long, required_unless_present = "id", conflicts_with = "id")]
        client: Option<String>,
        /// The client's id (from `token list`).
        #[arg(long)]
        id: Option<ClientId>,
        #[command(flatten)]
        database: DatabaseArg,
    },
}

#[derive(Debug, clap::Args)]
struct DatabaseArg {
    /// The marketplace's database: sqlite://FILE?mode=rwc or postgres://…
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite://fogmarket.db?mode=rwc"
    )]
    database_url: String,
}

impl DatabaseArg {
    async fn open(&self) -> anyhow::Result<Repository> {
        Repository::connect(&self.database_url).await.map_err(|e| {
            anyhow::anyhow!(
                "opening the database `{}`: {e}",
                marketplace::startup::redact(&self.database_url)
            )
        })
    }
}

async fn token_command(command: TokenCommand) -> anyhow::Result<()> {
    let now = model::Timestamp::now();
    match command {
        TokenCommand::Create {
            client,
            rotate,
            database,
        } => {
            let name = ClientName::parse(&client)?;
            let repo = database.open().await?;
            let made = clients::create_token(&repo, &name, rotate, now).await;
            repo.close().await;
            let made = made?;
            eprintln!(
                "{} client `{}` (id {}). The token below is shown only this once; only its \
                 SHA-256 is stored. Clients send it as `Authorization: Bearer <token>`.",
                if made.replaced {
                    "new token for"
                } else {
                    "created"
                },
                made.client.name,
                made.client.id
            );
            let mut out = std::io::stdout().lock();
            writeln!(out, "{}", made.token.expose())?;
            out.flush()?;
        }
        TokenCommand::List { database } => {
            let repo = database.open().await?;
            let list = repo.list_clients().await;
            repo.close().await;
            let list = list?;
            if list.is_empty() {
                eprintln!("no clients yet: `marketplace token create --client <name>` makes one");
            } else {
                print!("{}", clients::client_table(&list));
            }
        }
        TokenCommand::Revoke {
            client,
            id,
            database,
        } => {
            let which = match (client, id) {
                (_, Some(id)) => ClientSelector::Id(id),
                (Some(name), None) => ClientSelector::Name(ClientName::parse(&name)?),
                (None, None) => anyhow::bail!("--client or --id is required"),
            };
            let repo = database.open().await?;
            let revoked = clients::revoke(&repo, &which, now).await;
            repo.close().await;
            let revoked = revoked?;
            println!(
                "revoked the token of client `{}` (id {}): its requests are refused from now on",
                revoked.name, revoked.id
            );
        }
    }
    Ok(())
}

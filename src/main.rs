//! The `jade` command: `jade serve` (configured by environment variables) and `jade demo`.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

// The service allocates many small objects per request (rows, JSON); mimalloc serves them
// faster and with less fragmentation than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use jade::config::Config;
use jade::startup;

#[derive(Parser)]
#[command(name = "jade", version, about = "dbt Cloud API v2 clone and manifest store for Datacoves")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API over the databases and storage the environment variables name.
    Serve,
    /// Exits 0 when the server on 127.0.0.1:$PORT answers its healthcheck 200 within 3
    /// seconds, else 1 (the image's `HEALTHCHECK`).
    Healthcheck {
        /// The port `jade serve` listens on.
        #[arg(long, env = "PORT", default_value_t = 4000)]
        port: u16,
    },
    /// Serve the API over seeded in-memory data and local-disk storage; prints a token per
    /// account.
    Demo {
        /// Port to listen on.
        #[arg(long, env = "PORT", default_value_t = 4000)]
        port: u16,
        /// Address to bind.
        #[arg(long, default_value = "127.0.0.1")]
        host: std::net::IpAddr,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve => serve().await,
        Command::Healthcheck { port } => healthcheck(port).await,
        Command::Demo { port, host } => demo(SocketAddr::new(host, port)).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("jade: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn serve() -> Result<(), String> {
    let config = Config::from_env().map_err(|e| startup::StartupError::from(e).to_string())?;
    startup::init_tracing(config.log_format);
    let jade = startup::build(&config).await.map_err(|e| e.to_string())?;
    let address = SocketAddr::from(([0, 0, 0, 0], config.port));
    let _metrics = match config.metrics_addr {
        Some(metrics) => {
            let running =
                startup::spawn_metrics(metrics).await.map_err(|e| format!("metrics listener on {metrics}: {e}"))?;
            tracing::info!(address = %running.address, "metrics at /metrics");
            Some(running)
        }
        None => None,
    };
    startup::serve_until_signal(jade, address).await.map_err(|e| format!("serving on {address}: {e}"))
}

async fn healthcheck(port: u16) -> Result<(), String> {
    let url = format!("http://127.0.0.1:{port}/api/v2/healthcheck");
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(3))
        .build()
        .map_err(|e| format!("healthcheck: {e}"))?;
    let response = client.get(&url).send().await.map_err(|e| format!("healthcheck {url}: {e}"))?;
    match response.status() {
        status if status.is_success() => Ok(()),
        status => Err(format!("healthcheck {url}: {status}")),
    }
}

async fn demo(address: SocketAddr) -> Result<(), String> {
    startup::init_tracing(Default::default());
    let demo = jade::demo::build(Default::default()).await?;
    let running =
        startup::spawn(demo.jade.clone(), address).await.map_err(|e| format!("listening on {address}: {e}"))?;
    let url = running.url();
    println!("Jade demo serving on {url} (in-memory data; files under {})", demo.storage_dir.path().display());
    println!();
    for (account_id, name, token) in &demo.tokens {
        println!("  account {account_id} ({name}): token {token}");
    }
    let (account_id, _, token) = &demo.tokens[0];
    println!();
    println!("Try:");
    println!("  curl -H \"Authorization: Token {token}\" {url}/api/v2/accounts/{account_id}/runs");
    println!("  curl -H \"Authorization: Token {token}\" {url}/api/v2/accounts/{account_id}/jobs");
    println!(
        "  curl -H \"Authorization: Token {token}\" \"{url}/api/v2/datacoves/manifests?environment_slug=acme-prod\""
    );
    println!(
        "  curl -H \"Authorization: Token {token}\" \"{url}/api/v2/datacoves/environments/acme-dev/files?tag=settings\""
    );
    println!("Swagger UI: {url}/api/v2/swaggerui");
    println!("  Authorize: paste a token above alone (no `Bearer` or `Token` before it: Swagger UI adds `Bearer`).");
    println!("Stop with Ctrl-C.");
    running.wait().await.map_err(|e| e.to_string())
}

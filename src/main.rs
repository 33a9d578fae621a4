//! The `gatehouse` command line (SPEC §1): parse arguments, load the config,
//! exit 1 on any error before a port is bound, otherwise run until SIGTERM.

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use base64::Engine as _;
use clap::{Parser, Subcommand};
use tracing_subscriber::filter::{filter_fn, EnvFilter};
use tracing_subscriber::prelude::*;

use gatehouse::pipeline::log::TARGET as ACCESS_LOG;
use gatehouse::{config, server, Gateway, Listeners};

#[derive(Parser)]
#[command(
    name = "gatehouse",
    version,
    about = "A TLS-terminating auth proxy for HTTP backends"
)]
struct Cli {
    /// The config file.
    #[arg(long, global = true, default_value = config::DEFAULT_PATH)]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Validate the config file, certificates and keys; exit 0 or 1.
    Check,
    /// Read a password (tty prompt or one line of stdin), print an argon2id PHC string.
    HashPassword,
    /// Print 32 random bytes, base64url, for auth.jwt.secret.
    GenSecret,
    /// Print a new random API key once, and the YAML entry holding its SHA-256.
    GenApiKey {
        /// The key's id (shown in logs and X-Auth-User).
        #[arg(long)]
        name: String,
    },
    /// Print the identity assertion's JWKS (creating its key if missing).
    ExportJwks,
    /// Show or reset a principal's use of a quota, in the configured store.
    Quota {
        #[command(subcommand)]
        action: QuotaAction,
    },
}

#[derive(Subcommand)]
enum QuotaAction {
    /// Print {"name","unit","limit","used","remaining","resets_at"}.
    Show {
        /// The quota's name (quotas[].name).
        #[arg(long)]
        name: String,
        /// A sub, an API-key id, or a client IP (an IPv6 /64 as 2001:db8::/64).
        #[arg(long)]
        principal: String,
    },
    /// Start the principal's period over (at once on every running replica),
    /// then print its status.
    Reset {
        #[arg(long)]
        name: String,
        #[arg(long)]
        principal: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    gatehouse::install_crypto_providers();
    let result = match cli.command {
        None => run(&cli.config),
        Some(Command::Check) => check(&cli.config),
        Some(Command::HashPassword) => hash_password(),
        Some(Command::GenSecret) => {
            println!("{}", random_base64url());
            Ok(())
        }
        Some(Command::GenApiKey { name }) => gen_api_key(&name),
        Some(Command::Quota { action }) => quota(&cli.config, action),
        Some(Command::ExportJwks) => export_jwks(&cli.config),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gatehouse: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn random_base64url() -> String {
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn gen_api_key(name: &str) -> anyhow::Result<()> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    anyhow::ensure!(valid, "--name must be 1-64 characters of [A-Za-z0-9._-]");
    let key = format!("gh_{}", random_base64url());
    let hex = gatehouse::text::sha256_hex(&key);
    println!("{key}");
    println!("# paste under auth.api_keys.keys (the key above is shown only once):");
    println!("- id: {name}");
    println!("  sha256: {hex}");
    Ok(())
}

fn hash_password() -> anyhow::Result<()> {
    let password = if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("Password: ").context("cannot read the password")?;
        let again = rpassword::prompt_password("Again: ").context("cannot read the password")?;
        anyhow::ensure!(first == again, "the passwords differ");
        first
    } else {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .context("cannot read stdin")?;
        line.trim_end_matches(['\n', '\r']).to_owned()
    };
    anyhow::ensure!(!password.is_empty(), "the password is empty");
    let phc = gatehouse::auth::password::hash_password(&password).map_err(anyhow::Error::msg)?;
    println!("{phc}");
    Ok(())
}

/// `gatehouse quota show|reset` (SPEC §11), against the configured store:
/// Redis directly; the embedded file directly when no gatehouse holds it,
/// else through the running gatehouse's admin listener.
fn quota(path: &Path, action: QuotaAction) -> anyhow::Result<()> {
    let (name, principal, reset) = match action {
        QuotaAction::Show { name, principal } => (name, principal, false),
        QuotaAction::Reset { name, principal } => (name, principal, true),
    };
    let config = config::load(path)?;
    let q = config
        .quotas
        .iter()
        .find(|q| *q.name == *name)
        .with_context(|| format!("{}: no quota named {name:?}", path.display()))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let status = runtime.block_on(async {
        use gatehouse::store::{quota::CounterKey, Store, StoreError};
        let store = match Store::open(&config.store, config.auth.jwt.access_ttl).await {
            Ok(store) => store,
            Err(StoreError::Busy(file)) => {
                let admin = config.listen.admin.with_context(|| {
                    format!("{file} is held by a running gatehouse whose admin listener is off (listen.admin)")
                })?;
                return quota_via_admin(admin, &name, &principal, reset).await;
            }
            Err(e) => return Err(e).context("cannot open the store"),
        };
        if reset {
            store
                .quota_reset(&CounterKey::new(&q.name, &principal))
                .await
                .context("cannot reset the quota")?;
            store.flush_quotas().await;
        }
        let now = gatehouse::clock::unix_now();
        store
            .quota_status(q, &principal, now)
            .await
            .context("cannot read the quota")
    })?;
    println!("{status}");
    Ok(())
}

/// Asks the running gatehouse's admin listener (`/quota`, `/quota/reset`).
async fn quota_via_admin(
    admin: std::net::SocketAddr,
    name: &str,
    principal: &str,
    reset: bool,
) -> anyhow::Result<serde_json::Value> {
    use http_body_util::{BodyExt as _, Empty};
    anyhow::ensure!(
        admin.port() != 0,
        "a running gatehouse holds the store file, and listen.admin names no fixed port to reach it on"
    );
    let mut addr = admin;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("name", name)
        .append_pair("principal", principal)
        .finish();
    let (method, path) = if reset {
        (http::Method::POST, server::admin::QUOTA_RESET_PATH)
    } else {
        (http::Method::GET, server::admin::QUOTA_PATH)
    };
    let request = http::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}?{query}"))
        .body(Empty::<bytes::Bytes>::new())
        .context("request")?;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    let response =
        tokio::time::timeout(std::time::Duration::from_secs(10), client.request(request))
            .await
            .context("the admin listener did not answer in time")?
            .with_context(|| format!("cannot reach gatehouse's admin listener at {addr}"))?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    let json: serde_json::Value =
        serde_json::from_slice(&body).context("the admin listener answered no JSON")?;
    anyhow::ensure!(
        status.is_success(),
        "{}",
        json["detail"].as_str().unwrap_or("failed")
    );
    Ok(json)
}

fn check(path: &Path) -> anyhow::Result<()> {
    let config = config::load(path)?;
    let tls = &config.tls;
    if tls.self_signed_if_missing && (!tls.cert.exists() || !tls.key.exists()) {
        println!(
            "note: {} will be created at start (self_signed_if_missing)",
            tls.cert.display()
        );
    } else {
        server::tls::load(tls)?;
    }
    println!("{}: OK", path.display());
    Ok(())
}

/// The JWKS document `GET /.well-known/gatehouse/jwks.json` serves.
fn export_jwks(path: &Path) -> anyhow::Result<()> {
    let config = config::load(path)?;
    let Some(assertion) = &config.identity.assertion else {
        anyhow::bail!(
            "{}: identity_headers.assertion is not configured",
            path.display()
        );
    };
    let document =
        gatehouse::auth::assertion::export_jwks(assertion).context("identity_headers.assertion")?;
    println!("{}", String::from_utf8_lossy(&document));
    Ok(())
}

fn run(path: &Path) -> anyhow::Result<()> {
    let _log_guard = init_logging();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        // Handlers first: a SIGHUP or SIGTERM from now on is ours to handle.
        let signals = Signals::install().context("cannot install signal handlers")?;
        // Everything that can be wrong with the config is found here,
        // before any port is bound.
        let config = config::load(path)?;
        let gateway = Gateway::new(config, prometheus::Registry::new()).await?;
        let listeners = Listeners::bind(&gateway.config().listen).await?;
        let (https, http, admin) = listeners.local_addrs();
        tracing::info!(
            version = env!("CARGO_PKG_VERSION"),
            https = %https,
            http = %http.map_or("off".to_owned(), |a| a.to_string()),
            admin = %admin.map_or("off".to_owned(), |a| a.to_string()),
            "gatehouse listening"
        );
        tokio::spawn(signals.handle(gateway.clone()));
        gateway.run(listeners).await;
        Ok::<_, anyhow::Error>(())
    })
}

/// SIGHUP reloads; SIGTERM and SIGINT shut down gracefully.
struct Signals {
    hup: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    /// Replaces the default actions (SIGHUP and SIGTERM would end the
    /// process) with handlers. Needs a running tokio runtime.
    fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            hup: signal(SignalKind::hangup())?,
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    async fn handle(mut self, gateway: Gateway) {
        loop {
            tokio::select! {
                _ = self.hup.recv() => {
                    // The result is logged and counted by reload itself.
                    let _ = gateway.reload();
                }
                _ = self.term.recv() => break,
                _ = self.int.recv() => break,
            }
        }
        gateway.shutdown();
    }
}

/// Access-log lines (JSON) go to stdout through a background writer; every
/// other log line goes to stderr. `RUST_LOG` sets the level (default info).
fn init_logging() -> tracing_appender::non_blocking::WorkerGuard {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let (stdout, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .finish(std::io::stdout());
    let access = tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_target(false)
        .with_writer(stdout)
        .with_filter(filter_fn(|m| m.target() == ACCESS_LOG));
    let diagnostics = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .with_filter(filter_fn(|m| m.target() != ACCESS_LOG));
    tracing_subscriber::registry()
        .with(filter)
        .with(access)
        .with(diagnostics)
        .init();
    guard
}

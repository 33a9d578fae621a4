//! What integration tests share: a real gatehouse on `127.0.0.1:0` with real
//! TLS ([`Gatehouse`], in-process through [`Gateway::run`], or [`Process`],
//! the real binary for signals and exit codes), a client that trusts its test
//! certificate, raw TLS and TCP sockets for requests no well-behaved client
//! would send, a real Redis, and, in the modules below, the real backends
//! (`backends`), token minting (`tokens`), authentication configs (`auth`),
//! requests and SPEC §5 assertions (`requests`), logging in through
//! gatehouse's own endpoints (`login`) and reading its metrics (`metrics`).

// Each test crate uses only some of these helpers.
#![allow(dead_code)]

pub mod auth;
#[path = "../../examples/backend_app.rs"]
pub mod backend_app;
pub mod backends;
pub mod login;
pub mod metrics;
pub mod oidc;
pub mod redis_ha;
pub mod requests;
pub mod tokens;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gatehouse::{Gateway, Listeners};
use rustls::pki_types::{pem::PemObject, CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[allow(unused_imports)]
pub use auth::*;
#[allow(unused_imports)]
pub use backends::{
    assert_never_seen, clear_recorded, only_request, recorded, seen, start_fastapi,
    start_raw_backend, start_rust_backend, Backend, RawBackend,
};
#[allow(unused_imports)]
pub use login::*;
#[allow(unused_imports)]
pub use metrics::*;
#[allow(unused_imports)]
pub use requests::*;
#[allow(unused_imports)]
pub use tokens::*;

/// A 32-byte HS256 secret for test configs.
pub const JWT_SECRET: &str = "test-secret-0123456789abcdef0123456789";

/// Top-level YAML that lets every request through without credentials.
pub const OPEN: &str = "default_route:\n  auth: none\n";

/// [`OPEN`] with `server_keys` (indented two spaces) under `server:`.
pub fn open_with_server(server_keys: &str) -> String {
    format!("{OPEN}server:\n{server_keys}")
}

/// A test certificate for `localhost` / `127.0.0.1` in a temp folder.
pub struct TestCerts {
    pub dir: tempfile::TempDir,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub pem: String,
}

impl TestCerts {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let cert = dir.path().join("server.crt");
        let key = dir.path().join("server.key");
        gatehouse::server::tls::create_self_signed(&cert, &key).expect("test certificate");
        let pem = std::fs::read_to_string(&cert).expect("read test certificate");
        TestCerts {
            dir,
            cert,
            key,
            pem,
        }
    }

    pub fn der(&self) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(self.pem.as_bytes()).expect("test certificate PEM")
    }
}

/// `upstreams:` with one upstream `app` at `url` and the given extra keys.
pub fn upstream(url: &str) -> String {
    format!("upstreams:\n  app:\n    url: {url}\n")
}

/// The base `auth:` block (an HS256 secret) followed by `more`, further
/// keys under `auth:` (indented two spaces).
pub fn jwt_auth(more: &str) -> String {
    format!("  jwt:\n    secret: {JWT_SECRET}\n{more}")
}

/// A whole config: listeners on port 0, the test certificate, `upstreams`
/// (YAML), a JWT secret, and `extra` top-level YAML (routes, server, …).
pub fn config_yaml(certs: &TestCerts, upstreams: &str, extra: &str) -> String {
    config_yaml_with_auth(certs, upstreams, &jwt_auth(""), extra)
}

/// Like [`config_yaml`], but `auth` is the whole `auth:` block (indented two
/// spaces).
pub fn config_yaml_with_auth(
    certs: &TestCerts,
    upstreams: &str,
    auth: &str,
    extra: &str,
) -> String {
    // Each test gets its own embedded store next to its config, unless it
    // configures a store itself.
    let store = if extra.contains("store:") {
        String::new()
    } else {
        "store:\n  path: data/gatehouse.db\n".to_owned()
    };
    // Tests send many requests from 127.0.0.1: default limits only where a
    // test asks for limits.
    let limits = if extra.contains("rate_limits:") {
        ""
    } else {
        "rate_limits:\n  per_ip: null\n  login: null\n"
    };
    format!(
        "listen:\n  https: 127.0.0.1:0\n  http: 127.0.0.1:0\n  admin: 127.0.0.1:0\n\
         tls:\n  cert: {cert}\n  key: {key}\n\
         {upstreams}\
         auth:\n{auth}\
         {store}{limits}{extra}\n",
        cert = certs.cert.display(),
        key = certs.key.display(),
    )
}

/// A gatehouse running in this process (the test harness; not to be confused
/// with `gatehouse::pipeline::Gate`).
pub struct Gatehouse {
    pub https: SocketAddr,
    pub http: SocketAddr,
    pub admin: SocketAddr,
    pub gateway: Gateway,
    /// Shuts the gateway down when dropped; before `certs`, so that the temp
    /// folder outlives the gateway.
    running: Running,
    pub certs: TestCerts,
    pub config_path: PathBuf,
}

/// The gateway's task: shut down and aborted on drop.
struct Running {
    gateway: Gateway,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.gateway.shutdown();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl Gatehouse {
    /// Starts gatehouse in front of `backend_url` with `extra` YAML.
    pub async fn start(backend_url: &str, extra: &str) -> Gatehouse {
        Gatehouse::start_with(&upstream(backend_url), extra).await
    }

    /// Starts gatehouse with the given `upstreams:` block and `extra` YAML.
    pub async fn start_with(upstreams: &str, extra: &str) -> Gatehouse {
        let certs = TestCerts::new();
        let yaml = config_yaml(&certs, upstreams, extra);
        Gatehouse::start_yaml(certs, &yaml).await
    }

    /// Writes `yaml`, a complete config using the test certificate `certs`
    /// (see [`config_yaml_with_auth`]), to `gatehouse.yaml` in its folder
    /// and starts gatehouse from it.
    pub async fn start_yaml(certs: TestCerts, yaml: &str) -> Gatehouse {
        let config_path = certs.dir.path().join("gatehouse.yaml");
        std::fs::write(&config_path, yaml).expect("write config");
        Gatehouse::start_config(certs, config_path).await
    }

    /// Starts gatehouse from the complete config file `config_path` (see
    /// [`config_yaml_with_auth`]), which uses the test certificate `certs`;
    /// listeners `http` and `admin` are required.
    pub async fn start_config(certs: TestCerts, config_path: PathBuf) -> Gatehouse {
        match Gatehouse::try_start_config(certs, config_path).await {
            Ok(gate) => gate,
            Err((_, e)) => panic!("gateway starts: {e}"),
        }
    }

    /// [`Gatehouse::start_config`], giving back `certs` with the error when the
    /// gateway does not start (the config must load and its listeners bind).
    async fn try_start_config(
        certs: TestCerts,
        config_path: PathBuf,
    ) -> Result<Gatehouse, (TestCerts, String)> {
        gatehouse::install_crypto_providers();
        let config = gatehouse::config::load(&config_path).expect("test config is valid");
        let listeners = Listeners::bind(&config.listen)
            .await
            .expect("bind test listeners");
        let (https, http, admin) = listeners.local_addrs();
        let gateway = match Gateway::new(config, prometheus::Registry::new()).await {
            Ok(gateway) => gateway,
            Err(e) => return Err((certs, e.to_string())),
        };
        let task = tokio::spawn(gateway.clone().run(listeners));
        Ok(Gatehouse {
            https,
            http: http.expect("http listener"),
            admin: admin.expect("admin listener"),
            running: Running {
                gateway: gateway.clone(),
                task: Some(task),
            },
            gateway,
            certs,
            config_path,
        })
    }

    /// Shuts down gracefully and waits (up to 10 s) until the gateway task
    /// ended; the certificate and its folder (config, store) live on.
    pub async fn stop(self) -> (TestCerts, PathBuf) {
        let Gatehouse {
            mut running,
            certs,
            config_path,
            ..
        } = self;
        running.gateway.shutdown();
        if let Some(task) = running.task.take() {
            tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .expect("gateway stops within 10 s")
                .expect("gateway task ends cleanly");
        }
        drop(running);
        (certs, config_path)
    }

    /// Stops gracefully and starts the same config file again, waiting (up
    /// to 10 s) while the stopped instance still holds on to its store.
    pub async fn restart(self) -> Gatehouse {
        let (mut certs, config_path) = self.stop().await;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            match Gatehouse::try_start_config(certs, config_path.clone()).await {
                Ok(gate) => return gate,
                Err((back, e)) if std::time::Instant::now() < deadline => {
                    eprintln!("gateway not started yet: {e}");
                    certs = back;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err((_, e)) => panic!("gateway does not start: {e}"),
            }
        }
    }

    /// `https://localhost:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.https.port())
    }

    /// A client trusting the test certificate, resolving `localhost` here.
    pub fn client(&self) -> reqwest::Client {
        self.client_builder().build().expect("reqwest client")
    }

    /// [`https_client_builder`] for this gatehouse.
    pub fn client_builder(&self) -> reqwest::ClientBuilder {
        https_client_builder(&self.certs, self.https)
    }

    /// A rustls client config trusting the test certificate, offering `alpn`.
    pub fn tls_client_config(&self, alpn: &[&[u8]]) -> rustls::ClientConfig {
        tls_client_config(&self.certs, alpn, None)
    }

    /// Sends raw bytes over TLS (HTTP/1.1) and returns everything the server
    /// answered until it closed the connection or went quiet for a second.
    pub async fn raw(&self, request: &[u8]) -> String {
        let mut tls = self.tls_connect(&[b"http/1.1"]).await;
        tls.write_all(request).await.expect("write raw request");
        read_until_quiet(&mut tls).await
    }

    /// A TLS connection to the HTTPS listener.
    pub async fn tls_connect(&self, alpn: &[&[u8]]) -> tokio_rustls::client::TlsStream<TcpStream> {
        try_tls_connect(self.https, self.tls_client_config(alpn))
            .await
            .expect("TLS handshake")
    }

    /// A WebSocket handshake (RFC 6455, over HTTP/1.1 and TLS) for `path`:
    /// the socket and the `101` answer, or the handshake's error.
    pub async fn websocket(
        &self,
        path: &str,
    ) -> tokio_tungstenite::tungstenite::Result<(
        tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>,
        tokio_tungstenite::tungstenite::handshake::client::Response,
    )> {
        let connector =
            tokio_tungstenite::Connector::Rustls(Arc::new(self.tls_client_config(&[b"http/1.1"])));
        let tcp = TcpStream::connect(self.https).await.expect("connect https");
        tokio_tungstenite::client_async_tls_with_config(
            format!("wss://localhost:{}{path}", self.https.port()),
            tcp,
            None,
            Some(connector),
        )
        .await
    }

    /// The admin listener's `/metrics` text.
    pub async fn metrics(&self) -> String {
        metrics::scrape(self.admin).await
    }

    /// Replaces the config file (reload it with `gateway.reload()`).
    pub fn write_config(&self, upstreams: &str, extra: &str) {
        std::fs::write(
            &self.config_path,
            config_yaml(&self.certs, upstreams, extra),
        )
        .expect("write config");
    }
}

/// A gatehouse's HTTPS listener, in this process ([`Gatehouse`]) or in the
/// real binary ([`Process`]), for helpers that work with either.
pub trait Https {
    /// `https://localhost:<port><path>`.
    fn url(&self, path: &str) -> String;
}

impl Https for Gatehouse {
    fn url(&self, path: &str) -> String {
        Gatehouse::url(self, path)
    }
}

impl Https for Process {
    fn url(&self, path: &str) -> String {
        Process::url(self, path)
    }
}

impl<T: Https> Https for Arc<T> {
    fn url(&self, path: &str) -> String {
        T::url(self, path)
    }
}

/// A client for the HTTPS listener at `https`, trusting `certs` and
/// resolving `localhost` to it; no proxy, no redirects, a 30 s timeout.
pub fn https_client_builder(certs: &TestCerts, https: SocketAddr) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .no_proxy()
        .add_root_certificate(reqwest::Certificate::from_pem(certs.pem.as_bytes()).expect("cert"))
        .resolve("localhost", https)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
}

/// A TLS handshake with `addr` as `localhost` using `config`; the error when
/// the connection or the handshake fails.
pub async fn try_tls_connect(
    addr: SocketAddr,
    config: rustls::ClientConfig,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
}

/// Replaces the address of every key in the `listen:` block with 127.0.0.1:0,
/// keeping the rest of the line (comments included).
pub fn listen_on_free_ports(yaml: &str) -> String {
    let mut in_listen = false;
    let mut replaced = 0;
    let mut out: Vec<String> = Vec::new();
    for line in yaml.lines() {
        if !line.starts_with([' ', '#']) && !line.is_empty() {
            in_listen = line.trim_end() == "listen:";
        }
        let trimmed = line.trim_start();
        if in_listen && line.starts_with(' ') && !trimmed.starts_with('#') {
            if let Some((key, value)) = line.split_once(": ") {
                let addr = value.split_whitespace().next().unwrap_or("");
                out.push(format!("{key}: {}", value.replacen(addr, "127.0.0.1:0", 1)));
                replaced += 1;
                continue;
            }
        }
        out.push(line.to_owned());
    }
    assert_eq!(
        replaced, 3,
        "https, http and admin in the shipped listen block"
    );
    out.join("\n") + "\n"
}

/// A loopback TCP port nobody listens on (bound a moment ago, then freed).
pub fn closed_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("local addr")
}

/// A fresh Rust backend and a gatehouse in front of it with the base config
/// ([`config_yaml`]: HS256 with [`JWT_SECRET`], issuer and audience
/// `gatehouse`) and `extra` top-level YAML.
pub async fn gate_with(extra: &str) -> (Backend, Gatehouse) {
    let backend = start_rust_backend().await;
    let gate = Gatehouse::start(&backend.url(""), extra).await;
    (backend, gate)
}

/// A rustls client config trusting `certs`, offering `alpn`, limited to `version` if given.
pub fn tls_client_config(
    certs: &TestCerts,
    alpn: &[&[u8]],
    version: Option<&'static rustls::SupportedProtocolVersion>,
) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(certs.der()).expect("add test root");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider);
    let builder = match version {
        Some(v) => builder.with_protocol_versions(&[v]),
        None => builder.with_safe_default_protocol_versions(),
    }
    .expect("protocol versions");
    let mut config = builder.with_root_certificates(roots).with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config
}

/// Reads until EOF, an error, or a second with no data.
pub async fn read_until_quiet<S: AsyncRead + Unpin>(stream: &mut S) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match tokio::time::timeout(Duration::from_secs(1), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Writes `request` on a plain TCP connection and reads the answer.
pub async fn raw_tcp(addr: SocketAddr, request: &[u8]) -> String {
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    tcp.write_all(request).await.expect("write");
    read_until_quiet(&mut tcp).await
}

/// The status code of a raw HTTP/1.1 response ("HTTP/1.1 400 …" → 400), or 0.
pub fn status_of(raw: &str) -> u16 {
    raw.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// The body of a raw HTTP/1.1 response (after the blank line).
pub fn body_of(raw: &str) -> &str {
    raw.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

/// Whether the read side reaches EOF (or an error) within `within`.
pub async fn wait_until_closed<S: AsyncRead + Unpin>(stream: &mut S, within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

/// The real `gatehouse` binary, started with a config file.
pub struct Process {
    pub child: Child,
    pub https: SocketAddr,
    pub admin: Option<SocketAddr>,
    /// Lines the process wrote to stdout (access log) so far.
    pub stdout: Arc<Mutex<Vec<String>>>,
    /// Lines the process wrote to stderr so far.
    pub stderr: Arc<Mutex<Vec<String>>>,
}

/// The path of the built `gatehouse` binary.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_gatehouse")
}

impl Process {
    /// Starts `gatehouse --config <config>` and waits for its listening line.
    pub fn spawn(config: &Path) -> Process {
        let mut child = Command::new(binary())
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn gatehouse");
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let out = child.stdout.take().expect("stdout");
        let err = child.stderr.take().expect("stderr");
        let lines = stdout.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                lines.lock().expect("lock").push(line);
            }
        });
        let lines = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if line.contains("gatehouse listening") {
                    let _ = tx.send(line.clone());
                }
                lines.lock().expect("lock").push(line);
            }
        });
        let line = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "gatehouse did not start; stderr:\n{}",
                    stderr.lock().expect("lock").join("\n")
                );
            }
        };
        let field = |name: &str| -> Option<SocketAddr> {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(&format!("{name}=")))
                .and_then(|v| v.trim_matches('"').parse().ok())
        };
        Process {
            https: field("https").expect("https address in the listening line"),
            admin: field("admin"),
            child,
            stdout,
            stderr,
        }
    }

    /// Sends a signal (`"HUP"`, `"TERM"`) to the process.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits for the process to exit, up to `within`; its exit code.
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let deadline = std::time::Instant::now() + within;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    pub fn stderr_text(&self) -> String {
        self.stderr.lock().expect("lock").join("\n")
    }

    /// `https://localhost:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.https.port())
    }

    /// [`https_client_builder`] for this process, which serves `certs`.
    pub fn client_builder(&self, certs: &TestCerts) -> reqwest::ClientBuilder {
        https_client_builder(certs, self.https)
    }

    /// A client for this process, which serves `certs`.
    pub fn client(&self, certs: &TestCerts) -> reqwest::Client {
        self.client_builder(certs).build().expect("reqwest client")
    }

    /// The admin listener's `/metrics` text.
    pub async fn metrics(&self) -> String {
        metrics::scrape(self.admin.expect("admin listener")).await
    }

    /// Waits (up to 5 s) until `/metrics` has the sample line `sample` (e.g.
    /// `gatehouse_config_reloads_total{result="success"} 1`); fails the test,
    /// showing the metrics and stderr, if it does not.
    pub async fn wait_for_sample(&self, sample: &str) {
        let (series, value) = sample.rsplit_once(' ').expect("a `series value` line");
        let value: f64 = value.parse().expect("a sample value");
        let admin = self.admin.expect("admin listener");
        let text = metrics::wait_for_sample(admin, series, value).await;
        assert!(
            find_sample(&text, series) == Some(value),
            "no `{sample}` in /metrics:\n{text}\nstderr:\n{}",
            self.stderr_text()
        );
    }

    /// Waits (up to 5 s) until some stderr line satisfies `pred` (`what`
    /// says which line, for the failure message), and returns it.
    pub async fn wait_for_stderr(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(line) = self.stderr.lock().expect("lock").iter().find(|l| pred(l)) {
                return line.clone();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no stderr line {what}; stderr:\n{}",
                self.stderr_text()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Kills the process with SIGKILL (`kill -9`: no shutdown, no flush)
    /// and reaps it.
    pub fn kill9(&mut self) {
        self.child.kill().expect("SIGKILL gatehouse");
        self.child.wait().expect("reap gatehouse");
    }

    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout.lock().expect("lock").clone()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A real `redis-server` on a free loopback port, killed on drop.
pub struct Redis {
    pub port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
    /// More `redis-server` arguments (a password, `--replicaof`).
    args: Vec<String>,
}

impl Redis {
    /// Starts `redis-server` (no persistence) and waits until it answers.
    pub fn start() -> Redis {
        Redis::start_with(&[])
    }

    /// [`Redis::start`] with more `redis-server` arguments.
    pub fn start_with(args: &[&str]) -> Redis {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
        let port = listener.local_addr().expect("addr").port();
        drop(listener);
        let dir = tempfile::tempdir().expect("redis dir");
        let mut redis = Redis {
            port,
            child: None,
            dir,
            args: args.iter().map(|a| a.to_string()).collect(),
        };
        redis.restart();
        redis
    }

    /// `redis://127.0.0.1:<port>/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Sends a signal (`"STOP"`, `"CONT"`) to the server.
    pub fn signal(&self, name: &str) {
        let pid = self.child.as_ref().expect("redis-server runs").id();
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(pid.to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Kills the server (for outage tests).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port.
    pub fn restart(&mut self) {
        self.kill();
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("redis-server missing ({e}): run scripts/test (it installs Debian's redis-server)")
            });
        self.child = Some(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
                use std::io::{Read, Write};
                let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
                let mut buf = [0u8; 16];
                // A server with a password answers -NOAUTH: it is up all the same.
                if s.write_all(b"PING\r\n").is_ok()
                    && s.read(&mut buf).is_ok_and(|n| {
                        buf[..n].starts_with(b"+PONG") || buf[..n].starts_with(b"-NOAUTH")
                    })
                {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("redis-server did not start on port {}", self.port);
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

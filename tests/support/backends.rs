//! Real backends for integration tests to put behind gatehouse: the axum app
//! of `examples/backend_app.rs` in a task, or the FastAPI chatbot of
//! `examples/chatbot` in a child process from the virtualenv `scripts/test`
//! creates. Both record what reached them, read back with [`recorded`]
//! (or [`Backend::requests`], [`only_request`], [`seen`] for one header).
//! The FastAPI one can be killed and started again on its port
//! ([`Backend::kill`], [`Backend::restart`]); [`start_raw_backend`] is a
//! bare TCP server that never answers, or answers bytes that are no HTTP.
//!
//! Expects the including crate to declare, next to this module,
//! `#[path = ".../examples/backend_app.rs"] mod backend_app;`.

// Each test crate uses only some of these helpers.
#![allow(dead_code)]

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// How long the FastAPI app gets to answer `/health`.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);

/// A running backend; dropping it stops it (even when the test panics).
pub struct Backend {
    pub addr: SocketAddr,
    /// `"rust"` or `"fastapi"`, for assertion messages.
    pub name: &'static str,
    running: Running,
}

enum Running {
    Task(tokio::task::JoinHandle<()>),
    /// The child (`None` once killed) and its extra environment.
    Process(Option<Child>, Vec<(String, String)>),
}

impl Backend {
    /// `http://<addr><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Every request this backend saw since its record was last cleared.
    pub async fn requests(&self) -> Vec<Value> {
        match recorded(self.addr).await {
            Value::Array(requests) => requests,
            other => panic!("recorded requests are an array: {other}"),
        }
    }
}

impl Backend {
    /// Kills the FastAPI backend with SIGKILL, as a crash would, and reaps
    /// it: its connections are reset, its port refuses connections.
    pub fn kill(&mut self) {
        let Running::Process(child, _) = &mut self.running else {
            panic!("only the FastAPI backend runs as a process that can be killed");
        };
        if let Some(mut child) = child.take() {
            // It may already be gone; nothing more to do then.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the killed FastAPI backend again on the same port and returns
    /// once it answers `/health` (its request record is empty again).
    pub async fn restart(&mut self) {
        self.kill();
        let Running::Process(_, env) = &self.running else {
            unreachable!("kill checked that this backend is a process");
        };
        let env = env.clone();
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        // The port may still be held for a moment by the killed process.
        while Instant::now() < deadline {
            self.running = Running::Process(Some(spawn_fastapi(self.addr, &env)), env.clone());
            if wait_healthy(self).await {
                return;
            }
            self.kill();
        }
        panic!("the FastAPI backend did not start again on {}", self.addr);
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        match &mut self.running {
            Running::Task(task) => task.abort(),
            Running::Process(..) => self.kill(),
        }
    }
}

/// The axum backend on `127.0.0.1:<free port>`, in a task of the current runtime.
pub async fn start_rust_backend() -> Backend {
    start_rust_backend_with(None).await
}

/// Keys for the Rust backend's assertion check: gatehouse's JWKS at
/// `jwks_url`, this backend's `audience`, gatehouse's `issuer`.
pub fn assertion_keys(
    jwks_url: &str,
    audience: &str,
    issuer: &str,
) -> std::sync::Arc<super::backend_app::assertion::AssertionKeys> {
    std::sync::Arc::new(super::backend_app::assertion::AssertionKeys::new(
        jwks_url, audience, issuer,
    ))
}

/// [`start_rust_backend`] whose `/verified/whoami` checks assertions with
/// `keys`.
pub async fn start_rust_backend_with(
    keys: Option<std::sync::Arc<super::backend_app::assertion::AssertionKeys>>,
) -> Backend {
    let (listener, addr) = bind_loopback().await;
    let task = tokio::spawn(async move {
        super::backend_app::serve(listener, keys)
            .await
            .expect("rust backend serves");
    });
    Backend {
        addr,
        name: "rust",
        running: Running::Task(task),
    }
}

/// The FastAPI chatbot under uvicorn on `127.0.0.1:<free port>`, once it
/// answers `/health`, with an empty request record.
///
/// Panics, naming the set-up command, when the virtualenv is missing.
pub async fn start_fastapi() -> Backend {
    start_fastapi_with(&[]).await
}

/// [`start_fastapi`] with more environment variables.
pub async fn start_fastapi_with(env: &[(&str, &str)]) -> Backend {
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    // Another process may take the free port before uvicorn binds it: retry.
    for _ in 0..3 {
        let addr = free_port();
        let mut backend = Backend {
            addr,
            name: "fastapi",
            running: Running::Process(Some(spawn_fastapi(addr, &env)), env.clone()),
        };
        if wait_healthy(&mut backend).await {
            clear_recorded(backend.addr).await;
            return backend;
        }
    }
    panic!("the FastAPI backend did not start (its stderr is above)");
}

/// uvicorn serving the FastAPI chatbot on `addr`, with more environment
/// variables `env`.
///
/// Panics, naming the set-up command, when the virtualenv is missing.
fn spawn_fastapi(addr: SocketAddr, env: &[(String, String)]) -> Child {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let venv = std::env::var_os("GATEHOUSE_TEST_VENV")
        .map_or_else(|| root.join("target/venv"), PathBuf::from);
    let python = venv.join("bin/python");
    assert!(
        python.exists(),
        "target/venv missing: run scripts/test (it creates the Python virtualenv); looked for {}",
        python.display()
    );
    Command::new(&python)
        .args(["-m", "uvicorn", "app:app", "--host", "127.0.0.1"])
        .args(["--port", &addr.port().to_string()])
        .args(["--log-level", "warning", "--no-access-log"])
        .current_dir(root.join("examples/chatbot"))
        // The app exits when this pipe closes, so it dies with the test
        // process even if `Drop` never runs.
        .env("CHATBOT_EXIT_ON_STDIN_EOF", "1")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|err| panic!("spawn {}: {err}", python.display()))
}

/// A listener on `127.0.0.1:<free port>`, and its address.
async fn bind_loopback() -> (tokio::net::TcpListener, SocketAddr) {
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind 127.0.0.1:0 for a backend");
    let addr = listener
        .local_addr()
        .expect("bound listener has an address");
    (listener, addr)
}

/// A port nobody listens on right now.
fn free_port() -> SocketAddr {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .expect("bind 127.0.0.1:0 to find a free port")
}

/// Polls `/health` until it answers 200 (true), the child exits or the
/// startup timeout passes (false).
async fn wait_healthy(backend: &mut Backend) -> bool {
    let client = client();
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    while Instant::now() < deadline {
        if let Running::Process(Some(child), _) = &mut backend.running {
            if !matches!(child.try_wait(), Ok(None)) {
                return false;
            }
        }
        let answer = client.get(backend.url("/health")).send().await;
        if answer.is_ok_and(|response| response.status().is_success()) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// A plain-HTTP client that ignores proxy settings in the environment.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("build a plain HTTP client")
}

/// Every request the backend at `addr` saw since the last [`clear_recorded`],
/// as a JSON array of `{"method","path","query","headers":[[name,value],..]}`.
pub async fn recorded(addr: SocketAddr) -> Value {
    client()
        .get(format!("http://{addr}/__requests"))
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .expect("GET /__requests")
        .json()
        .await
        .expect("/__requests is JSON")
}

/// Empties the backend's request record.
pub async fn clear_recorded(addr: SocketAddr) {
    client()
        .delete(format!("http://{addr}/__requests"))
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .expect("DELETE /__requests");
}

/// Every value of header `name` (lowercase) in a recorded request, or in an
/// echo of the request (`/echo` answers with the same shape).
pub fn seen<'a>(request: &'a Value, name: &str) -> Vec<&'a str> {
    request["headers"]
        .as_array()
        .expect("recorded headers are an array")
        .iter()
        .filter(|pair| pair[0].as_str() == Some(name))
        .filter_map(|pair| pair[1].as_str())
        .collect()
}

/// Asserts the backend received nothing since its record was last cleared.
pub async fn assert_never_seen(backend: &Backend, what: &str) {
    let seen = recorded(backend.addr).await;
    assert_eq!(seen, json!([]), "{}: the backend saw {what}", backend.name);
}

/// The one request the backend received since its record was last cleared;
/// clears the record.
pub async fn only_request(backend: &Backend, what: &str) -> Value {
    let seen = recorded(backend.addr).await;
    let list = seen.as_array().expect("recorded requests are an array");
    assert_eq!(
        list.len(),
        1,
        "{}: expected exactly one request for {what}, got {seen}",
        backend.name
    );
    clear_recorded(backend.addr).await;
    list[0].clone()
}

/// A bare TCP server standing in for a broken backend: it accepts every
/// connection and reads the request head, then answers `answer` and closes
/// — or, with `None`, never answers and holds the connection until the
/// other side closes it. Stops when dropped.
pub struct RawBackend {
    pub addr: SocketAddr,
    open: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl RawBackend {
    /// `http://<addr>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// How many connections are open now (from this side).
    pub fn open(&self) -> usize {
        self.open.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for RawBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts a [`RawBackend`] on `127.0.0.1:<free port>`.
pub async fn start_raw_backend(answer: Option<&'static [u8]>) -> RawBackend {
    use std::sync::atomic::Ordering;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (listener, addr) = bind_loopback().await;
    let open = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = open.clone();
    let task = tokio::spawn(async move {
        // Aborting this task drops the set, which aborts every connection.
        let mut conns = tokio::task::JoinSet::new();
        while let Ok((mut tcp, _)) = listener.accept().await {
            let open = counter.clone();
            open.fetch_add(1, Ordering::SeqCst);
            conns.spawn(async move {
                let mut seen = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    match tcp.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                    let head_done = seen.windows(4).any(|w| w == b"\r\n\r\n");
                    if let (true, Some(answer)) = (head_done, answer) {
                        let _ = tcp.write_all(answer).await;
                        let _ = tcp.shutdown().await;
                        break;
                    }
                }
                open.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    RawBackend { addr, open, task }
}

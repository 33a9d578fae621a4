//! The process's life, through the real `gatehouse` binary: SIGHUP reloads
//! (config and certificates), SIGTERM's graceful drain and `shutdown_grace`,
//! config errors found before any port is bound and never quoting a secret,
//! the CLI's helper commands, the JSON access log, and the first run of the
//! shipped config (SPEC §1, §2, §6, §7, §8).

mod support;

use std::ffi::OsStr;
use std::io::Read as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::Value;
use support::*;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long anything that should happen "at once" may take.
const SOON: Duration = Duration::from_secs(5);

/// A default route that answers 404, so a route with `auth: none` is visible.
const DENY: &str = "default_route:\n  auth: deny\n";
/// `/echo/**` open to everyone.
const ECHO_ROUTE: &str = "routes:\n  - name: echo\n    path: /echo/**\n    auth: none\n";

// ---------------------------------------------------------------- helpers

/// Writes `yaml` as `<temp>/config/gatehouse.yaml`, the repository's layout,
/// so that the default `../data/` (the embedded store) stays inside this
/// test's temp folder instead of being shared by every test in `/tmp`.
fn write_config(certs: &TestCerts, yaml: &str) -> PathBuf {
    write_config_as(certs, "gatehouse.yaml", yaml)
}

fn write_config_as(certs: &TestCerts, name: &str, yaml: &str) -> PathBuf {
    let dir = certs.dir.path().join("config");
    std::fs::create_dir_all(&dir).expect("config dir");
    let path = dir.join(name);
    std::fs::write(&path, yaml).expect("write config");
    path
}

/// The real binary running `config_yaml(certs, upstream(backend), extra)`.
fn spawn(certs: &TestCerts, backend: &Backend, extra: &str) -> (Process, PathBuf) {
    let path = write_config(
        certs,
        &config_yaml(certs, &upstream(&backend.url("")), extra),
    );
    (Process::spawn(&path), path)
}

async fn status(client: &reqwest::Client, process: &Process, path: &str) -> u16 {
    status_of_sent(client.get(process.url(path))).await
}

/// Reads one HTTP/1.1 response from a keep-alive connection (it stays
/// usable): the status and the raw body.
async fn read_response<S: AsyncRead + Unpin>(stream: &mut S) -> (u16, String) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let mut more = async |buf: &mut Vec<u8>| {
        let n = tokio::time::timeout(SOON, stream.read(&mut chunk))
            .await
            .expect("response in time")
            .expect("read response");
        assert!(
            n > 0,
            "connection closed mid-response: {:?}",
            String::from_utf8_lossy(buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    };
    let head_len = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        more(&mut buf).await;
    };
    let head = String::from_utf8_lossy(&buf[..head_len]).to_ascii_lowercase();
    let length = head.lines().find_map(|l| {
        l.strip_prefix("content-length:")
            .and_then(|v| v.trim().parse::<usize>().ok())
    });
    match length {
        Some(len) => {
            while buf.len() < head_len + len {
                more(&mut buf).await;
            }
        }
        None => {
            assert!(head.contains("transfer-encoding: chunked"), "{head}");
            while !buf[head_len..].ends_with(b"0\r\n\r\n") {
                more(&mut buf).await;
            }
        }
    }
    (
        status_of(&head),
        String::from_utf8_lossy(&buf[head_len..]).into_owned(),
    )
}

/// A TLS connection (HTTP/1.1) to `https` trusting only `trust`.
async fn tls_connect(
    https: SocketAddr,
    trust: &TestCerts,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    try_tls_connect(https, tls_client_config(trust, &[b"http/1.1"], None)).await
}

/// What a finished CLI run left behind.
struct Output {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs the binary with `args` (and without `env_remove`), giving it `SOON`
/// to exit; a run that does not exit is killed and fails the test.
fn run_cli<S: AsRef<OsStr>>(args: &[S], env_remove: &[&str]) -> Output {
    let mut cmd = Command::new(binary());
    cmd.args(args)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for name in env_remove {
        cmd.env_remove(name);
    }
    let mut child = cmd.spawn().expect("spawn gatehouse");
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + SOON;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for gatehouse") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "gatehouse {:?} did not exit within {SOON:?}; stderr:\n{}",
                args.iter().map(|a| a.as_ref()).collect::<Vec<_>>(),
                err.join().unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Output {
        code: status.code(),
        stdout: out.join().expect("stdout reader"),
        stderr: err.join().expect("stderr reader"),
    }
}

/// `gatehouse --config <path>`.
fn run_with_config(path: &Path) -> Output {
    run_cli(&[OsStr::new("--config"), path.as_os_str()], &[])
}

/// A config (listeners on port 0, the test certificate, an upstream that is
/// never contacted) with `extra` YAML appended.
fn static_config(certs: &TestCerts, extra: &str) -> String {
    config_yaml(certs, &upstream("http://127.0.0.1:9"), extra)
}

// ----------------------------------------------------------------- reload

#[tokio::test(flavor = "multi_thread")]
async fn sighup_swaps_in_the_new_routes_and_counts_a_successful_reload() {
    let backend = start_rust_backend().await;
    let certs = TestCerts::new();
    let (process, path) = spawn(&certs, &backend, DENY);
    let client = process.client_builder(&certs).build().expect("client");
    assert_eq!(status(&client, &process, "/echo").await, 404);
    process
        .wait_for_sample(r#"gatehouse_config_reloads_total{result="success"} 0"#)
        .await;

    let yaml = config_yaml(
        &certs,
        &upstream(&backend.url("")),
        &format!("{ECHO_ROUTE}{DENY}"),
    );
    std::fs::write(&path, yaml).expect("rewrite config");
    process.signal("HUP");
    process
        .wait_for_sample(r#"gatehouse_config_reloads_total{result="success"} 1"#)
        .await;

    assert_eq!(status(&client, &process, "/echo").await, 200);
    assert_eq!(status(&client, &process, "/echo/deeper").await, 200);
    assert_eq!(status(&client, &process, "/elsewhere").await, 404);
    assert!(
        process
            .metrics()
            .await
            .contains(r#"gatehouse_config_reloads_total{result="error"} 0"#),
        "a good reload is not an error"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_with_an_invalid_config_keeps_serving_the_old_one_and_says_why() {
    let backend = start_rust_backend().await;
    let certs = TestCerts::new();
    let (process, path) = spawn(&certs, &backend, &format!("{ECHO_ROUTE}{DENY}"));
    let client = process.client_builder(&certs).build().expect("client");
    assert_eq!(status(&client, &process, "/echo").await, 200);

    // Valid YAML that would open everything, but with an unknown key.
    let yaml = config_yaml(
        &certs,
        &upstream(&backend.url("")),
        &format!("{OPEN}bogus_key: 1\n"),
    );
    std::fs::write(&path, yaml).expect("rewrite config");
    process.signal("HUP");
    process
        .wait_for_sample(r#"gatehouse_config_reloads_total{result="error"} 1"#)
        .await;

    let file = path.display().to_string();
    let line = process
        .wait_for_stderr("naming the file and the unknown key", |l| {
            l.contains(&file) && l.contains("bogus_key")
        })
        .await;
    assert!(line.contains("unknown field"), "reason missing: {line}");

    // The old config still answers: /echo open, everything else 404.
    assert_eq!(status(&client, &process, "/echo").await, 200);
    assert_eq!(status(&client, &process, "/elsewhere").await, 404);
    assert!(process
        .metrics()
        .await
        .contains(r#"gatehouse_config_reloads_total{result="success"} 0"#));
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_rotates_the_certificate_for_new_connections_while_open_ones_keep_working() {
    let backend = start_rust_backend().await;
    let certs = TestCerts::new();
    let (process, _path) = spawn(&certs, &backend, OPEN);

    let mut old_conn = tls_connect(process.https, &certs)
        .await
        .expect("TLS with the first certificate");
    let request = b"GET /echo HTTP/1.1\r\nHost: localhost\r\n\r\n";
    old_conn.write_all(request).await.expect("first request");
    assert_eq!(read_response(&mut old_conn).await.0, 200);

    // A new self-signed pair replaces the files the config names.
    let rotated = TestCerts::new();
    assert_ne!(rotated.der(), certs.der());
    std::fs::copy(&rotated.key, &certs.key).expect("replace key");
    std::fs::copy(&rotated.cert, &certs.cert).expect("replace cert");
    process.signal("HUP");
    process
        .wait_for_sample(r#"gatehouse_config_reloads_total{result="success"} 1"#)
        .await;

    // The connection opened before the rotation still serves requests.
    old_conn.write_all(request).await.expect("second request");
    assert_eq!(read_response(&mut old_conn).await.0, 200);

    // A new connection is handed the new certificate...
    let mut new_conn = tls_connect(process.https, &rotated)
        .await
        .expect("TLS with the rotated certificate");
    let peer = new_conn
        .get_ref()
        .1
        .peer_certificates()
        .expect("peer certs");
    assert_eq!(
        peer[0],
        rotated.der(),
        "new connections see the new certificate"
    );
    new_conn.write_all(request).await.expect("request");
    assert_eq!(read_response(&mut new_conn).await.0, 200);

    // ...and a client that only trusts the old one is turned away.
    assert!(
        tls_connect(process.https, &certs).await.is_err(),
        "the old certificate is no longer served"
    );
}

// --------------------------------------------------------------- shutdown

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_stops_accepting_but_lets_streams_finish_then_exits_zero() {
    let backend = start_rust_backend().await;
    let certs = TestCerts::new();
    let (mut process, _path) = spawn(
        &certs,
        &backend,
        &open_with_server("  shutdown_grace: 10s\n"),
    );
    let stream = process.url("/chat/stream?n=6&interval_ms=300");

    // One stream over HTTP/1.1 and one over HTTP/2: each drains its own way.
    let h1 = process
        .client_builder(&certs)
        .http1_only()
        .build()
        .expect("client");
    let h2 = process.client_builder(&certs).build().expect("client");
    let (first1, got1) = tokio::sync::oneshot::channel();
    let (first2, got2) = tokio::sync::oneshot::channel();
    let s1 = tokio::spawn(count_events(
        h1,
        stream.clone(),
        reqwest::Version::HTTP_11,
        first1,
    ));
    let s2 = tokio::spawn(count_events(h2, stream, reqwest::Version::HTTP_2, first2));
    got1.await.expect("first HTTP/1.1 event");
    got2.await.expect("first HTTP/2 event");

    process.signal("TERM");
    let term = Instant::now();

    // New connections are refused while the streams are still running.
    let deadline = term + Duration::from_secs(1);
    while TcpStream::connect(process.https).await.is_ok() {
        assert!(
            Instant::now() < deadline,
            "still accepting connections after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        !s1.is_finished() && !s2.is_finished(),
        "the streams were cut instead of drained"
    );

    assert_eq!(s1.await.expect("h1 stream"), (6, true), "HTTP/1.1 stream");
    assert_eq!(s2.await.expect("h2 stream"), (6, true), "HTTP/2 stream");
    let code = tokio::task::block_in_place(|| process.wait_exit(SOON));
    assert_eq!(code, Some(0), "stderr:\n{}", process.stderr_text());
    assert!(
        term.elapsed() < Duration::from_secs(4),
        "took {:?} to exit after a ~1.5s stream",
        term.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_exits_zero_after_shutdown_grace_even_with_a_stream_unfinished() {
    let backend = start_rust_backend().await;
    let certs = TestCerts::new();
    let (mut process, _path) = spawn(
        &certs,
        &backend,
        &open_with_server("  shutdown_grace: 1s\n"),
    );
    let client = process.client_builder(&certs).build().expect("client");
    let (first, got) = tokio::sync::oneshot::channel();
    let stream = tokio::spawn(count_events(
        client,
        process.url("/chat/stream?n=10&interval_ms=500"),
        reqwest::Version::HTTP_2,
        first,
    ));
    got.await.expect("first event");

    process.signal("TERM");
    let term = Instant::now();
    let code = tokio::task::block_in_place(|| process.wait_exit(SOON));
    let took = term.elapsed();
    assert_eq!(code, Some(0), "stderr:\n{}", process.stderr_text());
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_millis(2500),
        "exited {took:?} after SIGTERM with shutdown_grace 1s"
    );
    let (events, _) = tokio::time::timeout(SOON, stream)
        .await
        .expect("the client sees the stream end when gatehouse exits")
        .expect("stream task");
    assert!(events < 10, "the 5s stream cannot have finished: {events}");
}

// ---------------------------------------------------------- config errors

#[test]
fn unknown_key_exits_1_naming_the_file_the_key_path_and_line_and_column() {
    let certs = TestCerts::new();
    let path = write_config(
        &certs,
        &static_config(&certs, "server:\n  max_conections: 5\n"),
    );
    let out = run_with_config(&path);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    let err = &out.stderr;
    assert!(err.contains(&path.display().to_string()), "{err}");
    assert!(err.contains("server.max_conections"), "{err}");
    assert!(err.contains("unknown field"), "{err}");
    // config_yaml's lines, then `server:` and the bad key.
    let line = static_config(&certs, "")
        .lines()
        .take_while(|l| !l.is_empty())
        .count()
        + 2;
    assert!(
        err.contains(&format!("line {line} column 3")),
        "expected line {line} column 3: {err}"
    );
}

#[test]
fn unknown_top_level_key_is_named() {
    let certs = TestCerts::new();
    let path = write_config(&certs, &static_config(&certs, "rate_limit: {}\n"));
    let out = run_with_config(&path);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(
        out.stderr.contains(&path.display().to_string()),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("rate_limit"), "{}", out.stderr);
    assert!(out.stderr.contains("unknown field"), "{}", out.stderr);
}

#[test]
fn yaml_syntax_error_exits_1_with_its_line_and_column() {
    let certs = TestCerts::new();
    // An unterminated quote on line 2.
    let path = write_config(&certs, "listen:\n  https: \"127.0.0.1:0\ntls:\n  cert: x\n");
    let out = run_with_config(&path);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(
        out.stderr.contains(&path.display().to_string()),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("line 2 column 10"), "{}", out.stderr);
}

#[test]
fn unset_environment_variable_is_named() {
    const VAR: &str = "GATEHOUSE_LIFECYCLE_TEST_UNSET";
    let certs = TestCerts::new();
    let yaml = config_yaml(&certs, &upstream(&format!("${{{VAR}}}")), "");
    let path = write_config(&certs, &yaml);
    let out = run_cli(&[OsStr::new("--config"), path.as_os_str()], &[VAR]);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(
        out.stderr.contains(&path.display().to_string()),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains(VAR), "{}", out.stderr);
    assert!(out.stderr.contains("upstreams.app.url"), "{}", out.stderr);
}

#[test]
fn api_key_id_or_role_that_cannot_be_an_identity_header_is_named() {
    // The id becomes X-Auth-User and the roles X-Auth-Roles (comma-joined):
    // a comma or a control character would change what the backend reads.
    let certs = TestCerts::new();
    let sha = "0".repeat(64);
    for (key, id, role) in [
        ("auth.api_keys.keys[0].id", "ci,admin", "service"),
        ("auth.api_keys.keys[0].roles[0]", "ci", "user,admin"),
    ] {
        let auth = jwt_auth(&format!(
            "  api_keys:\n    keys:\n      - id: \"{id}\"\n        sha256: \"{sha}\"\n        roles: [\"{role}\"]\n"
        ));
        let yaml = config_yaml_with_auth(&certs, &upstream("http://127.0.0.1:9"), &auth, "");
        let path = write_config(&certs, &yaml);
        let out = run_with_config(&path);
        assert_eq!(out.code, Some(1), "{key}: {}", out.stderr);
        assert!(out.stderr.contains(key), "{key}: {}", out.stderr);
    }
}

#[test]
fn wrong_type_names_the_key_path() {
    let certs = TestCerts::new();
    let path = write_config(
        &certs,
        &static_config(&certs, "server:\n  max_connections: lots\n"),
    );
    let out = run_with_config(&path);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(
        out.stderr.contains("server.max_connections"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("lots"), "{}", out.stderr);
}

#[test]
fn config_error_is_reported_before_any_port_is_bound() {
    let held = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a port to hold");
    let addr = held.local_addr().expect("held address");
    let certs = TestCerts::new();
    let with_https = |extra: &str| {
        static_config(&certs, extra).replace("https: 127.0.0.1:0", &format!("https: {addr}"))
    };

    // The premise: with a valid config, the held port is a start-up error.
    let path = write_config(&certs, &with_https(""));
    let out = run_with_config(&path);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(out.stderr.contains(&addr.to_string()), "{}", out.stderr);

    // With a config error too, the config error is all that is reported.
    let path = write_config(&certs, &with_https("server:\n  bogus: 1\n"));
    let out = run_with_config(&path);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(out.stderr.contains("server.bogus"), "{}", out.stderr);
    assert!(
        !out.stderr.contains("cannot listen") && !out.stderr.to_lowercase().contains("in use"),
        "a port was bound before the config was validated: {}",
        out.stderr
    );
    drop(held);
}

/// A 38-byte HS256 secret that must never appear in any output.
const SECRET: &str = "SUPERSECRET-7f3a9c1e5b2d8f4a6c0e9b7d1f";

fn secret_config(certs: &TestCerts, secret: &str, extra: &str) -> String {
    static_config(certs, extra).replace(JWT_SECRET, &format!("\"{secret}\""))
}

fn assert_no_secret(out: &Output, secret: &str) {
    for (name, text) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        assert!(!text.contains(secret), "{name} shows the secret: {text}");
        // Not a fragment of it either.
        assert!(
            !text.contains(&secret[..16]),
            "{name} shows the secret: {text}"
        );
    }
}

/// Runs the binary on a config whose JWT secret is `secret`, asserting it
/// exits 1 with an error naming `auth.jwt.secret`; what the run printed.
fn run_with_a_refused_secret(secret: &str) -> Output {
    let certs = TestCerts::new();
    let path = write_config(&certs, &secret_config(&certs, secret, ""));
    let out = run_with_config(&path);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(out.stderr.contains("auth.jwt.secret"), "{}", out.stderr);
    out
}

#[test]
fn config_error_elsewhere_never_prints_the_jwt_secret() {
    let certs = TestCerts::new();
    let yaml = secret_config(&certs, SECRET, "cors:\n  allowed_origins: 7\n  nope: 1\n");
    assert!(yaml.contains(SECRET));
    let path = write_config(&certs, &yaml);
    for args in [vec!["--config"], vec!["check", "--config"]] {
        let mut args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
        args.push(path.as_os_str());
        let out = run_cli(&args, &[]);
        assert_eq!(out.code, Some(1), "{}", out.stderr);
        assert!(out.stderr.contains("cors"), "{}", out.stderr);
        assert_no_secret(&out, SECRET);
    }
}

#[test]
fn too_short_jwt_secret_is_an_error_on_its_key_that_never_prints_it() {
    let short = "SHORTSECRET-0123456789";
    let out = run_with_a_refused_secret(short);
    assert_no_secret(&out, short);
}

#[test]
fn malformed_interpolation_inside_the_jwt_secret_never_prints_it() {
    // A `${` without its `}` is an interpolation error on the secret itself.
    let secret = "SUPERSECRET-${7f3a9c1e5b2d8f4a6c0e9b7d1f";
    let out = run_with_a_refused_secret(secret);
    assert_no_secret(&out, "7f3a9c1e5b2d8f4a6c0e9b7d1f");
    assert_no_secret(&out, "SUPERSECRET-${7f3");
}

// -------------------------------------------------------------------- CLI

#[test]
fn check_exits_0_for_a_good_config_and_1_with_the_error_for_a_bad_one() {
    let certs = TestCerts::new();
    let good = write_config(&certs, &static_config(&certs, ""));
    let out = run_cli(
        &[
            OsStr::new("check"),
            OsStr::new("--config"),
            good.as_os_str(),
        ],
        &[],
    );
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);

    let bad = write_config_as(
        &certs,
        "bad.yaml",
        &static_config(&certs, "server:\n  idle_timeout: soon\n"),
    );
    let out = run_cli(
        &[OsStr::new("check"), OsStr::new("--config"), bad.as_os_str()],
        &[],
    );
    assert_eq!(out.code, Some(1), "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains(&bad.display().to_string()),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("server.idle_timeout"), "{}", out.stderr);
}

#[test]
fn check_finds_an_unreadable_certificate() {
    let certs = TestCerts::new();
    std::fs::write(&certs.cert, "not a certificate").expect("spoil the certificate");
    let path = write_config(&certs, &static_config(&certs, ""));
    let out = run_cli(
        &[
            OsStr::new("check"),
            OsStr::new("--config"),
            path.as_os_str(),
        ],
        &[],
    );
    assert_eq!(out.code, Some(1), "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains(&certs.cert.display().to_string()),
        "{}",
        out.stderr
    );
}

#[test]
fn gen_secret_prints_one_line_of_32_bytes_base64url() {
    let out = run_cli(&["gen-secret"], &[]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{:?}", out.stdout);
    assert_eq!(lines[0].len(), 43, "{:?}", lines[0]);
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(lines[0])
        .expect("base64url");
    assert_eq!(bytes.len(), 32);
    let again = run_cli(&["gen-secret"], &[]);
    assert_ne!(again.stdout, out.stdout, "secrets are random");
}

#[test]
fn gen_api_key_prints_the_key_then_a_yaml_entry_with_its_sha256() {
    let out = run_cli(&["gen-api-key", "--name", "ci-bot"], &[]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let (key, rest) = out.stdout.split_once('\n').expect("more than one line");
    assert!(key.len() >= 40, "a key with 256 bits: {key:?}");
    assert!(!key.contains(char::is_whitespace), "{key:?}");
    let hex = sha256_hex(key);
    assert!(
        rest.contains(&format!("- id: ci-bot\n  sha256: {hex}\n")),
        "{}",
        out.stdout
    );
    // What follows the key pastes as a list under `auth.api_keys.keys`.
    let entries: Vec<Value> = serde_yaml::from_str(rest).expect("a YAML list");
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["id"], "ci-bot");
    assert_eq!(entries[0]["sha256"], hex.as_str());
}

#[test]
fn version_prints_the_crate_version() {
    let out = run_cli(&["--version"], &[]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq!(
        out.stdout.trim(),
        format!("gatehouse {}", env!("CARGO_PKG_VERSION"))
    );
}

// ------------------------------------------------------------- access log

#[tokio::test(flavor = "multi_thread")]
async fn access_log_has_one_json_line_per_request_and_nothing_from_the_query() {
    let backend = start_rust_backend().await;
    let certs = TestCerts::new();
    let (process, _path) = spawn(&certs, &backend, &format!("{ECHO_ROUTE}{DENY}"));
    let client = process.client_builder(&certs).build().expect("client");

    // Forwarded, denied by the default route, and refused as ambiguous.
    let mut sent = Vec::new();
    for (path, want) in [
        ("/echo//a?api_key=SECRETVALUE&x=1", 200),
        ("/nowhere?api_key=SECRETVALUE", 404),
    ] {
        let res = client.get(process.url(path)).send().await.expect("request");
        assert_eq!(res.status(), want);
        let id = res.headers()["x-request-id"]
            .to_str()
            .expect("request id")
            .to_owned();
        let body = res.bytes().await.expect("body");
        sent.push((id, body.len()));
    }
    let mut tls = tls_connect(process.https, &certs).await.expect("TLS");
    tls.write_all(b"GET /a%2fb?api_key=SECRETVALUE HTTP/1.1\r\nHost: localhost\r\nX-Request-Id: refused-1\r\n\r\n")
        .await
        .expect("write");
    let (code, body) = read_response(&mut tls).await;
    assert_eq!(code, 400);
    sent.push(("refused-1".to_owned(), body.len()));

    let deadline = Instant::now() + SOON;
    let lines = loop {
        let lines = process.stdout_lines();
        let found = sent
            .iter()
            .all(|(id, _)| lines.iter().any(|l| l.contains(id.as_str())));
        if found {
            break lines;
        }
        assert!(
            Instant::now() < deadline,
            "access log lines missing: {lines:#?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert_eq!(lines.len(), 3, "one line per request: {lines:#?}");
    let logged: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();

    let expect = [
        ("/echo/a", 200, "echo", true),
        ("/nowhere", 404, "default", false),
        ("/a%2fb", 400, "default", false),
    ];
    for ((id, bytes), (path, code, route, forwarded)) in sent.iter().zip(expect) {
        let line = logged
            .iter()
            .find(|l| l["request_id"] == id.as_str())
            .expect("line for the request id");
        for field in [
            "timestamp",
            "request_id",
            "client_ip",
            "method",
            "path",
            "status",
            "route",
            "duration_ms",
            "bytes_sent",
        ] {
            assert!(!line[field].is_null(), "{field} missing: {line}");
        }
        assert_eq!(line["client_ip"], "127.0.0.1", "{line}");
        assert_eq!(line["method"], "GET", "{line}");
        assert_eq!(line["path"], path, "{line}");
        assert_eq!(line["status"], code, "{line}");
        assert_eq!(line["route"], route, "{line}");
        assert!(line["duration_ms"].is_number(), "{line}");
        assert_eq!(line["bytes_sent"], *bytes as u64, "{line}");
        assert_eq!(line["upstream_ms"].is_number(), forwarded, "{line}");
    }

    let all = format!("{}\n{}", lines.join("\n"), process.stderr_text());
    assert!(
        !all.contains("SECRETVALUE"),
        "the query string was logged:\n{all}"
    );
    assert!(
        !all.contains("api_key"),
        "the query string was logged:\n{all}"
    );
}

// -------------------------------------------------------------- first run

#[tokio::test(flavor = "multi_thread")]
async fn first_run_of_the_shipped_config_creates_a_self_signed_certificate_and_warns() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = tempfile::tempdir().expect("temp dir");
    let config_dir = root.path().join("config");
    std::fs::create_dir(&config_dir).expect("config dir");
    for entry in std::fs::read_dir(repo.join("config")).expect("read config/") {
        let entry = entry.expect("config/ entry");
        if entry.file_type().expect("file type").is_file() {
            std::fs::copy(entry.path(), config_dir.join(entry.file_name())).expect("copy");
        }
    }
    let shipped = std::fs::read_to_string(repo.join("config/gatehouse.yaml")).expect("shipped");
    let config = config_dir.join("gatehouse.yaml");
    std::fs::write(&config, listen_on_free_ports(&shipped)).expect("write config");
    let (cert, key) = (
        root.path().join("certs/server.crt"),
        root.path().join("certs/server.key"),
    );
    assert!(!cert.exists() && !root.path().join("data").exists());

    let process = Process::spawn(&config);

    assert!(cert.is_file() && key.is_file(), "certs/ created");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).expect("key").permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the key is private");
    }
    let warning = process
        .wait_for_stderr("warning about the self-signed certificate", |l| {
            l.contains("WARN") && l.contains("self-signed")
        })
        .await;
    assert!(warning.contains("server.crt"), "{warning}");

    // And it is the certificate served.
    let created = TestCerts {
        pem: std::fs::read_to_string(&cert).expect("read created cert"),
        cert,
        key,
        dir: root,
    };
    let tls = tls_connect(process.https, &created)
        .await
        .expect("TLS with the created certificate");
    assert_eq!(
        tls.get_ref().1.peer_certificates().expect("peer")[0],
        created.der()
    );
}

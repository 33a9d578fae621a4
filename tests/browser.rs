//! The example chatbot's browser UI (`examples/chatbot/static`, served by the
//! FastAPI app under `/ui/`) behind a real gatehouse running the shipped
//! quick-start config (`config/gatehouse.yaml`: browser sessions on, SPEC §9,
//! `/ui/**` taking `[session, jwt]`, the demo user), driven in Debian's
//! chromium by playwright-core (`tests/browser/chatbot.mjs`, which says step
//! by step what it does): a person signs in on the built-in page, chats with
//! the reply streamed over SSE, and signs out; forms auto-submitted from
//! another site or another origin of the same site never reach the app.
//!
//! Needs `node` (20 or later), `chromium` and `tests/browser/node_modules`:
//! `scripts/test` installs all three; this test fails, naming the command,
//! when one is missing.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;

/// The demo user of `config/users.yaml`, whose password README.md gives.
const USER: &str = "demo";
const PASSWORD: &str = "gatehouse-demo";

/// How long the whole browser script may take before the test gives up.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(120);

const CHROMIUM: &str = "/usr/bin/chromium";

/// The shipped upstream, as `config/gatehouse.yaml` writes it.
const SHIPPED_UPSTREAM: &str = "${GATEHOUSE_UPSTREAM:-http://127.0.0.1:8000}";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The repository's `config/` copied into a temp folder laid out like the
/// repository (its `certs/` holding a test certificate, so that
/// `self_signed_if_missing` has nothing to do), listening on free ports and
/// proxying to `backend`: the certificate, and the config's path.
fn shipped_config(backend: &Backend) -> (TestCerts, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (config_dir, certs_dir) = (dir.path().join("config"), dir.path().join("certs"));
    std::fs::create_dir(&config_dir).expect("config dir");
    std::fs::create_dir(&certs_dir).expect("certs dir");
    for name in ["gatehouse.yaml", "users.yaml"] {
        std::fs::copy(repo().join("config").join(name), config_dir.join(name)).expect("copy");
    }
    let (cert, key) = (certs_dir.join("server.crt"), certs_dir.join("server.key"));
    gatehouse::server::tls::create_self_signed(&cert, &key).expect("test certificate");
    let pem = std::fs::read_to_string(&cert).expect("read test certificate");

    let path = config_dir.join("gatehouse.yaml");
    let shipped = std::fs::read_to_string(&path).expect("shipped config");
    assert!(
        shipped.contains(SHIPPED_UPSTREAM),
        "the shipped config proxies to {SHIPPED_UPSTREAM}"
    );
    let yaml = listen_on_free_ports(&shipped).replace(SHIPPED_UPSTREAM, &backend.url(""));
    std::fs::write(&path, yaml).expect("write config");
    let certs = TestCerts {
        dir,
        cert,
        key,
        pem,
    };
    (certs, path)
}

/// Fails, naming the set-up command, unless node ≥ 20, chromium and the
/// script's packages are installed.
fn require_browser_tools() {
    let node = Command::new("node").arg("--version").output();
    let version = match node {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        _ => panic!(
            "node missing: run scripts/test (it installs Debian's nodejs and npm), \
             or `apt-get install nodejs npm`"
        ),
    };
    let major: u32 = version
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    assert!(
        major >= 20,
        "node {version} is too old for playwright-core (it needs 20 or later)"
    );
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} missing: run scripts/test (it installs Debian's chromium), \
         or `apt-get install chromium`"
    );
    assert!(
        repo()
            .join("tests/browser/node_modules/playwright-core/package.json")
            .exists(),
        "tests/browser/node_modules missing: run scripts/test, or `npm ci --prefix tests/browser`"
    );
}

/// Runs the browser script against `gate`, killing it after
/// [`SCRIPT_TIMEOUT`]; its output.
/// `cert` and `key` serve the same-site forger's page.
fn run_script(gate: &str, cert: &Path, key: &Path, screenshot: &Path) -> Output {
    let mut child = Command::new("node")
        .arg(repo().join("tests/browser/chatbot.mjs"))
        .args(["--gate", gate, "--user", USER, "--password", PASSWORD])
        .arg("--cert")
        .arg(cert)
        .arg("--key")
        .arg(key)
        .arg("--screenshot")
        .arg(screenshot)
        .args(["--chromium", CHROMIUM])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn node");
    // Drain both pipes while waiting, so a chatty script never blocks.
    let out = child.stdout.take().expect("stdout");
    let err = child.stderr.take().expect("stderr");
    let read = |mut pipe: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            buf
        })
    };
    let (out, err) = (read(Box::new(out)), read(Box::new(err)));
    let deadline = Instant::now() + SCRIPT_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for node") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let status = child.wait().expect("wait for the killed node");
            eprintln!("the browser script ran longer than {SCRIPT_TIMEOUT:?}: killed");
            break status;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Output {
        status,
        stdout: out.join().expect("stdout reader"),
        stderr: err.join().expect("stderr reader"),
    }
}

/// `(method, path, query, x-auth-user, x-auth-method, cookie)` of every request the app saw.
fn describe(requests: &[Value]) -> Vec<[String; 6]> {
    requests
        .iter()
        .map(|r| {
            let one = |name: &str| seen(r, name).join(", ");
            [
                r["method"].as_str().unwrap_or_default().to_owned(),
                r["path"].as_str().unwrap_or_default().to_owned(),
                r["query"].as_str().unwrap_or_default().to_owned(),
                one("x-auth-user"),
                one("x-auth-method"),
                one("cookie"),
            ]
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_browser_signs_in_chats_over_sse_and_forged_forms_never_reach_the_app() {
    require_browser_tools();
    let started = Instant::now();
    let backend = start_fastapi().await;
    let (certs, config) = shipped_config(&backend);
    let gw = Gatehouse::start_config(certs, config).await;
    // 127.0.0.1, not localhost: the forger's `http://localhost:<port>` page
    // is then another site, and `https://127.0.0.1:<port>` the same site.
    let gate = format!("https://127.0.0.1:{}", gw.https.port());
    let screenshot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser/chatbot.png");

    let script = {
        let (gate, screenshot) = (gate.clone(), screenshot.clone());
        let (cert, key) = (gw.certs.cert.clone(), gw.certs.key.clone());
        tokio::task::spawn_blocking(move || run_script(&gate, &cert, &key, &screenshot))
            .await
            .expect("browser script task")
    };
    let stdout = String::from_utf8_lossy(&script.stdout);
    let stderr = String::from_utf8_lossy(&script.stderr);
    assert!(
        script.status.success(),
        "the browser script failed ({}):\n{stdout}\n{stderr}",
        script.status
    );
    // What it did, step by step (`cargo test --test browser -- --nocapture`).
    eprintln!("{stdout}{stderr}");
    let result: Value = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .map(|json| serde_json::from_str(json).expect("RESULT is JSON"))
        .expect("a RESULT line");

    // What the browser saw.
    assert_eq!(result["signed_in_as"], USER, "{result}");
    let hello = format!("Hello {USER}! You said: ");
    assert!(
        result["reply"]
            .as_str()
            .is_some_and(|r| r.starts_with(&hello)),
        "{result}"
    );
    assert!(result["tokens"].as_u64() > Some(5), "{result}");
    // SameSite=Lax kept the cookie out of the cross-site POST: gatehouse saw
    // no session (401). Had a browser sent it, the CSRF check would have
    // answered 403; the script accepts either and this records which.
    let cross = &result["cross_site"];
    assert_eq!(cross["cookie_sent"], false, "{cross}");
    assert_eq!(cross["status"], 401, "{cross}");
    assert_eq!(cross["error"], "missing_credentials", "{cross}");
    // From another origin of the same site the cookie does come along, and
    // the CSRF check refuses it.
    let same = &result["same_site"];
    assert_eq!(same["cookie_sent"], true, "{same}");
    assert_eq!(same["sec_fetch_site"], "same-site", "{same}");
    assert_eq!(same["status"], 403, "{same}");
    assert_eq!(same["error"], "csrf_rejected", "{same}");
    assert_eq!(result["forged_sign_out"]["status"], 403, "{result}");
    assert!(
        std::fs::metadata(&screenshot).is_ok_and(|m| m.len() > 0),
        "no screenshot at {}",
        screenshot.display()
    );

    // What the app saw: the page, its script, its style, one message and its
    // reply stream, all as the demo user's session; never a forged form, never
    // gatehouse's cookie.
    let saw = describe(&backend.requests().await);
    let forged: Vec<_> = saw
        .iter()
        .filter(|[method, path, ..]| method == "POST" || path.starts_with("/auth"))
        .filter(|[_, _, _, user, method, _]| !(user == USER && method == "session"))
        .collect();
    assert!(forged.is_empty(), "the app saw forged requests: {forged:?}");
    let posts: Vec<_> = saw.iter().filter(|[m, ..]| m == "POST").collect();
    assert_eq!(posts.len(), 1, "one message posted: {saw:?}");
    assert_eq!(posts[0][1], "/ui/api/messages");
    assert!(
        saw.iter().any(|[m, p, _, u, am, _]| m == "GET"
            && p.starts_with("/ui/api/messages/")
            && p.ends_with("/reply")
            && u == USER
            && am == "session"),
        "the EventSource reached the app as the session's user: {saw:?}"
    );
    for [method, path, _, user, auth_method, cookie] in &saw {
        assert_eq!(
            (user.as_str(), auth_method.as_str()),
            (USER, "session"),
            "{method} {path}"
        );
        assert!(
            !cookie.contains("__Host-gatehouse"),
            "{method} {path}: {cookie}"
        );
    }

    // And gatehouse counted the refusals.
    let metrics = gw.metrics().await;
    assert_eq!(
        sample(&metrics, r#"gatehouse_csrf_rejected_total{route="ui"}"#),
        1.0,
        "the same-site form:\n{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            r#"gatehouse_csrf_rejected_total{route="auth_logout"}"#
        ),
        1.0,
        "the forged sign-out:\n{metrics}"
    );
    eprintln!(
        "browser test took {:?} (the script {} ms); screenshot {}",
        started.elapsed(),
        result["total_ms"],
        screenshot.display()
    );
}

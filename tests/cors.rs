//! CORS through a real gatehouse (real TLS), checked by what a browser would
//! see (SPEC §2 `cors`, §3.4 preflight, §3.8 response headers; the Fetch
//! standard's CORS protocol):
//!
//! - preflights are answered by gatehouse and never reach the backend: 204
//!   with the allow headers for an allowed origin, 403 otherwise; a `*.`
//!   origin matches subdomains only, with the same scheme and port;
//! - every other response to an allowed origin — the backend's, and
//!   gatehouse's own 401 and 429 — names that exact origin, allows
//!   credentials and varies on `Origin`; a backend's own CORS headers never
//!   get through;
//! - `allow_credentials` with a `*` origin is a config error;
//! - and a real headless Chromium, on a page served from `127.0.0.1`, can read
//!   a credentialed cross-origin response when its origin is allowed, and
//!   gets a network error when it is not.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use axum::response::{Html, IntoResponse};
use axum::routing::get;
use serde_json::Value;
use support::*;

const CHAT: &str = "https://chat.example.com";

/// The CORS policy of these tests: one exact origin and every subdomain of
/// example.org, over https on the default port.
const CORS: &str =
    "cors:\n  allowed_origins: [\"https://chat.example.com\", \"https://*.example.org\"]\n  \
                    allow_credentials: true\n  expose_headers: [X-Request-Id]\n";

/// `/echo/private/**` needs a JWT, `/echo/limited/**` is open with one
/// request per hour, the rest of `/echo/**` is open.
const ROUTES: &str = "routes:\n\
    \x20 - name: private\n    path: /echo/private/**\n    auth: jwt\n\
    \x20 - name: limited\n    path: /echo/limited/**\n    auth: none\n    rate_limit: {rate: 1/h, burst: 1}\n\
    \x20 - name: open\n    path: /echo/**\n    auth: none\n\
    default_route:\n  auth: deny\n";

// ---------------------------------------------------------------- helpers

async fn start(backend: &Backend) -> Gatehouse {
    Gatehouse::start(&backend.url(""), &format!("{CORS}{ROUTES}")).await
}

/// A preflight for `POST path` with `Authorization` from `origin`.
async fn preflight(
    gate: &Gatehouse,
    client: &reqwest::Client,
    path: &str,
    origin: &str,
) -> reqwest::Response {
    client
        .request(reqwest::Method::OPTIONS, gate.url(path))
        .header("Origin", origin)
        .header("Access-Control-Request-Method", "POST")
        .header(
            "Access-Control-Request-Headers",
            "authorization, content-type",
        )
        .send()
        .await
        .expect("preflight reaches gatehouse")
}

/// `GET path` with `Origin: origin` (none when `None`).
async fn get_from(
    gate: &Gatehouse,
    client: &reqwest::Client,
    path: &str,
    origin: Option<&str>,
) -> reqwest::Response {
    let mut req = client.get(gate.url(path));
    if let Some(o) = origin {
        req = req.header("Origin", o);
    }
    req.send().await.expect("request reaches gatehouse")
}

/// Every value of `name`, as text.
fn all(res: &reqwest::Response, name: &str) -> Vec<String> {
    res.headers()
        .get_all(name)
        .iter()
        .map(|v| v.to_str().expect("ASCII header").to_owned())
        .collect()
}

/// The comma-separated tokens of every `name` header, lowercased.
fn tokens(res: &reqwest::Response, name: &str) -> Vec<String> {
    all(res, name)
        .iter()
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect()
}

fn varies_on_origin(res: &reqwest::Response) -> bool {
    tokens(res, "vary").iter().any(|t| t == "origin")
}

/// The response lets a browser script of `origin` read it, credentials
/// included.
fn assert_cors_allowed(res: &reqwest::Response, origin: &str, what: &str) {
    assert_eq!(
        all(res, "access-control-allow-origin"),
        [origin],
        "{what}: exactly one Access-Control-Allow-Origin, the exact origin"
    );
    assert_eq!(
        all(res, "access-control-allow-credentials"),
        ["true"],
        "{what}"
    );
    assert_eq!(
        tokens(res, "access-control-expose-headers"),
        ["x-request-id"],
        "{what}"
    );
    assert!(varies_on_origin(res), "{what}: Vary {:?}", all(res, "vary"));
}

/// The response gives a browser script no access.
fn assert_no_cors(res: &reqwest::Response, what: &str) {
    for name in [
        "access-control-allow-origin",
        "access-control-allow-credentials",
        "access-control-expose-headers",
        "access-control-allow-methods",
    ] {
        assert!(
            !res.headers().contains_key(name),
            "{what}: unexpected {name}: {:?}",
            res.headers()
        );
    }
}

/// The `(method, path)` of every request the backend saw.
async fn backend_saw(backend: &Backend) -> Vec<(String, String)> {
    backend
        .requests()
        .await
        .iter()
        .map(|r| {
            (
                r["method"].as_str().unwrap_or_default().to_owned(),
                r["path"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

// ---------------------------------------------------------------- preflight

#[tokio::test]
async fn preflight_from_an_allowed_origin_gets_204_with_the_allow_headers_and_is_never_forwarded() {
    let backend = start_rust_backend().await;
    let gate = start(&backend).await;
    let client = gate.client();

    // On a route that needs a JWT too: a preflight carries no credentials.
    for path in ["/echo/open/x", "/echo/private/x"] {
        let res = preflight(&gate, &client, path, CHAT).await;
        assert_eq!(res.status(), 204, "{path}");
        assert_eq!(all(&res, "access-control-allow-origin"), [CHAT], "{path}");
        let methods = tokens(&res, "access-control-allow-methods");
        for m in ["get", "post", "put", "patch", "delete"] {
            assert!(methods.contains(&m.to_owned()), "{path}: {methods:?}");
        }
        let headers = tokens(&res, "access-control-allow-headers");
        for h in ["authorization", "content-type"] {
            assert!(headers.contains(&h.to_owned()), "{path}: {headers:?}");
        }
        assert_eq!(all(&res, "access-control-allow-credentials"), ["true"]);
        assert_eq!(all(&res, "access-control-max-age"), ["600"], "10m");
        assert!(varies_on_origin(&res), "Vary {:?}", all(&res, "vary"));
        assert!(res.bytes().await.expect("body").is_empty());
    }
    assert_eq!(backend_saw(&backend).await, [], "no preflight is forwarded");
}

#[tokio::test]
async fn preflight_from_an_unknown_origin_gets_403_forbidden_and_is_never_forwarded() {
    let backend = start_rust_backend().await;
    let gate = start(&backend).await;
    let client = gate.client();

    let res = preflight(&gate, &client, "/echo/open/x", "https://evil.example.net").await;
    assert_eq!(res.status(), 403);
    assert_no_cors(&res, "refused preflight");
    let body: Value = res.json().await.expect("403 body is JSON");
    assert_eq!(body["error"], "forbidden", "{body}");
    assert_eq!(backend_saw(&backend).await, [], "no preflight is forwarded");
}

#[tokio::test]
async fn a_wildcard_origin_matches_subdomains_only_with_the_same_scheme_and_port() {
    let backend = start_rust_backend().await;
    let gate = start(&backend).await;
    let client = gate.client();

    for origin in ["https://a.example.org", "https://b.c.example.org"] {
        let res = preflight(&gate, &client, "/echo/open/x", origin).await;
        assert_eq!(res.status(), 204, "{origin} is a subdomain");
        assert_eq!(all(&res, "access-control-allow-origin"), [origin]);
    }
    for (origin, why) in [
        ("https://example.org", "the apex is not a subdomain"),
        ("http://a.example.org", "another scheme"),
        ("https://a.example.org:8443", "another port"),
        (
            "https://evilexample.org",
            "not a subdomain, just the same ending",
        ),
        (
            "https://example.org.evil.net",
            "example.org is not the suffix",
        ),
        ("null", "an opaque origin"),
    ] {
        let res = preflight(&gate, &client, "/echo/open/x", origin).await;
        assert_eq!(res.status(), 403, "{origin}: {why}");
        assert_no_cors(&res, origin);
    }
    assert_eq!(backend_saw(&backend).await, []);
}

// ---------------------------------------------------------------- responses

#[tokio::test]
async fn responses_to_an_allowed_origin_carry_cors_headers_gatehouses_own_401_and_429_too() {
    let backend = start_rust_backend().await;
    let gate = start(&backend).await;
    let client = gate.client();
    let allowed = "https://a.example.org";
    let other = "https://evil.example.net";

    let res = get_from(&gate, &client, "/echo/open/x", Some(allowed)).await;
    assert_eq!(res.status(), 200);
    assert_cors_allowed(&res, allowed, "the backend's 200");
    let res = get_from(&gate, &client, "/echo/open/x", Some(other)).await;
    assert_eq!(res.status(), 200);
    assert_no_cors(&res, "the backend's 200 to another origin");
    assert!(varies_on_origin(&res), "the answer depends on Origin");
    let res = get_from(&gate, &client, "/echo/open/x", None).await;
    assert_no_cors(&res, "no Origin");

    let res = get_from(&gate, &client, "/echo/private/x", Some(CHAT)).await;
    assert_eq!(res.status(), 401);
    assert!(res.headers().contains_key("www-authenticate"));
    assert_cors_allowed(&res, CHAT, "gatehouse's 401");
    let res = get_from(&gate, &client, "/echo/private/x", Some(other)).await;
    assert_eq!(res.status(), 401);
    assert_no_cors(&res, "a 401 to another origin");
    assert!(varies_on_origin(&res));

    let res = get_from(&gate, &client, "/echo/limited/x", Some(allowed)).await;
    assert_eq!(res.status(), 200);
    assert_cors_allowed(&res, allowed, "a route-limited 200");
    let res = get_from(&gate, &client, "/echo/limited/x", Some(allowed)).await;
    assert_eq!(res.status(), 429);
    assert!(res.headers().contains_key("retry-after"));
    assert_cors_allowed(&res, allowed, "gatehouse's 429");
    let res = get_from(&gate, &client, "/echo/limited/x", Some(other)).await;
    assert_eq!(res.status(), 429);
    assert_no_cors(&res, "a 429 to another origin");
    assert!(varies_on_origin(&res));

    // Preflights come before rate limits (SPEC §3.4, §3.5).
    let res = preflight(&gate, &client, "/echo/limited/x", allowed).await;
    assert_eq!(res.status(), 204, "a preflight is not rate limited");
}

/// A backend that sets CORS headers of its own: `/star` the usual
/// `Access-Control-Allow-Origin: *`, `/everything` every CORS response
/// header, as a permissive CORS middleware would on any response; and an
/// open gatehouse with [`CORS`] in front of it.
async fn gate_before_cors_backend() -> (Gatehouse, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the CORS backend");
    let addr = listener.local_addr().expect("address");
    let app = axum::Router::new()
        .route(
            "/star",
            get(|| async {
                (
                    [
                        ("access-control-allow-origin", "*"),
                        ("vary", "Accept-Encoding"),
                    ],
                    "star",
                )
                    .into_response()
            }),
        )
        .route(
            "/everything",
            get(|| async {
                (
                    [
                        ("access-control-allow-origin", "*"),
                        ("access-control-allow-credentials", "true"),
                        ("access-control-allow-methods", "*"),
                        ("access-control-allow-headers", "*"),
                        ("access-control-expose-headers", "X-Backend-Secret"),
                        ("access-control-max-age", "86400"),
                    ],
                    "everything",
                )
                    .into_response()
            }),
        );
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .await
            .expect("CORS backend serves");
    });
    let gate = Gatehouse::start(&format!("http://{addr}"), &format!("{CORS}{OPEN}")).await;
    (gate, task)
}

#[tokio::test]
async fn a_backends_own_access_control_allow_origin_is_replaced_not_doubled() {
    let (gate, task) = gate_before_cors_backend().await;
    let client = gate.client();

    let res = get_from(&gate, &client, "/star", Some(CHAT)).await;
    assert_eq!(res.status(), 200);
    assert_cors_allowed(&res, CHAT, "backend sent `*`");
    let vary = tokens(&res, "vary");
    assert!(
        vary.contains(&"accept-encoding".to_owned()),
        "the backend's Vary stays: {vary:?}"
    );
    let res = get_from(&gate, &client, "/star", Some("https://evil.example.net")).await;
    assert_no_cors(&res, "backend's `*` to a disallowed origin");
    let res = get_from(&gate, &client, "/star", None).await;
    assert_no_cors(&res, "backend's `*` without Origin");
    task.abort();
}

#[tokio::test]
async fn a_backend_response_with_every_cors_header_still_gets_only_gatehouses_cors_headers() {
    let (gate, task) = gate_before_cors_backend().await;
    let client = gate.client();

    let res = get_from(&gate, &client, "/everything", Some(CHAT)).await;
    assert_eq!(res.status(), 200);
    assert_cors_allowed(&res, CHAT, "backend sent every CORS header");
    assert!(
        !res.headers().contains_key("access-control-max-age"),
        "only preflights carry Max-Age"
    );
    let res = get_from(
        &gate,
        &client,
        "/everything",
        Some("https://evil.example.net"),
    )
    .await;
    assert_no_cors(&res, "backend's CORS headers to a disallowed origin");
    task.abort();
}

// ---------------------------------------------------------------- config

#[test]
fn credentials_with_a_star_origin_is_a_config_error_naming_the_origin() {
    let certs = TestCerts::new();
    let path = certs.dir.path().join("gatehouse.yaml");
    let text = |credentials: bool| {
        config_yaml(
            &certs,
            &upstream("http://127.0.0.1:9"),
            &format!(
                "cors:\n  allowed_origins: [\"https://chat.example.com\", \"*\"]\n  \
                 allow_credentials: {credentials}\n"
            ),
        )
    };
    let err = gatehouse::config::parse(&path, &text(true))
        .expect_err("credentials with a `*` origin is refused");
    assert_eq!(err.key, "cors.allowed_origins[1]");
    let message = err.to_string();
    assert!(message.contains("cors.allowed_origins[1]"), "{message}");
    assert!(message.contains("allow_credentials"), "{message}");
    gatehouse::config::parse(&path, &text(false)).expect("`*` without credentials is fine");
}

// ---------------------------------------------------------------- browser

/// How long Chromium may take for one page before the test gives up.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(30);

/// The test page: two credentialed `fetch()`es of `gate` — with an
/// `Authorization` header (so a preflight first), then without — each
/// writing what the script could read, or its error, into `#out`.
fn page(gate: &str, token: &str) -> String {
    format!(
        r#"<!doctype html>
<html><head><meta charset="utf-8"><title>cors</title></head>
<body><pre id="out">pending</pre>
<script>
const GATE = "{gate}";
async function attempt(label, init) {{
  try {{
    const res = await fetch(GATE + "/echo/browser", Object.assign({{credentials: "include"}}, init));
    const body = await res.json();
    const user = (body.headers || []).find(h => h[0] === "x-auth-user");
    return label + ": status=" + res.status
      + " user=" + (user ? user[1] : "-")
      + " error=" + (body.error || "-")
      + " request-id=" + (res.headers.get("X-Request-Id") ? "readable" : "hidden");
  }} catch (e) {{
    return label + ": fetch failed (" + e.name + ": " + e.message + ")";
  }}
}}
(async () => {{
  const lines = [];
  lines.push(await attempt("bearer", {{headers: {{"Authorization": "Bearer {token}"}}}}));
  lines.push(await attempt("anonymous", {{}}));
  const out = document.getElementById("out");
  out.textContent = lines.join("\n");
  out.setAttribute("data-done", "yes");
}})();
</script></body></html>
"#
    )
}

/// Serves `html` as `/page.html` on `listener` (plain HTTP).
fn serve_page(listener: tokio::net::TcpListener, html: String) -> tokio::task::JoinHandle<()> {
    let app = axum::Router::new().route("/page.html", get(move || async move { Html(html) }));
    tokio::spawn(async move {
        axum::serve(listener, app)
            .await
            .expect("page server serves");
    })
}

/// Loads `url` in headless Chromium and returns the DOM after the page's
/// script ran.
async fn chromium_dump_dom(url: String) -> String {
    tokio::task::spawn_blocking(move || {
        let profile = tempfile::tempdir().expect("profile dir");
        let out_path = profile.path().join("dom.html");
        let err_path = profile.path().join("chromium.log");
        let mut child = Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--ignore-certificate-errors",
                "--virtual-time-budget=5000",
                "--dump-dom",
            ])
            .arg(format!(
                "--user-data-dir={}",
                profile.path().join("profile").display()
            ))
            .arg(&url)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out_path).expect("DOM file"))
            .stderr(std::fs::File::create(&err_path).expect("log file"))
            .spawn()
            .unwrap_or_else(|e| {
                panic!("chromium missing: run scripts/test (it installs Debian's chromium) ({e})")
            });
        let deadline = Instant::now() + BROWSER_TIMEOUT;
        loop {
            if child.try_wait().expect("wait for chromium").is_some() {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "chromium did not finish within {BROWSER_TIMEOUT:?}; its log:\n{}",
                    read(&err_path)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let dom = read(&out_path);
        assert!(
            dom.contains("data-done"),
            "the page's script did not finish; DOM:\n{dom}\nchromium's log:\n{}",
            read(&err_path)
        );
        dom
    })
    .await
    .expect("chromium task")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Starts a gatehouse whose `allowed_origins` is `origins(page origin)` in
/// front of the Rust backend, serves the page on `127.0.0.1`, loads it in
/// Chromium: the DOM, the requests the backend saw, and gatehouse's metrics.
async fn browse(origins: impl FnOnce(&str) -> String) -> (String, Vec<(String, String)>, String) {
    let backend = start_rust_backend().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the page server");
    let page_origin = format!(
        "http://127.0.0.1:{}",
        listener.local_addr().expect("addr").port()
    );
    let cors = format!(
        "cors:\n  allowed_origins: [{}]\n  allow_credentials: true\n  expose_headers: [X-Request-Id]\n",
        origins(&page_origin)
    );
    let routes = "routes:\n  - name: echo\n    path: /echo/**\n    auth: jwt\ndefault_route:\n  auth: deny\n";
    let gate = Gatehouse::start(&backend.url(""), &format!("{cors}{routes}")).await;
    let server = serve_page(
        listener,
        page(&gate.url(""), &token_for("alice", &["user"])),
    );

    let started = Instant::now();
    let dom = chromium_dump_dom(format!("{page_origin}/page.html")).await;
    eprintln!("chromium took {:?}", started.elapsed());
    server.abort();
    (dom, backend_saw(&backend).await, gate.metrics().await)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_browser_page_from_an_allowed_origin_reads_credentialed_responses_even_a_401() {
    let (dom, saw, _) = browse(|page_origin| format!("\"{page_origin}\"")).await;
    assert!(
        dom.contains("bearer: status=200 user=alice error=- request-id=readable"),
        "the preflighted, credentialed fetch was readable (and X-Request-Id exposed):\n{dom}"
    );
    assert!(
        dom.contains("anonymous: status=401 user=- error=missing_credentials request-id=readable"),
        "gatehouse's own 401 was readable:\n{dom}"
    );
    assert_eq!(
        saw,
        [("GET".to_owned(), "/echo/browser".to_owned())],
        "the backend saw the authorized GET only, never the preflight"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_browser_page_from_an_origin_not_allowed_gets_a_fetch_error() {
    let (dom, saw, metrics) = browse(|_| format!("\"{CHAT}\"")).await;
    assert!(
        dom.contains("bearer: fetch failed (TypeError"),
        "the refused preflight is a network error to the script:\n{dom}"
    );
    assert!(
        dom.contains("anonymous: fetch failed (TypeError"),
        "a response without CORS headers is unreadable:\n{dom}"
    );
    assert_eq!(saw, [], "neither request reached the backend");
    // The browser did reach gatehouse: it was CORS that stopped the script.
    let answered = |method: &str, status: &str| {
        metrics.lines().any(|l| {
            l.starts_with("gatehouse_requests_total{")
                && l.contains(&format!("method=\"{method}\""))
                && l.contains(&format!("status=\"{status}\""))
        })
    };
    assert!(
        answered("OPTIONS", "403"),
        "the refused preflight:\n{metrics}"
    );
    assert!(answered("GET", "401"), "the anonymous GET:\n{metrics}");
}

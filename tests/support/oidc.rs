//! The identity providers gatehouse's OIDC tests sign in with (SPEC §10):
//! a test CA made at test time ([`TestCa`], trusted by gatehouse through
//! `ca_file`), the real OpenID provider of `tests/oidc` (panva's
//! oidc-provider on Node, [`RealProvider`]), a fake of GitHub's OAuth and
//! API endpoints ([`FakeGithub`] — GitHub itself cannot run here), and a
//! [`Browser`]: a client with a cookie jar of its own that follows
//! redirects by hand and fills in the provider's login and consent forms
//! as a person would.

// Each test crate uses only some of these helpers.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::pem::PemObject;
use serde_json::{json, Value};

/// A CA made for one test, and certificates it signs.
pub struct TestCa {
    pub dir: tempfile::TempDir,
    /// The CA certificate (PEM): what gatehouse's `ca_file` names.
    pub ca_file: PathBuf,
    pub ca_pem: String,
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl TestCa {
    pub fn new() -> TestCa {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "gatehouse test CA");
        let key = KeyPair::generate().expect("CA key");
        let issuer = CertifiedIssuer::self_signed(params, key).expect("CA certificate");
        let ca_pem = issuer.pem();
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, &ca_pem).expect("write CA");
        TestCa {
            dir,
            ca_file,
            ca_pem,
            issuer,
        }
    }

    /// A server certificate for `localhost` and `127.0.0.1`: (cert, key) files.
    pub fn server_cert(&self, name: &str) -> (PathBuf, PathBuf) {
        let params = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
            .expect("server params");
        let key = KeyPair::generate().expect("server key");
        let cert = params.signed_by(&key, &self.issuer).expect("server cert");
        let cert_path = self.dir.path().join(format!("{name}.crt"));
        let key_path = self.dir.path().join(format!("{name}.key"));
        std::fs::write(&cert_path, cert.pem()).expect("write cert");
        std::fs::write(&key_path, key.serialize_pem()).expect("write key");
        (cert_path, key_path)
    }

    pub fn reqwest_cert(&self) -> reqwest::Certificate {
        reqwest::Certificate::from_pem(self.ca_pem.as_bytes()).expect("CA cert")
    }
}

/// The `tests/oidc` folder.
pub fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oidc")
}

/// A client of the real provider, as gatehouse will be one.
pub struct Client {
    pub id: &'static str,
    pub secret: &'static str,
    pub auth: &'static str,
}

/// The real OpenID provider (panva's oidc-provider) in a child process;
/// stopped on drop. It logs every request it receives (method and path),
/// read back with [`RealProvider::requests`], and rotates its signing key
/// when told ([`RealProvider::rotate_key`]).
pub struct RealProvider {
    pub port: u16,
    pub issuer: String,
    child: Child,
    stdin: std::process::ChildStdin,
    /// Every line it printed, in order.
    lines: Arc<Mutex<Vec<String>>>,
    /// A client trusting the test CA, for log markers.
    client: reqwest::Client,
}

/// The path of the provider's JWKS (oidc-provider's default `jwks_uri`).
pub const JWKS_PATH: &str = "/jwks";
/// Requests to paths under this one mark a point in the request log.
const MARKER: &str = "/__log-marker/";

impl RealProvider {
    /// Starts it on `port` (0: any), with `clients` whose redirect URI is
    /// `redirect_uri`, and `accounts` (login → claims).
    pub fn start(
        ca: &TestCa,
        port: u16,
        redirect_uri: &str,
        clients: &[Client],
        accounts: Value,
    ) -> RealProvider {
        // A port picked free can be taken by another test before node
        // binds it: then try another (a port asked for is tried once).
        for _ in 0..5 {
            let chosen = if port == 0 {
                super::closed_port().port()
            } else {
                port
            };
            if let Some(provider) =
                Self::try_start(ca, chosen, redirect_uri, clients, accounts.clone())
            {
                return provider;
            }
            if port != 0 {
                break;
            }
        }
        panic!("the OpenID provider did not start listening (its output is above)");
    }

    /// Starts the provider on `port`; `None` if it does not listen (the
    /// port was taken, or it failed: its output says which).
    fn try_start(
        ca: &TestCa,
        port: u16,
        redirect_uri: &str,
        clients: &[Client],
        accounts: Value,
    ) -> Option<RealProvider> {
        let dir = fixture_dir();
        assert!(
            dir.join("node_modules/oidc-provider").is_dir(),
            "the OpenID provider is not installed: run `npm ci --prefix tests/oidc` \
             (scripts/test does)"
        );
        let (cert, key) = ca.server_cert(&format!("idp-{port}"));
        let clients: Vec<Value> = clients
            .iter()
            .map(|c| {
                json!({
                    "client_id": c.id,
                    "client_secret": c.secret,
                    "redirect_uris": [redirect_uri],
                    "token_endpoint_auth_method": c.auth,
                    "grant_types": ["authorization_code"],
                    "response_types": ["code"],
                })
            })
            .collect();
        let issuer = format!("https://127.0.0.1:{port}");
        let config = json!({
            "port": port,
            "issuer": issuer,
            "cert": cert,
            "key": key,
            "clients": clients,
            "accounts": accounts,
        });
        let config_path = ca.dir.path().join(format!("provider-{port}.json"));
        std::fs::write(&config_path, config.to_string()).expect("write provider config");
        let mut child = Command::new("node")
            .arg(dir.join("provider.mjs"))
            .arg(&config_path)
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("node starts (scripts/test installs Node.js)");
        // Its start-up warnings (development keys and storage, by design
        // here) are dropped; anything else it says reaches the test output.
        let stderr = child.stderr.take().expect("provider stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if !line.starts_with("oidc-provider WARNING") {
                    eprintln!("oidc-provider: {line}");
                }
            }
        });
        let stdout = child.stdout.take().expect("provider stdout");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let log = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with("listening ") {
                    let _ = tx.send(());
                }
                log.lock().expect("provider log").push(line);
            }
        });
        if rx.recv_timeout(Duration::from_secs(30)).is_err() {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        let stdin = child.stdin.take().expect("provider stdin");
        let client = reqwest::Client::builder()
            .add_root_certificate(ca.reqwest_cert())
            .build()
            .expect("a client of the provider");
        Some(RealProvider {
            port,
            issuer,
            child,
            stdin,
            lines,
            client,
        })
    }

    /// Rotates its signing key: from now on it signs with a new key (a new
    /// `kid`, first in its JWKS). The new `kid`.
    pub async fn rotate_key(&mut self) -> String {
        use std::io::Write as _;
        let rotated = |lines: &[String]| -> Vec<String> {
            lines
                .iter()
                .filter_map(|l| l.strip_prefix("rotated ").map(str::to_owned))
                .collect()
        };
        let before = rotated(&self.lines.lock().expect("provider log")).len();
        self.stdin
            .write_all(b"rotate\n")
            .and_then(|()| self.stdin.flush())
            .expect("tell the provider to rotate its key");
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(kid) = rotated(&self.lines.lock().expect("provider log")).get(before) {
                return kid.clone();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the provider did not rotate its key (its output is above)"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Every request it has received up to now, as `METHOD /path`, oldest
    /// first. Exact: a marker request is sent and the log read up to it,
    /// so nothing that reached the provider before this call is missing.
    pub async fn requests(&self) -> Vec<String> {
        let marker = format!("{MARKER}{}", rand::random::<u64>());
        // oidc-provider answers 404: only its log line matters.
        self.client
            .get(format!("{}{marker}", self.issuer))
            .send()
            .await
            .expect("the provider answers a marker request");
        let marker_line = format!("request GET {marker}");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            {
                let lines = self.lines.lock().expect("provider log");
                if let Some(at) = lines.iter().position(|l| *l == marker_line) {
                    return lines[..at]
                        .iter()
                        .filter_map(|l| l.strip_prefix("request "))
                        .filter(|r| !r.contains(MARKER))
                        .map(str::to_owned)
                        .collect();
                }
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the marker request never reached the provider's log"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// How many times its JWKS has been fetched up to now.
    pub async fn jwks_fetches(&self) -> usize {
        let want = format!("GET {JWKS_PATH}");
        self.requests().await.iter().filter(|r| **r == want).count()
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RealProvider {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What the fake GitHub knows: the user, their emails and organizations.
#[derive(Clone)]
pub struct GithubUser {
    pub login: &'static str,
    pub emails: Value,
    pub orgs: Vec<String>,
}

/// Organization names for a [`GithubUser`].
pub fn orgs(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| (*n).to_owned()).collect()
}

/// A fake of GitHub's OAuth endpoints and REST API (`/login/oauth/authorize`,
/// `/login/oauth/access_token`, `/api/user`, `/api/user/emails`,
/// `/api/user/orgs`) over HTTPS with the test CA: GitHub itself cannot run
/// here. It signs in [`GithubUser`] at once (no login form), checks the
/// client secret and PKCE verifier like GitHub does, pages `/user/orgs` as
/// GitHub does (`per_page`, default 30, at most 100; `page`; a `Link`
/// header with `next`, `last`, `first` and `prev`), and records the
/// authorization requests (`seen`) and API requests (`api`) it got.
pub struct FakeGithub {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<String>>>,
    /// Every request to its API, as `path?query`, oldest first.
    pub api: Arc<Mutex<Vec<String>>>,
    /// When set, the first page of `/user/orgs` names this as its `next`
    /// link instead of its own second page (a hostile `Link`).
    pub orgs_next: Arc<Mutex<Option<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeGithub {
    pub async fn start(ca: &TestCa, user: GithubUser) -> FakeGithub {
        let (cert, key) = ca.server_cert("fake-github");
        let certs = rustls::pki_types::CertificateDer::pem_file_iter(&cert)
            .expect("cert")
            .collect::<Result<Vec<_>, _>>()
            .expect("cert pem");
        let key = rustls::pki_types::PrivateKeyDer::from_pem_file(&key).expect("key pem");
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let api = Arc::new(Mutex::new(Vec::new()));
        let orgs_next = Arc::new(Mutex::new(None));
        let state = Arc::new(FakeState {
            user,
            base: format!("https://127.0.0.1:{}", addr.port()),
            codes: Mutex::new(HashMap::new()),
            seen: seen.clone(),
            api: api.clone(),
            orgs_next: orgs_next.clone(),
        });
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (acceptor, state) = (acceptor.clone(), state.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |req| {
                        let state = state.clone();
                        async move { Ok::<_, std::convert::Infallible>(state.answer(req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        FakeGithub {
            addr,
            seen,
            api,
            orgs_next,
            task,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.addr.port())
    }

    /// The API requests it got for `path` (e.g. `/api/user/orgs`), as
    /// `path?query`.
    pub fn api_requests(&self, path: &str) -> Vec<String> {
        self.api
            .lock()
            .expect("lock")
            .iter()
            .filter(|r| r.split('?').next() == Some(path))
            .cloned()
            .collect()
    }
}

impl Drop for FakeGithub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct FakeState {
    user: GithubUser,
    /// `https://127.0.0.1:<port>`: where its page links point.
    base: String,
    /// code → (PKCE challenge, redirect_uri)
    codes: Mutex<HashMap<String, (String, String)>>,
    seen: Arc<Mutex<Vec<String>>>,
    api: Arc<Mutex<Vec<String>>>,
    orgs_next: Arc<Mutex<Option<String>>>,
}

pub const GITHUB_CLIENT: &str = "gh-client";
pub const GITHUB_SECRET: &str = "gh-secret";
const GITHUB_TOKEN: &str = "gho_fake_access_token";

impl FakeState {
    async fn answer(
        &self,
        req: hyper::Request<hyper::body::Incoming>,
    ) -> hyper::Response<http_body_util::Full<bytes::Bytes>> {
        use http_body_util::BodyExt;
        let path = req.uri().path().to_owned();
        let query = req.uri().query().unwrap_or("").to_owned();
        if path.starts_with("/api/") {
            self.api
                .lock()
                .expect("lock")
                .push(format!("{path}?{query}"));
        }
        let params = |text: &str| -> HashMap<String, String> {
            form_urlencoded::parse(text.as_bytes())
                .into_owned()
                .collect()
        };
        let authorized = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            == Some(&format!("Bearer {GITHUB_TOKEN}"))
            || req
                .headers()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                == Some(&format!("token {GITHUB_TOKEN}"));
        let has_agent = req.headers().contains_key("user-agent");
        let basic = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let json = |status: u16, v: Value| {
            hyper::Response::builder()
                .status(status)
                .header("content-type", "application/json")
                .body(http_body_util::Full::new(bytes::Bytes::from(v.to_string())))
                .expect("response")
        };
        match path.as_str() {
            "/login/oauth/authorize" => {
                self.seen.lock().expect("lock").push(query.clone());
                let q = params(&query);
                let code = format!("code-{}", rand::random::<u64>());
                self.codes.lock().expect("lock").insert(
                    code.clone(),
                    (
                        q.get("code_challenge").cloned().unwrap_or_default(),
                        q.get("redirect_uri").cloned().unwrap_or_default(),
                    ),
                );
                let location = format!(
                    "{}?code={code}&state={}",
                    q.get("redirect_uri").cloned().unwrap_or_default(),
                    form_urlencoded::byte_serialize(
                        q.get("state").cloned().unwrap_or_default().as_bytes()
                    )
                    .collect::<String>()
                );
                hyper::Response::builder()
                    .status(302)
                    .header("location", location)
                    .body(http_body_util::Full::default())
                    .expect("response")
            }
            "/login/oauth/access_token" => {
                let body = req.into_body().collect().await.map(|b| b.to_bytes());
                let form = params(&String::from_utf8_lossy(&body.unwrap_or_default()));
                let basic_ok = basic.as_deref().is_some_and(|b| {
                    use base64::Engine as _;
                    let want = base64::engine::general_purpose::STANDARD
                        .encode(format!("{GITHUB_CLIENT}:{GITHUB_SECRET}"));
                    b == format!("Basic {want}")
                });
                let post_ok = form.get("client_id").map(String::as_str) == Some(GITHUB_CLIENT)
                    && form.get("client_secret").map(String::as_str) == Some(GITHUB_SECRET);
                let code = form.get("code").cloned().unwrap_or_default();
                let Some((challenge, redirect)) = self.codes.lock().expect("lock").remove(&code)
                else {
                    // GitHub answers 200 with an error for a bad code.
                    return json(200, json!({"error": "bad_verification_code"}));
                };
                let verifier = form.get("code_verifier").cloned().unwrap_or_default();
                let s256 = {
                    use base64::Engine as _;
                    use sha2::Digest as _;
                    base64::engine::general_purpose::URL_SAFE_NO_PAD
                        .encode(sha2::Sha256::digest(verifier.as_bytes()))
                };
                if !(basic_ok || post_ok)
                    || s256 != challenge
                    || form.get("redirect_uri") != Some(&redirect)
                {
                    return json(200, json!({"error": "incorrect_client_credentials"}));
                }
                json(
                    200,
                    json!({"access_token": GITHUB_TOKEN, "token_type": "bearer", "scope": "read:user,user:email"}),
                )
            }
            _ if !authorized || !has_agent => json(401, json!({"message": "Bad credentials"})),
            "/api/user" => json(200, json!({"login": self.user.login, "id": 42})),
            "/api/user/emails" => json(200, self.user.emails.clone()),
            "/api/user/orgs" => self.orgs_page(&params(&query)),
            _ => json(404, json!({"message": "Not Found"})),
        }
    }
}

impl FakeState {
    /// One page of `/user/orgs`, as GitHub pages it: `per_page` (default
    /// 30, at most 100) and `page` (from 1), with a `Link` header naming
    /// the `next`, `last`, `first` and `prev` pages that exist.
    fn orgs_page(
        &self,
        q: &HashMap<String, String>,
    ) -> hyper::Response<http_body_util::Full<bytes::Bytes>> {
        let number = |name: &str, default: usize| {
            q.get(name)
                .and_then(|v| v.parse::<usize>().ok())
                .filter(|n| *n > 0)
                .unwrap_or(default)
        };
        let per_page = number("per_page", 30).min(100);
        let page = number("page", 1);
        let orgs = &self.user.orgs;
        let last = orgs.len().div_ceil(per_page).max(1);
        let body: Vec<Value> = orgs
            .iter()
            .enumerate()
            .skip((page - 1).saturating_mul(per_page))
            .take(per_page)
            .map(|(i, o)| json!({"login": o, "id": i + 1}))
            .collect();
        let link = |n: usize, rel: &str| {
            format!(
                "<{}/api/user/orgs?per_page={per_page}&page={n}>; rel=\"{rel}\"",
                self.base
            )
        };
        let mut links = Vec::new();
        if page < last {
            let hostile = self.orgs_next.lock().expect("lock").clone();
            match hostile.filter(|_| page == 1) {
                Some(next) => links.push(format!("<{next}>; rel=\"next\"")),
                None => links.push(link(page + 1, "next")),
            }
            links.push(link(last, "last"));
        }
        if page > 1 {
            links.push(link(1, "first"));
            links.push(link(page - 1, "prev"));
        }
        let mut res = hyper::Response::builder()
            .status(200)
            .header("content-type", "application/json");
        if !links.is_empty() {
            res = res.header("link", links.join(", "));
        }
        res.body(http_body_util::Full::new(bytes::Bytes::from(
            Value::Array(body).to_string(),
        )))
        .expect("response")
    }
}

/// A browser: one client for gatehouse and every provider (it trusts the
/// gatehouse test certificate and the test CA), a cookie jar keyed by
/// host:port and name (paths and expiry are not modelled beyond
/// `Max-Age=0`), redirects followed by hand.
pub struct Browser {
    pub client: reqwest::Client,
    /// "host:port" → name → value.
    pub jar: Mutex<HashMap<String, HashMap<String, String>>>,
}

/// One response, read whole.
pub struct Page {
    pub status: u16,
    pub url: String,
    pub location: Option<String>,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Page {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }

    /// Every `Set-Cookie` value.
    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_owned))
            .collect()
    }
}

impl Browser {
    pub fn new(gateway: &super::Gatehouse, ca: &TestCa) -> Browser {
        let client = gateway
            .client_builder()
            .add_root_certificate(ca.reqwest_cert())
            .build()
            .expect("browser client");
        Browser {
            client,
            jar: Mutex::new(HashMap::new()),
        }
    }

    fn origin_key(url: &str) -> String {
        let u = url::Url::parse(url).expect("a URL");
        format!(
            "{}:{}",
            u.host_str().unwrap_or(""),
            u.port_or_known_default().unwrap_or(0)
        )
    }

    /// The cookies the jar holds for `url`'s host and port.
    pub fn cookies(&self, url: &str) -> HashMap<String, String> {
        self.jar
            .lock()
            .expect("lock")
            .get(&Self::origin_key(url))
            .cloned()
            .unwrap_or_default()
    }

    pub fn set_cookie(&self, url: &str, name: &str, value: &str) {
        self.jar
            .lock()
            .expect("lock")
            .entry(Self::origin_key(url))
            .or_default()
            .insert(name.to_owned(), value.to_owned());
    }

    /// Forgets every cookie of `url`'s origin (a provider's session).
    pub fn forget(&self, url: &str) {
        self.jar
            .lock()
            .expect("lock")
            .remove(&Self::origin_key(url));
    }

    pub fn remove_cookie(&self, url: &str, name: &str) {
        if let Some(c) = self
            .jar
            .lock()
            .expect("lock")
            .get_mut(&Self::origin_key(url))
        {
            c.remove(name);
        }
    }

    /// One request as a navigation, with the jar's cookies; `Set-Cookie`
    /// is stored.
    pub async fn request(
        &self,
        method: reqwest::Method,
        url: &str,
        form: Option<&[(String, String)]>,
    ) -> Page {
        let cookies = self.cookies(url);
        let mut req = self
            .client
            .request(method, url)
            .header("sec-fetch-mode", "navigate")
            .header("accept", "text/html,application/xhtml+xml");
        if !cookies.is_empty() {
            let header: Vec<String> = cookies.iter().map(|(n, v)| format!("{n}={v}")).collect();
            req = req.header("cookie", header.join("; "));
        }
        if let Some(form) = form {
            req = req.form(form);
        }
        let res = req.send().await.unwrap_or_else(|e| panic!("{url}: {e}"));
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let key = Self::origin_key(url);
        for set in headers.get_all("set-cookie") {
            let set = set.to_str().unwrap_or("");
            let pair = set.split(';').next().unwrap_or("");
            let Some((name, value)) = pair.split_once('=') else {
                continue;
            };
            let clears = set.to_ascii_lowercase().contains("max-age=0")
                || set
                    .to_ascii_lowercase()
                    .contains("expires=thu, 01 jan 1970");
            let mut jar = self.jar.lock().expect("lock");
            let site = jar.entry(key.clone()).or_default();
            if clears {
                site.remove(name.trim());
            } else {
                site.insert(name.trim().to_owned(), value.trim().to_owned());
            }
        }
        let location = headers
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(|l| {
                url::Url::parse(url)
                    .and_then(|base| base.join(l))
                    .map(|u| u.to_string())
                    .unwrap_or_else(|_| l.to_owned())
            });
        let body = res.text().await.unwrap_or_default();
        Page {
            status,
            url: url.to_owned(),
            location,
            headers,
            body,
        }
    }

    pub async fn get(&self, url: &str) -> Page {
        self.request(reqwest::Method::GET, url, None).await
    }

    /// Follows redirects from `url` until a response is not one, or until
    /// the next hop would be `stop_before` (a prefix, not fetched): the
    /// last response.
    pub async fn follow(&self, url: &str, stop_before: Option<&str>) -> Page {
        let mut page = self.get(url).await;
        for _ in 0..20 {
            match &page.location {
                Some(next) if (300..400).contains(&page.status) => {
                    if stop_before.is_some_and(|s| next.starts_with(s)) {
                        return page;
                    }
                    let next = next.clone();
                    page = self.get(&next).await;
                }
                _ => return page,
            }
        }
        panic!("too many redirects from {url}");
    }

    /// At the provider: fills in its login form as `login` and confirms
    /// consent, following its redirects, until it sends the browser to a
    /// URL starting with `back_to` (gatehouse's callback), which is
    /// returned unvisited.
    pub async fn sign_in_at_provider(&self, authorize: &str, login: &str, back_to: &str) -> String {
        let mut page = self.follow(authorize, Some(back_to)).await;
        for _ in 0..6 {
            if let Some(next) = &page.location {
                if next.starts_with(back_to) {
                    return next.clone();
                }
            }
            assert_eq!(
                page.status, 200,
                "a provider form at {}: {}",
                page.url, page.body
            );
            let (action, mut fields) = form_of(&page.body);
            if fields.iter().any(|(n, v)| n == "prompt" && v == "login") {
                fields.push(("login".into(), login.into()));
                fields.push(("password".into(), "any password".into()));
            }
            let action = url::Url::parse(&page.url)
                .and_then(|b| b.join(&action))
                .expect("form action")
                .to_string();
            let posted = self
                .request(reqwest::Method::POST, &action, Some(&fields))
                .await;
            page = match &posted.location {
                Some(next) if !next.starts_with(back_to) => self.follow(next, Some(back_to)).await,
                _ => posted,
            };
        }
        panic!("the provider never sent the browser back: {}", page.body);
    }
}

/// The first form of an HTML page: its action and hidden fields.
pub fn form_of(html: &str) -> (String, Vec<(String, String)>) {
    let attr = |tag: &str, name: &str| -> Option<String> {
        let key = format!("{name}=\"");
        let at = tag.find(&key)? + key.len();
        let end = tag[at..].find('"')? + at;
        Some(tag[at..end].replace("&amp;", "&"))
    };
    let form_at = html.find("<form").expect("a form on the page");
    let form_tag = &html[form_at..form_at + html[form_at..].find('>').expect("form tag end")];
    let action = attr(form_tag, "action").expect("form action");
    let mut fields = Vec::new();
    let mut rest = &html[form_at..];
    while let Some(i) = rest.find("<input") {
        let end = rest[i..].find('>').map_or(rest.len(), |e| i + e);
        let tag = &rest[i..end];
        if tag.contains("type=\"hidden\"") {
            if let (Some(n), Some(v)) = (attr(tag, "name"), attr(tag, "value")) {
                fields.push((n, v));
            }
        }
        rest = &rest[end..];
    }
    (action, fields)
}

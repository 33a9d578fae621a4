//! External issuers' keys fetched from a `jwks_url` over real HTTPS (SPEC §2
//! `auth.jwt.accept`; `src/auth/jwks.rs`).
//!
//! Each test runs its own IdP: a small HTTPS server (tokio-rustls + hyper)
//! on `127.0.0.1:0` with a certificate for `localhost`, serving a JWKS the
//! test can change, counting the connections and requests it gets, and
//! stoppable to play an IdP outage. gatehouse trusts it the way it trusts any
//! IdP: through the system roots, which `SSL_CERT_FILE` replaces here (set
//! once for this test binary, before any gateway starts, by [`pki`]).
//!
//! What is checked: the keys are fetched at start and used; a rotated-in key
//! is fetched on first use; made-up `kid`s cannot make gatehouse hammer the
//! IdP; an IdP outage keeps the keys already known; a JWKS behind an
//! untrusted certificate or over plain HTTP is never used; a token's own
//! `jku` is never followed.

mod support;

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use jsonwebtoken::jwk::{KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::Algorithm;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{json, Value};
use support::*;

/// The IdP's `iss`, as configured in `auth.jwt.accept`.
const ISSUER: &str = "https://idp.test/";
const AUDIENCE: &str = "chatbot";
/// Routes of every test gateway: everything under `/echo/` needs a JWT.
const ROUTES: &str = "routes:\n  - name: api\n    path: /echo/**\n    auth: jwt\n";
/// How long the first JWKS fetch (at start, in the background) may take.
const FIRST_FETCH: Duration = Duration::from_secs(5);

// --- certificates and SSL_CERT_FILE -----------------------------------------

/// A certificate for localhost/127.0.0.1/::1 and its key, as PEM files.
struct CertFiles {
    cert: PathBuf,
    key: PathBuf,
}

impl CertFiles {
    fn create(dir: &Path, name: &str) -> CertFiles {
        let cert = dir.join(format!("{name}.crt"));
        let key = dir.join(format!("{name}.key"));
        gatehouse::server::tls::create_self_signed(&cert, &key).expect("test certificate");
        CertFiles { cert, key }
    }

    fn pem(&self) -> String {
        std::fs::read_to_string(&self.cert).expect("read a test certificate")
    }
}

/// The certificates of this test binary.
struct Pki {
    _dir: tempfile::TempDir,
    /// The IdP's certificate: in `SSL_CERT_FILE`.
    idp: CertFiles,
    /// The attacker's certificate: in `SSL_CERT_FILE` too (a real attacker
    /// can get a publicly trusted certificate for their own host).
    attacker: CertFiles,
    /// A certificate that is not in `SSL_CERT_FILE`.
    untrusted: CertFiles,
}

/// Creates the certificates and points `SSL_CERT_FILE` at a bundle of the
/// trusted ones, once for the whole binary. Every test calls this first, so
/// the variable is set before any gateway reads the roots, and never again
/// while other threads run.
fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| {
        gatehouse::install_crypto_providers();
        let dir = tempfile::Builder::new()
            .prefix("jwks-pki-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .expect("temp dir for the test PKI");
        let idp = CertFiles::create(dir.path(), "idp");
        let attacker = CertFiles::create(dir.path(), "attacker");
        let untrusted = CertFiles::create(dir.path(), "untrusted");
        let bundle = dir.path().join("roots.pem");
        std::fs::write(&bundle, idp.pem() + &attacker.pem()).expect("write the root bundle");
        // Edition 2021: a safe function. Set once, before any gateway starts.
        std::env::set_var("SSL_CERT_FILE", &bundle);
        std::env::remove_var("SSL_CERT_DIR");
        Pki {
            _dir: dir,
            idp,
            attacker,
            untrusted,
        }
    })
}

fn server_tls(certs: &CertFiles) -> tokio_rustls::TlsAcceptor {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&certs.cert)
        .expect("read the IdP certificate")
        .collect::<Result<_, _>>()
        .expect("IdP certificate PEM");
    let key = PrivateKeyDer::from_pem_file(&certs.key).expect("IdP key PEM");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("IdP TLS config");
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

// --- the IdP's JWKS server --------------------------------------------------

/// A JWKS server on `127.0.0.1:<free port>`, answering every request with
/// the current document. Dropping it stops it.
struct Idp {
    addr: SocketAddr,
    jwks: Arc<Mutex<String>>,
    /// TCP connections accepted (TLS handshakes attempted).
    connections: Arc<AtomicUsize>,
    /// HTTP requests answered (JWKS fetches).
    fetches: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Idp {
    /// Serves `jwks` over HTTPS with `certs`, or over plain HTTP if `None`.
    async fn start(certs: Option<&CertFiles>, jwks: String) -> Idp {
        let tls = certs.map(server_tls);
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind the IdP");
        let addr = listener.local_addr().expect("IdP address");
        let jwks = Arc::new(Mutex::new(jwks));
        let connections = Arc::new(AtomicUsize::new(0));
        let fetches = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn(serve(
            listener,
            tls,
            jwks.clone(),
            connections.clone(),
            fetches.clone(),
        ));
        Idp {
            addr,
            jwks,
            connections,
            fetches,
            task,
        }
    }

    /// `https://localhost:<port>/jwks.json`.
    fn url(&self) -> String {
        format!("https://localhost:{}/jwks.json", self.addr.port())
    }

    fn set_jwks(&self, jwks: String) {
        *self.jwks.lock().expect("lock the JWKS") = jwks;
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Closes the port and every open connection (kept-alive ones too).
    async fn stop(&mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
        let refused = tokio::net::TcpStream::connect(self.addr).await.is_err();
        assert!(refused, "the stopped IdP still accepts connections");
    }

    /// Waits until the request count has not changed for 300 ms, so a fetch
    /// still under way is counted before a test takes a baseline.
    async fn settle(&self) -> usize {
        let mut last = self.fetches();
        loop {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let now = self.fetches();
            if now == last {
                return now;
            }
            last = now;
        }
    }
}

impl Drop for Idp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The accept loop. The connections are tasks of a `JoinSet` it owns, so
/// aborting the loop ends them too.
async fn serve(
    listener: tokio::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    jwks: Arc<Mutex<String>>,
    connections: Arc<AtomicUsize>,
    fetches: Arc<AtomicUsize>,
) {
    let mut open = tokio::task::JoinSet::new();
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        connections.fetch_add(1, Ordering::SeqCst);
        while open.try_join_next().is_some() {}
        let (jwks, fetches, tls) = (jwks.clone(), fetches.clone(), tls.clone());
        open.spawn(async move {
            let service = service_fn(move |_req: http::Request<hyper::body::Incoming>| {
                fetches.fetch_add(1, Ordering::SeqCst);
                let body = jwks.lock().expect("lock the JWKS").clone();
                async move {
                    let res = http::Response::builder()
                        .header(http::header::CONTENT_TYPE, "application/json")
                        .body(Full::new(Bytes::from(body)))
                        .expect("JWKS response");
                    Ok::<_, Infallible>(res)
                }
            });
            let http = hyper::server::conn::http1::Builder::new();
            match tls {
                Some(tls) => {
                    if let Ok(stream) = tls.accept(tcp).await {
                        let _ = http.serve_connection(TokioIo::new(stream), service).await;
                    }
                }
                None => {
                    let _ = http.serve_connection(TokioIo::new(tcp), service).await;
                }
            }
        });
    }
}

// --- keys and tokens --------------------------------------------------------

test_key!(
    /// The IdP's first key, `k1`.
    idp_k1,
    &rcgen::PKCS_RSA_SHA256
);
test_key!(
    /// The key the IdP rotates in, `k2`.
    idp_k2,
    &rcgen::PKCS_RSA_SHA256
);
test_key!(
    /// A key the IdP never published.
    attacker_key,
    &rcgen::PKCS_RSA_SHA256
);

/// A JWKS document with each key's public half under its `kid`, as the IdP
/// publishes them: kty RSA, n, e, `kid`, alg RS256, use sig.
fn idp_jwks(keys: &[(&KeyPem, &str)]) -> String {
    jwks(keys.iter().map(|(key, kid)| {
        let mut jwk = key.rsa_jwk(kid);
        jwk.common.key_algorithm = Some(KeyAlgorithm::RS256);
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        jwk
    }))
}

/// A valid IdP token for `sub` with `roles`.
fn claims(sub: &str, roles: &[&str]) -> Value {
    let now = now();
    json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": sub,
        "roles": roles,
        "iat": now,
        "exp": now + 300,
    })
}

/// A token for `sub` signed with `key` under `kid`.
fn token(key: &KeyPem, kid: &str, sub: &str, roles: &[&str]) -> String {
    sign(
        &header_with_kid(Algorithm::RS256, kid),
        &claims(sub, roles),
        &key.encoding(Algorithm::RS256),
    )
}

/// A `kid` no JWKS here has.
fn random_kid() -> String {
    format!("made-up-{:016x}", rand::random::<u64>())
}

// --- gateways ---------------------------------------------------------------

/// `auth:` accepting the IdP's RS256 tokens with keys from `jwks_url`.
fn idp_auth(jwks_url: &str) -> String {
    format!(
        "  jwt:\n    secret: {JWT_SECRET}\n    accept:\n\
         \x20     - issuer: {ISSUER}\n\
         \x20       audience: {AUDIENCE}\n\
         \x20       jwks_url: {jwks_url}\n\
         \x20       algorithms: [RS256]\n\
         \x20       roles_claim: roles\n"
    )
}

/// A backend and a gatehouse in front of it taking the IdP's keys from
/// `idp`, with [`ROUTES`].
async fn gate_for(idp: &Idp) -> (Backend, Gatehouse) {
    gate_with_auth(|_| idp_auth(&idp.url()), ROUTES).await
}

/// GET `/echo/x` with `token`: the status and the JSON body (the backend's
/// echo of what reached it, or gatehouse's error) and `WWW-Authenticate`.
async fn call(
    gate: &Gatehouse,
    client: &reqwest::Client,
    token: &str,
) -> (u16, Value, Vec<String>) {
    let res = client
        .get(gate.url("/echo/x"))
        .bearer_auth(token)
        .send()
        .await
        .expect("request through gatehouse");
    let status = res.status().as_u16();
    let challenges = res
        .headers()
        .get_all("www-authenticate")
        .iter()
        .map(|v| v.to_str().expect("ASCII challenge").to_owned())
        .collect();
    let text = res.text().await.expect("response body");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body, challenges)
}

/// Asserts `token` reaches the backend as `user` with `roles`.
async fn assert_accepted(gate: &Gatehouse, token: &str, user: &str, roles: &str, what: &str) {
    let (status, echo, _) = call(gate, &gate.client(), token).await;
    assert_eq!(status, 200, "{what}: {echo}");
    assert_eq!(seen(&echo, "x-auth-user"), [user], "{what}: {echo}");
    assert_eq!(seen(&echo, "x-auth-roles"), [roles], "{what}: {echo}");
    assert_eq!(seen(&echo, "x-auth-method"), ["jwt"], "{what}: {echo}");
}

fn assert_invalid_token(status: u16, body: &Value, challenges: &[String], what: &str) {
    assert_eq!(status, 401, "{what}: {body}");
    assert_eq!(body["error"], "invalid_token", "{what}: {body}");
    assert_eq!(challenges, [INVALID_TOKEN_CHALLENGE], "{what}");
}

/// Asserts `token` is refused with `401 invalid_token`.
async fn assert_refused(gate: &Gatehouse, token: &str, what: &str) {
    let (status, body, challenges) = call(gate, &gate.client(), token).await;
    assert_invalid_token(status, &body, &challenges, what);
}

/// Waits until a k1 token is accepted (the first fetch runs in the
/// background at start) and the IdP has seen every fetch of the start.
async fn wait_for_first_fetch(gate: &Gatehouse, idp: &Idp) -> usize {
    let deadline = Instant::now() + FIRST_FETCH;
    let token = token(idp_k1(), "k1", "alice", &["user"]);
    loop {
        let (status, body, _) = call(gate, &gate.client(), &token).await;
        if status == 200 && idp.fetches() > 0 {
            return idp.settle().await;
        }
        assert!(
            Instant::now() < deadline,
            "the IdP's k1 token was still not accepted after {FIRST_FETCH:?} \
             ({} fetches): {status} {body}",
            idp.fetches()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until gatehouse has tried to reach `idp` (connected to it), so a
/// refusal afterwards is not just "not fetched yet".
async fn wait_for_connection(idp: &Idp, what: &str) {
    let deadline = Instant::now() + FIRST_FETCH;
    while idp.connections() == 0 {
        assert!(
            Instant::now() < deadline,
            "{what}: gatehouse never connected"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Let the handshake fail (or the request be refused) first.
    tokio::time::sleep(Duration::from_millis(300)).await;
}

// --- tests ------------------------------------------------------------------

#[tokio::test]
async fn a_token_signed_with_the_idps_key_is_accepted_once_its_jwks_was_fetched() {
    pki();
    let idp = Idp::start(Some(&pki().idp), idp_jwks(&[(idp_k1(), "k1")])).await;
    let (_backend, gate) = gate_for(&idp).await;

    let fetches = wait_for_first_fetch(&gate, &idp).await;
    assert!(fetches >= 1, "the JWKS was fetched at start");
    let token = token(idp_k1(), "k1", "carol", &["admin", "dev"]);
    assert_accepted(&gate, &token, "carol", "admin,dev", "IdP token").await;

    // Another key under the IdP's kid is not the IdP's.
    let forged = sign(
        &header_with_kid(Algorithm::RS256, "k1"),
        &claims("mallory", &[]),
        &attacker_key().encoding(Algorithm::RS256),
    );
    assert_refused(&gate, &forged, "k1 signed by another key").await;
}

#[tokio::test]
async fn a_key_rotated_into_the_jwks_is_fetched_on_first_use_with_one_fetch() {
    pki();
    let idp = Idp::start(Some(&pki().idp), idp_jwks(&[(idp_k1(), "k1")])).await;
    let (_backend, gate) = gate_for(&idp).await;
    let before = wait_for_first_fetch(&gate, &idp).await;

    idp.set_jwks(idp_jwks(&[(idp_k1(), "k1"), (idp_k2(), "k2")]));
    let rotated = token(idp_k2(), "k2", "dave", &["user"]);
    let (status, body, _) = call(&gate, &gate.client(), &rotated).await;
    assert_eq!(
        (status, idp.fetches() - before),
        (200, 1),
        "a token with the new kid k2, right after the IdP published it, should be \
         accepted after exactly one refetch (status, fetches since start): {body}"
    );
    assert_accepted(&gate, &rotated, "dave", "user", "k2 again").await;
    let old = token(idp_k1(), "k1", "erin", &["user"]);
    assert_accepted(&gate, &old, "erin", "user", "k1 after the rotation").await;
    assert_eq!(idp.fetches() - before, 1, "known kids cause no fetch");
}

#[tokio::test]
async fn a_verified_token_whose_key_left_the_jwks_is_refused_after_the_next_fetch() {
    // gatehouse caches verified tokens; the cache must not outlive the key.
    pki();
    let idp = Idp::start(Some(&pki().idp), idp_jwks(&[(idp_k1(), "k1")])).await;
    let (_backend, gate) = gate_for(&idp).await;
    wait_for_first_fetch(&gate, &idp).await;
    let old = token(idp_k1(), "k1", "erin", &["user"]);
    assert_accepted(&gate, &old, "erin", "user", "k1 before the rotation").await;
    assert_accepted(&gate, &old, "erin", "user", "k1 again (cached)").await;

    // The IdP replaces k1 by k2; the first k2 token makes gatehouse refetch.
    idp.set_jwks(idp_jwks(&[(idp_k2(), "k2")]));
    let rotated = token(idp_k2(), "k2", "dave", &["user"]);
    assert_accepted(&gate, &rotated, "dave", "user", "k2 after the rotation").await;
    assert_refused(&gate, &old, "cached k1 token after k1 left the JWKS").await;
    assert_accepted(&gate, &rotated, "dave", "user", "k2 again").await;
}

#[tokio::test]
async fn made_up_kids_cause_at_most_one_refetch_per_thirty_seconds() {
    pki();
    let idp = Idp::start(Some(&pki().idp), idp_jwks(&[(idp_k1(), "k1")])).await;
    let (_backend, gate) = gate_for(&idp).await;
    let before = wait_for_first_fetch(&gate, &idp).await;

    // The first unknown kid may refetch (once per 30 s)...
    let first = token(idp_k1(), &random_kid(), "mallory", &["admin"]);
    assert_refused(&gate, &first, "the first made-up kid").await;
    let after_first = idp.fetches();
    assert!(
        after_first - before <= 1,
        "one unknown kid caused {} fetches",
        after_first - before
    );

    // ...and 20 more, at once, right after, do not.
    let client = gate.client();
    let calls = (0..20).map(|_| {
        let token = token(idp_k1(), &random_kid(), "mallory", &["admin"]);
        let client = client.clone();
        let gate = &gate;
        async move { call(gate, &client, &token).await }
    });
    for (status, body, challenges) in futures_util::future::join_all(calls).await {
        assert_invalid_token(status, &body, &challenges, "a made-up kid");
    }
    assert_eq!(
        idp.fetches(),
        after_first,
        "made-up kids within 30 s of the last refetch made gatehouse fetch again"
    );
}

#[tokio::test]
async fn known_keys_are_kept_while_the_idp_is_down() {
    pki();
    let mut idp = Idp::start(Some(&pki().idp), idp_jwks(&[(idp_k1(), "k1")])).await;
    let (_backend, gate) = gate_for(&idp).await;
    wait_for_first_fetch(&gate, &idp).await;

    idp.stop().await;
    // An unknown kid makes gatehouse try the (dead) IdP, where allowed.
    let unknown = token(idp_k1(), &random_kid(), "frank", &["user"]);
    assert_refused(&gate, &unknown, "unknown kid, IdP down").await;
    for sub in ["frank", "grace"] {
        let token = token(idp_k1(), "k1", sub, &["user"]);
        assert_accepted(&gate, &token, sub, "user", "k1 with the IdP down").await;
    }
}

#[tokio::test]
async fn known_keys_survive_a_config_reload_while_the_idp_is_down() {
    pki();
    let mut idp = Idp::start(Some(&pki().idp), idp_jwks(&[(idp_k1(), "k1")])).await;
    let (_backend, gate) = gate_for(&idp).await;
    wait_for_first_fetch(&gate, &idp).await;

    idp.stop().await;
    // SIGHUP (e.g. after a certificate renewal) with the same config.
    gate.gateway.reload().expect("reload the same config");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let token = token(idp_k1(), "k1", "heidi", &["user"]);
    assert_accepted(
        &gate,
        &token,
        "heidi",
        "user",
        "k1 after a reload, IdP down",
    )
    .await;
}

#[tokio::test]
async fn a_jwks_behind_an_untrusted_certificate_is_never_used() {
    pki();
    let idp = Idp::start(Some(&pki().untrusted), idp_jwks(&[(idp_k1(), "k1")])).await;
    let (_backend, gate) = gate_for(&idp).await;
    wait_for_connection(&idp, "untrusted certificate").await;

    let token = token(idp_k1(), "k1", "ivan", &["user"]);
    assert_refused(&gate, &token, "JWKS behind an untrusted certificate").await;
    assert_eq!(
        idp.fetches(),
        0,
        "a JWKS request went past an untrusted certificate"
    );
}

#[tokio::test]
async fn a_jwks_served_over_plain_http_is_never_used() {
    pki();
    // A plain HTTP server behind an https:// URL: the TLS handshake fails.
    let idp = Idp::start(None, idp_jwks(&[(idp_k1(), "k1")])).await;
    let (_backend, gate) = gate_for(&idp).await;
    wait_for_connection(&idp, "plain HTTP").await;

    let token = token(idp_k1(), "k1", "judy", &["user"]);
    assert_refused(&gate, &token, "JWKS over plain HTTP").await;
    assert_eq!(idp.fetches(), 0, "the JWKS was fetched without TLS");
}

#[tokio::test]
async fn an_http_jwks_url_is_a_config_error() {
    pki();
    let certs = TestCerts::new();
    let path = certs.dir.path().join("gatehouse.yaml");
    let config = |jwks_url: &str| {
        format!(
            "listen:\n  https: 127.0.0.1:0\n\
             tls:\n  cert: {cert}\n  key: {key}\n\
             {upstreams}\
             auth:\n{auth}",
            cert = certs.cert.display(),
            key = certs.key.display(),
            upstreams = upstream("http://127.0.0.1:9"),
            auth = idp_auth(jwks_url),
        )
    };
    gatehouse::config::parse(&path, &config("https://localhost:8443/jwks.json"))
        .expect("an https:// jwks_url is valid");
    for url in [
        "http://localhost:8443/jwks.json",
        "HTTP://localhost:8443/jwks.json",
        "ftp://localhost/jwks.json",
        "localhost:8443/jwks.json",
    ] {
        let err = match gatehouse::config::parse(&path, &config(url)) {
            Ok(_) => panic!("jwks_url {url} was accepted"),
            Err(e) => e,
        };
        assert_eq!(err.key, "auth.jwt.accept[0].jwks_url", "{url}: {err}");
    }
}

#[tokio::test]
async fn a_tokens_own_jku_pointing_at_the_attackers_jwks_is_ignored() {
    pki();
    let idp = Idp::start(Some(&pki().idp), idp_jwks(&[(idp_k1(), "k1")])).await;
    // The attacker's JWKS, over HTTPS with a trusted certificate, holds the
    // attacker's key under their own kid and under the IdP's.
    let attacker = Idp::start(
        Some(&pki().attacker),
        idp_jwks(&[(attacker_key(), "evil"), (attacker_key(), "k1")]),
    )
    .await;
    let (_backend, gate) = gate_for(&idp).await;
    wait_for_first_fetch(&gate, &idp).await;

    for kid in ["evil", "k1"] {
        let mut header = header_with_kid(Algorithm::RS256, kid);
        header.jku = Some(attacker.url());
        let forged = sign(
            &header,
            &claims("mallory", &["admin"]),
            &attacker_key().encoding(Algorithm::RS256),
        );
        assert_refused(&gate, &forged, &format!("jku + kid {kid}")).await;
    }
    assert_eq!(
        (attacker.connections(), attacker.fetches()),
        (0, 0),
        "gatehouse contacted the URL of a token's jku"
    );
}

//! Sign-in with an identity provider (SPEC §10) through a real gatehouse,
//! against a real OpenID provider — panva's OpenID-certified oidc-provider
//! (`tests/oidc`, installed by `scripts/test`), over HTTPS with a test CA
//! gatehouse trusts through `ca_file` — and against a fake of GitHub's
//! OAuth and API endpoints. The provider's login and consent forms are
//! filled in with plain HTTP requests, as a browser would ([`Browser`]).
//! Every refusal is checked to give a 403 and no session, and to count in
//! `gatehouse_oidc_logins_total` with its result. One test signs in with a
//! real browser (Debian's chromium, `tests/browser/oidc.mjs`) from
//! gatehouse's sign-in page, as a person would.

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::backends::{assertion_keys, start_rust_backend_with};
use support::oidc::{orgs, Browser, Client, FakeGithub, GithubUser, Page, RealProvider, TestCa};
use support::*;

const CLIENT: Client = Client {
    id: "gatehouse",
    secret: "gatehouse-client-secret",
    auth: "client_secret_basic",
};

/// `/echo/**` and the backend's assertion check `/verified/**` behind a
/// session; nothing else.
const ROUTES: &str = "routes:\n  - name: app\n    path: /echo/**\n    auth: [session]\n  - name: verified\n    path: /verified/**\n    auth: [session]\ndefault_route:\n  auth: deny\n";

/// The accounts of the real provider: `alice` in example.com with groups,
/// `mallory` in another domain, `eve` with an unverified address.
fn accounts() -> Value {
    json!({
        "alice": {"email": "alice@example.com", "email_verified": true, "hd": "example.com",
                  "groups": ["staff", "gh-admins", "unmapped"], "name": "Alice"},
        "mallory": {"email": "mallory@evil.example", "email_verified": true, "groups": ["staff"]},
        "eve": {"email": "eve@example.com", "email_verified": false},
    })
}

struct Setup {
    _ca: TestCa,
    idp: RealProvider,
    gw: Gatehouse,
    backend: Backend,
    browser: Browser,
}

/// The `- id: idp` provider entry for `issuer`, then `rules` (indented 8).
fn provider_yaml(issuer: &str, ca: &TestCa, rules: &str) -> String {
    format!(
        "      - id: idp\n        name: Test IdP\n        issuer: {issuer}\n        client_id: {}\n        client_secret: {}\n        ca_file: {}\n        scopes: [openid, email, profile, groups]\n{rules}",
        CLIENT.id,
        CLIENT.secret,
        ca.ca_file.display()
    )
}

/// A config for gatehouse on `port` with sessions, `/echo/**` behind a
/// session, and `providers` (YAML list items).
fn write_config(
    certs: &TestCerts,
    port: u16,
    backend: &Backend,
    providers: &str,
) -> std::path::PathBuf {
    write_config_with(certs, port, backend, providers, "", None)
}

/// [`write_config`] with `extra` top-level YAML (a store), and the admin
/// listener on `admin` when given.
fn write_config_with(
    certs: &TestCerts,
    port: u16,
    backend: &Backend,
    providers: &str,
    extra: &str,
    admin: Option<u16>,
) -> std::path::PathBuf {
    let auth = format!(
        "{}  sessions:\n    enabled: true\n    app_name: Chat\n  oidc:\n    providers:\n{providers}",
        jwt_auth("")
    );
    let yaml = config_yaml_with_auth(
        certs,
        &upstream(&backend.url("")),
        &auth,
        &format!("{ROUTES}{extra}"),
    )
    .replace("https: 127.0.0.1:0", &format!("https: 127.0.0.1:{port}"))
    .replace(
        "admin: 127.0.0.1:0",
        &format!("admin: 127.0.0.1:{}", admin.unwrap_or(0)),
    );
    let path = certs.dir.path().join("gatehouse.yaml");
    std::fs::write(&path, yaml).expect("write config");
    path
}

/// The real provider and a gatehouse using it with `rules`, discovered.
async fn setup(rules: &str) -> Setup {
    setup_with(rules, "").await
}

/// [`setup`] with `extra` top-level YAML.
async fn setup_with(rules: &str, extra: &str) -> Setup {
    setup_behind(rules, extra, start_rust_backend().await, None).await
}

/// [`setup_with`] in front of `backend`, with the admin listener on
/// `admin` when given.
async fn setup_behind(rules: &str, extra: &str, backend: Backend, admin: Option<u16>) -> Setup {
    let ca = TestCa::new();
    let port = closed_port().port();
    let redirect = format!("https://localhost:{port}/auth/oidc/callback");
    let idp = RealProvider::start(&ca, 0, &redirect, &[CLIENT], accounts());
    let certs = TestCerts::new();
    let providers = provider_yaml(&idp.issuer, &ca, rules);
    let path = write_config_with(&certs, port, &backend, &providers, extra, admin);
    let gw = Gatehouse::start_config(certs, path).await;
    let browser = Browser::new(&gw, &ca);
    wait_discovered(&gw, &browser, "idp", Duration::from_secs(15)).await;
    Setup {
        _ca: ca,
        idp,
        gw,
        backend,
        browser,
    }
}

/// Waits until the provider's sign-in stops answering 503.
async fn wait_discovered(gw: &Gatehouse, browser: &Browser, id: &str, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let res = browser
            .client
            .get(gw.url(&format!("/auth/oidc/{id}/start")))
            .send()
            .await
            .expect("start");
        if res.status() != 503 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "provider {id} not discovered in {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

impl Setup {
    fn callback_prefix(&self) -> String {
        self.gw.url("/auth/oidc/callback")
    }

    /// Starts a sign-in: the authorization URL gatehouse redirects to.
    async fn start(&self, rd: &str) -> String {
        let rd: String = form_urlencoded::byte_serialize(rd.as_bytes()).collect();
        let page = self
            .browser
            .get(&self.gw.url(&format!("/auth/oidc/idp/start?rd={rd}")))
            .await;
        assert_eq!(page.status, 302, "{}", page.body);
        page.location.expect("a redirect to the provider")
    }

    /// Signs in at the provider as `login`: the callback URL it sends back.
    async fn at_provider(&self, authorize: &str, login: &str) -> String {
        self.browser
            .sign_in_at_provider(authorize, login, &self.callback_prefix())
            .await
    }

    /// The whole round trip as `login`, back to `rd`: the callback's answer.
    async fn sign_in(&self, login: &str, rd: &str) -> Page {
        let authorize = self.start(rd).await;
        let callback = self.at_provider(&authorize, login).await;
        self.browser.get(&callback).await
    }

    /// Sign-ins with `result`, whichever provider label they carry (a
    /// callback whose flow is unknown counts as provider `unknown`).
    async fn logins(&self, result: &str) -> f64 {
        let text = scrape(self.gw.admin).await;
        sum_with_labels(&text, "gatehouse_oidc_logins_total", &[("result", result)])
    }

    /// Signs out at the provider (forgets its cookies).
    fn forget_provider(&self) {
        self.browser.forget(&self.idp.issuer);
    }

    /// The session cookie the browser holds for gatehouse.
    fn session(&self) -> Option<String> {
        self.browser
            .cookies(&self.gw.url("/"))
            .get("__Host-gatehouse")
            .cloned()
    }

    /// The flow cookies the browser holds for gatehouse.
    fn flow_cookies(&self) -> Vec<(String, String)> {
        self.browser
            .cookies(&self.gw.url("/"))
            .into_iter()
            .filter(|(n, _)| n.starts_with("__Host-gatehouse-oidc-"))
            .collect()
    }

    /// A refusal: 403, the page for a navigation, no session, and the
    /// flow cookie cleared.
    fn assert_refused(&self, page: &Page) {
        assert_eq!(page.status, 403, "{}", page.body);
        assert!(page.body.contains("Sign-in refused"), "{}", page.body);
        assert!(
            page.set_cookies()
                .iter()
                .all(|c| !c.starts_with("__Host-gatehouse=")),
            "no session: {:?}",
            page.set_cookies()
        );
        assert_eq!(self.session(), None);
        assert_eq!(page.headers["cache-control"], "no-store");
    }
}

fn query_of(url: &str) -> std::collections::HashMap<String, String> {
    url::Url::parse(url)
        .expect("url")
        .query_pairs()
        .into_owned()
        .collect()
}

fn with_query(url: &str, name: &str, value: &str) -> String {
    let mut u = url::Url::parse(url).expect("url");
    let pairs: Vec<(String, String)> = u
        .query_pairs()
        .into_owned()
        .filter(|(n, _)| n != name)
        .collect();
    u.query_pairs_mut()
        .clear()
        .extend_pairs(pairs)
        .append_pair(name, value);
    u.to_string()
}

fn seen_one<'a>(request: &'a Value, name: &str) -> &'a str {
    let values = seen(request, name);
    assert_eq!(values.len(), 1, "{name}: {values:?}");
    values[0]
}

const RULES: &str = "        allowed_email_domains: [example.com]\n        role_map:\n          gh-admins: admin\n          staff: staff\n        default_roles: [user]\n";

#[tokio::test]
async fn a_browser_signs_in_through_the_provider_and_the_backend_sees_who() {
    let s = setup(RULES).await;
    let authorize = s.start("/echo/after?x=1").await;
    // The authorization request: code flow, state, nonce, PKCE S256.
    assert!(
        authorize.starts_with(&format!("{}/auth?", s.idp.issuer)),
        "{authorize}"
    );
    let q = query_of(&authorize);
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["client_id"], "gatehouse");
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["scope"], "openid email profile groups");
    assert_eq!(q["redirect_uri"], s.callback_prefix());
    for secret in ["state", "nonce", "code_challenge"] {
        assert_eq!(q[secret].len(), 43, "{secret}: 256 bits, base64url");
    }
    assert_ne!(q["state"], q["nonce"]);
    // The flow cookie: host-bound, HttpOnly, Lax, ten minutes.
    let flows = s.flow_cookies();
    assert_eq!(flows.len(), 1, "{flows:?}");

    let callback = s.at_provider(&authorize, "alice").await;
    let cq = query_of(&callback);
    assert_eq!(cq["state"], q["state"]);
    assert_eq!(cq["iss"], s.idp.issuer, "the provider sends RFC 9207 iss");
    let page = s.browser.get(&callback).await;
    assert_eq!(page.status, 303, "{}", page.body);
    assert_eq!(
        page.location.as_deref(),
        Some(s.gw.url("/echo/after?x=1").as_str())
    );
    let cookies = page.set_cookies();
    assert!(
        cookies.iter().any(|c| c.starts_with("__Host-gatehouse=")
            && c.contains("; Path=/; Secure; HttpOnly; SameSite=Lax")),
        "{cookies:?}"
    );
    assert!(s.flow_cookies().is_empty(), "the flow cookie is cleared");
    assert!(s.session().is_some());

    let page = s.browser.get(&s.gw.url("/echo/after?x=1")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let req = page.json();
    assert_eq!(seen_one(&req, "x-auth-user"), "alice@example.com");
    assert_eq!(seen_one(&req, "x-auth-email"), "alice@example.com");
    assert_eq!(seen_one(&req, "x-auth-roles"), "user,staff,admin");
    assert_eq!(seen_one(&req, "x-auth-method"), "session");
    let forwarded = seen(&req, "cookie").join("; ");
    assert!(!forwarded.contains("__Host-gatehouse"), "{forwarded}");

    // /auth/me knows the session too.
    let me = s.browser.get(&s.gw.url("/auth/me")).await;
    assert_eq!(me.json()["sub"], "alice@example.com", "{}", me.body);
    assert_eq!(s.logins("success").await, 1.0);
}

/// SPEC §12 through a provider: the backend verifies the signed assertion
/// of a provider sign-in against gatehouse's published keys, and its
/// `email` is the address the provider says is verified (as is
/// `X-Auth-Email`); an unverified address is in neither.
#[tokio::test]
async fn the_backend_verifies_the_assertion_of_a_provider_sign_in_and_its_verified_email() {
    const ISSUER: &str = "https://gate.test";
    let admin = closed_port().port();
    let jwks = format!("http://127.0.0.1:{admin}/.well-known/gatehouse/jwks.json");
    let backend = start_rust_backend_with(Some(assertion_keys(&jwks, "app", ISSUER))).await;
    let assertion = format!(
        "identity_headers:\n  assertion:\n    issuer: {ISSUER}\n    key_file: keys/assertion.pem\n"
    );
    // The user name is `sub`, so the email is a claim of its own.
    let s = setup_behind(
        "        username_claim: sub\n",
        &assertion,
        backend,
        Some(admin),
    )
    .await;
    assert_eq!(s.sign_in("alice", "/verified/whoami").await.status, 303);
    clear_recorded(s.backend.addr).await;
    let page = s.browser.get(&s.gw.url("/verified/whoami")).await;
    assert_eq!(page.status, 200, "the backend verified it: {}", page.body);
    let who = page.json();
    assert_eq!(who["sub"], "alice", "{who}");
    assert_eq!(who["email"], "alice@example.com", "{who}");
    assert_eq!(who["method"], "session", "{who}");
    let request = only_request(&s.backend, "the verified request").await;
    assert_eq!(seen_one(&request, "x-auth-email"), "alice@example.com");
    let token = seen_one(&request, "x-gatehouse-assertion");
    let claims = jwt_part(token, 1);
    assert_eq!(claims["email"], "alice@example.com", "{claims}");
    assert_eq!(claims["iss"], ISSUER);
    assert_eq!(claims["aud"], "app");
    assert!(
        claims["sid"].as_str().is_some_and(|sid| !sid.is_empty()),
        "{claims}"
    );

    // Its signature, checked here too, with the key gatehouse publishes.
    let kid = jsonwebtoken::decode_header(token)
        .expect("a JWS header")
        .kid
        .expect("a kid");
    let set: jsonwebtoken::jwk::JwkSet = reqwest::get(&jwks)
        .await
        .expect("gatehouse's JWKS")
        .json()
        .await
        .expect("a JWKS");
    let key = set.find(&kid).expect("the assertion's key is published");
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    validation.set_audience(&["app"]);
    validation.set_issuer(&[ISSUER]);
    let verified = jsonwebtoken::decode::<Value>(
        token,
        &jsonwebtoken::DecodingKey::from_jwk(key).expect("a public key"),
        &validation,
    )
    .expect("signed by gatehouse");
    assert_eq!(verified.claims["email"], "alice@example.com");

    // eve's address is not verified: signed in (no email rules), no email.
    s.forget_provider();
    s.browser.remove_cookie(&s.gw.url("/"), "__Host-gatehouse");
    assert_eq!(s.sign_in("eve", "/verified/whoami").await.status, 303);
    clear_recorded(s.backend.addr).await;
    let page = s.browser.get(&s.gw.url("/verified/whoami")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(page.json()["sub"], "eve");
    assert_eq!(page.json()["email"], Value::Null, "{}", page.body);
    let request = only_request(&s.backend, "eve's request").await;
    assert!(seen(&request, "x-auth-email").is_empty(), "{request}");
    let claims = jwt_part(seen_one(&request, "x-gatehouse-assertion"), 1);
    assert!(claims.get("email").is_none(), "{claims}");
}

#[tokio::test]
async fn a_client_sent_x_auth_email_never_reaches_the_backend() {
    let s = setup("").await;
    // eve's address is unverified, and username_claim is `email` by
    // default: an unverified email names no one.
    let page = s.sign_in("eve", "/echo/x").await;
    s.assert_refused(&page);
    assert_eq!(s.logins("denied").await, 1.0);
    s.forget_provider();
    let page = s.sign_in("alice", "/echo/x").await;
    assert_eq!(page.status, 303);
    let res = s
        .browser
        .client
        .get(s.gw.url("/echo/x"))
        .header(
            "cookie",
            format!("__Host-gatehouse={}", s.session().unwrap()),
        )
        .header("x-auth-email", "ceo@example.com")
        .send()
        .await
        .unwrap();
    let req: Value = res.json().await.unwrap();
    assert_eq!(seen_one(&req, "x-auth-email"), "alice@example.com");
}

#[tokio::test]
async fn a_replayed_state_is_refused() {
    let s = setup("").await;
    let authorize = s.start("/echo/").await;
    let flow = s.flow_cookies();
    let callback = s.at_provider(&authorize, "alice").await;
    assert_eq!(s.browser.get(&callback).await.status, 303);
    // Again, with the flow cookie put back and no session: spent.
    s.browser.remove_cookie(&s.gw.url("/"), "__Host-gatehouse");
    s.browser.set_cookie(&s.gw.url("/"), &flow[0].0, &flow[0].1);
    let page = s.browser.get(&callback).await;
    s.assert_refused(&page);
    assert_eq!(s.logins("invalid").await, 1.0);
}

#[tokio::test]
async fn with_the_redis_store_a_state_is_spent_once_too() {
    let redis = Redis::start();
    let store = format!(
        "store:\n  backend: redis\n  url: {}\n  key_prefix: \"oidc:\"\n",
        redis.url()
    );
    let s = setup_with("", &store).await;
    let authorize = s.start("/echo/r").await;
    let flow = s.flow_cookies();
    let keys = std::process::Command::new("redis-cli")
        .args(["-u", &redis.url(), "--scan", "--pattern", "oidc:flow:*"])
        .output()
        .expect("redis-cli");
    let keys = String::from_utf8_lossy(&keys.stdout);
    let state = &query_of(&authorize)["state"];
    let hash: String = {
        use sha2::Digest as _;
        sha2::Sha256::digest(state.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    assert!(
        keys.lines().any(|k| k == format!("oidc:flow:{hash}")),
        "the flow is in Redis under the state's SHA-256: {keys}"
    );
    let callback = s.at_provider(&authorize, "alice").await;
    let page = s.browser.get(&callback).await;
    assert_eq!(page.status, 303, "{}", page.body);
    let page = s.browser.get(&s.gw.url("/echo/r")).await;
    assert_eq!(seen_one(&page.json(), "x-auth-user"), "alice@example.com");
    s.browser.remove_cookie(&s.gw.url("/"), "__Host-gatehouse");
    s.browser.set_cookie(&s.gw.url("/"), &flow[0].0, &flow[0].1);
    s.assert_refused(&s.browser.get(&callback).await);
}

#[tokio::test]
async fn a_callback_without_its_flow_cookie_signs_nobody_in_and_the_owner_still_can() {
    let s = setup("").await;
    let authorize = s.start("/echo/").await;
    let callback = s.at_provider(&authorize, "alice").await;
    let flow = s.flow_cookies();
    // Someone else's browser (no flow cookie) with the callback URL.
    s.browser.remove_cookie(&s.gw.url("/"), &flow[0].0);
    let page = s.browser.get(&callback).await;
    s.assert_refused(&page);
    // A cookie of the right name with another value.
    s.browser
        .set_cookie(&s.gw.url("/"), &flow[0].0, "A".repeat(43).as_str());
    let page = s.browser.get(&callback).await;
    s.assert_refused(&page);
    assert_eq!(s.logins("invalid").await, 2.0);
    // The mismatched attempt spent the state: even the owner's cookie is too late.
    s.browser.set_cookie(&s.gw.url("/"), &flow[0].0, &flow[0].1);
    s.assert_refused(&s.browser.get(&callback).await);

    // Without the cookie the state is not even looked up, so the browser
    // that started the flow can still finish it.
    let authorize = s.start("/echo/").await;
    let callback = s.at_provider(&authorize, "alice").await;
    let flow = s.flow_cookies();
    s.browser.remove_cookie(&s.gw.url("/"), &flow[0].0);
    s.assert_refused(&s.browser.get(&callback).await);
    s.browser.set_cookie(&s.gw.url("/"), &flow[0].0, &flow[0].1);
    assert_eq!(s.browser.get(&callback).await.status, 303);
}

#[tokio::test]
async fn a_wrong_iss_parameter_is_refused() {
    let s = setup("").await;
    let authorize = s.start("/echo/").await;
    let callback = s.at_provider(&authorize, "alice").await;
    let forged = with_query(&callback, "iss", "https://evil.example");
    s.assert_refused(&s.browser.get(&forged).await);
    assert_eq!(s.logins("invalid").await, 1.0);

    // Without iss, from a provider that always sends it: refused too.
    let authorize = s.start("/echo/").await;
    let callback = s.at_provider(&authorize, "alice").await;
    let mut u = url::Url::parse(&callback).unwrap();
    let kept: Vec<(String, String)> = u
        .query_pairs()
        .into_owned()
        .filter(|(n, _)| n != "iss")
        .collect();
    u.query_pairs_mut().clear().extend_pairs(kept);
    s.assert_refused(&s.browser.get(u.as_str()).await);
}

/// SPEC §10: the provider's keys are fetched again when an `id_token`
/// names a `kid` gatehouse does not know — once: a second unknown `kid`
/// within 30 s of that fetch fetches nothing and signs nobody in. The
/// provider rotates for real (a new key signs, first in its JWKS), and
/// its own request log counts the JWKS fetches.
#[tokio::test]
async fn a_rotated_signing_key_is_fetched_on_first_use_and_a_second_unknown_kid_within_30_s_is_refused(
) {
    let mut s = setup("").await;
    // The fetch at discovery, in the background.
    let deadline = Instant::now() + Duration::from_secs(10);
    while s.idp.jwks_fetches().await == 0 {
        assert!(Instant::now() < deadline, "the JWKS was never fetched");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(s.sign_in("alice", "/echo/").await.status, 303);
    assert_eq!(s.idp.jwks_fetches().await, 1, "a known kid needs no fetch");

    // The provider rotates: its next id_token names a kid never seen.
    let kid = s.idp.rotate_key().await;
    s.browser.remove_cookie(&s.gw.url("/"), "__Host-gatehouse");
    let window = Instant::now();
    let page = s.sign_in("alice", "/echo/rotated").await;
    assert_eq!(page.status, 303, "signed with {kid}: {}", page.body);
    assert_eq!(s.idp.jwks_fetches().await, 2, "one fetch for {kid}");
    let page = s.browser.get(&s.gw.url("/echo/rotated")).await;
    assert_eq!(seen_one(&page.json(), "x-auth-user"), "alice@example.com");

    // Another rotation at once: gatehouse may not fetch again yet.
    let second = s.idp.rotate_key().await;
    assert_ne!(second, kid);
    s.browser.remove_cookie(&s.gw.url("/"), "__Host-gatehouse");
    let page = s.sign_in("alice", "/echo/").await;
    assert!(
        window.elapsed() < Duration::from_secs(30),
        "the test took {:?}: no longer within 30 s of the fetch",
        window.elapsed()
    );
    s.assert_refused(&page);
    assert_eq!(
        s.idp.jwks_fetches().await,
        2,
        "{second} within 30 s of the last fetch: no fetch"
    );
    assert_eq!(s.logins("invalid").await, 1.0);
    assert_eq!(s.logins("success").await, 2.0);
}

#[tokio::test]
async fn an_id_token_with_a_foreign_nonce_is_refused() {
    let s = setup("").await;
    let authorize = s.start("/echo/").await;
    // An attacker's authorization request: same state and PKCE, another nonce.
    let forged = with_query(&authorize, "nonce", &"n".repeat(43));
    let callback = s.at_provider(&forged, "alice").await;
    s.assert_refused(&s.browser.get(&callback).await);
    assert_eq!(s.logins("invalid").await, 1.0);
}

#[tokio::test]
async fn an_email_outside_the_allowed_domains_is_denied() {
    let s = setup(RULES).await;
    let page = s.sign_in("mallory", "/echo/").await;
    s.assert_refused(&page);
    assert_eq!(s.logins("denied").await, 1.0);
    // The JSON form of the refusal, for a script.
    let authorize = s.start("/echo/").await;
    let callback = s.at_provider(&authorize, "mallory").await;
    let cookies = s.browser.cookies(&s.gw.url("/"));
    let header: Vec<String> = cookies.iter().map(|(n, v)| format!("{n}={v}")).collect();
    let res = s
        .browser
        .client
        .get(&callback)
        .header("cookie", header.join("; "))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "forbidden");
}

#[tokio::test]
async fn required_claims_must_hold() {
    let s = setup("        username_claim: sub\n        required_claims:\n          hd: example.com\n          groups: [staff, ops]\n").await;
    let page = s.sign_in("mallory", "/echo/").await;
    s.assert_refused(&page);
    assert_eq!(s.logins("denied").await, 1.0);
    s.forget_provider();
    let page = s.sign_in("alice", "/echo/").await;
    assert_eq!(page.status, 303, "{}", page.body);
    let req = s.browser.get(&s.gw.url("/echo/")).await.json();
    assert_eq!(seen_one(&req, "x-auth-user"), "alice");
}

#[tokio::test]
async fn an_error_from_the_provider_is_a_403_counted_as_provider_error() {
    let s = setup("").await;
    let authorize = s.start("/echo/").await;
    // The person cancels at the provider: its abort link.
    let page = s.browser.follow(&authorize, None).await;
    let at = page.body.find("/abort").expect("the provider's abort link");
    let start = page.body[..at].rfind('"').unwrap() + 1;
    let abort = url::Url::parse(&page.url)
        .unwrap()
        .join(&page.body[start..at + "/abort".len()])
        .unwrap();
    let back = s
        .browser
        .follow(abort.as_str(), Some(&s.callback_prefix()))
        .await;
    let callback = back.location.expect("back to gatehouse");
    assert_eq!(query_of(&callback)["error"], "access_denied");
    s.assert_refused(&s.browser.get(&callback).await);
    assert_eq!(s.logins("provider_error").await, 1.0);
}

#[tokio::test]
async fn parallel_sign_ins_in_one_browser_do_not_clobber_each_other() {
    let s = setup("").await;
    let first = s.start("/echo/first").await;
    let second = s.start("/echo/second").await;
    assert_eq!(s.flow_cookies().len(), 2);
    let first_back = s.at_provider(&first, "alice").await;
    let second_back = s.at_provider(&second, "alice").await;
    let page = s.browser.get(&second_back).await;
    assert_eq!(
        page.location.as_deref(),
        Some(s.gw.url("/echo/second").as_str())
    );
    let page = s.browser.get(&first_back).await;
    assert_eq!(page.status, 303, "{}", page.body);
    assert_eq!(
        page.location.as_deref(),
        Some(s.gw.url("/echo/first").as_str())
    );
    assert!(s.flow_cookies().is_empty());
}

#[tokio::test]
async fn open_redirect_rd_payloads_come_back_as_local_paths() {
    let s = setup("").await;
    for rd in [
        "https://evil.example/",
        "//evil.example/x",
        "/\\evil.example",
        "javascript:alert(1)",
    ] {
        let page = s.sign_in("alice", rd).await;
        assert_eq!(page.status, 303, "{rd}");
        assert_eq!(
            page.location.as_deref(),
            Some(s.gw.url("/").as_str()),
            "{rd}"
        );
    }
}

#[tokio::test]
async fn the_sign_in_page_has_one_link_per_provider() {
    let s = setup("").await;
    let page = s.browser.get(&s.gw.url("/auth/login?rd=/echo/x")).await;
    assert_eq!(page.status, 200);
    assert!(
        page.body
            .contains("href=\"/auth/oidc/idp/start?rd=%2Fecho%2Fx\">Sign in with Test IdP</a>"),
        "{}",
        page.body
    );
    // An unknown provider id is no endpoint of a provider.
    assert_eq!(
        s.browser
            .get(&s.gw.url("/auth/oidc/nope/start"))
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn a_provider_down_at_start_answers_503_until_it_is_up() {
    let ca = TestCa::new();
    let backend = start_rust_backend().await;
    let port = closed_port().port();
    let idp_port = closed_port().port();
    let issuer = format!("https://127.0.0.1:{idp_port}");
    let certs = TestCerts::new();
    let path = write_config(&certs, port, &backend, &provider_yaml(&issuer, &ca, ""));
    let gw = Gatehouse::start_config(certs, path).await;
    let browser = Browser::new(&gw, &ca);

    let res = browser
        .client
        .get(gw.url("/auth/oidc/idp/start"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "provider_unavailable");
    let ready = backends::client()
        .get(format!("http://{}/readyz", gw.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    let reason: Value = ready.json().await.unwrap();
    assert!(
        reason["reason"]
            .as_str()
            .unwrap_or("")
            .contains("identity provider idp"),
        "{reason}"
    );

    let redirect = format!("https://localhost:{port}/auth/oidc/callback");
    let _idp = RealProvider::start(&ca, idp_port, &redirect, &[CLIENT], accounts());
    wait_discovered(&gw, &browser, "idp", Duration::from_secs(35)).await;
    let page = browser.get(&gw.url("/auth/oidc/idp/start")).await;
    assert_eq!(page.status, 302);
}

#[tokio::test]
async fn discovery_naming_another_issuer_keeps_the_provider_unavailable() {
    let ca = TestCa::new();
    let backend = start_rust_backend().await;
    let port = closed_port().port();
    let redirect = format!("https://localhost:{port}/auth/oidc/callback");
    let idp = RealProvider::start(&ca, 0, &redirect, &[CLIENT], accounts());
    // The same server, named with a trailing slash: not the issuer it names.
    let certs = TestCerts::new();
    let issuer = format!("{}/", idp.issuer);
    let path = write_config(&certs, port, &backend, &provider_yaml(&issuer, &ca, ""));
    let gw = Gatehouse::start_config(certs, path).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let res = backends::client()
        .get(format!("http://{}/readyz", gw.admin))
        .send()
        .await
        .unwrap();
    let reason: Value = res.json().await.unwrap();
    assert!(
        reason["reason"]
            .as_str()
            .unwrap_or("")
            .contains("must match exactly"),
        "{reason}"
    );
    let browser = Browser::new(&gw, &ca);
    assert_eq!(
        browser.get(&gw.url("/auth/oidc/idp/start")).await.status,
        503
    );
}

#[tokio::test]
async fn without_its_ca_file_a_private_provider_is_not_trusted() {
    let ca = TestCa::new();
    let backend = start_rust_backend().await;
    let port = closed_port().port();
    let redirect = format!("https://localhost:{port}/auth/oidc/callback");
    let idp = RealProvider::start(&ca, 0, &redirect, &[CLIENT], accounts());
    let certs = TestCerts::new();
    let providers = format!(
        "      - id: idp\n        issuer: {}\n        client_id: a\n        client_secret: b\n",
        idp.issuer
    );
    let path = write_config(&certs, port, &backend, &providers);
    let gw = Gatehouse::start_config(certs, path).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let res = backends::client()
        .get(format!("http://{}/readyz", gw.admin))
        .send()
        .await
        .unwrap();
    let reason: Value = res.json().await.unwrap();
    let reason = reason["reason"].as_str().unwrap_or("").to_owned();
    assert!(reason.contains("identity provider idp"), "{reason}");
    assert!(
        reason.to_ascii_lowercase().contains("certificate"),
        "{reason}"
    );
    let browser = Browser::new(&gw, &ca);
    assert_eq!(
        browser.get(&gw.url("/auth/oidc/idp/start")).await.status,
        503
    );
}

#[tokio::test]
async fn a_reload_keeps_the_discovered_provider_and_applies_new_rules() {
    let s = setup("").await;
    assert_eq!(s.sign_in("mallory", "/echo/").await.status, 303);
    // The same provider, now with a domain rule: no rediscovery wait.
    let yaml = std::fs::read_to_string(&s.gw.config_path).unwrap();
    let yaml = yaml.replace(
        "        scopes: [openid, email, profile, groups]\n",
        "        scopes: [openid, email, profile, groups]\n        allowed_email_domains: [example.com]\n",
    );
    std::fs::write(&s.gw.config_path, yaml).unwrap();
    s.gw.gateway.reload().expect("reload");
    s.forget_provider();
    s.browser.remove_cookie(&s.gw.url("/"), "__Host-gatehouse");
    let page = s.browser.get(&s.gw.url("/auth/oidc/idp/start")).await;
    assert_eq!(page.status, 302, "still discovered after the reload");
    s.assert_refused(&s.sign_in("mallory", "/echo/").await);
    s.forget_provider();
    assert_eq!(s.sign_in("alice", "/echo/").await.status, 303);
}

#[tokio::test]
async fn starts_and_callbacks_count_in_the_login_rate_limit() {
    let s = setup_with(
        "",
        "rate_limits:\n  per_ip: null\n  login: { rate: 1/h, burst: 6 }\n",
    )
    .await;
    // The metric's series exist from the start.
    let text = scrape(s.gw.admin).await;
    assert_eq!(
        find_sample(
            &text,
            "gatehouse_oidc_logins_total{provider=\"idp\",result=\"denied\"}"
        ),
        Some(0.0),
        "{text}"
    );
    let mut statuses = Vec::new();
    for _ in 0..8 {
        let res = s
            .browser
            .client
            .get(s.gw.url("/auth/oidc/idp/start"))
            .send()
            .await
            .unwrap();
        statuses.push(res.status().as_u16());
    }
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
    let res = s
        .browser
        .client
        .get(s.gw.url("/auth/oidc/callback?state=x&code=y"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 429);
    assert!(res.headers().contains_key("retry-after"));
}

#[tokio::test]
async fn client_secret_post_works_and_a_wrong_secret_is_a_provider_error() {
    let ca = TestCa::new();
    let backend = start_rust_backend().await;
    let port = closed_port().port();
    let redirect = format!("https://localhost:{port}/auth/oidc/callback");
    let post = Client {
        id: "poster",
        secret: "poster-secret",
        auth: "client_secret_post",
    };
    let idp = RealProvider::start(&ca, 0, &redirect, &[CLIENT, post], accounts());
    let certs = TestCerts::new();
    let providers = format!(
        "{}      - id: post\n        issuer: {}\n        client_id: poster\n        client_secret: poster-secret\n        token_auth: client_secret_post\n        ca_file: {}\n      - id: wrong\n        issuer: {}\n        client_id: {}\n        client_secret: not-the-secret\n        ca_file: {}\n",
        provider_yaml(&idp.issuer, &ca, ""),
        idp.issuer,
        ca.ca_file.display(),
        idp.issuer,
        CLIENT.id,
        ca.ca_file.display()
    );
    let path = write_config(&certs, port, &backend, &providers);
    let gw = Gatehouse::start_config(certs, path).await;
    let browser = Browser::new(&gw, &ca);
    for id in ["idp", "post", "wrong"] {
        wait_discovered(&gw, &browser, id, Duration::from_secs(15)).await;
    }
    let callback_prefix = gw.url("/auth/oidc/callback");
    let round_trip = |id: &'static str| {
        let (browser, gw, prefix) = (&browser, &gw, callback_prefix.clone());
        async move {
            let start = browser
                .get(&gw.url(&format!("/auth/oidc/{id}/start")))
                .await;
            let callback = browser
                .sign_in_at_provider(&start.location.unwrap(), "alice", &prefix)
                .await;
            browser.get(&callback).await
        }
    };
    assert_eq!(round_trip("post").await.status, 303);
    assert_eq!(round_trip("wrong").await.status, 403);
    let text = scrape(gw.admin).await;
    assert_eq!(
        sample(
            &text,
            "gatehouse_oidc_logins_total{provider=\"wrong\",result=\"provider_error\"}"
        ),
        1.0
    );
    // Two providers at once, each with its button.
    let page = browser.get(&gw.url("/auth/login")).await;
    for id in ["idp", "post", "wrong"] {
        assert!(
            page.body.contains(&format!("/auth/oidc/{id}/start")),
            "{id}"
        );
    }
}

/// Whether chromium and the browser scripts' packages are installed (as
/// `scripts/test` installs them); the test fails, naming them, when not.
fn require_browser() {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    assert!(
        std::path::Path::new("/usr/bin/chromium").exists(),
        "/usr/bin/chromium missing: run scripts/test, or `apt-get install chromium`"
    );
    assert!(
        repo.join("tests/browser/node_modules/playwright-core/package.json")
            .exists(),
        "tests/browser/node_modules missing: run scripts/test, or `npm ci --prefix tests/browser`"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_real_browser_signs_in_through_the_provider_from_the_sign_in_page() {
    require_browser();
    let s = setup(RULES).await;
    let target = s.gw.url("/echo/browser");
    let screenshot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser/oidc.png");
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/oidc.mjs");
    let output = {
        let (target, screenshot) = (target.clone(), screenshot.clone());
        tokio::task::spawn_blocking(move || {
            std::process::Command::new("node")
                .arg(script)
                .args(["--page", &target, "--button", "Sign in with Test IdP"])
                .args(["--login", "alice", "--chromium", "/usr/bin/chromium"])
                .arg("--screenshot")
                .arg(&screenshot)
                .stdin(std::process::Stdio::null())
                .output()
                .expect("node runs the browser script")
        })
        .await
        .expect("browser task")
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the browser script failed:\n{stdout}\n{stderr}"
    );
    eprintln!("{stdout}");
    let result: Value = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .map(|j| serde_json::from_str(j).expect("RESULT is JSON"))
        .expect("a RESULT line");
    assert_eq!(result["url"], target, "{result}");
    let echo: Value =
        serde_json::from_str(result["body"].as_str().unwrap_or("")).expect("the echo");
    assert_eq!(seen_one(&echo, "x-auth-user"), "alice@example.com");
    assert_eq!(seen_one(&echo, "x-auth-email"), "alice@example.com");
    assert_eq!(seen_one(&echo, "x-auth-method"), "session");
    assert_eq!(s.logins("success").await, 1.0);
    assert!(
        std::fs::metadata(&screenshot).is_ok_and(|m| m.len() > 0),
        "no screenshot of the sign-in page at {}",
        screenshot.display()
    );
}

// --- GitHub, against a fake of its OAuth and API endpoints ---------------

struct GithubSetup {
    ca: TestCa,
    _backend: Backend,
    github: FakeGithub,
    gw: Gatehouse,
    browser: Browser,
}

/// `octocat` (a verified primary email) in `orgs`, on a provider that
/// allows the `acme` organization only.
async fn octocat_with_acme_allowed(orgs: Vec<String>) -> GithubSetup {
    github(
        GithubUser {
            login: "octocat",
            emails: emails(true),
            orgs,
        },
        "        allowed_orgs: [acme]\n",
    )
    .await
}

async fn github(user: GithubUser, rules: &str) -> GithubSetup {
    let ca = TestCa::new();
    let backend = start_rust_backend().await;
    let github = FakeGithub::start(&ca, user).await;
    let certs = TestCerts::new();
    let port = closed_port().port();
    let providers = format!(
        "      - id: github\n        type: github\n        client_id: {}\n        client_secret: {}\n        ca_file: {}\n        auth_url: {}\n        token_url: {}\n        api_url: {}\n        default_roles: [user]\n{rules}",
        support::oidc::GITHUB_CLIENT,
        support::oidc::GITHUB_SECRET,
        ca.ca_file.display(),
        github.url("/login/oauth/authorize"),
        github.url("/login/oauth/access_token"),
        github.url("/api"),
    );
    let path = write_config(&certs, port, &backend, &providers);
    let gw = Gatehouse::start_config(certs, path).await;
    let browser = Browser::new(&gw, &ca);
    GithubSetup {
        ca,
        _backend: backend,
        github,
        gw,
        browser,
    }
}

impl GithubSetup {
    async fn sign_in(&self) -> Page {
        let back = self
            .browser
            .follow(
                &self.gw.url("/auth/oidc/github/start?rd=/echo/gh"),
                Some(&self.gw.url("/auth/oidc/callback")),
            )
            .await;
        self.browser
            .get(&back.location.expect("back to gatehouse"))
            .await
    }

    async fn logins(&self, result: &str) -> f64 {
        sample(
            &scrape(self.gw.admin).await,
            &format!("gatehouse_oidc_logins_total{{provider=\"github\",result=\"{result}\"}}"),
        )
    }
}

fn emails(primary_verified: bool) -> Value {
    json!([
        {"email": "octo@users.noreply.github.com", "primary": false, "verified": true},
        {"email": "octo@example.com", "primary": true, "verified": primary_verified},
    ])
}

#[tokio::test]
async fn github_signs_in_with_the_login_and_the_primary_verified_email() {
    let s = github(
        GithubUser {
            login: "octocat",
            emails: emails(true),
            orgs: orgs(&["acme"]),
        },
        "        allowed_orgs: [ACME]\n",
    )
    .await;
    let page = s.sign_in().await;
    assert_eq!(page.status, 303, "{}", page.body);
    let page = s.browser.get(&s.gw.url("/echo/gh")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let req = page.json();
    assert_eq!(seen_one(&req, "x-auth-user"), "octocat");
    assert_eq!(seen_one(&req, "x-auth-email"), "octo@example.com");
    assert_eq!(seen_one(&req, "x-auth-roles"), "user");
    let authorize = s.github.seen.lock().unwrap()[0].clone();
    let q: std::collections::HashMap<String, String> = form_urlencoded::parse(authorize.as_bytes())
        .into_owned()
        .collect();
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["scope"], "read:user user:email read:org");
    assert!(
        !q.contains_key("nonce"),
        "GitHub has no id_token to carry one"
    );
    assert_eq!(s.logins("success").await, 1.0);
}

#[tokio::test]
async fn github_with_an_unverified_primary_email_signs_in_without_x_auth_email() {
    let s = github(
        GithubUser {
            login: "octocat",
            emails: emails(false),
            orgs: Vec::new(),
        },
        "",
    )
    .await;
    assert_eq!(s.sign_in().await.status, 303);
    let req = s.browser.get(&s.gw.url("/echo/gh")).await.json();
    assert_eq!(seen_one(&req, "x-auth-user"), "octocat");
    assert!(seen(&req, "x-auth-email").is_empty(), "{req}");
}

#[tokio::test]
async fn github_outside_the_allowed_orgs_is_denied() {
    let s = octocat_with_acme_allowed(orgs(&["other-org"])).await;
    let page = s.sign_in().await;
    assert_eq!(page.status, 403, "{}", page.body);
    assert!(page.body.contains("Sign-in refused"));
    assert_eq!(s.logins("denied").await, 1.0);
    // An unverified primary email fails an email rule as well.
    let s = github(
        GithubUser {
            login: "octocat",
            emails: emails(false),
            orgs: Vec::new(),
        },
        "        allowed_email_domains: [example.com]\n",
    )
    .await;
    assert_eq!(s.sign_in().await.status, 403);
    assert_eq!(s.logins("denied").await, 1.0);
}

/// `n` organizations named `org-0000`, … with `allowed` at index `at`.
fn many_orgs(n: usize, allowed: &str, at: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            if i == at {
                allowed.to_owned()
            } else {
                format!("org-{i:04}")
            }
        })
        .collect()
}

#[tokio::test]
async fn github_organizations_are_read_page_after_page_up_to_ten_pages() {
    // 250 organizations, the allowed one on page 2 of 3: two pages read.
    let s = octocat_with_acme_allowed(many_orgs(250, "acme", 150)).await;
    let page = s.sign_in().await;
    assert_eq!(page.status, 303, "{}", page.body);
    assert_eq!(
        s.github.api_requests("/api/user/orgs"),
        [
            "/api/user/orgs?per_page=100",
            "/api/user/orgs?per_page=100&page=2"
        ]
    );
    assert_eq!(s.logins("success").await, 1.0);

    // In none of them: every page read, then denied.
    let s = octocat_with_acme_allowed(many_orgs(250, "org-x", 0)).await;
    assert_eq!(s.sign_in().await.status, 403);
    assert_eq!(s.github.api_requests("/api/user/orgs").len(), 3);
    assert_eq!(s.logins("denied").await, 1.0);

    // 1050 organizations, the allowed one on page 11: ten pages read, denied.
    let s = octocat_with_acme_allowed(many_orgs(1050, "acme", 1020)).await;
    assert_eq!(s.sign_in().await.status, 403);
    let read = s.github.api_requests("/api/user/orgs");
    assert_eq!(read.len(), 10, "{read:?}");
    assert_eq!(read[9], "/api/user/orgs?per_page=100&page=10");
    assert_eq!(s.logins("denied").await, 1.0);
}

#[tokio::test]
async fn github_never_follows_a_next_page_link_to_another_origin_with_the_token() {
    let user = GithubUser {
        login: "octocat",
        emails: emails(true),
        orgs: many_orgs(150, "acme", 120),
    };
    let s = github(user.clone(), "        allowed_orgs: [acme]\n").await;
    // Another host, with a certificate gatehouse trusts, that would answer
    // with the allowed organization had it been asked (it takes the same
    // token).
    let elsewhere = FakeGithub::start(&s.ca, user).await;
    *s.github.orgs_next.lock().expect("lock") =
        Some(elsewhere.url("/api/user/orgs?per_page=100&page=2"));
    let page = s.sign_in().await;
    assert_eq!(page.status, 403, "{}", page.body);
    assert!(page.body.contains("Sign-in refused"), "{}", page.body);
    assert!(
        elsewhere.api.lock().expect("lock").is_empty(),
        "the other origin got {:?}",
        elsewhere.api.lock().expect("lock")
    );
    assert_eq!(
        s.github.api_requests("/api/user/orgs"),
        ["/api/user/orgs?per_page=100"]
    );
    assert_eq!(s.logins("provider_error").await, 1.0);
    assert_eq!(s.logins("success").await, 0.0);
}

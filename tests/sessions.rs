//! Browser sessions through a real gatehouse (real TLS, the embedded store,
//! the Rust backend) as SPEC §9 states them: the sign-in page and form, the
//! `__Host-` cookie and its attributes, fixation resistance, precedence of a
//! token or key over the cookie, gatehouse's cookie never forwarded, the
//! CSRF rule on session-borne unsafe requests and on the sign-in/out forms,
//! the redirect-or-401 rule, unknown cookies cleared, logout for real
//! (across a restart), the users file applying to live sessions, and the
//! metrics. The cookie is carried by hand, so every attribute is asserted.

mod support;

use std::sync::OnceLock;

use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::{json, Value};
use support::*;

const ALICE_PW: &str = "alice's browser password";

fn alice_hash() -> &'static str {
    static H: OnceLock<String> = OnceLock::new();
    H.get_or_init(|| gatehouse::auth::password::hash_password(ALICE_PW).expect("argon2 hash"))
}

fn users(alice_roles: &str, alice_disabled: bool) -> String {
    format!(
        "users:\n{}",
        user_entry("alice", alice_hash(), alice_roles, alice_disabled)
    )
}

/// Sessions on; `/app/**` takes a session or a token, `/admin/**` needs the
/// `admin` role, `/api/**` answers JSON only, `/jwt/**` takes tokens only.
const ROUTES: &str = r#"routes:
  - name: app
    path: /echo/app/**
    auth: [session, jwt]
  - name: admin
    path: /echo/admin/**
    auth: [session]
    roles: [admin]
  - name: api
    path: /echo/api/**
    auth: [session, jwt]
    unauthenticated: json
  - name: jwt_only
    path: /echo/jwt/**
    auth: jwt
  - name: stream
    path: /chat/stream
    auth: [session]
  - name: ws
    path: /ws
    auth: [session]
default_route:
  auth: deny
"#;

const SESSIONS_ON: &str =
    "  sessions:\n    enabled: true\n    app_name: Chat\n  login:\n    max_failures: 1000\n";

async fn start(backend: &Backend) -> Gatehouse {
    let certs = certs_with_users(&users("[user]", false));
    let path = write_auth_config(
        &certs,
        &format!("http://{}", backend.addr),
        SESSIONS_ON,
        ROUTES,
    );
    Gatehouse::start_config(certs, path).await
}

/// A client that shows redirects instead of following them.
fn client(gw: &Gatehouse) -> reqwest::Client {
    gw.client_builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// The value of the `__Host-gatehouse` cookie a response sets.
fn set_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("__Host-gatehouse="))
        .map(|rest| rest.split(';').next().unwrap_or("").to_owned())
}

fn own_origin(gw: &Gatehouse) -> String {
    format!("https://localhost:{}", gw.https.port())
}

/// Signs alice in with the form, as a browser on this origin would; the cookie.
async fn sign_in(gw: &Gatehouse, c: &reqwest::Client) -> String {
    let res = c
        .post(gw.url("/auth/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("sec-fetch-site", "same-origin")
        .header("origin", own_origin(gw))
        .body(format!(
            "username=alice&password={}&rd=%2Fapp%2Fchat",
            form_urlencoded::byte_serialize(ALICE_PW.as_bytes()).collect::<String>()
        ))
        .send()
        .await
        .expect("sign in");
    assert_eq!(res.status(), 303, "{:?}", res.headers());
    assert_eq!(res.headers()["location"], "/app/chat");
    set_cookie(res.headers()).expect("a session cookie")
}

fn with_cookie(req: reqwest::RequestBuilder, cookie: &str) -> reqwest::RequestBuilder {
    req.header(
        "cookie",
        format!("theme=dark; __Host-gatehouse={cookie}; app=1"),
    )
}

async fn json_of(res: reqwest::Response) -> (u16, HeaderMap, Value) {
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let body = res.json().await.unwrap_or(Value::Null);
    (status, headers, body)
}

#[tokio::test]
async fn the_sign_in_page_is_html_without_script_under_the_csp() {
    let backend = start_rust_backend().await;
    let gw = start(&backend).await;
    let res = client(&gw)
        .get(gw.url("/auth/login?rd=%2Fapp%2Fchat"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let h = res.headers().clone();
    assert_eq!(h["content-type"], "text/html; charset=utf-8");
    assert_eq!(
        h["content-security-policy"],
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"
    );
    assert_eq!(h["cache-control"], "no-store");
    let html = res.text().await.unwrap();
    assert!(!html.to_ascii_lowercase().contains("<script"), "{html}");
    assert!(html.contains("Chat</title>"), "{html}");
    assert!(html.contains(r#"name="rd" value="/app/chat""#), "{html}");
    assert!(html.contains(r#"action="/auth/login""#), "{html}");
    // An unsafe `rd` is never put in the page.
    let html = client(&gw)
        .get(gw.url("/auth/login?rd=%2F%2Fevil.example%2F"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!html.contains("evil.example"), "{html}");
    assert_never_seen(&backend, "the sign-in page").await;
}

#[tokio::test]
async fn a_form_sign_in_sets_the_host_cookie_and_the_session_reaches_the_app() {
    let backend = start_rust_backend().await;
    let gw = start(&backend).await;
    let c = client(&gw);
    let res = c
        .post(gw.url("/auth/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("sec-fetch-site", "same-origin")
        .body(format!(
            "username=alice&password={}&rd=%2Fapp%2Fchat%3Fq%3D1",
            form_urlencoded::byte_serialize(ALICE_PW.as_bytes()).collect::<String>()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(res.headers()["location"], "/app/chat?q=1");
    assert_eq!(res.headers()["cache-control"], "no-store");
    let raw = res.headers()["set-cookie"].to_str().unwrap().to_owned();
    let value = set_cookie(res.headers()).unwrap();
    assert_eq!(value.len(), 43, "{raw}");
    assert!(value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    assert_eq!(
        raw,
        format!("__Host-gatehouse={value}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=604800")
    );

    clear_recorded(backend.addr).await;
    let res = with_cookie(c.get(gw.url("/echo/app/chat")), &value)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let req = only_request(&backend, "a session request").await;
    assert_eq!(seen_one(&req, "x-auth-user"), "alice");
    assert_eq!(seen_one(&req, "x-auth-roles"), "user");
    assert_eq!(seen_one(&req, "x-auth-method"), "session");
    // gatehouse's cookie is gatehouse's: the app's own pass unchanged.
    let cookies = seen(&req, "cookie").join("; ");
    assert!(!cookies.contains("__Host-gatehouse"), "{cookies}");
    assert!(!cookies.contains(&value), "{cookies}");
    assert_eq!(cookies, "theme=dark; app=1");

    // An `rd` that would leave this origin lands on `/`.
    for rd in [
        "//evil.example/",
        "https://evil.example/",
        "/\\evil.example",
        "/%2F%2Fevil.example",
    ] {
        let res = c
            .post(gw.url("/auth/login"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("sec-fetch-site", "same-origin")
            .body(format!(
                "username=alice&password={}&rd={}",
                form_urlencoded::byte_serialize(ALICE_PW.as_bytes()).collect::<String>(),
                form_urlencoded::byte_serialize(rd.as_bytes()).collect::<String>()
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 303, "{rd}");
        assert_eq!(res.headers()["location"], "/", "{rd}");
    }

    // /auth/me says who and until when.
    let (status, _, body) = json_of(
        with_cookie(c.get(gw.url("/auth/me")), &value)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["sub"], "alice");
    assert_eq!(body["method"], "session");
    let expires = body["expires_at"].as_str().unwrap();
    assert!(expires.ends_with('Z') && expires.len() == 20, "{expires}");
}

fn seen_one<'a>(request: &'a Value, name: &str) -> &'a str {
    let values = seen(request, name);
    assert_eq!(values.len(), 1, "{name}: {values:?}");
    values[0]
}

#[tokio::test]
async fn a_json_sign_in_answers_who_and_until_when_and_failures_say_one_thing() {
    let backend = start_rust_backend().await;
    let gw = start(&backend).await;
    let c = client(&gw);
    let (status, headers, body) = json_of(
        c.post(gw.url("/auth/login"))
            .json(&json!({"username": "alice", "password": ALICE_PW}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["sub"], "alice");
    assert_eq!(body["roles"], json!(["user"]));
    assert!(body["expires_at"].as_str().unwrap().ends_with('Z'));
    assert!(set_cookie(&headers).is_some());

    for (user, pw) in [("alice", "wrong"), ("nobody", ALICE_PW)] {
        let (status, headers, body) = json_of(
            c.post(gw.url("/auth/login"))
                .json(&json!({"username": user, "password": pw}))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 401, "{user}");
        assert_eq!(body["error"], "invalid_credentials");
        assert!(set_cookie(&headers).is_none());
        // The form gets the page again, with one generic message.
        let res = c
            .post(gw.url("/auth/login"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("username={user}&password={pw}&rd=%2Fapp"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401);
        assert!(set_cookie(res.headers()).is_none());
        assert_eq!(
            res.headers()["www-authenticate"],
            r#"Bearer realm="gatehouse""#
        );
        let html = res.text().await.unwrap();
        assert!(html.contains("Wrong username or password."), "{html}");
        assert!(!html.contains(user) || user == "alice", "{html}");
    }
    let metrics = gw.metrics().await;
    assert!(
        sample(
            &metrics,
            r#"gatehouse_logins_total{result="invalid_credentials"}"#
        ) >= 4.0,
        "{metrics}"
    );
}

#[tokio::test]
async fn a_cookie_brought_to_sign_in_is_never_adopted() {
    let backend = start_rust_backend().await;
    let gw = start(&backend).await;
    let c = client(&gw);
    let planted = "A".repeat(43);
    let res = with_cookie(c.post(gw.url("/auth/login")), &planted)
        .json(&json!({"username": "alice", "password": ALICE_PW}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let issued = set_cookie(res.headers()).unwrap();
    assert_ne!(issued, planted);
    // The planted value signs nobody in.
    let res = with_cookie(c.get(gw.url("/echo/app/x")), &planted)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    // Two sign-ins, two sessions.
    assert_ne!(sign_in(&gw, &c).await, sign_in(&gw, &c).await);
}

#[tokio::test]
async fn navigations_are_sent_to_sign_in_and_everything_else_gets_401_with_login_url() {
    let backend = start_rust_backend().await;
    let gw = start(&backend).await;
    let c = client(&gw);
    let res = c
        .get(gw.url("/echo/app/chat?x=1&y=%2F"))
        .header("sec-fetch-mode", "navigate")
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 302);
    let h = res.headers();
    assert_eq!(
        h["location"],
        "/auth/login?rd=%2Fecho%2Fapp%2Fchat%3Fx%3D1%26y%3D%252F"
    );
    assert_eq!(h["cache-control"], "no-store");
    assert_eq!(h["vary"], "Accept, Sec-Fetch-Mode");
    // A browser without Fetch Metadata asking for HTML.
    let res = c
        .get(gw.url("/echo/app/chat"))
        .header("accept", "text/html,application/xhtml+xml,*/*;q=0.8")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 302);

    for (what, req) in [
        (
            "fetch",
            c.get(gw.url("/echo/app/chat"))
                .header("sec-fetch-mode", "cors"),
        ),
        (
            "script without metadata",
            c.get(gw.url("/echo/app/chat")).header("accept", "*/*"),
        ),
        (
            "EventSource",
            c.get(gw.url("/echo/app/chat"))
                .header("sec-fetch-mode", "cors")
                .header("accept", "text/event-stream"),
        ),
        (
            "a form post",
            c.post(gw.url("/echo/app/chat"))
                .header("sec-fetch-mode", "navigate"),
        ),
        (
            "a json-only route",
            c.get(gw.url("/echo/api/x"))
                .header("sec-fetch-mode", "navigate"),
        ),
    ] {
        let (status, headers, body) = json_of(req.send().await.unwrap()).await;
        assert_eq!(status, 401, "{what}: {body}");
        assert_eq!(body["error"], "missing_credentials", "{what}");
        let back = if what.contains("json") {
            "api%2Fx"
        } else {
            "app%2Fchat"
        };
        assert_eq!(
            body["login_url"],
            format!("/auth/login?rd=%2Fecho%2F{back}"),
            "{what}"
        );
        assert_eq!(headers["cache-control"], "no-store", "{what}");
        assert_eq!(headers["vary"], "Accept, Sec-Fetch-Mode", "{what}");
    }
    // A bad token is an API client's mistake: 401 invalid_token, never a redirect.
    let (status, _, body) = json_of(
        c.get(gw.url("/echo/app/chat"))
            .header("sec-fetch-mode", "navigate")
            .bearer_auth("not.a.token")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(body["error"], "invalid_token");
    assert_eq!(body["login_url"], "/auth/login?rd=%2Fecho%2Fapp%2Fchat");
    // A route without `session` answers as it always did.
    let (status, _, body) = json_of(
        c.get(gw.url("/echo/jwt/x"))
            .header("sec-fetch-mode", "navigate")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 401);
    assert!(body.get("login_url").is_none(), "{body}");
    assert_never_seen(&backend, "unauthenticated requests").await;
}

#[tokio::test]
async fn an_unknown_or_doubled_cookie_is_no_credential_and_is_cleared() {
    let backend = start_rust_backend().await;
    let gw = start(&backend).await;
    let c = client(&gw);
    let good = sign_in(&gw, &c).await;
    for (what, cookie_header) in [
        ("unknown", format!("__Host-gatehouse={}", "b".repeat(43))),
        ("malformed", "__Host-gatehouse=<script>".to_owned()),
        (
            "doubled",
            format!("__Host-gatehouse={good}; __Host-gatehouse={good}"),
        ),
    ] {
        let (status, headers, body) = json_of(
            c.get(gw.url("/echo/app/x"))
                .header("cookie", cookie_header)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 401, "{what}");
        assert_eq!(body["error"], "missing_credentials", "{what}");
        let cleared = headers["set-cookie"].to_str().unwrap();
        assert!(
            cleared.starts_with("__Host-gatehouse=;") && cleared.contains("Max-Age=0"),
            "{what}: {cleared}"
        );
    }
    assert_never_seen(&backend, "refused cookies").await;
}

#[tokio::test]
async fn a_token_or_key_in_the_request_wins_over_the_cookie() {
    let backend = start_rust_backend().await;
    let gw = start(&backend).await;
    let c = client(&gw);
    let cookie = sign_in(&gw, &c).await;
    // A refused token is not rescued by a good cookie.
    let res = with_cookie(c.get(gw.url("/echo/app/x")), &cookie)
        .bearer_auth("forged.token.here")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    // A good token speaks for its own user.
    clear_recorded(backend.addr).await;
    let bob = token_for("bob", &["user"]);
    let res = with_cookie(c.get(gw.url("/echo/app/x")), &cookie)
        .bearer_auth(bob)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let seen = only_request(&backend, "token and cookie").await;
    assert_eq!(seen_one(&seen, "x-auth-user"), "bob");
    assert_eq!(seen_one(&seen, "x-auth-method"), "jwt");
}

/// A browser sends an app's cookie as it was set (UTF-8 included), and an
/// HTTP/2 browser each cookie as a field of its own: neither may carry
/// gatehouse's cookie to the app, and the app gets one `Cookie` header.
#[tokio::test]
async fn the_session_cookie_never_reaches_the_app_whatever_the_cookie_fields_hold() {
    let backend = start_rust_backend().await;
    let gw = start(&backend).await;
    let c = client(&gw);
    let cookie = sign_in(&gw, &c).await;
    let not_ascii =
        HeaderValue::from_bytes(format!("name=caf\u{e9}; __Host-gatehouse={cookie}").as_bytes())
            .unwrap();
    for (path, token) in [
        ("/echo/app/x", None),
        ("/echo/jwt/x", Some(token_for("bob", &["user"]))),
    ] {
        clear_recorded(backend.addr).await;
        let mut req = c
            .get(gw.url(path))
            .header("cookie", not_ascii.clone())
            .header("cookie", "b=2");
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), 200, "{path}");
        let got = only_request(&backend, path).await;
        // The backend reads header bytes as Latin-1, as ASGI servers do.
        assert_eq!(
            seen(&got, "cookie"),
            ["name=caf\u{c3}\u{a9}; b=2"],
            "{path}"
        );
    }
    // The session was read through the non-ASCII header.
    clear_recorded(backend.addr).await;
    let res = c
        .get(gw.url("/echo/app/y"))
        .header("cookie", not_ascii)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let seen = only_request(&backend, "non-ASCII cookie").await;
    assert_eq!(seen_one(&seen, "x-auth-user"), "alice");
}

#[tokio::test]
async fn cross_site_requests_riding_the_session_are_refused_and_never_forwarded() {
    let backend = start_rust_backend().await;
    let gw = start(&backend).await;
    let c = client(&gw);
    let cookie = sign_in(&gw, &c).await;
    let own = own_origin(&gw);
    /// What a browser says of a request: (what, headers, expected status).
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], u16);
    let cases: [Case; 9] = [
        (
            "cross-site fetch",
            &[
                ("sec-fetch-site", "cross-site"),
                ("origin", "https://evil.example"),
            ],
            403,
        ),
        (
            "same-site sibling",
            &[
                ("sec-fetch-site", "same-site"),
                ("origin", "https://sub.localhost"),
            ],
            403,
        ),
        (
            "cross-site without origin",
            &[("sec-fetch-site", "cross-site")],
            403,
        ),
        (
            "old browser, other origin",
            &[("origin", "https://evil.example")],
            403,
        ),
        ("old browser, null origin", &[("origin", "null")], 403),
        ("same-origin", &[("sec-fetch-site", "same-origin")], 200),
        ("typed by the user", &[("sec-fetch-site", "none")], 200),
        ("old browser, own origin", &[("origin", own.as_str())], 200),
        ("not a browser", &[], 200),
    ];
    for (what, headers, want) in cases {
        clear_recorded(backend.addr).await;
        let mut req = with_cookie(c.post(gw.url("/echo/app/send")), &cookie).body("hi");
        for (n, v) in headers {
            req = req.header(*n, *v);
        }
        let (status, _, body) = json_of(req.send().await.unwrap()).await;
        assert_eq!(status, want, "{what}: {body}");
        if want == 403 {
            assert_eq!(
                body,
                json!({"error": "csrf_rejected", "detail": "Cross-site request refused"}),
                "{what}"
            );
            assert_never_seen(&backend, what).await;
        }
    }
    // GET is not state-changing: no check.
    let res = with_cookie(c.get(gw.url("/echo/app/x")), &cookie)
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    // A bearer token is no ambient credential: no check.
    let res = c
        .post(gw.url("/echo/app/send"))
        .bearer_auth(token_for("bob", &["user"]))
        .header("sec-fetch-site", "cross-site")
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    // Sign-in and sign-out forms from another site are refused too.
    for path in ["/auth/login", "/auth/logout"] {
        let (status, _, body) = json_of(
            with_cookie(c.post(gw.url(path)), &cookie)
                .header("content-type", "application/x-www-form-urlencoded")
                .header("sec-fetch-site", "cross-site")
                .header("origin", "https://evil.example")
                .body(format!("username=alice&password={ALICE_PW}"))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 403, "{path}: {body}");
        assert_eq!(body["error"], "csrf_rejected");
    }
    // The session survived the forged logout.
    let res = with_cookie(c.get(gw.url("/echo/app/x")), &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let metrics = gw.metrics().await;
    assert_eq!(
        sample(&metrics, r#"gatehouse_csrf_rejected_total{route="app"}"#),
        5.0,
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            r#"gatehouse_csrf_rejected_total{route="auth_login"}"#
        ),
        1.0,
        "{metrics}"
    );
}

#[tokio::test]
async fn logout_ends_the_session_for_real_even_across_a_restart() {
    let backend = start_rust_backend().await;
    let gw = start(&backend).await;
    let c = client(&gw);
    // A script's logout: 204.
    let cookie = sign_in(&gw, &c).await;
    let res = with_cookie(c.post(gw.url("/auth/logout")), &cookie)
        .header("sec-fetch-site", "same-origin")
        .header("sec-fetch-mode", "cors")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let cleared = res.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    let res = with_cookie(c.get(gw.url("/echo/app/x")), &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);

    // A form's logout: 303 to after_logout.
    let other = sign_in(&gw, &c).await;
    let res = with_cookie(c.post(gw.url("/auth/logout")), &other)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("sec-fetch-site", "same-origin")
        .header("sec-fetch-mode", "navigate")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(res.headers()["location"], "/auth/login");
    let logouts = || async {
        let metrics = gw.metrics().await;
        sample(
            &metrics,
            r#"gatehouse_sessions_revoked_total{reason="logout"}"#,
        )
    };
    assert_eq!(logouts().await, 2.0);
    // Signing out again (another tab, a stale page) clears the cookie and
    // ends nothing more.
    let res = with_cookie(c.post(gw.url("/auth/logout")), &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    assert!(res.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
    assert_eq!(logouts().await, 2.0, "a second sign-out ends nothing");

    let kept = sign_in(&gw, &c).await;
    let gw = gw.restart().await;
    let c = client(&gw);
    for (what, cookie, want) in [
        ("logged out", &cookie, 401),
        ("form-logged out", &other, 401),
        ("still signed in", &kept, 200),
    ] {
        let res = with_cookie(c.get(gw.url("/echo/app/x")), cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), want, "{what} after a restart");
    }
}

#[tokio::test]
async fn the_users_file_applies_to_live_sessions() {
    let backend = start_rust_backend().await;
    let gw = start(&backend).await;
    let c = client(&gw);
    let cookie = sign_in(&gw, &c).await;
    let res = with_cookie(c.get(gw.url("/echo/admin/x")), &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403, "alice is no admin yet");

    // The users file is re-read when it changes: wait for that, up to 5 s.
    let status_once = |path: &'static str, want: u16| {
        let (c, gw, cookie) = (&c, &gw, &cookie);
        async move {
            let mut status = 0;
            for _ in 0..50 {
                let res = with_cookie(c.get(gw.url(path)), cookie)
                    .send()
                    .await
                    .unwrap();
                status = res.status().as_u16();
                if status == want {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            status
        }
    };
    write_users(gw.certs.dir.path(), &users("[user, admin]", false));
    assert_eq!(
        status_once("/echo/admin/x", 200).await,
        200,
        "a role given in the users file applies on the next request"
    );
    write_users(gw.certs.dir.path(), &users("[user, admin]", true));
    assert_eq!(
        status_once("/echo/app/x", 401).await,
        401,
        "a disabled user's session ends"
    );
    let metrics = gw.metrics().await;
    assert_eq!(
        sample(
            &metrics,
            r#"gatehouse_sessions_revoked_total{reason="user_removed"}"#
        ),
        1.0,
        "{metrics}"
    );
    // And stays ended when the user comes back.
    write_users(gw.certs.dir.path(), &users("[user]", false));
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let res = with_cookie(c.get(gw.url("/echo/app/x")), &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
}

#[tokio::test]
async fn with_sessions_off_the_sign_in_path_is_routed_like_any_other() {
    let backend = start_rust_backend().await;
    let gw = Gatehouse::start(&format!("http://{}", backend.addr), OPEN).await;
    let c = client(&gw);
    let res = c.get(gw.url("/auth/login")).send().await.unwrap();
    assert!(res.headers().get("content-security-policy").is_none());
    let seen = only_request(&backend, "GET /auth/login with sessions off").await;
    assert_eq!(seen["path"], "/auth/login");
    // A session cookie set before sessions were switched off still never
    // reaches the app (it would be good again once they are back on).
    clear_recorded(backend.addr).await;
    let res = c
        .get(gw.url("/echo/x"))
        .header("cookie", "app=1; __Host-gatehouse=set-while-on")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let seen = only_request(&backend, "a cookie with sessions off").await;
    assert_eq!(seen_one(&seen, "cookie"), "app=1");
}

/// Two gatehouses sharing one real Redis: a session started on one is
/// known to the other, a logout on one ends it on the other within a
/// second, and Redis holds only the cookie's hash.
#[tokio::test]
async fn replicas_on_one_redis_share_sessions_and_their_end() {
    let backend = start_rust_backend().await;
    let redis = Redis::start();
    let (a, b) = (
        on_redis(&backend, &redis).await,
        on_redis(&backend, &redis).await,
    );
    let (ca, cb) = (client(&a), client(&b));
    let cookie = sign_in(&a, &ca).await;
    let res = with_cookie(cb.get(b.url("/echo/app/x")), &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        200,
        "a session started on one replica works on the other"
    );

    let conn = redis::Client::open(redis.url()).unwrap();
    let mut conn = conn.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("gh:sess:*")
        .query_async(&mut conn)
        .await
        .unwrap();
    let hash = gatehouse::auth::sessions::cookie_hash(&cookie);
    assert_eq!(keys, [format!("gh:sess:{hash}")]);
    let stored: String = redis::cmd("GET")
        .arg(&keys[0])
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(!stored.contains(&cookie), "{stored}");
    let ttl: i64 = redis::cmd("TTL")
        .arg(&keys[0])
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(ttl > 0 && ttl <= 7 * 86400, "{ttl}");

    // A stream the session opened on the other replica.
    use futures_util::StreamExt as _;
    let res = with_cookie(cb.get(b.url("/chat/stream?n=200&interval_ms=200")), &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let mut events = res.bytes_stream();
    assert!(events.next().await.is_some());

    let res = with_cookie(ca.post(a.url("/auth/logout")), &cookie)
        .header("sec-fetch-site", "same-origin")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let ended = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        while let Some(Ok(_)) = events.next().await {}
    })
    .await;
    assert!(
        ended.is_ok(),
        "a stream on the other replica outlived the logout by 5 s"
    );
    let started = std::time::Instant::now();
    let mut status = 200;
    while started.elapsed() < std::time::Duration::from_secs(1) {
        status = with_cookie(cb.get(b.url("/echo/app/x")), &cookie)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        if status == 401 {
            break;
        }
    }
    assert_eq!(
        status, 401,
        "the other replica still accepted the session after 1 s"
    );
}

/// A WebSocket handshake for `path` with `headers` (a browser's cookie and
/// Origin).
async fn websocket_with(
    gw: &Gatehouse,
    path: &str,
    headers: &[(&str, &str)],
) -> tokio_tungstenite::tungstenite::Result<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
    let mut req = format!("wss://localhost:{}{path}", gw.https.port())
        .into_client_request()
        .expect("request");
    for (n, v) in headers {
        req.headers_mut().insert(
            http::HeaderName::from_bytes(n.as_bytes()).expect("a header name"),
            HeaderValue::from_str(v).expect("a header value"),
        );
    }
    let connector = tokio_tungstenite::Connector::Rustls(std::sync::Arc::new(
        gw.tls_client_config(&[b"http/1.1"]),
    ));
    let tcp = tokio::net::TcpStream::connect(gw.https)
        .await
        .expect("connect");
    tokio_tungstenite::client_async_tls_with_config(req, tcp, None, Some(connector))
        .await
        .map(|(ws, _)| ws)
}

/// SPEC §9: what a session opened — an SSE stream, a WebSocket — is closed
/// within 5 s of that session's logout; a cross-site WebSocket riding the
/// session is refused before it opens.
/// A session's open streams: an event stream's body and a WebSocket.
type Streams = (
    std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
);

/// Opens a 40 s event stream and a WebSocket on the session `cookie`, and
/// checks both carry alice's traffic.
async fn open_streams(gw: &Gatehouse, c: &reqwest::Client, cookie: &str) -> Streams {
    use futures_util::{SinkExt as _, StreamExt as _};
    use tokio_tungstenite::tungstenite::Message;
    let res = with_cookie(c.get(gw.url("/chat/stream?n=200&interval_ms=200")), cookie)
        .send()
        .await
        .expect("the event stream");
    assert_eq!(res.status(), 200);
    let mut events = Box::pin(res.bytes_stream());
    let first = events
        .next()
        .await
        .expect("a first event")
        .expect("the first event's bytes");
    assert!(String::from_utf8_lossy(&first).contains("alice"));
    let cookie_header = format!("__Host-gatehouse={cookie}");
    let mut ws = websocket_with(gw, "/ws", &[("cookie", &cookie_header)])
        .await
        .expect("websocket");
    let hello = ws.next().await.expect("hello").expect("hello's frame");
    assert_eq!(hello, Message::Text("hello alice".into()));
    ws.send(Message::Text("ping".into())).await.expect("ping");
    assert_eq!(
        ws.next().await.expect("an echo").expect("the echo's frame"),
        Message::Text("ping".into())
    );
    (events, ws)
}

/// Asserts both streams end within 5 s of `since` (SPEC §9).
async fn assert_streams_end(streams: Streams, since: std::time::Instant, why: &str) {
    use futures_util::StreamExt as _;
    use tokio_tungstenite::tungstenite::Message;
    let (mut events, mut ws) = streams;
    let within = std::time::Duration::from_secs(5);
    let stream_ended = tokio::time::timeout(within, async {
        while let Some(Ok(_)) = events.next().await {}
    })
    .await;
    assert!(
        stream_ended.is_ok(),
        "the event stream outlived {why} by 5 s"
    );
    let ws_closed = tokio::time::timeout(within.saturating_sub(since.elapsed()), async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(ws_closed.is_ok(), "the WebSocket outlived {why} by 5 s");
}

#[tokio::test]
async fn streams_a_session_opened_end_with_its_logout() {
    let backend = start_rust_backend().await;
    let gw = start(&backend).await;
    let c = client(&gw);
    let cookie = sign_in(&gw, &c).await;
    let streams = open_streams(&gw, &c, &cookie).await;

    // A cross-site page cannot open one on the user's session.
    let cookie_header = format!("__Host-gatehouse={cookie}");
    let refused = websocket_with(
        &gw,
        "/ws",
        &[
            ("cookie", &cookie_header),
            ("origin", "https://evil.example"),
        ],
    )
    .await;
    assert!(refused.is_err(), "a cross-site WebSocket opened");

    let res = with_cookie(c.post(gw.url("/auth/logout")), &cookie)
        .header("sec-fetch-site", "same-origin")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    assert_streams_end(streams, std::time::Instant::now(), "the logout").await;
}

#[tokio::test]
async fn streams_of_a_user_disabled_in_the_users_file_end() {
    let backend = start_rust_backend().await;
    let gw = start(&backend).await;
    let c = client(&gw);
    let cookie = sign_in(&gw, &c).await;
    let streams = open_streams(&gw, &c, &cookie).await;
    write_users(gw.certs.dir.path(), &users("[user]", true));
    // The file is re-read within a second; the streams ask every second.
    assert_streams_end(streams, std::time::Instant::now(), "disabling the user").await;
    let res = with_cookie(c.get(gw.url("/echo/app/x")), &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
}

/// SPEC §5: with Redis down, a session-authenticated request is served from
/// what this replica last read until `max_stale`, then fails closed with
/// 503; signing in needs the store at once.
#[tokio::test]
async fn with_redis_down_a_session_lasts_until_max_stale_then_fails_closed() {
    let backend = start_rust_backend().await;
    let mut redis = Redis::start();
    let gw = on_redis(&backend, &redis).await;
    let c = client(&gw);
    let cookie = sign_in(&gw, &c).await;
    let get = || async {
        let res = with_cookie(c.get(gw.url("/echo/app/x")), &cookie)
            .send()
            .await
            .unwrap();
        json_of(res).await
    };
    assert_eq!(get().await.0, 200);

    redis.kill();
    let killed = std::time::Instant::now();
    assert_eq!(
        get().await.0,
        200,
        "a session request right after Redis went away"
    );
    let (status, _, body) = json_of(
        c.post(gw.url("/auth/login"))
            .json(&json!({"username": "alice", "password": ALICE_PW}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 503, "signing in with Redis down: {body}");
    let last = loop {
        let answer = get().await;
        if answer.0 == 503 {
            break answer;
        }
        assert_eq!(answer.0, 200, "{}", answer.2);
        assert!(
            killed.elapsed() < std::time::Duration::from_secs(8),
            "sessions still served 8 s after Redis went away (max_stale 2s)"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(last.2["error"], "store_unavailable", "{}", last.2);
    println!(
        "session requests failed closed {:?} after the kill",
        killed.elapsed()
    );
}

/// A gatehouse with sessions on and the Redis store `redis` (`max_stale: 2s`).
async fn on_redis(backend: &Backend, redis: &Redis) -> Gatehouse {
    on_redis_with(backend, redis, "2s", "").await
}

/// [`on_redis`] with another `max_stale` and more `auth.jwt` keys.
async fn on_redis_with(backend: &Backend, redis: &Redis, max_stale: &str, jwt: &str) -> Gatehouse {
    let store = format!(
        "store:\n  backend: redis\n  url: {}\n  key_prefix: \"gh:\"\n  max_stale: {max_stale}\n{ROUTES}",
        redis.url()
    );
    let certs = certs_with_users(&users("[user]", false));
    let path = write_auth_config(
        &certs,
        &format!("http://{}", backend.addr),
        &format!("{jwt}{SESSIONS_ON}"),
        &store,
    );
    Gatehouse::start_config(certs, path).await
}

/// A replica keeps the sessions it read for a Redis outage; a logout on
/// another replica reaches it as a revocation that it keeps in memory only
/// for `access_ttl`. A session it has not been asked about since must not
/// come back from that memory once Redis goes away.
#[tokio::test]
async fn a_session_signed_out_elsewhere_does_not_come_back_in_a_redis_outage() {
    let backend = start_rust_backend().await;
    let mut redis = Redis::start();
    let (a, b) = (
        on_redis_with(&backend, &redis, "30s", "    access_ttl: 2s\n").await,
        on_redis_with(&backend, &redis, "30s", "    access_ttl: 2s\n").await,
    );
    let (ca, cb) = (client(&a), client(&b));
    let cookie = sign_in(&a, &ca).await;
    let on_b = || async {
        let res = with_cookie(cb.get(b.url("/echo/app/x")), &cookie)
            .send()
            .await
            .unwrap();
        json_of(res).await
    };
    assert_eq!(on_b().await.0, 200, "b knows the session");
    let res = with_cookie(ca.post(a.url("/auth/logout")), &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    // b is not asked again until its revocation has aged out of memory.
    tokio::time::sleep(std::time::Duration::from_millis(3_000)).await;
    redis.kill();
    let (status, _, body) = on_b().await;
    assert_ne!(
        status, 200,
        "a signed-out session served from memory: {body}"
    );
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "store_unavailable", "{body}");
}

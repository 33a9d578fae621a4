//! gatehouse's own token endpoints through a real gatehouse (real TLS) with
//! the embedded store (SPEC §2 `auth`, `store`; §4 users and login; §5
//! errors; §6 `gatehouse_logins_total`): `/login` with JSON and with the
//! OAuth2 password form FastAPI's Swagger UI sends, the token's claims,
//! refresh rotation and reuse detection (RFC 9700 §4.14.2), logout and its
//! survival across a restart, the lockout, the users file's reload, logs
//! free of secrets, and proxied traffic that a login flood does not slow.
//!
//! Each gateway runs in-process on the shared test config with more keys
//! under `auth:` and a users file next to it (rate limits off, so that only
//! the behaviour under test answers).

mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::*;

const ALICE_PW: &str = "correct horse+battery&staple=%20";
const BOB_PW: &str = "bob's bcrypt password";
const CAROL_PW: &str = "carol is disabled";

/// Held by the tests that measure time, so that they do not load the CPU
/// under each other's measurements.
static TIMING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A login policy that never locks anyone out in these tests.
const NO_LOCKOUT: &str = "  login:\n    max_failures: 1000\n";

// ---------------------------------------------------------------- helpers

fn argon2(password: &'static str, cell: &'static OnceLock<String>) -> &'static str {
    cell.get_or_init(|| gatehouse::auth::password::hash_password(password).expect("argon2 hash"))
}

fn alice_hash() -> &'static str {
    static H: OnceLock<String> = OnceLock::new();
    argon2(ALICE_PW, &H)
}

fn carol_hash() -> &'static str {
    static H: OnceLock<String> = OnceLock::new();
    argon2(CAROL_PW, &H)
}

fn bob_hash() -> &'static str {
    static H: OnceLock<String> = OnceLock::new();
    H.get_or_init(|| bcrypt::hash(BOB_PW, 4).expect("bcrypt hash"))
}

/// alice (argon2id, `user`), bob (bcrypt, `user, admin`), carol (disabled).
fn users_yaml() -> String {
    format!(
        "users:\n{}{}{}",
        user_entry("alice", alice_hash(), "[user]", false),
        user_entry("bob", bob_hash(), "[user, admin]", false),
        user_entry("carol", carol_hash(), "[user]", true),
    )
}

/// A gateway on a fresh folder with the users file in front of `backend_url`.
async fn start(backend_url: &str, auth_extra: &str) -> Gatehouse {
    start_with_users(backend_url, &users_yaml(), auth_extra).await
}

/// Like [`start`], with the users file `users`.
async fn start_with_users(backend_url: &str, users: &str, auth_extra: &str) -> Gatehouse {
    let certs = certs_with_users(users);
    let path = write_auth_config(&certs, backend_url, auth_extra, JWT_ECHO_ROUTES);
    Gatehouse::start_config(certs, path).await
}

/// How long `POST /login` of `user` with `pw` takes to answer, asserting the
/// answer is a 401 (its body read too).
async fn refused_login_time(
    gw: &Gatehouse,
    client: &reqwest::Client,
    user: &str,
    pw: &str,
) -> Duration {
    let started = Instant::now();
    let res = login_res(gw, client, user, pw).await;
    let status = res.status();
    let _ = res.bytes().await;
    let took = started.elapsed();
    assert_eq!(status, 401, "{user}");
    took
}

fn form(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

async fn post_form(
    client: &reqwest::Client,
    url: String,
    pairs: &[(&str, &str)],
) -> reqwest::Response {
    client
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(pairs))
        .send()
        .await
        .expect("POST through gatehouse")
}

/// Asserts a 401 `invalid_token` with its RFC 6750 challenge.
async fn assert_invalid_token(res: reqwest::Response, what: &str) {
    let (status, headers, body) = answer(res).await;
    assert_eq!(status, 401, "{what}: {body}");
    assert_eq!(body["error"], "invalid_token", "{what}: {body}");
    assert_eq!(
        headers["www-authenticate"], INVALID_TOKEN_CHALLENGE,
        "{what}"
    );
}

/// Asserts the one answer every login failure gets.
async fn assert_invalid_credentials(res: reqwest::Response, what: &str) {
    let (status, headers, body) = answer(res).await;
    assert_eq!(status, 401, "{what}: {body}");
    assert_eq!(
        body,
        json!({"error": "invalid_credentials", "detail": "Invalid credentials"}),
        "{what}"
    );
    assert_eq!(headers["www-authenticate"], CHALLENGE, "{what}");
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn percentile(mut v: Vec<Duration>, p: f64) -> Duration {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i]
}

// ---------------------------------------------------------------- login

#[tokio::test]
async fn json_login_returns_a_bearer_pair_not_to_be_cached_whose_access_token_works() {
    let backend = start_rust_backend().await;
    let gw = start(&backend.url(""), "").await;
    let client = gw.client();

    let res = login_res(&gw, &client, "alice", ALICE_PW).await;
    let (status, headers, body) = answer(res).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["cache-control"], "no-store");
    assert!(headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let keys: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        [
            "access_token",
            "expires_in",
            "refresh_expires_in",
            "refresh_token",
            "token_type"
        ],
        "{body}"
    );
    assert_eq!(body["token_type"], "bearer");
    assert_eq!(body["expires_in"], 900, "default access_ttl 15m");
    assert_eq!(
        body["refresh_expires_in"],
        7 * 24 * 3600,
        "default refresh_ttl 7d"
    );
    let tokens = Tokens::from(&body);
    // 256 random bits, base64url without padding.
    assert_eq!(tokens.refresh.len(), 43, "{}", tokens.refresh);
    assert!(tokens
        .refresh
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));

    assert_eq!(jwt_part(&tokens.access, 0)["alg"], "HS256");
    let claims = jwt_part(&tokens.access, 1);
    for key in [
        "iss", "aud", "sub", "roles", "iat", "nbf", "exp", "jti", "sid", "typ",
    ] {
        assert!(claims.get(key).is_some(), "claim {key} missing: {claims}");
    }
    assert_eq!(claims["iss"], "gatehouse");
    assert_eq!(claims["aud"], "gatehouse");
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["roles"], json!(["user"]));
    assert_eq!(claims["typ"], "access");
    let iat = claims["iat"].as_u64().expect("iat is an integer");
    assert_eq!(claims["nbf"].as_u64(), Some(iat));
    assert_eq!(claims["exp"].as_u64(), Some(iat + 900));
    assert!(!claims["jti"].as_str().unwrap().is_empty());
    assert!(!claims["sid"].as_str().unwrap().is_empty());

    // The token works on a JWT route: the backend sees who it is.
    let echoed: Value = client
        .get(gw.url("/echo/whoami"))
        .bearer_auth(&tokens.access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let header = |name: &str| {
        echoed["headers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h[0] == name)
            .map(|h| h[1].clone())
    };
    assert_eq!(header("x-auth-user"), Some(json!("alice")), "{echoed}");
    assert_eq!(header("x-auth-roles"), Some(json!("user")), "{echoed}");
    assert_eq!(header("x-auth-method"), Some(json!("jwt")), "{echoed}");

    // ...and on /auth/me.
    let me: Value = client
        .get(gw.url("/auth/me"))
        .bearer_auth(&tokens.access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        me,
        json!({"sub": "alice", "roles": ["user"], "method": "jwt", "exp": iat + 900})
    );
}

#[tokio::test]
async fn form_login_with_and_without_grant_type_password_works() {
    let backend = start_rust_backend().await;
    let gw = start(&backend.url(""), "").await;
    let client = gw.client();
    for pairs in [
        vec![("username", "alice"), ("password", ALICE_PW)],
        vec![
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", ALICE_PW),
        ],
    ] {
        let (status, headers, body) =
            answer(post_form(&client, gw.url("/login"), &pairs).await).await;
        assert_eq!(status, 200, "{pairs:?}: {body}");
        assert_eq!(headers["cache-control"], "no-store");
        assert_eq!(body["token_type"], "bearer");
        let tokens = Tokens::from(&body);
        assert_eq!(jwt_part(&tokens.access, 1)["sub"], "alice");
        assert_eq!(echo_status(&gw, &client, &tokens.access).await, 200);
    }
}

#[tokio::test]
async fn swagger_ui_password_flow_logs_in_and_its_token_reaches_the_fastapi_chat() {
    let fastapi = start_fastapi().await;
    let certs = certs_with_users(&users_yaml());
    let routes = "routes:\n  - name: openapi\n    path: /openapi.json\n    auth: none\n  \
                  - name: chat\n    path: /chat\n    methods: [POST]\n    auth: jwt\n\
                  default_route:\n  auth: deny\n";
    let path = write_auth_config(&certs, &fastapi.url(""), "", routes);
    let gw = Gatehouse::start_config(certs, path).await;
    let client = gw.client();

    // The app's OpenAPI document, fetched through gatehouse.
    let res = client.get(gw.url("/openapi.json")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let openapi: Value = res.json().await.unwrap();
    assert!(
        openapi["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with('3')),
        "{openapi}"
    );
    assert!(openapi["paths"]["/chat"]["post"].is_object(), "{openapi}");
    let schemes = &openapi["components"]["securitySchemes"];
    if schemes.is_null() {
        println!("note: the example FastAPI app declares no OAuth2 security scheme; posting Swagger UI's password-flow form by hand");
    } else {
        println!("FastAPI security schemes: {schemes}");
    }

    // Exactly what Swagger UI's OAuth2 password flow posts.
    let res = client
        .post(gw.url("/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept", "application/json")
        .body(format!(
            "grant_type=password&username=alice&password={}&scope=",
            form_urlencoded::byte_serialize(ALICE_PW.as_bytes()).collect::<String>()
        ))
        .send()
        .await
        .unwrap();
    let (status, _, body) = answer(res).await;
    assert_eq!(status, 200, "{body}");
    let tokens = Tokens::from(&body);

    let res = client
        .post(gw.url("/chat"))
        .bearer_auth(&tokens.access)
        .json(&json!({"message": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let chat: Value = res.json().await.unwrap();
    assert_eq!(chat, json!({"user": "alice", "reply": "echo: hi"}));

    // Without the token the chat is refused before reaching FastAPI.
    let res = client
        .post(gw.url("/chat"))
        .json(&json!({"message": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
}

#[tokio::test]
async fn bcrypt_user_logs_in_and_gets_their_roles() {
    let backend = start_rust_backend().await;
    let gw = start(&backend.url(""), "").await;
    let client = gw.client();
    let tokens = login(&gw, &client, "bob", BOB_PW).await;
    let claims = jwt_part(&tokens.access, 1);
    assert_eq!(claims["sub"], "bob");
    assert_eq!(claims["roles"], json!(["user", "admin"]));
    assert_eq!(me_status(&gw, &client, &tokens.access).await, 200);
}

#[tokio::test]
async fn disabled_user_wrong_password_and_unknown_user_get_one_identical_401() {
    let backend = start_rust_backend().await;
    let gw = start(&backend.url(""), "").await;
    let client = gw.client();
    for (user, pw, what) in [
        ("carol", CAROL_PW, "disabled user with her right password"),
        ("alice", "not alice's password", "wrong argon2id password"),
        ("bob", "not bob's password", "wrong bcrypt password"),
        ("nobody", ALICE_PW, "unknown user"),
    ] {
        assert_invalid_credentials(login_res(&gw, &client, user, pw).await, what).await;
    }
    let res = post_form(
        &client,
        gw.url("/login"),
        &[("username", "alice"), ("password", "x")],
    )
    .await;
    assert_invalid_credentials(res, "wrong password in a form").await;
    let m = gw.metrics().await;
    assert_eq!(
        sample(
            &m,
            r#"gatehouse_logins_total{result="invalid_credentials"}"#
        ),
        5.0,
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_user_wrong_password_and_disabled_user_take_about_the_same_time() {
    let _alone = TIMING.lock().await;
    let backend = start_rust_backend().await;
    // argon2id users only: what an unknown name is checked against costs
    // what theirs cost (bob's test-only bcrypt cost 4 would not).
    let users = format!(
        "users:\n{}{}",
        user_entry("alice", alice_hash(), "[user]", false),
        user_entry("carol", carol_hash(), "[user]", true),
    );
    // No lockout in the way: every attempt takes the password-checking path.
    let gw = start_with_users(&backend.url(""), &users, NO_LOCKOUT).await;
    let client = gw.client();
    // Warm up the connection and the blocking pool.
    let _ = login_res(&gw, &client, "alice", "warm-up").await;

    let (mut unknown, mut wrong, mut disabled) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..9 {
        for (user, pw, times) in [
            (format!("nobody-{i}"), "whatever", &mut unknown),
            ("alice".to_owned(), "wrong password", &mut wrong),
            ("carol".to_owned(), CAROL_PW, &mut disabled),
        ] {
            times.push(refused_login_time(&gw, &client, &user, pw).await);
        }
    }
    let medians = [median(unknown), median(wrong), median(disabled)];
    println!(
        "login failure medians: unknown user {:?}, wrong password {:?}, disabled user {:?}",
        medians[0], medians[1], medians[2]
    );
    let (min, max) = (medians.iter().min().unwrap(), medians.iter().max().unwrap());
    assert!(
        max.as_secs_f64() <= 2.0 * min.as_secs_f64(),
        "medians differ by more than 2x: {medians:?}"
    );
}

/// SPEC §4: an unknown user takes as long as a wrong password — also when
/// the users file holds bcrypt hashes of the usual cost (12, the default of
/// the `bcrypt` crate and of Python's `bcrypt.gensalt()`), not only argon2id
/// hashes with the dummy's parameters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_user_takes_as_long_as_a_wrong_password_of_a_cost_12_bcrypt_user() {
    let _alone = TIMING.lock().await;
    let backend = start_rust_backend().await;
    let hash = bcrypt::hash("frank's password", 12).expect("bcrypt hash");
    let users = format!("users:\n{}", user_entry("frank", &hash, "[user]", false));
    let gw = start_with_users(&backend.url(""), &users, NO_LOCKOUT).await;
    let client = gw.client();
    let _ = login_res(&gw, &client, "frank", "warm-up").await;

    let (mut unknown, mut wrong) = (Vec::new(), Vec::new());
    for i in 0..5 {
        for (user, times) in [
            (format!("nobody-{i}"), &mut unknown),
            ("frank".to_owned(), &mut wrong),
        ] {
            times.push(refused_login_time(&gw, &client, &user, "not the password").await);
        }
    }
    let (unknown, wrong) = (median(unknown), median(wrong));
    println!("login failure medians with a bcrypt-12 user: unknown user {unknown:?}, wrong password {wrong:?}");
    let (lo, hi) = if unknown < wrong {
        (unknown, wrong)
    } else {
        (wrong, unknown)
    };
    assert!(
        hi.as_secs_f64() <= 2.0 * lo.as_secs_f64(),
        "an unknown user ({unknown:?}) is told apart from a wrong bcrypt password ({wrong:?}) by timing"
    );
}

// ---------------------------------------------------------------- malformed requests

#[tokio::test]
async fn malformed_login_bodies_are_400_bad_request() {
    let backend = start_rust_backend().await;
    let gw = start(&backend.url(""), "").await;
    let client = gw.client();
    let cases: [(&str, &str); 7] = [
        ("application/json", r#"{"username":"alice","#),
        ("application/json", r#"["alice","pw"]"#),
        ("application/json", r#"{"username":"alice"}"#),
        ("application/json", r#"{"username":"","password":"x"}"#),
        ("application/json", r#"{"username":7,"password":"x"}"#),
        ("application/x-www-form-urlencoded", "username=alice"),
        (
            "application/x-www-form-urlencoded",
            "grant_type=client_credentials&username=alice&password=x",
        ),
    ];
    for (ct, body) in cases {
        let res = client
            .post(gw.url("/login"))
            .header("content-type", ct)
            .body(body)
            .send()
            .await
            .unwrap();
        let (status, _, json) = answer(res).await;
        assert_eq!(status, 400, "{ct} {body}: {json}");
        assert_eq!(json["error"], "bad_request", "{body}");
        assert!(json["detail"].is_string(), "{json}");
    }
    let m = gw.metrics().await;
    assert_eq!(
        sample(&m, r#"gatehouse_logins_total{result="bad_request"}"#),
        7.0,
        "{m}"
    );
}

#[tokio::test]
async fn wrong_content_type_is_415_oversized_body_is_413_and_get_is_405() {
    let backend = start_rust_backend().await;
    let gw = start(&backend.url(""), "").await;
    let client = gw.client();

    let res = client
        .post(gw.url("/login"))
        .header("content-type", "text/plain")
        .body(format!("username=alice&password={ALICE_PW}"))
        .send()
        .await
        .unwrap();
    let (status, _, body) = answer(res).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (415, Some("unsupported_media_type")),
        "{body}"
    );

    // Over 16 KiB, announced by Content-Length...
    let padding = "x".repeat(16 * 1024);
    let big = json!({"username": "alice", "password": ALICE_PW, "pad": padding}).to_string();
    let res = client
        .post(gw.url("/login"))
        .header("content-type", "application/json")
        .body(big.clone())
        .send()
        .await
        .unwrap();
    let (status, _, body) = answer(res).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (413, Some("payload_too_large")),
        "{body}"
    );

    // ...and streamed without a length.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = big
        .into_bytes()
        .chunks(1024)
        .map(|c| Ok(c.to_vec()))
        .collect();
    let res = client
        .post(gw.url("/login"))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    let (status, _, body) = answer(res).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (413, Some("payload_too_large")),
        "{body}"
    );

    // Just under the limit is read (and is a wrong password, not a 413).
    let fits = json!({"username": "alice", "password": "x", "pad": "y".repeat(15 * 1024)});
    assert_invalid_credentials(
        post_json(&client, gw.url("/login"), &fits).await,
        "15 KiB body",
    )
    .await;

    let res = client.get(gw.url("/login")).send().await.unwrap();
    let (status, _, body) = answer(res).await;
    assert_eq!(status, 405, "{body}");
    assert_eq!(body["error"], "method_not_allowed");
}

/// RFC 9110 §15.5.6: a 405 response MUST carry `Allow`.
#[tokio::test]
async fn get_on_login_is_405_with_an_allow_header_naming_post() {
    let backend = start_rust_backend().await;
    let gw = start(&backend.url(""), "").await;
    let res = gw.client().get(gw.url("/login")).send().await.unwrap();
    assert_eq!(res.status(), 405);
    assert_eq!(
        res.headers()
            .get("allow")
            .map(|v| v.to_str().unwrap().to_owned()),
        Some("POST".to_owned()),
        "405 without Allow: {:?}",
        res.headers()
    );
}

// ---------------------------------------------------------------- refresh and logout

#[tokio::test]
async fn refresh_rotates_the_pair_and_reusing_a_spent_token_revokes_the_whole_family() {
    let backend = start_rust_backend().await;
    let gw = start(&backend.url(""), "").await;
    let client = gw.client();
    let first = login(&gw, &client, "alice", ALICE_PW).await;
    // A second, unrelated session stays alive throughout.
    let other = login(&gw, &client, "alice", ALICE_PW).await;

    // Rotate with the OAuth2 form.
    let res = post_form(
        &client,
        gw.url("/auth/refresh"),
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &first.refresh),
        ],
    )
    .await;
    let (status, headers, body) = answer(res).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(body["token_type"], "bearer");
    assert_eq!(body["expires_in"], 900);
    let second = Tokens::from(&body);
    assert_ne!(second.refresh, first.refresh);
    assert_ne!(second.access, first.access);
    let (c1, c2) = (jwt_part(&first.access, 1), jwt_part(&second.access, 1));
    assert_eq!(c2["sid"], c1["sid"], "a refresh stays in its family");
    assert_ne!(c2["jti"], c1["jti"]);
    assert_eq!(c2["sub"], "alice");
    assert_eq!(me_status(&gw, &client, &second.access).await, 200);
    assert_eq!(echo_status(&gw, &client, &first.access).await, 200);

    // Rotate again with JSON: the chain goes on.
    let res = refresh_res(&gw, &client, &second.refresh).await;
    let (status, _, body) = answer(res).await;
    assert_eq!(status, 200, "{body}");
    let third = Tokens::from(&body);

    // The spent token is refused, and its reuse ends the family.
    assert_invalid_token(
        refresh_res(&gw, &client, &first.refresh).await,
        "spent refresh token",
    )
    .await;
    assert_invalid_token(
        refresh_res(&gw, &client, &third.refresh).await,
        "current refresh token of a family whose spent token was reused",
    )
    .await;
    for (t, what) in [(&first, "first"), (&second, "second"), (&third, "third")] {
        assert_eq!(
            me_status(&gw, &client, &t.access).await,
            401,
            "{what} access token on /auth/me"
        );
        assert_eq!(
            echo_status(&gw, &client, &t.access).await,
            401,
            "{what} access token on a JWT route"
        );
    }
    assert_invalid_token(
        client
            .get(gw.url("/echo/x"))
            .bearer_auth(&third.access)
            .send()
            .await
            .unwrap(),
        "revoked access token",
    )
    .await;

    // Another family is untouched.
    assert_eq!(echo_status(&gw, &client, &other.access).await, 200);
    let (status, _, _) = answer(refresh_res(&gw, &client, &other.refresh).await).await;
    assert_eq!(status, 200);

    // Unknown and malformed refresh tokens.
    assert_invalid_token(
        refresh_res(&gw, &client, "not-a-token").await,
        "unknown refresh token",
    )
    .await;
    let res = post_json(&client, gw.url("/auth/refresh"), &json!({})).await;
    assert_eq!(answer(res).await.0, 400);
}

#[tokio::test]
async fn logout_ends_the_access_token_and_its_family_and_a_named_refresh_family_even_after_a_restart(
) {
    let backend = start_rust_backend().await;
    let gw = start(&backend.url(""), "").await;
    let client = gw.client();

    let s1 = login(&gw, &client, "alice", ALICE_PW).await;
    let s2 = login(&gw, &client, "bob", BOB_PW).await;
    let s3 = login(&gw, &client, "alice", ALICE_PW).await;
    let keep = login(&gw, &client, "alice", ALICE_PW).await;

    // No bearer: nothing to end.
    let res = client.post(gw.url("/auth/logout")).send().await.unwrap();
    let (status, _, body) = answer(res).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("missing_credentials"))
    );

    // Bearer only, no body.
    let res = client
        .post(gw.url("/auth/logout"))
        .bearer_auth(&s1.access)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    assert!(res.bytes().await.unwrap().is_empty());
    assert_eq!(me_status(&gw, &client, &s1.access).await, 401);
    assert_eq!(echo_status(&gw, &client, &s1.access).await, 401);
    assert_invalid_token(
        refresh_res(&gw, &client, &s1.refresh).await,
        "refresh token of a logged-out family",
    )
    .await;

    // Both access tokens work (and are now in the verified-token cache).
    assert_eq!(echo_status(&gw, &client, &s2.access).await, 200);
    assert_eq!(echo_status(&gw, &client, &s3.access).await, 200);
    // Bearer of s3, naming s2's refresh token: both families end.
    let res = client
        .post(gw.url("/auth/logout"))
        .bearer_auth(&s3.access)
        .json(&json!({"refresh_token": s2.refresh}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    for (t, what) in [(&s2, "s2"), (&s3, "s3")] {
        assert_eq!(me_status(&gw, &client, &t.access).await, 401, "{what}");
        assert_eq!(echo_status(&gw, &client, &t.access).await, 401, "{what}");
        assert_invalid_token(refresh_res(&gw, &client, &t.refresh).await, what).await;
    }
    // The logged-out access token cannot log out again.
    let res = client
        .post(gw.url("/auth/logout"))
        .bearer_auth(&s1.access)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(echo_status(&gw, &client, &keep.access).await, 200);

    // Restart on the same store file.
    drop(client);
    let gw = gw.restart().await;
    let client = gw.client();
    for (t, what) in [(&s1, "s1"), (&s2, "s2"), (&s3, "s3")] {
        assert_eq!(
            me_status(&gw, &client, &t.access).await,
            401,
            "{what} after restart"
        );
        assert_eq!(
            echo_status(&gw, &client, &t.access).await,
            401,
            "{what} after restart"
        );
        assert_invalid_token(refresh_res(&gw, &client, &t.refresh).await, what).await;
    }
    // The session nobody ended survived the restart too.
    assert_eq!(echo_status(&gw, &client, &keep.access).await, 200);
    let (status, _, body) = answer(refresh_res(&gw, &client, &keep.refresh).await).await;
    assert_eq!(status, 200, "{body}");
}

// ---------------------------------------------------------------- lockout

#[tokio::test]
async fn three_wrong_passwords_lock_the_username_even_against_the_right_one() {
    let backend = start_rust_backend().await;
    let gw = start(&backend.url(""), LOCKOUT_3).await;
    let client = gw.client();

    for i in 0..3 {
        assert_invalid_credentials(
            login_res(&gw, &client, "alice", "wrong").await,
            &format!("wrong #{i}"),
        )
        .await;
    }
    assert_invalid_credentials(
        login_res(&gw, &client, "alice", ALICE_PW).await,
        "right password while locked",
    )
    .await;
    // Another username is not affected.
    login(&gw, &client, "bob", BOB_PW).await;

    // An unknown username is locked the same way.
    for _ in 0..3 {
        assert_invalid_credentials(login_res(&gw, &client, "mallory", "guess").await, "unknown")
            .await;
    }
    assert_invalid_credentials(
        login_res(&gw, &client, "mallory", "guess").await,
        "unknown, locked",
    )
    .await;

    // A success before the limit resets the count.
    for round in 0..2 {
        for _ in 0..2 {
            assert_invalid_credentials(login_res(&gw, &client, "bob", "wrong").await, "bob wrong")
                .await;
        }
        let (status, _, body) = answer(login_res(&gw, &client, "bob", BOB_PW).await).await;
        assert_eq!(
            status, 200,
            "round {round}: 2 failures then the right password: {body}"
        );
    }

    let m = gw.metrics().await;
    let count = |result: &str| {
        sample(
            &m,
            &format!("gatehouse_logins_total{{result=\"{result}\"}}"),
        )
    };
    assert_eq!(count("locked"), 2.0, "{m}");
    assert_eq!(count("invalid_credentials"), 10.0, "{m}");
    assert_eq!(count("success"), 3.0, "{m}");
}

// ---------------------------------------------------------------- users file

#[tokio::test]
async fn users_file_changes_are_picked_up_and_an_invalid_one_keeps_the_old_users() {
    let backend = start_rust_backend().await;
    // Polling for dave must not lock dave out.
    let gw = start(&backend.url(""), NO_LOCKOUT).await;
    let client = gw.client();
    const DAVE_PW: &str = "dave joined later";
    assert_invalid_credentials(
        login_res(&gw, &client, "dave", DAVE_PW).await,
        "dave before",
    )
    .await;

    let dave_hash = bcrypt::hash(DAVE_PW, 4).unwrap();
    let with_dave = format!(
        "{}{}",
        users_yaml(),
        user_entry("dave", &dave_hash, "[user]", false)
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    write_users(gw.certs.dir.path(), &with_dave);
    let added = Instant::now();
    loop {
        let status = login_res(&gw, &client, "dave", DAVE_PW).await.status();
        if status == 200 {
            break;
        }
        assert!(
            added.elapsed() < Duration::from_secs(3),
            "dave cannot log in 3 s after being added"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("users file reload took {:?}", added.elapsed());

    // An invalid file: the users already loaded keep working.
    write_users(
        gw.certs.dir.path(),
        "users:\n  - username: eve\n    password_hash: plaintext-is-refused\n",
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    login(&gw, &client, "alice", ALICE_PW).await;
    login(&gw, &client, "dave", DAVE_PW).await;
    write_users(gw.certs.dir.path(), "users: [this is: not {valid yaml\n");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    login(&gw, &client, "dave", DAVE_PW).await;

    // A valid file again (without dave) is picked up: the watcher lives on.
    write_users(gw.certs.dir.path(), &users_yaml());
    let fixed = Instant::now();
    while login_res(&gw, &client, "dave", DAVE_PW).await.status() == 200 {
        assert!(
            fixed.elapsed() < Duration::from_secs(3),
            "dave still logs in 3 s after removal"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    login(&gw, &client, "alice", ALICE_PW).await;
}

// ---------------------------------------------------------------- logs

#[tokio::test]
async fn no_password_or_token_ever_reaches_the_process_output() {
    let backend = start_rust_backend().await;
    let certs = certs_with_users(&users_yaml());
    let path = write_auth_config(&certs, &backend.url(""), "", JWT_ECHO_ROUTES);
    let mut process = Process::spawn(&path);
    let client = reqwest::Client::builder()
        .no_proxy()
        .add_root_certificate(reqwest::Certificate::from_pem(certs.pem.as_bytes()).unwrap())
        .resolve("localhost", process.https)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let url = |p: &str| format!("https://localhost:{}{p}", process.https.port());
    const WRONG_PW: &str = "wrong-password-must-not-be-logged-7f3a";

    let res = post_json(
        &client,
        url("/login"),
        &json!({"username": "alice", "password": ALICE_PW}),
    )
    .await;
    let (status, _, body) = answer(res).await;
    assert_eq!(status, 200, "{body}");
    let first = Tokens::from(&body);
    let res = client
        .get(url("/echo/x"))
        .bearer_auth(&first.access)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = post_json(
        &client,
        url("/auth/refresh"),
        &json!({"refresh_token": first.refresh}),
    )
    .await;
    let (status, _, body) = answer(res).await;
    assert_eq!(status, 200, "{body}");
    let second = Tokens::from(&body);
    // Reuse of the spent token: logged as a warning.
    let res = post_json(
        &client,
        url("/auth/refresh"),
        &json!({"refresh_token": first.refresh}),
    )
    .await;
    assert_eq!(res.status(), 401);
    let third_body = answer(
        post_form(
            &client,
            url("/login"),
            &[("username", "bob"), ("password", BOB_PW)],
        )
        .await,
    )
    .await
    .2;
    let third = Tokens::from(&third_body);
    let res = client
        .post(url("/auth/logout"))
        .bearer_auth(&third.access)
        .json(&json!({"refresh_token": third.refresh}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let res = post_json(
        &client,
        url("/login"),
        &json!({"username": "alice", "password": WRONG_PW}),
    )
    .await;
    assert_eq!(res.status(), 401);
    let res = client
        .get(url("/auth/me"))
        .bearer_auth(&second.access)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401, "the reuse revoked the family");

    drop(client);
    process.signal("TERM");
    assert_eq!(process.wait_exit(Duration::from_secs(10)), Some(0));
    std::thread::sleep(Duration::from_millis(200));
    let out = process.stdout_lines().join("\n");
    let err = process.stderr_text();
    assert!(
        out.contains("/login"),
        "the access log has the logins:\n{out}"
    );
    let secrets = [
        ("alice's password", ALICE_PW.to_owned()),
        ("bob's password", BOB_PW.to_owned()),
        ("the wrong password", WRONG_PW.to_owned()),
        ("an access token", first.access.clone()),
        (
            "an access token's signature",
            first.access.rsplit('.').next().unwrap().to_owned(),
        ),
        ("a refreshed access token", second.access.clone()),
        ("a logged-out access token", third.access.clone()),
        ("a refresh token", first.refresh.clone()),
        ("a rotated refresh token", second.refresh.clone()),
        ("a logged-out refresh token", third.refresh.clone()),
    ];
    for (what, secret) in secrets {
        assert!(!out.contains(&secret), "stdout holds {what}:\n{out}");
        assert!(!err.contains(&secret), "stderr holds {what}:\n{err}");
    }
}

// ---------------------------------------------------------------- flood

/// Times `n` sequential proxied GETs of `/health`, 25 ms apart; every one must be 200.
async fn proxied_latencies(gw: &Gatehouse, client: &reqwest::Client, n: usize) -> Vec<Duration> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        let res = client
            .get(gw.url("/health"))
            .send()
            .await
            .expect("proxied GET");
        let status = res.status();
        let _ = res.bytes().await;
        out.push(started.elapsed());
        assert_eq!(
            status, 200,
            "a proxied request failed during the login flood"
        );
        // Spread the requests over half a second of the flood.
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_login_flood_does_not_stall_proxied_traffic() {
    let _alone = TIMING.lock().await;
    let backend = start_rust_backend().await;
    let gw = start(&backend.url(""), "").await;
    let gw = Arc::new(gw);
    let client = gw.client();
    proxied_latencies(&gw, &client, 5).await; // warm-up
    let idle = proxied_latencies(&gw, &client, 20).await;

    let stop = Arc::new(AtomicBool::new(false));
    let logins = Arc::new(AtomicUsize::new(0));
    let mut flood = Vec::new();
    for _ in 0..20 {
        let (gw, stop, logins) = (gw.clone(), stop.clone(), logins.clone());
        // Each flooder on its own connection, as 20 browsers would be.
        let flooder = gw.client();
        flood.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let status = login_res(&gw, &flooder, "alice", ALICE_PW).await.status();
                assert_eq!(status, 200, "a login of the flood failed");
                logins.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    // Let the flood fill the hashing queue first.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let during_from = logins.load(Ordering::Relaxed);
    let flooded = proxied_latencies(&gw, &client, 20).await;
    let during = logins.load(Ordering::Relaxed) - during_from;
    stop.store(true, Ordering::Relaxed);
    for f in flood {
        f.await.expect("flooder");
    }

    let (idle_p50, idle_p99) = (percentile(idle.clone(), 0.5), percentile(idle, 0.99));
    let (flood_p50, flood_p99) = (percentile(flooded.clone(), 0.5), percentile(flooded, 0.99));
    println!(
        "proxied GET latency: idle p50 {idle_p50:?} p99 {idle_p99:?}; during a flood of 20 concurrent logins p50 {flood_p50:?} p99 {flood_p99:?} ({during} logins completed meanwhile, {} in all)",
        logins.load(Ordering::Relaxed)
    );
    assert!(
        flood_p99 < Duration::from_secs(1),
        "proxied p99 {flood_p99:?} during a login flood"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn logins_beyond_the_hashing_queue_get_503_overloaded_at_once_and_nothing_else_changes() {
    let _alone = TIMING.lock().await;
    let backend = start_rust_backend().await;
    let gw = start(&backend.url(""), "").await;
    let client = gw.client();
    // Far more at once than the hashing threads and their queue take
    // (16 per core): the rest are refused without a password check.
    let attempts = (0..160).map(|_| {
        let (gw, client) = (&gw, &client);
        async move {
            let started = Instant::now();
            let res = login_res(gw, client, "alice", ALICE_PW).await;
            let status = res.status().as_u16();
            let retry_after = res
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().expect("ascii").to_owned());
            let body: Value = res.json().await.expect("JSON answer");
            (status, retry_after, body, started.elapsed())
        }
    });
    let answers = futures_util::future::join_all(attempts).await;
    let ok: Vec<_> = answers.iter().filter(|a| a.0 == 200).collect();
    let busy: Vec<_> = answers.iter().filter(|a| a.0 == 503).collect();
    assert_eq!(ok.len() + busy.len(), answers.len(), "only 200 or 503");
    assert!(!ok.is_empty() && !busy.is_empty(), "{} taken", ok.len());
    for (_, retry_after, body, _) in &busy {
        assert_eq!(body["error"], "overloaded", "{body}");
        assert_eq!(retry_after.as_deref(), Some("1"));
    }
    // A refusal does not wait for the queue: every one came before the
    // slowest check was done.
    let slowest_ok = ok.iter().map(|a| a.3).max().expect("some taken");
    let slowest_busy = busy.iter().map(|a| a.3).max().expect("some refused");
    assert!(
        slowest_busy < slowest_ok,
        "{slowest_busy:?} vs {slowest_ok:?}"
    );
    let metrics = gw.metrics().await;
    assert_eq!(
        sample(&metrics, r#"gatehouse_logins_total{result="busy"}"#),
        busy.len() as f64
    );
    assert_eq!(
        sample(&metrics, r#"gatehouse_logins_total{result="success"}"#),
        ok.len() as f64
    );
    // Once drained, logins are checked again, and no one was locked out.
    let res = login_res(&gw, &client, "alice", ALICE_PW).await;
    assert_eq!(res.status(), 200);
}

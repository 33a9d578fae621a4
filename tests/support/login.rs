//! Logging in through gatehouse's own token endpoints (SPEC §4): users files,
//! configs with more keys under `auth:`, `POST /login`, `/auth/refresh`, the
//! token pair they answer with, and requests made with its access token.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::{config_yaml_with_auth, jwt_auth, upstream, Https, TestCerts};

/// Routes of the login and store tests: `/echo/**` needs a JWT, `/health` is
/// open, nothing else is routed.
pub const JWT_ECHO_ROUTES: &str = "routes:\n  - name: echo\n    path: /echo/**\n    auth: jwt\n  \
                                   - name: health\n    path: /health\n    auth: none\n\
                                   default_route:\n  auth: deny\n";

/// A login policy (under `auth:`) that locks a username after 3 failures
/// within 15 minutes, for 15 minutes.
pub const LOCKOUT_3: &str =
    "  login:\n    max_failures: 3\n    failure_window: 15m\n    lockout: 15m\n";

/// One users-file entry.
pub fn user_entry(name: &str, hash: &str, roles: &str, disabled: bool) -> String {
    format!(
        "  - username: {name}\n    password_hash: '{hash}'\n    roles: {roles}\n    disabled: {disabled}\n"
    )
}

/// Replaces `users.yaml` in `dir` atomically, so the watcher never reads half a file.
pub fn write_users(dir: &Path, yaml: &str) {
    let tmp = dir.join("users.yaml.tmp");
    std::fs::write(&tmp, yaml).expect("write users file");
    std::fs::rename(&tmp, dir.join("users.yaml")).expect("replace users file");
}

/// The test certificate in a temp folder that also holds the users file
/// `users_yaml` (and, once written, a config and its embedded store).
pub fn certs_with_users(users_yaml: &str) -> TestCerts {
    let certs = TestCerts::new();
    write_users(certs.dir.path(), users_yaml);
    certs
}

/// Writes `gatehouse.yaml` next to `certs`: the base JWT secret with
/// `auth_extra` indented under `auth:`, and `extra` top-level YAML (the
/// embedded store `data/gatehouse.db` unless it has a `store:`).
pub fn write_auth_config(
    certs: &TestCerts,
    backend_url: &str,
    auth_extra: &str,
    extra: &str,
) -> PathBuf {
    let path = certs.dir.path().join("gatehouse.yaml");
    let yaml = config_yaml_with_auth(certs, &upstream(backend_url), &jwt_auth(auth_extra), extra);
    std::fs::write(&path, yaml).expect("write config");
    path
}

/// The token pair of a login or refresh answer.
pub struct Tokens {
    pub access: String,
    pub refresh: String,
}

impl Tokens {
    pub fn from(body: &Value) -> Tokens {
        Tokens {
            access: body["access_token"]
                .as_str()
                .expect("access_token")
                .to_owned(),
            refresh: body["refresh_token"]
                .as_str()
                .expect("refresh_token")
                .to_owned(),
        }
    }
}

/// Status, headers and JSON body (`Null` when empty or not JSON).
pub async fn answer(res: reqwest::Response) -> (u16, reqwest::header::HeaderMap, Value) {
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let text = res.text().await.expect("response body");
    (
        status,
        headers,
        serde_json::from_str(&text).unwrap_or(Value::Null),
    )
}

/// `POST url` with the JSON `body`.
pub async fn post_json(client: &reqwest::Client, url: String, body: &Value) -> reqwest::Response {
    client
        .post(url)
        .json(body)
        .send()
        .await
        .expect("POST through gatehouse")
}

/// `GET url` with `token` as a bearer token.
pub async fn bearer_get(client: &reqwest::Client, url: String, token: &str) -> reqwest::Response {
    client
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .expect("GET through gatehouse")
}

/// `POST /login` with a JSON username and password.
pub async fn login_res(
    gate: &impl Https,
    client: &reqwest::Client,
    user: &str,
    pw: &str,
) -> reqwest::Response {
    post_json(
        client,
        gate.url("/login"),
        &json!({"username": user, "password": pw}),
    )
    .await
}

/// Logs in, asserting 200; the token response.
pub async fn login(gate: &impl Https, client: &reqwest::Client, user: &str, pw: &str) -> Tokens {
    let (status, _, body) = answer(login_res(gate, client, user, pw).await).await;
    assert_eq!(status, 200, "login of {user}: {body}");
    Tokens::from(&body)
}

/// `POST /auth/refresh` with `refresh`.
pub async fn refresh_res(
    gate: &impl Https,
    client: &reqwest::Client,
    refresh: &str,
) -> reqwest::Response {
    post_json(
        client,
        gate.url("/auth/refresh"),
        &json!({"refresh_token": refresh}),
    )
    .await
}

/// Status of `GET /auth/me` with `token`.
pub async fn me_status(gate: &impl Https, client: &reqwest::Client, token: &str) -> u16 {
    let res = bearer_get(client, gate.url("/auth/me"), token).await;
    res.status().as_u16()
}

/// Status of a proxied `GET /echo/x` (a JWT route) with `token`.
pub async fn echo_status(gate: &impl Https, client: &reqwest::Client, token: &str) -> u16 {
    let res = bearer_get(client, gate.url("/echo/x"), token).await;
    res.status().as_u16()
}

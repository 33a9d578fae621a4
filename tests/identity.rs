//! The identity a backend is told (SPEC §2 `identity_headers`,
//! `forward_authorization`; §3.7): only gatehouse sets `X-Auth-User`,
//! `X-Auth-Roles` and `X-Auth-Method` — client copies in any spelling never
//! reach the backend, `Connection` cannot strip them, underscore spellings and
//! duplicate `Authorization` headers are refused, untrusted forwarding headers
//! change neither routing nor auth — and the identity is forwarded exactly as
//! verified, never trimmed. `Authorization` itself is forwarded unless
//! `forward_authorization: false`.
//!
//! Header-name spellings and repeated headers go out raw over TLS, because
//! reqwest lowercases and merges header names before sending.

mod support;

use support::*;

// --- spoofed identity headers -----------------------------------------------

/// Client copies of the identity headers, in several spellings.
const SPOOFED: &str = "X-Auth-User: mallory\r\n\
                       x-auth-user: mallory2\r\n\
                       X-AUTH-USER: mallory3\r\n\
                       X-Auth-Roles: admin\r\n\
                       X-Auth-Method: jwt\r\n";

#[tokio::test]
async fn client_identity_headers_never_reach_the_backend_on_an_open_route() {
    let (backend, gate) = gate_with(ADMIN_ROUTES).await;
    let answer = gate.raw(&raw_get("/public/x", SPOOFED)).await;
    assert_ne!(status_of(&answer), 400, "{answer}");
    let request = only_request(&backend, "an open route").await;
    for name in ["x-auth-user", "x-auth-roles", "x-auth-method"] {
        assert!(
            seen(&request, name).is_empty(),
            "{name} reached the backend on an open route: {request}"
        );
    }
    // Over HTTP/2 too.
    let res = gate
        .client()
        .get(gate.url("/public/x"))
        .header("x-auth-user", "mallory")
        .header("x-auth-roles", "admin")
        .header("x-auth-method", "jwt")
        .send()
        .await
        .expect("request");
    assert_eq!(res.version(), reqwest::Version::HTTP_2);
    let request = only_request(&backend, "an open route over HTTP/2").await;
    for name in ["x-auth-user", "x-auth-roles", "x-auth-method"] {
        assert!(seen(&request, name).is_empty(), "{name}: {request}");
    }
}

#[tokio::test]
async fn custom_identity_header_names_are_the_ones_stripped_and_set() {
    let extra = format!(
        "identity_headers:\n  user: X-Remote-User\n  roles: X-Remote-Groups\n  method: X-Remote-Auth\n{ADMIN_ROUTES}"
    );
    let (backend, gate) = gate_with(&extra).await;
    let token = token_for("alice", &["admin"]);
    let spoof = "X-Remote-User: mallory\r\nX-Remote-Groups: root\r\nX-Remote-Auth: api_key\r\n";
    gate.raw(&raw_get(
        "/admin/x",
        &format!("{}{spoof}", auth_line(&token)),
    ))
    .await;
    let request = only_request(&backend, "custom identity headers").await;
    assert_eq!(seen(&request, "x-remote-user"), ["alice"], "{request}");
    assert_eq!(seen(&request, "x-remote-groups"), ["admin"], "{request}");
    assert_eq!(seen(&request, "x-remote-auth"), ["jwt"], "{request}");
    gate.raw(&raw_get("/public/x", spoof)).await;
    let request = only_request(&backend, "custom identity headers, open").await;
    for name in ["x-remote-user", "x-remote-groups", "x-remote-auth"] {
        assert!(seen(&request, name).is_empty(), "{name}: {request}");
    }
    let answer = gate
        .raw(&raw_get("/public/x", "X_Remote_User: root\r\n"))
        .await;
    assert_raw_error(&answer, 400, "bad_request", "X_Remote_User");
    assert_never_seen(&backend, "X_Remote_User").await;
}

#[tokio::test]
async fn authenticated_route_forwards_only_gatehouses_identity_headers() {
    let (backend, gate) = gate_with(ADMIN_ROUTES).await;
    let token = token_for("alice", &["admin", "user"]);
    let headers = format!("{}{SPOOFED}", auth_line(&token));
    let answer = gate.raw(&raw_get("/admin/x", &headers)).await;
    assert_ne!(status_of(&answer), 400, "{answer}");
    let request = only_request(&backend, "an authenticated route").await;
    assert_identity(&request, "alice", "admin,user", "jwt", "spoofed headers");
}

#[tokio::test]
async fn underscore_spelling_of_an_identity_header_is_refused() {
    let (backend, gate) = gate_with(ADMIN_ROUTES).await;
    let token = token_for("alice", &["admin"]);
    for spoof in [
        "X_Auth_User: admin",
        "x_auth_user: admin",
        "X_Auth_Roles: admin",
        "X_Auth_Method: jwt",
        "X_API_Key: whatever",
        "X-Auth_User: admin",
        "X_Forwarded_For: 127.0.0.1",
        "X_Request_Id: spoofed",
    ] {
        for (target, creds) in [
            ("/public/x", String::new()),
            ("/admin/x", auth_line(&token)),
        ] {
            let answer = gate
                .raw(&raw_get(target, &format!("{creds}{spoof}\r\n")))
                .await;
            assert_raw_error(&answer, 400, "bad_request", &format!("{target} {spoof}"));
            assert_never_seen(&backend, &format!("{target} with {spoof}")).await;
        }
    }
    // Over HTTP/2 too.
    let res = gate
        .client()
        .get(gate.url("/public/x"))
        .header("x_auth_user", "admin")
        .send()
        .await
        .expect("request");
    assert_eq!(res.version(), reqwest::Version::HTTP_2);
    assert_error(res, 400, "bad_request", "x_auth_user over HTTP/2").await;
    assert_never_seen(&backend, "x_auth_user over HTTP/2").await;
}

#[tokio::test]
async fn connection_header_cannot_strip_the_identity_headers() {
    let (backend, gate) = gate_with(ADMIN_ROUTES).await;
    let token = token_for("alice", &["admin"]);
    let raw = format!(
        "GET /admin/x HTTP/1.1\r\nHost: localhost\r\n{}\
         X-Auth-User: mallory\r\n\
         Connection: close, X-Auth-User, X-Auth-Roles, X-Auth-Method, X-Request-Id\r\n\r\n",
        auth_line(&token)
    );
    let answer = gate.raw(raw.as_bytes()).await;
    assert_ne!(status_of(&answer), 400, "{answer}");
    let request = only_request(&backend, "Connection: X-Auth-User").await;
    assert_identity(&request, "alice", "admin", "jwt", "Connection: X-Auth-User");
    assert_eq!(seen(&request, "x-request-id").len(), 1, "{request}");
}

#[tokio::test]
async fn duplicate_authorization_headers_are_refused() {
    let (backend, gate) = gate_with(ADMIN_ROUTES).await;
    let admin = token_for("root", &["admin"]);
    let user = token_for("mallory", &["user"]);
    for (first, second) in [
        (auth_line(&user), auth_line(&admin)),
        (auth_line(&admin), auth_line(&admin)),
        (
            auth_line(&admin),
            "authorization: Basic Zm9vOmJhcg==\r\n".to_owned(),
        ),
        (auth_line("garbage"), auth_line(&admin)),
    ] {
        for target in ["/admin/x", "/public/x"] {
            let answer = gate
                .raw(&raw_get(target, &format!("{first}{second}")))
                .await;
            assert_raw_error(&answer, 400, "bad_request", "two Authorization headers");
            assert_never_seen(&backend, "a request with two Authorization headers").await;
        }
    }
}

#[tokio::test]
async fn untrusted_forwarding_headers_do_not_change_routing_or_auth() {
    let (backend, gate) = gate_with(ADMIN_ROUTES).await;
    let rewrites = "X-Original-URL: /public/x\r\n\
                    X-Rewrite-URL: /public/x\r\n\
                    X-Original-URI: /public/x\r\n\
                    X-Forwarded-Uri: /public/x\r\n\
                    X-Forwarded-Path: /public/x\r\n\
                    X-Forwarded-Prefix: /public\r\n\
                    X-Forwarded-For: 10.9.8.7\r\n\
                    X-Forwarded-Proto: https\r\n\
                    X-Forwarded-Host: internal.example\r\n\
                    X-Real-IP: 10.9.8.7\r\n\
                    Forwarded: for=10.9.8.7;proto=https;host=internal.example\r\n";
    let answer = gate.raw(&raw_get("/admin/x", rewrites)).await;
    assert_raw_error(
        &answer,
        401,
        "missing_credentials",
        "/admin with X-Original-URL",
    );
    assert_never_seen(&backend, "/admin with rewrite headers").await;

    // X-Forwarded-Host does not select a host-bound route; only Host does.
    let answer = gate.raw(&raw_get("/internal/x", rewrites)).await;
    assert_raw_error(&answer, 401, "missing_credentials", "X-Forwarded-Host");
    assert_never_seen(&backend, "/internal with X-Forwarded-Host").await;
    let direct = "GET /internal/x HTTP/1.1\r\nHost: internal.example\r\nConnection: close\r\n\r\n";
    gate.raw(direct.as_bytes()).await;
    let request = only_request(&backend, "Host: internal.example").await;
    assert_eq!(request["path"], "/internal/x");

    // On an open route the rewrite headers are forwarded to nobody.
    gate.raw(&raw_get("/public/x", rewrites)).await;
    let request = only_request(&backend, "/public with rewrite headers").await;
    for name in [
        "x-original-url",
        "x-rewrite-url",
        "x-original-uri",
        "x-forwarded-uri",
        "x-forwarded-path",
        "x-forwarded-prefix",
        "x-real-ip",
        "forwarded",
    ] {
        assert!(
            seen(&request, name).is_empty(),
            "{name} reached the backend"
        );
    }
    assert_eq!(seen(&request, "x-forwarded-for"), ["127.0.0.1"]);
}

// --- forward_authorization --------------------------------------------------

#[tokio::test]
async fn authorization_is_forwarded_by_default() {
    let (backend, gate) = gate_with(JWT_ROUTES).await;
    let token = token_for("alice", &["user"]);
    let request = assert_token_accepted(&gate, &backend, "/echo/api/x", &token, "default").await;
    assert_eq!(
        seen(&request, "authorization"),
        [format!("Bearer {token}").as_str()]
    );
}

#[tokio::test]
async fn forward_authorization_false_strips_authorization() {
    let (backend, gate) = gate_with(&format!("forward_authorization: false\n{JWT_ROUTES}")).await;
    let token = token_for("alice", &["user"]);
    let request = assert_token_accepted(&gate, &backend, "/echo/api/x", &token, "stripped").await;
    assert!(seen(&request, "authorization").is_empty(), "{request}");
    assert!(!request.to_string().contains(&token), "{request}");
    assert_identity(
        &request,
        "alice",
        "user",
        "jwt",
        "forward_authorization: false",
    );
}

// --- identity forwarded exactly as verified (issue 10) ----------------------

#[tokio::test]
async fn an_identity_with_surrounding_whitespace_is_refused_not_trimmed() {
    // An HTTP parser trims header values: `"admin "` would reach the backend
    // as `admin`, an identity nobody verified.
    let (backend, gate) = gate_with(JWT_ROUTES).await;
    for (sub, roles, what) in [
        ("admin ", vec!["user"], "sub with a trailing space"),
        (" admin", vec!["user"], "sub with a leading space"),
        ("alice", vec!["admin "], "role with a trailing space"),
        ("alice", vec![" admin"], "role with a leading space"),
        ("admin\u{a0}", vec!["user"], "sub with a no-break space"),
    ] {
        let token = hs256(&access_claims(sub, &roles));
        assert_token_refused(&gate, &backend, "/echo/api/x", &token, what).await;
    }
    // The same identity without the space is accepted as itself.
    let token = hs256(&access_claims("admin", &["user"]));
    let seen_request =
        assert_token_accepted(&gate, &backend, "/echo/api/x", &token, "no space").await;
    assert_identity(&seen_request, "admin", "user", "jwt", "no space");
}

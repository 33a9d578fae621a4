//! Login, refresh and logout body parsing (src/auth/tokens.rs):
//! `body_kind`, `parse_login`, `parse_refresh`, `parse_logout`.
//!
//! Input: the first line is the `Content-Type` (`-` for none); the rest is
//! the body. The body is parsed as the announced kind and also as each of
//! JSON and form, whatever the line says.
//!
//! Properties:
//! - `body_kind` is JSON exactly for `application/json`, form exactly for
//!   `application/x-www-form-urlencoded` (media type before `;`, trimmed,
//!   any case), else 415;
//! - an accepted body never has the same field twice — for JSON, member
//!   names read by a separate deserializer (escapes decoded); for a form,
//!   names decoded by a scan written in the target, not `form_urlencoded`;
//!   and a body with a repeated field is always refused;
//! - an accepted login has a `username` of 1..=256 bytes and a `password`
//!   of at most 1024, both exactly the body's string values, and a
//!   `grant_type`, if any, of `password`; an accepted refresh token is
//!   1..=512 bytes, the body's `refresh_token`, with `grant_type`, if any,
//!   `refresh_token`; logout without a content type accepts only an empty
//!   body.
#![no_main]

use gatehouse::auth::tokens::{body_kind, parse_login, parse_logout, parse_refresh, BodyKind};
use gatehouse_fuzz::{form_field_names, form_pairs, has_duplicate, json_member_names, json_members};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// The string value of `name` in the body, by this target's own reading.
fn string_field(kind: BodyKind, body: &[u8], name: &str) -> Option<String> {
    match kind {
        BodyKind::Json => json_members(body)?
            .into_iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| match v {
                Value::String(s) => Some(s),
                _ => None,
            }),
        BodyKind::Form => form_pairs(body)
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v),
    }
}

/// Whether the body has a field twice, by this target's own reading.
/// `None`: not something the parser can accept anyway (not a JSON object).
fn duplicate(kind: BodyKind, body: &[u8]) -> Option<bool> {
    match kind {
        BodyKind::Json => json_member_names(body).map(|n| has_duplicate(&n)),
        BodyKind::Form => Some(has_duplicate(&form_field_names(body))),
    }
}

fn check(kind: BodyKind, body: &[u8]) {
    let dup = duplicate(kind, body);
    let blank_json = kind == BodyKind::Json && body.iter().all(u8::is_ascii_whitespace);

    let login = parse_login(kind, body);
    let refresh = parse_refresh(kind, body);
    let logout = parse_logout(Some(kind), body);
    gatehouse_fuzz::debug!(
        "{kind:?}: login {:?}, refresh {refresh:?}, logout {logout:?}, duplicate {dup:?}",
        login.as_ref().map(|l| &l.username)
    );
    if dup == Some(true) {
        assert!(login.is_err(), "{kind:?} {body:?}: login with a field twice accepted");
        assert!(refresh.is_err(), "{kind:?} {body:?}: refresh with a field twice accepted");
        assert!(logout.is_err(), "{kind:?} {body:?}: logout with a field twice accepted");
    }
    let any_accepted = login.is_ok() || refresh.is_ok() || logout.is_ok();
    if any_accepted && !blank_json {
        assert_eq!(dup, Some(false), "{kind:?} {body:?}: accepted, fields {dup:?}");
    }

    if let Ok(req) = &login {
        assert!(!req.username.is_empty() && req.username.len() <= 256);
        assert!(req.password.len() <= 1024);
        assert_eq!(string_field(kind, body, "username").as_ref(), Some(&req.username));
        assert_eq!(string_field(kind, body, "password").as_ref(), Some(&req.password));
        if let Some(g) = string_field(kind, body, "grant_type") {
            assert_eq!(g, "password");
        }
    }
    if let Ok(token) = &refresh {
        assert!(!token.is_empty() && token.len() <= 512);
        assert_eq!(string_field(kind, body, "refresh_token").as_ref(), Some(token));
        if let Some(g) = string_field(kind, body, "grant_type") {
            assert_eq!(g, "refresh_token");
        }
    }
    if let Ok(Some(token)) = &logout {
        assert_eq!(string_field(kind, body, "refresh_token").as_ref(), Some(token));
    }
}

fuzz_target!(|data: &[u8]| {
    let nl = data.iter().position(|&b| b == b'\n').unwrap_or(data.len());
    let (line, body) = (&data[..nl], data.get(nl + 1..).unwrap_or_default());
    let content_type = match std::str::from_utf8(line) {
        Ok("-") => None,
        Ok(ct) => Some(ct),
        Err(_) => return,
    };

    let kind = body_kind(content_type);
    let mime = content_type
        .map(|c| c.split(';').next().unwrap_or_default().trim().to_ascii_lowercase());
    match mime.as_deref() {
        Some("application/json") => assert_eq!(kind.as_ref().ok(), Some(&BodyKind::Json)),
        Some("application/x-www-form-urlencoded") => {
            assert_eq!(kind.as_ref().ok(), Some(&BodyKind::Form))
        }
        _ => assert!(kind.is_err(), "{content_type:?} accepted as {kind:?}"),
    }

    match parse_logout(kind.as_ref().ok().copied(), body) {
        Ok(None) if kind.is_err() => assert!(body.is_empty()),
        Err(_) if kind.is_err() => assert!(!body.is_empty()),
        Ok(Some(_)) if kind.is_err() => panic!("logout without a content type read a body"),
        _ => {}
    }

    check(BodyKind::Json, body);
    check(BodyKind::Form, body);
});

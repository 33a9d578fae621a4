//! Browser sessions (SPEC §9): the `__Host-` cookie, and the session it
//! names in the store.
//!
//! The cookie is 256 random bits (43 base64url characters); the store keeps
//! only its SHA-256, with who signed in and when. Every sign-in makes a new
//! one — a cookie the browser brought is never adopted (no fixation). A
//! session is its own refresh family (`sid`), so logout, revocation and the
//! family machinery end it the same way they end a token's family.
//!
//! A password session follows the users file: a user removed or disabled
//! there is refused on the next request, and the file's roles are the ones
//! that count.

use std::sync::Arc;

use base64::Engine as _;
use http::header::{self, HeaderMap, HeaderValue, COOKIE};

use super::users::UsersFile;
use super::{Principal, Scheme};
use crate::config;
use crate::store::{Session, Store, StoreError};

/// `Session::method` of a sign-in with the users file.
pub const PASSWORD: &str = "password";

/// How often at most a session's `last_seen` is written back.
const TOUCH_EVERY: u64 = 60;

/// A new cookie value and the hash it is stored under.
pub fn new_cookie() -> (String, String) {
    let bytes: [u8; 32] = rand::random();
    let value = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let hash = cookie_hash(&value);
    (value, hash)
}

/// Hex SHA-256 of a cookie value: the only form in which it is stored.
pub fn cookie_hash(value: &str) -> String {
    crate::text::sha256_hex(value)
}

/// Whether `value` has the shape of a cookie gatehouse made (43 base64url
/// characters): anything else is not looked up.
fn well_formed(value: &str) -> bool {
    value.len() == 43
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Who signs in, for [`start`].
pub struct SignIn<'a> {
    pub user: &'a str,
    pub roles: &'a [String],
    pub email: Option<&'a str>,
    /// [`PASSWORD`] or the identity provider's name.
    pub method: &'a str,
}

/// Starts a session: stores it and returns the cookie value for
/// `Set-Cookie` and the session.
pub async fn start(
    store: &Store,
    cfg: &config::Sessions,
    who: SignIn<'_>,
    now: u64,
) -> Result<(String, Session), StoreError> {
    let (value, hash) = new_cookie();
    let session = Session {
        sub: who.user.to_owned(),
        roles: who.roles.to_vec(),
        email: who.email.map(str::to_owned),
        method: who.method.to_owned(),
        sid: format!("{:032x}", rand::random::<u128>()),
        created: now,
        last_seen: now,
        absolute_expiry: now + cfg.absolute_timeout.as_secs(),
        idle_timeout: cfg.idle_timeout.as_secs(),
    };
    store.new_session(&hash, &session).await?;
    Ok((value, session))
}

/// What a request's session cookie came to.
#[derive(Debug)]
pub enum Resumed {
    /// A live session, and the principal it signs in.
    Live {
        principal: Arc<Principal>,
        session: Session,
    },
    /// The cookie names no live session (unknown, expired or revoked): no
    /// credential, and the answer clears it.
    Gone,
    /// It did, but its user is gone from the users file or disabled there:
    /// the session has just been ended (and is gone, as above).
    UserGone,
}

/// The session `cookie` names, checked as the module doc says; `last_seen`
/// is written back at most once a minute.
pub async fn resume(
    store: &Store,
    users: &UsersFile,
    cookie: &str,
    now: u64,
) -> Result<Resumed, StoreError> {
    if !well_formed(cookie) {
        return Ok(Resumed::Gone);
    }
    let hash = cookie_hash(cookie);
    let Some(mut session) = store.session(&hash, now).await? else {
        return Ok(Resumed::Gone);
    };
    let roles = if session.method == PASSWORD {
        match users.get(&session.sub) {
            Some(user) if !user.disabled => user.roles,
            // Removed or disabled in the users file: the session is over.
            _ => {
                store.end_session(&hash).await?;
                store.revoke(None, Some(&session.sid), now).await?;
                return Ok(Resumed::UserGone);
            }
        }
    } else {
        session.roles.clone()
    };
    // A short idle timeout (tests, kiosks) still slides: touched at least
    // twice per idle period.
    let every = TOUCH_EVERY.min(session.idle_timeout / 2);
    if now.saturating_sub(session.last_seen) >= every {
        session.last_seen = now;
        // Best effort: a failed write costs the session at most a minute
        // of its idle time, never the request.
        if let Err(e) = store.touch_session(&hash, &session).await {
            tracing::debug!(error = %e, "could not refresh a session's last use");
        }
    }
    let principal = Principal::new(
        &session.sub,
        roles,
        Scheme::Session,
        Some(session.expires_at()),
        None,
        Some(session.sid.clone()),
    );
    match principal {
        Ok(mut p) => {
            p.from_users_file = session.method == PASSWORD;
            Ok(Resumed::Live {
                principal: Arc::new(p.with_email(session.email.as_deref())),
                session,
            })
        }
        Err(_) => Ok(Resumed::Gone),
    }
}

/// Ends the session `cookie` names: the record is deleted and its family
/// revoked (every replica stops accepting it at once). Whether it was live.
pub async fn end(store: &Store, cookie: &str, now: u64) -> Result<bool, StoreError> {
    if !well_formed(cookie) {
        return Ok(false);
    }
    let hash = cookie_hash(cookie);
    let live = store.session(&hash, now).await?;
    if let Some(session) = &live {
        store.revoke(None, Some(&session.sid), now).await?;
    }
    store.end_session(&hash).await?;
    Ok(live.is_some())
}

/// The session cookie in a request's `Cookie` headers.
#[derive(Debug, PartialEq, Eq)]
pub enum Found<'a> {
    None,
    One(&'a str),
    /// Sent more than once: which one would be the browser's is unknown,
    /// so none is used.
    Several,
}

/// The `name=value` pairs of one `Cookie` header, as bytes: a browser
/// sends the app's cookies as they were set, not always as ASCII, and a
/// header that is not text must not hide ours.
fn pairs(value: &HeaderValue) -> impl Iterator<Item = (&[u8], &[u8])> {
    value.as_bytes().split(|b| *b == b';').filter_map(|pair| {
        let at = pair.iter().position(|b| *b == b'=')?;
        Some((pair[..at].trim_ascii(), pair[at + 1..].trim_ascii()))
    })
}

/// Finds the cookie `name` in every `Cookie` header (RFC 6265 §5.4: pairs
/// separated by `;`).
pub fn find<'a>(headers: &'a HeaderMap, name: &str) -> Found<'a> {
    let mut found = Found::None;
    for value in headers.get_all(COOKIE) {
        for (n, v) in pairs(value) {
            if n == name.as_bytes() {
                // Not text: no cookie of ours, which `resume` then refuses.
                let v = std::str::from_utf8(v).unwrap_or_default();
                found = match found {
                    Found::None => Found::One(v.trim_matches('"')),
                    _ => return Found::Several,
                };
            }
        }
    }
    found
}

/// Removes the cookie `name`, and the sign-in flow cookies named after it
/// (SPEC §10, `oidc::flow_cookie_name`), from the `Cookie` headers (the
/// app's own cookies pass unchanged, byte for byte), and joins what is left
/// into one header: HTTP/2 sends each cookie as a field of its own, an
/// HTTP/1.1 upstream reads one (RFC 9113 §8.2.3).
pub fn strip(headers: &mut HeaderMap, name: &str) {
    // The session cookie, or a sign-in flow's (`<name><infix>…`); tested
    // in place: this runs for every forwarded request.
    let infix = super::oidc::FLOW_COOKIE_INFIX.as_bytes();
    let ours = |pair: &[u8]| {
        let n = pair.split(|b| *b == b'=').next().unwrap_or_default();
        let n = n.trim_ascii();
        pair.contains(&b'=')
            && n.strip_prefix(name.as_bytes())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with(infix))
    };
    let (mut fields, mut has_ours) = (0, false);
    for value in headers.get_all(COOKIE) {
        fields += 1;
        has_ours = has_ours || value.as_bytes().split(|b| *b == b';').any(ours);
    }
    if fields == 0 || (fields == 1 && !has_ours) {
        return;
    }
    let mut kept: Vec<u8> = Vec::new();
    for value in headers.get_all(COOKIE) {
        for pair in value.as_bytes().split(|b| *b == b';') {
            let pair = pair.trim_ascii();
            if pair.is_empty() || ours(pair) {
                continue;
            }
            if !kept.is_empty() {
                kept.extend_from_slice(b"; ");
            }
            kept.extend_from_slice(pair);
        }
    }
    headers.remove(COOKIE);
    // Made of the bytes of valid header values and "; ": valid too.
    if let Ok(value) = HeaderValue::from_bytes(&kept) {
        if !kept.is_empty() {
            headers.insert(COOKIE, value);
        }
    }
}

/// A top-level navigation by a browser (SPEC §9): `Sec-Fetch-Mode:
/// navigate`, or, from a browser without Fetch Metadata, an `Accept` that
/// lists `text/html`.
pub fn is_navigation(headers: &HeaderMap) -> bool {
    match headers.get("sec-fetch-mode") {
        Some(mode) => mode.as_bytes() == b"navigate",
        None => headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|item| {
                let media = item.split(';').next().unwrap_or("").trim();
                media.eq_ignore_ascii_case("text/html")
            }),
    }
}

/// `Set-Cookie` for a new session.
pub fn set_cookie(cfg: &config::Sessions, value: &str) -> HeaderValue {
    let max_age = if cfg.persistent {
        format!("; Max-Age={}", cfg.absolute_timeout.as_secs())
    } else {
        String::new()
    };
    let text = format!(
        "{}={value}; Path=/; Secure; HttpOnly; SameSite={}{max_age}",
        cfg.cookie,
        cfg.same_site.as_str()
    );
    // The name is a validated token, the value base64url.
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// `Set-Cookie` that clears the session cookie.
pub fn clear_cookie(cfg: &config::Sessions) -> HeaderValue {
    let text = format!(
        "{}=; Path=/; Secure; HttpOnly; SameSite={}; Max-Age=0",
        cfg.cookie,
        cfg.same_site.as_str()
    );
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(cookies: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for c in cookies {
            h.append(COOKIE, HeaderValue::from_str(c).unwrap());
        }
        h
    }

    const NAME: &str = "__Host-gatehouse";

    #[test]
    fn a_cookie_is_256_random_bits_stored_as_its_hash() {
        let (value, hash) = new_cookie();
        assert_eq!(value.len(), 43);
        assert!(well_formed(&value));
        assert_eq!(hash, cookie_hash(&value));
        assert_eq!(hash.len(), 64);
        assert_ne!(new_cookie().0, value);
        for bad in [
            "",
            "short",
            &"a".repeat(44),
            &format!("{}=", &value[..42]),
            &format!("{}.", &value[..42]),
        ] {
            assert!(!well_formed(bad), "{bad:?}");
        }
    }

    #[test]
    fn the_cookie_is_found_in_any_cookie_header_once() {
        assert_eq!(find(&headers(&[]), NAME), Found::None);
        assert_eq!(find(&headers(&["a=1; b=2"]), NAME), Found::None);
        assert_eq!(
            find(&headers(&["a=1; __Host-gatehouse=abc; b=2"]), NAME),
            Found::One("abc")
        );
        assert_eq!(
            find(&headers(&["a=1", "__Host-gatehouse=\"abc\""]), NAME),
            Found::One("abc")
        );
        assert_eq!(
            find(&headers(&["__Host-gatehouse=a; __Host-gatehouse=b"]), NAME),
            Found::Several
        );
        assert_eq!(
            find(
                &headers(&["__Host-gatehouse=a", "__Host-gatehouse=b"]),
                NAME
            ),
            Found::Several
        );
        // Names are case-sensitive, and a prefix is not the name.
        assert_eq!(
            find(&headers(&["__host-gatehouse=a; __Host-gatehouse2=b"]), NAME),
            Found::None
        );
    }

    #[test]
    fn only_our_cookie_is_stripped_before_forwarding() {
        let mut h = headers(&[
            "app=1; __Host-gatehouse=secret; theme=dark",
            "__Host-gatehouse=x; __Host-gatehouse-oidc-0123456789abcdef=flow",
        ]);
        strip(&mut h, NAME);
        let left: Vec<&str> = h
            .get_all(COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(left, ["app=1; theme=dark"]);
        let mut h = headers(&["app=1"]);
        strip(&mut h, NAME);
        assert_eq!(h[COOKIE], "app=1");
        // Only our name and our flows' prefix: a longer name is the app's.
        let mut h = headers(&["__Host-gatehouse2=a; __Host-gatehouse-app=b; __Host-gatehouse=c"]);
        strip(&mut h, NAME);
        assert_eq!(h[COOKIE], "__Host-gatehouse2=a; __Host-gatehouse-app=b");
        let mut h = headers(&["__Host-gatehouse=only"]);
        strip(&mut h, NAME);
        assert!(!h.contains_key(COOKIE));
    }

    /// Headers whose values are raw bytes (a browser sends an app's cookie
    /// as it was set, UTF-8 included).
    fn raw(values: &[&[u8]]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(COOKIE, HeaderValue::from_bytes(v).unwrap());
        }
        h
    }

    #[test]
    fn a_cookie_header_that_is_not_ascii_hides_nothing() {
        let h = raw(&[b"name=caf\xc3\xa9; __Host-gatehouse=abc"]);
        assert_eq!(find(&h, NAME), Found::One("abc"));
        let mut h = h;
        strip(&mut h, NAME);
        assert_eq!(h[COOKIE].as_bytes(), b"name=caf\xc3\xa9");
        // Our cookie's value must be text to be ours at all.
        let h = raw(&[b"__Host-gatehouse=\xff\xfe"]);
        assert_eq!(find(&h, NAME), Found::One(""));
        assert!(!well_formed(""));
        let mut h = h;
        strip(&mut h, NAME);
        assert!(!h.contains_key(COOKIE));
    }

    #[test]
    fn cookies_sent_as_several_fields_reach_the_app_as_one_header() {
        // HTTP/2 "crumbs" (RFC 9113 §8.2.3), with and without ours.
        let mut h = headers(&["a=1", "b=2", "c=3"]);
        strip(&mut h, NAME);
        assert_eq!(h.get_all(COOKIE).iter().count(), 1);
        assert_eq!(h[COOKIE], "a=1; b=2; c=3");
        let mut h = headers(&["a=1", "__Host-gatehouse=x", "flag", "b=2"]);
        strip(&mut h, NAME);
        assert_eq!(h[COOKIE], "a=1; flag; b=2");
    }

    #[test]
    fn set_cookie_has_every_attribute_the_spec_names() {
        let mut cfg = config::Sessions {
            enabled: true,
            cookie: NAME.into(),
            same_site: config::SameSite::Lax,
            idle_timeout: std::time::Duration::from_secs(3600),
            absolute_timeout: std::time::Duration::from_secs(7 * 86400),
            persistent: true,
            login_page: config::LoginPage::Builtin,
            after_logout: "/auth/login".into(),
            allowed_redirect_hosts: Vec::new(),
            trusted_origins: Vec::new(),
            app_name: "gatehouse".into(),
        };
        assert_eq!(
            set_cookie(&cfg, "v"),
            "__Host-gatehouse=v; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=604800"
        );
        cfg.persistent = false;
        cfg.same_site = config::SameSite::Strict;
        assert_eq!(
            set_cookie(&cfg, "v"),
            "__Host-gatehouse=v; Path=/; Secure; HttpOnly; SameSite=Strict"
        );
        assert_eq!(
            clear_cookie(&cfg),
            "__Host-gatehouse=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0"
        );
    }
}

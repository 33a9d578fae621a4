//! Login, refresh and logout (SPEC §4): gatehouse's own token endpoints.
//!
//! - Access tokens are JWTs with `iss aud sub roles iat nbf exp jti sid` and
//!   `typ: "access"`; `sid` names the refresh family.
//! - Refresh tokens are 256 random bits, base64url; only their SHA-256 is
//!   stored. Each use spends one and returns a new one; presenting a spent
//!   one revokes the whole family (RFC 9700 §4.14.2, refresh token reuse).
//! - Every login failure — unknown user, wrong password, disabled, locked —
//!   gets the same answer and takes the same time (a password is always
//!   checked, against a dummy hash when the user is unknown).

use std::time::Duration;

use base64::Engine as _;
use jsonwebtoken::{EncodingKey, Header};
use serde_json::json;

use super::password::{Busy, Hasher};
use super::users::{User, UsersFile};
use super::Principal;
use crate::body::BodyError;
use crate::config;
use crate::metrics::Metrics;
use crate::store::{Family, Rotation, Store, StoreError};

/// Why a token endpoint could not answer with tokens.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// A `Content-Type` other than JSON or a form.
    #[error("unsupported content type")]
    UnsupportedMediaType,
    /// A body that is not what the endpoint takes; the text says how.
    #[error("malformed body: {0}")]
    BadBody(&'static str),
    /// The body could not be read (too large, stalled, broken).
    #[error(transparent)]
    Body(#[from] BodyError),
    /// Wrong password, unknown, disabled or locked user: all the same.
    #[error("invalid credentials")]
    InvalidCredentials,
    /// A bad, spent or expired refresh token.
    #[error("invalid refresh token")]
    InvalidToken,
    /// The store failed (Redis down).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// gatehouse could not sign an access token.
    #[error("signing an access token failed")]
    Signing,
    /// The password checks are queued full (a login flood): try again.
    #[error(transparent)]
    Busy(#[from] Busy),
}

/// Largest body the token endpoints read.
pub const MAX_BODY: usize = 16 * 1024;
const MAX_USERNAME: usize = 256;
const MAX_PASSWORD: usize = 1024;

/// Signs gatehouse's access tokens.
pub struct Issuer {
    pub algorithm: jsonwebtoken::Algorithm,
    pub key: EncodingKey,
    pub issuer: String,
    pub audience: String,
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
}

/// What the token endpoints need.
pub struct TokenCx<'a> {
    pub issuer: &'a Issuer,
    pub users: &'a UsersFile,
    pub hasher: &'a Hasher,
    pub store: &'a Store,
    pub login_policy: &'a config::Login,
    pub metrics: &'a Metrics,
}

/// A request body's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    Json,
    Form,
}

/// The kind of body a `Content-Type` announces; anything else is 415.
pub fn body_kind(content_type: Option<&str>) -> Result<BodyKind, TokenError> {
    let mime = content_type
        .and_then(|c| c.split(';').next())
        .map(|m| m.trim().to_ascii_lowercase());
    match mime.as_deref() {
        Some("application/json") => Ok(BodyKind::Json),
        Some("application/x-www-form-urlencoded") => Ok(BodyKind::Form),
        _ => Err(TokenError::UnsupportedMediaType),
    }
}

fn bad(detail: &'static str) -> TokenError {
    TokenError::BadBody(detail)
}

/// A body's fields: a JSON object or a form. A field given twice is refused
/// (SPEC §5): parsers disagree on which copy wins (serde keeps the last,
/// others the first), so no copy is chosen.
fn fields(
    kind: BodyKind,
    body: &[u8],
) -> Result<serde_json::Map<String, serde_json::Value>, TokenError> {
    match kind {
        BodyKind::Json => {
            if body.iter().all(u8::is_ascii_whitespace) {
                return Ok(serde_json::Map::new());
            }
            match serde_json::from_slice::<UniqueObject>(body) {
                Ok(UniqueObject(map)) => Ok(map),
                Err(e) if e.to_string().starts_with(DUPLICATE) => Err(bad(DUPLICATE)),
                Err(_) => Err(bad("The body must be a JSON object")),
            }
        }
        BodyKind::Form => {
            let mut map = serde_json::Map::new();
            for (k, v) in form_urlencoded::parse(body) {
                let value = serde_json::Value::String(v.into_owned());
                if map.insert(k.into_owned(), value).is_some() {
                    return Err(bad(DUPLICATE));
                }
            }
            Ok(map)
        }
    }
}

const DUPLICATE: &str = "a field is given twice";

/// A JSON object whose members all have distinct names.
struct UniqueObject(serde_json::Map<String, serde_json::Value>);

impl<'de> serde::Deserialize<'de> for UniqueObject {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Members;
        impl<'de> serde::de::Visitor<'de> for Members {
            type Value = UniqueObject;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut access: A,
            ) -> Result<UniqueObject, A::Error> {
                let mut map = serde_json::Map::new();
                while let Some((k, v)) = access.next_entry::<String, serde_json::Value>()? {
                    if map.insert(k, v).is_some() {
                        return Err(serde::de::Error::custom(DUPLICATE));
                    }
                }
                Ok(UniqueObject(map))
            }
        }
        d.deserialize_map(Members)
    }
}

fn string_field(map: &serde_json::Map<String, serde_json::Value>, name: &str) -> Option<String> {
    map.get(name).and_then(|v| v.as_str()).map(str::to_owned)
}

/// `{"username","password"}` or the OAuth2 password form (`grant_type=password` optional).
pub struct LoginRequest {
    pub username: String,
    pub password: String,
}

pub fn parse_login(kind: BodyKind, body: &[u8]) -> Result<LoginRequest, TokenError> {
    login_fields(&fields(kind, body)?)
}

/// The browser sign-in form (or JSON) of SPEC §9: `username`, `password`
/// and the optional `rd` to return to.
pub fn parse_session_login(
    kind: BodyKind,
    body: &[u8],
) -> Result<(LoginRequest, Option<String>), TokenError> {
    let map = fields(kind, body)?;
    let rd = string_field(&map, "rd");
    Ok((login_fields(&map)?, rd))
}

fn login_fields(
    map: &serde_json::Map<String, serde_json::Value>,
) -> Result<LoginRequest, TokenError> {
    if let Some(grant) = string_field(map, "grant_type") {
        if grant != "password" {
            return Err(bad("grant_type must be password"));
        }
    }
    let (Some(username), Some(password)) =
        (string_field(map, "username"), string_field(map, "password"))
    else {
        return Err(bad("username and password are required"));
    };
    if username.is_empty() || username.len() > MAX_USERNAME || password.len() > MAX_PASSWORD {
        return Err(bad("username or password has an invalid length"));
    }
    Ok(LoginRequest { username, password })
}

/// The refresh token of `{"refresh_token"}` or `grant_type=refresh_token&refresh_token=`.
pub fn parse_refresh(kind: BodyKind, body: &[u8]) -> Result<String, TokenError> {
    let map = fields(kind, body)?;
    if let Some(grant) = string_field(&map, "grant_type") {
        if grant != "refresh_token" {
            return Err(bad("grant_type must be refresh_token"));
        }
    }
    string_field(&map, "refresh_token")
        .filter(|t| !t.is_empty() && t.len() <= 512)
        .ok_or_else(|| bad("refresh_token is required"))
}

/// The optional refresh token of a logout body.
pub fn parse_logout(kind: Option<BodyKind>, body: &[u8]) -> Result<Option<String>, TokenError> {
    match kind {
        None if body.is_empty() => Ok(None),
        None => Err(TokenError::UnsupportedMediaType),
        Some(kind) => Ok(string_field(&fields(kind, body)?, "refresh_token")),
    }
}

fn random_token(bytes: usize) -> String {
    let buf: Vec<u8> = (0..bytes).map(|_| rand::random::<u8>()).collect();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}

fn random_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// Hex SHA-256 of a refresh token: the only form in which it is stored.
pub fn token_hash(token: &str) -> String {
    crate::text::sha256_hex(token)
}

impl Issuer {
    /// A signed access token for `user`: (token, exp).
    pub fn access_token(
        &self,
        user: &str,
        roles: &[String],
        sid: &str,
        now: u64,
    ) -> Result<(String, u64), TokenError> {
        let exp = now + self.access_ttl.as_secs();
        let claims = json!({
            "iss": self.issuer, "aud": self.audience, "sub": user, "roles": roles,
            "iat": now, "nbf": now, "exp": exp, "jti": random_id(), "sid": sid, "typ": "access",
        });
        let token = jsonwebtoken::encode(&Header::new(self.algorithm), &claims, &self.key)
            .map_err(|e| {
                tracing::error!(error = %e, "signing an access JWT failed");
                TokenError::Signing
            })?;
        Ok((token, exp))
    }

    fn response(&self, access: String, refresh: String) -> serde_json::Value {
        json!({
            "access_token": access,
            "token_type": "bearer",
            "expires_in": self.access_ttl.as_secs(),
            "refresh_token": refresh,
            "refresh_expires_in": self.refresh_ttl.as_secs(),
        })
    }

    /// Starts a new refresh family for `user` and returns the token response.
    async fn new_session(
        &self,
        store: &Store,
        user: &str,
        roles: &[String],
        now: u64,
    ) -> Result<serde_json::Value, TokenError> {
        let sid = random_id();
        let refresh = random_token(32);
        let family = Family {
            user: user.to_owned(),
            current: token_hash(&refresh),
            expires: now + self.refresh_ttl.as_secs(),
            revoked: false,
        };
        store.new_family(&sid, family).await?;
        let (access, _) = self.access_token(user, roles, &sid, now)?;
        Ok(self.response(access, refresh))
    }
}

/// `POST /login`.
pub async fn login(
    cx: &TokenCx<'_>,
    req: LoginRequest,
    now: u64,
) -> Result<serde_json::Value, TokenError> {
    let user = check_password(cx, &req, now).await?;
    cx.issuer
        .new_session(cx.store, &req.username, &user.roles, now)
        .await
}

/// Checks a username and password against the users file, under the
/// lockout, in the same time whatever fails; counts the outcome in
/// `gatehouse_logins_total` (a success once the caller has used it).
pub async fn check_password(
    cx: &TokenCx<'_>,
    req: &LoginRequest,
    now: u64,
) -> Result<User, TokenError> {
    let count = |result: &str| cx.metrics.logins.with_label_values(&[result]).inc();
    let locked = cx.store.is_locked(&req.username, now).await?;
    let user = cx.users.get(&req.username);
    // Always check a password, so every failure takes as long as any other:
    // an unknown name is checked against an existing user's hash.
    let stand_in = if user.is_none() {
        cx.users.stand_in(&req.username)
    } else {
        None
    };
    let checked = user.as_ref().map(|u| &u.hash).or(stand_in.as_ref());
    let matches = match cx.hasher.verify(checked, req.password.clone()).await {
        Ok(matches) => matches && user.is_some(),
        // Not checked at all: neither a failure nor a success.
        Err(Busy) => {
            count("busy");
            return Err(TokenError::Busy(Busy));
        }
    };
    if locked {
        count("locked");
        return Err(TokenError::InvalidCredentials);
    }
    let user = match user {
        Some(u) if matches && !u.disabled => u,
        _ => {
            cx.store
                .login_failed(&req.username, now, cx.login_policy)
                .await?;
            count("invalid_credentials");
            return Err(TokenError::InvalidCredentials);
        }
    };
    cx.store.login_succeeded(&req.username).await?;
    count("success");
    Ok(user)
}

/// `POST /auth/refresh`.
pub async fn refresh(
    cx: &TokenCx<'_>,
    presented: &str,
    now: u64,
) -> Result<serde_json::Value, TokenError> {
    let new = random_token(32);
    let expires = now + cx.issuer.refresh_ttl.as_secs();
    let rotation = cx
        .store
        .rotate(&token_hash(presented), &token_hash(&new), expires, now)
        .await?;
    match rotation {
        Rotation::Rotated { sid, user } => match cx.users.get(&user) {
            Some(u) if !u.disabled => {
                let (access, _) = cx.issuer.access_token(&user, &u.roles, &sid, now)?;
                Ok(cx.issuer.response(access, new))
            }
            _ => {
                // The user is gone or disabled: end the session.
                cx.store.revoke(None, Some(&sid), now).await?;
                Err(TokenError::InvalidToken)
            }
        },
        Rotation::Reused { sid } => {
            tracing::warn!(sid = %sid, "reuse of a spent refresh credential: its session family is revoked");
            Err(TokenError::InvalidToken)
        }
        Rotation::Unknown => Err(TokenError::InvalidToken),
    }
}

/// `POST /auth/logout`: the access token's `jti` and its family, and the
/// family of `refresh` if given, stop working.
pub async fn logout(
    cx: &TokenCx<'_>,
    principal: &Principal,
    refresh: Option<&str>,
    now: u64,
) -> Result<(), TokenError> {
    let jti = principal.jti.as_deref().zip(principal.exp);
    cx.store.revoke(jti, principal.sid.as_deref(), now).await?;
    if let Some(token) = refresh {
        if let Some(sid) = cx.store.family_of(&token_hash(token)).await? {
            if principal.sid.as_deref() != Some(sid.as_str()) {
                cx.store.revoke(None, Some(&sid), now).await?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_accepts_json_and_the_oauth2_password_form() {
        let j = parse_login(BodyKind::Json, br#"{"username":"demo","password":"pw"}"#).unwrap();
        assert_eq!((j.username.as_str(), j.password.as_str()), ("demo", "pw"));
        let f = parse_login(
            BodyKind::Form,
            b"grant_type=password&username=demo&password=p%26w",
        )
        .unwrap();
        assert_eq!(f.password, "p&w");
        assert!(parse_login(
            BodyKind::Form,
            b"grant_type=client_credentials&username=a&password=b"
        )
        .is_err());
        assert!(parse_login(BodyKind::Json, b"[1,2]").is_err());
        assert!(parse_login(BodyKind::Json, br#"{"username":"demo"}"#).is_err());
    }

    #[test]
    fn a_field_given_twice_is_refused_whichever_copy_would_win() {
        let dup = TokenError::BadBody(DUPLICATE);
        for body in [
            &br#"{"username":"demo","password":"x","username":"admin"}"#[..],
            br#"{"username":"demo","password":"x","password":"y"}"#,
            br#"{"username":"demo","user\u006eame":"admin","password":"x"}"#,
            br#"{"username":"demo","password":"x","extra":1,"extra":2}"#,
        ] {
            let err = parse_login(BodyKind::Json, body).err();
            assert_eq!(err, Some(dup.clone()), "{}", String::from_utf8_lossy(body));
        }
        for body in [
            &b"username=demo&password=x&username=admin"[..],
            b"username=demo&password=x&password=y",
            b"username=demo&password=x&user%6eame=admin",
            b"grant_type=password&grant_type=password&username=a&password=b",
        ] {
            let err = parse_login(BodyKind::Form, body).err();
            assert_eq!(err, Some(dup.clone()), "{}", String::from_utf8_lossy(body));
        }
        let err = parse_refresh(
            BodyKind::Json,
            br#"{"refresh_token":"a","refresh_token":"b"}"#,
        );
        assert_eq!(err.err(), Some(dup.clone()));
        let err = parse_refresh(BodyKind::Form, b"refresh_token=a&refresh_token=b");
        assert_eq!(err.err(), Some(dup));
        // Nested objects are values, not fields.
        assert!(parse_login(
            BodyKind::Json,
            br#"{"username":"demo","password":"x","meta":{"a":1,"b":2}}"#
        )
        .is_ok());
    }

    #[test]
    fn content_types_other_than_json_or_form_are_415() {
        assert_eq!(
            body_kind(Some("application/json; charset=utf-8")).unwrap(),
            BodyKind::Json
        );
        assert_eq!(
            body_kind(Some("application/x-www-form-urlencoded")).unwrap(),
            BodyKind::Form
        );
        assert_eq!(
            body_kind(Some("text/plain")).unwrap_err(),
            TokenError::UnsupportedMediaType
        );
        assert_eq!(
            body_kind(None).unwrap_err(),
            TokenError::UnsupportedMediaType
        );
    }

    #[test]
    fn refresh_tokens_are_stored_only_as_their_hash() {
        let t = random_token(32);
        assert_eq!(t.len(), 43);
        let h = token_hash(&t);
        assert_eq!(h.len(), 64);
        assert!(!h.contains(&t));
    }
}

//! `auth:`: gatehouse's own tokens and key, the issuers it also accepts, its
//! endpoints, API keys and the login lockout.
//!
//! Rules:
//! - `jwt.algorithm` is one gatehouse supports; an HS* algorithm needs
//!   exactly one of `secret` (at least 32 bytes) or `secret_file`, any other
//!   needs `private_key` and `public_key` and no secret; `access_ttl` and
//!   `refresh_ttl` are greater than zero.
//! - each `jwt.accept` issuer has exactly one key source, a `jwks_url` that
//!   is an `https://` URL, and a non-empty list of supported public-key
//!   `algorithms` (never HS*: an external issuer's secret is not ours).
//! - each `endpoints` path is a normalized absolute path.
//! - each API key has a 64-hex-digit `sha256` and a unique, non-empty `id`;
//!   the `id` and `roles` are sent in identity headers, so neither may hold
//!   a comma or a control character; `api_keys.header` is a header name.
//! - `login.max_failures` is at least 1 and `login.failure_window` greater
//!   than zero.

use http::Uri;

use super::{header, positive, roles, Ctx};
use crate::config::file;
use crate::config::model::{
    AcceptIssuer, ApiKey, ApiKeys, Auth, Endpoints, Jwt, JwtKey, KeySource, Login,
};
use crate::config::values::Text;
use crate::config::ConfigError;

pub(super) fn auth(cx: &Ctx, raw: &file::Auth) -> Result<Auth, ConfigError> {
    Ok(Auth {
        jwt: jwt(cx, &raw.jwt)?,
        users_file: cx.path(&raw.users_file),
        endpoints: endpoints(cx, &raw.endpoints)?,
        api_keys: api_keys(cx, &raw.api_keys)?,
        login: login(cx, &raw.login)?,
        sessions: super::sessions::sessions(cx, &raw.sessions)?,
        oidc: super::oidc::oidc(cx, &raw.oidc, raw.sessions.enabled.0)?,
    })
}

fn jwt(cx: &Ctx, j: &file::Jwt) -> Result<Jwt, ConfigError> {
    let alg = algorithm(cx, "auth.jwt.algorithm", j.algorithm.as_str())?;
    let key = if is_hmac(alg) {
        match (&j.secret, &j.secret_file) {
            (Some(s), None) => {
                if s.expose().len() < 32 {
                    return Err(cx.err(
                        "auth.jwt.secret",
                        "must be at least 32 bytes (run `gatehouse gen-secret` for one)",
                    ));
                }
                JwtKey::Secret(s.clone())
            }
            (None, Some(f)) => JwtKey::SecretFile(cx.path(f)),
            _ => {
                return Err(cx.err(
                    "auth.jwt",
                    format!("{alg:?} needs exactly one of `secret` or `secret_file`"),
                ))
            }
        }
    } else {
        match (&j.private_key, &j.public_key, &j.secret, &j.secret_file) {
            (Some(private), Some(public), None, None) => JwtKey::Pem {
                private: cx.path(private),
                public: cx.path(public),
            },
            _ => {
                return Err(cx.err(
                    "auth.jwt",
                    format!(
                        "{alg:?} needs `private_key` and `public_key` (PEM files) and no `secret`"
                    ),
                ))
            }
        }
    };
    let accept = j
        .accept
        .iter()
        .enumerate()
        .map(|(i, a)| accept_issuer(cx, &format!("auth.jwt.accept[{i}]"), a))
        .collect::<Result<_, _>>()?;
    Ok(Jwt {
        algorithm: alg,
        key,
        issuer: j.issuer.0.clone(),
        audience: j.audience.0.clone(),
        access_ttl: positive(cx, "auth.jwt.access_ttl", j.access_ttl.0)?,
        refresh_ttl: positive(cx, "auth.jwt.refresh_ttl", j.refresh_ttl.0)?,
        leeway: j.leeway.0,
        accept,
    })
}

fn accept_issuer(cx: &Ctx, key: &str, a: &file::AcceptIssuer) -> Result<AcceptIssuer, ConfigError> {
    let keys = match (&a.jwks_url, &a.jwks_file, &a.public_key) {
        (Some(u), None, None) => {
            let uri: Uri = u
                .as_str()
                .parse()
                .map_err(|_| cx.err(format!("{key}.jwks_url"), "invalid URL"))?;
            if uri.scheme_str() != Some("https") {
                return Err(cx.err(format!("{key}.jwks_url"), "must be an https:// URL"));
            }
            KeySource::JwksUrl(uri)
        }
        (None, Some(f), None) => KeySource::JwksFile(cx.path(f)),
        (None, None, Some(p)) => KeySource::PublicKey(cx.path(p)),
        _ => {
            return Err(cx.err(
                key,
                "exactly one of `jwks_url`, `jwks_file` or `public_key` is required",
            ))
        }
    };
    if a.algorithms.is_empty() {
        return Err(cx.err(
            format!("{key}.algorithms"),
            "list the algorithms this issuer signs with",
        ));
    }
    let algorithms = a
        .algorithms
        .iter()
        .enumerate()
        .map(|(k, name)| algorithm(cx, &format!("{key}.algorithms[{k}]"), name.as_str()))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(k) = algorithms.iter().position(|a| is_hmac(*a)) {
        return Err(cx.err(
            format!("{key}.algorithms[{k}]"),
            "external issuers are verified with public keys: HS* is not allowed",
        ));
    }
    Ok(AcceptIssuer {
        issuer: a.issuer.0.clone(),
        audience: a.audience.as_ref().map(|a| a.0.clone()),
        keys,
        algorithms,
        roles_claim: a.roles_claim.0.clone(),
    })
}

fn algorithm(cx: &Ctx, key: &str, name: &str) -> Result<jsonwebtoken::Algorithm, ConfigError> {
    use jsonwebtoken::Algorithm::*;
    Ok(match name.trim() {
        "HS256" => HS256,
        "HS384" => HS384,
        "HS512" => HS512,
        "RS256" => RS256,
        "RS384" => RS384,
        "RS512" => RS512,
        "PS256" => PS256,
        "PS384" => PS384,
        "PS512" => PS512,
        "ES256" => ES256,
        "ES384" => ES384,
        "EdDSA" => EdDSA,
        other => {
            return Err(cx.err(
                key,
                format!("unsupported algorithm {other:?} (HS256/384/512, RS256/384/512, PS256/384/512, ES256/384, EdDSA)"),
            ))
        }
    })
}

fn is_hmac(alg: jsonwebtoken::Algorithm) -> bool {
    use jsonwebtoken::Algorithm::*;
    matches!(alg, HS256 | HS384 | HS512)
}

fn endpoints(cx: &Ctx, e: &file::Endpoints) -> Result<Endpoints, ConfigError> {
    Ok(Endpoints {
        login: endpoint(cx, "auth.endpoints.login", &e.login)?,
        refresh: endpoint(cx, "auth.endpoints.refresh", &e.refresh)?,
        logout: endpoint(cx, "auth.endpoints.logout", &e.logout)?,
        me: endpoint(cx, "auth.endpoints.me", &e.me)?,
        session_login: endpoint(cx, "auth.endpoints.session_login", &e.session_login)?,
    })
}

fn endpoint(cx: &Ctx, key: &str, value: &Text) -> Result<String, ConfigError> {
    let v = value.as_str().trim();
    if !v.starts_with('/') || v.contains(['?', '#', ' ']) || v.contains("//") {
        return Err(cx.err(key, format!("{v:?} is not a normalized absolute path")));
    }
    Ok(v.to_owned())
}

fn api_keys(cx: &Ctx, raw: &file::ApiKeys) -> Result<ApiKeys, ConfigError> {
    let mut keys = Vec::with_capacity(raw.keys.len());
    for (i, k) in raw.keys.iter().enumerate() {
        let key = format!("auth.api_keys.keys[{i}]");
        let hex = k.sha256.as_str().trim();
        let sha256 = decode_hex32(hex).ok_or_else(|| {
            cx.err(
                format!("{key}.sha256"),
                "expected 64 hex digits (the SHA-256 of the key)",
            )
        })?;
        if k.id.as_str().is_empty() {
            return Err(cx.err(format!("{key}.id"), "must not be empty"));
        }
        if !crate::text::is_header_safe(k.id.as_str()) {
            return Err(cx.err(
                format!("{key}.id"),
                "must have no control characters and no commas (it is sent in X-Auth-User)",
            ));
        }
        if let Some(i) = k
            .roles
            .iter()
            .position(|r| !crate::text::is_header_safe(r.as_str()))
        {
            return Err(cx.err(
                format!("{key}.roles[{i}]"),
                "must be non-empty, with no control characters and no commas",
            ));
        }
        if keys.iter().any(|other: &ApiKey| other.id == k.id.as_str()) {
            return Err(cx.err(
                format!("{key}.id"),
                format!("duplicate id {:?}", k.id.as_str()),
            ));
        }
        keys.push(ApiKey {
            id: k.id.0.clone(),
            sha256,
            roles: roles(&k.roles),
        });
    }
    Ok(ApiKeys {
        header: header(cx, "auth.api_keys.header", &raw.header)?,
        query_param: raw.query_param.as_ref().map(|q| q.0.clone()),
        keys,
    })
}

fn decode_hex32(hex: &str) -> Option<[u8; 32]> {
    let bytes = hex.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        out[i] = (hi * 16 + lo) as u8;
    }
    Some(out)
}

fn login(cx: &Ctx, l: &file::Login) -> Result<Login, ConfigError> {
    Ok(Login {
        max_failures: match u32::try_from(l.max_failures.0) {
            Ok(n) if n > 0 => n,
            _ => return Err(cx.err("auth.login.max_failures", "must be at least 1")),
        },
        failure_window: positive(cx, "auth.login.failure_window", l.failure_window.0)?,
        lockout: l.lockout.0,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::testing::{assert_errors, assert_valid, parse_snippet, JWT_SECRET};
    use crate::config::{AuthMethod, JwtKey, KeySource, RouteAuth};

    /// `auth:` with a valid HS256 key, then `rest` (indented under `auth:`).
    fn auth(rest: &str) -> String {
        format!("auth:\n  jwt:\n    secret: {JWT_SECRET}\n{rest}")
    }

    /// `auth:` whose `jwt:` is exactly `jwt` (indented under `jwt:`).
    fn jwt(jwt: &str) -> String {
        format!("auth:\n  jwt:\n{jwt}")
    }

    /// `auth:` with one external issuer given by `issuer` (indented under its `- `).
    fn accept(issuer: &str) -> String {
        format!(
            "auth:\n  jwt:\n    secret: {JWT_SECRET}\n    accept:\n      - issuer: https://idp.example.com/\n{issuer}"
        )
    }

    fn api_keys(keys: &str) -> String {
        auth(&format!("  api_keys:\n    keys:\n{keys}"))
    }

    const SHA: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    #[test]
    fn every_auth_rule_names_its_key() {
        let key = |id: &str, roles: &str| {
            format!("      - id: {id}\n        sha256: {SHA}\n        roles: {roles}\n")
        };
        assert_errors(&[
            // jwt.algorithm is one gatehouse supports.
            (
                jwt(&format!("    algorithm: HS1024\n    secret: {JWT_SECRET}\n")),
                "auth.jwt.algorithm",
                "unsupported algorithm \"HS1024\" (HS256/384/512, RS256/384/512, PS256/384/512, ES256/384, EdDSA)",
            ),
            (
                jwt(&format!("    algorithm: none\n    secret: {JWT_SECRET}\n")),
                "auth.jwt.algorithm",
                "unsupported algorithm \"none\"",
            ),
            // An HS* secret is at least 32 bytes.
            (
                jwt("    secret: 0123456789abcdef0123456789abcde\n"),
                "auth.jwt.secret",
                "must be at least 32 bytes (run `gatehouse gen-secret` for one)",
            ),
            // HS* takes exactly one of secret or secret_file.
            (
                jwt("    issuer: me\n"),
                "auth.jwt",
                "HS256 needs exactly one of `secret` or `secret_file`",
            ),
            (
                jwt(&format!("    algorithm: HS512\n    secret: {JWT_SECRET}\n    secret_file: jwt.secret\n")),
                "auth.jwt",
                "HS512 needs exactly one of `secret` or `secret_file`",
            ),
            // Other algorithms take private_key and public_key and no secret.
            (
                jwt(&format!("    algorithm: RS256\n    private_key: k.pem\n    public_key: p.pem\n    secret: {JWT_SECRET}\n")),
                "auth.jwt",
                "RS256 needs `private_key` and `public_key` (PEM files) and no `secret`",
            ),
            (
                jwt("    algorithm: ES256\n    private_key: k.pem\n"),
                "auth.jwt",
                "ES256 needs `private_key` and `public_key`",
            ),
            (
                jwt("    algorithm: EdDSA\n    private_key: k.pem\n    public_key: p.pem\n    secret_file: jwt.secret\n"),
                "auth.jwt",
                "EdDSA needs `private_key` and `public_key`",
            ),
            // Token lifetimes are greater than zero.
            (
                auth("").replace("\n  jwt:\n", "\n  jwt:\n    access_ttl: 0s\n"),
                "auth.jwt.access_ttl",
                "must be greater than zero",
            ),
            (
                auth("").replace("\n  jwt:\n", "\n  jwt:\n    refresh_ttl: 0d\n"),
                "auth.jwt.refresh_ttl",
                "must be greater than zero",
            ),
            // An accepted issuer's jwks_url is a URL, and an https:// one.
            (
                accept("        jwks_url: \"https://idp example/jwks\"\n        algorithms: [RS256]\n"),
                "auth.jwt.accept[0].jwks_url",
                "invalid URL",
            ),
            (
                accept("        jwks_url: http://idp.example.com/jwks\n        algorithms: [RS256]\n"),
                "auth.jwt.accept[0].jwks_url",
                "must be an https:// URL",
            ),
            // Exactly one key source.
            (
                accept("        algorithms: [RS256]\n"),
                "auth.jwt.accept[0]",
                "exactly one of `jwks_url`, `jwks_file` or `public_key` is required",
            ),
            (
                accept("        jwks_file: jwks.json\n        public_key: idp.pem\n        algorithms: [RS256]\n"),
                "auth.jwt.accept[0]",
                "exactly one of `jwks_url`, `jwks_file` or `public_key` is required",
            ),
            // A non-empty list of algorithms...
            (
                accept("        jwks_file: jwks.json\n"),
                "auth.jwt.accept[0].algorithms",
                "list the algorithms this issuer signs with",
            ),
            (
                accept("        jwks_file: jwks.json\n        algorithms: []\n"),
                "auth.jwt.accept[0].algorithms",
                "list the algorithms this issuer signs with",
            ),
            // ...that gatehouse supports...
            (
                accept("        jwks_file: jwks.json\n        algorithms: [RS256, ES512]\n"),
                "auth.jwt.accept[0].algorithms[1]",
                "unsupported algorithm \"ES512\"",
            ),
            // ...and that use public keys.
            (
                accept("        jwks_file: jwks.json\n        algorithms: [RS256, HS256]\n"),
                "auth.jwt.accept[0].algorithms[1]",
                "external issuers are verified with public keys: HS* is not allowed",
            ),
            (
                accept("        public_key: idp.pem\n        algorithms: [ES256]\n      - issuer: other\n        public_key: o.pem\n        algorithms: [HS512]\n"),
                "auth.jwt.accept[1].algorithms[0]",
                "HS* is not allowed",
            ),
            // Endpoints are normalized absolute paths.
            (
                auth("  endpoints:\n    login: login\n"),
                "auth.endpoints.login",
                "\"login\" is not a normalized absolute path",
            ),
            (
                auth("  endpoints:\n    refresh: /auth/refresh?x=1\n"),
                "auth.endpoints.refresh",
                "is not a normalized absolute path",
            ),
            (
                auth("  endpoints:\n    logout: /auth//logout\n"),
                "auth.endpoints.logout",
                "is not a normalized absolute path",
            ),
            (
                auth("  endpoints:\n    me: \"/auth/ me\"\n"),
                "auth.endpoints.me",
                "\"/auth/ me\" is not a normalized absolute path",
            ),
            (
                auth("  endpoints:\n    me: \"/auth/me#top\"\n"),
                "auth.endpoints.me",
                "is not a normalized absolute path",
            ),
            // An API key's sha256 is 64 hex digits.
            (
                api_keys(&key("ci", "[]").replace(SHA, &SHA[1..])),
                "auth.api_keys.keys[0].sha256",
                "expected 64 hex digits (the SHA-256 of the key)",
            ),
            (
                api_keys(&format!("{}{}", key("a", "[]"), key("b", "[]").replace(SHA, &"g".repeat(64)))),
                "auth.api_keys.keys[1].sha256",
                "expected 64 hex digits",
            ),
            // Its id is not empty...
            (
                api_keys(&key("\"\"", "[]")),
                "auth.api_keys.keys[0].id",
                "must not be empty",
            ),
            // ...and can be an identity header: no comma, control character
            // or surrounding whitespace.
            (
                api_keys(&key("\"ci,admin\"", "[]")),
                "auth.api_keys.keys[0].id",
                "must have no control characters and no commas (it is sent in X-Auth-User)",
            ),
            (
                api_keys(&key("\"ci\\tbot\"", "[]")),
                "auth.api_keys.keys[0].id",
                "must have no control characters and no commas",
            ),
            (
                api_keys(&key("\"ci \"", "[]")),
                "auth.api_keys.keys[0].id",
                "must have no control characters and no commas",
            ),
            // Its roles can be identity headers too.
            (
                api_keys(&key("ci", "[service, \"user,admin\"]")),
                "auth.api_keys.keys[0].roles[1]",
                "must be non-empty, with no control characters and no commas",
            ),
            (
                api_keys(&key("ci", "[\"\"]")),
                "auth.api_keys.keys[0].roles[0]",
                "must be non-empty",
            ),
            // Ids are unique.
            (
                api_keys(&format!("{}{}", key("ci", "[]"), key("ci", "[admin]"))),
                "auth.api_keys.keys[1].id",
                "duplicate id \"ci\"",
            ),
            // The API-key header is a header name.
            (
                auth("  api_keys:\n    header: X API Key\n"),
                "auth.api_keys.header",
                "invalid header name \"X API Key\"",
            ),
            // The lockout counts at least one failure in a window longer than zero.
            (
                auth("  login:\n    max_failures: 0\n"),
                "auth.login.max_failures",
                "must be at least 1",
            ),
            (
                auth("  login:\n    max_failures: 4294967296\n"),
                "auth.login.max_failures",
                "must be at least 1",
            ),
            (
                auth("  login:\n    failure_window: 0s\n"),
                "auth.login.failure_window",
                "must be greater than zero",
            ),
            // From the file's shape: jwt is required, keys are known, ${VAR}
            // names what is unset.
            ("auth:\n  users_file: u.yaml\n".to_owned(), "auth", "missing field `jwt`"),
            (
                auth("").replace("secret:", "secrets:"),
                "auth.jwt.secrets",
                "unknown field `secrets`",
            ),
            (
                jwt("    secret: ${GATEHOUSE_CONFIG_TEST_UNSET_7F3A}\n"),
                "auth.jwt.secret",
                "environment variable GATEHOUSE_CONFIG_TEST_UNSET_7F3A is not set",
            ),
            (
                api_keys("      - id: ci\n"),
                "auth.api_keys.keys[0]",
                "missing field `sha256`",
            ),
        ]);
    }

    #[test]
    fn a_jwt_secret_never_reaches_an_error() {
        for (snippet, secret) in [
            (jwt("    secret: SHORTSECRET-0123456789\n"), "SHORTSECRET"),
            (
                jwt("    secret: \"SUPERSECRET-${7f3a9c1e\"\n"),
                "SUPERSECRET",
            ),
            (
                jwt("    secret: SUPERSECRET-7f3a9c1e5b2d8f4a6c0e9b7d1f\n    secret_file: x\n"),
                "SUPERSECRET",
            ),
        ] {
            let err = parse_snippet(&snippet).expect_err("an invalid jwt section");
            let shown = format!("{err} {err:?}");
            assert!(!shown.contains(secret), "{shown}");
        }
    }

    #[test]
    fn valid_auth_sections_pass() {
        let configs = assert_valid(&[
            auth(""),
            jwt("    algorithm: HS512\n    secret_file: ../data/jwt.secret\n"),
            format!(
                "{}  users_file: /srv/users.yaml\n  endpoints:\n    login: /api/login\n  api_keys:\n    header: Authorization-Key\n    query_param: api_key\n    keys:\n      - id: ci-bot\n        sha256: \" {} \"\n        roles: [service, \"Read Only\"]\n      - id: other\n        sha256: {}\n  login:\n    max_failures: 1\n    lockout: 0s\n",
                accept("        jwks_url: https://idp.example.com/jwks.json\n        audience: chatbot\n        algorithms: [RS256, \" PS512 \", EdDSA]\n        roles_claim: groups\n"),
                SHA.to_uppercase(),
                SHA,
            ),
            jwt("    algorithm: ES384\n    private_key: k.pem\n    public_key: p.pem\n    leeway: 0s\n"),
        ]);
        let secret_file = &configs[1].auth.jwt.key;
        assert!(
            matches!(secret_file, JwtKey::SecretFile(p) if p == Path::new("/etc/gatehouse/../data/jwt.secret")),
            "{secret_file:?}"
        );
        let a = &configs[2].auth;
        assert_eq!(a.users_file, Path::new("/srv/users.yaml"));
        assert_eq!(a.endpoints.login, "/api/login");
        assert_eq!(
            a.endpoints.refresh, "/auth/refresh",
            "the other endpoints keep their defaults"
        );
        assert_eq!(a.api_keys.header, "authorization-key");
        assert_eq!(
            a.api_keys.keys[0].sha256, a.api_keys.keys[1].sha256,
            "hex in either case"
        );
        assert_eq!(a.api_keys.keys[0].roles, ["service", "Read Only"]);
        assert_eq!(a.login.max_failures, 1);
        let issuer = &a.jwt.accept[0];
        assert!(
            matches!(&issuer.keys, KeySource::JwksUrl(u) if u.host() == Some("idp.example.com"))
        );
        assert_eq!(issuer.algorithms.len(), 3);
        assert_eq!(issuer.roles_claim, "groups");
        assert!(matches!(configs[3].auth.jwt.key, JwtKey::Pem { .. }));
        // The default route's `jwt` is the credential this section configures.
        assert_eq!(
            configs[0].default_route.auth,
            RouteAuth::Any(vec![AuthMethod::Jwt])
        );
    }
}

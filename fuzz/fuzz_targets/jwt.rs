//! JWT header and claims parsing: `Verifier::verify` (src/auth/jwt.rs), with
//! the verifier the pipeline builds (`OwnKeys::load` + `Verifier::new`) from
//! the test config: gatehouse's own HS256 tokens and one external issuer
//! (`https://idp.example`, EdDSA, a PEM public key, roles at
//! `realm_access.roles`). Driven on a current-thread tokio runtime; the
//! clock is fixed (`gatehouse_fuzz::NOW`).
//!
//! Input: byte 0 picks the mode, the rest is
//! - mode 0: the token text itself (signatures will rarely verify: this
//!   exercises the splitting, base64, header and claim peeking);
//! - mode 1: `header JSON \0 claims JSON`, base64url-encoded here and signed
//!   with the test HS256 secret — so the fuzzer reaches claims validation of
//!   gatehouse's own tokens;
//! - mode 2: the same, signed with the external issuer's Ed25519 key.
//!
//! Properties of an accepted token:
//! - the principal's user is non-empty, without leading or trailing
//!   whitespace, comma or control byte (so is each role); its header values
//!   are exactly that text; `exp` is set and not past (with the leeway);
//! - the cached and uncached checks agree (`verify` vs
//!   `verify_without_cache`), for refusals too;
//! - the token is three base64url (no padding) parts; its header is a JSON
//!   object whose every `alg` is the issuer's configured algorithm and that
//!   has no non-null `jwk`, `jku`, `x5u`, `x5c` or `crit`; gatehouse's own
//!   tokens have no `kid`;
//! - every `iss` in the claims is the issuer that verified it, `aud` names
//!   its audience, every `sub` is the principal's user; gatehouse's own
//!   tokens have `typ: "access"`.
#![no_main]

use std::sync::LazyLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use gatehouse::auth::jwt::{OwnKeys, Verifier};
use gatehouse::auth::Principal;
use gatehouse_fuzz::{
    identity_is_safe, json_members, EXTERNAL_AUDIENCE, EXTERNAL_ISSUER, JWT_SECRET, LEEWAY, NOW,
    OWN_AUDIENCE, OWN_ISSUER, RUNTIME,
};
use jsonwebtoken::{Algorithm, EncodingKey};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

static VERIFIER: LazyLock<Verifier> = LazyLock::new(|| {
    let cfg = gatehouse_fuzz::test_config();
    let own = OwnKeys::load(&cfg.auth.jwt).expect("own keys");
    Verifier::new(&cfg.auth.jwt, &own, &Default::default()).expect("verifier")
});

static HS_KEY: LazyLock<EncodingKey> =
    LazyLock::new(|| EncodingKey::from_secret(JWT_SECRET.as_bytes()));
static ED_KEY: LazyLock<EncodingKey> = LazyLock::new(|| {
    EncodingKey::from_ed_pem(gatehouse_fuzz::ED25519_PRIVATE_PEM.as_bytes()).expect("Ed25519 key")
});

fn sign(header: &[u8], claims: &[u8], key: &EncodingKey, alg: Algorithm) -> String {
    let message = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let signature = jsonwebtoken::crypto::sign(message.as_bytes(), key, alg).expect("sign");
    format!("{message}.{signature}")
}

fn all<'a>(members: &'a [(String, Value)], name: &'a str) -> impl Iterator<Item = &'a Value> {
    members.iter().filter(move |(k, _)| k == name).map(|(_, v)| v)
}

fn check_principal(token: &str, p: &Principal) {
    assert!(identity_is_safe(&p.user), "{token:?}: user {:?}", p.user);
    for r in &p.roles {
        assert!(identity_is_safe(r), "{token:?}: role {r:?}");
    }
    assert_eq!(p.user_value.as_bytes(), p.user.as_bytes());
    assert_eq!(p.roles_value.as_bytes(), p.roles.join(",").as_bytes());
    let exp = p.exp.expect("a token's principal has an exp");
    assert!(exp.saturating_add(LEEWAY) >= NOW, "{token:?}: expired exp {exp} accepted");
}

fn check_token_text(token: &str, p: &Principal) {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "{token:?}: not three parts");
    let header = URL_SAFE_NO_PAD
        .decode(parts[0])
        .unwrap_or_else(|e| panic!("{token:?}: header is not base64url: {e}"));
    let claims = URL_SAFE_NO_PAD
        .decode(parts[1])
        .unwrap_or_else(|e| panic!("{token:?}: claims are not base64url: {e}"));
    URL_SAFE_NO_PAD
        .decode(parts[2])
        .unwrap_or_else(|e| panic!("{token:?}: signature is not base64url: {e}"));

    // Values serde_json cannot hold (1e400) make these None: then only the
    // principal's own properties are checked.
    let Some(claims) = json_members(&claims) else {
        return;
    };
    let issuers: Vec<&Value> = all(&claims, "iss").collect();
    assert!(!issuers.is_empty(), "{token:?}: accepted without iss");
    let own = issuers[0] == OWN_ISSUER;
    let (issuer, audience, alg) = if own {
        (OWN_ISSUER, OWN_AUDIENCE, "HS256")
    } else {
        (EXTERNAL_ISSUER, EXTERNAL_AUDIENCE, "EdDSA")
    };
    assert!(
        issuers.iter().all(|i| *i == issuer),
        "{token:?}: iss {issuers:?} accepted"
    );
    let auds: Vec<&Value> = all(&claims, "aud").collect();
    assert!(
        !auds.is_empty()
            && auds.iter().all(|a| match a {
                Value::String(s) => s == audience,
                Value::Array(items) => items.iter().any(|i| i == audience),
                _ => false,
            }),
        "{token:?}: aud {auds:?} accepted for {audience}"
    );
    let subs: Vec<&Value> = all(&claims, "sub").collect();
    assert!(
        !subs.is_empty() && subs.iter().all(|s| s.as_str() == Some(&*p.user)),
        "{token:?}: sub {subs:?} accepted as user {:?}",
        p.user
    );
    if own {
        let typs: Vec<&Value> = all(&claims, "typ").collect();
        assert!(
            !typs.is_empty() && typs.iter().all(|t| *t == "access"),
            "{token:?}: own token with typ {typs:?} accepted"
        );
    }

    let Some(header) = json_members(&header) else {
        return;
    };
    let algs: Vec<&Value> = all(&header, "alg").collect();
    assert!(
        !algs.is_empty() && algs.iter().all(|a| *a == alg),
        "{token:?}: alg {algs:?} accepted for {issuer}"
    );
    for name in ["jwk", "jku", "x5u", "x5c", "crit"] {
        assert!(
            all(&header, name).all(Value::is_null),
            "{token:?}: header {name} accepted"
        );
    }
    if own {
        assert!(
            all(&header, "kid").all(Value::is_null),
            "{token:?}: own token with a kid accepted"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let [mode, rest @ ..] = data else {
        return;
    };
    let token = match mode % 3 {
        0 => match std::str::from_utf8(rest) {
            Ok(t) => t.to_owned(),
            Err(_) => return,
        },
        m => {
            let (header, claims) = match rest.iter().position(|&b| b == 0) {
                Some(i) => (&rest[..i], &rest[i + 1..]),
                None => (rest, &[][..]),
            };
            if m == 1 {
                sign(header, claims, &HS_KEY, Algorithm::HS256)
            } else {
                sign(header, claims, &ED_KEY, Algorithm::EdDSA)
            }
        }
    };

    let verifier = &*VERIFIER;
    let cached = RUNTIME.block_on(verifier.verify(&token, NOW));
    let uncached = RUNTIME.block_on(verifier.verify_without_cache(&token, NOW));
    match (&cached, &uncached) {
        (Ok(a), Ok(b)) => assert_eq!(**a, *b, "{token:?}: cache and full check differ"),
        (Err(a), Err(b)) => assert_eq!(a, b, "{token:?}: cache and full check differ"),
        _ => panic!("{token:?}: cached {cached:?}, uncached {uncached:?}"),
    }
    gatehouse_fuzz::debug!("mode {} token {token:?}: {cached:?}", mode % 3);
    if let Ok(p) = cached {
        check_principal(&token, &p);
        check_token_text(&token, &p);
    }
});

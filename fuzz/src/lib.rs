//! Fixtures shared by the fuzz targets: one temp folder per process with the
//! files a config names (a self-signed certificate, an Ed25519 public key),
//! the test config with a dozen routes and a CORS policy, the proxy-owned
//! header list the pipeline builds, and a few independent oracles
//! (JSON member names, form field names, header-safe text).
//!
//! Nothing here writes outside its temp folder.

use std::path::PathBuf;
use std::sync::LazyLock;

use http::HeaderName;

/// HS256 secret of the test config (32+ bytes).
pub const JWT_SECRET: &str = "fuzz-secret-0123456789abcdef0123456789";

/// The clock every target uses (Unix seconds, 2027-01-15): seeds carry
/// `exp` values after it.
pub const NOW: u64 = 1_800_000_000;

/// The `leeway` of the test config (the default).
pub const LEEWAY: u64 = 30;

/// gatehouse's own issuer and audience in the test config (the defaults).
pub const OWN_ISSUER: &str = "gatehouse";
pub const OWN_AUDIENCE: &str = "gatehouse";

/// The external issuer of the test config, verified with an Ed25519 key.
pub const EXTERNAL_ISSUER: &str = "https://idp.example";
pub const EXTERNAL_AUDIENCE: &str = "gatehouse-api";

/// A fixed Ed25519 key pair for the external issuer (test only).
pub const ED25519_PRIVATE_PEM: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIHBKGrDQIyQvkcevCDI0zSf4QjlPDbT3GaMzHCHhkwyL
-----END PRIVATE KEY-----
";
pub const ED25519_PUBLIC_PEM: &str = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEA7g2P+IjE9+noC6GH8ZaXYFBICB0o2VR6PEiK1irl1t8=
-----END PUBLIC KEY-----
";

/// The files of one fuzzing process, in its own temp folder.
pub struct Fixture {
    pub dir: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ed25519_public: PathBuf,
    /// Where the config "is" (relative paths in it resolve against `dir`).
    pub config_path: PathBuf,
}

/// Created once per process: `$TMPDIR/gatehouse-fuzz-<pid>/`.
pub static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    gatehouse::install_crypto_providers();
    let dir = std::env::temp_dir().join(format!("gatehouse-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create the fixture folder");
    let cert = dir.join("server.crt");
    let key = dir.join("server.key");
    if !cert.exists() || !key.exists() {
        gatehouse::server::tls::create_self_signed(&cert, &key).expect("test certificate");
    }
    let ed25519_public = dir.join("idp-ed25519.pub");
    std::fs::write(&ed25519_public, ED25519_PUBLIC_PEM).expect("write the Ed25519 public key");
    Fixture {
        config_path: dir.join("gatehouse.yaml"),
        dir,
        cert,
        key,
        ed25519_public,
    }
});

/// The routes of the test config: exact, prefix `/**`, `/*/` segments,
/// regexes, host-bound routes, methods, and overlaps where file order
/// decides.
pub const ROUTES_YAML: &str = r#"routes:
  - name: health
    path: /health
    auth: none
  - name: docs-slash
    path: /docs/
    auth: none
  - name: docs
    path: /docs/**
    methods: [GET, HEAD]
    auth: none
  - name: admin-api
    host: admin.example.com
    path: /api/**
    auth: jwt
    roles: [admin]
  - name: user-profile
    path: /users/*/profile
  - name: user-get
    path: /users/*/**
    methods: [get]
  - name: api-items
    regex: '/api/v[0-9]+/items/[^/]+'
    methods: [GET, POST]
  - name: api
    path: /api/**
    auth: [jwt, api_key]
  - name: files
    path: /*/files/*
  - name: static
    regex: '/static/.+\.(css|js)'
    auth: none
  - name: sub-delims
    path: "/a:b@c/!$&'()+,="
    auth: none
  - name: root
    path: /
    auth: none
  - name: chat
    path: /chat/**
    upstream: other
  - name: v6
    host: "[::1]"
    path: /v6/**
  - name: admin-host
    host: Admin.Example.COM.
    path: /**
default_route:
  auth: deny
"#;

/// The CORS policy of the test config: exact origins (default and explicit
/// ports, an IPv6 literal) and two `*.` wildcards.
pub const CORS_YAML: &str = r#"cors:
  allowed_origins:
    - https://chat.example.com
    - HTTPS://Exact.Example.COM:443
    - http://localhost:3000
    - http://[::1]:8080
    - https://*.example.org
    - https://*.apps.example.net:8443
  allow_credentials: true
"#;

/// A whole config for the test fixture, with `extra` top-level YAML.
pub fn config_yaml(extra: &str) -> String {
    let f = &*FIXTURE;
    format!(
        "listen:\n  https: 127.0.0.1:0\n  http: null\n  admin: null\n\
         tls:\n  cert: {cert}\n  key: {key}\n\
         upstreams:\n  app:\n    url: http://127.0.0.1:9\n  other:\n    urls: [\"http://127.0.0.1:10\", \"http://[::1]:11\"]\n\
         auth:\n  jwt:\n    secret: {JWT_SECRET}\n    accept:\n      - issuer: {EXTERNAL_ISSUER}\n        \
         audience: {EXTERNAL_AUDIENCE}\n        public_key: {pubkey}\n        algorithms: [EdDSA]\n        \
         roles_claim: realm_access.roles\n\
         store:\n  path: data/gatehouse.db\n\
         rate_limits:\n  per_ip: null\n  login: null\n{extra}",
        cert = f.cert.display(),
        key = f.key.display(),
        pubkey = f.ed25519_public.display(),
    )
}

/// The test config, parsed (panics if the fixture itself is invalid).
pub fn test_config() -> gatehouse::Config {
    let yaml = config_yaml(&format!("{ROUTES_YAML}{CORS_YAML}"));
    match gatehouse::config::parse(&FIXTURE.config_path, &yaml) {
        Ok(c) => c,
        Err(e) => panic!("the fixture config is invalid: {e}"),
    }
}

/// The headers gatehouse owns, built as `pipeline::Gate::new` builds them.
pub fn proxy_owned(config: &gatehouse::Config) -> Vec<HeaderName> {
    use gatehouse::upstream::headers;
    let id = &config.identity;
    let mut owned = vec![
        id.user.clone(),
        id.roles.clone(),
        id.method.clone(),
        id.request_id.clone(),
        headers::X_FORWARDED_FOR,
        headers::X_FORWARDED_PROTO,
        headers::X_FORWARDED_HOST,
    ];
    owned.extend(headers::STEERING.iter().map(|n| HeaderName::from_static(n)));
    owned.push(config.auth.api_keys.header.clone());
    owned
}

/// The linear first-match scan that `RouteTable::find`'s index must agree
/// with: the first route in file order whose methods, host and pattern all
/// match, else the default route.
pub fn find_linear<'a>(
    table: &'a gatehouse::pipeline::route::RouteTable,
    method: &http::Method,
    host: Option<&str>,
    path: &str,
) -> &'a gatehouse::config::Route {
    table
        .routes()
        .iter()
        .find(|r| {
            r.methods.as_ref().is_none_or(|ms| ms.contains(method))
                && match (&r.host, host) {
                    (None, _) => true,
                    (Some(want), Some(h)) => h.eq_ignore_ascii_case(want),
                    (Some(_), None) => false,
                }
                && gatehouse::pipeline::route::pattern_matches(&r.pattern, path)
        })
        .unwrap_or_else(|| table.default_route())
}

/// What an identity must look like to be forwarded (SPEC §4), checked
/// independently of `gatehouse::auth::is_header_safe` (which is private):
/// non-empty, no leading or trailing whitespace, no comma, no control byte.
pub fn identity_is_safe(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with(char::is_whitespace)
        && !s.ends_with(char::is_whitespace)
        && !s.bytes().any(|b| b < 0x20 || b == 0x7f || b == b',')
}

/// Every member name of a top-level JSON object, in order, duplicates kept
/// (escapes decoded: `"user\u006eame"` is `username`). `None` when `json`
/// is not one JSON object.
pub fn json_member_names(json: &[u8]) -> Option<Vec<String>> {
    use serde::de::{Deserializer as _, IgnoredAny, MapAccess, Visitor};
    struct Names;
    impl<'de> Visitor<'de> for Names {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Vec<String>, A::Error> {
            let mut names = Vec::new();
            while let Some(name) = map.next_key::<String>()? {
                map.next_value::<IgnoredAny>()?;
                names.push(name);
            }
            Ok(names)
        }
    }
    let mut de = serde_json::Deserializer::from_slice(json);
    let names = de.deserialize_map(Names).ok()?;
    de.end().ok()?;
    Some(names)
}

/// Every member of a top-level JSON object, in order, duplicates kept.
/// `None` when `json` is not one JSON object.
pub fn json_members(json: &[u8]) -> Option<Vec<(String, serde_json::Value)>> {
    use serde::de::{Deserializer as _, MapAccess, Visitor};
    struct Members;
    impl<'de> Visitor<'de> for Members {
        type Value = Vec<(String, serde_json::Value)>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut members = Vec::new();
            while let Some(member) = map.next_entry::<String, serde_json::Value>()? {
                members.push(member);
            }
            Ok(members)
        }
    }
    let mut de = serde_json::Deserializer::from_slice(json);
    let members = de.deserialize_map(Members).ok()?;
    de.end().ok()?;
    Some(members)
}

/// Whether a list of names holds one twice.
pub fn has_duplicate(names: &[String]) -> bool {
    let mut seen = std::collections::HashSet::new();
    names.iter().any(|n| !seen.insert(n.as_str()))
}

/// The fields of an `application/x-www-form-urlencoded` body, decoded by a
/// scan written here (not `form_urlencoded`): pairs split on `&` (empty
/// pieces skipped), the name ends at the first `=` (no `=`: an empty
/// value), then each half is decoded by [`form_decode`].
pub fn form_pairs(body: &[u8]) -> Vec<(String, String)> {
    body.split(|&b| b == b'&')
        .filter(|piece| !piece.is_empty())
        .map(|piece| match piece.iter().position(|&b| b == b'=') {
            Some(i) => (form_decode(&piece[..i]), form_decode(&piece[i + 1..])),
            None => (form_decode(piece), String::new()),
        })
        .collect()
}

/// The field names of a form body (see [`form_pairs`]), duplicates kept.
pub fn form_field_names(body: &[u8]) -> Vec<String> {
    form_pairs(body).into_iter().map(|(name, _)| name).collect()
}

/// One form name or value: `+` is a space, `%XX` a byte (a malformed `%`
/// stays as it is), then lossy UTF-8.
pub fn form_decode(text: &[u8]) -> String {
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        match text[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' if i + 2 < text.len()
                && text[i + 1].is_ascii_hexdigit()
                && text[i + 2].is_ascii_hexdigit() =>
            {
                let hex = |b: u8| (b as char).to_digit(16).unwrap_or(0) as u8;
                out.push(hex(text[i + 1]) << 4 | hex(text[i + 2]));
                i += 3;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A current-thread tokio runtime, built once per process.
pub static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
});

/// `GATEHOUSE_FUZZ_DEBUG=1`: the targets print what they made of each input
/// (to check that seeds reach what they are meant to reach).
pub static DEBUG: LazyLock<bool> =
    LazyLock::new(|| std::env::var_os("GATEHOUSE_FUZZ_DEBUG").is_some_and(|v| v != "0"));

/// `eprintln!` when [`DEBUG`] is set.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)*) => {
        if *$crate::DEBUG {
            eprintln!($($arg)*);
        }
    };
}

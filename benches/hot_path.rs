//! Criterion micro-benchmarks of the request hot path: normalize, route
//! match (10 and 500 routes), JWT verification (HS256, RS256, ES256, EdDSA),
//! the API-key check, the header rewrite, signing the identity assertion
//! (ES256, EdDSA, RS256), a requests quota's admission (embedded store;
//! Redis too when `redis-server` is installed), and a whole request through
//! the pipeline (`pipeline/*`: a fake upstream, no socket) with each of this
//! round's features on and off — browser sessions, a requests quota, the
//! signed assertion — so that each one's price per request is a difference
//! of two rows. Compare the numbers of one run with each other (ratios);
//! absolute times drift on shared machines.
//!
//! `cargo bench --bench hot_path`

use std::hint::black_box;
use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion};
use futures_util::FutureExt as _;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

use gatehouse::auth::api_key::ApiKeys;
use gatehouse::auth::jwt::{OwnKeys, Verifier};
use gatehouse::config;
use gatehouse::pipeline::normalize;
use gatehouse::pipeline::route::RouteTable;
use gatehouse::upstream::headers::{rewrite_request, Outgoing};

const SECRET: &str = "bench-secret-0123456789abcdef0123456789";

/// A config with `n` routes (a mix of exact, prefix, wildcard and regex).
fn config_with_routes(dir: &Path, n: usize, jwt: &str) -> config::Config {
    let mut yaml = format!(
        "listen: {{https: 127.0.0.1:0}}\ntls: {{cert: c.pem, key: k.pem}}\n\
         upstreams: {{app: {{url: http://127.0.0.1:9}}}}\nauth:\n  jwt:\n{jwt}\nroutes:\n"
    );
    for i in 0..n {
        let line = match i % 4 {
            0 => format!("  - {{name: r{i}, path: /svc{i}/items, auth: none}}\n"),
            1 => format!("  - {{name: r{i}, path: /svc{i}/**, auth: jwt}}\n"),
            2 => format!("  - {{name: r{i}, path: /svc{i}/*/detail, auth: jwt}}\n"),
            _ => format!("  - {{name: r{i}, regex: '/re{i}/[0-9]+', auth: jwt}}\n"),
        };
        yaml.push_str(&line);
    }
    yaml.push_str("  - {name: chat, path: /chat/**, auth: jwt}\n");
    config::parse(&dir.join("gatehouse.yaml"), &yaml).expect("bench config is valid")
}

fn hs_jwt() -> String {
    format!("    secret: {SECRET}\n")
}

fn token(alg: Algorithm, key: &EncodingKey) -> String {
    let now = gatehouse::clock::unix_now();
    let claims = json!({
        "iss": "gatehouse", "aud": "gatehouse", "sub": "alice", "roles": ["user"],
        "iat": now, "nbf": now, "exp": now + 900, "jti": "j1", "sid": "s1", "typ": "access"
    });
    jsonwebtoken::encode(&Header::new(alg), &claims, key).expect("encode token")
}

fn normalize_bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("normalize");
    for (name, target) in [
        ("plain", "/chat/completions?stream=true"),
        ("escapes", "//api/v1/%61dmin/caf%c3%a9?q=1"),
    ] {
        let uri: http::Uri = target.parse().expect("uri");
        g.bench_function(name, |b| {
            b.iter(|| normalize::normalize_uri(black_box(&uri)))
        });
    }
    let uri: http::Uri = "/chat".parse().expect("uri");
    let mut headers = HeaderMap::new();
    headers.insert("host", HeaderValue::from_static("api.example.com"));
    headers.insert("authorization", HeaderValue::from_static("Bearer x.y.z"));
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    let owned = [
        HeaderName::from_static("x-auth-user"),
        HeaderName::from_static("x-forwarded-for"),
    ];
    g.bench_function("check_head", |b| {
        b.iter(|| normalize::check_head(black_box(&uri), black_box(&headers), &owned))
    });
    g.finish();
}

fn route_bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tmp");
    let mut g = c.benchmark_group("route_match");
    for n in [10, 500] {
        let cfg = config_with_routes(dir.path(), n, &hs_jwt());
        let table = RouteTable::new(cfg.routes.clone(), cfg.default_route.clone());
        g.bench_function(format!("{n}_routes_last"), |b| {
            b.iter(|| {
                table.find(
                    &Method::POST,
                    Some("localhost"),
                    black_box("/chat/completions"),
                )
            })
        });
        g.bench_function(format!("{n}_routes_miss"), |b| {
            b.iter(|| {
                table.find(
                    &Method::GET,
                    Some("localhost"),
                    black_box("/nowhere/at/all"),
                )
            })
        });
    }
    g.finish();
}

fn jwt_bench(c: &mut Criterion) {
    gatehouse::install_crypto_providers();
    let dir = tempfile::tempdir().expect("tmp");
    let mut g = c.benchmark_group("jwt_verify");
    let mut cases: Vec<(&str, String, EncodingKey, Algorithm)> = vec![(
        "HS256",
        hs_jwt(),
        EncodingKey::from_secret(SECRET.as_bytes()),
        Algorithm::HS256,
    )];
    for (name, alg, rc) in [
        ("RS256", Algorithm::RS256, &rcgen::PKCS_RSA_SHA256),
        ("ES256", Algorithm::ES256, &rcgen::PKCS_ECDSA_P256_SHA256),
        ("EdDSA", Algorithm::EdDSA, &rcgen::PKCS_ED25519),
    ] {
        let Ok(pair) = rcgen::KeyPair::generate_for(rc) else {
            eprintln!("skipping {name}: rcgen cannot generate this key type here");
            continue;
        };
        let private = dir.path().join(format!("{name}.key"));
        let public = dir.path().join(format!("{name}.pub"));
        std::fs::write(&private, pair.serialize_pem()).expect("write key");
        std::fs::write(&public, pair.public_key_pem()).expect("write pub");
        let encoding = match alg {
            Algorithm::RS256 => EncodingKey::from_rsa_pem(pair.serialize_pem().as_bytes()),
            Algorithm::ES256 => EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()),
            _ => EncodingKey::from_ed_pem(pair.serialize_pem().as_bytes()),
        }
        .expect("encoding key");
        let jwt = format!(
            "    algorithm: {name}\n    private_key: {}\n    public_key: {}\n",
            private.display(),
            public.display()
        );
        cases.push((name, jwt, encoding, alg));
    }
    for (name, jwt, encoding, alg) in cases {
        let cfg = config_with_routes(dir.path(), 1, &jwt);
        let own = OwnKeys::load(&cfg.auth.jwt).expect("own keys");
        let verifier = Verifier::new(&cfg.auth.jwt, &own, &Default::default()).expect("verifier");
        let tok = token(alg, &encoding);
        let now = gatehouse::clock::unix_now();
        assert!(verifier
            .verify(&tok, now)
            .now_or_never()
            .expect("sync")
            .is_ok());
        // The full check: what a token costs the first time it is seen.
        g.bench_function(name, |b| {
            b.iter(|| {
                verifier
                    .verify_without_cache(black_box(&tok), now)
                    .now_or_never()
            })
        });
        // Seen before: a lookup in the verified-token cache.
        if alg == Algorithm::HS256 {
            g.bench_function("cached (any algorithm)", |b| {
                b.iter(|| verifier.verify(black_box(&tok), now).now_or_never())
            });
        }
    }
    g.finish();
}

fn api_key_bench(c: &mut Criterion) {
    use sha2::Digest;
    let keys: Vec<config::ApiKey> = (0..20)
        .map(|i| config::ApiKey {
            id: format!("k{i}"),
            sha256: sha2::Sha256::digest(format!("key-{i}").as_bytes()).into(),
            roles: vec![],
        })
        .collect();
    let keys = ApiKeys::new(&keys);
    c.bench_function("api_key_check_20_keys", |b| {
        b.iter(|| keys.check(black_box(b"key-19")))
    });
}

fn header_bench(c: &mut Criterion) {
    let mut base = HeaderMap::new();
    for (k, v) in [
        ("host", "api.example.com"),
        ("user-agent", "bench/1.0"),
        ("accept", "*/*"),
        ("authorization", "Bearer x.y.z"),
        ("content-type", "application/json"),
        ("content-length", "42"),
        ("connection", "keep-alive"),
    ] {
        base.insert(HeaderName::from_static(k), HeaderValue::from_static(v));
    }
    let rid_name = HeaderName::from_static("x-request-id");
    let rid = HeaderValue::from_static("0123456789abcdef0123456789abcdef");
    let owned = [
        HeaderName::from_static("x-auth-user"),
        HeaderName::from_static("x-auth-roles"),
        HeaderName::from_static("x-auth-method"),
    ];
    let remove = [HeaderName::from_static("x-api-key")];
    let identity = [
        (owned[0].clone(), HeaderValue::from_static("alice")),
        (owned[1].clone(), HeaderValue::from_static("user")),
        (owned[2].clone(), HeaderValue::from_static("jwt")),
    ];
    let host = HeaderValue::from_static("api.example.com");
    c.bench_function("header_rewrite", |b| {
        b.iter_batched(
            || base.clone(),
            |mut h| {
                rewrite_request(
                    &mut h,
                    &Outgoing {
                        peer_ip: "203.0.113.9".parse().expect("ip"),
                        from_trusted_proxy: false,
                        host: Some(&host),
                        request_id_header: &rid_name,
                        request_id: &rid,
                        owned: &owned,
                        remove: &remove,
                        identity: &identity,
                        websocket: false,
                    },
                );
                h
            },
            criterion::BatchSize::SmallInput,
        )
    });
}

/// A requests quota's admission as the pipeline makes it
/// (`pipeline::quota::admit`: the principal, the window, the check and the
/// `RateLimit-*` decision), on the embedded store (in memory, written
/// behind) and, when `redis-server` is installed, on a local Redis (one
/// Lua script, a round trip per request).
fn quota_bench(c: &mut Criterion) {
    use gatehouse::pipeline::{quota, Carried, Shared};
    use std::sync::Arc;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let yaml = |store: &str| {
        format!(
            "listen: {{https: 127.0.0.1:0}}\ntls: {{cert: c.pem, key: k.pem}}\n\
             upstreams: {{app: {{url: http://127.0.0.1:9}}}}\nauth:\n  jwt:\n{jwt}\n{store}\
             routes:\n  - {{name: chat, path: /chat/**, auth: jwt}}\n\
             quotas:\n  - {{name: chat-daily, routes: [chat], limit: 1000000000}}\n",
            jwt = hs_jwt()
        )
    };
    let shared = |config: &config::Config| {
        let store = runtime
            .block_on(gatehouse::store::Store::open(
                &config.store,
                config.auth.jwt.access_ttl,
            ))
            .expect("store");
        Shared {
            metrics: gatehouse::metrics::Metrics::new(prometheus::Registry::new())
                .expect("metrics"),
            store,
            hasher: gatehouse::auth::password::Hasher::new(),
            carried: Carried::default(),
            tunnels: tokio_util::task::TaskTracker::new(),
            clock: Arc::new(gatehouse::clock::SystemClock),
        }
    };
    let principal = gatehouse::auth::Principal::new(
        "alice",
        vec!["user".into()],
        gatehouse::auth::Scheme::Jwt,
        None,
        None,
        None,
    )
    .expect("principal");
    let ip: std::net::IpAddr = "192.0.2.1".parse().expect("ip");
    let now = gatehouse::clock::unix_now();
    let mut g = c.benchmark_group("quota");

    let path = dir.path().join("gatehouse.yaml");
    let embedded = format!("store: {{path: {}}}\n", dir.path().join("q.db").display());
    let config = config::parse(&path, &yaml(&embedded)).expect("bench config");
    let on_embedded = shared(&config);
    g.bench_function("requests_embedded", |b| {
        b.iter(|| {
            let mut rate = None;
            quota::admit(
                &config.quotas,
                &[0],
                Some(&principal),
                ip,
                &on_embedded,
                now,
                &mut rate,
            )
            .now_or_never()
        })
    });

    let redis = std::process::Command::new("redis-server")
        .args([
            "--port",
            "16399",
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(std::process::Stdio::null())
        .spawn();
    match redis {
        Ok(mut child) => {
            std::thread::sleep(std::time::Duration::from_millis(300));
            let store = "store: {backend: redis, url: \"redis://127.0.0.1:16399/0\"}\n";
            let config = config::parse(&path, &yaml(store)).expect("bench config");
            let on_redis = shared(&config);
            g.bench_function("requests_redis", |b| {
                b.iter(|| {
                    let mut rate = None;
                    let admit = quota::admit(
                        &config.quotas,
                        &[0],
                        Some(&principal),
                        ip,
                        &on_redis,
                        now,
                        &mut rate,
                    );
                    runtime.block_on(admit)
                })
            });
            let _ = child.kill();
            let _ = child.wait();
        }
        Err(e) => eprintln!("quota/requests_redis skipped: redis-server not found ({e})"),
    }
    g.finish();
}

/// Signing the identity assertion (SPEC §12), once per authenticated
/// forwarded request: one claims serialization, one signature, the token.
fn assertion_bench(c: &mut Criterion) {
    use gatehouse::auth::assertion::{Signer, Subject};
    use gatehouse::config::{Assertion, AssertionAlgorithm};
    let dir = tempfile::tempdir().expect("tempdir");
    let roles = vec!["user".to_owned(), "admin".to_owned()];
    let who = Subject {
        sub: "alice@example.com",
        roles: &roles,
        method: "session",
        email: Some("alice@example.com"),
        sid: Some("0123456789abcdef0123456789abcdef"),
    };
    let mut g = c.benchmark_group("assertion_sign");
    for (name, algorithm) in [
        ("ES256", AssertionAlgorithm::Es256),
        ("EdDSA", AssertionAlgorithm::EdDsa),
        ("RS256", AssertionAlgorithm::Rs256),
    ] {
        let cfg = Assertion {
            header: HeaderName::from_static("x-gatehouse-assertion"),
            algorithm,
            key_file: dir.path().join(format!("{name}.pem")),
            previous_key_files: Vec::new(),
            issuer: Some("https://chat.example.com".into()),
            ttl: std::time::Duration::from_secs(60),
        };
        let signer = Signer::load(&cfg, "").expect("a key");
        g.bench_function(name, |b| {
            b.iter(|| signer.sign(black_box(&who), "app", 1_800_000_000))
        });
    }
    g.finish();
}

/// An upstream that answers `200` at once: the pipeline alone is measured.
struct Answers200;

impl gatehouse::pipeline::Forward<http_body_util::Empty<bytes::Bytes>> for Answers200 {
    fn forward(
        &self,
        _upstream: &gatehouse::upstream::Upstream,
        _request: gatehouse::pipeline::Outbound<http_body_util::Empty<bytes::Bytes>>,
        _tunnels: &tokio_util::task::TaskTracker,
        _metrics: &gatehouse::metrics::Metrics,
    ) -> impl std::future::Future<
        Output = Result<gatehouse::upstream::Forwarded, gatehouse::upstream::ForwardError>,
    > + Send {
        std::future::ready(Ok(gatehouse::upstream::Forwarded {
            response: http::Response::new(gatehouse::body::Body::full("ok")),
            upstream_elapsed: std::time::Duration::ZERO,
        }))
    }
}

/// One proxied `GET` through the whole pipeline (normalize, per-IP limit,
/// route, authentication, identity headers, the target, the access-log
/// record, metrics), as the load benchmark's config has it, then with
/// browser sessions (the credential a session cookie instead of a JWT), a
/// requests quota, the signed assertion (ES256), and all three.
fn pipeline_bench(c: &mut Criterion) {
    use gatehouse::pipeline::{handle, Carried, Gate, Shared};
    use http_body_util::BodyExt as _;
    use std::sync::Arc;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let hash = gatehouse::auth::password::hash_password("pw").expect("hash");
    std::fs::write(
        dir.path().join("users.yaml"),
        format!("users:\n  - {{username: alice, password_hash: \"{hash}\", roles: [user]}}\n"),
    )
    .expect("users file");
    let peer: std::net::SocketAddr = "192.0.2.1:50000".parse().expect("peer");
    let mut g = c.benchmark_group("pipeline");
    let rows = [
        ("jwt", "jwt", false, false),
        ("jwt+quota", "jwt", true, false),
        ("jwt+assertion_es256", "jwt", false, true),
        ("session", "session", false, false),
        ("session+quota+assertion_es256", "session", true, true),
    ];
    for (i, (name, auth, quota, assertion)) in rows.into_iter().enumerate() {
        let quotas = if quota {
            "quotas:\n  - {name: chat-daily, routes: [chat], limit: 1000000000}\n"
        } else {
            ""
        };
        let assertion = if assertion {
            format!(
                "identity_headers:\n  assertion: {{algorithm: ES256, key_file: {}}}\n",
                dir.path().join("assertion.pem").display()
            )
        } else {
            String::new()
        };
        let yaml = format!(
            "listen: {{https: 127.0.0.1:0}}\ntls: {{cert: c.pem, key: k.pem}}\n\
             upstreams: {{app: {{url: http://127.0.0.1:9}}}}\n\
             auth:\n  jwt:\n{jwt}\n  users_file: users.yaml\n  sessions: {{enabled: true}}\n\
             {assertion}\
             store: {{path: {db}}}\n\
             rate_limits: {{per_ip: {{rate: 1000000000/s, burst: 1000000000}}, login: null}}\n\
             routes:\n  - {{name: chat, path: /chat/**, auth: {auth}}}\n{quotas}",
            jwt = hs_jwt(),
            db = dir.path().join(format!("p{i}.db")).display(),
        );
        let config = config::parse(&dir.path().join("gatehouse.yaml"), &yaml)
            .unwrap_or_else(|e| panic!("bench config {name}: {e}"));
        let config = Arc::new(config);
        let metrics =
            gatehouse::metrics::Metrics::new(prometheus::Registry::new()).expect("metrics");
        let store = runtime
            .block_on(gatehouse::store::Store::open(
                &config.store,
                config.auth.jwt.access_ttl,
            ))
            .expect("store");
        let carried = Carried::default();
        let gate = Arc::new(Gate::new(config.clone(), &carried, &metrics).expect("gate"));
        let now = gatehouse::clock::unix_now();
        let credential = if auth == "jwt" {
            let roles = vec!["user".to_owned()];
            let (token, _) = gate
                .issuer
                .access_token("alice", &roles, "sid-bench", now)
                .expect("token");
            (http::header::AUTHORIZATION, format!("Bearer {token}"))
        } else {
            let roles = vec!["user".to_owned()];
            let who = gatehouse::auth::sessions::SignIn {
                user: "alice",
                roles: &roles,
                email: None,
                method: gatehouse::auth::sessions::PASSWORD,
            };
            let (cookie, _) = runtime
                .block_on(gatehouse::auth::sessions::start(
                    &store,
                    &config.auth.sessions,
                    who,
                    now,
                ))
                .expect("session");
            let name = &config.auth.sessions.cookie;
            (http::header::COOKIE, format!("{name}={cookie}"))
        };
        let shared = Arc::new(Shared {
            metrics,
            store,
            hasher: gatehouse::auth::password::Hasher::new(),
            carried,
            tunnels: tokio_util::task::TaskTracker::new(),
            clock: Arc::new(gatehouse::clock::SystemClock),
        });
        let conn = gatehouse::activity::Activity::new(None);
        let credential = (
            credential.0,
            HeaderValue::from_str(&credential.1).expect("value"),
        );
        g.bench_function(name, |b| {
            b.iter(|| {
                let req = http::Request::builder()
                    .uri("/chat/completions")
                    .header(http::header::HOST, "chat.example.com")
                    .header(credential.0.clone(), credential.1.clone())
                    .body(http_body_util::Empty::<bytes::Bytes>::new())
                    .expect("request");
                runtime.block_on(async {
                    let res = handle(
                        gate.clone(),
                        shared.clone(),
                        peer,
                        conn.clone(),
                        req,
                        Answers200,
                    )
                    .await;
                    assert_eq!(res.status(), 200, "{name}");
                    res.into_body().collect().await.map(|b| b.to_bytes())
                })
            })
        });
    }
    g.finish();
}

criterion_group!(
    benches,
    normalize_bench,
    route_bench,
    jwt_bench,
    api_key_bench,
    header_bench,
    assertion_bench,
    quota_bench,
    pipeline_bench
);
criterion_main!(benches);

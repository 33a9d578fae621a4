//! `store:`: where revocations, refresh families, sessions and counters live.
//!
//! Rules: `backend` is `embedded` or `redis`; Redis needs either a
//! `redis://` `url` (`rediss://`, TLS to Redis, is refused by name: this
//! build has no TLS client for Redis), or `sentinels` (`host:port` each, none
//! twice) with a `master_name`, never both; `password` and
//! `sentinel_password` go only with `sentinels` (a URL carries its own);
//! `max_stale` is at least 1s. The URL and the passwords may be secret, so
//! they become [`Secret`]s here and no error quotes them.

use std::time::Duration;

use super::Ctx;
use crate::config::file;
use crate::config::model::{RedisServer, Sentinels, Store, StoreBackend};
use crate::config::values::Secret;
use crate::config::ConfigError;

pub(super) fn store(cx: &Ctx, raw: &file::Store) -> Result<Store, ConfigError> {
    Ok(Store {
        backend: match raw.backend.as_str() {
            "embedded" => StoreBackend::Embedded {
                path: cx.path(&raw.path),
            },
            "redis" => StoreBackend::Redis {
                server: redis_server(cx, raw)?,
                key_prefix: raw.key_prefix.0.clone(),
            },
            other => {
                return Err(cx.err(
                    "store.backend",
                    format!("unknown store backend {other:?} (expected embedded or redis)"),
                ))
            }
        },
        max_stale: match raw.max_stale.0 {
            d if d >= Duration::from_secs(1) => d,
            _ => return Err(cx.err("store.max_stale", "must be at least 1s")),
        },
    })
}

/// `url`, or `sentinels` with `master_name` (and their passwords).
fn redis_server(cx: &Ctx, raw: &file::Store) -> Result<RedisServer, ConfigError> {
    let sentinels =
        match (&raw.url, &raw.sentinels) {
            (Some(_), Some(_)) => {
                return Err(cx.err(
                    "store.sentinels",
                    "give either store.url or store.sentinels, not both",
                ))
            }
            (None, None) => return Err(cx.err(
                "store.url",
                "required when store.backend is redis (or store.sentinels with store.master_name)",
            )),
            (Some(url), None) => {
                let only_with_sentinels = [
                    ("store.master_name", raw.master_name.is_some()),
                    ("store.password", raw.password.is_some()),
                    ("store.sentinel_password", raw.sentinel_password.is_some()),
                ];
                if let Some((key, _)) = only_with_sentinels.iter().find(|(_, set)| *set) {
                    return Err(cx.err(
                        *key,
                        "only with store.sentinels (a store.url carries its own password)",
                    ));
                }
                return if url.as_str().starts_with("redis://") {
                    Ok(RedisServer::Url {
                        url: Secret::new(url.0.clone()),
                    })
                } else if url.as_str().starts_with("rediss://") {
                    Err(cx.err(
                        "store.url",
                        "rediss:// (TLS to Redis) is not supported yet: use redis:// on a \
                     private network, or a TLS tunnel (stunnel, a service mesh) to Redis",
                    ))
                } else {
                    Err(cx.err("store.url", "expected redis://host:port/db"))
                };
            }
            (None, Some(sentinels)) => sentinels,
        };
    if sentinels.is_empty() {
        return Err(cx.err("store.sentinels", "must name at least one sentinel"));
    }
    let mut addrs: Vec<(String, u16)> = Vec::with_capacity(sentinels.len());
    for (i, entry) in sentinels.iter().enumerate() {
        let key = format!("store.sentinels[{i}]");
        let addr = host_port(entry.as_str()).ok_or_else(|| {
            cx.err(
                &key,
                format!("expected host:port, got {:?}", entry.as_str()),
            )
        })?;
        if addrs.contains(&addr) {
            return Err(cx.err(&key, format!("{:?} is listed twice", entry.as_str())));
        }
        addrs.push(addr);
    }
    let master_name = match &raw.master_name {
        None => return Err(cx.err("store.master_name", "required with store.sentinels")),
        Some(name) if name.as_str().trim().is_empty() => {
            return Err(cx.err("store.master_name", "must not be empty"))
        }
        Some(name) => name.as_str().trim().to_owned(),
    };
    Ok(RedisServer::Sentinel(Sentinels {
        sentinels: addrs,
        master_name,
        password: raw.password.clone(),
        sentinel_password: raw.sentinel_password.clone(),
    }))
}

/// `host:port` (an IPv6 host in brackets), the port not 0.
fn host_port(text: &str) -> Option<(String, u16)> {
    let (host, port) = text.trim().rsplit_once(':')?;
    let port = port.parse::<u16>().ok().filter(|p| *p != 0)?;
    let host = match host.strip_prefix('[') {
        Some(v6) => v6
            .strip_suffix(']')?
            .parse::<std::net::Ipv6Addr>()
            .ok()?
            .to_string(),
        None => host.to_owned(),
    };
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':');
    (!host.is_empty() && host.chars().all(plain) && (text.contains('[') || !host.contains(':')))
        .then_some((host, port))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::testing::{assert_errors, assert_valid, parse_snippet};
    use crate::config::{RedisServer, StoreBackend};

    const PASSWORD: &str = "Redis-Pa55word-7f3a9c1e";

    #[test]
    fn every_store_rule_names_its_key() {
        assert_errors(&[
            // The backend is embedded or redis.
            (
                "store:\n  backend: memcached\n",
                "store.backend",
                "unknown store backend \"memcached\" (expected embedded or redis)",
            ),
            (
                "store:\n  backend: Redis\n",
                "store.backend",
                "unknown store backend \"Redis\"",
            ),
            // Redis needs a url...
            (
                "store:\n  backend: redis\n",
                "store.url",
                "required when store.backend is redis",
            ),
            // ...that is redis://, never quoted back; rediss:// said so.
            (
                "store:\n  backend: redis\n  url: \"http://:Redis-Pa55word-7f3a9c1e@cache:6379\"\n",
                "store.url",
                "expected redis://host:port/db",
            ),
            (
                "store:\n  backend: redis\n  url: \"cache:6379\"\n",
                "store.url",
                "expected redis://host:port/db",
            ),
            (
                "store:\n  backend: redis\n  url: rediss://cache.internal:6380/2\n",
                "store.url",
                "rediss:// (TLS to Redis) is not supported yet",
            ),
            // ...or sentinels with a master_name, never both.
            (
                "store:\n  backend: redis\n  url: redis://cache\n  sentinels: [s1:26379]\n  master_name: gh\n",
                "store.sentinels",
                "give either store.url or store.sentinels, not both",
            ),
            (
                "store:\n  backend: redis\n  sentinels: []\n  master_name: gh\n",
                "store.sentinels",
                "must name at least one sentinel",
            ),
            (
                "store:\n  backend: redis\n  sentinels: s1:26379\n  master_name: gh\n",
                "store.sentinels",
                "invalid type: string \"s1:26379\", expected a sequence",
            ),
            (
                "store:\n  backend: redis\n  sentinels: [s1:26379]\n",
                "store.master_name",
                "required with store.sentinels",
            ),
            (
                "store:\n  backend: redis\n  sentinels: [s1:26379]\n  master_name: \" \"\n",
                "store.master_name",
                "must not be empty",
            ),
            // Each sentinel is host:port, once.
            (
                "store:\n  backend: redis\n  sentinels: [s1:26379, s2]\n  master_name: gh\n",
                "store.sentinels[1]",
                "expected host:port, got \"s2\"",
            ),
            (
                "store:\n  backend: redis\n  sentinels: [\"redis://s1:26379\"]\n  master_name: gh\n",
                "store.sentinels[0]",
                "expected host:port, got \"redis://s1:26379\"",
            ),
            (
                "store:\n  backend: redis\n  sentinels: [\"s1:0\"]\n  master_name: gh\n",
                "store.sentinels[0]",
                "expected host:port",
            ),
            (
                "store:\n  backend: redis\n  sentinels: [\"s1:65536\"]\n  master_name: gh\n",
                "store.sentinels[0]",
                "expected host:port",
            ),
            (
                "store:\n  backend: redis\n  sentinels: [\":26379\"]\n  master_name: gh\n",
                "store.sentinels[0]",
                "expected host:port",
            ),
            (
                "store:\n  backend: redis\n  sentinels: [\"::1:26379\"]\n  master_name: gh\n",
                "store.sentinels[0]",
                "expected host:port",
            ),
            (
                "store:\n  backend: redis\n  sentinels: [\"[not-v6]:26379\"]\n  master_name: gh\n",
                "store.sentinels[0]",
                "expected host:port",
            ),
            (
                "store:\n  backend: redis\n  sentinels: [s1:26379, s2:26379, s1:26379]\n  master_name: gh\n",
                "store.sentinels[2]",
                "\"s1:26379\" is listed twice",
            ),
            // The passwords and the master's name go with sentinels only.
            (
                "store:\n  backend: redis\n  url: redis://cache\n  password: Redis-Pa55word-7f3a9c1e\n",
                "store.password",
                "only with store.sentinels (a store.url carries its own password)",
            ),
            (
                "store:\n  backend: redis\n  url: redis://cache\n  sentinel_password: x\n",
                "store.sentinel_password",
                "only with store.sentinels",
            ),
            (
                "store:\n  backend: redis\n  url: redis://cache\n  master_name: gh\n",
                "store.master_name",
                "only with store.sentinels",
            ),
            // max_stale is at least 1s.
            (
                "store:\n  max_stale: 999ms\n",
                "store.max_stale",
                "must be at least 1s",
            ),
            // From the file's shape: known keys only.
            (
                "store:\n  backend: redis\n  uri: redis://cache\n",
                "store.uri",
                "unknown field `uri`",
            ),
            (
                "store:\n  backend: redis\n  sentinels: [s1:26379]\n  master: gh\n",
                "store.master",
                "unknown field `master`",
            ),
        ]);
    }

    #[test]
    fn valid_store_sections_pass() {
        let configs = assert_valid(&[
            "",
            "store:\n  path: /var/lib/gatehouse/state.db\n  max_stale: 1s\n",
            "store:\n  backend: redis\n  url: redis://cache.internal:6380/2\n  key_prefix: \"gh:\"\n",
            "store:\n  backend: redis\n  url: redis://127.0.0.1\n  path: ignored.db\n",
            "store:\n  backend: redis\n  sentinels: [10.0.0.1:26379, \"sentinel-2.internal:26380\", \"[::1]:26381\"]\n  \
             master_name: gh-main\n  password: one\n  sentinel_password: two\n",
            "store:\n  backend: redis\n  sentinels: [\" s1:26379 \"]\n  master_name: \" gh \"\n",
        ]);
        assert_eq!(
            configs[0].store.backend,
            StoreBackend::Embedded {
                path: Path::new("/etc/gatehouse/../data/gatehouse.db").to_owned()
            }
        );
        assert_eq!(configs[0].store.max_stale.as_secs(), 30);
        assert_eq!(configs[1].store.max_stale.as_secs(), 1);
        match &configs[2].store.backend {
            StoreBackend::Redis {
                server: RedisServer::Url { url },
                key_prefix,
            } => {
                assert_eq!(url.expose(), "redis://cache.internal:6380/2");
                assert_eq!(key_prefix, "gh:");
            }
            other => panic!("expected redis, got {other:?}"),
        }
        match &configs[4].store.backend {
            StoreBackend::Redis {
                server: RedisServer::Sentinel(s),
                key_prefix,
            } => {
                let addr = |h: &str, p| (h.to_owned(), p);
                assert_eq!(
                    s.sentinels,
                    [
                        addr("10.0.0.1", 26379),
                        addr("sentinel-2.internal", 26380),
                        addr("::1", 26381)
                    ]
                );
                assert_eq!(s.master_name, "gh-main");
                assert_eq!(s.password.as_ref().map(|p| p.expose()), Some("one"));
                assert_eq!(
                    s.sentinel_password.as_ref().map(|p| p.expose()),
                    Some("two")
                );
                assert_eq!(key_prefix, "gatehouse:");
            }
            other => panic!("expected redis with sentinels, got {other:?}"),
        }
        match &configs[5].store.backend {
            StoreBackend::Redis {
                server: RedisServer::Sentinel(s),
                ..
            } => {
                assert_eq!(s.sentinels, [("s1".to_owned(), 26379)]);
                assert_eq!(s.master_name, "gh");
                assert_eq!((&s.password, &s.sentinel_password), (&None, &None));
            }
            other => panic!("expected redis with sentinels, got {other:?}"),
        }
    }

    fn redis(url: &str) -> String {
        format!("store:\n  backend: redis\n  url: \"{url}\"\n")
    }

    #[test]
    fn a_redis_password_never_shows_in_the_config_or_its_errors() {
        let config = parse_snippet(&redis(&format!("redis://:{PASSWORD}@cache:6379/0")))
            .expect("a valid redis store");
        let debug = format!("{config:?} {config:#?}");
        assert!(!debug.contains(PASSWORD), "{debug}");
        assert!(debug.contains("url: ***"), "{debug}");

        let err = parse_snippet(&redis(&format!("http://:{PASSWORD}@cache:6379")))
            .expect_err("not a redis URL");
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains(PASSWORD), "{shown}");
    }

    fn sentinels(extra: &str) -> String {
        format!("store:\n  backend: redis\n  sentinels: [s1:26379, s2:26379]\n  master_name: gh\n{extra}")
    }

    #[test]
    fn sentinel_passwords_never_show_in_the_config_or_its_errors() {
        std::env::set_var("GATEHOUSE_TEST_SENTINEL_PASSWORD", PASSWORD);
        let config = parse_snippet(&sentinels(&format!(
            "  password: {PASSWORD}\n  sentinel_password: \"${{GATEHOUSE_TEST_SENTINEL_PASSWORD}}\"\n"
        )))
        .expect("a valid sentinel store");
        let debug = format!("{config:?} {config:#?}");
        assert!(!debug.contains(PASSWORD), "{debug}");
        assert!(debug.contains("password: Some(***)"), "{debug}");
        assert!(debug.contains("sentinel_password: Some(***)"), "{debug}");
        match &config.store.backend {
            crate::config::StoreBackend::Redis {
                server: RedisServer::Sentinel(s),
                ..
            } => assert_eq!(
                s.sentinel_password.as_ref().map(|p| p.expose()),
                Some(PASSWORD),
                "${{VAR}} is read from the environment"
            ),
            other => panic!("expected sentinels, got {other:?}"),
        }

        for snippet in [
            // Refused next to a url, and with a bad sentinel in the list.
            format!("store:\n  backend: redis\n  url: redis://cache\n  password: {PASSWORD}\n"),
            sentinels(&format!(
                "  password: {PASSWORD}\n  sentinel_password: {PASSWORD}\n"
            ))
            .replace("s2:26379", "s2"),
            sentinels(&format!("  password: [{PASSWORD}]\n")),
        ] {
            let err = parse_snippet(&snippet).expect_err("an invalid store");
            let shown = format!("{err} {err:?}");
            assert!(!shown.contains(PASSWORD), "{shown}");
        }
    }

    #[test]
    fn store_settings_compare_by_value_the_redis_url_included() {
        let store = |yaml: &str| parse_snippet(yaml).expect("a valid store").store;
        let a = store(&redis("redis://:one@cache:6379/0"));
        assert_eq!(a, store(&redis("redis://:one@cache:6379/0")));
        assert_ne!(a, store(&redis("redis://:two@cache:6379/0")));
        assert_ne!(
            a,
            store(
                &redis("redis://:one@cache:6379/0").replace("backend", "key_prefix: x\n  backend")
            )
        );
        assert_ne!(a, store(""));
        assert_ne!(store(""), store("store:\n  max_stale: 31s\n"));
        let s = store(&sentinels("  password: one\n"));
        assert_eq!(s, store(&sentinels("  password: one\n")));
        assert_ne!(s, store(&sentinels("  password: two\n")));
        assert_ne!(s, store(&sentinels("")));
        assert_ne!(
            s,
            store(&sentinels("  password: one\n  sentinel_password: one\n"))
        );
        assert_ne!(
            s,
            store(&sentinels("  password: one\n").replace("master_name: gh", "master_name: other"))
        );
        assert_ne!(
            s,
            store(
                &sentinels("  password: one\n")
                    .replace("[s1:26379, s2:26379]", "[s2:26379, s1:26379]")
            )
        );
    }
}

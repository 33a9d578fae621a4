//! `store:`: where revocations, refresh families, sessions and counters live.
//!
//! Rules: `backend` is `embedded` or `redis`; Redis needs a `redis://` or
//! `rediss://` `url`; `max_stale` is at least 1s. The URL may hold a
//! password, so it becomes a [`Secret`] here and no error quotes it.

use std::time::Duration;

use super::Ctx;
use crate::config::file;
use crate::config::model::{Store, StoreBackend};
use crate::config::values::Secret;
use crate::config::ConfigError;

pub(super) fn store(cx: &Ctx, raw: &file::Store) -> Result<Store, ConfigError> {
    Ok(Store {
        backend: match raw.backend.as_str() {
            "embedded" => StoreBackend::Embedded {
                path: cx.path(&raw.path),
            },
            "redis" => StoreBackend::Redis {
                url: match &raw.url {
                    Some(u)
                        if u.as_str().starts_with("redis://")
                            || u.as_str().starts_with("rediss://") =>
                    {
                        Secret::new(u.0.clone())
                    }
                    Some(_) => {
                        return Err(
                            cx.err("store.url", "expected redis://host:port/db or rediss://…")
                        )
                    }
                    None => return Err(cx.err("store.url", "required when store.backend is redis")),
                },
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::testing::{assert_errors, assert_valid, parse_snippet};
    use crate::config::StoreBackend;

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
            // ...that is redis:// or rediss://, never quoted back.
            (
                "store:\n  backend: redis\n  url: \"http://:Redis-Pa55word-7f3a9c1e@cache:6379\"\n",
                "store.url",
                "expected redis://host:port/db or rediss://…",
            ),
            (
                "store:\n  backend: redis\n  url: \"cache:6379\"\n",
                "store.url",
                "expected redis://host:port/db or rediss://…",
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
        ]);
    }

    #[test]
    fn valid_store_sections_pass() {
        let configs = assert_valid(&[
            "",
            "store:\n  path: /var/lib/gatehouse/state.db\n  max_stale: 1s\n",
            "store:\n  backend: redis\n  url: rediss://cache.internal:6380/2\n  key_prefix: \"gh:\"\n",
            "store:\n  backend: redis\n  url: redis://127.0.0.1\n  path: ignored.db\n",
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
            StoreBackend::Redis { url, key_prefix } => {
                assert_eq!(url.expose(), "rediss://cache.internal:6380/2");
                assert_eq!(key_prefix, "gh:");
            }
            other => panic!("expected redis, got {other:?}"),
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
    }
}

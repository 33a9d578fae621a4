//! Validation: [`FileConfig`] → [`Config`], one file per top-level key of the
//! YAML, each owning its section's rules.
//!
//! Everything a request will rely on is resolved here, once: addresses,
//! header names, methods, route patterns, upstream targets, paths relative to
//! the config file. A rule that cannot hold (credentials with a `*` origin, an
//! RS256 key without a PEM) is an error naming its key before any port is
//! bound. Sections are checked in file order, so the first error reported is
//! the first one in the file's layout. This file holds what several sections
//! share: the error context and the checks of durations, header names,
//! methods and role lists.

mod auth;
mod cors;
mod identity_headers;
mod listen;
mod oidc;
mod quotas;
mod rate_limits;
mod routes;
mod server;
mod sessions;
mod store;
mod tls;
mod upstreams;

use std::path::{Path, PathBuf};
use std::time::Duration;

use http::{HeaderName, Method};

use super::file::FileConfig;
use super::model::Config;
use super::values::Text;
use super::ConfigError;

/// Collects the file and the key path for an error.
struct Ctx<'a> {
    file: &'a Path,
    dir: PathBuf,
}

impl Ctx<'_> {
    fn err(&self, key: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.to_owned(),
            key: key.into(),
            message: message.into(),
        }
    }

    /// A path from the config file, relative to the file's folder.
    fn path(&self, value: &Text) -> PathBuf {
        let p = Path::new(value.as_str());
        if p.is_absolute() {
            p.to_owned()
        } else {
            self.dir.join(p)
        }
    }
}

pub(super) fn validate(path: &Path, raw: FileConfig) -> Result<Config, ConfigError> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_owned();
    let cx = Ctx { file: path, dir };

    let listen = listen::listen(&cx, &raw.listen)?;
    let tls = tls::tls(&cx, &raw.tls)?;
    let upstreams = upstreams::upstreams(&cx, &raw.upstreams)?;
    let server = server::server(&cx, &raw.server)?;
    let auth = auth::auth(&cx, &raw.auth)?;
    let identity = identity_headers::identity_headers(&cx, &raw.identity_headers)?;
    let rate_limits = rate_limits::rate_limits(&cx, &raw.rate_limits)?;
    let cors = cors::cors(&cx, &raw.cors)?;
    let store = store::store(&cx, &raw.store)?;
    let sessions = auth.sessions.enabled;
    let routes = routes::routes(&cx, &raw.routes, &upstreams, sessions)?;
    let default_route = routes::default_route(&cx, &raw.default_route, &upstreams, sessions)?;
    let quotas = quotas::quotas(&cx, &raw.quotas, &routes)?;

    Ok(Config {
        path: path.to_owned(),
        listen,
        tls,
        upstreams,
        server,
        auth,
        identity,
        forward_authorization: raw.forward_authorization.0,
        rate_limits,
        cors,
        store,
        routes,
        default_route,
        quotas,
    })
}

/// A duration that must not be zero.
fn positive(cx: &Ctx, key: &str, d: Duration) -> Result<Duration, ConfigError> {
    if d.is_zero() {
        Err(cx.err(key, "must be greater than zero"))
    } else {
        Ok(d)
    }
}

fn header(cx: &Ctx, key: &str, value: &Text) -> Result<HeaderName, ConfigError> {
    HeaderName::from_bytes(value.as_str().trim().as_bytes())
        .map_err(|_| cx.err(key, format!("invalid header name {:?}", value.as_str())))
}

/// A list of HTTP methods, uppercased; errors name the item (`key[i]`).
fn methods(cx: &Ctx, key: &str, items: &[Text]) -> Result<Vec<Method>, ConfigError> {
    items
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let upper = m.as_str().trim().to_ascii_uppercase();
            Method::from_bytes(upper.as_bytes()).map_err(|_| {
                cx.err(
                    format!("{key}[{i}]"),
                    format!("invalid method {:?}", m.as_str()),
                )
            })
        })
        .collect()
}

fn roles(items: &[Text]) -> Vec<String> {
    items.iter().map(|r| r.0.clone()).collect()
}

/// Each section's rules are tested through [`crate::config::parse`], the
/// door a real file goes through, with a table of inline YAML snippets.
#[cfg(test)]
mod testing {
    use std::path::Path;

    use crate::config::{parse, Config, ConfigError};

    /// The file every test config claims to come from. `parse` reads nothing
    /// from disk (certificates, keys and the users file are read later, by
    /// the server), so no file has to exist.
    pub const PATH: &str = "/etc/gatehouse/gatehouse.yaml";

    /// A 32-byte HS256 secret.
    pub const JWT_SECRET: &str = "0123456789abcdef0123456789abcdef";

    /// The sections a minimal valid config needs; a snippet that has the
    /// same top-level key replaces the section.
    const BASE: [(&str, &str); 4] = [
        ("listen", "listen:\n  https: 127.0.0.1:8443\n"),
        ("tls", "tls:\n  cert: server.crt\n  key: server.key\n"),
        (
            "upstreams",
            "upstreams:\n  app:\n    url: http://127.0.0.1:8000\n",
        ),
        (
            "auth",
            "auth:\n  jwt:\n    secret: 0123456789abcdef0123456789abcdef\n",
        ),
    ];

    /// A whole config file: the minimal valid one, with `snippet`'s
    /// top-level keys in place of its own.
    pub fn config(snippet: &str) -> String {
        let keys: Vec<&str> = snippet
            .lines()
            .filter(|l| l.starts_with(|c: char| c.is_ascii_alphabetic()))
            .filter_map(|l| l.split_once(':').map(|(k, _)| k))
            .collect();
        let mut text: String = BASE
            .iter()
            .filter(|(key, _)| !keys.contains(key))
            .map(|(_, section)| *section)
            .collect();
        text.push_str(snippet);
        text
    }

    pub fn parse_snippet(snippet: &str) -> Result<Config, ConfigError> {
        parse(Path::new(PATH), &config(snippet))
    }

    /// Every row `(snippet, key path, message fragment)` must fail with
    /// exactly that key path and a message containing the fragment. All
    /// rows run; the failures are reported together.
    pub fn assert_errors<S: AsRef<str>>(rows: &[(S, &str, &str)]) {
        let mut failures = Vec::new();
        for (snippet, key, fragment) in rows {
            let snippet = snippet.as_ref();
            match parse_snippet(snippet) {
                Ok(_) => failures.push(format!(
                    "{snippet}\n  → accepted; expected {key}: …{fragment}…"
                )),
                Err(e)
                    if e.key != *key
                        || !e.message.contains(fragment)
                        || e.file != Path::new(PATH) =>
                {
                    failures.push(format!(
                        "{snippet}\n  → {e}\n  expected {key}: …{fragment}…"
                    ))
                }
                Err(_) => {}
            }
        }
        assert!(
            failures.is_empty(),
            "{} of {} rows failed:\n\n{}",
            failures.len(),
            rows.len(),
            failures.join("\n\n")
        );
    }

    /// Every snippet must make a valid config; returns them parsed.
    pub fn assert_valid<S: AsRef<str>>(snippets: &[S]) -> Vec<Config> {
        let mut failures = Vec::new();
        let mut configs = Vec::new();
        for snippet in snippets {
            let snippet = snippet.as_ref();
            match parse_snippet(snippet) {
                Ok(config) => configs.push(config),
                Err(e) => failures.push(format!("{snippet}\n  → {e}")),
            }
        }
        assert!(
            failures.is_empty(),
            "{} of {} valid snippets were refused:\n\n{}",
            failures.len(),
            snippets.len(),
            failures.join("\n\n")
        );
        configs
    }

    #[test]
    fn the_minimal_config_is_valid_and_takes_the_defaults() {
        let config = assert_valid(&[""]).remove(0);
        assert_eq!(config.upstreams.len(), 1);
        assert_eq!(
            config.listen.http,
            Some("0.0.0.0:8080".parse().expect("addr"))
        );
        assert_eq!(config.server.max_connections, 10_000);
        assert_eq!(config.default_route.name.as_ref(), "default");
        assert!(config.forward_authorization);
        assert_eq!(
            config.tls.cert,
            Path::new("/etc/gatehouse/server.crt"),
            "relative paths resolve against the config file's folder"
        );
    }

    #[test]
    fn a_snippet_replaces_the_base_section_with_its_key() {
        let text = config("listen:\n  https: 0.0.0.0:1\nserver:\n  max_connections: 3\n");
        assert_eq!(text.matches("listen:").count(), 1, "{text}");
        assert!(text.contains("https: 0.0.0.0:1"), "{text}");
        assert!(text.contains("tls:") && text.contains("auth:"), "{text}");
    }
}

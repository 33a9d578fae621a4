//! `upstreams:`: the named backends, in file order (the first is the default).
//!
//! Rules: at least one upstream; each has exactly one of `url` or a
//! non-empty `urls`; every target is `http://host:port` with no path or
//! query (gatehouse forwards the request's own path); both timeouts are
//! greater than zero.

use http::Uri;
use indexmap::IndexMap;

use super::{positive, Ctx};
use crate::config::file;
use crate::config::model::Upstream;
use crate::config::values::Text;
use crate::config::ConfigError;

pub(super) fn upstreams(
    cx: &Ctx,
    raw: &IndexMap<String, file::Upstream>,
) -> Result<Vec<Upstream>, ConfigError> {
    if raw.is_empty() {
        return Err(cx.err("upstreams", "at least one upstream is required"));
    }
    raw.iter()
        .map(|(name, up)| upstream(cx, name, up))
        .collect()
}

fn upstream(cx: &Ctx, name: &str, up: &file::Upstream) -> Result<Upstream, ConfigError> {
    let key = format!("upstreams.{name}");
    let urls: Vec<(String, &Text)> = match (&up.url, &up.urls) {
        (Some(u), None) => vec![(format!("{key}.url"), u)],
        (None, Some(us)) if !us.is_empty() => us
            .iter()
            .enumerate()
            .map(|(i, u)| (format!("{key}.urls[{i}]"), u))
            .collect(),
        _ => {
            return Err(cx.err(
                &key,
                "exactly one of `url` or a non-empty `urls` is required",
            ))
        }
    };
    let mut targets = Vec::with_capacity(urls.len());
    for (k, u) in urls {
        let uri: Uri = u
            .as_str()
            .trim()
            .parse()
            .map_err(|_| cx.err(&k, format!("invalid URL {:?}", u.as_str())))?;
        if uri.scheme_str() != Some("http") || uri.authority().is_none() {
            return Err(cx.err(
                &k,
                format!(
                    "{:?}: expected http://host:port (https upstreams are not supported)",
                    u.as_str()
                ),
            ));
        }
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(cx.err(
                &k,
                "an upstream URL has no path or query: gatehouse forwards the request's own path",
            ));
        }
        // Cannot fail: the authority was just parsed by the same parser.
        let base = Uri::builder()
            .scheme("http")
            .authority(uri.authority().map(|a| a.as_str()).unwrap_or_default())
            .path_and_query("/")
            .build()
            .map_err(|_| cx.err(&k, "invalid URL"))?;
        targets.push(base);
    }
    Ok(Upstream {
        name: name.to_owned(),
        targets,
        connect_timeout: positive(cx, &format!("{key}.connect_timeout"), up.connect_timeout.0)?,
        response_timeout: positive(
            cx,
            &format!("{key}.response_timeout"),
            up.response_timeout.0,
        )?,
        audience: match &up.audience {
            Some(aud) if aud.0.trim().is_empty() || aud.0.chars().any(char::is_control) => {
                return Err(cx.err(
                    format!("{key}.audience"),
                    "must be non-empty, without control characters",
                ))
            }
            Some(aud) => aud.0.trim().to_owned(),
            None => name.to_owned(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::super::testing::{assert_errors, assert_valid};

    #[test]
    fn every_upstreams_rule_names_its_key() {
        assert_errors(&[
            // At least one upstream.
            ("upstreams: {}\n", "upstreams", "at least one upstream is required"),
            // Exactly one of url or a non-empty urls.
            (
                "upstreams:\n  app:\n    connect_timeout: 1s\n",
                "upstreams.app",
                "exactly one of `url` or a non-empty `urls` is required",
            ),
            (
                "upstreams:\n  app:\n    urls: []\n",
                "upstreams.app",
                "exactly one of `url` or a non-empty `urls`",
            ),
            (
                "upstreams:\n  app:\n    url: http://a:1\n    urls: [\"http://b:1\"]\n",
                "upstreams.app",
                "exactly one of `url` or a non-empty `urls`",
            ),
            // A target parses as a URL.
            (
                "upstreams:\n  app:\n    url: \"http://exa mple:80\"\n",
                "upstreams.app.url",
                "invalid URL \"http://exa mple:80\"",
            ),
            // A target is http:// with a host.
            (
                "upstreams:\n  app:\n    url: https://127.0.0.1:8443\n",
                "upstreams.app.url",
                "\"https://127.0.0.1:8443\": expected http://host:port (https upstreams are not supported)",
            ),
            (
                "upstreams:\n  app:\n    url: /just/a/path\n",
                "upstreams.app.url",
                "expected http://host:port",
            ),
            (
                "upstreams:\n  app:\n    urls: [\"http://a:1\", \"127.0.0.1:8000\"]\n",
                "upstreams.app.urls[1]",
                "expected http://host:port",
            ),
            // A target has no path or query.
            (
                "upstreams:\n  app:\n    url: http://127.0.0.1:8000/api\n",
                "upstreams.app.url",
                "an upstream URL has no path or query: gatehouse forwards the request's own path",
            ),
            (
                "upstreams:\n  first:\n    url: http://a:1\n  app:\n    url: http://127.0.0.1:8000/?x=1\n",
                "upstreams.app.url",
                "an upstream URL has no path or query",
            ),
            // Timeouts are greater than zero.
            (
                "upstreams:\n  app:\n    url: http://a:1\n    connect_timeout: 0s\n",
                "upstreams.app.connect_timeout",
                "must be greater than zero",
            ),
            (
                "upstreams:\n  app:\n    url: http://a:1\n    response_timeout: 0ms\n",
                "upstreams.app.response_timeout",
                "must be greater than zero",
            ),
            // From the file's shape: durations have units, keys are known.
            (
                "upstreams:\n  app:\n    url: http://a:1\n    connect_timeout: 2\n",
                "upstreams.app.connect_timeout",
                "invalid duration \"2\"",
            ),
            (
                "upstreams:\n  app:\n    url: http://a:1\n    timeout: 2s\n",
                "upstreams.app.timeout",
                "unknown field `timeout`",
            ),
        ]);
    }

    #[test]
    fn valid_upstreams_sections_pass() {
        let configs = assert_valid(&[
            "upstreams:\n  app:\n    url: \" http://127.0.0.1:8000/ \"\n",
            "upstreams:\n  app:\n    urls: [\"http://a:1\", \"http://[::1]:2\"]\n  other:\n    url: http://b\n    connect_timeout: 500ms\n    response_timeout: 5m\n",
        ]);
        assert_eq!(configs[0].upstreams[0].targets[0], "http://127.0.0.1:8000/");
        let ups = &configs[1].upstreams;
        assert_eq!(
            ups.iter().map(|u| u.name.as_str()).collect::<Vec<_>>(),
            ["app", "other"],
            "file order is kept"
        );
        assert_eq!(ups[0].targets.len(), 2);
        assert_eq!(ups[1].connect_timeout.as_millis(), 500);
    }
}

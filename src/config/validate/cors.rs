//! `cors:`: the origins, methods and headers gatehouse allows (CORS is
//! gatehouse's alone; backends' CORS headers are removed).
//!
//! Rules: each origin is `"*"`, `scheme://host[:port]` or
//! `scheme://*.domain[:port]` with an http(s) scheme and, for a wildcard, a
//! domain of at least two labels (never a bare TLD); `"*"` cannot be combined
//! with `allow_credentials: true` (browsers refuse it); methods are methods
//! and headers are header names.

use http::HeaderName;

use super::{header, methods, Ctx};
use crate::config::file;
use crate::config::model::{Cors, Origin};
use crate::config::values::Text;
use crate::config::ConfigError;

pub(super) fn cors(cx: &Ctx, raw: &file::Cors) -> Result<Cors, ConfigError> {
    let mut allowed_origins = Vec::with_capacity(raw.allowed_origins.len());
    for (i, o) in raw.allowed_origins.iter().enumerate() {
        allowed_origins.push(origin(
            cx,
            &format!("cors.allowed_origins[{i}]"),
            o.as_str(),
        )?);
    }
    let allow_credentials = raw.allow_credentials.0;
    if allow_credentials {
        if let Some(i) = allowed_origins.iter().position(|o| *o == Origin::Any) {
            return Err(cx.err(
                format!("cors.allowed_origins[{i}]"),
                "\"*\" cannot be combined with allow_credentials: true (browsers refuse it); list the origins",
            ));
        }
    }
    let headers = |key: &str, items: &[Text]| -> Result<Vec<HeaderName>, ConfigError> {
        items
            .iter()
            .enumerate()
            .map(|(i, h)| header(cx, &format!("{key}[{i}]"), h))
            .collect()
    };
    Ok(Cors {
        allowed_origins,
        allowed_methods: methods(cx, "cors.allowed_methods", &raw.allowed_methods)?,
        allowed_headers: headers("cors.allowed_headers", &raw.allowed_headers)?,
        expose_headers: headers("cors.expose_headers", &raw.expose_headers)?,
        allow_credentials,
        max_age: raw.max_age.0,
    })
}

pub(super) fn origin(cx: &Ctx, key: &str, raw: &str) -> Result<Origin, ConfigError> {
    let o = raw.trim().to_ascii_lowercase();
    if o == "*" {
        return Ok(Origin::Any);
    }
    let bad = || {
        cx.err(
            key,
            format!("{raw:?}: expected scheme://host[:port] or scheme://*.domain[:port]"),
        )
    };
    // `*.` is the only thing an origin here may have that a browser's may not.
    let (text, wildcard) = match o.split_once("://*.") {
        Some((scheme, rest)) => (format!("{scheme}://{rest}"), true),
        None => (o.clone(), false),
    };
    let parsed = crate::host::parse_origin(text.as_bytes()).map_err(|_| bad())?;
    if !matches!(parsed.scheme, "http" | "https") {
        return Err(bad());
    }
    let scheme = parsed.scheme.to_owned();
    let port = parsed.effective_port();
    let host = parsed.host.name().to_owned();
    if wildcard {
        // An IP address has no subdomains.
        let is_ip = host.starts_with('[') || host.parse::<std::net::Ipv4Addr>().is_ok();
        if !host.contains('.') && host != "localhost" || is_ip {
            return Err(cx.err(
                key,
                format!("{raw:?}: a wildcard needs a domain with at least two labels after *."),
            ));
        }
        return Ok(Origin::Subdomains {
            scheme,
            suffix: host,
            port,
        });
    }
    Ok(Origin::Exact { scheme, host, port })
}

#[cfg(test)]
mod tests {
    use super::super::testing::{assert_errors, assert_valid};
    use crate::config::Origin;

    #[test]
    fn every_cors_rule_names_its_key() {
        assert_errors(&[
            // An origin is scheme://host[:port] with an http(s) scheme.
            (
                "cors:\n  allowed_origins: [chat.example.com]\n",
                "cors.allowed_origins[0]",
                "\"chat.example.com\": expected scheme://host[:port] or scheme://*.domain[:port]",
            ),
            (
                "cors:\n  allowed_origins: [\"https://a.example.com\", \"ftp://files.example.com\"]\n",
                "cors.allowed_origins[1]",
                "expected scheme://host[:port]",
            ),
            (
                "cors:\n  allowed_origins: [\"https://chat.example.com/app\"]\n",
                "cors.allowed_origins[0]",
                "expected scheme://host[:port]",
            ),
            (
                "cors:\n  allowed_origins: [\"https://user@chat.example.com\"]\n",
                "cors.allowed_origins[0]",
                "expected scheme://host[:port]",
            ),
            (
                "cors:\n  allowed_origins: [\"https://chat.example.com:99999\"]\n",
                "cors.allowed_origins[0]",
                "expected scheme://host[:port]",
            ),
            (
                "cors:\n  allowed_origins: [\"https://a.*.example.com\"]\n",
                "cors.allowed_origins[0]",
                "expected scheme://host[:port]",
            ),
            // A wildcard stands before a domain of at least two labels.
            (
                "cors:\n  allowed_origins: [\"https://*.com\"]\n",
                "cors.allowed_origins[0]",
                "\"https://*.com\": a wildcard needs a domain with at least two labels after *.",
            ),
            (
                "cors:\n  allowed_origins: [\"http://*.[::1]:3000\"]\n",
                "cors.allowed_origins[0]",
                "a wildcard needs a domain with at least two labels",
            ),
            // "*" and credentials never together.
            (
                "cors:\n  allowed_origins: [\"https://a.example.com\", \"*\"]\n  allow_credentials: true\n",
                "cors.allowed_origins[1]",
                "\"*\" cannot be combined with allow_credentials: true (browsers refuse it); list the origins",
            ),
            // Methods are methods.
            (
                "cors:\n  allowed_methods: [GET, \"GE T\"]\n",
                "cors.allowed_methods[1]",
                "invalid method \"GE T\"",
            ),
            // Headers are header names.
            (
                "cors:\n  allowed_headers: [Authorization, \"Content Type\"]\n",
                "cors.allowed_headers[1]",
                "invalid header name \"Content Type\"",
            ),
            (
                "cors:\n  expose_headers: [\"X-Total:\"]\n",
                "cors.expose_headers[0]",
                "invalid header name \"X-Total:\"",
            ),
            // From the file's shape: lists are lists, keys are known.
            (
                "cors:\n  allowed_origins: 7\n",
                "cors.allowed_origins",
                "invalid type",
            ),
            (
                "cors:\n  allow_origins: [\"*\"]\n",
                "cors.allow_origins",
                "unknown field `allow_origins`",
            ),
        ]);
    }

    #[test]
    fn valid_cors_sections_pass() {
        let configs = assert_valid(&[
            "cors:\n  allowed_origins: [\"*\"]\n",
            "cors:\n  allowed_origins: [\" HTTPS://Chat.Example.COM:443 \", \"https://*.example.com:8443\", \"http://*.localhost\"]\n  allowed_methods: [get, PROPFIND]\n  expose_headers: [X-Total]\n  allow_credentials: true\n  max_age: 0s\n",
        ]);
        assert_eq!(configs[0].cors.allowed_origins, [Origin::Any]);
        assert!(!configs[0].cors.allow_credentials);
        let cors = &configs[1].cors;
        assert_eq!(
            cors.allowed_origins,
            [
                Origin::Exact {
                    scheme: "https".into(),
                    host: "chat.example.com".into(),
                    port: Some(443)
                },
                Origin::Subdomains {
                    scheme: "https".into(),
                    suffix: "example.com".into(),
                    port: Some(8443)
                },
                Origin::Subdomains {
                    scheme: "http".into(),
                    suffix: "localhost".into(),
                    port: Some(80)
                },
            ]
        );
        assert_eq!(
            cors.allowed_methods,
            [
                http::Method::GET,
                "PROPFIND".parse::<http::Method>().expect("method")
            ]
        );
        assert_eq!(cors.expose_headers[0].as_str(), "x-total");
    }
}

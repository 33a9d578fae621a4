//! CORS (SPEC §2 `cors`, §3.4, §3.8; the Fetch standard's CORS protocol),
//! answered at the proxy so backends need not know about it.
//!
//! - A preflight (`OPTIONS` + `Origin` + `Access-Control-Request-Method`) is
//!   never forwarded: `204` with the allow headers for an allowed origin,
//!   `403` otherwise.
//! - Every other response — the backend's and gatehouse's own errors, so
//!   browser code can read a 401 or 429 — gets `Access-Control-Allow-Origin`
//!   (the exact origin, never `*`), `-Allow-Credentials`, `-Expose-Headers`
//!   for an allowed origin, and `Vary: Origin`. A backend's own CORS headers
//!   are removed first: gatehouse is the one place CORS is decided.

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Response, StatusCode};

use super::Flow;
use crate::body::Body;
use crate::config::{self, Origin};

/// A preflight from an origin `cors.allowed_origins` does not list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("preflight from an origin that is not allowed")]
pub struct PreflightRefused;

const CORS_RESPONSE_HEADERS: [header::HeaderName; 6] = [
    header::ACCESS_CONTROL_ALLOW_ORIGIN,
    header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
    header::ACCESS_CONTROL_EXPOSE_HEADERS,
    header::ACCESS_CONTROL_ALLOW_METHODS,
    header::ACCESS_CONTROL_ALLOW_HEADERS,
    header::ACCESS_CONTROL_MAX_AGE,
];

/// The CORS policy of one config generation, with its header values prepared.
#[derive(Debug)]
pub struct Cors {
    origins: Vec<Origin>,
    credentials: bool,
    allow_methods: HeaderValue,
    allow_headers: HeaderValue,
    expose_headers: Option<HeaderValue>,
    max_age: HeaderValue,
}

fn join<T: AsRef<str>>(items: impl IntoIterator<Item = T>) -> String {
    items
        .into_iter()
        .map(|i| i.as_ref().to_owned())
        .collect::<Vec<_>>()
        .join(", ")
}

impl Cors {
    pub fn new(cfg: &config::Cors) -> Self {
        let value =
            |s: String| HeaderValue::from_str(&s).unwrap_or_else(|_| HeaderValue::from_static(""));
        Cors {
            origins: cfg.allowed_origins.clone(),
            credentials: cfg.allow_credentials,
            allow_methods: value(join(cfg.allowed_methods.iter().map(Method::as_str))),
            allow_headers: value(join(cfg.allowed_headers.iter().map(|h| h.as_str()))),
            expose_headers: (!cfg.expose_headers.is_empty())
                .then(|| value(join(cfg.expose_headers.iter().map(|h| h.as_str())))),
            max_age: HeaderValue::from(cfg.max_age.as_secs()),
        }
    }

    /// Whether `origin` (an `Origin` header value) is allowed. The value is
    /// read by the one origin parser ([`crate::host::parse_origin`]):
    /// scheme and host compare case-insensitively, a missing port is the
    /// scheme's default, a trailing dot on the host is ignored.
    pub fn allows(&self, origin: &HeaderValue) -> bool {
        let Ok(origin) = crate::host::parse_origin(origin.as_bytes()) else {
            return false;
        };
        self.origins.iter().any(|allowed| allowed.matches(&origin))
    }

    /// The CORS stage: a preflight is answered here (204, or refused), never
    /// forwarded; anything else goes on.
    pub fn stage(&self, method: &Method, headers: &HeaderMap) -> Result<Flow, PreflightRefused> {
        if Cors::is_preflight(method, headers) {
            return self
                .preflight(headers)
                .map(|res| Flow::Respond(Box::new(res)));
        }
        Ok(Flow::Continue)
    }

    /// Whether the request is a CORS preflight.
    pub fn is_preflight(method: &Method, headers: &HeaderMap) -> bool {
        method == Method::OPTIONS
            && headers.contains_key(header::ORIGIN)
            && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
    }

    /// The answer to a preflight.
    pub fn preflight(&self, headers: &HeaderMap) -> Result<Response<Body>, PreflightRefused> {
        let origin = headers
            .get(header::ORIGIN)
            .filter(|o| self.allows(o))
            .ok_or(PreflightRefused)?;
        let mut res = Response::new(Body::empty());
        *res.status_mut() = StatusCode::NO_CONTENT;
        let h = res.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            self.allow_methods.clone(),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            self.allow_headers.clone(),
        );
        h.insert(header::ACCESS_CONTROL_MAX_AGE, self.max_age.clone());
        if self.credentials {
            h.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        h.insert(
            header::VARY,
            HeaderValue::from_static(
                "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
            ),
        );
        Ok(res)
    }

    /// Sets the CORS headers of a (non-preflight) response to a request
    /// that came with `origin`.
    pub fn decorate(&self, origin: Option<&HeaderValue>, headers: &mut HeaderMap) {
        crate::upstream::headers::remove_where(headers, |name| {
            CORS_RESPONSE_HEADERS.contains(name)
        });
        let Some(origin) = origin else { return };
        add_vary_origin(headers);
        if !self.allows(origin) {
            return;
        }
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        if self.credentials {
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        if let Some(expose) = &self.expose_headers {
            headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, expose.clone());
        }
    }
}

/// Adds `Origin` to `Vary` unless it is there already.
fn add_vary_origin(headers: &mut HeaderMap) {
    let present = headers
        .get_all(header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("origin") || t.trim() == "*");
    if !present {
        headers.append(header::VARY, HeaderValue::from_static("Origin"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn cors(origins: &[Origin], credentials: bool) -> Cors {
        Cors::new(&config::Cors {
            allowed_origins: origins.to_vec(),
            allowed_methods: vec![Method::GET, Method::POST],
            allowed_headers: vec![header::AUTHORIZATION, header::CONTENT_TYPE],
            expose_headers: vec![],
            allow_credentials: credentials,
            max_age: Duration::from_secs(600),
        })
    }

    fn v(s: &'static str) -> HeaderValue {
        HeaderValue::from_static(s)
    }

    fn exact(scheme: &str, host: &str, port: u16) -> Origin {
        Origin::Exact {
            scheme: scheme.into(),
            host: host.into(),
            port: Some(port),
        }
    }

    #[test]
    fn exact_origin_matches_by_meaning_not_spelling() {
        let c = cors(&[exact("https", "chat.example.com", 443)], false);
        assert!(c.allows(&v("https://chat.example.com")));
        assert!(c.allows(&v("HTTPS://Chat.Example.COM")));
        assert!(c.allows(&v("https://chat.example.com:443")));
        assert!(!c.allows(&v("https://chat.example.com:8443")));
        assert!(!c.allows(&v("http://chat.example.com")));
        assert!(!c.allows(&v("https://chat.example.com/")));
        assert!(!c.allows(&v("https://chat.example.com@evil.example")));
        assert!(!c.allows(&v("https://evil.example#chat.example.com")));
        assert!(!c.allows(&v("https://chat.example.com.evil.example")));
    }

    #[test]
    fn wildcard_matches_subdomains_never_the_apex_and_exact_scheme_and_port() {
        let c = cors(
            &[Origin::Subdomains {
                scheme: "https".into(),
                suffix: "example.com".into(),
                port: Some(443),
            }],
            false,
        );
        assert!(c.allows(&v("https://app.example.com")));
        assert!(c.allows(&v("https://a.b.example.com")));
        assert!(!c.allows(&v("https://example.com")));
        assert!(!c.allows(&v("https://evilexample.com")));
        assert!(!c.allows(&v("https://example.com.evil.net")));
        assert!(!c.allows(&v("http://app.example.com")));
        assert!(!c.allows(&v("https://app.example.com:8443")));
        assert!(!c.allows(&v("null")));
    }

    #[test]
    fn exact_origin_is_echoed_with_vary_and_backend_copies_replaced() {
        let c = cors(&[exact("https", "chat.example.com", 443)], true);
        let mut h = HeaderMap::new();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v("*"));
        c.decorate(Some(&v("https://chat.example.com")), &mut h);
        assert_eq!(
            h[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "https://chat.example.com"
        );
        assert_eq!(
            h.get_all(header::ACCESS_CONTROL_ALLOW_ORIGIN)
                .iter()
                .count(),
            1
        );
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
        assert_eq!(h[header::VARY], "Origin");
        let mut h = HeaderMap::new();
        c.decorate(Some(&v("https://evil.example")), &mut h);
        assert!(!h.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN));
    }

    #[test]
    fn preflight_from_unknown_origin_is_forbidden() {
        let c = cors(&[exact("https", "chat.example.com", 443)], false);
        let mut h = HeaderMap::new();
        h.insert(header::ORIGIN, v("https://other.example"));
        h.insert(header::ACCESS_CONTROL_REQUEST_METHOD, v("POST"));
        assert!(Cors::is_preflight(&Method::OPTIONS, &h));
        assert_eq!(c.preflight(&h).unwrap_err(), PreflightRefused);
        h.insert(header::ORIGIN, v("https://chat.example.com"));
        let res = c.preflight(&h).unwrap();
        assert_eq!(res.status(), StatusCode::NO_CONTENT);
        assert_eq!(
            res.headers()[header::ACCESS_CONTROL_ALLOW_METHODS],
            "GET, POST"
        );
        assert_eq!(res.headers()[header::ACCESS_CONTROL_MAX_AGE], "600");
    }
}

//! The one way gatehouse talks to an identity provider: HTTPS only, the
//! system's roots plus the provider's `ca_file` (never less checking), no
//! redirects followed, a timeout on every exchange and a cap on every body.
//! Errors say what failed, never what was sent (codes, secrets, tokens).
//! An answer's `Link: <…>; rel="next"` (RFC 8288) is read for the caller,
//! who decides whether it may be followed (`github.rs`).

use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::CertificateDer;
use serde_json::Value;

/// Every exchange with a provider ends within this.
const TIMEOUT: Duration = Duration::from_secs(10);
/// The largest answer read from a provider.
const MAX_BODY: usize = 1 << 20;
/// Who calls (GitHub's API refuses requests without a `User-Agent`).
const USER_AGENT: &str = concat!("gatehouse/", env!("CARGO_PKG_VERSION"));

/// An HTTPS client for one provider.
#[derive(Clone)]
pub struct ProviderClient {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
    tls: rustls::ClientConfig,
}

/// What a provider answered.
pub struct Answer {
    pub status: StatusCode,
    pub json: Option<Value>,
    /// The target of a `Link` with `rel="next"`, as sent (unresolved,
    /// unchecked): the next page of a paged list.
    pub next: Option<String>,
}

impl ProviderClient {
    /// Trusts the system's roots and `extra` (a provider's `ca_file`).
    pub fn new(extra: &[CertificateDer<'static>]) -> Result<Self, String> {
        let tls = tls_config(extra)?;
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls.clone())
            .https_only()
            .enable_http1()
            .build();
        Ok(ProviderClient {
            client: Client::builder(TokioExecutor::new()).build(connector),
            tls,
        })
    }

    /// The TLS settings, for the provider's key set (`jwks.rs`).
    pub fn tls(&self) -> &rustls::ClientConfig {
        &self.tls
    }

    /// `GET url` accepting JSON, with a bearer token when given.
    pub async fn get_json(&self, url: &Uri, bearer: Option<&str>) -> Result<Answer, String> {
        let mut req = Request::builder()
            .method(Method::GET)
            .uri(url.clone())
            .header(header::ACCEPT, "application/json");
        if let Some(token) = bearer {
            req = req.header(header::AUTHORIZATION, bearer_value(token)?);
        }
        let req = req.body(Full::default()).map_err(|e| e.to_string())?;
        self.send(req).await
    }

    /// `POST url` with a form body (RFC 6749 §4.1.3), with HTTP Basic
    /// client authentication when `basic` is given (RFC 6749 §2.3.1: both
    /// parts form-encoded first).
    pub async fn post_form(
        &self,
        url: &Uri,
        form: &[(&str, &str)],
        basic: Option<(&str, &str)>,
    ) -> Result<Answer, String> {
        let body: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(url.clone())
            .header(header::ACCEPT, "application/json")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some((id, secret)) = basic {
            let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            let pair = format!("{}:{}", enc(id), enc(secret));
            let value = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(pair)
            );
            let mut value = HeaderValue::from_str(&value).map_err(|_| "bad client id")?;
            value.set_sensitive(true);
            req = req.header(header::AUTHORIZATION, value);
        }
        let req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        self.send(req).await
    }

    async fn send(&self, mut req: Request<Full<Bytes>>) -> Result<Answer, String> {
        req.headers_mut()
            .insert(header::USER_AGENT, HeaderValue::from_static(USER_AGENT));
        let url = format!(
            "{}://{}{}",
            req.uri().scheme_str().unwrap_or("https"),
            req.uri().authority().map_or("", |a| a.as_str()),
            req.uri().path()
        );
        let exchange = async {
            let res = self
                .client
                .request(req)
                .await
                .map_err(|e| format!("{url}: {}", error_chain(&e)))?;
            let status = res.status();
            let next = link_target(res.headers(), "next");
            let body = Limited::new(res.into_body(), MAX_BODY)
                .collect()
                .await
                .map_err(|e| format!("{url}: reading the answer: {e}"))?
                .to_bytes();
            Ok(Answer {
                status,
                json: serde_json::from_slice(&body).ok(),
                next,
            })
        };
        tokio::time::timeout(TIMEOUT, exchange)
            .await
            .map_err(|_| format!("{url}: no answer within {}s", TIMEOUT.as_secs()))?
    }
}

fn bearer_value(token: &str) -> Result<HeaderValue, String> {
    let mut v = HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|_| "the provider's access token cannot be sent in a header".to_owned())?;
    v.set_sensitive(true);
    Ok(v)
}

/// The target of the first link with relation type `rel` in the `Link`
/// headers (RFC 8288 §3: `<URI-Reference>` then `;`-separated parameters,
/// link-values separated by commas; `rel` may be a quoted, space-separated
/// list and only its first occurrence counts; relation types compare
/// case-insensitively). A header that is not such a list yields nothing
/// from the point it stops being one.
pub fn link_target(headers: &http::HeaderMap, rel: &str) -> Option<String> {
    headers
        .get_all(header::LINK)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| link_in(v, rel))
}

/// [`link_target`] for one header value.
fn link_in(value: &str, rel: &str) -> Option<String> {
    const WS: [char; 2] = [' ', '\t'];
    let mut rest = value;
    loop {
        rest = rest.trim_start_matches([' ', '\t', ',']);
        let inner = rest.strip_prefix('<')?;
        let end = inner.find('>')?;
        let target = &inner[..end];
        rest = &inner[end + 1..];
        let mut rels: Option<String> = None;
        while let Some(param) = rest.trim_start_matches(WS).strip_prefix(';') {
            rest = param.trim_start_matches(WS);
            let name_end = rest.find(['=', ';', ',', ' ', '\t']).unwrap_or(rest.len());
            let name = &rest[..name_end];
            rest = rest[name_end..].trim_start_matches(WS);
            let mut value = String::new();
            if let Some(v) = rest.strip_prefix('=') {
                rest = v.trim_start_matches(WS);
                if let Some(quoted) = rest.strip_prefix('"') {
                    // RFC 9110 §5.6.4 quoted-string, `\` escaping one character.
                    let mut chars = quoted.char_indices();
                    let mut closed = None;
                    while let Some((i, c)) = chars.next() {
                        match c {
                            '\\' => value.extend(chars.next().map(|(_, c)| c)),
                            '"' => {
                                closed = Some(i + 1);
                                break;
                            }
                            c => value.push(c),
                        }
                    }
                    rest = &quoted[closed?..];
                } else {
                    let end = rest.find([';', ',', ' ', '\t']).unwrap_or(rest.len());
                    value.push_str(&rest[..end]);
                    rest = &rest[end..];
                }
            }
            if rels.is_none() && name.eq_ignore_ascii_case("rel") {
                rels = Some(value);
            }
        }
        if rels.is_some_and(|r| {
            r.split_ascii_whitespace()
                .any(|r| r.eq_ignore_ascii_case(rel))
        }) {
            return Some(target.to_owned());
        }
        // The next link-value, if any, after a comma.
        rest = rest.trim_start_matches(WS);
        if !rest.is_empty() {
            rest = rest.strip_prefix(',')?;
        }
    }
}

/// The error and its causes (a TLS failure is several levels down).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// The system's roots and `extra`. Certificate checking is never turned
/// off: a provider whose certificate no root vouches for is unreachable.
pub fn tls_config(extra: &[CertificateDer<'static>]) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    for cert in extra {
        roots
            .add(cert.clone())
            .map_err(|e| format!("ca_file: not a usable CA certificate: {e}"))?;
    }
    if roots.is_empty() {
        return Err("no trusted root certificates (the system has none, and no ca_file)".into());
    }
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tls)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn next_of(values: &[&str]) -> Option<String> {
        let mut headers = http::HeaderMap::new();
        for v in values {
            headers.append(
                header::LINK,
                HeaderValue::from_str(v).expect("a header value"),
            );
        }
        link_target(&headers, "next")
    }

    #[test]
    fn githubs_link_header_gives_the_next_page() {
        assert_eq!(
            next_of(&[
                "<https://api.github.com/user/orgs?per_page=100&page=2>; rel=\"next\", \
                 <https://api.github.com/user/orgs?per_page=100&page=3>; rel=\"last\""
            ])
            .as_deref(),
            Some("https://api.github.com/user/orgs?per_page=100&page=2")
        );
        // On the last page there is a prev and a first, no next.
        assert_eq!(
            next_of(&["<https://a/x?page=1>; rel=\"prev\", <https://a/x?page=1>; rel=\"first\""]),
            None
        );
        assert_eq!(next_of(&[]), None);
    }

    #[test]
    fn link_headers_are_read_as_rfc_8288_says() {
        // Several lines, a token rel, a list of relation types, any case.
        assert_eq!(
            next_of(&["<https://a/1>; rel=prev", "<https://a/2>;REL=NEXT"]).as_deref(),
            Some("https://a/2")
        );
        assert_eq!(
            next_of(&["<https://a/2>; rel=\"last next\""]).as_deref(),
            Some("https://a/2")
        );
        // Commas and semicolons inside the URI or a quoted parameter do
        // not split anything; only the first rel counts.
        assert_eq!(
            next_of(&[
                "<https://a/x,y;z>; title=\"a \\\"b\\\", rel=next\"; rel=prev, <https://a/2>; rel=next"
            ])
            .as_deref(),
            Some("https://a/2")
        );
        assert_eq!(
            next_of(&["<https://a/1>; rel=prev; rel=next"]),
            None,
            "a second rel is ignored"
        );
    }

    #[test]
    fn a_malformed_link_header_gives_nothing_and_never_panics() {
        for bad in [
            "https://a/2; rel=next",
            "<https://a/2; rel=next",
            "<https://a/2>; rel=\"next",
            "<https://a/1>; rel=prev junk <https://a/2>; rel=next",
            "<>",
            ";;;,,,",
            "<a>;=;rel;rel=\"\\",
        ] {
            assert_eq!(next_of(&[bad]), None, "{bad}");
        }
        // A value that is not text is skipped.
        let mut headers = http::HeaderMap::new();
        headers.append(
            header::LINK,
            HeaderValue::from_bytes(b"<https://a/\xe9>; rel=next").expect("obs-text is allowed"),
        );
        assert_eq!(link_target(&headers, "next"), None);
        assert_eq!(next_of(&["<>; rel=next"]).as_deref(), Some(""));
    }
}

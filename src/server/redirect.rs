//! The plain HTTP listener: every request gets `308 Permanent Redirect` to the
//! same host, path and query on the HTTPS port (SPEC §3.1). Nothing is
//! proxied in clear text, and HSTS is not sent here (RFC 6797 §7.2).

use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};

use crate::body::Body;
use crate::pipeline::normalize::Refusal;
use crate::pipeline::rescue::rescue;

/// The redirect for `req`, given the port HTTPS is served on. The host is
/// the one validated host of the request (see [`crate::host`]): a `Host`
/// that is not a plain `host[:port]` gets `400`, so the `Location` can never
/// point elsewhere.
pub fn redirect<B>(req: &Request<B>, https_port: u16) -> Response<Body> {
    let host = match crate::pipeline::normalize::check_head(req.uri(), req.headers(), &[]) {
        Ok(Some(host)) => host,
        Ok(None) => return rescue(&Refusal::HostRequired.into()).to_response(),
        Err(refusal) => return rescue(&refusal.into()).to_response(),
    };
    let host = host.name();
    let path = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
    // `OPTIONS *` (or anything not an absolute path) would make the
    // Location name another host.
    if !path.starts_with('/') {
        return rescue(&Refusal::NotOriginForm.into()).to_response();
    }
    let location = if https_port == 443 {
        format!("https://{host}{path}")
    } else {
        format!("https://{host}:{https_port}{path}")
    };
    let Ok(location) = HeaderValue::from_str(&location) else {
        return rescue(&Refusal::InvalidTarget.into()).to_response();
    };
    let mut res = Response::new(Body::empty());
    *res.status_mut() = StatusCode::PERMANENT_REDIRECT;
    res.headers_mut().insert(header::LOCATION, location);
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(host: &str, target: &str) -> Request<()> {
        Request::builder()
            .uri(target)
            .header("host", host)
            .body(())
            .expect("a valid test request")
    }

    #[test]
    fn redirect_keeps_host_path_and_query_and_swaps_the_port() {
        let res = redirect(&req("example.com:8080", "/a/b?x=1"), 8443);
        assert_eq!(res.status(), StatusCode::PERMANENT_REDIRECT);
        assert_eq!(
            res.headers()[header::LOCATION],
            "https://example.com:8443/a/b?x=1"
        );
        let res = redirect(&req("example.com", "/"), 443);
        assert_eq!(res.headers()[header::LOCATION], "https://example.com/");
        let res = redirect(&req("[::1]:8080", "/x"), 8443);
        assert_eq!(res.headers()[header::LOCATION], "https://[::1]:8443/x");
    }

    #[test]
    fn hostile_host_is_refused() {
        for host in [
            "evil.com/@x",
            "x@evil.com",
            "evil.com\\x",
            "a b",
            "evil.com:1:2",
        ] {
            let res = redirect(&req(host, "/"), 8443);
            assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{host:?}");
        }
    }

    #[test]
    fn a_target_that_is_not_a_path_is_refused() {
        let res = redirect(&req("example.com", "*"), 8443);
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn redirect_uses_the_canonical_host() {
        let res = redirect(&req("Example.COM.:8080", "/x"), 8443);
        assert_eq!(
            res.headers()[header::LOCATION],
            "https://example.com:8443/x"
        );
    }
}

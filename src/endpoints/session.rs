//! Browser sign-in and sign-out (SPEC §9): the sign-in page (`GET
//! /auth/login`), its form or JSON (`POST /auth/login`), and `POST
//! /auth/logout` with the session cookie. The pipeline has already run the
//! CSRF check on every `POST` here, and counted the form in
//! `rate_limits.login`; the password check is the one `/login` uses (the
//! same lockout, the same time whatever fails).

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};

use super::login_page::{self, Page};
use super::tokens::{content_type, read_body};
use super::Cx;
use crate::auth::return_to::safe_return;
use crate::auth::sessions::{self, SignIn};
use crate::auth::tokens::{self as logic, BodyKind, TokenError};
use crate::body::{json_response, Body};

/// `GET`/`HEAD` draw the page; `POST` signs in.
pub async fn answer<B>(cx: &Cx<'_>, req: Request<B>, now: u64) -> Result<Response<Body>, TokenError>
where
    B: http_body::Body<Data = Bytes> + Unpin,
{
    if *req.method() != Method::POST {
        let rd = query_rd(req.uri().query());
        let rd = safe_return(&rd, &cx.sessions.allowed_redirect_hosts);
        return Ok(page(cx, &rd, false, StatusCode::OK));
    }
    let kind = logic::body_kind(content_type(&req))?;
    let body = read_body(cx, req).await?;
    let (login, rd) = logic::parse_session_login(kind, &body)?;
    let rd = safe_return(
        rd.as_deref().unwrap_or("/"),
        &cx.sessions.allowed_redirect_hosts,
    );
    let user = match logic::check_password(&cx.tokens, &login, now).await {
        Ok(user) => user,
        // The form gets the page again, with one message for every failure.
        Err(TokenError::InvalidCredentials) if kind == BodyKind::Form => {
            return Ok(page(cx, &rd, true, StatusCode::UNAUTHORIZED));
        }
        Err(e) => return Err(e),
    };
    let who = SignIn {
        user: &login.username,
        roles: &user.roles,
        email: None,
        method: sessions::PASSWORD,
    };
    let (cookie, session) = sessions::start(cx.tokens.store, cx.sessions, who, now).await?;
    let mut res = match kind {
        BodyKind::Form => see_other(&rd),
        BodyKind::Json => json_response(
            StatusCode::OK,
            &serde_json::json!({
                "sub": session.sub,
                "roles": user.roles,
                "expires_at": crate::clock::rfc3339(session.expires_at()),
            }),
        ),
    };
    let h = res.headers_mut();
    h.insert(
        header::SET_COOKIE,
        sessions::set_cookie(cx.sessions, &cookie),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}

/// `POST /auth/logout` with the session cookie: the session is deleted and
/// its family revoked; a form post or navigation goes on to `after_logout`,
/// a script gets `204`. A cookie whose session has already ended (idled
/// out, signed out in another tab) is signed out all the same: cleared.
pub async fn sign_out<B>(
    cx: &Cx<'_>,
    req: Request<B>,
    now: u64,
) -> Result<Response<Body>, TokenError> {
    let found = sessions::find(req.headers(), &cx.sessions.cookie);
    let ended = match found {
        sessions::Found::One(cookie) => sessions::end(cx.tokens.store, cookie, now).await?,
        sessions::Found::None | sessions::Found::Several => false,
    };
    if ended {
        cx.tokens
            .metrics
            .sessions_revoked
            .with_label_values(&["logout"])
            .inc();
    }
    let mut res = if is_form_or_navigation(req.headers()) {
        see_other(&cx.sessions.after_logout)
    } else {
        let mut res = Response::new(Body::empty());
        *res.status_mut() = StatusCode::NO_CONTENT;
        res
    };
    let h = res.headers_mut();
    h.insert(header::SET_COOKIE, sessions::clear_cookie(cx.sessions));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}

/// The sign-in page, with the generic error when `failed`.
fn page(cx: &Cx<'_>, rd: &str, failed: bool, status: StatusCode) -> Response<Body> {
    // One "Sign in with …" link per identity provider (SPEC §10), each
    // carrying `rd` on.
    let encoded: String = form_urlencoded::byte_serialize(rd.as_bytes()).collect();
    let links: Vec<(String, &str)> = cx.oidc.map_or(Vec::new(), |o| {
        o.list
            .iter()
            .map(|p| {
                let href = format!("{}?rd={encoded}", super::oidc_start_path(&p.config.id));
                (href, p.config.name.as_str())
            })
            .collect()
    });
    let providers: Vec<login_page::Provider<'_>> = links
        .iter()
        .map(|(href, label)| login_page::Provider { label, href })
        .collect();
    let html = login_page::render(&Page {
        app_name: &cx.sessions.app_name,
        action: cx.session_login,
        rd,
        error: failed,
        providers: &providers,
    });
    let origins: Vec<String> = cx
        .sessions
        .allowed_redirect_hosts
        .iter()
        .map(|h| format!("https://{h}"))
        .collect();
    let mut res =
        login_page::html_response(html, status, login_page::content_security_policy(&origins));
    let h = res.headers_mut();
    if status == StatusCode::UNAUTHORIZED {
        // As every 401 of gatehouse's (RFC 9110 §15.5.2, SPEC §5).
        h.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(r#"Bearer realm="gatehouse""#),
        );
    }
    res
}

/// `303 See Other` to a validated target.
fn see_other(location: &str) -> Response<Body> {
    let mut res = Response::new(Body::empty());
    *res.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(v) = HeaderValue::from_str(location) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    res
}

/// The `rd` of the page's query (the first one), not yet validated.
fn query_rd(query: Option<&str>) -> String {
    query
        .and_then(|q| {
            form_urlencoded::parse(q.as_bytes())
                .find(|(name, _)| name == "rd")
                .map(|(_, value)| value.into_owned())
        })
        .unwrap_or_else(|| "/".to_owned())
}

/// A browser posting a form or navigating (not a script's `fetch`).
fn is_form_or_navigation(headers: &HeaderMap) -> bool {
    let navigate = headers
        .get("sec-fetch-mode")
        .is_some_and(|m| m.as_bytes() == b"navigate");
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| {
            m.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    navigate || (headers.get("sec-fetch-mode").is_none() && form)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_rd_comes_from_the_query() {
        assert_eq!(query_rd(Some("rd=%2Fchat%3Fa%3D1&x=2")), "/chat?a=1");
        assert_eq!(query_rd(Some("x=1")), "/");
        assert_eq!(query_rd(None), "/");
    }
}

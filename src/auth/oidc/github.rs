//! GitHub sign-in (SPEC §10): OAuth2, then GitHub's REST API — there is no
//! `id_token`. `/user` names the user (its `login` is the `sub`),
//! `/user/emails` gives the primary address only if it is verified, and
//! with `allowed_orgs`, `/user/orgs` the memberships, page after page
//! (its `Link: rel="next"`, RFC 8288) until an allowed one shows up, up to
//! [`MAX_ORG_PAGES`]. A page link is followed only on `api_url`'s origin:
//! the access token never goes anywhere else. `api_url` points at GitHub
//! Enterprise (or the tests' fake GitHub).

use http::Uri;
use serde_json::Value;

use super::claims::{self, Identity};
use super::http::ProviderClient;
use super::Failed;
use crate::config::OidcProvider;

/// Organizations asked for per page: GitHub's maximum.
pub const ORGS_PER_PAGE: usize = 100;
/// The most pages of `/user/orgs` read (1000 organizations): a user in
/// none of `allowed_orgs` among those is denied.
pub const MAX_ORG_PAGES: usize = 10;

/// The identity behind `access_token`, or why it may not sign in.
pub async fn identity(
    client: &ProviderClient,
    p: &OidcProvider,
    api_url: &Uri,
    access_token: &str,
) -> Result<Identity, Failed> {
    let api = api_url.to_string();
    let api = api.trim_end_matches('/');
    let url = |path: &str| -> Result<Uri, Failed> {
        format!("{api}{path}")
            .parse()
            .map_err(|_| Failed::provider(format!("api_url{path}: not a URL")))
    };
    let user = get(client, &url("/user")?, "/user", access_token).await?.0;
    let login = user
        .get("login")
        .and_then(Value::as_str)
        .filter(|l| !l.is_empty() && crate::text::is_header_safe(l))
        .ok_or_else(|| Failed::invalid("GitHub /user has no usable login"))?
        .to_owned();
    if !p.allowed_users.is_empty() && !p.allowed_users.contains(&login.to_ascii_lowercase()) {
        return Err(Failed::denied(format!(
            "GitHub user {login:?} is not in allowed_users"
        )));
    }
    let emails = get(client, &url("/user/emails")?, "/user/emails", access_token)
        .await?
        .0;
    let email = emails.as_array().and_then(|list| {
        list.iter()
            .find(|e| e.get("primary").and_then(Value::as_bool) == Some(true))
            .filter(|e| e.get("verified").and_then(Value::as_bool) == Some(true))
            .and_then(|e| e.get("email").and_then(Value::as_str))
            .filter(|e| e.contains('@') && crate::text::is_header_safe(e))
            .map(str::to_owned)
    });
    claims::email_allowed(p, email.as_deref()).map_err(Failed::denied)?;
    if !p.allowed_orgs.is_empty() {
        let first = url(&format!("/user/orgs?per_page={ORGS_PER_PAGE}"))?;
        in_allowed_org(client, p, api_url, first, &login, access_token).await?;
    }
    Ok(Identity {
        user: login,
        roles: claims::roles(p, &[]),
        email,
    })
}

/// `Ok` when `login` is in one of `allowed_orgs`, else denied: pages of
/// `/user/orgs` are read from `first` on while none names one, up to
/// [`MAX_ORG_PAGES`]. A next page outside `api_url`'s origin is not
/// fetched, and the sign-in fails (the list cannot be read).
async fn in_allowed_org(
    client: &ProviderClient,
    p: &OidcProvider,
    api_url: &Uri,
    first: Uri,
    login: &str,
    access_token: &str,
) -> Result<(), Failed> {
    let mut page = first;
    for _ in 0..MAX_ORG_PAGES {
        let (orgs, next) = get(client, &page, "/user/orgs", access_token).await?;
        let list = orgs
            .as_array()
            .ok_or_else(|| Failed::provider("GitHub /user/orgs sent no list"))?;
        let member = list
            .iter()
            .filter_map(|o| o.get("login").and_then(Value::as_str))
            .any(|o| p.allowed_orgs.contains(&o.to_ascii_lowercase()));
        if member {
            return Ok(());
        }
        let Some(next) = next else {
            return Err(Failed::denied(format!(
                "GitHub user {login:?} is in none of allowed_orgs"
            )));
        };
        page = next_page(api_url, &next).ok_or_else(|| {
            Failed::provider(
                "GitHub /user/orgs: the next page's link is not on api_url's origin; not followed",
            )
        })?;
    }
    Err(Failed::denied(format!(
        "GitHub user {login:?} is in none of allowed_orgs on the first {MAX_ORG_PAGES} pages \
         of /user/orgs (no more are read)"
    )))
}

/// `GET url` with the access token: the JSON answer and the next page's
/// link, if any. `path` names the endpoint in errors.
async fn get(
    client: &ProviderClient,
    url: &Uri,
    path: &str,
    access_token: &str,
) -> Result<(Value, Option<String>), Failed> {
    let answer = client
        .get_json(url, Some(access_token))
        .await
        .map_err(Failed::provider)?;
    if !answer.status.is_success() {
        return Err(Failed::provider(format!(
            "GitHub {path} answered {}",
            answer.status
        )));
    }
    let json = answer
        .json
        .ok_or_else(|| Failed::provider(format!("GitHub {path} sent no JSON")))?;
    Ok((json, answer.next))
}

/// The URL of a `Link` target (absolute, or an absolute path resolved
/// against `api_url`) when it is on `api_url`'s origin (RFC 6454: same
/// scheme, host and port); `None` otherwise.
pub fn next_page(api_url: &Uri, link: &str) -> Option<Uri> {
    let uri: Uri = if link.starts_with('/') && !link.starts_with("//") {
        Uri::builder()
            .scheme(api_url.scheme()?.clone())
            .authority(api_url.authority()?.clone())
            .path_and_query(link)
            .build()
            .ok()?
    } else {
        link.parse().ok()?
    };
    same_origin(api_url, &uri).then_some(uri)
}

/// Whether two absolute URLs have the same origin, read by the one origin
/// parser (`crate::host`): a user-info part (`https://api@evil`) is no
/// origin at all.
fn same_origin(a: &Uri, b: &Uri) -> bool {
    let origin = |u: &Uri| -> Option<(String, String, u16)> {
        let text = format!("{}://{}", u.scheme_str()?, u.authority()?.as_str());
        let o = crate::host::parse_origin(text.as_bytes()).ok()?;
        let name = o.host.canonical(None).name().to_owned();
        Some((o.scheme.to_ascii_lowercase(), name, o.effective_port()?))
    };
    matches!((origin(a), origin(b)), (Some(x), Some(y)) if x == y)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn next(api: &str, link: &str) -> Option<String> {
        next_page(&api.parse().expect("api_url"), link).map(|u| u.to_string())
    }

    #[test]
    fn a_next_page_on_the_api_origin_is_followed() {
        let api = "https://api.github.com";
        assert_eq!(
            next(api, "https://api.github.com/user/orgs?per_page=100&page=2").as_deref(),
            Some("https://api.github.com/user/orgs?per_page=100&page=2")
        );
        // The host in any case, the default port spelt out.
        assert!(next(api, "https://API.GitHub.com:443/user/orgs?page=2").is_some());
        // GitHub Enterprise, and a link given as an absolute path.
        assert_eq!(
            next("https://ghe.example.com/api/v3", "/api/v3/user/orgs?page=2").as_deref(),
            Some("https://ghe.example.com/api/v3/user/orgs?page=2")
        );
        assert!(next(
            "https://127.0.0.1:8443/api",
            "https://127.0.0.1:8443/api/user/orgs"
        )
        .is_some());
    }

    #[test]
    fn a_next_page_anywhere_else_is_not_followed() {
        let api = "https://api.github.com";
        for link in [
            "https://evil.example/user/orgs?page=2",
            "https://api.github.com.evil.example/user/orgs",
            "http://api.github.com/user/orgs?page=2",
            "https://api.github.com:8443/user/orgs?page=2",
            "https://api.github.com@evil.example/user/orgs",
            "https://evil.example@api.github.com/user/orgs",
            "//evil.example/user/orgs",
            "ftp://api.github.com/user/orgs",
            "user/orgs?page=2",
            "?page=2",
            "",
            "https://",
        ] {
            assert_eq!(next(api, link), None, "{link}");
        }
        // Another spelling of the same machine is still another origin.
        assert_eq!(
            next(
                "https://127.0.0.1:8443/api",
                "https://localhost:8443/api/user/orgs"
            ),
            None
        );
    }
}

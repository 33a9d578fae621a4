//! GitHub sign-in (SPEC §10): OAuth2, then GitHub's REST API — there is no
//! `id_token`. `/user` names the user (its `login` is the `sub`),
//! `/user/emails` gives the primary address only if it is verified, and
//! with `allowed_orgs`, `/user/orgs` the memberships. `api_url` points at
//! GitHub Enterprise (or the tests' fake GitHub).

use http::Uri;
use serde_json::Value;

use super::claims::{self, Identity};
use super::http::ProviderClient;
use super::Failed;
use crate::config::OidcProvider;

/// The identity behind `access_token`, or why it may not sign in.
pub async fn identity(
    client: &ProviderClient,
    p: &OidcProvider,
    api_url: &Uri,
    access_token: &str,
) -> Result<Identity, Failed> {
    let api = api_url.to_string();
    let api = api.trim_end_matches('/');
    let get = |path: &'static str| {
        let url = format!("{api}{path}");
        async move {
            let uri: Uri = url
                .parse()
                .map_err(|_| Failed::provider(format!("{url}: not a URL")))?;
            let answer = client
                .get_json(&uri, Some(access_token))
                .await
                .map_err(Failed::provider)?;
            if !answer.status.is_success() {
                return Err(Failed::provider(format!(
                    "GitHub {path} answered {}",
                    answer.status
                )));
            }
            answer
                .json
                .ok_or_else(|| Failed::provider(format!("GitHub {path} sent no JSON")))
        }
    };
    let user = get("/user").await?;
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
    let emails = get("/user/emails").await?;
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
        let orgs = get("/user/orgs?per_page=100").await?;
        let member = orgs.as_array().is_some_and(|list| {
            list.iter()
                .filter_map(|o| o.get("login").and_then(Value::as_str))
                .any(|o| p.allowed_orgs.contains(&o.to_ascii_lowercase()))
        });
        if !member {
            return Err(Failed::denied(format!(
                "GitHub user {login:?} is in none of allowed_orgs"
            )));
        }
    }
    Ok(Identity {
        user: login,
        roles: claims::roles(p, &[]),
        email,
    })
}

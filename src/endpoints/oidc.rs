//! Sign-in through an identity provider (SPEC §10): `GET
//! /auth/oidc/{id}/start?rd=` sends the browser to the provider, and `GET
//! /auth/oidc/callback` takes it back, checks everything (the flow cookie,
//! the unspent `state`, RFC 9207 `iss`, then the exchange, token and rules
//! of `auth::oidc`) and starts a §9 session. Both count in
//! `rate_limits.login`. Any refusal is a 403 — a page for a navigation, the
//! JSON otherwise — never a session, and is logged with its reason and
//! counted in `gatehouse_oidc_logins_total`.

use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};

use super::login_page;
use super::Cx;
use crate::auth::oidc::{self, Failed, Flow, Outcome};
use crate::auth::return_to::safe_return;
use crate::auth::sessions::{self, SignIn};
use crate::body::Body;
use crate::error::Problem;
use crate::store::StoreError;

/// Why a start or callback was not answered with a redirect.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// No provider has that id: 404.
    #[error("no such identity provider")]
    UnknownProvider,
    /// The provider has not been discovered yet: 503 `provider_unavailable`.
    #[error("identity provider not discovered yet")]
    Unavailable,
    /// The sign-in was refused: 403.
    #[error("sign-in refused")]
    Refused(Box<Refused>),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A refused sign-in, as the browser is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// A navigation gets the page, anything else the JSON.
    pub navigation: bool,
    /// `Set-Cookie` clearing the flow cookie, when it is known.
    pub clear_cookie: Option<HeaderValue>,
    /// The refusal page: the app's name and the sign-in page.
    pub app_name: String,
    pub retry: String,
}

impl Refused {
    /// What the rescue answers; `problem` is the JSON's.
    pub fn response(&self, problem: Problem) -> Response<Body> {
        let mut res = if self.navigation {
            login_page::html_response(
                login_page::render_refused(&self.app_name, &self.retry),
                problem.status(),
                login_page::content_security_policy(&[]),
            )
        } else {
            problem.to_response()
        };
        let h = res.headers_mut();
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(clear) = &self.clear_cookie {
            h.append(header::SET_COOKIE, clear.clone());
        }
        res
    }
}

/// `GET /auth/oidc/{id}/start?rd=`: a new flow, and `302` to the provider.
pub async fn start<B>(cx: &Cx<'_>, req: Request<B>, now: u64) -> Result<Response<Body>, Error> {
    let providers = cx.oidc.ok_or(Error::UnknownProvider)?;
    // `/auth/oidc/{id}/start`, normalized: the id is the third segment.
    let id = cx.path.split('/').nth(3).unwrap_or_default();
    let provider = providers.find(id).ok_or(Error::UnknownProvider)?;
    let Some(metadata) = provider.remote.metadata() else {
        return Err(Error::Unavailable);
    };
    let rd = query_param(req.uri().query(), "rd").unwrap_or_else(|| "/".to_owned());
    let rd = safe_return(&rd, &cx.sessions.allowed_redirect_hosts);
    let redirect_uri = match &providers.redirect_url {
        Some(url) => url.clone(),
        None => format!(
            "https://{}{}",
            cx.host.unwrap_or("localhost"),
            providers.callback
        ),
    };
    let started = oidc::start(id, rd, redirect_uri);
    let json = serde_json::to_string(&started.flow)
        .map_err(|e| StoreError::Broken(format!("a flow: {e}")))?;
    cx.tokens
        .store
        .put_flow(&oidc::flow_key(&started.state), &json, now + oidc::FLOW_TTL)
        .await?;
    let location = oidc::authorization_url(provider, &metadata, &started);
    let mut res = Response::new(Body::empty());
    *res.status_mut() = StatusCode::FOUND;
    let h = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&location) {
        h.insert(header::LOCATION, v);
    }
    let name = oidc::flow_cookie_name(&cx.sessions.cookie, &started.state);
    h.insert(header::SET_COOKIE, flow_cookie(&name, &started.cookie));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}

/// `GET /auth/oidc/callback?code&state[&iss]` (or `?error&state`).
pub async fn callback<B>(cx: &Cx<'_>, req: Request<B>, now: u64) -> Result<Response<Body>, Error> {
    let navigation = crate::auth::sessions::is_navigation(req.headers());
    let mut refused = Refused {
        navigation,
        clear_cookie: None,
        app_name: cx.sessions.app_name.clone(),
        retry: match &cx.sessions.login_page {
            crate::config::LoginPage::Builtin => cx.session_login.to_owned(),
            crate::config::LoginPage::App(path) => path.clone(),
        },
    };
    let mut provider_label = "unknown".to_owned();
    let result = signed_in(cx, &req, now, &mut refused, &mut provider_label).await;
    let metric = |outcome: Outcome| {
        cx.tokens
            .metrics
            .oidc_logins
            .with_label_values(&[provider_label.as_str(), outcome.as_str()])
            .inc();
    };
    match result {
        Ok(res) => {
            metric(Outcome::Success);
            Ok(res)
        }
        Err(Stop::Failed(failed)) => {
            metric(failed.outcome);
            tracing::warn!(
                provider = %provider_label,
                result = failed.outcome.as_str(),
                reason = %failed.reason,
                "sign-in through an identity provider refused"
            );
            Err(Error::Refused(Box::new(refused)))
        }
        Err(Stop::Error(e)) => Err(e),
    }
}

/// How a callback stops short of a session.
enum Stop {
    Failed(Failed),
    Error(Error),
}

impl From<Failed> for Stop {
    fn from(f: Failed) -> Self {
        Stop::Failed(f)
    }
}

impl From<StoreError> for Stop {
    fn from(e: StoreError) -> Self {
        Stop::Error(Error::Store(e))
    }
}

async fn signed_in<B>(
    cx: &Cx<'_>,
    req: &Request<B>,
    now: u64,
    refused: &mut Refused,
    provider_label: &mut String,
) -> Result<Response<Body>, Stop> {
    let providers = cx.oidc.ok_or(Stop::Error(Error::UnknownProvider))?;
    let query = Query::parse(req.uri().query())
        .ok_or_else(|| Failed::invalid("a parameter given twice"))?;
    let state = query
        .state
        .filter(|s| oidc::well_formed(s))
        .ok_or_else(|| Failed::invalid("no well-formed state"))?;
    let name = oidc::flow_cookie_name(&cx.sessions.cookie, &state);
    refused.clear_cookie = Some(clear_flow_cookie(&name));
    // Without its cookie the flow is not even looked up: whoever has the
    // callback URL alone cannot spend it.
    let sessions::Found::One(bound) = sessions::find(req.headers(), &name) else {
        return Err(Failed::invalid("no flow cookie (or several) for this state").into());
    };
    let Some(json) = cx
        .tokens
        .store
        .take_flow(&oidc::flow_key(&state), now)
        .await?
    else {
        return Err(Failed::invalid("unknown, expired or spent state").into());
    };
    let flow: Flow = serde_json::from_str(&json)
        .map_err(|_| Failed::invalid("a stored flow could not be read"))?;
    if !oidc::bound_to(&flow, bound) {
        return Err(Failed::invalid("the flow cookie is not this flow's").into());
    }
    let provider = providers
        .find(&flow.provider)
        .ok_or_else(|| Failed::invalid("the flow's provider is no longer configured"))?;
    provider_label.clone_from(&provider.config.id);
    if let Some(error) = &query.error {
        return Err(Failed::provider(format!(
            "the provider answered error={:?}",
            oidc::safe_code(error)
        ))
        .into());
    }
    let metadata = provider
        .remote
        .metadata()
        .ok_or(Stop::Error(Error::Unavailable))?;
    if let crate::config::ProviderKind::Oidc { issuer } = &provider.config.kind {
        // RFC 9207 §2.4: `iss`, when sent (and it must be when the
        // provider says it sends it), is exactly the issuer.
        match &query.iss {
            Some(iss) if iss != issuer => {
                return Err(
                    Failed::invalid("the iss parameter is not the provider's issuer").into(),
                )
            }
            None if metadata.iss_required => {
                return Err(
                    Failed::invalid("no iss parameter, which the provider always sends").into(),
                )
            }
            _ => {}
        }
    }
    let code = query
        .code
        .filter(|c| !c.is_empty())
        .ok_or_else(|| Failed::invalid("no code"))?;
    let leeway = cx.leeway;
    let identity = oidc::finish(provider, &metadata, &flow, &code, leeway, now).await?;
    let who = SignIn {
        user: &identity.user,
        roles: &identity.roles,
        email: identity.email.as_deref(),
        method: &provider.config.id,
    };
    let (cookie, _) = sessions::start(cx.tokens.store, cx.sessions, who, now).await?;
    tracing::info!(
        provider = %provider.config.id,
        user = %identity.user,
        "signed in through an identity provider"
    );
    let mut res = Response::new(Body::empty());
    *res.status_mut() = StatusCode::SEE_OTHER;
    let h = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&flow.rd) {
        h.insert(header::LOCATION, v);
    }
    h.append(
        header::SET_COOKIE,
        sessions::set_cookie(cx.sessions, &cookie),
    );
    h.append(header::SET_COOKIE, clear_flow_cookie(&name));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}

/// The callback's parameters; `None` when one is given twice (RFC 6749
/// §3.1: "MUST NOT be included more than once").
#[derive(Default)]
struct Query {
    code: Option<String>,
    state: Option<String>,
    iss: Option<String>,
    error: Option<String>,
}

impl Query {
    fn parse(query: Option<&str>) -> Option<Query> {
        let mut q = Query::default();
        for (name, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            let slot = match name.as_ref() {
                "code" => &mut q.code,
                "state" => &mut q.state,
                "iss" => &mut q.iss,
                "error" => &mut q.error,
                _ => continue,
            };
            if slot.replace(value.into_owned()).is_some() {
                return None;
            }
        }
        Some(q)
    }
}

/// The first `name` of a query.
fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    form_urlencoded::parse(query?.as_bytes())
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.into_owned())
}

/// The flow cookie: `__Host-` (this host only, HTTPS, every path),
/// `HttpOnly`, `SameSite=Lax` whatever the session's setting (the provider
/// sends the browser back with a cross-site top-level GET, which `Strict`
/// would strip), gone after the flow's 10 minutes.
fn flow_cookie(name: &str, value: &str) -> HeaderValue {
    let text = format!(
        "{name}={value}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age={}",
        oidc::FLOW_TTL
    );
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn clear_flow_cookie(name: &str) -> HeaderValue {
    let text = format!("{name}=; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=0");
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_callback_parameter_given_twice_is_refused() {
        assert!(Query::parse(Some("code=a&state=b&code=c")).is_none());
        assert!(Query::parse(Some("state=a&iss=x&iss=y")).is_none());
        let q = Query::parse(Some("code=a&state=b&iss=https%3A%2F%2Fi&x=1&x=2")).unwrap();
        assert_eq!(q.code.as_deref(), Some("a"));
        assert_eq!(q.iss.as_deref(), Some("https://i"));
    }

    #[test]
    fn the_flow_cookie_is_host_bound_lax_and_short_lived() {
        assert_eq!(
            flow_cookie("__Host-g-oidc-1", "v"),
            "__Host-g-oidc-1=v; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=600"
        );
        assert!(clear_flow_cookie("__Host-g-oidc-1")
            .to_str()
            .unwrap()
            .ends_with("Max-Age=0"));
    }
}

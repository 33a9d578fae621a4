//! `auth.oidc:`: sign-in with identity providers (SPEC §10).
//!
//! Rules: `callback` is a normalized absolute path; `redirect_url` is an
//! absolute `https` URL whose path is `callback`; providers need
//! `auth.sessions.enabled`. Each provider: `id` is `[a-z0-9-]+`, unique,
//! and not `password` (the method of password sessions); `type` is `oidc`
//! or `github`; an `oidc` provider has an `https` `issuer` without query or
//! fragment and `openid` among its `scopes`, a `github` one has no `issuer`
//! and only `https` `auth_url`/`token_url`/`api_url`; `client_id` is not
//! empty; exactly one of `client_secret` or `client_secret_file` (a
//! readable, non-empty file); `scopes` are RFC 6749 scope tokens;
//! `token_auth` is `client_secret_basic` or `client_secret_post`; `ca_file`
//! is a readable PEM file holding at least one certificate; email rules
//! and `allowed_orgs`/`allowed_users` are not empty strings; the claim
//! rules (`username_claim`, `roles_claim`, …) do not apply to `github`
//! (whose user is the GitHub login); roles are header-safe.

use http::Uri;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use super::sessions::local_path;
use super::{roles, Ctx};
use crate::config::file::{self, OneOrMany};
use crate::config::model::{Oidc, OidcProvider, ProviderKind, TokenAuth};
use crate::config::values::{Secret, Text};
use crate::config::ConfigError;

const GITHUB_AUTH: &str = "https://github.com/login/oauth/authorize";
const GITHUB_TOKEN: &str = "https://github.com/login/oauth/access_token";
const GITHUB_API: &str = "https://api.github.com";

pub(super) fn oidc(cx: &Ctx, raw: &file::Oidc, sessions: bool) -> Result<Oidc, ConfigError> {
    let callback = local_path(cx, "auth.oidc.callback", raw.callback.as_str().trim())?;
    let redirect_url = match &raw.redirect_url {
        None => None,
        Some(url) => Some(redirect_url(cx, url.as_str().trim(), &callback)?),
    };
    if !raw.providers.is_empty() && !sessions {
        return Err(cx.err(
            "auth.oidc.providers",
            "sign-in with a provider makes a browser session: set auth.sessions.enabled: true",
        ));
    }
    let mut providers: Vec<OidcProvider> = Vec::with_capacity(raw.providers.len());
    for (i, p) in raw.providers.iter().enumerate() {
        let provider = provider(cx, &format!("auth.oidc.providers[{i}]"), p)?;
        if providers.iter().any(|q| q.id == provider.id) {
            return Err(cx.err(
                format!("auth.oidc.providers[{i}].id"),
                format!("{:?} is used by another provider", provider.id),
            ));
        }
        providers.push(provider);
    }
    Ok(Oidc {
        callback,
        redirect_url,
        providers,
    })
}

fn redirect_url(cx: &Ctx, url: &str, callback: &str) -> Result<String, ConfigError> {
    let key = "auth.oidc.redirect_url";
    let uri: Uri = url
        .parse()
        .map_err(|_| cx.err(key, format!("{url:?}: not a URL")))?;
    if uri.scheme_str() != Some("https") || uri.host().is_none() {
        return Err(cx.err(key, format!("{url:?}: must be an https:// URL")));
    }
    if uri.path() != callback || uri.query().is_some() {
        return Err(cx.err(
            key,
            format!("{url:?}: its path must be auth.oidc.callback ({callback}), without a query"),
        ));
    }
    Ok(url.to_owned())
}

fn provider(cx: &Ctx, key: &str, p: &file::OidcProvider) -> Result<OidcProvider, ConfigError> {
    let id = p.id.as_str().trim();
    let id_ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !id_ok {
        return Err(cx.err(
            format!("{key}.id"),
            format!("{id:?}: expected 1 to 64 of a-z, 0-9 and -"),
        ));
    }
    if id == "password" {
        return Err(cx.err(
            format!("{key}.id"),
            "\"password\" names sign-in with the users file: pick another id",
        ));
    }
    let github = match p.kind.as_str().trim() {
        "oidc" => false,
        "github" => true,
        other => {
            return Err(cx.err(
                format!("{key}.type"),
                format!("{other:?}: expected oidc or github"),
            ))
        }
    };
    let kind = if github {
        if p.issuer.is_some() {
            return Err(cx.err(
                format!("{key}.issuer"),
                "a github provider has no issuer (auth_url, token_url and api_url say where it is)",
            ));
        }
        let url = |name: &str, v: &Option<Text>, default: &str| {
            https_url(
                cx,
                &format!("{key}.{name}"),
                v.as_ref().map_or(default, Text::as_str),
            )
        };
        ProviderKind::Github {
            auth_url: url("auth_url", &p.auth_url, GITHUB_AUTH)?,
            token_url: url("token_url", &p.token_url, GITHUB_TOKEN)?,
            api_url: url("api_url", &p.api_url, GITHUB_API)?,
        }
    } else {
        for (name, v) in [
            ("auth_url", &p.auth_url),
            ("token_url", &p.token_url),
            ("api_url", &p.api_url),
        ] {
            if v.is_some() {
                return Err(cx.err(
                    format!("{key}.{name}"),
                    "only for type: github (an oidc provider is found by discovery)",
                ));
            }
        }
        if !p.allowed_orgs.is_empty() || !p.allowed_users.is_empty() {
            let name = if p.allowed_orgs.is_empty() {
                "allowed_users"
            } else {
                "allowed_orgs"
            };
            return Err(cx.err(
                format!("{key}.{name}"),
                "only for type: github (use required_claims or allowed_emails)",
            ));
        }
        let Some(issuer) = &p.issuer else {
            return Err(cx.err(format!("{key}.issuer"), "required for type: oidc"));
        };
        let issuer = issuer.as_str().trim();
        let uri = https_url(cx, &format!("{key}.issuer"), issuer)?;
        if uri.query().is_some() {
            return Err(cx.err(format!("{key}.issuer"), "must not have a query"));
        }
        ProviderKind::Oidc {
            issuer: issuer.to_owned(),
        }
    };
    if github {
        for (name, set) in [
            ("username_claim", p.username_claim.is_some()),
            ("roles_claim", p.roles_claim.is_some()),
            ("required_claims", !p.required_claims.is_empty()),
            ("role_map", !p.role_map.is_empty()),
        ] {
            if set {
                return Err(cx.err(
                    format!("{key}.{name}"),
                    "does not apply to type: github (its user is the GitHub login)",
                ));
            }
        }
    }
    let client_id = p.client_id.as_ref().map_or("", |c| c.as_str().trim());
    if client_id.is_empty() {
        return Err(cx.err(format!("{key}.client_id"), "required"));
    }
    let client_secret = match (&p.client_secret, &p.client_secret_file) {
        (Some(s), None) if !s.expose().is_empty() => s.clone(),
        (Some(_), None) => return Err(cx.err(format!("{key}.client_secret"), "is empty")),
        (None, Some(file)) => {
            let path = cx.path(file);
            let text = std::fs::read_to_string(&path).map_err(|e| {
                cx.err(
                    format!("{key}.client_secret_file"),
                    format!("{}: {e}", path.display()),
                )
            })?;
            let text = text.trim();
            if text.is_empty() {
                return Err(cx.err(
                    format!("{key}.client_secret_file"),
                    format!("{}: is empty", path.display()),
                ));
            }
            Secret::new(text.to_owned())
        }
        _ => {
            return Err(cx.err(
                key,
                "needs exactly one of client_secret or client_secret_file",
            ))
        }
    };
    let scopes: Vec<String> = match &p.scopes {
        Some(list) => list.iter().map(|s| s.as_str().trim().to_owned()).collect(),
        None if github && p.allowed_orgs.is_empty() => {
            vec!["read:user".into(), "user:email".into()]
        }
        None if github => vec!["read:user".into(), "user:email".into(), "read:org".into()],
        None => vec!["openid".into(), "email".into(), "profile".into()],
    };
    for (i, s) in scopes.iter().enumerate() {
        // RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
        let ok = !s.is_empty()
            && s.bytes()
                .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b));
        if !ok {
            return Err(cx.err(
                format!("{key}.scopes[{i}]"),
                format!("{s:?}: not a scope token (RFC 6749 §3.3)"),
            ));
        }
    }
    if !github && !scopes.iter().any(|s| s == "openid") {
        return Err(cx.err(
            format!("{key}.scopes"),
            "must include openid (an oidc provider signs in with an id_token)",
        ));
    }
    let token_auth = match p.token_auth.as_str().trim() {
        "client_secret_basic" => TokenAuth::Basic,
        "client_secret_post" => TokenAuth::Post,
        other => {
            return Err(cx.err(
                format!("{key}.token_auth"),
                format!("{other:?}: expected client_secret_basic or client_secret_post"),
            ))
        }
    };
    let (ca_file, ca_certs) = match &p.ca_file {
        None => (None, Vec::new()),
        Some(file) => {
            let path = cx.path(file);
            let certs = ca_certs(&path).map_err(|why| cx.err(format!("{key}.ca_file"), why))?;
            (Some(path), certs)
        }
    };
    let lower = |name: &str, items: &[Text]| -> Result<Vec<String>, ConfigError> {
        items
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let v = t.as_str().trim().to_ascii_lowercase();
                if v.is_empty() || v.contains(char::is_whitespace) {
                    Err(cx.err(
                        format!("{key}.{name}[{i}]"),
                        "must not be empty or hold spaces",
                    ))
                } else {
                    Ok(v)
                }
            })
            .collect()
    };
    let allowed_email_domains = lower("allowed_email_domains", &p.allowed_email_domains)?
        .into_iter()
        .map(|d| d.trim_start_matches('@').to_owned())
        .collect();
    let allowed_emails = lower("allowed_emails", &p.allowed_emails)?;
    let allowed_orgs = lower("allowed_orgs", &p.allowed_orgs)?;
    let allowed_users = lower("allowed_users", &p.allowed_users)?;
    let required_claims = p
        .required_claims
        .iter()
        .map(|(claim, values)| {
            let values = match values {
                OneOrMany::One(v) => vec![v.0.clone()],
                OneOrMany::Many(vs) => vs.iter().map(|v| v.0.clone()).collect(),
            };
            if claim.trim().is_empty() || values.is_empty() {
                return Err(cx.err(
                    format!("{key}.required_claims.{claim}"),
                    "needs a claim name and at least one accepted value",
                ));
            }
            Ok((claim.trim().to_owned(), values))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let role_map: Vec<(String, String)> = p
        .role_map
        .iter()
        .map(|(from, to)| (from.clone(), to.as_str().trim().to_owned()))
        .collect();
    let default_roles = roles(&p.default_roles);
    let all_roles = role_map
        .iter()
        .map(|(from, to)| (format!("{key}.role_map.{from}"), to))
        .chain(
            default_roles
                .iter()
                .enumerate()
                .map(|(i, r)| (format!("{key}.default_roles[{i}]"), r)),
        );
    for (k, role) in all_roles {
        if !crate::text::is_header_safe(role) {
            return Err(cx.err(
                k,
                format!("{role:?}: a role is sent in a header: no comma, control character or surrounding space"),
            ));
        }
    }
    let text = |v: &Option<Text>, default: &str| {
        v.as_ref()
            .map_or(default.to_owned(), |t| t.as_str().trim().to_owned())
    };
    let username_claim = text(&p.username_claim, "email");
    let roles_claim = text(&p.roles_claim, "groups");
    for (name, v) in [
        ("username_claim", &username_claim),
        ("roles_claim", &roles_claim),
    ] {
        if v.is_empty() || v.split('.').any(str::is_empty) {
            return Err(cx.err(
                format!("{key}.{name}"),
                "expected a claim name, or a dotted path such as realm_access.roles",
            ));
        }
    }
    let name = match &p.name {
        Some(n) if !n.as_str().trim().is_empty() && !n.as_str().chars().any(char::is_control) => {
            n.as_str().trim().to_owned()
        }
        Some(_) => return Err(cx.err(format!("{key}.name"), "must not be empty")),
        None => default_name(id, github),
    };
    Ok(OidcProvider {
        id: id.to_owned(),
        name,
        kind,
        client_id: client_id.to_owned(),
        client_secret,
        scopes,
        token_auth,
        ca_file,
        ca_certs,
        username_claim,
        allowed_email_domains,
        allowed_emails,
        required_claims,
        roles_claim: roles_claim.split('.').map(str::to_owned).collect(),
        role_map,
        default_roles,
        allowed_orgs,
        allowed_users,
    })
}

/// An absolute `https` URL with a host.
fn https_url(cx: &Ctx, key: &str, url: &str) -> Result<Uri, ConfigError> {
    let uri: Uri = url
        .parse()
        .map_err(|_| cx.err(key, format!("{url:?}: not a URL")))?;
    if uri.scheme_str() != Some("https") || uri.host().is_none() {
        return Err(cx.err(key, format!("{url:?}: must be an https:// URL")));
    }
    Ok(uri)
}

/// The certificates of a PEM file; at least one.
fn ca_certs(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: not PEM: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: holds no PEM certificate", path.display()));
    }
    Ok(certs)
}

/// The button label for well-known ids.
fn default_name(id: &str, github: bool) -> String {
    match id {
        "google" => "Google".into(),
        "github" => "GitHub".into(),
        "gitlab" => "GitLab".into(),
        "microsoft" | "entra" | "azure" => "Microsoft".into(),
        "okta" => "Okta".into(),
        "keycloak" => "Keycloak".into(),
        "auth0" => "Auth0".into(),
        _ if github => "GitHub".into(),
        _ => id.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{assert_errors, assert_valid, JWT_SECRET};
    use crate::config::{ProviderKind, TokenAuth};

    /// Sessions on, and `providers` (indented four spaces) under `auth.oidc`.
    fn oidc(rest: &str) -> String {
        format!(
            "auth:\n  jwt:\n    secret: {JWT_SECRET}\n  sessions:\n    enabled: true\n  oidc:\n{rest}"
        )
    }

    /// One provider: `id: corp`, an https issuer, a client, then `more`.
    fn one(more: &str) -> String {
        oidc(&format!(
            "    providers:\n      - id: corp\n        issuer: https://idp.example.com\n        client_id: gh\n        client_secret: s3cret\n{more}"
        ))
    }

    fn github(more: &str) -> String {
        oidc(&format!(
            "    providers:\n      - id: github\n        type: github\n        client_id: gh\n        client_secret: s3cret\n{more}"
        ))
    }

    const P: &str = "auth.oidc.providers[0]";

    #[test]
    fn every_oidc_rule_names_its_key() {
        let pem = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(pem.path(), "not a certificate\n").expect("write");
        let not_pem = pem.path().display().to_string();
        let rows: Vec<(String, String, &str)> = vec![
            (
                oidc("    callback: auth/cb\n"),
                "auth.oidc.callback".into(),
                "normalized absolute path",
            ),
            (
                oidc("    redirect_url: http://chat.example.com/auth/oidc/callback\n"),
                "auth.oidc.redirect_url".into(),
                "https://",
            ),
            (
                oidc("    redirect_url: https://chat.example.com/other\n"),
                "auth.oidc.redirect_url".into(),
                "auth.oidc.callback",
            ),
            (
                format!("auth:\n  jwt:\n    secret: {JWT_SECRET}\n  oidc:\n    providers:\n      - id: corp\n        issuer: https://idp.example.com\n        client_id: a\n        client_secret: b\n"),
                "auth.oidc.providers".into(),
                "auth.sessions.enabled",
            ),
            (
                oidc("    providers:\n      - id: Corp\n        issuer: https://i.example\n        client_id: a\n        client_secret: b\n"),
                format!("{P}.id"),
                "a-z, 0-9 and -",
            ),
            (
                oidc("    providers:\n      - id: \"corp idp\"\n        issuer: https://i.example\n        client_id: a\n        client_secret: b\n"),
                format!("{P}.id"),
                "a-z, 0-9 and -",
            ),
            (
                oidc("    providers:\n      - id: password\n        issuer: https://i.example\n        client_id: a\n        client_secret: b\n"),
                format!("{P}.id"),
                "users file",
            ),
            (
                oidc("    providers:\n      - id: a\n        issuer: https://i.example\n        client_id: a\n        client_secret: b\n      - id: a\n        issuer: https://j.example\n        client_id: a\n        client_secret: b\n"),
                "auth.oidc.providers[1].id".into(),
                "another provider",
            ),
            (one("        type: saml\n"), format!("{P}.type"), "oidc or github"),
            (
                oidc("    providers:\n      - id: corp\n        client_id: a\n        client_secret: b\n"),
                format!("{P}.issuer"),
                "required",
            ),
            (
                oidc("    providers:\n      - id: corp\n        issuer: http://idp.example.com\n        client_id: a\n        client_secret: b\n"),
                format!("{P}.issuer"),
                "https://",
            ),
            (
                oidc("    providers:\n      - id: corp\n        issuer: https://idp.example.com\n        client_secret: b\n"),
                format!("{P}.client_id"),
                "required",
            ),
            (
                oidc("    providers:\n      - id: corp\n        issuer: https://idp.example.com\n        client_id: a\n"),
                P.into(),
                "exactly one of client_secret or client_secret_file",
            ),
            (
                one("        client_secret_file: secret.txt\n"),
                P.into(),
                "exactly one of client_secret or client_secret_file",
            ),
            (
                oidc("    providers:\n      - id: corp\n        issuer: https://idp.example.com\n        client_id: a\n        client_secret_file: /nonexistent/secret\n"),
                format!("{P}.client_secret_file"),
                "/nonexistent/secret",
            ),
            (one("        scopes: [email]\n"), format!("{P}.scopes"), "openid"),
            (
                one("        scopes: [openid, \"a b\"]\n"),
                format!("{P}.scopes[1]"),
                "scope token",
            ),
            (
                one("        token_auth: private_key_jwt\n"),
                format!("{P}.token_auth"),
                "client_secret_basic or client_secret_post",
            ),
            (
                one("        ca_file: /nonexistent/ca.pem\n"),
                format!("{P}.ca_file"),
                "/nonexistent/ca.pem",
            ),
            (
                one(&format!("        ca_file: {not_pem}\n")),
                format!("{P}.ca_file"),
                "no PEM certificate",
            ),
            (
                one("        allowed_email_domains: [\"\"]\n"),
                format!("{P}.allowed_email_domains[0]"),
                "empty",
            ),
            (
                one("        allowed_emails: [ok@example.com, \"a b@example.com\"]\n"),
                format!("{P}.allowed_emails[1]"),
                "spaces",
            ),
            (
                one("        role_map:\n          admins: \"admin,root\"\n"),
                format!("{P}.role_map.admins"),
                "header",
            ),
            (
                one("        default_roles: [\" user\"]\n"),
                format!("{P}.default_roles[0]"),
                "header",
            ),
            (
                one("        roles_claim: realm_access..roles\n"),
                format!("{P}.roles_claim"),
                "dotted path",
            ),
            (
                one("        allowed_orgs: [acme]\n"),
                format!("{P}.allowed_orgs"),
                "only for type: github",
            ),
            (
                one("        api_url: https://api.example.com\n"),
                format!("{P}.api_url"),
                "only for type: github",
            ),
            (
                github("        issuer: https://github.com\n"),
                format!("{P}.issuer"),
                "no issuer",
            ),
            (
                github("        api_url: http://ghe.example.com/api/v3\n"),
                format!("{P}.api_url"),
                "https://",
            ),
            (
                github("        username_claim: email\n"),
                format!("{P}.username_claim"),
                "does not apply to type: github",
            ),
            (
                github("        required_claims:\n          hd: example.com\n"),
                format!("{P}.required_claims"),
                "does not apply to type: github",
            ),
            (one("        secret: x\n"), format!("{P}.secret"), "unknown field"),
        ];
        let rows: Vec<(String, &str, &str)> = rows
            .iter()
            .map(|(s, k, m)| (s.clone(), k.as_str(), *m))
            .collect();
        assert_errors(&rows);
    }

    #[test]
    fn valid_providers_take_their_defaults() {
        let secret = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(secret.path(), "  from-a-file\n").expect("write");
        let configs = assert_valid(&[
            format!("auth:\n  jwt:\n    secret: {JWT_SECRET}\n"),
            one(""),
            oidc(&format!(
                "    callback: /sso/cb\n    redirect_url: https://chat.example.com/sso/cb\n    providers:\n      - id: google\n        issuer: https://accounts.google.com\n        client_id: a\n        client_secret_file: {}\n        token_auth: client_secret_post\n        scopes: [openid, email]\n        allowed_email_domains: [\"@Example.COM\"]\n        required_claims:\n          hd: example.com\n          groups: [staff, admins]\n          email_verified: true\n        roles_claim: realm_access.roles\n        role_map:\n          admins: admin\n        default_roles: [user]\n      - id: gh\n        type: github\n        client_id: b\n        client_secret: c\n        allowed_orgs: [Acme]\n        api_url: https://ghe.example.com/api/v3\n",
                secret.path().display()
            )),
        ]);
        let off = &configs[0].auth.oidc;
        assert_eq!(off.callback, "/auth/oidc/callback");
        assert!(off.redirect_url.is_none() && off.providers.is_empty());

        let p = &configs[1].auth.oidc.providers[0];
        assert_eq!(p.name, "corp");
        assert_eq!(
            p.kind,
            ProviderKind::Oidc {
                issuer: "https://idp.example.com".into()
            }
        );
        assert_eq!(p.scopes, ["openid", "email", "profile"]);
        assert_eq!(p.token_auth, TokenAuth::Basic);
        assert_eq!(p.username_claim, "email");
        assert_eq!(p.roles_claim, ["groups"]);
        assert!(p.default_roles.is_empty() && p.ca_certs.is_empty());

        let o = &configs[2].auth.oidc;
        assert_eq!(o.callback, "/sso/cb");
        let g = &o.providers[0];
        assert_eq!(g.name, "Google");
        assert_eq!(g.client_secret.expose(), "from-a-file");
        assert_eq!(g.token_auth, TokenAuth::Post);
        assert_eq!(g.allowed_email_domains, ["example.com"]);
        assert_eq!(
            g.required_claims,
            [
                ("hd".to_owned(), vec!["example.com".to_owned()]),
                ("groups".to_owned(), vec!["staff".into(), "admins".into()]),
                ("email_verified".to_owned(), vec!["true".to_owned()]),
            ]
        );
        assert_eq!(g.roles_claim, ["realm_access", "roles"]);
        assert_eq!(g.role_map, [("admins".to_owned(), "admin".to_owned())]);
        let h = &o.providers[1];
        assert_eq!(h.name, "GitHub");
        assert_eq!(h.scopes, ["read:user", "user:email", "read:org"]);
        assert_eq!(h.allowed_orgs, ["acme"]);
        match &h.kind {
            ProviderKind::Github {
                api_url, auth_url, ..
            } => {
                assert_eq!(api_url, "https://ghe.example.com/api/v3");
                assert_eq!(auth_url, "https://github.com/login/oauth/authorize");
            }
            other => panic!("{other:?}"),
        }
    }
}

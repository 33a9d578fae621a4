//! The claim rules of a provider (SPEC §10): who may sign in, as whom,
//! with which roles. Email rules only ever look at a verified email
//! (`email_verified: true`); `required_claims` accept a value or any of a
//! list, and a list-valued claim passes when any element is accepted;
//! roles come from `roles_claim` (a list or a space-separated string,
//! dotted paths reach nested claims) through `role_map`, plus
//! `default_roles`.

use serde_json::{Map, Value};

use crate::config::OidcProvider;
use crate::text::is_header_safe;

/// Who signed in, as the session will hold it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    pub roles: Vec<String>,
    /// A verified email, when there is one.
    pub email: Option<String>,
}

/// The verified email of a set of claims: `email` when `email_verified` is
/// `true` (or the string `"true"`, as some providers send it).
pub fn verified_email(claims: &Map<String, Value>) -> Option<String> {
    let verified = match claims.get("email_verified") {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s == "true",
        _ => false,
    };
    let email = claims.get("email")?.as_str()?;
    (verified && email.contains('@') && is_header_safe(email)).then(|| email.to_owned())
}

/// Whether the email rules let `email` (verified, or none) in.
pub fn email_allowed(p: &OidcProvider, email: Option<&str>) -> Result<(), String> {
    if p.allowed_emails.is_empty() && p.allowed_email_domains.is_empty() {
        return Ok(());
    }
    let Some(email) = email else {
        return Err("no verified email, and the provider has email rules".into());
    };
    let email = email.to_ascii_lowercase();
    let domain = email.rsplit_once('@').map_or("", |(_, d)| d);
    if p.allowed_emails.contains(&email) || p.allowed_email_domains.iter().any(|d| d == domain) {
        Ok(())
    } else {
        Err(format!(
            "email domain {domain:?} is not allowed (allowed_email_domains, allowed_emails)"
        ))
    }
}

/// The claim at `path`: the claim named exactly so (names may hold dots,
/// e.g. URLs), else the dotted path into nested objects.
pub fn claim_at<'a>(claims: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    if let Some(v) = claims.get(path) {
        return Some(v);
    }
    let mut parts = path.split('.');
    let mut cur = claims.get(parts.next()?)?;
    for part in parts {
        cur = cur.get(part)?;
    }
    Some(cur)
}

/// A scalar claim value as text (strings, numbers, booleans).
fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Applies every rule of `p` to the claims (the `id_token`'s, completed
/// from userinfo): the identity, or why it is denied (for the log).
pub fn apply(p: &OidcProvider, claims: &Map<String, Value>) -> Result<Identity, String> {
    let email = verified_email(claims);
    email_allowed(p, email.as_deref())?;
    for (name, accepted) in &p.required_claims {
        let ok = match claim_at(claims, name) {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(scalar_text)
                .any(|v| accepted.contains(&v)),
            Some(v) => scalar_text(v).is_some_and(|v| accepted.contains(&v)),
            None => false,
        };
        if !ok {
            return Err(format!("required claim {name:?} missing or not accepted"));
        }
    }
    let user = if p.username_claim == "email" {
        // An unverified email never names anyone.
        email
            .clone()
            .ok_or("no verified email to use as the user name")?
    } else {
        claim_at(claims, &p.username_claim)
            .and_then(scalar_text)
            .ok_or_else(|| format!("no {:?} claim to use as the user name", p.username_claim))?
    };
    if !is_header_safe(&user) {
        return Err("the user name cannot be sent in a header as it is".into());
    }
    let found = claim_at(claims, &p.roles_claim.join("."));
    let values: Vec<String> = match found {
        Some(Value::Array(items)) => items.iter().filter_map(scalar_text).collect(),
        Some(Value::String(s)) => s.split_whitespace().map(str::to_owned).collect(),
        _ => Vec::new(),
    };
    Ok(Identity {
        user,
        roles: roles(p, &values),
        email,
    })
}

/// `default_roles`, then each mapped value's role, without repeats.
pub fn roles(p: &OidcProvider, values: &[String]) -> Vec<String> {
    let mut roles: Vec<String> = Vec::new();
    let mapped = values.iter().filter_map(|v| {
        p.role_map
            .iter()
            .find(|(from, _)| from == v)
            .map(|(_, to)| to)
    });
    for role in p.default_roles.iter().chain(mapped) {
        if !roles.contains(role) {
            roles.push(role.clone());
        }
    }
    roles
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn provider(yaml_rules: impl FnOnce(&mut OidcProvider)) -> OidcProvider {
        let mut p = OidcProvider {
            id: "corp".into(),
            name: "Corp".into(),
            kind: crate::config::ProviderKind::Oidc {
                issuer: "https://idp.example".into(),
            },
            client_id: "c".into(),
            client_secret: crate::config::values::Secret::new("s".into()),
            scopes: vec!["openid".into()],
            token_auth: crate::config::TokenAuth::Basic,
            ca_file: None,
            ca_certs: Vec::new(),
            username_claim: "email".into(),
            allowed_email_domains: Vec::new(),
            allowed_emails: Vec::new(),
            required_claims: Vec::new(),
            roles_claim: vec!["groups".into()],
            role_map: Vec::new(),
            default_roles: Vec::new(),
            allowed_orgs: Vec::new(),
            allowed_users: Vec::new(),
        };
        yaml_rules(&mut p);
        p
    }

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn email_rules_need_a_verified_email_in_an_allowed_domain() {
        let p = provider(|p| p.allowed_email_domains = vec!["example.com".into()]);
        let ok = claims(json!({"sub": "1", "email": "Ann@Example.com", "email_verified": true}));
        assert_eq!(apply(&p, &ok).unwrap().user, "Ann@Example.com");
        for bad in [
            json!({"sub": "1", "email": "ann@example.com", "email_verified": false}),
            json!({"sub": "1", "email": "ann@example.com"}),
            json!({"sub": "1", "email": "ann@evil.com", "email_verified": true}),
            json!({"sub": "1", "email": "ann@sub.example.com", "email_verified": true}),
            json!({"sub": "1", "email": "ann@example.com.evil", "email_verified": true}),
        ] {
            assert!(apply(&p, &claims(bad.clone())).is_err(), "{bad}");
        }
        let p = provider(|p| p.allowed_emails = vec!["bob@other.org".into()]);
        let bob = claims(json!({"email": "bob@other.org", "email_verified": "true"}));
        assert!(apply(&p, &bob).is_ok());
    }

    #[test]
    fn required_claims_take_a_value_or_a_list_and_list_claims_pass_on_any_element() {
        let p = provider(|p| {
            p.username_claim = "sub".into();
            p.required_claims = vec![
                ("hd".into(), vec!["example.com".into()]),
                ("groups".into(), vec!["staff".into(), "ops".into()]),
                ("org.tier".into(), vec!["2".into()]),
            ];
        });
        let ok = claims(
            json!({"sub": "u", "hd": "example.com", "groups": ["x", "ops"], "org": {"tier": 2}}),
        );
        assert!(apply(&p, &ok).is_ok());
        for bad in [
            json!({"sub": "u", "hd": "example.org", "groups": ["ops"], "org": {"tier": 2}}),
            json!({"sub": "u", "hd": "example.com", "groups": ["x"], "org": {"tier": 2}}),
            json!({"sub": "u", "hd": "example.com", "groups": "ops", "org": {"tier": 3}}),
            json!({"sub": "u", "groups": ["ops"], "org": {"tier": 2}}),
        ] {
            assert!(apply(&p, &claims(bad.clone())).is_err(), "{bad}");
        }
    }

    #[test]
    fn roles_are_mapped_from_a_list_or_a_string_at_a_dotted_path() {
        let p = provider(|p| {
            p.username_claim = "preferred_username".into();
            p.roles_claim = vec!["realm_access".into(), "roles".into()];
            p.role_map = vec![
                ("gh-admins".into(), "admin".into()),
                ("staff".into(), "user".into()),
            ];
            p.default_roles = vec!["user".into()];
        });
        let c = claims(
            json!({"preferred_username": "ann", "realm_access": {"roles": ["staff", "gh-admins", "other"]}}),
        );
        let id = apply(&p, &c).unwrap();
        assert_eq!(id.user, "ann");
        assert_eq!(id.roles, ["user", "admin"]);
        assert_eq!(id.email, None);
        let c = claims(
            json!({"preferred_username": "ann", "realm_access": {"roles": "gh-admins staff"}}),
        );
        assert_eq!(apply(&p, &c).unwrap().roles, ["user", "admin"]);
        let c = claims(json!({"preferred_username": "ann"}));
        assert_eq!(apply(&p, &c).unwrap().roles, ["user"]);
    }

    #[test]
    fn a_user_name_that_cannot_be_forwarded_as_is_is_refused() {
        let p = provider(|p| p.username_claim = "name".into());
        assert!(apply(&p, &claims(json!({"name": "a,b"}))).is_err());
        assert!(apply(&p, &claims(json!({"name": " a"}))).is_err());
        assert!(apply(&p, &claims(json!({}))).is_err());
        let p = provider(|_| {});
        let unverified = claims(json!({"email": "a@b.c", "email_verified": false}));
        assert!(
            apply(&p, &unverified).is_err(),
            "an unverified email names no one"
        );
    }
}

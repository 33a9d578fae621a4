//! `identity_headers:`: the header names that carry the principal to a
//! backend.
//!
//! Rules: each is a valid header name, and no two are the same. The
//! signed assertion (SPEC §12): a known `algorithm`; `ttl` from 1s to 1h;
//! an `issuer`, when given, non-empty without control characters.

use std::time::Duration;

use super::{header, positive, Ctx};
use crate::config::file;
use crate::config::model::{Assertion, AssertionAlgorithm, IdentityHeaders};
use crate::config::ConfigError;

pub(super) fn identity_headers(
    cx: &Ctx,
    ih: &file::IdentityHeaders,
) -> Result<IdentityHeaders, ConfigError> {
    let headers = IdentityHeaders {
        user: header(cx, "identity_headers.user", &ih.user)?,
        roles: header(cx, "identity_headers.roles", &ih.roles)?,
        method: header(cx, "identity_headers.method", &ih.method)?,
        request_id: header(cx, "identity_headers.request_id", &ih.request_id)?,
        assertion: ih
            .assertion
            .as_ref()
            .map(|a| assertion(cx, a))
            .transpose()?,
    };
    let named = [
        (
            "assertion.header",
            headers.assertion.as_ref().map(|a| &a.header),
        ),
        ("request_id", Some(&headers.request_id)),
        ("method", Some(&headers.method)),
        ("roles", Some(&headers.roles)),
        ("user", Some(&headers.user)),
    ];
    for (i, (key, name)) in named.iter().enumerate() {
        let Some(name) = name else { continue };
        if let Some((other, _)) = named[i + 1..].iter().find(|(_, n)| *n == Some(*name)) {
            return Err(cx.err(
                format!("identity_headers.{key}"),
                format!("{name} is already `identity_headers.{other}`"),
            ));
        }
    }
    Ok(headers)
}

fn assertion(cx: &Ctx, a: &file::Assertion) -> Result<Assertion, ConfigError> {
    const KEY: &str = "identity_headers.assertion";
    let algorithm = match a.algorithm.0.trim().to_ascii_uppercase().as_str() {
        "ES256" => AssertionAlgorithm::Es256,
        "EDDSA" => AssertionAlgorithm::EdDsa,
        "RS256" => AssertionAlgorithm::Rs256,
        other => {
            return Err(cx.err(
                format!("{KEY}.algorithm"),
                format!("{other:?} is not one of ES256, EdDSA, RS256"),
            ))
        }
    };
    let ttl = positive(cx, &format!("{KEY}.ttl"), a.ttl.0)?;
    if ttl > Duration::from_secs(3600) {
        return Err(cx.err(format!("{KEY}.ttl"), "at most 1h"));
    }
    let issuer = match &a.issuer {
        Some(iss) if iss.0.trim().is_empty() || iss.0.chars().any(char::is_control) => {
            return Err(cx.err(
                format!("{KEY}.issuer"),
                "must be non-empty, without control characters",
            ))
        }
        Some(iss) => Some(iss.0.trim().to_owned()),
        None => None,
    };
    Ok(Assertion {
        header: header(cx, &format!("{KEY}.header"), &a.header)?,
        algorithm,
        key_file: cx.path(&a.key_file),
        previous_key_files: a.previous_key_files.iter().map(|p| cx.path(p)).collect(),
        issuer,
        ttl,
    })
}

#[cfg(test)]
mod tests {
    use super::super::testing::{assert_errors, assert_valid};

    #[test]
    fn every_identity_headers_rule_names_its_key() {
        assert_errors(&[
            // Each is a header name.
            (
                "identity_headers:\n  user: X Auth User\n",
                "identity_headers.user",
                "invalid header name \"X Auth User\"",
            ),
            (
                "identity_headers:\n  roles: \"X-Auth-Roles:\"\n",
                "identity_headers.roles",
                "invalid header name \"X-Auth-Roles:\"",
            ),
            (
                "identity_headers:\n  method: \"\"\n",
                "identity_headers.method",
                "invalid header name \"\"",
            ),
            (
                "identity_headers:\n  request_id: \"X-Request-Ïd\"\n",
                "identity_headers.request_id",
                "invalid header name",
            ),
            // No two the same.
            (
                "identity_headers:\n  user: X-Who\n  roles: x-who\n",
                "identity_headers.roles",
                "x-who is already `identity_headers.user`",
            ),
            (
                "identity_headers:\n  assertion:\n    header: X-Auth-User\n",
                "identity_headers.assertion.header",
                "x-auth-user is already `identity_headers.user`",
            ),
            // The assertion: a known algorithm, a ttl of 1s to 1h, an issuer.
            (
                "identity_headers:\n  assertion:\n    algorithm: HS256\n",
                "identity_headers.assertion.algorithm",
                "\"HS256\" is not one of ES256, EdDSA, RS256",
            ),
            (
                "identity_headers:\n  assertion:\n    ttl: 0s\n",
                "identity_headers.assertion.ttl",
                "must be greater than zero",
            ),
            (
                "identity_headers:\n  assertion:\n    ttl: 2h\n",
                "identity_headers.assertion.ttl",
                "at most 1h",
            ),
            (
                "identity_headers:\n  assertion:\n    issuer: \" \"\n",
                "identity_headers.assertion.issuer",
                "must be non-empty",
            ),
            (
                "identity_headers:\n  assertion:\n    header: \"X Assertion\"\n",
                "identity_headers.assertion.header",
                "invalid header name",
            ),
            // From the file's shape: known keys only.
            (
                "identity_headers:\n  assertion: X-Auth-Assertion\n",
                "identity_headers.assertion",
                "invalid type",
            ),
            (
                "identity_headers:\n  assertion:\n    key: a.pem\n",
                "identity_headers.assertion.key",
                "unknown field `key`",
            ),
        ]);
    }

    #[test]
    fn valid_identity_headers_sections_pass() {
        let configs = assert_valid(&[
            "identity_headers:\n  user: \" X-User \"\n  roles: x-roles\n",
            "forward_authorization: false\n",
        ]);
        let ih = &configs[0].identity;
        assert_eq!(ih.user.as_str(), "x-user");
        assert_eq!(ih.roles.as_str(), "x-roles");
        assert_eq!(
            ih.method.as_str(),
            "x-auth-method",
            "the others keep their defaults"
        );
        assert!(!configs[1].forward_authorization);
        assert_eq!(ih.assertion, None, "no assertion unless configured");
    }

    #[test]
    fn an_assertion_section_takes_the_defaults() {
        use crate::config::AssertionAlgorithm;
        let configs = assert_valid(&[
            "identity_headers:\n  assertion: {}\n",
            "identity_headers:\n  assertion:\n    algorithm: eddsa\n    key_file: /keys/a.pem\n    previous_key_files: [old.pem]\n    issuer: https://chat.example.com\n    ttl: 5m\n",
        ]);
        let a = configs[0].identity.assertion.as_ref().expect("assertion");
        assert_eq!(a.header.as_str(), "x-gatehouse-assertion");
        assert_eq!(a.algorithm, AssertionAlgorithm::Es256);
        assert!(
            a.key_file.ends_with("data/assertion.pem"),
            "{:?}",
            a.key_file
        );
        assert_eq!(a.ttl.as_secs(), 60);
        assert_eq!(a.issuer, None);
        let b = configs[1].identity.assertion.as_ref().expect("assertion");
        assert_eq!(b.algorithm, AssertionAlgorithm::EdDsa);
        assert_eq!(b.key_file, std::path::Path::new("/keys/a.pem"));
        assert!(b.previous_key_files[0].ends_with("old.pem"));
        assert_eq!(b.issuer.as_deref(), Some("https://chat.example.com"));
        assert_eq!(b.ttl.as_secs(), 300);
        assert_eq!(
            configs[0].upstreams[0].audience,
            configs[0].upstreams[0].name
        );
    }
}

//! `identity_headers:`: the header names that carry the principal to a
//! backend.
//!
//! Rules: each is a valid header name.

use super::{header, Ctx};
use crate::config::file;
use crate::config::model::IdentityHeaders;
use crate::config::ConfigError;

pub(super) fn identity_headers(
    cx: &Ctx,
    ih: &file::IdentityHeaders,
) -> Result<IdentityHeaders, ConfigError> {
    Ok(IdentityHeaders {
        user: header(cx, "identity_headers.user", &ih.user)?,
        roles: header(cx, "identity_headers.roles", &ih.roles)?,
        method: header(cx, "identity_headers.method", &ih.method)?,
        email: header(cx, "identity_headers.email", &ih.email)?,
        request_id: header(cx, "identity_headers.request_id", &ih.request_id)?,
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
            // From the file's shape: known keys only.
            (
                "identity_headers:\n  assertion: X-Auth-Assertion\n",
                "identity_headers.assertion",
                "unknown field `assertion`",
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
    }
}

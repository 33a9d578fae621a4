//! `listen:`: the HTTPS, redirect and admin listeners' addresses.
//!
//! Rules: every address is `IP:PORT` (a name would need a resolver at boot).

use std::net::SocketAddr;

use super::Ctx;
use crate::config::file;
use crate::config::model::Listen;
use crate::config::values::Text;
use crate::config::ConfigError;

pub(super) fn listen(cx: &Ctx, raw: &file::Listen) -> Result<Listen, ConfigError> {
    Ok(Listen {
        https: addr(cx, "listen.https", &raw.https)?,
        http: raw
            .http
            .as_ref()
            .map(|a| addr(cx, "listen.http", a))
            .transpose()?,
        admin: raw
            .admin
            .as_ref()
            .map(|a| addr(cx, "listen.admin", a))
            .transpose()?,
    })
}

fn addr(cx: &Ctx, key: &str, value: &Text) -> Result<SocketAddr, ConfigError> {
    value.as_str().trim().parse().map_err(|_| {
        cx.err(
            key,
            format!(
                "invalid listen address {:?} (expected IP:PORT, e.g. 0.0.0.0:8443)",
                value.as_str()
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::super::testing::{assert_errors, assert_valid};

    #[test]
    fn every_listen_rule_names_its_key() {
        assert_errors(&[
            // Each address is IP:PORT.
            (
                "listen:\n  https: localhost:8443\n",
                "listen.https",
                "invalid listen address \"localhost:8443\" (expected IP:PORT",
            ),
            (
                "listen:\n  https: 0.0.0.0\n",
                "listen.https",
                "invalid listen address",
            ),
            (
                "listen:\n  https: 0.0.0.0:8443\n  http: \":8080\"\n",
                "listen.http",
                "invalid listen address \":8080\"",
            ),
            (
                "listen:\n  https: 0.0.0.0:8443\n  admin: 127.0.0.1:99999\n",
                "listen.admin",
                "invalid listen address",
            ),
            // From the file's shape: https is required, keys are known.
            (
                "listen:\n  http: 0.0.0.0:8080\n",
                "listen",
                "missing field `https`",
            ),
            (
                "listen:\n  https: 0.0.0.0:8443\n  htps: 0.0.0.0:1\n",
                "listen.htps",
                "unknown field `htps`",
            ),
        ]);
    }

    #[test]
    fn valid_listen_sections_pass() {
        let configs = assert_valid(&[
            "listen:\n  https: \" 0.0.0.0:8443 \"\n",
            "listen:\n  https: \"[::]:8443\"\n  http: null\n  admin: null\n",
            "listen:\n  https: 127.0.0.1:0\n  http: 127.0.0.1:0\n  admin: \"[::1]:9901\"\n",
        ]);
        assert_eq!(configs[1].listen.http, None);
        assert_eq!(configs[1].listen.admin, None);
    }
}

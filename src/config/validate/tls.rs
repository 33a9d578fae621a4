//! `tls:`: the HTTPS listener's certificate, key and policy.
//!
//! Rules: `min_version` is "1.2" or "1.3"; `hsts` is a valid header value
//! (or "" to disable it). The certificate and key are only resolved here;
//! the server reads them when it starts or reloads.

use http::HeaderValue;

use super::Ctx;
use crate::config::file;
use crate::config::model::{Tls, TlsVersion};
use crate::config::ConfigError;

pub(super) fn tls(cx: &Ctx, raw: &file::Tls) -> Result<Tls, ConfigError> {
    Ok(Tls {
        cert: cx.path(&raw.cert),
        key: cx.path(&raw.key),
        min_version: match raw.min_version.as_str() {
            "1.2" => TlsVersion::V1_2,
            "1.3" => TlsVersion::V1_3,
            other => {
                return Err(cx.err(
                    "tls.min_version",
                    format!("unsupported TLS version {other:?} (expected \"1.2\" or \"1.3\")"),
                ))
            }
        },
        hsts: match raw.hsts.as_str().trim() {
            "" => None,
            v => Some(
                HeaderValue::from_str(v)
                    .map_err(|_| cx.err("tls.hsts", "not a valid header value"))?,
            ),
        },
        self_signed_if_missing: raw.self_signed_if_missing.0,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::testing::{assert_errors, assert_valid};
    use crate::config::TlsVersion;

    const CERT: &str = "tls:\n  cert: server.crt\n  key: server.key\n";

    #[test]
    fn every_tls_rule_names_its_key() {
        let min_version = |v: &str| format!("{CERT}  min_version: {v}\n");
        let hsts = |v: &str| format!("{CERT}  hsts: {v}\n");
        let rows = [
            // min_version is "1.2" or "1.3".
            (
                min_version("\"1.1\""),
                "tls.min_version",
                "unsupported TLS version \"1.1\" (expected \"1.2\" or \"1.3\")",
            ),
            (
                min_version("\"1.30\""),
                "tls.min_version",
                "unsupported TLS version \"1.30\"",
            ),
            (
                min_version("TLSv1.3"),
                "tls.min_version",
                "unsupported TLS version",
            ),
            // hsts is a valid header value.
            (
                hsts("\"max-age=1\\x01\""),
                "tls.hsts",
                "not a valid header value",
            ),
            (
                hsts("\"max-age=1\\nX-Evil: 1\""),
                "tls.hsts",
                "not a valid header value",
            ),
            // From the file's shape: cert and key are required.
            (
                "tls:\n  cert: server.crt\n".to_owned(),
                "tls",
                "missing field `key`",
            ),
            (
                format!("{CERT}  self_signed_if_missing: maybe\n"),
                "tls.self_signed_if_missing",
                "expected true or false",
            ),
        ];
        assert_errors(&rows);
    }

    #[test]
    fn valid_tls_sections_pass() {
        let configs = assert_valid(&[
            "tls:\n  cert: /abs/server.crt\n  key: ../certs/server.key\n  min_version: \"1.3\"\n  hsts: \"\"\n",
            "tls:\n  cert: server.crt\n  key: server.key\n  min_version: 1.2\n  hsts: \"max-age=60\"\n  self_signed_if_missing: true\n",
        ]);
        let tls = &configs[0].tls;
        assert_eq!(tls.cert, Path::new("/abs/server.crt"));
        assert_eq!(tls.key, Path::new("/etc/gatehouse/../certs/server.key"));
        assert_eq!(tls.min_version, TlsVersion::V1_3);
        assert!(tls.hsts.is_none(), "hsts: \"\" disables it");
        assert_eq!(configs[1].tls.min_version, TlsVersion::V1_2);
        assert!(configs[1].tls.self_signed_if_missing);
    }
}

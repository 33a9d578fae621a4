//! `server:`: limits and timeouts of client connections.
//!
//! Rules: the header-read, body-read and idle timeouts are greater than
//! zero; `max_connections` is at least 1; each `trusted_proxies` entry is a
//! CIDR or a bare IP; `max_header_size` is at least 8KiB.

use ipnet::IpNet;

use super::{positive, Ctx};
use crate::config::file;
use crate::config::model::Server;
use crate::config::values::Text;
use crate::config::ConfigError;

pub(super) fn server(cx: &Ctx, s: &file::Server) -> Result<Server, ConfigError> {
    Ok(Server {
        max_request_body: s.max_request_body.0,
        header_read_timeout: positive(cx, "server.header_read_timeout", s.header_read_timeout.0)?,
        body_read_timeout: positive(cx, "server.body_read_timeout", s.body_read_timeout.0)?,
        idle_timeout: positive(cx, "server.idle_timeout", s.idle_timeout.0)?,
        max_connections: match usize::try_from(s.max_connections.0) {
            Ok(n) if n > 0 => n,
            _ => return Err(cx.err("server.max_connections", "must be at least 1")),
        },
        trusted_proxies: s
            .trusted_proxies
            .iter()
            .enumerate()
            .map(|(i, t)| cidr(cx, &format!("server.trusted_proxies[{i}]"), t))
            .collect::<Result<_, _>>()?,
        shutdown_grace: s.shutdown_grace.0,
        max_header_size: match usize::try_from(s.max_header_size.0) {
            Ok(n) if n >= 8192 => n,
            _ => return Err(cx.err("server.max_header_size", "must be at least 8KiB")),
        },
    })
}

/// A network, `10.0.0.0/8`; a bare IP is its /32 or /128. Host bits are
/// dropped (`10.1.2.3/8` is `10.0.0.0/8`).
fn cidr(cx: &Ctx, key: &str, value: &Text) -> Result<IpNet, ConfigError> {
    let s = value.as_str().trim();
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from))
        .map(|n| n.trunc())
        .map_err(|_| {
            cx.err(
                key,
                format!("invalid CIDR {s:?} (expected e.g. 10.0.0.0/8)"),
            )
        })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::testing::{assert_errors, assert_valid};

    #[test]
    fn every_server_rule_names_its_key() {
        assert_errors(&[
            // Timeouts are greater than zero.
            (
                "server:\n  header_read_timeout: 0s\n",
                "server.header_read_timeout",
                "must be greater than zero",
            ),
            (
                "server:\n  body_read_timeout: 0ms\n",
                "server.body_read_timeout",
                "must be greater than zero",
            ),
            (
                "server:\n  idle_timeout: 0m\n",
                "server.idle_timeout",
                "must be greater than zero",
            ),
            // max_connections is at least 1.
            (
                "server:\n  max_connections: 0\n",
                "server.max_connections",
                "must be at least 1",
            ),
            // trusted_proxies are CIDRs or IPs.
            (
                "server:\n  trusted_proxies: [10.0.0.0/8, \"10.0.0.0/33\"]\n",
                "server.trusted_proxies[1]",
                "invalid CIDR \"10.0.0.0/33\" (expected e.g. 10.0.0.0/8)",
            ),
            (
                "server:\n  trusted_proxies: [proxy.internal]\n",
                "server.trusted_proxies[0]",
                "invalid CIDR \"proxy.internal\"",
            ),
            // max_header_size is at least 8KiB.
            (
                "server:\n  max_header_size: 8191\n",
                "server.max_header_size",
                "must be at least 8KiB",
            ),
            // From the file's shape: numbers, sizes, known keys.
            (
                "server:\n  max_connections: lots\n",
                "server.max_connections",
                "expected a non-negative integer, got \"lots\"",
            ),
            (
                "server:\n  max_request_body: 10 parsecs\n",
                "server.max_request_body",
                "invalid size \"10 parsecs\"",
            ),
            (
                "server:\n  max_conections: 5\n",
                "server.max_conections",
                "unknown field `max_conections`",
            ),
        ]);
    }

    #[test]
    fn valid_server_sections_pass() {
        let configs = assert_valid(&[
            "server:\n  max_header_size: 8KiB\n  max_connections: 1\n  shutdown_grace: 0s\n",
            "server:\n  trusted_proxies: [\"10.1.2.3/8\", \" 192.168.0.1 \", \"::1\", \"fd00::/8\"]\n  max_request_body: 0\n",
        ]);
        assert_eq!(configs[0].server.max_header_size, 8192);
        assert_eq!(configs[0].server.shutdown_grace, Duration::ZERO);
        let proxies: Vec<String> = configs[1]
            .server
            .trusted_proxies
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(
            proxies,
            ["10.0.0.0/8", "192.168.0.1/32", "::1/128", "fd00::/8"]
        );
    }
}

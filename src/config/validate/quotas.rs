//! `quotas:` (SPEC §11): what each principal may spend per period.
//!
//! Rules: a quota has a unique, non-empty `name`; `routes` lists at least
//! one route, each the name of an entry of `routes:` or `default` (the
//! default route) — gatehouse's own endpoints (`login`, `auth_me`, …) are
//! answered by gatehouse and forward nothing, so they take no quota; `unit`
//! is `requests` or `tokens`; `limit` is an integer of at least 1; `period`
//! is `day`, `week`, `month` or a duration of whole seconds, at least 1s;
//! each override names a principal not named before in that quota, with a
//! `limit` of at least 1 or `unlimited`; `usage` (`openai` or `header`),
//! `usage_header` (a header name) and `fallback_tokens` belong to `tokens`
//! quotas only.

use std::sync::Arc;

use http::HeaderName;

use super::{header, roles, Ctx};
use crate::config::file;
use crate::config::model::{Period, Quota, QuotaOverride, QuotaUnit, Route, UsageSource};
use crate::config::values::parse_duration;
use crate::config::ConfigError;

/// The header a backend reports a response's token usage in, by default.
pub const USAGE_HEADER: &str = "x-gatehouse-usage";

pub(super) fn quotas(
    cx: &Ctx,
    raw: &[file::Quota],
    routes: &[Route],
) -> Result<Vec<Quota>, ConfigError> {
    let mut quotas: Vec<Quota> = Vec::with_capacity(raw.len());
    for (i, q) in raw.iter().enumerate() {
        let key = format!("quotas[{i}]");
        let name = q.name.as_str().trim();
        if name.is_empty() {
            return Err(cx.err(format!("{key}.name"), "must not be empty"));
        }
        if let Some(j) = quotas.iter().position(|other| &*other.name == name) {
            return Err(cx.err(
                format!("{key}.name"),
                format!("duplicate quota name {name:?} (also quotas[{j}])"),
            ));
        }
        if q.routes.is_empty() {
            return Err(cx.err(format!("{key}.routes"), "list at least one route name"));
        }
        let mut names: Vec<Arc<str>> = Vec::with_capacity(q.routes.len());
        for (j, r) in q.routes.iter().enumerate() {
            let r = r.as_str().trim();
            let known = r == "default" || routes.iter().any(|route| &*route.name == r);
            if !known {
                return Err(cx.err(
                    format!("{key}.routes[{j}]"),
                    format!(
                        "no route named {r:?} (a name from routes:, or default for default_route)"
                    ),
                ));
            }
            if !names.iter().any(|n| &**n == r) {
                names.push(Arc::from(r));
            }
        }
        let unit = match q.unit.as_str().trim() {
            "requests" => QuotaUnit::Requests,
            "tokens" => QuotaUnit::Tokens,
            other => {
                return Err(cx.err(
                    format!("{key}.unit"),
                    format!("{other:?}: expected requests or tokens"),
                ))
            }
        };
        let limit = match q.limit {
            None => return Err(cx.err(format!("{key}.limit"), "required")),
            Some(n) if n.0 >= 1 => n.0,
            Some(_) => return Err(cx.err(format!("{key}.limit"), "must be at least 1")),
        };
        let period = period(cx, &format!("{key}.period"), q.period.as_str())?;
        let mut overrides: Vec<QuotaOverride> = Vec::with_capacity(q.overrides.len());
        for (j, o) in q.overrides.iter().enumerate() {
            let okey = format!("{key}.overrides[{j}]");
            let principal = o.principal.as_str().trim();
            if principal.is_empty() {
                return Err(cx.err(format!("{okey}.principal"), "must not be empty"));
            }
            if let Some(k) = overrides.iter().position(|p| p.principal == principal) {
                return Err(cx.err(
                    format!("{okey}.principal"),
                    format!("{principal:?} is overridden twice (also overrides[{k}])"),
                ));
            }
            let limit = match o.limit.as_str().trim() {
                "unlimited" => None,
                n => match n.parse::<u64>() {
                    Ok(n) if n >= 1 => Some(n),
                    _ => {
                        return Err(cx.err(
                            format!("{okey}.limit"),
                            format!("{n:?}: expected an integer of at least 1, or unlimited"),
                        ))
                    }
                },
            };
            overrides.push(QuotaOverride {
                principal: principal.to_owned(),
                limit,
            });
        }
        let tokens_only = |field: &str, set: bool| {
            if set && unit != QuotaUnit::Tokens {
                Err(cx.err(
                    format!("{key}.{field}"),
                    "only a quota with unit: tokens has this",
                ))
            } else {
                Ok(())
            }
        };
        tokens_only("usage", q.usage.is_some())?;
        tokens_only("usage_header", q.usage_header.is_some())?;
        tokens_only("fallback_tokens", q.fallback_tokens.is_some())?;
        let usage = match q.usage.as_ref().map(|u| u.as_str().trim()) {
            None | Some("openai") => UsageSource::OpenAi,
            Some("header") => UsageSource::Header,
            Some(other) => {
                return Err(cx.err(
                    format!("{key}.usage"),
                    format!("{other:?}: expected openai or header"),
                ))
            }
        };
        let usage_header = match &q.usage_header {
            None => HeaderName::from_static(USAGE_HEADER),
            Some(h) => header(cx, &format!("{key}.usage_header"), h)?,
        };
        quotas.push(Quota {
            name: Arc::from(name),
            routes: names,
            unit,
            limit,
            period,
            roles: roles(&q.roles),
            overrides,
            usage,
            usage_header,
            fallback_tokens: q.fallback_tokens.map_or(0, |n| n.0),
        });
    }
    Ok(quotas)
}

fn period(cx: &Ctx, key: &str, raw: &str) -> Result<Period, ConfigError> {
    Ok(match raw.trim() {
        "day" => Period::Day,
        "week" => Period::Week,
        "month" => Period::Month,
        other => {
            let bad = |why: &str| {
                cx.err(
                    key,
                    format!(
                        "{other:?}: expected day, week, month or a duration such as 6h ({why})"
                    ),
                )
            };
            let d = parse_duration(other).map_err(|_| bad("not a duration"))?;
            if d.as_secs() == 0 || d.subsec_nanos() != 0 {
                return Err(bad("a duration of whole seconds, at least 1s"));
            }
            Period::Every(d.as_secs())
        }
    })
}

#[cfg(test)]
mod tests {
    use super::super::testing::{assert_errors, assert_valid};
    use crate::config::{Period, QuotaUnit, UsageSource};

    const ROUTES: &str = "routes:\n  - { name: chat, path: /chat }\n  - { name: docs, path: /docs/**, auth: none }\n";

    fn quota(fields: &str) -> String {
        format!("{ROUTES}quotas:\n  - {{ {fields} }}\n")
    }

    fn second(fields: &str) -> String {
        format!("{ROUTES}quotas:\n  - {{ name: first, routes: [chat], limit: 5 }}\n  - {{ {fields} }}\n")
    }

    #[test]
    fn every_quotas_rule_names_its_key() {
        assert_errors(&[
            // A quota has a name, unique among quotas.
            (
                quota("name: \"\", routes: [chat], limit: 1"),
                "quotas[0].name",
                "must not be empty",
            ),
            (
                second("name: first, routes: [docs], limit: 1"),
                "quotas[1].name",
                "duplicate quota name \"first\" (also quotas[0])",
            ),
            // routes lists at least one route, by name.
            (
                quota("name: q, limit: 1"),
                "quotas[0].routes",
                "list at least one route name",
            ),
            (
                quota("name: q, routes: [chat, chatt], limit: 1"),
                "quotas[0].routes[1]",
                "no route named \"chatt\"",
            ),
            // gatehouse's own endpoints take none.
            (
                quota("name: q, routes: [auth_me], limit: 1"),
                "quotas[0].routes[0]",
                "no route named \"auth_me\"",
            ),
            // unit is requests or tokens.
            (
                quota("name: q, routes: [chat], unit: dollars, limit: 1"),
                "quotas[0].unit",
                "\"dollars\": expected requests or tokens",
            ),
            // limit is required, at least 1.
            (
                quota("name: q, routes: [chat]"),
                "quotas[0].limit",
                "required",
            ),
            (
                quota("name: q, routes: [chat], limit: 0"),
                "quotas[0].limit",
                "must be at least 1",
            ),
            (
                quota("name: q, routes: [chat], limit: unlimited"),
                "quotas[0].limit",
                "expected a non-negative integer",
            ),
            // period is day, week, month or a duration of whole seconds.
            (
                quota("name: q, routes: [chat], limit: 1, period: fortnight"),
                "quotas[0].period",
                "\"fortnight\": expected day, week, month or a duration such as 6h",
            ),
            (
                quota("name: q, routes: [chat], limit: 1, period: 1500ms"),
                "quotas[0].period",
                "whole seconds, at least 1s",
            ),
            (
                quota("name: q, routes: [chat], limit: 1, period: 0s"),
                "quotas[0].period",
                "whole seconds, at least 1s",
            ),
            // Overrides: one per principal, a limit of at least 1 or unlimited.
            (
                quota("name: q, routes: [chat], limit: 1, overrides: [{ principal: alice, limit: 2 }, { principal: alice, limit: unlimited }]"),
                "quotas[0].overrides[1].principal",
                "\"alice\" is overridden twice (also overrides[0])",
            ),
            (
                quota("name: q, routes: [chat], limit: 1, overrides: [{ principal: \" \", limit: 2 }]"),
                "quotas[0].overrides[0].principal",
                "must not be empty",
            ),
            (
                quota("name: q, routes: [chat], limit: 1, overrides: [{ principal: bob, limit: 0 }]"),
                "quotas[0].overrides[0].limit",
                "\"0\": expected an integer of at least 1, or unlimited",
            ),
            (
                quota("name: q, routes: [chat], limit: 1, overrides: [{ principal: bob, limit: lots }]"),
                "quotas[0].overrides[0].limit",
                "expected an integer of at least 1, or unlimited",
            ),
            // usage, usage_header and fallback_tokens are for tokens quotas.
            (
                quota("name: q, routes: [chat], limit: 1, usage: openai"),
                "quotas[0].usage",
                "only a quota with unit: tokens has this",
            ),
            (
                quota("name: q, routes: [chat], limit: 1, usage_header: X-Used"),
                "quotas[0].usage_header",
                "only a quota with unit: tokens has this",
            ),
            (
                quota("name: q, routes: [chat], unit: requests, limit: 1, fallback_tokens: 10"),
                "quotas[0].fallback_tokens",
                "only a quota with unit: tokens has this",
            ),
            (
                quota("name: q, routes: [chat], unit: tokens, limit: 1, usage: anthropic"),
                "quotas[0].usage",
                "\"anthropic\": expected openai or header",
            ),
            (
                quota("name: q, routes: [chat], unit: tokens, limit: 1, usage_header: \"X Used\""),
                "quotas[0].usage_header",
                "invalid header name \"X Used\"",
            ),
            // From the file's shape: known keys only.
            (
                quota("name: q, routes: [chat], limit: 1, window: day"),
                "quotas[0].window",
                "unknown field `window`",
            ),
        ]);
    }

    #[test]
    fn valid_quotas_pass_with_their_defaults() {
        let yaml = format!(
            "{ROUTES}quotas:\n\
             \x20 - {{ name: chat-daily, routes: [chat, default], limit: 200, roles: [user], overrides: [{{ principal: alice, limit: 1000 }}, {{ principal: ci-bot, limit: unlimited }}] }}\n\
             \x20 - {{ name: chat-tokens, routes: [chat], unit: tokens, limit: 200000, period: month, usage: header, usage_header: X-Used, fallback_tokens: 50 }}\n\
             \x20 - {{ name: docs-6h, routes: [docs], limit: 3, period: 6h }}\n\
             \x20 - {{ name: weekly, routes: [docs, docs], limit: 3, period: week }}\n"
        );
        let config = assert_valid(&[yaml]).remove(0);
        let q = &config.quotas;
        assert_eq!(q.len(), 4);
        assert_eq!(&*q[0].name, "chat-daily");
        assert_eq!(
            (q[0].unit, q[0].period, q[0].limit),
            (QuotaUnit::Requests, Period::Day, 200)
        );
        assert_eq!(
            q[0].routes.iter().map(|r| &**r).collect::<Vec<_>>(),
            ["chat", "default"]
        );
        assert_eq!(q[0].limit_for("alice"), Some(1000));
        assert_eq!(q[0].limit_for("ci-bot"), None);
        assert_eq!(q[0].limit_for("bob"), Some(200));
        assert!(q[0].applies_to(&["user".into()]) && !q[0].applies_to(&[]));
        assert_eq!(q[0].usage, UsageSource::OpenAi);
        assert_eq!(q[0].usage_header, "x-gatehouse-usage");
        assert_eq!(q[0].fallback_tokens, 0);
        assert_eq!((q[1].unit, q[1].period), (QuotaUnit::Tokens, Period::Month));
        assert_eq!(
            (q[1].usage, q[1].fallback_tokens),
            (UsageSource::Header, 50)
        );
        assert_eq!(q[1].usage_header, "x-used");
        assert_eq!(q[2].period, Period::Every(6 * 3600));
        assert!(q[2].applies_to(&[]), "no roles: every principal");
        assert_eq!(q[3].period, Period::Week);
        assert_eq!(q[3].routes.len(), 1, "a route named twice counts once");
        assert!(assert_valid(&[""]).remove(0).quotas.is_empty());
    }
}

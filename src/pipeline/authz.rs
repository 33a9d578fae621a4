//! Authorization stage: a route's `roles` need at least one match in the
//! principal's roles, or the answer is `403 forbidden`.

use crate::auth::{AuthError, Principal};
use crate::metrics::Metrics;

pub fn authorize(
    principal: &Principal,
    roles: &[String],
    route: &str,
    metrics: &Metrics,
) -> Result<(), AuthError> {
    let allowed = principal.has_any_role(roles);
    let result = if allowed { "ok" } else { "forbidden" };
    metrics
        .auth
        .with_label_values(&[route, principal.scheme.as_str(), result])
        .inc();
    if allowed {
        Ok(())
    } else {
        Err(AuthError::Forbidden)
    }
}

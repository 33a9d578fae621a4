//! Authorization stage: a route's `roles` need at least one match in the
//! principal's roles, or the answer is `403 forbidden`.

use crate::auth::{AuthError, Principal};
use crate::metrics::{Metrics, RouteMetrics};

pub fn authorize(
    principal: &Principal,
    roles: &[String],
    route: &RouteMetrics,
    metrics: &Metrics,
) -> Result<(), AuthError> {
    let allowed = principal.has_any_role(roles);
    route.authorized(metrics, principal.scheme.as_str(), allowed);
    if allowed {
        Ok(())
    } else {
        Err(AuthError::Forbidden)
    }
}

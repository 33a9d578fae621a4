//! API keys (SPEC §2 `auth.api_keys`): only their SHA-256 is configured; a
//! presented key is hashed and compared against every configured hash in
//! constant time (no early exit), so timing says nothing about which key, or
//! how much of one, matched.

use std::sync::Arc;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{Principal, Scheme};
use crate::config;

/// The configured keys, each with its principal made once.
#[derive(Debug, Clone, Default)]
pub struct ApiKeys {
    keys: Vec<([u8; 32], Arc<Principal>)>,
}

impl ApiKeys {
    /// The keys whose id and roles can be identity headers: config
    /// validation refuses the others, so none is dropped in practice.
    pub fn new(keys: &[config::ApiKey]) -> Self {
        let keys = keys
            .iter()
            .filter_map(|k| {
                let p = Principal::new(&k.id, k.roles.clone(), Scheme::ApiKey, None, None, None);
                Some((k.sha256, Arc::new(p.ok()?)))
            })
            .collect();
        ApiKeys { keys }
    }

    /// The principal for a presented key, or `None` if no key matches.
    pub fn check(&self, presented: &[u8]) -> Option<Arc<Principal>> {
        let digest: [u8; 32] = Sha256::digest(presented).into();
        let mut found = None;
        for (sha256, principal) in &self.keys {
            if bool::from(digest.ct_eq(sha256)) {
                found = Some(principal);
            }
        }
        found.cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str, secret: &str) -> config::ApiKey {
        config::ApiKey {
            id: id.into(),
            sha256: Sha256::digest(secret.as_bytes()).into(),
            roles: vec!["service".into()],
        }
    }

    #[test]
    fn matching_key_yields_its_id_and_roles() {
        let keys = ApiKeys::new(&[key("a", "key-a"), key("ci-bot", "key-b")]);
        let p = keys.check(b"key-b").unwrap();
        assert_eq!(&*p.user, "ci-bot");
        assert_eq!(p.roles, ["service"]);
        assert_eq!(p.scheme, Scheme::ApiKey);
    }

    #[test]
    fn wrong_or_empty_key_matches_nothing() {
        let keys = ApiKeys::new(&[key("a", "key-a")]);
        assert!(keys.check(b"key-b").is_none());
        assert!(keys.check(b"").is_none());
        assert!(keys.check(b"key-a ").is_none());
    }
}

//! API keys (SPEC §2 `auth.api_keys`): only their SHA-256 is configured; a
//! presented key is hashed and compared against every configured hash in
//! constant time (no early exit), so timing says nothing about which key, or
//! how much of one, matched.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{Principal, Scheme};
use crate::config;

/// The configured keys.
#[derive(Debug, Clone, Default)]
pub struct ApiKeys {
    keys: Vec<config::ApiKey>,
}

impl ApiKeys {
    pub fn new(keys: &[config::ApiKey]) -> Self {
        ApiKeys {
            keys: keys.to_vec(),
        }
    }

    /// The principal for a presented key, or `None` if no key matches.
    pub fn check(&self, presented: &[u8]) -> Option<Principal> {
        let digest: [u8; 32] = Sha256::digest(presented).into();
        let mut found: Option<&config::ApiKey> = None;
        for key in &self.keys {
            if bool::from(digest.ct_eq(&key.sha256)) {
                found = Some(key);
            }
        }
        found.map(|key| Principal {
            user: key.id.clone(),
            roles: key.roles.clone(),
            scheme: Scheme::ApiKey,
            exp: None,
            jti: None,
            sid: None,
        })
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
        assert_eq!(p.user, "ci-bot");
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

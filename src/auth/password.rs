//! Password hashes: argon2id (what `gatehouse hash-password` writes, OWASP
//! parameters m=19456 KiB, t=2, p=1) and bcrypt (`$2a$`, `$2b$`, `$2y$`).
//!
//! Verifying is deliberately slow, so it never runs on the async workers:
//! [`Hasher::verify`] runs it on the blocking pool, at most as many at once
//! as there are cores — a login flood queues there instead of stalling
//! proxied traffic. An unknown user is checked against a dummy hash so that
//! it takes as long as a wrong password.

use std::sync::Arc;

use argon2::password_hash::{PasswordHash as Phc, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;

/// A stored password hash, checked to be one of the supported formats.
#[derive(Clone, PartialEq, Eq)]
pub enum PasswordHash {
    Argon2(String),
    Bcrypt(String),
}

impl std::fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PasswordHash::Argon2(_) => "Argon2(***)",
            PasswordHash::Bcrypt(_) => "Bcrypt(***)",
        })
    }
}

impl PasswordHash {
    /// Parses a PHC argon2 string or a bcrypt hash.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.starts_with("$argon2") {
            Phc::new(s).map_err(|e| format!("invalid argon2 hash: {e}"))?;
            Ok(PasswordHash::Argon2(s.to_owned()))
        } else if ["$2a$", "$2b$", "$2y$"].iter().any(|p| s.starts_with(p)) {
            if s.len() != 60 {
                return Err("invalid bcrypt hash: expected 60 characters".into());
            }
            Ok(PasswordHash::Bcrypt(s.to_owned()))
        } else {
            Err("expected an argon2id ($argon2id$…) or bcrypt ($2b$…) hash".into())
        }
    }

    fn verify_blocking(&self, password: &[u8]) -> bool {
        match self {
            PasswordHash::Argon2(phc) => Phc::new(phc)
                .map(|parsed| Argon2::default().verify_password(password, &parsed).is_ok())
                .unwrap_or(false),
            PasswordHash::Bcrypt(h) => bcrypt::verify(password, h).unwrap_or(false),
        }
    }
}

fn argon2id() -> Argon2<'static> {
    let params = Params::new(19_456, 2, 1, None).expect("OWASP argon2id parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// An argon2id PHC string for `password` (OWASP parameters).
pub fn hash_password(password: &str) -> Result<String, String> {
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>()).map_err(|e| e.to_string())?;
    argon2id()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Verifies passwords off the async workers, a bounded number at a time.
pub struct Hasher {
    permits: Arc<Semaphore>,
    dummy: PasswordHash,
}

impl Hasher {
    pub fn new() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let dummy = hash_password("gatehouse dummy password: never matches")
            .map(PasswordHash::Argon2)
            .expect("hashing a constant password works");
        Hasher {
            permits: Arc::new(Semaphore::new(cores)),
            dummy,
        }
    }

    /// Whether `password` matches `hash`; with no hash (unknown user), checks
    /// the dummy hash and answers false, taking the same time.
    pub async fn verify(&self, hash: Option<&PasswordHash>, password: String) -> bool {
        let known = hash.is_some();
        let hash = hash.unwrap_or(&self.dummy).clone();
        let Ok(_permit) = self.permits.clone().acquire_owned().await else {
            return false;
        };
        let ok = tokio::task::spawn_blocking(move || hash.verify_blocking(password.as_bytes()))
            .await
            .unwrap_or(false);
        ok && known
    }
}

impl Default for Hasher {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn argon2id_hash_verifies_its_password_only() {
        let phc = hash_password("correct horse").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        let hash = PasswordHash::parse(&phc).unwrap();
        let hasher = Hasher::new();
        assert!(hasher.verify(Some(&hash), "correct horse".into()).await);
        assert!(!hasher.verify(Some(&hash), "wrong".into()).await);
        assert!(!hasher.verify(None, "correct horse".into()).await);
    }

    #[tokio::test]
    async fn bcrypt_hashes_verify() {
        let h = bcrypt::hash("pw", 4).unwrap();
        let hash = PasswordHash::parse(&h).unwrap();
        assert!(Hasher::new().verify(Some(&hash), "pw".into()).await);
    }

    #[test]
    fn unknown_formats_are_refused_and_debug_hides_the_hash() {
        assert!(PasswordHash::parse("plaintext").is_err());
        assert!(PasswordHash::parse("$2b$short").is_err());
        let phc = hash_password("x").unwrap();
        assert_eq!(
            format!("{:?}", PasswordHash::parse(&phc).unwrap()),
            "Argon2(***)"
        );
    }
}

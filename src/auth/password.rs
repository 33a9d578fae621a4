//! Password hashes: argon2id (what `gatehouse hash-password` writes, OWASP
//! parameters m=19456 KiB, t=2, p=1) and bcrypt (`$2a$`, `$2b$`, `$2y$`).
//!
//! Verifying is deliberately slow, so it never runs on the async workers:
//! [`Hasher::verify`] hands it to gatehouse's own hashing threads — as many
//! as there are cores, at a lower OS priority (nice 10), so that a login
//! flood takes what the proxy leaves rather than starving it — through a
//! bounded queue: when [`QUEUED_PER_THREAD`] per thread wait already, the
//! login is refused at once ([`Busy`]: 503 with `Retry-After`) instead of
//! waiting behind the flood. An unknown user is checked against a dummy
//! hash so that it takes as long as a wrong password.
//!
//! Each hashing thread keeps one argon2 work area (19 MiB at the OWASP
//! parameters) for its whole life instead of allocating one per check: a
//! 19 MiB block allocated and freed again and again made glibc keep far
//! more than that in its malloc arenas — under the soak (`benches/soak`)
//! gatehouse sat at 232 MiB resident with a fresh area per check and at
//! 60 MiB with one kept per thread.

use argon2::password_hash::{PasswordHash as Phc, PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use crossbeam_channel::{Receiver, Sender};
use subtle::ConstantTimeEq as _;
use tokio::sync::oneshot;

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

    /// Whether `password` matches, an argon2 hash computed in `scratch`.
    fn verify_blocking(&self, password: &[u8], scratch: &mut Vec<Block>) -> bool {
        match self {
            PasswordHash::Argon2(phc) => Phc::new(phc)
                .ok()
                .and_then(|parsed| verify_argon2(&parsed, password, scratch))
                .unwrap_or(false),
            PasswordHash::Bcrypt(h) => bcrypt::verify(password, h).unwrap_or(false),
        }
    }
}

/// The most argon2 blocks (1 KiB each) a hashing thread keeps between
/// checks: a hash asking for more gets a work area of its own each time.
const MAX_KEPT_BLOCKS: usize = 64 * 1024;

/// What `argon2`'s `PasswordVerifier` does — the hash's algorithm, version,
/// parameters and salt, the output compared in constant time — with the
/// work area taken from `scratch` (grown as needed) instead of allocated.
/// `None` when the PHC string cannot be used.
fn verify_argon2(hash: &Phc<'_>, password: &[u8], scratch: &mut Vec<Block>) -> Option<bool> {
    let (salt, expected) = (hash.salt?, hash.hash?);
    let algorithm = Algorithm::try_from(hash.algorithm).ok()?;
    let version = match hash.version {
        Some(v) => Version::try_from(v).ok()?,
        None => Version::default(),
    };
    let params = Params::try_from(hash).ok()?;
    let blocks = params.block_count();
    let mut salt_bytes = [0u8; 64];
    let salt = salt.decode_b64(&mut salt_bytes).ok()?;
    let mut out = vec![0u8; expected.len()];
    let argon2 = Argon2::new(algorithm, version, params);
    let hashed = if blocks <= MAX_KEPT_BLOCKS {
        if scratch.len() < blocks {
            scratch.resize(blocks, Block::default());
        }
        argon2.hash_password_into_with_memory(password, salt, &mut out, &mut scratch[..blocks])
    } else {
        argon2.hash_password_into(password, salt, &mut out)
    };
    hashed.ok()?;
    Some(out.ct_eq(expected.as_bytes()).into())
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

/// How many checks may wait per hashing thread before logins are refused
/// (an argon2id check takes ~20–50 ms on one core: a full queue drains in
/// well under a second).
pub const QUEUED_PER_THREAD: usize = 16;

/// Every hashing thread is busy and the queue is full: try again shortly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("password checks are queued full")]
pub struct Busy;

/// One password to check, and where its answer goes.
struct Job {
    hash: PasswordHash,
    password: String,
    answer: oneshot::Sender<bool>,
}

/// Verifies passwords on gatehouse's hashing threads (see the module).
/// The threads end once the `Hasher` is dropped.
pub struct Hasher {
    jobs: Sender<Job>,
    dummy: PasswordHash,
}

impl Hasher {
    /// One hashing thread per core.
    pub fn new() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self::with_threads(cores, cores * QUEUED_PER_THREAD)
    }

    /// `threads` hashing threads, at most `queue` checks waiting for one.
    pub fn with_threads(threads: usize, queue: usize) -> Self {
        let dummy = hash_password("gatehouse dummy password: never matches")
            .map(PasswordHash::Argon2)
            .expect("hashing a constant password works");
        let (jobs, waiting) = crossbeam_channel::bounded(queue);
        for i in 0..threads.max(1) {
            let waiting = waiting.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("gh-hash-{i}"))
                .spawn(move || hash_thread(&waiting));
            if let Err(e) = spawned {
                // With none at all every login answers 503: said loudly.
                tracing::error!(error = %e, "could not start a password hashing thread");
            }
        }
        Hasher { jobs, dummy }
    }

    /// Whether `password` matches `hash`; with no hash (unknown user), checks
    /// the dummy hash and answers false, taking the same time. [`Busy`] when
    /// the queue is full: nothing was checked.
    pub async fn verify(
        &self,
        hash: Option<&PasswordHash>,
        password: String,
    ) -> Result<bool, Busy> {
        let known = hash.is_some();
        let hash = hash.unwrap_or(&self.dummy).clone();
        let (answer, answered) = oneshot::channel();
        // Full, or (no thread could start) no one to take it.
        self.jobs
            .try_send(Job {
                hash,
                password,
                answer,
            })
            .map_err(|_| Busy)?;
        // A thread that died mid-check answers nothing: no match.
        Ok(answered.await.unwrap_or(false) && known)
    }
}

impl Default for Hasher {
    fn default() -> Self {
        Self::new()
    }
}

/// A hashing thread: lowers its own priority, then checks what comes.
fn hash_thread(waiting: &Receiver<Job>) {
    lower_priority();
    // This thread's argon2 work area, for as long as it lives.
    let mut scratch = Vec::new();
    for job in waiting {
        // The login was abandoned (the client went away): skip the work.
        if job.answer.is_closed() {
            continue;
        }
        let ok = job
            .hash
            .verify_blocking(job.password.as_bytes(), &mut scratch);
        let _ = job.answer.send(ok);
    }
}

/// Nice 10 for the calling thread (on Linux, niceness is per thread). A
/// system that refuses it hashes at the normal priority: said at debug
/// level.
fn lower_priority() {
    use thread_priority::{ThreadPriority, ThreadPriorityValue};
    // The crate's 0–99 scale runs from nice 19 to nice -20: 22 is nice 10.
    const NICE_10: u8 = 22;
    let lower = ThreadPriorityValue::try_from(NICE_10).and_then(|value| {
        thread_priority::set_current_thread_priority(ThreadPriority::Crossplatform(value))
            .map_err(|e| format!("{e:?}"))
    });
    if let Err(e) = lower {
        tracing::debug!(error = %e, "password hashing runs at the normal priority");
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
        assert_eq!(
            hasher.verify(Some(&hash), "correct horse".into()).await,
            Ok(true)
        );
        assert_eq!(hasher.verify(Some(&hash), "wrong".into()).await, Ok(false));
        assert_eq!(hasher.verify(None, "correct horse".into()).await, Ok(false));
    }

    #[tokio::test]
    async fn every_argon2_variant_verifies_as_the_argon2_crate_does() {
        use argon2::password_hash::PasswordVerifier as _;
        let hasher = Hasher::new();
        let mut scratch = Vec::new();
        let salt = SaltString::encode_b64(b"sixteen byte slt").expect("a salt");
        // Largest first: the smaller ones reuse the same work area.
        for (algorithm, version, m, t, p) in [
            (Algorithm::Argon2id, Version::V0x13, 19_456, 2, 1),
            (Algorithm::Argon2id, Version::V0x13, 64, 1, 1),
            (Algorithm::Argon2i, Version::V0x10, 256, 3, 2),
            (Algorithm::Argon2d, Version::V0x13, 512, 1, 4),
        ] {
            let params = Params::new(m, t, p, Some(24)).expect("valid parameters");
            let phc = Argon2::new(algorithm, version, params)
                .hash_password(b"pw", &salt)
                .expect("a hash")
                .to_string();
            let parsed = Phc::new(&phc).expect("a PHC string");
            for (password, right) in [(&b"pw"[..], true), (b"pW", false), (b"", false)] {
                let theirs = Argon2::default().verify_password(password, &parsed).is_ok();
                assert_eq!(theirs, right, "{phc}");
                let ours = verify_argon2(&parsed, password, &mut scratch);
                assert_eq!(ours, Some(right), "{phc}");
            }
            let hash = PasswordHash::parse(&phc).expect("a supported hash");
            assert_eq!(hasher.verify(Some(&hash), "pw".into()).await, Ok(true));
            assert_eq!(hasher.verify(Some(&hash), "pW".into()).await, Ok(false));
        }
        assert_eq!(scratch.len(), 19_456, "grown once, to the largest");
    }

    #[tokio::test]
    async fn bcrypt_hashes_verify() {
        let h = bcrypt::hash("pw", 4).unwrap();
        let hash = PasswordHash::parse(&h).unwrap();
        assert_eq!(
            Hasher::new().verify(Some(&hash), "pw".into()).await,
            Ok(true)
        );
    }

    #[tokio::test]
    async fn a_full_queue_refuses_at_once_and_takes_checks_again_once_drained() {
        let hash = PasswordHash::parse(&hash_password("pw").unwrap()).unwrap();
        // One thread, one place in the queue: of ten at once, at most two
        // are taken (one hashing, one waiting); the rest are refused without
        // waiting for any hash.
        let hasher = Hasher::with_threads(1, 1);
        let started = std::time::Instant::now();
        let all = (0..10).map(|_| hasher.verify(Some(&hash), "pw".into()));
        let answers = futures_util::future::join_all(all).await;
        let taken = answers.iter().filter(|a| **a == Ok(true)).count();
        let refused = answers.iter().filter(|a| **a == Err(Busy)).count();
        assert_eq!(taken + refused, 10, "{answers:?}");
        assert!((1..=2).contains(&taken), "{answers:?}");
        // Drained: taken again.
        assert_eq!(hasher.verify(Some(&hash), "pw".into()).await, Ok(true));
        assert!(started.elapsed() < std::time::Duration::from_secs(30));
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn hashing_threads_run_at_nice_10() {
        let hasher = Hasher::with_threads(2, 2);
        let hash = PasswordHash::parse(&hash_password("pw").unwrap()).unwrap();
        // Both threads have lowered themselves once one check went through
        // each (they do it first thing).
        for _ in 0..4 {
            assert_eq!(hasher.verify(Some(&hash), "pw".into()).await, Ok(true));
        }
        let mut nices = Vec::new();
        for task in std::fs::read_dir("/proc/self/task").unwrap() {
            let dir = task.unwrap().path();
            let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
            if !comm.starts_with("gh-hash-") {
                continue;
            }
            let stat = std::fs::read_to_string(dir.join("stat")).unwrap();
            // Fields after the parenthesised name; nice is field 19.
            let after = &stat[stat.rfind(')').unwrap() + 2..];
            let nice: i32 = after.split(' ').nth(16).unwrap().parse().unwrap();
            nices.push(nice);
        }
        assert!(nices.len() >= 2, "{nices:?}");
        assert!(nices.iter().all(|n| *n == 10), "{nices:?}");
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

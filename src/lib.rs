//! gatehouse: a TLS-terminating reverse proxy that authenticates requests
//! for any HTTP backend.
//!
//! The modules follow a request's path; each uses only those after it
//! (`tests/layers.rs` fails the build when one looks up):
//!
//! - [`server`] — listeners, TLS, connections, reload, shutdown, the
//!   redirect and admin listeners, upkeep;
//! - [`pipeline`] — the stages every request passes, in order: normalize,
//!   client IP, CORS, rate limit, route (to a target), authenticate (a
//!   session's CSRF check, or sending a browser to sign in), authorize,
//!   quotas, then the target (a response's token usage read as it
//!   streams), and the log; one rescue for their errors;
//! - [`endpoints`] — gatehouse's own route targets: `/login`,
//!   `/auth/refresh`, `/auth/logout`, `/auth/me`, the browser sign-in
//!   page and form `/auth/login`, and sign-in through an identity provider
//!   (`/auth/oidc/{id}/start` and its callback);
//! - [`auth`] — verifying credentials (JWT, JWKS, API keys, passwords,
//!   users, browser sessions, identity providers: OIDC and GitHub) and the
//!   token logic;
//! - [`store`] — refresh families, revocations, lockouts, browser sessions,
//!   sign-in flows, quota counters and their periods (embedded or Redis);
//! - [`upstream`] — backend pools, header rewriting, streaming, tunnels;
//!
//! and the ground floor they all stand on: [`config`] (the YAML model and
//! its validation, once, at the door), [`error`] (SPEC §5's vocabulary),
//! [`metrics`], [`body`] (request and response bodies, their limits and
//! timers), [`host`] (the one parser of hosts and origins), [`activity`]
//! (what a connection did when: the clock of its timeouts, and its slot),
//! [`clock`] (the time, injectable), [`files`] (private files) and
//! [`text`] (what a header value or a normalized path may hold).
//!
//! [`Gateway::run`] is what the binary does after the config is loaded:
//! bind, serve, and return after a graceful shutdown.

pub mod activity;
pub mod auth;
pub mod body;
pub mod clock;
pub mod config;
pub mod endpoints;
pub mod error;
pub mod files;
pub mod host;
pub mod metrics;
pub mod pipeline;
pub mod server;
pub mod store;
pub mod text;
pub mod upstream;

/// The hasher of gatehouse's hot-path maps (rate-limit buckets, revoked
/// tokens, route indexes): foldhash, randomly seeded per map — several times
/// cheaper than std's SipHash on the short keys these maps hold, which are
/// IPs, server-made ids and config names rather than arbitrary client input.
pub type FastHash = foldhash::fast::RandomState;

pub use config::Config;
pub use server::{Gateway, Listeners, StartError};

/// Installs aws-lc-rs as the process's crypto provider for rustls and
/// jsonwebtoken. Call once at start-up; later calls are harmless.
pub fn install_crypto_providers() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
}

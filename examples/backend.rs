//! The example backend in Rust, to run behind gatehouse:
//! `cargo run --example backend -- [ADDR]` (default `127.0.0.1:8000`, the
//! upstream the shipped config points at). The API is in `backend_app.rs`.

#[path = "backend_app.rs"]
mod backend_app;

use std::process::ExitCode;

const DEFAULT_ADDR: &str = "127.0.0.1:8000";

#[tokio::main]
async fn main() -> ExitCode {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| DEFAULT_ADDR.to_owned());
    let listener = match tokio::net::TcpListener::bind(&addr).await {
        Ok(listener) => listener,
        Err(err) => {
            eprintln!("backend: cannot listen on {addr}: {err}");
            return ExitCode::FAILURE;
        }
    };
    match listener.local_addr() {
        Ok(bound) => println!("backend listening on http://{bound}"),
        Err(err) => eprintln!("backend: listening, but no local address: {err}"),
    }
    // `/verified/whoami` checks gatehouse's identity assertion against the
    // keys at GATEHOUSE_JWKS_URL, if set (GATEHOUSE_AUDIENCE, default
    // `chatbot`; GATEHOUSE_ISSUER, default `https://localhost`).
    let keys = std::env::var("GATEHOUSE_JWKS_URL").ok().map(|url| {
        let env =
            |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.to_owned());
        std::sync::Arc::new(backend_app::assertion::AssertionKeys::new(
            &url,
            &env("GATEHOUSE_AUDIENCE", "chatbot"),
            &env("GATEHOUSE_ISSUER", "https://localhost"),
        ))
    });
    if let Err(err) = backend_app::serve(listener, keys).await {
        eprintln!("backend: {err}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

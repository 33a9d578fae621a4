//! The floor under gatehouse's load benchmark (`benches/load/run.sh`): the
//! same stack — a Tokio multi-thread runtime, rustls with aws-lc-rs, hyper's
//! HTTP/1.1 + HTTP/2 server (hyper-util `auto`), hyper-util's pooled client —
//! forwarding every request as it is, with no auth, no limits, no header
//! rewriting and no logging. What gatehouse costs above this row is its own
//! work; what this row costs above nginx is the stack's.
//!
//! Not a proxy to deploy: it trusts every header and checks nothing.
//!
//! `cargo run --release --example floor_proxy -- LISTEN CERT KEY UPSTREAM`
//! e.g. `127.0.0.1:8443 cert.pem key.pem 127.0.0.1:8080`.

use std::convert::Infallible;
use std::process::ExitCode;
use std::sync::Arc;

use http::{Request, Response, StatusCode, Uri};
use http_body_util::{combinators::BoxBody, BodyExt, Empty};
use hyper::body::{Bytes, Incoming};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

type Upstream = Client<HttpConnector, Incoming>;
type Answer = Response<BoxBody<Bytes, hyper::Error>>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [listen, cert, key, upstream] = args.as_slice() else {
        eprintln!("usage: floor_proxy LISTEN CERT KEY UPSTREAM");
        return ExitCode::FAILURE;
    };
    match run(listen, cert, key, upstream) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("floor_proxy: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(
    listen: &str,
    cert: &str,
    key: &str,
    upstream: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let chain = CertificateDer::pem_file_iter(cert)?.collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_file(key)?;
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let authority: http::uri::Authority = upstream.parse()?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client: Upstream = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_max_idle_per_host(256)
            .build(connector);
        let listener = tokio::net::TcpListener::bind(listen).await?;
        println!(
            "floor_proxy listening on https://{}",
            listener.local_addr()?
        );
        loop {
            let (tcp, _) = listener.accept().await?;
            let _ = tcp.set_nodelay(true);
            let (acceptor, client, authority) =
                (acceptor.clone(), client.clone(), authority.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(move |req| {
                    forward(client.clone(), authority.clone(), req)
                });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(tls), service)
                    .await;
            });
        }
    })
}

async fn forward(
    client: Upstream,
    authority: http::uri::Authority,
    req: Request<Incoming>,
) -> Result<Answer, Infallible> {
    let (mut parts, body) = req.into_parts();
    let mut uri = http::uri::Parts::default();
    uri.scheme = Some(http::uri::Scheme::HTTP);
    uri.authority = Some(authority);
    uri.path_and_query = parts.uri.path_and_query().cloned();
    parts.version = http::Version::HTTP_11;
    let Ok(uri) = Uri::from_parts(uri) else {
        return Ok(status(StatusCode::BAD_REQUEST));
    };
    parts.uri = uri;
    Ok(
        match client.request(Request::from_parts(parts, body)).await {
            Ok(res) => {
                let (mut parts, body) = res.into_parts();
                parts.version = http::Version::HTTP_11;
                Response::from_parts(parts, body.boxed())
            }
            Err(_) => status(StatusCode::BAD_GATEWAY),
        },
    )
}

fn status(code: StatusCode) -> Answer {
    let mut res = Response::new(Empty::new().map_err(|never| match never {}).boxed());
    *res.status_mut() = code;
    res
}

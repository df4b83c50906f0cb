//! A local health endpoint for rollouts' health gates: `GET /health` answers 200 `ok`, on
//! 127.0.0.1 and a free port, for as long as the test's runtime lives.

use std::net::SocketAddr;

/// Starts the endpoint; its address (give it to the worker's `--http-allow-hosts`).
pub async fn serve() -> SocketAddr {
    let app = axum::Router::new().route("/health", axum::routing::get(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("a local address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

//! Riposte's transport security, shared by the orchestrator, the worker and the CLI.
//!
//! - [`pem`]: certificates and keys read from PEM files; an error names the file, never its
//!   content.
//! - [`server`]: the server side of every listener: a rustls configuration reloaded from its
//!   files when they change (or on demand), client certificates verified against the client CA
//!   whenever one is presented.
//! - [`identity`]: who a verified client certificate names: `spiffe://DOMAIN/worker/NAME` or
//!   `spiffe://DOMAIN/operator/NAME` in its subject alternative names.
//! - [`client`]: the gRPC client side: the CA to trust and an optional client certificate.
//! - [`issue`]: a small certificate authority: create one, issue server, worker and operator
//!   certificates from it (used by `--dev` and by `riposte certs`).
//!
//! Every configuration names the ring crypto provider itself, so no process-wide default has
//! to be installed.

pub mod client;
pub mod identity;
pub mod issue;
pub mod pem;
pub mod server;

pub use identity::{Identity, Role};

/// The crypto provider of every configuration built here.
fn provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    std::sync::Arc::new(rustls::crypto::ring::default_provider())
}

pub use tokio_rustls;

//! A local OpenID identity provider as Entra ID publishes itself: a JWKS endpoint on loopback
//! serving the keys this test generated (ECDSA P-256), counting its requests, and tokens
//! signed with them (or forged, for the refusal cases).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use serde_json::{Value, json};

/// The tenant the tokens are issued in.
pub const TENANT: &str = "8f4b2c1e-1111-4c4c-9e9e-0123456789ab";
/// The audience the orchestrator expects.
pub const AUDIENCE: &str = "api://riposte-e2e";

/// One signing key: its id, its private half, its public JWK and point.
pub struct Key {
    pub kid: String,
    encoding: EncodingKey,
    pub jwk: Value,
    /// The public key's SEC1 point.
    pub public: Vec<u8>,
}

impl Key {
    /// A fresh P-256 key named `kid`.
    pub fn generate(kid: &str) -> Key {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .expect("a P-256 key");
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .expect("the key reads back");
        let public = pair.public_key().as_ref().to_vec();
        let (x, y) = public[1..].split_at(32);
        Key {
            kid: kid.into(),
            encoding: EncodingKey::from_ec_der(pkcs8.as_ref()),
            jwk: json!({"kty": "EC", "crv": "P-256", "use": "sig", "kid": kid, "x": b64(x), "y": b64(y)}),
            public,
        }
    }

    /// `claims` signed with this key, the header naming `kid`.
    pub fn sign(&self, kid: &str, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(kid.into());
        jsonwebtoken::encode(&header, claims, &self.encoding).expect("signed")
    }
}

/// The identity provider: its JWKS endpoint and the keys it publishes.
pub struct Issuer {
    addr: SocketAddr,
    requests: Arc<AtomicUsize>,
    _server: tokio::task::JoinHandle<()>,
}

impl Issuer {
    /// Serves the JWKS of `keys` on 127.0.0.1, port 0.
    pub async fn start(keys: &[&Key]) -> Issuer {
        let keys: Vec<Value> = keys.iter().map(|k| k.jwk.clone()).collect();
        let published = Arc::new(keys);
        let requests = Arc::new(AtomicUsize::new(0));
        let (shared, counted) = (published.clone(), requests.clone());
        let app = axum::Router::new().route(
            "/discovery/v2.0/keys",
            axum::routing::get(move || {
                let (shared, counted) = (shared.clone(), counted.clone());
                async move {
                    counted.fetch_add(1, Ordering::SeqCst);
                    let body = json!({ "keys": *shared }).to_string();
                    (
                        [(axum::http::header::CONTENT_TYPE, "application/json")],
                        body,
                    )
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port");
        let addr = listener.local_addr().expect("its address");
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("the JWKS server");
        });
        Issuer {
            addr,
            requests,
            _server: server,
        }
    }

    /// `iss` of the tokens, as Entra ID v2 writes it.
    pub fn issuer(&self) -> String {
        format!("http://{}/{TENANT}/v2.0", self.addr)
    }

    pub fn jwks_url(&self) -> String {
        format!("http://{}/discovery/v2.0/keys", self.addr)
    }

    /// How many times the JWKS was fetched.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// The orchestrator's flags trusting this issuer.
    pub fn flags(&self) -> Vec<String> {
        vec![
            "--oidc-issuer".into(),
            self.issuer(),
            "--oidc-audience".into(),
            AUDIENCE.into(),
            "--oidc-jwks-url".into(),
            self.jwks_url(),
            "--oidc-tenant".into(),
            TENANT.into(),
        ]
    }

    /// The claims of a valid access token for user `oid` in `groups`, valid from a minute
    /// ago for an hour at `now_s`.
    pub fn claims(&self, oid: &str, groups: &[&str], now_s: i64) -> Value {
        json!({
            "iss": self.issuer(),
            "aud": AUDIENCE,
            "tid": TENANT,
            "oid": oid,
            "sub": format!("pairwise-{oid}"),
            "preferred_username": format!("{oid}@example.net"),
            "groups": groups,
            "iat": now_s - 60,
            "nbf": now_s - 60,
            "exp": now_s + 3600,
        })
    }
}

/// A token with a header and claims of one's choosing and a signature that is not one (for
/// `alg: none` and friends).
pub fn forged(header: &Value, claims: &Value, signature: &str) -> String {
    format!(
        "{}.{}.{signature}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    )
}

/// `claims` signed with HS256 using `secret` (an attacker using the public key as the secret).
pub fn hs256(kid: &str, claims: &Value, secret: &[u8]) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(kid.into());
    let secret = EncodingKey::from_secret(secret).expect("an HMAC key");
    jsonwebtoken::encode(&header, claims, &secret).expect("signed")
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

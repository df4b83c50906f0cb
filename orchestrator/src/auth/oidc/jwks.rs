//! The identity provider's signing keys: its JWKS fetched over HTTPS (bounded in time and
//! size), parsed into the keys a token may name, and cached. The cache is fetched again when a
//! token names a key it lacks, at most once per [`REFRESH_THROTTLE_S`] whoever asks (concurrent
//! callers wait for the one fetch in flight), and when it is older than [`KEYS_MAX_AGE_S`]. A
//! fetch that fails keeps the keys of the last one that succeeded.
//!
//! Time is the caller's `now_s`: nothing here reads a clock.

use std::error::Error as _;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;

/// Time to open a connection to the JWKS URL.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Time a whole fetch may take, the body included.
pub(super) const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest JWKS read.
pub(super) const JWKS_BYTES_MAX: usize = 1024 * 1024;
/// Most keys a JWKS may hold.
pub(super) const KEYS_MAX: usize = 100;
/// Least time between two fetches, in seconds.
pub(super) const REFRESH_THROTTLE_S: u64 = 30;
/// Age past which the keys are fetched again, in seconds.
pub(super) const KEYS_MAX_AGE_S: u64 = 3600;
/// Longest `kid` kept.
const KID_BYTES_MAX: usize = 256;
/// Smallest and largest RSA modulus accepted, in bits.
const RSA_BITS: std::ops::RangeInclusive<usize> = 2048..=8192;

/// The type of a key, which decides the algorithms it verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum KeyType {
    Rsa,
    P256,
    P384,
}

impl KeyType {
    /// Whether a signature made with `alg` is verified with a key of this type.
    pub(super) fn fits(self, alg: Algorithm) -> bool {
        use Algorithm::*;
        matches!(
            (self, alg),
            (KeyType::Rsa, RS256 | RS384 | RS512 | PS256)
                | (KeyType::P256, ES256)
                | (KeyType::P384, ES384)
        )
    }
}

/// One verification key of the JWKS.
pub(super) struct Key {
    pub(super) kid: Option<String>,
    pub(super) key_type: KeyType,
    /// The JWK's `alg`, when it names one: the one algorithm the key then verifies.
    pub(super) alg: Option<Algorithm>,
    pub(super) decoding: DecodingKey,
}

impl Key {
    /// Whether this key verifies a signature made with `alg`.
    pub(super) fn fits(&self, alg: Algorithm) -> bool {
        self.key_type.fits(alg) && self.alg.is_none_or(|a| a == alg)
    }
}

/// The keys of one fetch.
#[derive(Default)]
pub(super) struct KeySet {
    /// At most [`KEYS_MAX`], so a lookup by `kid` goes through them in order.
    keys: Vec<Arc<Key>>,
    /// When they were fetched; `None` until a fetch succeeds.
    pub(super) fetched_s: Option<i64>,
    /// How many fetches succeeded before this one, so that a caller that waited for a fetch
    /// sees whether one happened meanwhile.
    generation: u64,
}

/// What a key set holds for a token.
pub(super) enum Lookup {
    Found(Arc<Key>),
    /// Keys named by the token's `kid`, none of a type fitting its algorithm.
    Unfit,
    /// No key named by the token's `kid`; without a `kid`, not exactly one key fitting its
    /// algorithm.
    Missing,
}

impl KeySet {
    /// The key verifying a token that names `kid` and `alg`.
    pub(super) fn find(&self, kid: Option<&str>, alg: Algorithm) -> Lookup {
        match kid {
            Some(kid) => {
                let mut named = self
                    .keys
                    .iter()
                    .filter(|k| k.kid.as_deref() == Some(kid))
                    .peekable();
                if named.peek().is_none() {
                    return Lookup::Missing;
                }
                named
                    .find(|k| k.fits(alg))
                    .map_or(Lookup::Unfit, |k| Lookup::Found(k.clone()))
            }
            None => {
                let mut fitting = self.keys.iter().filter(|k| k.fits(alg));
                match (fitting.next(), fitting.next()) {
                    (Some(key), None) => Lookup::Found(key.clone()),
                    _ => Lookup::Missing,
                }
            }
        }
    }

    /// Whether the keys are due to be fetched again at `now_s`.
    pub(super) fn stale(&self, now_s: i64) -> bool {
        self.fetched_s
            .is_some_and(|at| now_s.abs_diff(at) >= KEYS_MAX_AGE_S)
    }
}

/// The cached keys and the one way to fetch them again.
pub(super) struct Keys {
    url: reqwest::Url,
    client: reqwest::Client,
    current: RwLock<Arc<KeySet>>,
    /// Held across a fetch, so that concurrent callers share the one in flight.
    refresh: tokio::sync::Mutex<Attempts>,
    /// Why the last fetch failed, while no later one succeeded.
    failure: Mutex<Option<String>>,
}

/// When a fetch was last tried.
#[derive(Default)]
struct Attempts {
    last_s: Option<i64>,
}

impl Keys {
    pub(super) fn new(url: reqwest::Url, client: reqwest::Client) -> Keys {
        Keys {
            url,
            client,
            current: RwLock::default(),
            refresh: tokio::sync::Mutex::default(),
            failure: Mutex::default(),
        }
    }

    /// The keys of the last fetch that succeeded.
    pub(super) fn current(&self) -> Arc<KeySet> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Why the keys are unavailable: the last fetch's failure.
    pub(super) fn failure(&self) -> String {
        self.failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .unwrap_or_else(|| "no fetch has succeeded yet".to_string())
    }

    /// Fetches the keys again, unless another caller did since `seen` was read or a fetch was
    /// tried within [`REFRESH_THROTTLE_S`] of `now_s`. With `wait`, a caller finding a fetch in
    /// flight waits for it; without, it returns at once.
    pub(super) async fn refresh(&self, seen: &KeySet, now_s: i64, wait: bool) {
        let mut attempts = match wait {
            true => self.refresh.lock().await,
            false => match self.refresh.try_lock() {
                Ok(attempts) => attempts,
                Err(_) => return,
            },
        };
        if self.current().generation != seen.generation {
            return;
        }
        if attempts
            .last_s
            .is_some_and(|last| now_s.abs_diff(last) < REFRESH_THROTTLE_S)
        {
            return;
        }
        attempts.last_s = Some(now_s);
        match self.fetch().await {
            Ok(keys) => {
                tracing::info!(url = %self.url, keys = keys.len(), "oidc.keys_fetched");
                let set = KeySet {
                    keys,
                    fetched_s: Some(now_s),
                    generation: seen.generation + 1,
                };
                *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(set);
                *self.failure.lock().unwrap_or_else(PoisonError::into_inner) = None;
            }
            Err(why) => {
                tracing::warn!(url = %self.url, reason = %why, "oidc.keys_fetch_failed");
                *self.failure.lock().unwrap_or_else(PoisonError::into_inner) = Some(why);
            }
        }
    }

    /// One GET of the JWKS URL, its body read up to [`JWKS_BYTES_MAX`], parsed.
    async fn fetch(&self) -> Result<Vec<Arc<Key>>, String> {
        let failed = |e: reqwest::Error| causes(&e);
        let mut response = self
            .client
            .get(self.url.clone())
            .send()
            .await
            .map_err(failed)?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("{} answered {status}", self.url));
        }
        let too_large = || format!("the JWKS is larger than {JWKS_BYTES_MAX} bytes");
        if response
            .content_length()
            .is_some_and(|n| n > JWKS_BYTES_MAX as u64)
        {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(failed)? {
            if body.len() + chunk.len() > JWKS_BYTES_MAX {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        parse(&body)
    }
}

/// An error and its causes, joined by `: ` (reqwest's own text names only the URL).
fn causes(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A JWK as published: only the members this verifier reads.
#[derive(Deserialize)]
struct Jwk {
    kty: String,
    kid: Option<String>,
    #[serde(rename = "use")]
    usage: Option<String>,
    key_ops: Option<Vec<String>>,
    alg: Option<String>,
    n: Option<String>,
    e: Option<String>,
    crv: Option<String>,
    x: Option<String>,
    y: Option<String>,
}

/// The verification keys of a JWKS document. A key that cannot verify one of the allowed
/// algorithms (an encryption key, a symmetric key, an RSA key under 2048 bits, another curve)
/// is left out; a document that is not a JWKS, or has more than [`KEYS_MAX`] keys, is an error.
/// Errors never quote the document.
pub(super) fn parse(body: &[u8]) -> Result<Vec<Arc<Key>>, String> {
    #[derive(Deserialize)]
    struct Document {
        keys: Vec<serde_json::Value>,
    }
    let document: Document = serde_json::from_slice(body).map_err(|e| {
        format!(
            "the JWKS is not a JSON object with a keys array (line {}, column {})",
            e.line(),
            e.column()
        )
    })?;
    if document.keys.len() > KEYS_MAX {
        return Err(format!(
            "the JWKS has {} keys, more than {KEYS_MAX}",
            document.keys.len()
        ));
    }
    let mut keys = Vec::with_capacity(document.keys.len());
    for (index, value) in document.keys.into_iter().enumerate() {
        let key = serde_json::from_value::<Jwk>(value)
            .map_err(|_| "it is not a JWK")
            .and_then(key);
        match key {
            Ok(key) => keys.push(Arc::new(key)),
            Err(why) => tracing::debug!(index, reason = why, "oidc.key_skipped"),
        }
    }
    Ok(keys)
}

/// The verification key of `jwk`, or why it is not one.
fn key(jwk: Jwk) -> Result<Key, &'static str> {
    if jwk.usage.as_deref().is_some_and(|u| u != "sig") {
        return Err("it is not a signing key");
    }
    if jwk
        .key_ops
        .as_ref()
        .is_some_and(|ops| !ops.iter().any(|op| op == "verify"))
    {
        return Err("its key_ops exclude verify");
    }
    if jwk
        .kid
        .as_ref()
        .is_some_and(|kid| kid.len() > KID_BYTES_MAX)
    {
        return Err("its kid is too long");
    }
    let alg = match jwk.alg.as_deref() {
        None => None,
        Some(alg) => Some(super::allowed(alg).ok_or("its alg is not an allowed algorithm")?),
    };
    let (key_type, decoding) = match jwk.kty.as_str() {
        "RSA" => {
            let n = decoded(jwk.n.as_deref(), "it has no valid n")?;
            let e = decoded(jwk.e.as_deref(), "it has no valid e")?;
            let n = without_leading_zeros(&n);
            let e = without_leading_zeros(&e);
            let bits = n.len() * 8 - n.first().map_or(8, |b| b.leading_zeros() as usize);
            if !RSA_BITS.contains(&bits) {
                return Err("its modulus is not between 2048 and 8192 bits");
            }
            if e.is_empty() || e.len() > 8 {
                return Err("its exponent is out of range");
            }
            (KeyType::Rsa, DecodingKey::from_rsa_raw_components(n, e))
        }
        "EC" => {
            let (key_type, size) = match jwk.crv.as_deref() {
                Some("P-256") => (KeyType::P256, 32),
                Some("P-384") => (KeyType::P384, 48),
                _ => return Err("its curve is neither P-256 nor P-384"),
            };
            let x = decoded(jwk.x.as_deref(), "it has no valid x")?;
            let y = decoded(jwk.y.as_deref(), "it has no valid y")?;
            if x.len() != size || y.len() != size {
                return Err("its coordinates do not fit its curve");
            }
            // The uncompressed SEC1 point, as the verifier takes it.
            let mut point = Vec::with_capacity(1 + 2 * size);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            (key_type, DecodingKey::from_ec_der(&point))
        }
        _ => return Err("its type is neither RSA nor EC"),
    };
    if alg.is_some_and(|alg| !key_type.fits(alg)) {
        return Err("its alg does not fit its type");
    }
    Ok(Key {
        kid: jwk.kid,
        key_type,
        alg,
        decoding,
    })
}

/// The bytes of a base64url member, or `missing` when it is absent or not base64url.
fn decoded(member: Option<&str>, missing: &'static str) -> Result<Vec<u8>, &'static str> {
    let member = member.ok_or(missing)?;
    URL_SAFE_NO_PAD.decode(member).map_err(|_| missing)
}

fn without_leading_zeros(bytes: &[u8]) -> &[u8] {
    let first = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    &bytes[first..]
}

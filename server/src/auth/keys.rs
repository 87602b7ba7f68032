//! An optional asymmetric key for access tokens (ES256 for a P-256 key, RS256 for an RSA key, from
//! a PEM file), published as a JWK at `/.well-known/jwks.json` with its RFC 7638 thumbprint as
//! `kid`, so clients (auth-js `getClaims`) can verify tokens without the shared secret. Without
//! one, tokens are HS256 with the project secret and the JWKS is empty.
//! Rejects: PEM that is neither an EC P-256 nor an RSA private key.

use jsonwebtoken::jwk::{Jwk, KeyAlgorithm, PublicKeyUse, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use serde_json::{Value, json};

#[derive(Debug, thiserror::Error)]
#[error("invalid JWT signing key: {0}")]
pub struct KeyError(pub String);

pub struct SigningKey {
    pub alg: Algorithm,
    pub kid: String,
    encoding: EncodingKey,
    /// The public half, as published.
    pub jwk: Jwk,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("SigningKey")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    pub fn from_pem(pem: &[u8]) -> Result<SigningKey, KeyError> {
        let (alg, encoding) = match EncodingKey::from_ec_pem(pem) {
            Ok(k) => (Algorithm::ES256, k),
            Err(_) => match EncodingKey::from_rsa_pem(pem) {
                Ok(k) => (Algorithm::RS256, k),
                Err(e) => {
                    return Err(KeyError(format!(
                        "neither an EC P-256 nor an RSA private key: {e}"
                    )));
                }
            },
        };
        let mut jwk =
            Jwk::from_encoding_key(&encoding, alg).map_err(|e| KeyError(e.to_string()))?;
        let kid = jwk.thumbprint(ThumbprintHash::SHA256);
        jwk.common.key_id = Some(kid.clone());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        jwk.common.key_algorithm = Some(match alg {
            Algorithm::ES256 => KeyAlgorithm::ES256,
            _ => KeyAlgorithm::RS256,
        });
        // Sign once so a key the backend cannot use fails at start-up, not at the first sign-in.
        jsonwebtoken::encode(&Header::new(alg), &json!({}), &encoding)
            .map_err(|e| KeyError(e.to_string()))?;
        Ok(SigningKey {
            alg,
            kid,
            encoding,
            jwk,
        })
    }

    /// For the shared verifier: `verifier.with_key(Some(kid), alg, key.decoding_key()?)`.
    pub fn decoding_key(&self) -> Result<DecodingKey, KeyError> {
        DecodingKey::from_jwk(&self.jwk).map_err(|e| KeyError(e.to_string()))
    }

    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding)
            .expect("the key signed at start-up; signing a JSON object cannot fail")
    }
}

/// The JWKS document.
pub fn jwks(key: Option<&SigningKey>) -> Value {
    match key {
        Some(k) => json!({ "keys": [k.jwk] }),
        None => json!({ "keys": [] }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jwt::Verifier;

    fn ec_pem() -> String {
        rcgen::KeyPair::generate().unwrap().serialize_pem()
    }

    #[test]
    fn es256_tokens_verify_against_the_published_jwk() {
        let key = SigningKey::from_pem(ec_pem().as_bytes()).unwrap();
        assert_eq!(key.alg, Algorithm::ES256);
        let token = key.sign(&json!({"role": "authenticated", "sub": "u"}));
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.kid.as_deref(), Some(key.kid.as_str()));
        let doc = jwks(Some(&key));
        assert_eq!(doc["keys"][0]["kid"], key.kid);
        assert_eq!(doc["keys"][0]["kty"], "EC");
        assert_eq!(doc["keys"][0]["use"], "sig");
        assert!(doc["keys"][0].get("d").is_none(), "no private part");
        let published: Jwk = serde_json::from_value(doc["keys"][0].clone()).unwrap();
        let v = Verifier::hs256(b"secret-secret-secret-secret-secret").with_key(
            Some(key.kid.clone()),
            Algorithm::ES256,
            DecodingKey::from_jwk(&published).unwrap(),
        );
        assert_eq!(v.caller_from_token(&token).unwrap().role, "authenticated");
        // Another key's token does not pass.
        let other = SigningKey::from_pem(ec_pem().as_bytes()).unwrap();
        assert!(
            v.verify(&other.sign(&json!({"role": "service_role"})))
                .is_err()
        );
    }

    #[test]
    fn garbage_is_refused() {
        assert!(SigningKey::from_pem(b"not a key").is_err());
        assert_eq!(jwks(None), json!({"keys": []}));
    }
}

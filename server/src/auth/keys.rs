//! An optional asymmetric key for access tokens (ES256 for a P-256 key, RS256 for an RSA key),
//! published as a JWK at `/.well-known/jwks.json`, so clients (auth-js `getClaims`) can verify
//! tokens without the shared secret. Without one, tokens are HS256 with the project secret and the
//! JWKS is empty. The file is a PEM private key (its `kid` is its RFC 7638 thumbprint) or, as
//! Supabase's signing keys are, a private JWK, a JSON array of JWKs or a JWKS `{"keys": […]}`: the
//! first RSA or P-256 key with its private part whose `key_ops` (if given) include `sign`, keeping
//! its own `kid` (tokens made elsewhere with that key and `kid` verify).
//! Rejects: PEM that is neither an EC P-256 nor an RSA private key; JSON with no such key.

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
    /// The key file's content: a JWK / JWK array / JWKS when it starts with `{` or `[`, else PEM.
    pub fn from_file_content(text: &[u8]) -> Result<SigningKey, KeyError> {
        match text.trim_ascii_start().first() {
            Some(b'{' | b'[') => Self::from_jwk_json(text),
            _ => Self::from_pem(text),
        }
    }

    fn from_jwk_json(text: &[u8]) -> Result<SigningKey, KeyError> {
        let doc: Value =
            serde_json::from_slice(text).map_err(|e| KeyError(format!("not JSON: {e}")))?;
        let keys = match doc {
            Value::Array(a) => a,
            Value::Object(mut o) => match o.remove("keys") {
                Some(Value::Array(a)) => a,
                Some(_) => return Err(KeyError("`keys` is not an array".into())),
                None => vec![Value::Object(o)],
            },
            _ => return Err(KeyError("neither a JWK nor a JWKS".into())),
        };
        let can_sign = |k: &Value| {
            k["d"].is_string()
                && k["key_ops"]
                    .as_array()
                    .is_none_or(|ops| ops.iter().any(|o| o == "sign"))
        };
        let key = keys
            .iter()
            .find(|k| can_sign(k) && matches!(k["kty"].as_str(), Some("RSA" | "EC")))
            .ok_or_else(|| {
                KeyError("no RSA or EC private key with `sign` among its key_ops".into())
            })?;
        let part = |name: &str| -> Result<Vec<u8>, KeyError> {
            let text = key[name]
                .as_str()
                .ok_or_else(|| KeyError(format!("the JWK has no `{name}`")))?;
            base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, text)
                .map_err(|_| KeyError(format!("the JWK's `{name}` is not base64url")))
        };
        let (alg, encoding) = if key["kty"] == "RSA" {
            use rsa::pkcs1::EncodeRsaPrivateKey;
            let int = |name: &str| part(name).map(|b| rsa::BigUint::from_bytes_be(&b));
            let private = rsa::RsaPrivateKey::from_components(
                int("n")?,
                int("e")?,
                int("d")?,
                vec![int("p")?, int("q")?],
            )
            .map_err(|e| KeyError(format!("the RSA JWK: {e}")))?;
            let der = private
                .to_pkcs1_der()
                .map_err(|e| KeyError(format!("the RSA JWK: {e}")))?;
            (Algorithm::RS256, EncodingKey::from_rsa_der(der.as_bytes()))
        } else {
            use p256::pkcs8::EncodePrivateKey;
            if key["crv"] != "P-256" {
                return Err(KeyError("an EC JWK must be on curve P-256".into()));
            }
            let secret = p256::SecretKey::from_slice(&part("d")?)
                .map_err(|e| KeyError(format!("the EC JWK: {e}")))?;
            let der = secret
                .to_pkcs8_der()
                .map_err(|e| KeyError(format!("the EC JWK: {e}")))?;
            (Algorithm::ES256, EncodingKey::from_ec_der(der.as_bytes()))
        };
        Self::with_encoding(alg, encoding, key["kid"].as_str().map(str::to_string))
    }

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
        Self::with_encoding(alg, encoding, None)
    }

    /// `kid`: the key's own, or else its thumbprint.
    fn with_encoding(
        alg: Algorithm,
        encoding: EncodingKey,
        kid: Option<String>,
    ) -> Result<SigningKey, KeyError> {
        let mut jwk =
            Jwk::from_encoding_key(&encoding, alg).map_err(|e| KeyError(e.to_string()))?;
        let kid = kid.unwrap_or_else(|| jwk.thumbprint(ThumbprintHash::SHA256));
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
        // JSON key files with nothing to sign with.
        for text in [
            "{",
            "[]",
            "42",
            r#"{"keys": 1}"#,
            // Supabase's HS256 key: symmetric, not a signing key for doska's JWKS.
            r#"[{"kty": "oct", "k": "c2VjcmV0", "kid": "h", "key_ops": ["sign", "verify"]}]"#,
            // A public RSA key (no `d`).
            r#"{"kty": "RSA", "n": "AQAB", "e": "AQAB", "kid": "p"}"#,
            // A private key that may only verify.
            r#"{"kty": "RSA", "n": "AQAB", "e": "AQAB", "d": "AQAB", "key_ops": ["verify"]}"#,
            // Parts that are not base64url, or not a key.
            r#"{"kty": "RSA", "n": "!!", "e": "AQAB", "d": "AQAB", "p": "AQ", "q": "AQ"}"#,
            r#"{"kty": "RSA", "n": "AQAB", "e": "AQAB", "d": "AQAB", "p": "Aw", "q": "BQ"}"#,
            r#"{"kty": "EC", "crv": "P-384", "d": "AQAB", "x": "", "y": ""}"#,
            r#"{"kty": "EC", "crv": "P-256", "d": "AA", "x": "", "y": ""}"#,
        ] {
            assert!(
                SigningKey::from_file_content(text.as_bytes()).is_err(),
                "{text}"
            );
        }
        assert_eq!(jwks(None), json!({"keys": []}));
    }
}

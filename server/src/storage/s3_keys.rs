//! S3 access keys beyond the operator's: made, listed and revoked with `doska s3-keys`, kept in
//! `doska.s3_keys` with the secret encrypted (ChaCha20-Poly1305 under a key derived from the JWT
//! secret; SigV4 needs the plain secret, so hashing is not an option). A key bound to a user acts as
//! that user (role `authenticated`, `sub` = the user) under the storage policies; an unbound key acts
//! as service_role. Rejects revoked keys and secrets that do not decrypt (a changed JWT secret).

use chacha20poly1305::{
    ChaCha20Poly1305, KeyInit, Nonce,
    aead::{Aead, AeadCore, OsRng},
};
use hmac::{Hmac, Mac};
use rand::Rng;
use sha2::Sha256;
use tokio_postgres::GenericClient;
use uuid::Uuid;

/// A stored key as `lookup` finds it.
#[derive(Debug, Clone)]
pub struct StoredKey {
    pub secret: String,
    pub user_id: Option<Uuid>,
}

fn cipher(jwt_secret: &[u8]) -> ChaCha20Poly1305 {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(jwt_secret).expect("HMAC takes any key");
    mac.update(b"doska s3 key encryption v1");
    let key = mac.finalize().into_bytes();
    ChaCha20Poly1305::new(&key)
}

fn random_string(len: usize, alphabet: &[u8]) -> String {
    let mut rng = rand::rng();
    (0..len)
        .map(|_| alphabet[rng.random_range(0..alphabet.len())] as char)
        .collect()
}

/// Makes a key; returns `{"access_key_id", "secret_access_key"}`.
pub async fn create(
    client: &impl GenericClient,
    jwt_secret: &[u8],
    user: Option<Uuid>,
) -> Result<serde_json::Value, tokio_postgres::Error> {
    let id = format!(
        "DOSKA{}",
        random_string(15, b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")
    );
    let secret = random_string(
        40,
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
    );
    let nonce = ChaCha20Poly1305::generate_nonce(&mut OsRng);
    let sealed = cipher(jwt_secret)
        .encrypt(&nonce, secret.as_bytes())
        .expect("encrypting a short secret cannot fail");
    client
        .execute(
            "insert into doska.s3_keys (access_key_id, secret_nonce, secret_ciphertext, user_id)
             values ($1, $2, $3, $4)",
            &[
                &id,
                &nonce.iter().copied().collect::<Vec<u8>>(),
                &sealed,
                &user,
            ],
        )
        .await?;
    Ok(serde_json::json!({"access_key_id": id, "secret_access_key": secret}))
}

/// The keys (never their secrets): id, user, created, revoked.
pub async fn list(client: &impl GenericClient) -> Result<serde_json::Value, tokio_postgres::Error> {
    let rows = client
        .query(
            "select access_key_id, user_id, created_at, revoked_at from doska.s3_keys
             order by created_at",
            &[],
        )
        .await?;
    Ok(serde_json::Value::Array(
        rows.iter()
            .map(|r| {
                serde_json::json!({
                    "access_key_id": r.get::<_, String>(0),
                    "user_id": r.get::<_, Option<Uuid>>(1),
                    "created_at": r.get::<_, chrono::DateTime<chrono::Utc>>(2),
                    "revoked_at": r.get::<_, Option<chrono::DateTime<chrono::Utc>>>(3),
                })
            })
            .collect(),
    ))
}

/// Revokes a key; false when there is no such active key.
pub async fn revoke(client: &impl GenericClient, id: &str) -> Result<bool, tokio_postgres::Error> {
    let n = client
        .execute(
            "update doska.s3_keys set revoked_at = now()
             where access_key_id = $1 and revoked_at is null",
            &[&id],
        )
        .await?;
    Ok(n == 1)
}

/// An active key's secret and user; `None` when unknown, revoked or undecryptable.
pub async fn lookup(
    client: &impl GenericClient,
    jwt_secret: &[u8],
    id: &str,
) -> Result<Option<StoredKey>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "select secret_nonce, secret_ciphertext, user_id from doska.s3_keys
             where access_key_id = $1 and revoked_at is null",
            &[&id],
        )
        .await?;
    let Some(row) = row else { return Ok(None) };
    let nonce: Vec<u8> = row.get(0);
    let sealed: Vec<u8> = row.get(1);
    let Ok(nonce) = <[u8; 12]>::try_from(nonce.as_slice()) else {
        return Ok(None);
    };
    let plain = cipher(jwt_secret)
        .decrypt(&Nonce::from(nonce), sealed.as_slice())
        .ok()
        .and_then(|p| String::from_utf8(p).ok());
    Ok(plain.map(|secret| StoredKey {
        secret,
        user_id: row.get(2),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_secrets_open_only_with_the_same_jwt_secret() {
        let nonce = ChaCha20Poly1305::generate_nonce(&mut OsRng);
        let sealed = cipher(b"one").encrypt(&nonce, b"s".as_slice()).unwrap();
        assert_eq!(
            cipher(b"one").decrypt(&nonce, sealed.as_slice()).unwrap(),
            b"s"
        );
        assert!(cipher(b"two").decrypt(&nonce, sealed.as_slice()).is_err());
    }
}

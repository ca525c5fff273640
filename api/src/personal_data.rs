//! Sealing personal fields (ADR-0011): one AES-256-GCM data key per person, stored wrapped by a
//! master key (KEK) from configuration. Erasure destroys the person's data key.
//!
//! Events carry personal fields as `domain::values::Personal`. Before an event is written, every
//! `{"personal": {subject, value}}` in its JSON becomes `{"sealed": {subject, nonce, ciphertext}}`;
//! when it is loaded, every sealed field is opened again, or becomes `{"erased": {subject}}` when
//! the key is gone. The stored bytes never change, so the hash chain stays valid after erasure.

use std::collections::BTreeMap;

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use uuid::Uuid;

use domain::ids::UserId;
use domain::values::Personal;

const KEY_BYTES: usize = 32;

/// Why a personal field could not be sealed or opened.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The database failed.
    #[error("personal data keys are unavailable")]
    Database(#[from] sqlx::Error),
    /// A master key is not 32 bytes of hex.
    #[error("a data-key encryption key must be 64 hexadecimal characters (32 bytes)")]
    InvalidMasterKey,
    /// A data key was wrapped by a master key that is not configured.
    #[error("data key of a person is wrapped by unknown master key {0}")]
    UnknownMasterKey(String),
    /// Encryption or authentication failed: a key or a stored value was altered.
    #[error("a sealed value or data key failed authentication")]
    Crypto,
    /// Personal data of an erased person was about to be written.
    #[error("the person was erased; no personal data can be written for them")]
    SubjectErased,
    /// A personal field is malformed.
    #[error("malformed personal field")]
    Malformed,
}

/// A master key and its fingerprint.
struct MasterKey {
    id: String,
    cipher: Aes256Gcm,
}

impl MasterKey {
    fn parse(hex_key: &SecretString) -> Result<Self, SealError> {
        let bytes =
            hex::decode(hex_key.expose_secret().trim()).map_err(|_| SealError::InvalidMasterKey)?;
        if bytes.len() != KEY_BYTES {
            return Err(SealError::InvalidMasterKey);
        }
        let id = hex::encode(&Sha256::digest(&bytes)[..8]);
        Ok(Self {
            id,
            cipher: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&bytes)),
        })
    }
}

/// The per-person data keys and the master keys that wrap them.
pub struct PersonalDataKeys {
    pool: PgPool,
    current: MasterKey,
    previous: Vec<MasterKey>,
}

/// A person's unwrapped data key.
struct DataKey(Aes256Gcm);

/// What the key table holds for a person.
enum StoredKey {
    /// A live key.
    Live(Box<DataKey>),
    /// Destroyed: the person was erased.
    Destroyed,
    /// None yet.
    Missing,
}

impl PersonalDataKeys {
    /// Keys in `pool`, wrapped by `current`; `previous` master keys can still unwrap (rotation).
    ///
    /// # Errors
    /// [`SealError::InvalidMasterKey`].
    pub fn new(
        pool: PgPool,
        current: &SecretString,
        previous: &[SecretString],
    ) -> Result<Self, SealError> {
        Ok(Self {
            pool,
            current: MasterKey::parse(current)?,
            previous: previous
                .iter()
                .map(MasterKey::parse)
                .collect::<Result<_, _>>()?,
        })
    }

    /// Seals every readable personal field of an event payload, creating data keys as needed.
    ///
    /// # Errors
    /// [`SealError`]; nothing may be written then.
    pub async fn seal_payload(&self, payload: &mut Value) -> Result<(), SealError> {
        let mut subjects = Vec::new();
        collect(payload, "personal", &mut subjects);
        let mut keys = BTreeMap::new();
        for (subject, key) in self.data_keys(&subjects).await? {
            let key = match key {
                StoredKey::Live(key) => *key,
                StoredKey::Destroyed => return Err(SealError::SubjectErased),
                StoredKey::Missing => self
                    .create_data_key(subject)
                    .await?
                    .ok_or(SealError::SubjectErased)?,
            };
            keys.insert(subject, key);
        }
        transform(payload, "personal", &mut |field| {
            let subject = subject_of(field)?;
            let key = keys.get(&subject).ok_or(SealError::Malformed)?;
            let plaintext = serde_json::to_vec(field.get("value").ok_or(SealError::Malformed)?)
                .map_err(|_| SealError::Malformed)?;
            let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
            let ciphertext = key
                .0
                .encrypt(
                    &nonce,
                    Payload {
                        msg: &plaintext,
                        aad: subject.as_uuid().as_bytes(),
                    },
                )
                .map_err(|_| SealError::Crypto)?;
            Ok(
                json!({"sealed": {"subject": subject, "nonce": BASE64.encode(nonce), "ciphertext": BASE64.encode(ciphertext)}}),
            )
        })
    }

    /// Opens every sealed personal field of a payload; fields of erased people become erased.
    ///
    /// # Errors
    /// [`SealError`] when a key or value fails authentication or the database fails.
    pub async fn open_payload(&self, payload: &mut Value) -> Result<(), SealError> {
        self.open_payloads(std::iter::once(payload)).await
    }

    /// Opens the sealed fields of several payloads (a stream's events) with one key lookup.
    ///
    /// # Errors
    /// As [`PersonalDataKeys::open_payload`].
    pub async fn open_payloads<'a>(
        &self,
        payloads: impl IntoIterator<Item = &'a mut Value>,
    ) -> Result<(), SealError> {
        let mut payloads: Vec<&'a mut Value> = payloads.into_iter().collect();
        let mut subjects = Vec::new();
        for payload in &payloads {
            collect(payload, "sealed", &mut subjects);
        }
        if subjects.is_empty() {
            return Ok(());
        }
        let keys = self.data_keys(&subjects).await?;
        for payload in &mut payloads {
            self.open_with(payload, &keys)?;
        }
        Ok(())
    }

    fn open_with(
        &self,
        payload: &mut Value,
        keys: &BTreeMap<UserId, StoredKey>,
    ) -> Result<(), SealError> {
        transform(payload, "sealed", &mut |field| {
            let subject = subject_of(field)?;
            let Some(StoredKey::Live(key)) = keys.get(&subject) else {
                return Ok(json!({"erased": {"subject": subject}}));
            };
            let text = |name: &str| {
                field
                    .get(name)
                    .and_then(Value::as_str)
                    .and_then(|s| BASE64.decode(s).ok())
                    .ok_or(SealError::Malformed)
            };
            let nonce = text("nonce")?;
            if nonce.len() != 12 {
                return Err(SealError::Malformed);
            }
            let plaintext = key
                .0
                .decrypt(
                    Nonce::from_slice(&nonce),
                    Payload {
                        msg: &text("ciphertext")?,
                        aad: subject.as_uuid().as_bytes(),
                    },
                )
                .map_err(|_| SealError::Crypto)?;
            let value: Value =
                serde_json::from_slice(&plaintext).map_err(|_| SealError::Malformed)?;
            Ok(json!({"personal": {"subject": subject, "value": value}}))
        })
    }

    /// Opens one personal field as a read model stores it (sealed JSON).
    ///
    /// # Errors
    /// As [`PersonalDataKeys::open_payload`].
    pub async fn open<T: DeserializeOwned>(
        &self,
        stored: &Value,
    ) -> Result<Personal<T>, SealError> {
        let mut value = stored.clone();
        self.open_payload(&mut value).await?;
        serde_json::from_value(value).map_err(|_| SealError::Malformed)
    }

    /// Destroys a person's data key; returns whether a live key was destroyed.
    ///
    /// # Errors
    /// A database error.
    pub async fn destroy(&self, subject: UserId) -> Result<bool, sqlx::Error> {
        // A tombstone row also keeps a destroyed subject from ever getting a new key.
        let result = sqlx::query(
            "INSERT INTO personal_data_keys (subject_id, destroyed_at) VALUES ($1, now()) \
             ON CONFLICT (subject_id) DO UPDATE SET kek_id = NULL, nonce = NULL, wrapped_key = NULL, \
             destroyed_at = coalesce(personal_data_keys.destroyed_at, now()) \
             WHERE personal_data_keys.destroyed_at IS NULL",
        )
        .bind(subject.as_uuid())
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    /// Re-wraps every live data key under the current master key (after a master key rotation);
    /// returns how many were re-wrapped.
    ///
    /// # Errors
    /// [`SealError`] when a key cannot be unwrapped by any configured master key.
    pub async fn rewrap_all(&self) -> Result<u64, SealError> {
        let rows: Vec<(Uuid, String, Vec<u8>, Vec<u8>)> = sqlx::query_as(
            "SELECT subject_id, kek_id, nonce, wrapped_key FROM personal_data_keys \
             WHERE wrapped_key IS NOT NULL AND kek_id <> $1",
        )
        .bind(&self.current.id)
        .fetch_all(&self.pool)
        .await?;
        let mut rewrapped = 0;
        for (subject, kek_id, nonce, wrapped) in rows {
            let key = self.unwrap_key(subject, &kek_id, &nonce, &wrapped)?;
            let (nonce, wrapped) = self.wrap_key(subject, &key)?;
            sqlx::query("UPDATE personal_data_keys SET kek_id = $2, nonce = $3, wrapped_key = $4 WHERE subject_id = $1 AND wrapped_key IS NOT NULL")
                .bind(subject)
                .bind(&self.current.id)
                .bind(nonce)
                .bind(wrapped)
                .execute(&self.pool)
                .await?;
            rewrapped += 1;
        }
        Ok(rewrapped)
    }

    /// The stored data keys of `subjects`, unwrapped, in one query.
    async fn data_keys(
        &self,
        subjects: &[UserId],
    ) -> Result<BTreeMap<UserId, StoredKey>, SealError> {
        type WrappedKey = (Uuid, Option<String>, Option<Vec<u8>>, Option<Vec<u8>>);
        let ids: Vec<Uuid> = subjects.iter().map(|s| s.as_uuid()).collect();
        let rows: Vec<WrappedKey> = sqlx::query_as(
            "SELECT subject_id, kek_id, nonce, wrapped_key FROM personal_data_keys WHERE subject_id = ANY($1)",
        )
        .bind(&ids)
        .fetch_all(&self.pool)
        .await?;
        let mut keys: BTreeMap<UserId, StoredKey> =
            subjects.iter().map(|s| (*s, StoredKey::Missing)).collect();
        for (subject, kek_id, nonce, wrapped) in rows {
            let key = match (kek_id, nonce, wrapped) {
                (Some(kek_id), Some(nonce), Some(wrapped)) => StoredKey::Live(Box::new(DataKey(
                    Aes256Gcm::new(&self.unwrap_key(subject, &kek_id, &nonce, &wrapped)?),
                ))),
                _ => StoredKey::Destroyed,
            };
            keys.insert(UserId::from_uuid(subject), key);
        }
        Ok(keys)
    }

    /// Creates the subject's data key (or finds the one a concurrent writer created); `None`
    /// when the subject was erased meanwhile.
    async fn create_data_key(&self, subject: UserId) -> Result<Option<DataKey>, SealError> {
        let key = Aes256Gcm::generate_key(&mut OsRng);
        let (nonce, wrapped) = self.wrap_key(subject.as_uuid(), &key)?;
        sqlx::query(
            "INSERT INTO personal_data_keys (subject_id, kek_id, nonce, wrapped_key) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (subject_id) DO NOTHING",
        )
        .bind(subject.as_uuid())
        .bind(&self.current.id)
        .bind(nonce)
        .bind(wrapped)
        .execute(&self.pool)
        .await?;
        Ok(match self.data_keys(&[subject]).await?.remove(&subject) {
            Some(StoredKey::Live(key)) => Some(*key),
            _ => None,
        })
    }

    fn wrap_key(
        &self,
        subject: Uuid,
        key: &Key<Aes256Gcm>,
    ) -> Result<(Vec<u8>, Vec<u8>), SealError> {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let wrapped = self
            .current
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: key.as_slice(),
                    aad: subject.as_bytes(),
                },
            )
            .map_err(|_| SealError::Crypto)?;
        Ok((nonce.to_vec(), wrapped))
    }

    fn unwrap_key(
        &self,
        subject: Uuid,
        kek_id: &str,
        nonce: &[u8],
        wrapped: &[u8],
    ) -> Result<Key<Aes256Gcm>, SealError> {
        let master = std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|master| master.id == kek_id)
            .ok_or_else(|| SealError::UnknownMasterKey(kek_id.to_owned()))?;
        if nonce.len() != 12 {
            return Err(SealError::Malformed);
        }
        let bytes = master
            .cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: wrapped,
                    aad: subject.as_bytes(),
                },
            )
            .map_err(|_| SealError::Crypto)?;
        if bytes.len() != KEY_BYTES {
            return Err(SealError::Crypto);
        }
        Ok(*Key::<Aes256Gcm>::from_slice(&bytes))
    }
}

fn subject_of(field: &Value) -> Result<UserId, SealError> {
    field
        .get("subject")
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
        .ok_or(SealError::Malformed)
}

/// Collects the subjects of every `{tag: {...}}` object in `value`.
fn collect(value: &Value, tag: &str, subjects: &mut Vec<UserId>) {
    match value {
        Value::Object(map) if map.len() == 1 && map.get(tag).is_some_and(Value::is_object) => {
            if let Some(subject) = map.get(tag).and_then(|field| subject_of(field).ok()) {
                subjects.push(subject);
            }
        }
        Value::Object(map) => map.values().for_each(|child| collect(child, tag, subjects)),
        Value::Array(items) => items.iter().for_each(|child| collect(child, tag, subjects)),
        _ => {}
    }
}

/// Replaces every `{tag: field}` object in `value` with `f(field)`.
fn transform(
    value: &mut Value,
    tag: &str,
    f: &mut impl FnMut(&Value) -> Result<Value, SealError>,
) -> Result<(), SealError> {
    match value {
        Value::Object(map) if map.len() == 1 && map.get(tag).is_some_and(Value::is_object) => {
            let replacement = f(map.get(tag).ok_or(SealError::Malformed)?)?;
            *value = replacement;
        }
        Value::Object(map) => {
            for child in map.values_mut() {
                transform(child, tag, f)?;
            }
        }
        Value::Array(items) => {
            for child in items {
                transform(child, tag, f)?;
            }
        }
        _ => {}
    }
    Ok(())
}

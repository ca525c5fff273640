//! The checkpoint worker (ADR-0012): every `audit.checkpoint_interval_seconds`, and once more at
//! shutdown, signs the running hashes of the whole log and of every tenant with new events since
//! their last checkpoint, folded from the events themselves (not from the `log_chain` projector's
//! table), with the Ed25519 key from configuration, and stores them in `log_checkpoints`.
//!
//! The key lives only in the service's configuration, never in the database: whoever can rewrite
//! the events table and recompute its hashes still cannot sign a matching checkpoint.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use secrecy::{ExposeSecret, SecretString};
use sqlx::PgPool;

use projections::background::LoopHealth;
use projections::chain::{Checkpoint, SignedCheckpoint, key_id};
use projections::log_chain::{ChainError, due_checkpoints, store_checkpoints};

use crate::configuration::AuditSettings;

/// Signs checkpoints with the configured Ed25519 key.
#[derive(Clone)]
pub struct CheckpointSigner {
    key: SigningKey,
    key_id: String,
}

/// A signing key that is not a 32-byte seed in hex.
#[derive(Debug, thiserror::Error)]
#[error("the signing key is not 64 hex digits (a 32-byte Ed25519 seed)")]
pub struct InvalidSigningKey(#[source] hex::FromHexError);

impl CheckpointSigner {
    /// A signer with the key whose seed is `seed_hex`.
    ///
    /// # Errors
    /// [`InvalidSigningKey`] when the seed is not 64 hex digits.
    pub fn new(seed_hex: &SecretString) -> Result<Self, InvalidSigningKey> {
        let mut seed = [0; 32];
        hex::decode_to_slice(seed_hex.expose_secret(), &mut seed).map_err(InvalidSigningKey)?;
        let key = SigningKey::from_bytes(&seed);
        let key_id = key_id(&key.verifying_key());
        Ok(Self { key, key_id })
    }

    /// The signer configured in `audit.signing_key`.
    ///
    /// # Errors
    /// [`InvalidSigningKey`].
    pub fn from_settings(settings: &AuditSettings) -> Result<Self, InvalidSigningKey> {
        Self::new(&settings.signing_key)
    }

    /// The public key auditors verify with.
    pub fn public_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// The key's id, as checkpoints name it.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// Signs `checkpoint`.
    pub fn sign(&self, checkpoint: Checkpoint) -> SignedCheckpoint {
        SignedCheckpoint {
            checkpoint,
            key_id: self.key_id.clone(),
            signature: self.key.sign(&checkpoint.message()).to_bytes(),
        }
    }
}

impl fmt::Debug for CheckpointSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CheckpointSigner")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// Signs every scope with events this key has not signed yet, as of `now`, and returns how many
/// checkpoints were stored.
///
/// # Errors
/// [`ChainError`] when the database fails or holds a malformed row.
pub async fn write_checkpoints(
    pool: &PgPool,
    signer: &CheckpointSigner,
    now: DateTime<Utc>,
) -> Result<u64, ChainError> {
    // PostgreSQL keeps microseconds; the signed instant must survive the round trip.
    let signed_at = DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now);
    let due = due_checkpoints(pool, signer.key_id(), signed_at).await?;
    if due.is_empty() {
        return Ok(0);
    }
    let signed: Vec<SignedCheckpoint> = due.into_iter().map(|due| signer.sign(due)).collect();
    let stored = store_checkpoints(pool, &signed).await?;
    tracing::info!(
        checkpoints.signed = stored,
        audit.key_id = signer.key_id(),
        "signed log checkpoints"
    );
    Ok(stored)
}

/// Signs checkpoints every `interval` until `shutdown` turns true. The caller signs once more
/// after the projectors stopped, so the final state is covered.
///
/// A failing database is retried with back-off ([`LoopHealth`]), never later than the next
/// regular signing, and logged once when it goes down and once when it is back.
pub async fn run_until(
    pool: PgPool,
    signer: CheckpointSigner,
    interval: Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut health = LoopHealth::new("checkpoint signer");
    let stop = async move {
        let _ = shutdown.wait_for(|stop| *stop).await;
    };
    tokio::pin!(stop);
    let mut wait = Duration::ZERO;
    loop {
        tokio::select! {
            () = &mut stop => return,
            () = tokio::time::sleep(wait) => {}
        }
        wait = match write_checkpoints(&pool, &signer, Utc::now()).await {
            Ok(_) => {
                health.succeeded();
                interval
            }
            Err(error) => health.failed(&error).min(interval),
        };
    }
}

#[cfg(test)]
mod tests {
    use projections::chain::{Digest, Scope};

    use super::*;

    #[test]
    fn signatures_verify_under_the_public_key_and_name_its_id() {
        let signer = CheckpointSigner::new(&SecretString::from("ab".repeat(32))).unwrap();
        let checkpoint = Checkpoint {
            scope: Scope::WholeLog,
            position: 12,
            tx_id: 800,
            events: 10,
            running_hash: Digest([3; 32]),
            signed_at: DateTime::from_timestamp_micros(1_795_773_260_000_001).unwrap(),
        };

        let signed = signer.sign(checkpoint);

        assert!(signed.is_signed_by(&signer.public_key()));
        assert_eq!(signed.key_id, key_id(&signer.public_key()));
        let other = CheckpointSigner::new(&SecretString::from("cd".repeat(32))).unwrap();
        assert!(!signed.is_signed_by(&other.public_key()));
        assert!(!format!("{signer:?}").contains(&"ab".repeat(32)));
    }

    #[test]
    fn refuses_a_seed_that_is_not_32_bytes_of_hex() {
        for seed in ["", "ab", &"zz".repeat(32), &"ab".repeat(33)] {
            assert!(
                CheckpointSigner::new(&SecretString::from(seed.to_owned())).is_err(),
                "{seed}"
            );
        }
    }
}

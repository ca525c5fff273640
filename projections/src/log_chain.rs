//! Running hashes of the log (ADR-0012): the `log_chain` projector folds every event's chain hash
//! into `sha256(running || hash)` for the whole log and for the event's tenant, in the commit-safe
//! order of ADR-0006, and the storage of the signed checkpoints made from those rows.
//!
//! The projector is dumb like the others: the hash travels in the envelope and SQL folds it in.
//! Signing happens in `api`, which holds the key; this module only reads what is due and stores
//! what was signed.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};

use crate::chain::{Checkpoint, Digest, Scope, SignedCheckpoint};
use crate::envelope::Envelope;
use crate::position::TxId;
use crate::runner::Projector;

/// The running-hash projector.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogChain;

/// Fold one event's hash into one scope's running hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fold {
    /// `*` or the event's tenant.
    pub scope: Scope,
    /// The event's writing transaction.
    pub tx_id: u64,
    /// The event's global position.
    pub position: i64,
    /// The event's chain hash.
    pub hash: Digest,
}

impl Projector for LogChain {
    const NAME: &'static str = "log_chain";
    const TABLES: &'static [&'static str] = &["log_chain"];
    type Change = Fold;

    fn changes(event: &Envelope) -> Vec<Fold> {
        let fold = |scope| Fold {
            scope,
            tx_id: event.at.tx_id,
            position: event.at.position,
            hash: event.hash,
        };
        let mut folds = vec![fold(Scope::WholeLog)];
        folds.extend(event.tenant_id.map(|tenant| fold(Scope::Tenant(tenant))));
        folds
    }

    async fn write(connection: &mut PgConnection, change: Fold) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO log_chain (scope, last_position, last_tx, events, running_hash) \
             VALUES ($1, $2, $3, 1, sha256(event_genesis_hash() || $4)) \
             ON CONFLICT (scope) DO UPDATE SET last_position = EXCLUDED.last_position, \
                 last_tx = EXCLUDED.last_tx, events = log_chain.events + 1, \
                 running_hash = sha256(log_chain.running_hash || $4)",
        )
        .bind(change.scope.to_string())
        .bind(change.position)
        .bind(TxId(change.tx_id))
        .bind(change.hash.as_bytes().as_slice())
        .execute(connection)
        .await?;
        Ok(())
    }
}

/// A stored checkpoint or `log_chain` row that cannot be read back.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// The database failed.
    #[error("the log chain could not be read or written")]
    Database(#[from] sqlx::Error),
    /// A stored row breaks the table's own constraints (a scope, hash or signature of the wrong
    /// shape); it was changed behind the database's back.
    #[error("the stored {table} row of scope {scope} is malformed")]
    Malformed {
        /// `log_chain` or `log_checkpoints`.
        table: &'static str,
        /// The row's scope as stored.
        scope: String,
    },
}

#[derive(sqlx::FromRow)]
struct ChainRow {
    scope: String,
    last_position: i64,
    last_tx: TxId,
    events: i64,
    running_hash: Vec<u8>,
}

/// The `log_chain` rows that `key_id` has not signed yet, as checkpoints to sign at `signed_at`.
///
/// # Errors
/// [`ChainError::Database`], or [`ChainError::Malformed`] for a row that breaks its constraints.
pub async fn unsigned_checkpoints(
    pool: &PgPool,
    key_id: &str,
    signed_at: DateTime<Utc>,
) -> Result<Vec<Checkpoint>, ChainError> {
    let rows: Vec<ChainRow> = sqlx::query_as(
        "SELECT c.scope, c.last_position, c.last_tx, c.events, c.running_hash \
         FROM log_chain c \
         WHERE NOT EXISTS (SELECT 1 FROM log_checkpoints k \
                           WHERE k.scope = c.scope AND k.position = c.last_position AND k.key_id = $1) \
         ORDER BY c.scope",
    )
    .bind(key_id)
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|row| {
            let malformed = || ChainError::Malformed {
                table: "log_chain",
                scope: row.scope.clone(),
            };
            Ok(Checkpoint {
                scope: row.scope.parse().map_err(|_| malformed())?,
                position: row.last_position,
                tx_id: row.last_tx.0,
                events: row.events,
                running_hash: Digest::from_slice(&row.running_hash).ok_or_else(malformed)?,
                signed_at,
            })
        })
        .collect()
}

/// Stores signed checkpoints; one that the same key already signed is left as it is. Returns how
/// many were new.
///
/// # Errors
/// [`ChainError::Database`].
pub async fn store_checkpoints(
    pool: &PgPool,
    checkpoints: &[SignedCheckpoint],
) -> Result<u64, ChainError> {
    let mut transaction = pool.begin().await?;
    let mut stored = 0;
    for signed in checkpoints {
        let checkpoint = &signed.checkpoint;
        stored += sqlx::query(
            "INSERT INTO log_checkpoints \
                 (scope, position, tx_id, events, running_hash, signed_at, key_id, signature) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (scope, position, key_id) DO NOTHING",
        )
        .bind(checkpoint.scope.to_string())
        .bind(checkpoint.position)
        .bind(TxId(checkpoint.tx_id))
        .bind(checkpoint.events)
        .bind(checkpoint.running_hash.as_bytes().as_slice())
        .bind(checkpoint.signed_at)
        .bind(&signed.key_id)
        .bind(signed.signature.as_slice())
        .execute(&mut *transaction)
        .await?
        .rows_affected();
    }
    transaction.commit().await?;
    Ok(stored)
}

#[derive(sqlx::FromRow)]
struct CheckpointRow {
    scope: String,
    position: i64,
    tx_id: TxId,
    events: i64,
    running_hash: Vec<u8>,
    signed_at: DateTime<Utc>,
    key_id: String,
    signature: Vec<u8>,
}

/// A scope's signed checkpoints in log order, read on `connection` (an export reads them in the
/// same snapshot as the events).
///
/// # Errors
/// [`ChainError::Database`], or [`ChainError::Malformed`] for a row that breaks its constraints.
pub async fn checkpoints_of(
    connection: &mut PgConnection,
    scope: Scope,
) -> Result<Vec<SignedCheckpoint>, ChainError> {
    let rows: Vec<CheckpointRow> = sqlx::query_as(
        "SELECT scope, position, tx_id, events, running_hash, signed_at, key_id, signature \
         FROM log_checkpoints WHERE scope = $1 ORDER BY tx_id, position, key_id",
    )
    .bind(scope.to_string())
    .fetch_all(connection)
    .await?;
    rows.into_iter()
        .map(|row| {
            let malformed = || ChainError::Malformed {
                table: "log_checkpoints",
                scope: row.scope.clone(),
            };
            Ok(SignedCheckpoint {
                checkpoint: Checkpoint {
                    scope: row.scope.parse().map_err(|_| malformed())?,
                    position: row.position,
                    tx_id: row.tx_id.0,
                    events: row.events,
                    running_hash: Digest::from_slice(&row.running_hash).ok_or_else(malformed)?,
                    signed_at: row.signed_at,
                },
                signature: row
                    .signature
                    .as_slice()
                    .try_into()
                    .map_err(|_| malformed())?,
                key_id: row.key_id,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use crate::envelope::DomainEvent;
    use crate::test_support::{envelope, tenant};
    use domain::tenant::TenantEvent;

    use super::*;

    #[test]
    fn folds_each_event_into_the_whole_log_and_its_tenant() {
        let mut event = envelope(
            "tenant",
            1,
            DomainEvent::Tenant(TenantEvent::MfaPolicySet {
                tenant_id: tenant(),
                sms_required: true,
            }),
        );
        event.hash = Digest([7; 32]);

        let folds = LogChain::changes(&event);

        let scopes: Vec<Scope> = folds.iter().map(|fold| fold.scope).collect();
        assert_eq!(scopes, [Scope::WholeLog, Scope::Tenant(tenant())]);
        assert!(
            folds.iter().all(|fold| fold.hash == Digest([7; 32])
                && fold.position == 42
                && fold.tx_id == 1000)
        );

        event.tenant_id = None;
        assert_eq!(
            LogChain::changes(&event).len(),
            1,
            "no tenant, whole log only"
        );
    }
}

//! Running hashes of the log (ADR-0012): the `log_chain` projector folds every event's chain hash
//! into `sha256(running || hash)` for the whole log and for the event's tenant, in the commit-safe
//! order of ADR-0006, and the storage of the signed checkpoints made from those rows.
//!
//! The projector is dumb like the others: the hash travels in the envelope and SQL folds it in.
//! Signing happens in `api`, which holds the key; this module computes what is due from the
//! events themselves (not from the projector's table) and stores what was signed.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use futures::TryStreamExt as _;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::chain::{Checkpoint, Digest, Scope, SignedCheckpoint, fold_running};
use crate::envelope::Envelope;
use crate::position::{LogPosition, TxId};
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

/// The head of one scope's chain: the last event folded in, how many, and the running hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Head {
    at: LogPosition,
    events: i64,
    running: Digest,
}

impl Head {
    fn checkpoint(self, scope: Scope, signed_at: DateTime<Utc>) -> Checkpoint {
        Checkpoint {
            scope,
            position: self.at.position,
            tx_id: self.at.tx_id,
            events: self.events,
            running_hash: self.running,
            signed_at,
        }
    }
}

/// The checkpoints `key_id` has yet to sign, as of `signed_at`: for the whole log and for every
/// tenant with events since this key's last checkpoint of it, the running hash folded from the
/// events' own chain hashes, continuing from that last signed checkpoint.
///
/// The signer reads the log itself, not the `log_chain` projector's table: whoever can write
/// that table cannot make the key vouch for a history the events do not have (issue 13). All
/// scopes are read in one snapshot, in the commit-safe order (ADR-0006).
///
/// # Errors
/// [`ChainError::Database`], or [`ChainError::Malformed`] for a stored checkpoint or event hash
/// that breaks its constraints.
pub async fn due_checkpoints(
    pool: &PgPool,
    key_id: &str,
    signed_at: DateTime<Utc>,
) -> Result<Vec<Checkpoint>, ChainError> {
    let mut transaction = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *transaction)
        .await?;
    let mut due = Vec::new();
    let (whole, tenants) = fold_since(&mut transaction, Scope::WholeLog, key_id).await?;
    due.extend(whole.map(|head| head.checkpoint(Scope::WholeLog, signed_at)));
    for tenant in tenants {
        let scope = Scope::Tenant(domain::ids::TenantId::from_uuid(tenant));
        let (head, _) = fold_since(&mut transaction, scope, key_id).await?;
        due.extend(head.map(|head| head.checkpoint(scope, signed_at)));
    }
    transaction.commit().await?;
    Ok(due)
}

/// Folds `scope`'s events after `key_id`'s last checkpoint of it; returns the new head (none
/// when nothing was added) and the tenants of the folded events.
async fn fold_since(
    connection: &mut PgConnection,
    scope: Scope,
    key_id: &str,
) -> Result<(Option<Head>, BTreeSet<Uuid>), ChainError> {
    let malformed = |table| ChainError::Malformed {
        table,
        scope: scope.to_string(),
    };
    let last: Option<(i64, TxId, i64, Vec<u8>)> = sqlx::query_as(
        "SELECT position, tx_id, events, running_hash FROM log_checkpoints \
         WHERE scope = $1 AND key_id = $2 ORDER BY tx_id DESC, position DESC LIMIT 1",
    )
    .bind(scope.to_string())
    .bind(key_id)
    .fetch_optional(&mut *connection)
    .await?;
    let start = match last {
        Some((position, tx, events, running)) => Head {
            at: LogPosition {
                tx_id: tx.0,
                position,
            },
            events,
            running: Digest::from_slice(&running).ok_or_else(|| malformed("log_checkpoints"))?,
        },
        None => Head {
            at: LogPosition::default(),
            events: 0,
            running: Digest::GENESIS,
        },
    };
    let after = (start.at.tx(), start.at.position);
    let mut rows = match scope {
        Scope::WholeLog => sqlx::query_as::<_, (TxId, i64, Option<Uuid>, Vec<u8>)>(
            "SELECT tx_id, global_position, tenant_id, hash FROM events \
             WHERE (tx_id, global_position) > ($1, $2) \
               AND tx_id < pg_snapshot_xmin(pg_current_snapshot()) \
             ORDER BY tx_id, global_position",
        )
        .bind(after.0)
        .bind(after.1),
        Scope::Tenant(tenant) => sqlx::query_as::<_, (TxId, i64, Option<Uuid>, Vec<u8>)>(
            "SELECT tx_id, global_position, tenant_id, hash FROM events \
             WHERE tenant_id = $3 AND (tx_id, global_position) > ($1, $2) \
               AND tx_id < pg_snapshot_xmin(pg_current_snapshot()) \
             ORDER BY tx_id, global_position",
        )
        .bind(after.0)
        .bind(after.1)
        .bind(tenant.as_uuid()),
    }
    .fetch(&mut *connection);
    let mut head = start;
    let mut tenants = BTreeSet::new();
    while let Some((tx, position, tenant, hash)) = rows.try_next().await? {
        let hash = Digest::from_slice(&hash).ok_or_else(|| malformed("events"))?;
        head = Head {
            at: LogPosition {
                tx_id: tx.0,
                position,
            },
            events: head.events + 1,
            running: fold_running(&head.running, &hash),
        };
        tenants.extend(tenant);
    }
    Ok(((head != start).then_some(head), tenants))
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

//! Positions in the log, as one typed value from the query to the checkpoint.
//!
//! The commit-safe order of the log (ADR-0006) is `(tx_id, global_position)`, where `tx_id` is an
//! `xid8`. sqlx has no codec for `xid8`, and the first round selected it as `tx_id::text`: then
//! any `ORDER BY tx_id` sorted by the *text* (PostgreSQL resolves a bare name in `ORDER BY` to the
//! select list first), so `'100001' < '99998'` and every reader broke whenever the cluster's
//! transaction counter crossed a power of ten. [`TxId`] is that codec: it reads and binds `xid8`
//! in PostgreSQL's binary format, so SQL never needs to cast a transaction id to or from text and
//! every comparison and sort stays numeric. `.ci/run` refuses `tx_id::text` and `::xid8` casts in
//! Rust sources, and `tests/e2e/transaction_boundary.rs` runs the log across a power of ten.

use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::types::Oid;
use sqlx::postgres::{PgArgumentBuffer, PgHasArrayType, PgTypeInfo, PgValueFormat, PgValueRef};
use sqlx::{Decode, Encode, Postgres, Type};

/// A transaction id (`xid8`: the 32-bit epoch and the 32-bit xid in one 64-bit number).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct TxId(pub u64);

/// `xid8`'s fixed object id in every PostgreSQL since 13.
const XID8: Oid = Oid(5069);
/// `xid8[]`.
const XID8_ARRAY: Oid = Oid(271);

impl Type<Postgres> for TxId {
    fn type_info() -> PgTypeInfo {
        PgTypeInfo::with_oid(XID8)
    }
}

impl PgHasArrayType for TxId {
    fn array_type_info() -> PgTypeInfo {
        PgTypeInfo::with_oid(XID8_ARRAY)
    }
}

impl Encode<'_, Postgres> for TxId {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        // xid8recv reads an unsigned 64-bit integer in network byte order.
        buf.extend(&self.0.to_be_bytes());
        Ok(IsNull::No)
    }
}

impl Decode<'_, Postgres> for TxId {
    fn decode(value: PgValueRef<'_>) -> Result<Self, BoxDynError> {
        Ok(Self(match value.format() {
            PgValueFormat::Binary => u64::from_be_bytes(value.as_bytes()?.try_into()?),
            PgValueFormat::Text => value.as_str()?.parse()?,
        }))
    }
}

impl From<u64> for TxId {
    fn from(value: u64) -> Self {
        Self(value)
    }
}

impl From<TxId> for u64 {
    fn from(value: TxId) -> Self {
        value.0
    }
}

impl std::fmt::Display for TxId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// A position in the commit-safe order of the log (ADR-0006): the writing transaction, then the
/// global position. Ordered as the log is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, serde::Serialize)]
pub struct LogPosition {
    /// The writing transaction's id (`xid8`).
    pub tx_id: u64,
    /// The event's global position.
    pub position: i64,
}

impl LogPosition {
    /// The transaction id, typed for binding as `xid8`.
    pub const fn tx(&self) -> TxId {
        TxId(self.tx_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_order_by_number_across_powers_of_ten() {
        let before = LogPosition {
            tx_id: 99_998,
            position: 7,
        };
        let after = LogPosition {
            tx_id: 100_001,
            position: 3,
        };
        assert!(before < after);
        assert!(TxId(999_999) < TxId(1_000_000));
    }
}

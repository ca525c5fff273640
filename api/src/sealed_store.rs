//! The event repository the executor writes through: postgres-es's repository with every personal
//! field sealed on the way in and opened on the way out (ADR-0011).

use std::sync::Arc;

use cqrs_es::Aggregate;
use cqrs_es::persist::{
    PersistedEventRepository, PersistenceError, ReplayStream, SerializedEvent, SerializedSnapshot,
};
use postgres_es::PostgresEventRepository;
use serde_json::Value;

use crate::personal_data::{PersonalDataKeys, SealError};

/// postgres-es's repository behind a sealing layer.
pub struct SealedEventRepository {
    inner: PostgresEventRepository,
    keys: Arc<PersonalDataKeys>,
}

impl SealedEventRepository {
    /// Seals with `keys` around `inner`.
    pub const fn new(inner: PostgresEventRepository, keys: Arc<PersonalDataKeys>) -> Self {
        Self { inner, keys }
    }

    async fn open_all(
        &self,
        mut events: Vec<SerializedEvent>,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        self.keys
            .open_payloads(events.iter_mut().map(|event| &mut event.payload))
            .await
            .map_err(persistence_error)?;
        Ok(events)
    }
}

fn persistence_error(error: SealError) -> PersistenceError {
    match error {
        SealError::Database(error) => PersistenceError::ConnectionError(Box::new(error)),
        other => PersistenceError::UnknownError(Box::new(other)),
    }
}

impl PersistedEventRepository for SealedEventRepository {
    async fn get_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        let events = self.inner.get_events::<A>(aggregate_id).await?;
        self.open_all(events).await
    }

    async fn get_last_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
        last_sequence: usize,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        let events = self
            .inner
            .get_last_events::<A>(aggregate_id, last_sequence)
            .await?;
        self.open_all(events).await
    }

    async fn get_snapshot<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Option<SerializedSnapshot>, PersistenceError> {
        // Snapshots are not used (ADR-0002); there is no snapshots table.
        self.inner.get_snapshot::<A>(aggregate_id).await
    }

    async fn persist<A: Aggregate>(
        &self,
        events: &[SerializedEvent],
        snapshot_update: Option<(String, Value, usize)>,
    ) -> Result<(), PersistenceError> {
        let mut sealed = events.to_vec();
        for event in &mut sealed {
            self.keys
                .seal_payload(&mut event.payload)
                .await
                .map_err(persistence_error)?;
        }
        self.inner.persist::<A>(&sealed, snapshot_update).await
    }

    /// Streams stored (sealed) events: postgres-es's replay is not used (ADR-0002), and a caller
    /// that did use it would fail to decode sealed fields rather than see personal data.
    async fn stream_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<ReplayStream, PersistenceError> {
        self.inner.stream_events::<A>(aggregate_id).await
    }

    /// As [`SealedEventRepository::stream_events`].
    async fn stream_all_events<A: Aggregate>(&self) -> Result<ReplayStream, PersistenceError> {
        self.inner.stream_all_events::<A>().await
    }
}

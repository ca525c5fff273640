//! The command executor: a thin layer over the cqrs-es event store (ADR-0007).
//!
//! It does what `CqrsFramework::execute_with_metadata` does — load, decide, commit — and adds
//! the three things the framework lacks: the full metadata on every event, a bounded retry when
//! a concurrent writer took the next sequence number, and an answer that says what was committed
//! (events, their global positions and the aggregate afterwards). No cqrs-es `Query` is
//! registered: read models are catch-up projectors.

#![expect(
    clippy::disallowed_types,
    reason = "cqrs-es takes and returns event metadata as a HashMap"
)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use cqrs_es::persist::{EventStoreAggregateContext, PersistedEventRepository, PersistedEventStore};
use cqrs_es::{Aggregate, AggregateContext, AggregateError, EventStore};
use postgres_es::PostgresEventRepository;
use rand::Rng;
use sqlx::PgPool;
use tracing::instrument;
use uuid::Uuid;

use domain::ids::TenantId;
use domain::metadata::{self, ActorRole, NamedCommand};

use crate::personal_data::PersonalDataKeys;
use crate::sealed_store::SealedEventRepository;

/// Who sends a command, for whom, in which request, and when. Becomes every event's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandContext {
    /// The principal's id (a user id, a staff token id, `cli`, or a worker name).
    pub actor_id: String,
    /// The principal's role.
    pub actor_role: ActorRole,
    /// The person the actor acts for, if not themselves.
    pub on_behalf_of: Option<String>,
    /// The tenant the command is scoped to; `None` for platform-level streams.
    pub tenant_id: Option<TenantId>,
    /// The request or correlation id.
    pub correlation_id: String,
    /// When the command was decided.
    pub occurred_at: DateTime<Utc>,
}

impl CommandContext {
    fn metadata(&self, command_name: &str, command_id: Uuid) -> HashMap<String, String> {
        let entries = [
            (metadata::ACTOR_ID, self.actor_id.clone()),
            (metadata::ACTOR_ROLE, self.actor_role.as_str().to_owned()),
            (
                metadata::ON_BEHALF_OF,
                self.on_behalf_of.clone().unwrap_or_default(),
            ),
            (
                metadata::TENANT_ID,
                self.tenant_id.map(|id| id.to_string()).unwrap_or_default(),
            ),
            (
                metadata::OCCURRED_AT,
                self.occurred_at
                    .to_rfc3339_opts(SecondsFormat::Micros, true),
            ),
            (metadata::CORRELATION_ID, self.correlation_id.clone()),
            (metadata::CAUSATION_COMMAND, command_name.to_owned()),
            (metadata::COMMAND_ID, command_id.to_string()),
        ];
        entries
            .into_iter()
            .map(|(key, value)| (key.to_owned(), value))
            .collect()
    }
}

/// One committed event.
#[derive(Debug, Clone, PartialEq)]
pub struct CommittedEvent<E> {
    /// Its sequence number in the stream.
    pub sequence: usize,
    /// Its global position in the log.
    pub global_position: i64,
    /// The event.
    pub event: E,
}

/// What a command committed.
#[derive(Debug, Clone)]
pub struct Committed<A: Aggregate> {
    /// The events, in order; empty when the command changed nothing.
    pub events: Vec<CommittedEvent<A::Event>>,
    /// The aggregate after the events.
    pub aggregate: A,
}

impl<A: Aggregate> Committed<A> {
    /// The position of the last event, for read-your-writes waits.
    pub fn last_position(&self) -> Option<i64> {
        self.events.last().map(|event| event.global_position)
    }
}

/// Why a command was not committed.
#[derive(Debug, thiserror::Error)]
pub enum ExecuteError<E: std::error::Error + 'static> {
    /// The aggregate refused the command.
    #[error(transparent)]
    Rejected(E),
    /// Concurrent writers kept winning; the client may retry.
    #[error("the stream was changed concurrently {attempts} times; retry")]
    Conflict {
        /// Tries made.
        attempts: u32,
    },
    /// The event store failed (connection, (de)serialisation).
    #[error("the event store failed")]
    Store(#[source] anyhow::Error),
}

/// A stream as loaded for one command (see [`CommandExecutor::load_for_command`]).
pub struct Loaded<A: Aggregate>(EventStoreAggregateContext<A>);

impl<A: Aggregate> Loaded<A> {
    /// The state the command will be decided against.
    pub const fn state(&self) -> &A {
        &self.0.aggregate
    }
}

/// Executes commands of one aggregate type, by default through the sealing repository.
pub struct CommandExecutor<A: Aggregate, R: PersistedEventRepository = SealedEventRepository> {
    store: PersistedEventStore<R, A>,
    pool: PgPool,
    max_attempts: u32,
}

const BACKOFF_BASE: Duration = Duration::from_millis(2);
const BACKOFF_CAP: Duration = Duration::from_millis(100);

impl<A> CommandExecutor<A>
where
    A: Aggregate<Services = ()> + Clone,
    A::Command: Clone + NamedCommand,
    A::Error: Clone + Send + Sync + 'static,
{
    /// An executor on `pool` that seals personal fields with `keys` (ADR-0011) and tries a
    /// conflicting command up to `max_attempts` times.
    pub fn new(pool: PgPool, max_attempts: u32, keys: Arc<PersonalDataKeys>) -> Self {
        let repository =
            SealedEventRepository::new(PostgresEventRepository::new(pool.clone()), keys);
        Self::with_repository(repository, pool, max_attempts)
    }
}

impl<A, R> CommandExecutor<A, R>
where
    A: Aggregate<Services = ()> + Clone,
    A::Command: Clone + NamedCommand,
    A::Error: Clone + Send + Sync + 'static,
    R: PersistedEventRepository,
{
    /// An executor over any event repository: the sealing one in production, a plain one to
    /// measure what sealing costs.
    pub fn with_repository(repository: R, pool: PgPool, max_attempts: u32) -> Self {
        Self {
            store: PersistedEventStore::new_event_store(repository),
            pool,
            max_attempts: max_attempts.max(1),
        }
    }

    /// Loads the aggregate as it is now (for dry runs and facts); a missing stream is `default()`.
    ///
    /// # Errors
    /// [`ExecuteError::Store`].
    pub async fn load(&self, aggregate_id: &str) -> Result<A, ExecuteError<A::Error>> {
        let mut context = self
            .store
            .load_aggregate(aggregate_id)
            .await
            .map_err(store_error)?;
        Ok(context.aggregate().clone())
    }

    /// Loads the stream's events with their metadata.
    ///
    /// # Errors
    /// [`ExecuteError::Store`].
    pub async fn load_events(
        &self,
        aggregate_id: &str,
    ) -> Result<Vec<cqrs_es::EventEnvelope<A>>, ExecuteError<A::Error>> {
        self.store
            .load_events(aggregate_id)
            .await
            .map_err(store_error)
    }

    /// Loads a stream for a command whose content depends on its state: the state is read from
    /// it, and [`CommandExecutor::execute_loaded`] commits against this very load (one read of
    /// the stream instead of two).
    ///
    /// # Errors
    /// [`ExecuteError::Store`].
    pub async fn load_for_command(
        &self,
        aggregate_id: &str,
    ) -> Result<Loaded<A>, ExecuteError<A::Error>> {
        Ok(Loaded(
            self.store
                .load_aggregate(aggregate_id)
                .await
                .map_err(store_error)?,
        ))
    }

    /// Decides `command` against the current stream and commits its events with `context` as
    /// metadata, retrying with jittered exponential back-off when another writer got there first.
    ///
    /// # Errors
    /// [`ExecuteError::Rejected`] with the domain's reason, [`ExecuteError::Conflict`] when the
    /// attempts ran out, [`ExecuteError::Store`] when the database failed.
    pub async fn execute(
        &self,
        aggregate_id: &str,
        command: A::Command,
        context: &CommandContext,
    ) -> Result<Committed<A>, ExecuteError<A::Error>> {
        self.execute_from(aggregate_id, None, command, context)
            .await
    }

    /// As [`CommandExecutor::execute`], deciding first against `loaded` (a retry after a
    /// concurrent change reloads the stream).
    ///
    /// # Errors
    /// As [`CommandExecutor::execute`].
    pub async fn execute_loaded(
        &self,
        aggregate_id: &str,
        loaded: Loaded<A>,
        command: A::Command,
        context: &CommandContext,
    ) -> Result<Committed<A>, ExecuteError<A::Error>> {
        self.execute_from(aggregate_id, Some(loaded), command, context)
            .await
    }

    #[instrument(skip_all, fields(aggregate.type = A::TYPE, aggregate.id = %aggregate_id, command = command.command_name()))]
    async fn execute_from(
        &self,
        aggregate_id: &str,
        mut loaded: Option<Loaded<A>>,
        command: A::Command,
        context: &CommandContext,
    ) -> Result<Committed<A>, ExecuteError<A::Error>> {
        let command_id = Uuid::now_v7();
        let metadata = context.metadata(command.command_name(), command_id);
        for attempt in 1..=self.max_attempts {
            match self
                .try_once(
                    aggregate_id,
                    loaded.take(),
                    command.clone(),
                    metadata.clone(),
                )
                .await
            {
                Err(AggregateError::AggregateConflict) if attempt < self.max_attempts => {
                    tracing::debug!(attempt, "concurrent change; retrying");
                    tokio::time::sleep(backoff(attempt)).await;
                }
                Err(AggregateError::AggregateConflict) => {
                    return Err(ExecuteError::Conflict {
                        attempts: self.max_attempts,
                    });
                }
                Err(AggregateError::UserError(error)) => return Err(ExecuteError::Rejected(error)),
                Err(other) => return Err(store_error(other)),
                Ok((envelopes, aggregate)) => {
                    let events = self.with_positions(aggregate_id, envelopes).await?;
                    return Ok(Committed { events, aggregate });
                }
            }
        }
        Err(ExecuteError::Conflict {
            attempts: self.max_attempts,
        })
    }

    async fn try_once(
        &self,
        aggregate_id: &str,
        loaded: Option<Loaded<A>>,
        command: A::Command,
        metadata: HashMap<String, String>,
    ) -> Result<(Vec<cqrs_es::EventEnvelope<A>>, A), AggregateError<A::Error>> {
        let mut context = match loaded {
            Some(Loaded(context)) => context,
            None => self.store.load_aggregate(aggregate_id).await?,
        };
        let sink = cqrs_es::event_sink::EventSink::default();
        context
            .aggregate()
            .handle(command, &(), &sink)
            .await
            .map_err(AggregateError::UserError)?;
        let after = context.aggregate().clone();
        let events = sink.collect().await;
        if events.is_empty() {
            return Ok((Vec::new(), after));
        }
        let envelopes = self.store.commit(events, context, metadata).await?;
        Ok((envelopes, after))
    }

    async fn with_positions(
        &self,
        aggregate_id: &str,
        envelopes: Vec<cqrs_es::EventEnvelope<A>>,
    ) -> Result<Vec<CommittedEvent<A::Event>>, ExecuteError<A::Error>> {
        let Some(first) = envelopes.first().map(|e| e.sequence) else {
            return Ok(Vec::new());
        };
        let positions: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT sequence, global_position FROM events \
             WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence >= $3 ORDER BY sequence",
        )
        .bind(A::TYPE)
        .bind(aggregate_id)
        .bind(i64::try_from(first).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(|e| ExecuteError::Store(e.into()))?;
        envelopes
            .into_iter()
            .map(|envelope| {
                let position = positions
                    .iter()
                    .find(|(sequence, _)| {
                        usize::try_from(*sequence).ok() == Some(envelope.sequence)
                    })
                    .map(|(_, position)| *position)
                    .ok_or_else(|| {
                        ExecuteError::Store(anyhow::anyhow!(
                            "committed event {} not found",
                            envelope.sequence
                        ))
                    })?;
                Ok(CommittedEvent {
                    sequence: envelope.sequence,
                    global_position: position,
                    event: envelope.payload,
                })
            })
            .collect()
    }
}

fn backoff(attempt: u32) -> Duration {
    let ceiling = BACKOFF_BASE
        .saturating_mul(1 << attempt.min(10))
        .min(BACKOFF_CAP);
    let millis = u64::try_from(ceiling.as_millis())
        .unwrap_or(u64::MAX)
        .max(1);
    Duration::from_millis(rand::rng().random_range(0..=millis))
}

fn store_error<E: std::error::Error + Send + Sync + 'static>(
    error: AggregateError<E>,
) -> ExecuteError<E> {
    ExecuteError::Store(anyhow::Error::new(error))
}

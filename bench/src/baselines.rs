//! The machine's own limits, measured in the same run as the service (performance.md §9, §10):
//! the event-sourcing round trip in raw SQL, a minimal axum + sqlx server doing one primary-key
//! lookup, a raw ordered read of the event log through a server-side cursor, and a bare lettre
//! send loop.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use lettre::transport::smtp::PoolConfig;
use lettre::{AsyncSmtpTransport, AsyncTransport as _, Message, Tokio1Executor};
use serde_json::Value;
use sqlx::{Connection as _, PgConnection, PgPool, Row as _};

use projections::position::TxId;

use crate::load::{Run, Until, closed_loop};

/// A realistic event payload (performance.md §10.1, 423 bytes).
const PAYLOAD: &str = r#"{"MfaPolicyUpdated":{"tenant_id":"3f6c2a9e-8b1d-4c57-9e02-7a4b1c9d5e21","policy":{"mode":"required","methods":["sms","totp","webauthn"],"grace_period_days":7,"remember_device_days":30,"sms_code_ttl_seconds":300,"exempt_groups":["break-glass-admins"],"entra_conditional_access":false},"changed_by":"a1b2c3d4-e5f6-4711-8899-aabbccddeeff","reason":"Quarterly security review: enforce MFA for all members","ticket":"SEC-2041"}}"#;
/// Its metadata (105 bytes).
const METADATA: &str = r#"{"correlation_id":"0b7e4f6a-2c1d-4e8f-9a3b-5c6d7e8f9a0b","ip":"203.0.113.7","user_agent":"mfa-admin/1.4"}"#;

/// "Load 10 events, append 1" in raw SQL (performance.md §3.3 `load_append.sql`), on a table of
/// postgres-es's own shape beside the service's log: no triggers, no derived columns.
pub struct LoadAppend {
    pool: PgPool,
    aggregates: usize,
    next: Arc<AtomicUsize>,
}

impl LoadAppend {
    /// Creates the table with `aggregates` streams of 10 events and a pool of `clients`.
    ///
    /// # Errors
    /// A database error.
    pub async fn prepare(pool: PgPool, aggregates: usize) -> anyhow::Result<Self> {
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS bench_load_append (
                aggregate_type text NOT NULL, aggregate_id text NOT NULL,
                sequence bigint CHECK (sequence >= 0) NOT NULL, event_type text NOT NULL,
                event_version text NOT NULL, payload jsonb NOT NULL, metadata jsonb NOT NULL,
                PRIMARY KEY (aggregate_type, aggregate_id, sequence))",
        )
        .execute(&pool)
        .await?;
        let count = i64::try_from(aggregates)?;
        // Interleaved like months of real appends: one stream's events on different pages.
        sqlx::query(
            "INSERT INTO bench_load_append \
             SELECT 'Hist10', a::text, s, 'MfaPolicyUpdated', '1.0', $1::jsonb, $2::jsonb \
             FROM generate_series(1, 10) s, generate_series(0, $3 - 1) a ORDER BY s, a",
        )
        .bind(PAYLOAD)
        .bind(METADATA)
        .bind(count)
        .execute(&pool)
        .await?;
        sqlx::query("VACUUM ANALYZE bench_load_append")
            .execute(&pool)
            .await?;
        Ok(Self {
            pool,
            aggregates,
            next: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// Puts every stream back at 10 events when the next `expected` appends would wrap around.
    ///
    /// # Errors
    /// A database error.
    pub async fn ensure_room(&self, expected: usize) -> anyhow::Result<()> {
        if self.next.load(Ordering::Relaxed) + expected < self.aggregates {
            return Ok(());
        }
        sqlx::query("DELETE FROM bench_load_append WHERE sequence > 10")
            .execute(&self.pool)
            .await?;
        sqlx::query("VACUUM ANALYZE bench_load_append")
            .execute(&self.pool)
            .await?;
        self.next.store(0, Ordering::Relaxed);
        Ok(())
    }

    /// `clients` concurrent clients for `duration`: each transaction loads one stream's events
    /// (decoding them, as an application does) and appends the next.
    ///
    /// # Errors
    /// A database error.
    pub async fn run(&self, clients: usize, duration: Duration) -> anyhow::Result<Run> {
        let pool = self.pool.clone();
        let next = Arc::clone(&self.next);
        let aggregates = self.aggregates;
        closed_loop(clients, Until::Elapsed(duration), move |_| {
            let pool = pool.clone();
            let aggregate = next.fetch_add(1, Ordering::Relaxed) % aggregates;
            async move { load_append(&pool, aggregate).await }
        })
        .await
    }
}

async fn load_append(pool: &PgPool, aggregate: usize) -> anyhow::Result<()> {
    let id = aggregate.to_string();
    let mut transaction = pool.begin().await?;
    let rows = sqlx::query(
        "SELECT aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata \
         FROM bench_load_append WHERE aggregate_type = 'Hist10' AND aggregate_id = $1 ORDER BY sequence",
    )
    .bind(&id)
    .fetch_all(&mut *transaction)
    .await?;
    let mut last = 0_i64;
    for row in &rows {
        last = row.try_get("sequence")?;
        let payload: Value = row.try_get("payload")?;
        let metadata: Value = row.try_get("metadata")?;
        anyhow::ensure!(payload.is_object() && metadata.is_object(), "bad row");
    }
    sqlx::query(
        "INSERT INTO bench_load_append (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
         VALUES ('Hist10', $1, $2, 'MfaPolicyUpdated', '1.0', $3::jsonb, $4::jsonb)",
    )
    .bind(&id)
    .bind(last + 1)
    .bind(PAYLOAD)
    .bind(METADATA)
    .execute(&mut *transaction)
    .await?;
    transaction.commit().await?;
    Ok(())
}

/// The minimal HTTP server: axum 0.8, one primary-key lookup of the login page's table via a
/// sqlx pool, JSON out. Returns its base URL; it runs until the process ends.
///
/// # Errors
/// When the listener cannot be bound.
pub async fn spawn_pk_server(pool: PgPool) -> anyhow::Result<String> {
    async fn lookup(
        State(pool): State<PgPool>,
        Json(body): Json<Value>,
    ) -> Result<Json<Value>, axum::http::StatusCode> {
        let key = body
            .get("key")
            .and_then(Value::as_str)
            .ok_or(axum::http::StatusCode::UNPROCESSABLE_ENTITY)?;
        let row: Option<(uuid::Uuid, bool, bool, bool)> = sqlx::query_as(
            "SELECT user_id, active, has_password, phone_enrolled FROM login_accounts WHERE email_key = $1",
        )
        .bind(key)
        .fetch_optional(&pool)
        .await
        .map_err(|_| axum::http::StatusCode::INTERNAL_SERVER_ERROR)?;
        Ok(Json(match row {
            Some((user_id, active, has_password, phone_enrolled)) => serde_json::json!({
                "user_id": user_id, "active": active, "has_password": has_password, "phone_enrolled": phone_enrolled
            }),
            None => serde_json::json!({"step": "password"}),
        }))
    }
    let app = Router::new()
        .route("/options", post(lookup))
        .with_state(pool);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            eprintln!("the baseline server stopped: {error}");
        }
    });
    Ok(format!("http://{address}"))
}

/// Reads the whole log in the projectors' order through a server-side cursor (`FETCH 1000`),
/// decoding payload and metadata; returns the rows read and the time taken.
///
/// # Errors
/// A database error.
pub async fn cursor_read(url: &str) -> anyhow::Result<(usize, Duration)> {
    let mut connection = PgConnection::connect(url).await?;
    let started = Instant::now();
    let mut transaction = connection.begin().await?;
    sqlx::query(
        "DECLARE replay NO SCROLL CURSOR FOR \
         SELECT aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata, \
                global_position, tx_id, recorded_at \
         FROM events ORDER BY tx_id, global_position",
    )
    .execute(&mut *transaction)
    .await?;
    let mut count = 0;
    loop {
        let rows = sqlx::query("FETCH 1000 FROM replay")
            .fetch_all(&mut *transaction)
            .await?;
        if rows.is_empty() {
            break;
        }
        for row in &rows {
            let _: &str = row.try_get("aggregate_id")?;
            let _: i64 = row.try_get("sequence")?;
            let _: TxId = row.try_get("tx_id")?;
            let payload: Value = row.try_get("payload")?;
            let metadata: Value = row.try_get("metadata")?;
            anyhow::ensure!(payload.is_object() && metadata.is_object(), "bad row");
        }
        count += rows.len();
    }
    transaction.commit().await?;
    let elapsed = started.elapsed();
    connection.close().await?;
    Ok((count, elapsed))
}

/// Sends `message` `count` times through one pooled lettre transport to the SMTP server on
/// `port`, from `concurrency` senders at once, each on its own connection (the pool holds as
/// many): the same shape as the delivery worker's sends, without its queue.
///
/// # Errors
/// A refused or failed send.
pub async fn lettre_loop(
    port: u16,
    message: &Message,
    count: usize,
    concurrency: usize,
) -> anyhow::Result<Run> {
    let concurrency = concurrency.max(1);
    let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(port)
        .pool_config(PoolConfig::new().max_size(u32::try_from(concurrency)?))
        .build();
    let next = AtomicUsize::new(0);
    let started = Instant::now();
    let senders = (0..concurrency).map(|_| async {
        let mut latencies = Vec::new();
        while next.fetch_add(1, Ordering::Relaxed) < count {
            let sent = Instant::now();
            transport
                .send(message.clone())
                .await
                .context("bare lettre send")?;
            latencies.push(sent.elapsed());
        }
        anyhow::Ok(latencies)
    });
    let mut latencies = Vec::with_capacity(count);
    for sender in futures::future::join_all(senders).await {
        latencies.extend(sender?);
    }
    Ok(Run {
        count,
        elapsed: started.elapsed(),
        latencies,
    })
}

//! Concurrent conflicting commands on one stream: optimistic locking plus bounded retry loses
//! no update.

use std::collections::BTreeSet;
use std::sync::Arc;

use domain::ids::EntraTenantId;
use domain::tenant::{ConsentDecision, ConsentState};
use futures::future::join_all;

use api::application::CommandError;

use crate::helpers::{TestDb, admin, register_tenant};
use crate::persistence::entra;

const WRITERS: u128 = 32;

async fn race(
    commands: Arc<api::application::Commands>,
    tenant: domain::ids::TenantId,
) -> Vec<(EntraTenantId, Result<(), CommandError>)> {
    let writers = (1..=WRITERS).map(|n| {
        let commands = Arc::clone(&commands);
        tokio::spawn(async move {
            let result = commands
                .record_entra_consent(&admin(tenant), tenant, entra(n), ConsentDecision::Granted)
                .await
                .map(|_| ());
            (entra(n), result)
        })
    });
    join_all(writers)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect()
}

#[tokio::test]
async fn thirty_two_concurrent_commands_on_one_aggregate_all_land_with_retries() {
    let db = TestDb::new().await;
    let commands = Arc::new(db.commands_with_attempts(64));
    let tenant = register_tenant(&commands, "Akkermans Accountants").await;

    let results = race(Arc::clone(&commands), tenant).await;

    assert!(
        results.iter().all(|(_, result)| result.is_ok()),
        "{results:?}"
    );
    let state = commands.tenants().load(&tenant.to_string()).await.unwrap();
    for n in 1..=WRITERS {
        assert_eq!(
            state.consent(entra(n)),
            Some(ConsentState::Granted),
            "consent {n} was lost"
        );
    }
    let sequences: Vec<i64> = sqlx::query_scalar(
        "SELECT sequence FROM events WHERE aggregate_type = 'tenant' ORDER BY sequence",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        sequences,
        (1..=1 + WRITERS as i64).collect::<Vec<_>>(),
        "one event per command, no gaps"
    );
}

#[tokio::test]
async fn without_retries_every_losing_writer_is_told_and_nothing_is_half_applied() {
    let db = TestDb::new().await;
    let commands = Arc::new(db.commands_with_attempts(1));
    let tenant = register_tenant(&commands, "Akkermans Accountants").await;

    let results = race(Arc::clone(&commands), tenant).await;

    let state = commands.tenants().load(&tenant.to_string()).await.unwrap();
    let mut landed = BTreeSet::new();
    for (entra_tenant, result) in &results {
        match result {
            Ok(()) => {
                assert_eq!(
                    state.consent(*entra_tenant),
                    Some(ConsentState::Granted),
                    "an acknowledged update was lost"
                );
                landed.insert(*entra_tenant);
            }
            Err(CommandError::Conflict) => assert_eq!(
                state.consent(*entra_tenant),
                None,
                "a refused update was applied"
            ),
            Err(other) => panic!("unexpected error {other:?}"),
        }
    }
    assert!(!landed.is_empty());
    assert_eq!(db.event_count().await, 1 + landed.len() as i64);
}

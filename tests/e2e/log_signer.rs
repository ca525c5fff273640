//! The checkpoint signer vouches for the events themselves: it folds their chain hashes from its
//! own last checkpoint, so a forged running hash in the `log_chain` projector's table (writable by
//! whoever can write read models) is never signed.

use chrono::Utc;

use api::workers::checkpoints::{CheckpointSigner, write_checkpoints};
use projections::audit::export_verifiable;
use projections::chain::Scope;
use projections::verify::verify_export;

use crate::helpers::{TestDb, admin};
use crate::read_models::random_history;

async fn verify_whole_log(db: &TestDb, signer: &CheckpointSigner) -> u64 {
    let mut export = Vec::new();
    export_verifiable(&db.pool, Scope::WholeLog, &mut export)
        .await
        .unwrap();
    verify_export(
        String::from_utf8(export).unwrap().lines(),
        &[signer.public_key()],
    )
    .unwrap()
    .checkpoints
}

#[tokio::test]
async fn the_signer_signs_the_events_not_a_forged_running_hash() {
    // Arrange: a signed history, then more events and a forged log_chain table.
    let db = TestDb::new().await;
    let signer = CheckpointSigner::from_settings(&db.settings().audit).unwrap();
    let (commands, tenant) = random_history(&db, 60, 3).await;
    db.run_projections().await;
    write_checkpoints(&db.pool, &signer, Utc::now())
        .await
        .unwrap();
    for sms_required in [true, false, true] {
        commands
            .set_mfa_policy(&admin(tenant), tenant, sms_required)
            .await
            .unwrap();
    }
    db.run_projections().await;
    sqlx::query("UPDATE log_chain SET running_hash = sha256('forged'), events = events + 5")
        .execute(&db.pool)
        .await
        .unwrap();

    // Act
    let signed = write_checkpoints(&db.pool, &signer, Utc::now())
        .await
        .unwrap();

    // Assert: the new checkpoints hold the events' own running hashes.
    assert!(
        signed >= 2,
        "the whole log and a tenant were signed again ({signed})"
    );
    let forged: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM log_checkpoints k JOIN log_chain c ON c.scope = k.scope \
         WHERE k.running_hash = c.running_hash",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(forged, 0, "no forged running hash was signed");
    assert!(verify_whole_log(&db, &signer).await >= 2);
    let mut tenant_export = Vec::new();
    export_verifiable(&db.pool, Scope::Tenant(tenant), &mut tenant_export)
        .await
        .unwrap();
    let summary = verify_export(
        String::from_utf8(tenant_export).unwrap().lines(),
        &[signer.public_key()],
    )
    .unwrap();
    assert!(summary.checkpoints >= 1, "{summary:?}");

    // Nothing new: nothing to sign.
    assert_eq!(
        write_checkpoints(&db.pool, &signer, Utc::now())
            .await
            .unwrap(),
        0
    );
}

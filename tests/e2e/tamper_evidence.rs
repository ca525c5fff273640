//! Tamper evidence (ADR-0012, ADR-0013): the database chains every event to its stream's previous
//! one, the `log_chain` projector folds the hashes into running hashes that the service signs, and
//! `audit verify` checks an export offline. Each tampering below is done as a superuser who
//! switches the append-only trigger off, in a database of its own, and must be named at the right
//! global position.

use std::path::PathBuf;

use chrono::Utc;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

use api::application::{Commands, NewUserSignIn};
use api::audit::{VerifyFileError, export_to, verify_file};
use api::workers::checkpoints::{CheckpointSigner, write_checkpoints};
use domain::ids::{TenantId, UserId};
use domain::tenant::ConsentDecision;
use domain::user::{ErasureReason, UserCommand};
use domain::values::{DomainName, ProviderErrorCode};
use projections::audit::export_verifiable;
use projections::chain::{ChainedFields, Digest, Scope, jsonb_text};
use projections::verify::{Broken, VerifyError, VerifySummary, verify_export};

use crate::helpers::{TestDb, admin, register_tenant};
use crate::persistence::{entra, new_user};
use crate::read_models::{random_history, random_sign_in};

fn signer(db: &TestDb) -> CheckpointSigner {
    CheckpointSigner::from_settings(&db.settings().audit).unwrap()
}

/// Projects to the end of the log and signs every running hash that changed.
async fn checkpoint(db: &TestDb) {
    db.run_projections().await;
    write_checkpoints(&db.pool, &signer(db), Utc::now())
        .await
        .unwrap();
}

async fn export(db: &TestDb, scope: Scope) -> String {
    let mut out = Vec::new();
    export_verifiable(&db.pool, scope, &mut out).await.unwrap();
    String::from_utf8(out).unwrap()
}

fn verify(db: &TestDb, text: &str) -> Result<VerifySummary, VerifyError> {
    verify_export(text.lines(), &[signer(db).public_key()])
}

async fn verify_scope(db: &TestDb, scope: Scope) -> Result<VerifySummary, VerifyError> {
    verify(db, &export(db, scope).await)
}

fn broken(result: Result<VerifySummary, VerifyError>) -> (i64, Broken) {
    match result {
        Err(VerifyError::Broken { position, reason }) => (position, reason),
        other => panic!("the tampering went unnoticed: {other:?}"),
    }
}

/// Runs `statements` as the superuser the tests connect as, with the append-only trigger off.
async fn tamper(db: &TestDb, statements: &[&str]) {
    let mut connection = PgConnection::connect(&db.url).await.unwrap();
    let mut transaction = connection.begin().await.unwrap();
    sqlx::query("ALTER TABLE events DISABLE TRIGGER events_append_only")
        .execute(&mut *transaction)
        .await
        .unwrap();
    for statement in statements {
        sqlx::query(statement)
            .execute(&mut *transaction)
            .await
            .unwrap();
    }
    sqlx::query("ALTER TABLE events ENABLE TRIGGER events_append_only")
        .execute(&mut *transaction)
        .await
        .unwrap();
    transaction.commit().await.unwrap();
}

/// One random step of one tenant's administration or sign-ins, on its own domain.
async fn tenant_step(
    commands: &Commands,
    tenant: TenantId,
    index: usize,
    users: &mut Vec<UserId>,
    rng: &mut StdRng,
    step: usize,
) {
    let ctx = admin(tenant);
    let domain = DomainName::parse(&format!("kantoor{index}.nl")).unwrap();
    let pick = |rng: &mut StdRng, users: &[UserId]| {
        users.get(rng.random_range(0..users.len().max(1))).copied()
    };
    match rng.random_range(0..8) {
        0..=2 => {
            let method = if rng.random_bool(0.3) {
                NewUserSignIn::EntraId
            } else {
                NewUserSignIn::Sms
            };
            let email = format!("u{step}@kantoor{index}.nl");
            if let Ok(created) = commands
                .create_user(&ctx, tenant, new_user(&email, method))
                .await
            {
                users.push(created.user_id);
            }
        }
        3 => {
            commands
                .set_mfa_policy(&ctx, tenant, rng.random_bool(0.5))
                .await
                .unwrap();
        }
        4 => {
            let selected: Vec<UserId> = users
                .iter()
                .copied()
                .filter(|_| rng.random_bool(0.4))
                .collect();
            if rng.random_bool(0.6) {
                commands
                    .link_domain_users(&ctx, tenant, domain, &selected, false)
                    .await
                    .unwrap();
            } else {
                commands
                    .unlink_domain_users(&ctx, tenant, domain, &selected, false)
                    .await
                    .unwrap();
            }
        }
        5 => {
            if let Some(user) = pick(rng, users) {
                let command = if rng.random_bool(0.6) {
                    UserCommand::DeactivateUser
                } else {
                    UserCommand::ReactivateUser
                };
                let _ = commands
                    .execute_user_command(&ctx, tenant, user, command)
                    .await;
            }
        }
        6 => {
            let decision = if rng.random_bool(0.5) {
                ConsentDecision::Granted
            } else {
                ConsentDecision::Refused {
                    error_code: ProviderErrorCode::parse("access_denied").unwrap(),
                }
            };
            commands
                .record_entra_consent(&ctx, tenant, entra(100 + index as u128), decision)
                .await
                .unwrap();
        }
        _ => {
            if let Some(user) = pick(rng, users) {
                random_sign_in(commands, tenant, user, rng).await;
            }
        }
    }
}

/// A seeded history of `tenants` tenants whose commands interleave, in two rounds with signed
/// checkpoints after each, so that the log has checkpoints in its middle and at its end. The
/// domain `gedeeld.nl` passes from the first tenant to the second, so one stream belongs to
/// two tenants.
async fn many_tenants(db: &TestDb, tenants: usize, steps: usize, seed: u64) -> Vec<TenantId> {
    let commands = db.commands();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut ids = Vec::new();
    let mut users: Vec<Vec<UserId>> = Vec::new();
    for index in 0..tenants {
        let tenant = register_tenant(&commands, &format!("Kantoor {index}")).await;
        let domain = DomainName::parse(&format!("kantoor{index}.nl")).unwrap();
        crate::helpers::bind_proven_domain(&commands, tenant, &domain, entra(100 + index as u128))
            .await;
        ids.push(tenant);
        users.push(Vec::new());
    }
    let shared = DomainName::parse("gedeeld.nl").unwrap();
    crate::helpers::bind_proven_domain(&commands, ids[0], &shared, entra(7)).await;
    for round in 0..2 {
        for step in 0..steps {
            let index = rng.random_range(0..tenants);
            let step = round * steps + step;
            tenant_step(
                &commands,
                ids[index],
                index,
                &mut users[index],
                &mut rng,
                step,
            )
            .await;
        }
        if round == 0 {
            db.run_projections().await;
            commands
                .release_domain(&admin(ids[0]), ids[0], shared.clone())
                .await
                .unwrap();
            crate::helpers::bind_proven_domain(&commands, ids[1], &shared, entra(8)).await;
        }
        checkpoint(db).await;
    }
    ids
}

/// A row of the log as the tests pick them.
#[derive(Debug, Clone, sqlx::FromRow)]
struct Row {
    global_position: i64,
    aggregate_type: String,
    aggregate_id: String,
    sequence: i64,
    tenant_id: Option<Uuid>,
}

async fn rows(db: &TestDb, condition: &str) -> Vec<Row> {
    sqlx::query_as(&format!(
        "SELECT global_position, aggregate_type, aggregate_id, sequence, tenant_id FROM events e \
         WHERE {condition} ORDER BY tx_id, global_position"
    ))
    .fetch_all(&db.pool)
    .await
    .unwrap()
}

/// The whole-log checkpoint positions in log order.
async fn checkpoint_positions(db: &TestDb, scope: Scope) -> Vec<i64> {
    sqlx::query_scalar(
        "SELECT position FROM log_checkpoints WHERE scope = $1 ORDER BY tx_id, position",
    )
    .bind(scope.to_string())
    .fetch_all(&db.pool)
    .await
    .unwrap()
}

fn tenant_scope(row: &Row) -> Scope {
    Scope::Tenant(TenantId::from_uuid(row.tenant_id.unwrap()))
}

#[tokio::test]
async fn an_untouched_log_of_many_tenants_verifies_whole_and_per_tenant() {
    let db = TestDb::new().await;
    let tenants = many_tenants(&db, 6, 60, 1).await;

    let whole = verify_scope(&db, Scope::WholeLog).await.unwrap();
    assert_eq!(whole.events, u64::try_from(db.event_count().await).unwrap());
    assert_eq!(whole.checkpoints, 2);
    assert_eq!(whole.unsigned_events, 0);
    let mut per_tenant = 0;
    for (index, tenant) in tenants.iter().enumerate() {
        let summary = verify_scope(&db, Scope::Tenant(*tenant)).await.unwrap();
        assert_eq!(summary.checkpoints, 2, "tenant {index}");
        assert_eq!(summary.unsigned_events, 0, "tenant {index}");
        assert_eq!(
            summary.anchored_events,
            u64::from(index == 1),
            "only the second tenant chains to a predecessor of another tenant (the shared domain)"
        );
        per_tenant += summary.events;
    }
    assert_eq!(
        per_tenant, whole.events,
        "every event belongs to exactly one tenant"
    );
    // The running-hash projection is rebuildable like every other.
    db.assert_projections_verify().await;
}

#[tokio::test]
async fn the_rust_chain_equals_the_database_chain_for_every_row_of_a_long_history() {
    let db = TestDb::new().await;
    random_history(&db, 400, 5).await;
    // Plus one hand-written event with every kind of JSON value jsonb renders specially.
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
         VALUES ('probe', 'jsonb', 1, 'Probe', '1', $1, $2)",
    )
    .bind(json!({ "Probe": {
        "quote\"back\\slash": "tab\there\nnew\u{1}\u{1f}\u{7f} é ✓ 𝄞 /",
        "b": [1, -2, 1.5, 0.1, 1e-7, 1e20, 12_345_678_901_234_i64, true, false, null, [], {}],
        "aa": { "zz": 1, "y": 2, "ä": 3, "AB": 4 },
    }}))
    .bind(json!({ "actor_id": "cli", "": "empty key" }))
    .execute(&db.pool)
    .await
    .unwrap();

    #[derive(sqlx::FromRow)]
    struct Stored {
        aggregate_type: String,
        aggregate_id: String,
        sequence: i64,
        global_position: i64,
        tx_id: projections::position::TxId,
        recorded_at: chrono::DateTime<Utc>,
        event_type: String,
        event_version: String,
        payload: Value,
        metadata: Value,
        payload_text: String,
        metadata_text: String,
        hash: Vec<u8>,
    }
    let stored: Vec<Stored> = sqlx::query_as(
        "SELECT aggregate_type, aggregate_id, sequence, global_position, tx_id, \
                recorded_at, event_type, event_version, payload, metadata, \
                payload::text AS payload_text, metadata::text AS metadata_text, hash \
         FROM events ORDER BY aggregate_type, aggregate_id, sequence",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert!(
        stored.len() > 500,
        "a long history ({} events)",
        stored.len()
    );

    let mut previous = Digest::GENESIS;
    for row in &stored {
        let at = format!(
            "{}/{} #{}",
            row.aggregate_type, row.aggregate_id, row.sequence
        );
        assert_eq!(
            jsonb_text(&row.payload),
            row.payload_text,
            "payload of {at}"
        );
        assert_eq!(
            jsonb_text(&row.metadata),
            row.metadata_text,
            "metadata of {at}"
        );
        if row.sequence == 1 {
            previous = Digest::GENESIS;
        }
        let fields = ChainedFields {
            aggregate_type: &row.aggregate_type,
            aggregate_id: &row.aggregate_id,
            sequence: row.sequence,
            global_position: row.global_position,
            tx_id: row.tx_id.0,
            recorded_at: row.recorded_at,
            event_type: &row.event_type,
            event_version: &row.event_version,
            payload: &row.payload,
            metadata: &row.metadata,
        };
        let canonical: Vec<u8> = sqlx::query_scalar(
            "SELECT event_canonical_bytes(aggregate_type, aggregate_id, sequence, global_position, \
                    tx_id, recorded_at, event_type, event_version, payload, metadata) \
             FROM events WHERE global_position = $1",
        )
        .bind(row.global_position)
        .fetch_one(&db.pool)
        .await
        .unwrap();
        assert_eq!(
            fields.canonical_bytes(),
            canonical,
            "canonical bytes of {at}"
        );
        let hash = fields.hash(&previous);
        assert_eq!(
            hash.as_bytes().as_slice(),
            row.hash.as_slice(),
            "hash of {at}"
        );
        previous = hash;
    }
}

#[tokio::test]
async fn altering_one_byte_of_a_payload_string_is_named_at_the_event() {
    let db = TestDb::new().await;
    many_tenants(&db, 3, 40, 2).await;
    let target = rows(&db, "event_type = 'UserCreated'").await[3].clone();

    // "Anne de Vries" -> "Bnne de Vries": one byte.
    tamper(&db, &[&format!(
        "UPDATE events SET payload = jsonb_set(payload, '{{UserCreated,display_name}}', '\"Bnne de Vries\"') \
         WHERE global_position = {}",
        target.global_position
    )])
    .await;

    for scope in [Scope::WholeLog, tenant_scope(&target)] {
        assert_eq!(
            broken(verify_scope(&db, scope).await),
            (target.global_position, Broken::AlteredContent),
            "{scope}"
        );
    }
}

#[tokio::test]
async fn altering_metadata_is_named_at_the_event() {
    let db = TestDb::new().await;
    many_tenants(&db, 3, 40, 3).await;
    let all = rows(&db, "true").await;
    let target = all[all.len() / 2].clone();

    tamper(
        &db,
        &[&format!(
            "UPDATE events SET metadata = jsonb_set(metadata, '{{actor_id}}', '\"someone-else\"') \
         WHERE global_position = {}",
            target.global_position
        )],
    )
    .await;

    for scope in [Scope::WholeLog, tenant_scope(&target)] {
        assert_eq!(
            broken(verify_scope(&db, scope).await),
            (target.global_position, Broken::AlteredContent),
            "{scope}"
        );
    }
}

#[tokio::test]
async fn deleting_an_event_in_the_middle_of_a_stream_names_its_successor() {
    let db = TestDb::new().await;
    many_tenants(&db, 3, 40, 4).await;
    // An event with a successor in its stream, and no checkpoint from it up to that successor,
    // so that the successor is the first broken place.
    let (deleted, successor): (i64, i64) = sqlx::query_as(
        "SELECT e.global_position, n.global_position FROM events e \
         JOIN events n ON n.aggregate_type = e.aggregate_type AND n.aggregate_id = e.aggregate_id \
                      AND n.sequence = e.sequence + 1 \
         WHERE e.sequence > 1 AND NOT EXISTS (SELECT 1 FROM log_checkpoints c \
               WHERE c.scope = '*' AND (c.tx_id, c.position) >= (e.tx_id, e.global_position) \
                 AND (c.tx_id, c.position) < (n.tx_id, n.global_position)) \
         ORDER BY e.tx_id, e.global_position LIMIT 1",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    let victim = rows(&db, &format!("global_position = {deleted}")).await[0].clone();

    tamper(
        &db,
        &[&format!(
            "DELETE FROM events WHERE global_position = {deleted}"
        )],
    )
    .await;

    let (position, reason) = broken(verify_scope(&db, Scope::WholeLog).await);
    assert_eq!(position, successor);
    assert_eq!(
        reason,
        Broken::SequenceGap {
            stream: format!("{}/{}", victim.aggregate_type, victim.aggregate_id),
            previous: victim.sequence - 1,
            sequence: victim.sequence + 1,
        }
    );
    let (position, _) = broken(verify_scope(&db, tenant_scope(&victim)).await);
    assert!(
        position <= successor,
        "the tenant's export names the gap or an earlier checkpoint, got {position}"
    );
}

#[tokio::test]
async fn deleting_the_last_event_of_a_stream_is_caught_by_the_next_signed_checkpoint() {
    let db = TestDb::new().await;
    many_tenants(&db, 3, 40, 6).await;
    let checkpoints = checkpoint_positions(&db, Scope::WholeLog).await;
    let (first, last) = (checkpoints[0], *checkpoints.last().unwrap());
    // The last event of a stream, signed by the later checkpoint but not itself at a checkpoint.
    let victim = rows(
        &db,
        &format!(
            "NOT EXISTS (SELECT 1 FROM events n WHERE n.aggregate_type = e.aggregate_type \
                         AND n.aggregate_id = e.aggregate_id AND n.sequence = e.sequence + 1) \
             AND (e.tx_id, e.global_position) > (SELECT tx_id, position FROM log_checkpoints \
                                                 WHERE scope = '*' AND position = {first}) \
             AND e.global_position <> {last}"
        ),
    )
    .await[0]
        .clone();

    tamper(
        &db,
        &[&format!(
            "DELETE FROM events WHERE global_position = {}",
            victim.global_position
        )],
    )
    .await;

    let (position, reason) = broken(verify_scope(&db, Scope::WholeLog).await);
    assert_eq!(
        position, last,
        "the first checkpoint after the removed event"
    );
    assert!(
        matches!(reason, Broken::CheckpointMismatch { since: Some(since), signed_events, exported_events }
            if since == first && exported_events == signed_events - 1),
        "{reason}"
    );
    let tenant_checkpoints = checkpoint_positions(&db, tenant_scope(&victim)).await;
    let (position, reason) = broken(verify_scope(&db, tenant_scope(&victim)).await);
    assert_eq!(
        Some(&position),
        tenant_checkpoints
            .iter()
            .find(|&&at| at >= victim.global_position),
        "{reason}"
    );
}

#[tokio::test]
async fn deleting_the_last_event_of_the_log_names_its_position() {
    let db = TestDb::new().await;
    many_tenants(&db, 3, 40, 7).await;
    let all = rows(&db, "true").await;
    let victim = all.last().unwrap().clone();

    tamper(
        &db,
        &[&format!(
            "DELETE FROM events WHERE global_position = {}",
            victim.global_position
        )],
    )
    .await;

    for scope in [Scope::WholeLog, tenant_scope(&victim)] {
        let positions = checkpoint_positions(&db, scope).await;
        assert_eq!(positions.last(), Some(&victim.global_position), "{scope}");
        let since = positions.len().checked_sub(2).map(|index| positions[index]);
        assert_eq!(
            broken(verify_scope(&db, scope).await),
            (
                victim.global_position,
                Broken::CheckpointedEventMissing { since }
            ),
            "{scope}"
        );
    }
}

#[tokio::test]
async fn swapping_the_content_of_two_events_is_named_at_the_first() {
    let db = TestDb::new().await;
    many_tenants(&db, 3, 40, 8).await;
    let users = rows(&db, "aggregate_type = 'user'").await;
    let (a, b) = (
        users[2].global_position,
        users[users.len() - 3].global_position,
    );

    tamper(&db, &[&format!(
        "UPDATE events e SET payload = o.payload, metadata = o.metadata, event_type = o.event_type \
         FROM events o WHERE (e.global_position, o.global_position) IN (({a}, {b}), ({b}, {a}))"
    )])
    .await;

    assert_eq!(
        broken(verify_scope(&db, Scope::WholeLog).await),
        (a, Broken::AlteredContent)
    );
}

#[tokio::test]
async fn swapping_the_positions_of_two_events_is_named_at_the_first() {
    let db = TestDb::new().await;
    many_tenants(&db, 3, 40, 9).await;
    let all = rows(&db, "true").await;
    let (a, b) = (all[10].global_position, all[all.len() - 10].global_position);

    // Move each event to the other's place in the log: position and writing transaction.
    tamper(&db, &[
        "ALTER TABLE events ALTER COLUMN global_position SET GENERATED BY DEFAULT",
        &format!(
            "CREATE TEMP TABLE places AS SELECT global_position, tx_id FROM events \
             WHERE global_position IN ({a}, {b})"
        ),
        &format!("UPDATE events SET global_position = -1 WHERE global_position = {a}"),
        &format!(
            "UPDATE events SET global_position = {a}, tx_id = (SELECT tx_id FROM places WHERE global_position = {a}) \
             WHERE global_position = {b}"
        ),
        &format!(
            "UPDATE events SET global_position = {b}, tx_id = (SELECT tx_id FROM places WHERE global_position = {b}) \
             WHERE global_position = -1"
        ),
        "ALTER TABLE events ALTER COLUMN global_position SET GENERATED ALWAYS",
    ])
    .await;

    assert_eq!(
        broken(verify_scope(&db, Scope::WholeLog).await),
        (a, Broken::AlteredContent)
    );
}

#[tokio::test]
async fn rewriting_a_stream_with_recomputed_hashes_is_caught_by_the_signed_checkpoint() {
    let db = TestDb::new().await;
    many_tenants(&db, 3, 40, 10).await;
    let first = checkpoint_positions(&db, Scope::WholeLog).await[0];
    let target = rows(
        &db,
        &format!("event_type = 'MfaPolicySet' AND global_position < {first}"),
    )
    .await[0]
        .clone();

    // A careful attacker: change the policy and recompute the hash of every later event of the
    // stream, so that the stream chain holds again. Only the key-signed running hash is left.
    tamper(&db, &[
        &format!(
            "UPDATE events SET payload = jsonb_set(payload, '{{MfaPolicySet,sms_required}}', \
                 to_jsonb(NOT (payload #>> '{{MfaPolicySet,sms_required}}')::boolean)) \
             WHERE global_position = {}",
            target.global_position
        ),
        &format!(
            "DO $$ DECLARE event record; previous bytea; BEGIN \
               FOR event IN SELECT * FROM events WHERE aggregate_type = '{}' AND aggregate_id = '{}' \
                            ORDER BY sequence LOOP \
                 IF event.sequence = 1 THEN previous := event_genesis_hash(); END IF; \
                 previous := sha256(previous || event_canonical_bytes(event.aggregate_type, \
                     event.aggregate_id, event.sequence, event.global_position, event.tx_id, \
                     event.recorded_at, event.event_type, event.event_version, event.payload, \
                     event.metadata)); \
                 UPDATE events SET hash = previous WHERE global_position = event.global_position; \
               END LOOP; END $$",
            target.aggregate_type, target.aggregate_id
        ),
    ])
    .await;

    let (position, reason) = broken(verify_scope(&db, Scope::WholeLog).await);
    assert_eq!(position, first);
    assert!(
        matches!(reason, Broken::CheckpointMismatch { since: None, .. }),
        "{reason}"
    );
}

#[tokio::test]
async fn the_cli_verify_accepts_an_untouched_export_file_and_fails_naming_the_position() {
    let db = TestDb::new().await;
    let tenants = many_tenants(&db, 2, 30, 11).await;
    let dir = std::env::temp_dir().join(format!("finteqx-audit-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = |name: &str| -> PathBuf { dir.join(name) };
    let keys = [signer(&db).public_key()];

    export_to(
        &db.pool,
        Scope::Tenant(tenants[0]),
        Some(&file("before.ndjson")),
    )
    .await
    .unwrap();
    let summary = verify_file(&file("before.ndjson"), &keys, &[]).unwrap();
    assert_eq!(summary.scope, Scope::Tenant(tenants[0]));
    let target = rows(
        &db,
        &format!(
            "tenant_id = '{}' AND event_type = 'TenantRegistered'",
            tenants[0]
        ),
    )
    .await
    .last()
    .unwrap()
    .clone();
    tamper(
        &db,
        &[&format!(
            "UPDATE events SET metadata = metadata || '{{\"actor_id\": \"someone-else\"}}' \
         WHERE global_position = {}",
            target.global_position
        )],
    )
    .await;
    export_to(
        &db.pool,
        Scope::Tenant(tenants[0]),
        Some(&file("after.ndjson")),
    )
    .await
    .unwrap();

    let error = verify_file(&file("after.ndjson"), &keys, &[]).unwrap_err();
    // `finteqx audit verify` returns this error from `main`, which exits with code 1.
    assert!(
        matches!(&error, VerifyFileError::Verify(VerifyError::Broken { position, .. }) if *position == target.global_position),
        "{error:?}"
    );
    assert!(
        error.to_string().starts_with(&format!(
            "tamper evidence broken at global position {}",
            target.global_position
        )),
        "{error}"
    );
    // A key the export was not signed with is not trusted.
    let stranger = CheckpointSigner::new(&"11".repeat(32).into()).unwrap();
    assert!(matches!(
        verify_file(&file("before.ndjson"), &[stranger.public_key()], &[]),
        Err(VerifyFileError::Verify(VerifyError::Broken {
            reason: Broken::UntrustedKey { .. },
            ..
        }))
    ));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_forged_checkpoint_signature_is_named() {
    let db = TestDb::new().await;
    many_tenants(&db, 2, 20, 12).await;
    let first = checkpoint_positions(&db, Scope::WholeLog).await[0];

    let mut connection = PgConnection::connect(&db.url).await.unwrap();
    for statement in [
        "ALTER TABLE log_checkpoints DISABLE TRIGGER log_checkpoints_append_only".to_owned(),
        format!(
            "UPDATE log_checkpoints SET events = events + 1 WHERE scope = '*' AND position = {first}"
        ),
        "ALTER TABLE log_checkpoints ENABLE TRIGGER log_checkpoints_append_only".to_owned(),
    ] {
        sqlx::query(&statement)
            .execute(&mut connection)
            .await
            .unwrap();
    }

    assert_eq!(
        broken(verify_scope(&db, Scope::WholeLog).await),
        (first, Broken::BadSignature)
    );
}

#[tokio::test]
async fn the_database_refuses_an_event_without_a_predecessor_and_overwrites_a_supplied_hash() {
    let db = TestDb::new().await;
    let insert = |sequence: i64| {
        sqlx::query(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata, hash) \
             VALUES ('probe', 'gap', $1, 'Probe', '1', '{\"Probe\": {}}', '{}', '\\x00')",
        )
        .bind(sequence)
        .execute(&db.pool)
    };

    let error = insert(2).await.unwrap_err();
    assert_eq!(
        error.as_database_error().and_then(|e| e.code()).as_deref(),
        Some("23503"),
        "no predecessor to chain to"
    );
    insert(1).await.unwrap();
    let hash: Vec<u8> = sqlx::query_scalar("SELECT hash FROM events WHERE aggregate_id = 'gap'")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(
        hash.len(),
        32,
        "the trigger computed the hash, not the writer"
    );
}

#[tokio::test]
async fn erasing_a_person_keeps_the_chain_and_every_earlier_checkpoint_valid() {
    let db = TestDb::new().await;
    many_tenants(&db, 2, 30, 13).await;
    let created = rows(&db, "event_type = 'UserCreated'").await[0].clone();
    let tenant = TenantId::from_uuid(created.tenant_id.unwrap());
    let user = UserId::from_uuid(created.aggregate_id.parse().unwrap());
    let before = export(&db, Scope::WholeLog).await;

    db.commands()
        .forget_user(
            &admin(tenant),
            tenant,
            user,
            ErasureReason::DataSubjectRequest,
        )
        .await
        .unwrap();
    checkpoint(&db).await;

    // Erasure destroys a key and appends an event; no stored byte of an earlier event changes.
    let after = export(&db, Scope::WholeLog).await;
    let events = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|line| line.starts_with("{\"global_position\""))
            .map(str::to_owned)
            .collect()
    };
    let (old, new) = (events(&before), events(&after));
    assert!(!old.is_empty() && new.len() > old.len());
    assert_eq!(new[..old.len()], old[..], "earlier events are untouched");
    let held: Vec<_> = before
        .lines()
        .filter_map(
            |line| match projections::verify::ExportLine::parse(line).unwrap() {
                projections::verify::ExportLine::Checkpoint(checkpoint) => Some(checkpoint),
                _ => None,
            },
        )
        .collect();
    let mut verifier = projections::verify::Verifier::new([signer(&db).public_key()]);
    verifier.hold_checkpoints(held);
    for line in after.lines() {
        verifier.feed(line).unwrap();
    }
    let summary = verifier.finish().unwrap();
    assert_eq!(summary.unsigned_events, 0);
    verify_scope(&db, Scope::Tenant(tenant)).await.unwrap();
}

//! Micro-benchmarks (criterion) of the pure costs on the sign-in path: the domain's decision on
//! VerifySmsCode, the keyed hash of a code, an argon2 password check, and sealing and opening one
//! personal field (which includes the data-key lookup in PostgreSQL; skipped without a server).
//!
//! `cargo bench -p bench --bench micro`

#![expect(clippy::unwrap_used, reason = "benchmark set-up fails loudly")]

use chrono::Utc;
use criterion::{Criterion, criterion_group, criterion_main};
use secrecy::SecretString;
use serde_json::json;
use sqlx::{Connection as _, PgConnection};
use uuid::Uuid;

use api::keys::{CodeHasher, PasswordHashing};
use api::personal_data::PersonalDataKeys;
use domain::TenantScoped;
use domain::ids::{SignInId, TenantId, UserId};
use domain::sign_in::{SignIn, SignInCommand, SignInEvent, SignInMethod, SmsCodePurpose};
use domain::sign_in_rule::SignInRequirement;

const CODE_KEY: &str = "development-only-code-key-change-me";
const MASTER_KEY: &str = "0000000000000000000000000000000000000000000000000000000000000d01";

fn domain_and_hashing(c: &mut Criterion) {
    let hasher = CodeHasher::new(&SecretString::from(CODE_KEY.to_owned())).unwrap();
    let sign_in_id = SignInId::from_uuid(Uuid::now_v7());
    let tenant_id = TenantId::from_uuid(Uuid::now_v7());
    let user_id = UserId::from_uuid(Uuid::now_v7());
    let now = Utc::now();
    let mut attempt = SignIn::default();
    attempt.evolve(SignInEvent::SignInStarted {
        sign_in_id,
        tenant_id,
        user_id,
        method: SignInMethod::PasswordAndSms,
        requirement: Some(SignInRequirement::PasswordAndSms),
        started_at: now,
    });
    attempt.evolve(SignInEvent::PasswordAccepted {
        sign_in_id,
        tenant_id,
        user_id,
    });
    attempt.evolve(SignInEvent::SmsCodeIssued {
        sign_in_id,
        tenant_id,
        user_id,
        code_hash: hasher.hash(sign_in_id, "123456"),
        issued_at: now,
        expires_at: now + chrono::Duration::minutes(5),
        purpose: SmsCodePurpose::SignIn,
        enrolling_phone: None,
    });
    let right = hasher.hash(sign_in_id, "123456");
    c.bench_function("domain: SignIn::decide(VerifySmsCode), right code", |b| {
        b.iter(|| {
            attempt
                .decide(TenantScoped::new(
                    tenant_id,
                    SignInCommand::VerifySmsCode {
                        code_hash: right.clone(),
                        now,
                    },
                ))
                .unwrap()
        });
    });
    c.bench_function("keys: CodeHasher::hash (HMAC-SHA-256 of a code)", |b| {
        b.iter(|| hasher.hash(sign_in_id, std::hint::black_box("654321")));
    });
    let passwords = PasswordHashing;
    let password = SecretString::from("correct horse battery staple".to_owned());
    let phc = passwords.hash(&password).unwrap();
    let mut group = c.benchmark_group("keys: argon2id");
    group.sample_size(10);
    group.bench_function("PasswordHashing::verify (m=19 MiB, t=2)", |b| {
        b.iter(|| assert!(passwords.verify(&password, &phc)));
    });
    group.finish();
}

fn sealing(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let name = format!("finteqx_bench_micro_{}", Uuid::new_v4().simple());
    let set_up = runtime.block_on(async {
        let mut admin = PgConnection::connect(&server).await?;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await?;
        let (base, _) = server.rsplit_once('/').unwrap_or((&server, ""));
        let pool = sqlx::PgPool::connect(&format!("{base}/{name}")).await?;
        api::startup::MIGRATOR.run(&pool).await?;
        anyhow::Ok((admin, pool))
    });
    let Ok((mut admin, pool)) = set_up else {
        eprintln!("sealing benchmarks skipped: no PostgreSQL at {server}");
        return;
    };
    let keys = PersonalDataKeys::new(
        pool.clone(),
        &SecretString::from(MASTER_KEY.to_owned()),
        &[],
    )
    .unwrap();
    let subject = Uuid::now_v7();
    let plain = json!({"PhoneEnrolled": {"phone": {"personal": {"subject": subject, "value": "+31612345678"}}}});
    let mut sealed = plain.clone();
    runtime.block_on(keys.seal_payload(&mut sealed)).unwrap();
    c.bench_function("personal data: seal one field (with its key lookup)", |b| {
        b.to_async(&runtime).iter(|| async {
            let mut payload = plain.clone();
            keys.seal_payload(&mut payload).await.unwrap();
            payload
        });
    });
    c.bench_function("personal data: open one field (with its key lookup)", |b| {
        b.to_async(&runtime).iter(|| async {
            let mut payload = sealed.clone();
            keys.open_payload(&mut payload).await.unwrap();
            payload
        });
    });
    runtime.block_on(async {
        pool.close().await;
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut admin)
            .await;
    });
}

criterion_group!(benches, domain_and_hashing, sealing);
criterion_main!(benches);

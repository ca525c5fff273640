//! The embedded default: a private PostgreSQL from the machine's binaries, started even when the
//! service runs as root, reused across restarts.

use api::embedded_postgres::{DATABASE_NAME, EmbeddedPostgres};
use api::startup::MIGRATOR;
use sqlx::ConnectOptions as _;
use uuid::Uuid;

#[tokio::test]
async fn starts_migrates_and_keeps_its_data_across_restarts() {
    let dir = std::env::temp_dir().join(format!("finteqx-embedded-{}", Uuid::new_v4().simple()));

    let server = EmbeddedPostgres::start(&dir, None).await.unwrap();
    server.ensure_database().await.unwrap();
    let mut connection = server
        .connect_options(DATABASE_NAME)
        .connect()
        .await
        .unwrap();
    MIGRATOR.run(&mut connection).await.unwrap();
    sqlx::query("INSERT INTO password_credentials (credential_id, tenant_id, user_id, phc) VALUES ($1, $1, $1, '$argon2id$x')")
        .bind(Uuid::nil())
        .execute(&mut connection)
        .await
        .unwrap();
    drop(connection);
    server.stop().await.unwrap();

    let restarted = EmbeddedPostgres::start(&dir, None).await.unwrap();
    restarted.ensure_database().await.unwrap();
    let mut connection = restarted
        .connect_options(DATABASE_NAME)
        .connect()
        .await
        .unwrap();
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM password_credentials")
        .fetch_one(&mut connection)
        .await
        .unwrap();
    assert_eq!(rows, 1, "the data folder is reused");
    let listens: String = sqlx::query_scalar("SHOW listen_addresses")
        .fetch_one(&mut connection)
        .await
        .unwrap();
    assert_eq!(listens, "", "nothing listens on the network");
    drop(connection);
    restarted.stop().await.unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

//! The big tenant: 20,000 users made through the real command path, and at least a million events
//! of sign-in history for them, loaded in bulk as copies of a real sign-in stream.

use std::time::Instant;

use anyhow::anyhow;

use domain::ids::UserId;

use crate::lab::{Lab, World, email, login_page};

/// Streams per INSERT statement.
const STREAMS_PER_STATEMENT: i64 = 20_000;

/// The big tenant.
pub struct BigTenant {
    /// The tenant with its signable users.
    pub world: World,
    /// Every user.
    pub users: Vec<UserId>,
    /// Every user's e-mail address.
    pub emails: Vec<String>,
}

/// Creates the big tenant: `signers` users who can sign in, then the rest up to `users`, all
/// through `CreateUser` (16 concurrent). Returns it with a line for the report.
///
/// # Errors
/// A refused command or a database error.
pub async fn big_tenant(
    lab: &Lab,
    signers: usize,
    users: usize,
) -> anyhow::Result<(BigTenant, String)> {
    let started = Instant::now();
    let world = lab.world("Grote Klant BV", signers).await?;
    let rest = lab.users(world.tenant, signers..users, false).await?;
    let mut all: Vec<UserId> = world.signers.iter().map(|(id, _)| *id).collect();
    all.extend(rest);
    let emails = (0..users).map(|n| email(world.tenant, n)).collect();
    let note = format!(
        "big tenant: {users} users through CreateUser ({signers} with password and phone) in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok((
        BigTenant {
            world,
            users: all,
            emails,
        },
        note,
    ))
}

/// Adds sign-in history to the big tenant until the log holds at least `target_events`: one
/// real sign-in (password accepted, code sent, code verified) is made through the commands, and
/// its five rows are copied with new attempt ids, spread over every user, by `INSERT … SELECT`
/// through the log's own triggers (hash chain, append-only, notify). Returns a line for the
/// report.
///
/// # Errors
/// A refused command or a database error.
pub async fn load_history(
    lab: &Lab,
    big: &BigTenant,
    target_events: usize,
) -> anyhow::Result<String> {
    let attempt = lab
        .attempts(&big.world, 1)
        .await?
        .pop()
        .ok_or_else(|| anyhow!("no template attempt"))?;
    lab.commands
        .verify_sms_code(&login_page(None), attempt.sign_in_id, &attempt.code)
        .await?;
    let template_user = big.world.signers[0].0;
    let rows: Vec<(i64, String, String, String, String)> = sqlx::query_as(
        "SELECT sequence, event_type, event_version, payload::text, metadata::text FROM events \
         WHERE aggregate_type = 'sign_in' AND aggregate_id = $1 ORDER BY sequence",
    )
    .bind(attempt.sign_in_id.to_string())
    .fetch_all(&lab.harness)
    .await?;
    anyhow::ensure!(
        rows.len() >= 3,
        "the template sign-in has {} events",
        rows.len()
    );
    let before = lab.event_count().await?;
    let missing = i64::try_from(target_events)?.saturating_sub(before).max(0);
    let per_stream = i64::try_from(rows.len())?;
    let streams = (missing + per_stream - 1) / per_stream;
    let users: Vec<String> = big.users.iter().map(ToString::to_string).collect();
    let user_count = i64::try_from(users.len())?;
    let sequences: Vec<i64> = rows.iter().map(|r| r.0).collect();
    let types: Vec<&str> = rows.iter().map(|r| r.1.as_str()).collect();
    let versions: Vec<&str> = rows.iter().map(|r| r.2.as_str()).collect();
    let payloads: Vec<&str> = rows.iter().map(|r| r.3.as_str()).collect();
    let metadata: Vec<&str> = rows.iter().map(|r| r.4.as_str()).collect();
    // Attempt ids are UUIDv7-shaped with increasing time over the past year, as the service's.
    let year_ms: i64 = 365 * 24 * 3600 * 1000;
    let first_ms = chrono::Utc::now().timestamp_millis() - year_ms;
    let step_ms = (year_ms / streams.max(1)).max(1);
    let started = Instant::now();
    let mut from = 0_i64;
    while from < streams {
        let to = (from + STREAMS_PER_STATEMENT).min(streams) - 1;
        sqlx::query(
            "WITH s AS ( \
               SELECT g, ($3::text[])[1 + (g % $4)] AS uid, \
                      lpad(to_hex($5::bigint + g * $6::bigint), 12, '0') AS h, \
                      md5(g::text || clock_timestamp()::text) AS r \
               FROM generate_series($1::bigint, $2::bigint) g), \
             x AS ( \
               SELECT g, uid, substr(h, 1, 8) || '-' || substr(h, 9, 4) || '-7' || substr(r, 1, 3) \
                      || '-8' || substr(r, 4, 3) || '-' || substr(r, 7, 12) AS sid FROM s) \
             INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
             SELECT 'sign_in', x.sid, t.seq, t.et, t.ev, \
                    replace(replace(t.p, $7, x.sid), $8, x.uid)::jsonb, \
                    replace(replace(t.m, $7, x.sid), $8, x.uid)::jsonb \
             FROM x CROSS JOIN unnest($9::bigint[], $10::text[], $11::text[], $12::text[], $13::text[]) \
                  AS t(seq, et, ev, p, m) \
             ORDER BY x.g, t.seq",
        )
        .bind(from)
        .bind(to)
        .bind(&users)
        .bind(user_count)
        .bind(first_ms)
        .bind(step_ms)
        .bind(attempt.sign_in_id.to_string())
        .bind(template_user.to_string())
        .bind(&sequences)
        .bind(&types)
        .bind(&versions)
        .bind(&payloads)
        .bind(&metadata)
        .execute(&lab.harness)
        .await?;
        from = to + 1;
        eprintln!(
            "  history: {} of {streams} sign-in streams ({:.0} s)",
            from,
            started.elapsed().as_secs_f64()
        );
    }
    let load_time = started.elapsed();
    sqlx::query("ANALYZE events").execute(&lab.harness).await?;
    let after = lab.event_count().await?;
    let loaded = after - before;
    #[expect(clippy::cast_precision_loss, reason = "a rate")]
    let rate = loaded as f64 / load_time.as_secs_f64();
    Ok(format!(
        "history: {streams} sign-in streams of {per_stream} events (copies of one real sign-in, one stream after the other) = {loaded} events, \
         inserted through the log's triggers in {:.1} s ({rate:.0} events/s); log now {after} events",
        load_time.as_secs_f64()
    ))
}

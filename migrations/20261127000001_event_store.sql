-- The event store: the table postgres-es 0.5.0 writes (its shipped DDL, with jsonb instead of json)
-- plus three additive columns for catch-up readers (ADR-0006). postgres-es names its columns
-- explicitly, so the extra columns with defaults do not disturb it. No `snapshots` table: the
-- snapshot and aggregate stores of cqrs-es 0.5.0 apply events twice and are not used (ADR-0002).
-- The tenant and user an event belongs to, read from its payload ({"Variant": {"tenant_id": ..}}).
-- IMMUTABLE so that they can feed generated columns and indexes.
CREATE FUNCTION event_payload_uuid(payload jsonb, field text) RETURNS uuid
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS
$$
SELECT (value ->> field)::uuid FROM jsonb_each(payload) LIMIT 1
$$;

CREATE TABLE events
(
    -- The aggregate's frozen TYPE constant: tenant, user, domain_claim, email_claim, sign_in.
    aggregate_type  text        NOT NULL,
    -- The stream id within the type (a UUID, a canonical domain or an e-mail lookup hash).
    aggregate_id    text        NOT NULL,
    -- 1, 2, 3, ... within a stream. Part of the primary key, so two writers that loaded the same
    -- version and append the same number cannot both commit: the optimistic lock.
    sequence        bigint      NOT NULL CHECK (sequence >= 1),
    -- The hand-written, frozen event name; with event_version it selects upcasters.
    event_type      text        NOT NULL CHECK (event_type <> ''),
    event_version   text        NOT NULL CHECK (event_version <> ''),
    -- serde's externally tagged JSON of the event: {"UserCreated": {...}}.
    payload         jsonb       NOT NULL,
    -- actor_id, actor_role, on_behalf_of, tenant_id, occurred_at, correlation_id,
    -- causation_command, command_id (ADR-0007).
    metadata        jsonb       NOT NULL,
    -- Insertion order over all streams. Taken at INSERT, not at COMMIT, so readers must not
    -- trust it alone; see tx_id.
    global_position bigint      GENERATED ALWAYS AS IDENTITY,
    -- The writing transaction. Readers only take rows whose transaction is older than every
    -- transaction still in flight, so a late-committing writer is never overtaken (ADR-0006).
    tx_id           xid8        NOT NULL DEFAULT pg_current_xact_id(),
    -- When the row was written, by the database clock.
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    -- The tenant and user of the event, for auditors' and support's filters; NULL where the
    -- payload has none. Derived, never written by postgres-es.
    tenant_id       uuid GENERATED ALWAYS AS (event_payload_uuid(payload, 'tenant_id')) STORED,
    user_id         uuid GENERATED ALWAYS AS (event_payload_uuid(payload, 'user_id')) STORED,
    PRIMARY KEY (aggregate_type, aggregate_id, sequence),
    -- One position per event.
    CONSTRAINT events_global_position_key UNIQUE (global_position)
);

-- The commit-safe reading order of projectors and auditors.
CREATE INDEX events_tx_position ON events (tx_id, global_position);

-- A tenant's (and a user's) history in commit-safe order, for auditors and support.
CREATE INDEX events_tenant_order ON events (tenant_id, tx_id, global_position);
CREATE INDEX events_user_order ON events (user_id, tx_id, global_position) WHERE user_id IS NOT NULL;

-- The log is append-only: rows are never updated or deleted, and the table is never truncated.
-- Erasure destroys keys, not events (spec §4).
CREATE FUNCTION events_refuse_change() RETURNS trigger
    LANGUAGE plpgsql AS
$$
BEGIN
    RAISE EXCEPTION 'the event log is append-only: % on events is refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER events_append_only
    BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_refuse_change();

CREATE TRIGGER events_no_truncate
    BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_refuse_change();

-- Wakes projectors and workers. A statement-level trigger fires once per INSERT statement; the
-- notification is delivered at COMMIT and dropped on ROLLBACK.
CREATE FUNCTION events_notify_appended() RETURNS trigger
    LANGUAGE plpgsql AS
$$
BEGIN
    PERFORM pg_notify('events_appended', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER events_notify
    AFTER INSERT ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_notify_appended();

-- Tamper evidence (ADR-0012, ADR-0013): every event is chained to the previous event of its
-- stream by a SHA-256 hash the database computes at INSERT, so no writer can forget or choose it;
-- the `log_chain` projector folds those hashes into running hashes of the whole log and of each
-- tenant, and the service signs them periodically into `log_checkpoints` with an Ed25519 key the
-- database never sees. `finteqx audit verify` checks an export offline against both.

-- The bytes an event's hash covers, in this order, joined by a line feed: aggregate_type,
-- aggregate_id, sequence, global_position, tx_id, recorded_at (microseconds since the Unix epoch),
-- event_type, event_version, payload::text, metadata::text. jsonb's text form is canonical
-- (keys by length then bytes, fixed separators) and has no raw line feed; the four free-text
-- columns are kept free of line feeds below, so the joined form is unambiguous.
-- Mirrored by projections/src/chain.rs; tests/e2e/tamper_evidence.rs checks both agree.
CREATE FUNCTION event_canonical_bytes(
    aggregate_type text, aggregate_id text, sequence bigint, global_position bigint, tx_id xid8,
    recorded_at timestamptz, event_type text, event_version text, payload jsonb, metadata jsonb)
    RETURNS bytea
    LANGUAGE sql STABLE STRICT PARALLEL SAFE AS
$$
SELECT convert_to(concat_ws(E'\n', aggregate_type, aggregate_id, sequence::text,
                            global_position::text, tx_id::text,
                            ((extract(epoch FROM recorded_at) * 1000000)::bigint)::text,
                            event_type, event_version, payload::text, metadata::text), 'UTF8')
$$;

-- The hash of the first event of a stream chains to 32 zero bytes.
CREATE FUNCTION event_genesis_hash() RETURNS bytea
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
$$
SELECT decode(repeat('00', 32), 'hex')
$$;

-- NULL on an empty table; every existing row is hashed below before the column turns NOT NULL.
ALTER TABLE events ADD COLUMN hash bytea;

-- Fills NEW.hash = sha256(hash of the stream's previous event || canonical bytes). Runs for every
-- INSERT, whatever the writer, and overwrites any hash the writer supplied. Rows inserted earlier
-- in the same statement or transaction are visible to its lookup.
CREATE FUNCTION events_chain_hash() RETURNS trigger
    LANGUAGE plpgsql AS
$$
DECLARE
    previous bytea;
BEGIN
    IF NEW.sequence = 1 THEN
        previous := event_genesis_hash();
    ELSE
        SELECT e.hash INTO previous FROM events e
        WHERE e.aggregate_type = NEW.aggregate_type
          AND e.aggregate_id = NEW.aggregate_id
          AND e.sequence = NEW.sequence - 1;
        IF previous IS NULL THEN
            RAISE EXCEPTION 'event % of stream %/% has no predecessor to chain to',
                NEW.sequence, NEW.aggregate_type, NEW.aggregate_id
                USING ERRCODE = 'foreign_key_violation';
        END IF;
    END IF;
    NEW.hash := sha256(previous || event_canonical_bytes(
        NEW.aggregate_type, NEW.aggregate_id, NEW.sequence, NEW.global_position, NEW.tx_id,
        NEW.recorded_at, NEW.event_type, NEW.event_version, NEW.payload, NEW.metadata));
    RETURN NEW;
END
$$;

-- Rows written before this migration (development databases only): hashed in stream order, with
-- the append-only trigger paused for this transaction alone.
ALTER TABLE events DISABLE TRIGGER events_append_only;
DO
$$
DECLARE
    event record;
    previous bytea;
BEGIN
    FOR event IN SELECT * FROM events ORDER BY aggregate_type, aggregate_id, sequence LOOP
        IF event.sequence = 1 THEN
            previous := event_genesis_hash();
        END IF;
        previous := sha256(previous || event_canonical_bytes(
            event.aggregate_type, event.aggregate_id, event.sequence, event.global_position,
            event.tx_id, event.recorded_at, event.event_type, event.event_version, event.payload,
            event.metadata));
        UPDATE events SET hash = previous
        WHERE aggregate_type = event.aggregate_type AND aggregate_id = event.aggregate_id
          AND sequence = event.sequence;
    END LOOP;
END
$$;
ALTER TABLE events ENABLE TRIGGER events_append_only;

-- Every event has its hash.
ALTER TABLE events ALTER COLUMN hash SET NOT NULL;
-- A SHA-256 digest.
ALTER TABLE events ADD CONSTRAINT events_hash_is_sha256 CHECK (octet_length(hash) = 32);
-- The canonical bytes join these columns with line feeds, so none may contain one.
ALTER TABLE events ADD CONSTRAINT events_chained_fields_single_line CHECK (
    strpos(aggregate_type, E'\n') = 0 AND strpos(aggregate_id, E'\n') = 0
    AND strpos(event_type, E'\n') = 0 AND strpos(event_version, E'\n') = 0);

CREATE TRIGGER events_chain
    BEFORE INSERT ON events
    FOR EACH ROW EXECUTE FUNCTION events_chain_hash();

-- Running hashes, written only by the `log_chain` projector in the commit-safe order of ADR-0006:
-- running = sha256(running || event hash) from 32 zero bytes, over the whole log (scope '*') and
-- over each tenant's events (scope = the tenant id). A signed running hash vouches for every event
-- up to its position, including that none was removed or reordered.
CREATE TABLE log_chain
(
    -- '*' for the whole log, else a tenant id.
    scope         text PRIMARY KEY CHECK (scope = '*' OR scope ~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'),
    -- The last event folded in.
    last_position bigint NOT NULL,
    last_tx       xid8   NOT NULL,
    -- How many events of the scope are folded in; a row exists once the first one is.
    events        bigint NOT NULL CHECK (events >= 1),
    -- A SHA-256 digest.
    running_hash  bytea  NOT NULL CHECK (octet_length(running_hash) = 32)
);

INSERT INTO projector_checkpoints (name) VALUES ('log_chain');

-- Signed checkpoints of `log_chain` rows, written by the service's checkpoint worker. Rows are
-- never updated: removing one only weakens what an export proves, and auditors keep copies.
CREATE TABLE log_checkpoints
(
    id           bigserial PRIMARY KEY,
    -- '*' or a tenant id, as in log_chain.
    scope        text        NOT NULL,
    -- The signed log_chain row.
    position     bigint      NOT NULL,
    tx_id        xid8        NOT NULL,
    events       bigint      NOT NULL CHECK (events >= 1),
    -- A SHA-256 digest.
    running_hash bytea       NOT NULL CHECK (octet_length(running_hash) = 32),
    -- Part of the signed message.
    signed_at    timestamptz NOT NULL,
    -- The first 16 hex digits of SHA-256 over the Ed25519 public key.
    key_id       text        NOT NULL CHECK (key_id ~ '^[0-9a-f]{16}$'),
    -- Ed25519 over the canonical message of projections/src/chain.rs.
    signature    bytea       NOT NULL CHECK (octet_length(signature) = 64),
    -- One signature per state and key: a second worker signing the same state adds nothing.
    UNIQUE (scope, position, key_id)
);

-- An export reads its scope's checkpoints in log order.
CREATE INDEX log_checkpoints_scope_order ON log_checkpoints (scope, tx_id, position);

-- Checkpoints are append-only too.
CREATE FUNCTION log_checkpoints_refuse_change() RETURNS trigger
    LANGUAGE plpgsql AS
$$
BEGIN
    RAISE EXCEPTION 'signed checkpoints are append-only: % on log_checkpoints is refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER log_checkpoints_append_only
    BEFORE UPDATE OR DELETE ON log_checkpoints
    FOR EACH ROW EXECUTE FUNCTION log_checkpoints_refuse_change();

CREATE TRIGGER log_checkpoints_no_truncate
    BEFORE TRUNCATE ON log_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION log_checkpoints_refuse_change();

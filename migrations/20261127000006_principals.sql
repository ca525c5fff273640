-- Who may call the API (ADR-0014). Secrets are stored as SHA-256 of 256-bit random values, so a
-- read of these tables yields no usable credential.

-- Tenant sessions (administrators and users), created at sign-in. The cookie carries the random
-- session secret; only its hash is stored.
CREATE TABLE sessions
(
    session_hash bytea PRIMARY KEY CHECK (length(session_hash) = 32),
    tenant_id    uuid        NOT NULL,
    user_id      uuid        NOT NULL,
    role         text        NOT NULL CHECK (role IN ('administrator', 'user')),
    -- How the session started: password, password_and_sms or entra_id.
    method       text        NOT NULL CHECK (method IN ('password', 'password_and_sms', 'entra_id')),
    created_at   timestamptz NOT NULL,
    last_seen_at timestamptz NOT NULL,
    -- The absolute limit; the idle limit is checked against last_seen_at.
    expires_at   timestamptz NOT NULL CHECK (expires_at > created_at),
    ended_at     timestamptz
);

CREATE INDEX sessions_user ON sessions (tenant_id, user_id);

-- Platform staff tokens (support, auditor, operator), issued and revoked with the operator CLI.
CREATE TABLE staff_tokens
(
    token_id    uuid PRIMARY KEY,
    token_hash  bytea       NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    role        text        NOT NULL CHECK (role IN ('support', 'auditor', 'operator')),
    -- Who holds it, for the audit trail (a name or ticket, not a secret).
    holder      text        NOT NULL CHECK (length(holder) BETWEEN 1 AND 200),
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);

-- Support reads are themselves recorded: who looked at what (spec: support staff).
CREATE TABLE support_reads
(
    id          bigserial PRIMARY KEY,
    token_id    uuid        NOT NULL,
    role        text        NOT NULL,
    tenant_id   uuid        NOT NULL,
    -- The route template and the subject user, if any.
    route       text        NOT NULL,
    user_id     uuid,
    read_at     timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX support_reads_tenant ON support_reads (tenant_id, read_at);

-- Read models, written only by the catch-up projectors of the `projections` crate (ADR-0010).
-- Every row is derived from events: a projection rebuilt from position 0 equals the live one.
-- Every table has tenant_id in its key or as its first indexed column (STYLE 2.2 rule 7).

-- Where each projector has got to, in the commit-safe order of ADR-0006. The row is locked
-- (FOR UPDATE SKIP LOCKED) for the duration of a batch, so only one instance projects at a time.
CREATE TABLE projector_checkpoints
(
    name           text PRIMARY KEY,
    -- The last applied event's writing transaction and position; ('0', 0) before the first.
    last_tx        xid8        NOT NULL DEFAULT '0',
    last_position  bigint      NOT NULL DEFAULT 0,
    -- Set when an event could not be applied: the projector stops there, never skips it.
    stopped_at     timestamptz,
    stopped_position bigint,
    stop_reason    text,
    -- Both or neither of the stop columns.
    CHECK ((stopped_at IS NULL) = (stop_reason IS NULL))
);

INSERT INTO projector_checkpoints (name)
VALUES ('login_page'), ('settings_screen'), ('notification_queue'), ('sign_in_history');

-- Login page: what the page needs for an entered e-mail, keyed by the e-mail lookup hash.
-- The answer itself is computed at read time by domain::sign_in_rule::required_sign_in.
CREATE TABLE login_accounts
(
    email_key       text PRIMARY KEY CHECK (email_key ~ '^[0-9a-f]{64}$'),
    tenant_id       uuid    NOT NULL,
    user_id         uuid    NOT NULL,
    active          boolean NOT NULL,
    -- The Entra tenant the account is linked through; NULL for password users.
    entra_tenant_id uuid,
    has_password    boolean NOT NULL,
    phone_enrolled  boolean NOT NULL,
    -- One row per account.
    UNIQUE (tenant_id, user_id)
);

CREATE TABLE login_tenants
(
    tenant_id    uuid PRIMARY KEY,
    sms_required boolean NOT NULL
);

-- Admin consent per (FinteQX tenant, Entra tenant): granted, refused, or required (a sign-in
-- failed because consent is missing).
CREATE TABLE login_consents
(
    tenant_id       uuid NOT NULL,
    entra_tenant_id uuid NOT NULL,
    state           text NOT NULL CHECK (state IN ('granted', 'refused', 'required')),
    PRIMARY KEY (tenant_id, entra_tenant_id)
);

-- Settings screen.
CREATE TABLE settings_tenants
(
    tenant_id      uuid PRIMARY KEY,
    display_name   text    NOT NULL,
    default_locale text    NOT NULL CHECK (default_locale IN ('nl', 'en')),
    sms_required   boolean NOT NULL
);

CREATE TABLE settings_domains
(
    tenant_id       uuid NOT NULL,
    domain          text NOT NULL,
    entra_tenant_id uuid NOT NULL,
    PRIMARY KEY (tenant_id, domain)
);

CREATE TABLE settings_consents
(
    tenant_id       uuid NOT NULL,
    entra_tenant_id uuid NOT NULL,
    state           text NOT NULL CHECK (state IN ('granted', 'refused', 'required')),
    -- Microsoft's error code of the last refusal, if any.
    error_code      text,
    PRIMARY KEY (tenant_id, entra_tenant_id)
);

CREATE TABLE settings_users
(
    tenant_id            uuid    NOT NULL,
    user_id              uuid    NOT NULL,
    email                text    NOT NULL,
    display_name         text    NOT NULL,
    role                 text    NOT NULL CHECK (role IN ('administrator', 'user')),
    locale               text    NOT NULL CHECK (locale IN ('nl', 'en')),
    -- The method chosen at creation.
    method               text    NOT NULL CHECK (method IN ('sms', 'entra_id')),
    active               boolean NOT NULL,
    -- The domain and Entra tenant the user is linked through; NULL for password users.
    entra_domain         text,
    entra_tenant_id      uuid,
    -- The first Entra sign-in bound tid + oid.
    entra_identity_bound boolean NOT NULL,
    has_password         boolean NOT NULL,
    -- Masked (+31*******78): the settings screen and support never see the full number.
    phone_masked         text,
    -- recorded_at of the last SignInSucceeded.
    last_sign_in_at      timestamptz,
    PRIMARY KEY (tenant_id, user_id),
    -- A linked user has both link columns.
    CHECK ((entra_domain IS NULL) = (entra_tenant_id IS NULL))
);

-- Counting a domain's linked users before it is released or rebound; the screen's domain filter.
CREATE INDEX settings_users_entra_domain ON settings_users (tenant_id, entra_domain);

-- Sign-in history, for support and for the lock-out fact (recent failures of a user).
CREATE TABLE sign_in_history
(
    sign_in_id  uuid PRIMARY KEY,
    tenant_id   uuid        NOT NULL,
    user_id     uuid        NOT NULL,
    method      text        NOT NULL CHECK (method IN ('password', 'password_and_sms', 'entra_id')),
    started_at  timestamptz NOT NULL,
    codes_sent  integer     NOT NULL DEFAULT 0 CHECK (codes_sent >= 0),
    wrong_codes integer     NOT NULL DEFAULT 0 CHECK (wrong_codes >= 0),
    -- NULL while in progress.
    outcome     text CHECK (outcome IN ('succeeded', 'failed', 'locked')),
    -- The failure or lock reason as the event recorded it (JSON).
    reason      jsonb,
    finished_at timestamptz
);

CREATE INDEX sign_in_history_user ON sign_in_history (tenant_id, user_id, started_at DESC);

-- The outbound notification queue: one row per message an event calls for. The message id is
-- derived from the causing event, so a replay or rebuild never creates a second message.
-- Delivery state lives in notification_deliveries, owned by the delivery workers: rebuilding
-- this table never resends anything.
CREATE TABLE notification_messages
(
    message_id       text PRIMARY KEY,
    tenant_id        uuid        NOT NULL,
    user_id          uuid        NOT NULL,
    channel          text        NOT NULL CHECK (channel IN ('email', 'sms')),
    kind             text        NOT NULL CHECK (kind IN
        ('welcome_set_password', 'welcome_entra', 'linked', 'unlinked', 'set_password', 'sms_code')),
    -- What the template needs beyond the recipient (token id and expiry, domain); no secrets.
    data             jsonb       NOT NULL,
    -- The causing event.
    source_position  bigint      NOT NULL,
    created_at       timestamptz NOT NULL
);

CREATE INDEX notification_messages_tenant ON notification_messages (tenant_id, created_at);

-- Delivery state per message; a message without a row is pending.
CREATE TABLE notification_deliveries
(
    -- No foreign key: a rebuild of notification_messages replaces its rows, deliveries stay.
    message_id      text PRIMARY KEY,
    state           text        NOT NULL CHECK (state IN ('pending', 'sent', 'retrying', 'dead')),
    attempts        integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at timestamptz,
    last_error      text,
    sent_at         timestamptz
);

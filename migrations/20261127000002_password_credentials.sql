-- Password verifiers live outside the event log (ADR-0008): an argon2id hash is secret-derived,
-- and "linking removes the user's password" must remove it for real. Events name the verifier by
-- credential_id only; the user's stream says which credential is active.
CREATE TABLE password_credentials
(
    -- Referenced by the PasswordSet event.
    credential_id uuid        PRIMARY KEY,
    -- The owner; tenant first, for tenant-scoped clean-up.
    tenant_id     uuid        NOT NULL,
    user_id       uuid        NOT NULL,
    -- The argon2id PHC string ($argon2id$v=19$m=...,t=...,p=...$salt$hash).
    phc           text        NOT NULL CHECK (phc LIKE '$argon2id$%'),
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- Clean-up of a user's superseded or removed verifiers.
CREATE INDEX password_credentials_user ON password_credentials (tenant_id, user_id);

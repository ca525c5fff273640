-- Entra ID flows in progress (ADR-0018): one row per redirect to Microsoft, found again by the
-- SHA-256 of its `state` when the browser comes back, and deleted by that first return (single
-- use). The PKCE verifier and the nonce are short-lived secrets of this one flow; rows expire
-- after ten minutes and are swept when new flows start.
CREATE TABLE entra_pending_logins
(
    state_hash      bytea PRIMARY KEY CHECK (length(state_hash) = 32),
    -- sign_in: a user's sign-in. admin_consent: Microsoft's admin-consent page.
    -- consent_confirmation: the Entra administrator's sign-in that confirms the consenting tenant.
    purpose         text        NOT NULL CHECK (purpose IN ('sign_in', 'admin_consent', 'consent_confirmation')),
    tenant_id       uuid        NOT NULL,
    -- The user signing in, or the FinteQX administrator who started admin consent.
    user_id         uuid        NOT NULL,
    -- The Entra tenant whose authority the flow was sent to; NULL for admin consent through
    -- `organizations` (the callback names it, as a hint only).
    entra_tenant_id uuid,
    -- The ID token's nonce and the PKCE verifier (not for admin_consent, which returns no code).
    nonce           text,
    pkce_verifier   text,
    -- The FinteQX administrator's session the consent flow is bound to (admin flows only).
    session_hash    bytea CHECK (length(session_hash) = 32),
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL,
    CHECK ((purpose = 'sign_in') = (session_hash IS NULL)),
    CHECK ((purpose = 'admin_consent') = (nonce IS NULL AND pkce_verifier IS NULL))
);

CREATE INDEX entra_pending_logins_expiry ON entra_pending_logins (expires_at);

-- Password attempts per e-mail lookup key and per client address, for the sign-in start's rate
-- limits; unknown addresses are counted like known ones.
CREATE TABLE sign_in_throttle
(
    id           bigserial PRIMARY KEY,
    -- `email:<lookup hash>` or `ip:<address>`.
    throttle_key text        NOT NULL CHECK (length(throttle_key) BETWEEN 1 AND 200),
    at           timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX sign_in_throttle_key ON sign_in_throttle (throttle_key, at);
CREATE INDEX sign_in_throttle_at ON sign_in_throttle (at);

-- Sessions end when the account changes (spec §1, Sessions): deactivation, erasure, a password set
-- or a changed e-mail address ends every session of the user at once. The use case that commits
-- such a change writes the user's cutoff and ends the open rows; every request's session check
-- refuses a session started at or before its user's cutoff, so a session that was being created
-- while the change committed is refused too.
CREATE TABLE session_cutoffs
(
    tenant_id   uuid        NOT NULL,
    user_id     uuid        NOT NULL,
    -- Every session of the user created at or before this instant is over.
    sessions_ended_at timestamptz NOT NULL,
    -- One cutoff per account; a later change moves it forward.
    PRIMARY KEY (tenant_id, user_id)
);

-- One data key per person (ADR-0011). Personal fields of events are sealed (AES-256-GCM) under
-- their subject's key; the key is stored here wrapped (AES-256-GCM) by a master key from
-- configuration. Erasing a person destroys the wrapped key: the events stay, their personal
-- fields can never be opened again.
CREATE TABLE personal_data_keys
(
    -- The person (a user id).
    subject_id   uuid PRIMARY KEY,
    -- Which master key wrapped it (a fingerprint of the key, never the key).
    kek_id       text,
    -- The wrapping's nonce and the wrapped key; NULL once destroyed.
    nonce        bytea,
    wrapped_key  bytea,
    created_at   timestamptz NOT NULL DEFAULT now(),
    destroyed_at timestamptz,
    -- A key is either live (all three set) or destroyed (none set, destroyed_at set).
    CHECK ((wrapped_key IS NULL) = (nonce IS NULL) AND (wrapped_key IS NULL) = (kek_id IS NULL)),
    CHECK ((destroyed_at IS NULL) = (wrapped_key IS NOT NULL))
);

-- The settings screen keeps personal fields sealed, exactly as the events carry them; the API
-- opens them when it serves the screen, so an erased person's rows cannot be read back.
ALTER TABLE settings_users
    ALTER COLUMN email TYPE jsonb USING to_jsonb(email),
    ALTER COLUMN display_name TYPE jsonb USING to_jsonb(display_name);
ALTER TABLE settings_users RENAME COLUMN phone_masked TO phone;
ALTER TABLE settings_users ALTER COLUMN phone TYPE jsonb USING to_jsonb(phone);

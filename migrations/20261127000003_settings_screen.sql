-- The settings screen's users (filled by the settings-screen projector).
CREATE TABLE settings_users
(
    tenant_id    uuid NOT NULL,
    user_id      uuid NOT NULL,
    -- The domain the user is linked to Entra ID through; NULL for password users.
    entra_domain text,
    PRIMARY KEY (tenant_id, user_id)
);

-- Counting a domain's linked users before it is released or rebound.
CREATE INDEX settings_users_entra_domain ON settings_users (tenant_id, entra_domain);

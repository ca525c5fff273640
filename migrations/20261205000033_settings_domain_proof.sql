-- Domain proof (ADR-0025): the settings screen shows each claimed domain as pending or proven.
-- NULL: pending (also every claim made before proof existed, as the domain model reads them).
-- Otherwise how the tenant proved it owns the domain.
ALTER TABLE settings_domains
    ADD COLUMN proof text CHECK (proof IN ('dns_txt', 'entra_verified_domain'));

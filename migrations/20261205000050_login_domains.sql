-- The login page by e-mail domain (issue 13, ADR-0028): whether an address gets the "Inloggen met
-- Microsoft Entra ID" button depends on its domain alone — claimed, proven and bound to an Entra
-- tenant — never on whether an account exists for it. Written only by the login_page projector.
CREATE TABLE login_domains
(
    -- The canonical domain (lower case, IDNA), as domain claims name it.
    domain          text    NOT NULL,
    -- A FinteQX tenant that claimed it; several may hold pending claims, one at most proves it.
    tenant_id       uuid    NOT NULL,
    -- The Entra tenant it is bound to.
    entra_tenant_id uuid    NOT NULL,
    -- Only a proven domain sends anyone to Entra (ADR-0025).
    proven          boolean NOT NULL,
    -- One row per claim.
    PRIMARY KEY (domain, tenant_id)
);

-- Every SMS code sent, for the send limits against abuse and SMS pumping fraud (ADR-0016):
-- per user, per number, per tenant and per country calling code, over a sliding hour. The
-- number is kept only as a keyed hash.
CREATE TABLE sms_sends
(
    id           bigserial PRIMARY KEY,
    tenant_id    uuid        NOT NULL,
    user_id      uuid        NOT NULL,
    -- HMAC-SHA-256 of the E.164 number under secrets.lookup_key.
    number_key   text        NOT NULL CHECK (number_key ~ '^[0-9a-f]{64}$'),
    -- The country calling code (31 for the Netherlands).
    country_code integer     NOT NULL CHECK (country_code BETWEEN 1 AND 999),
    sent_at      timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX sms_sends_user ON sms_sends (user_id, sent_at);
CREATE INDEX sms_sends_number ON sms_sends (number_key, sent_at);
CREATE INDEX sms_sends_tenant ON sms_sends (tenant_id, sent_at);
CREATE INDEX sms_sends_country ON sms_sends (country_code, sent_at);

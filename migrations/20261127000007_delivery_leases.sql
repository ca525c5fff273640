-- Delivery by leases (issue: notification delivery). A worker claims due messages in a short
-- transaction by setting state 'sending' and a lease; it sends outside any transaction, then
-- records the outcome. A worker that dies mid-send leaves an expired lease, and the message is
-- claimed again: delivered at least once, always under the same Message-ID. No transaction stays
-- open during an SMTP conversation (which would hold back every projector, ADR-0006).
ALTER TABLE notification_deliveries DROP CONSTRAINT notification_deliveries_state_check;
ALTER TABLE notification_deliveries
    ADD CONSTRAINT notification_deliveries_state_check
        CHECK (state IN ('pending', 'sending', 'sent', 'retrying', 'dead')),
    -- Until when the claiming worker owns a 'sending' message.
    ADD COLUMN lease_until timestamptz,
    -- Which claim owns it: only that claim may record the outcome.
    ADD COLUMN claim_id uuid,
    -- A message being sent has a lease.
    ADD CONSTRAINT notification_deliveries_lease CHECK (state <> 'sending' OR lease_until IS NOT NULL);

-- Wakes the delivery workers when the projector queues a message (delivered at commit).
CREATE FUNCTION notification_messages_notify() RETURNS trigger
    LANGUAGE plpgsql AS
$$
BEGIN
    PERFORM pg_notify('notifications_queued', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER notification_messages_notify
    AFTER INSERT ON notification_messages
    FOR EACH STATEMENT EXECUTE FUNCTION notification_messages_notify();

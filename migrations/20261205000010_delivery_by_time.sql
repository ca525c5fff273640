-- Delivery by time, not by count (issue 12). A message is retried, with capped exponential
-- back-off, until its retry budget (a duration, 24 hours by default) measured from its first
-- attempt is spent; the number of attempts no longer decides when a message is dead. Real mail
-- servers retry for days; a budget of eight attempts lasted about a minute.
--
-- The attempt count stays as information: it is now counted when a send begins (the moment the
-- message's own lease is renewed), so a worker that dies mid-send has its attempt counted without
-- the next claim having to guess.
ALTER TABLE notification_deliveries
    -- When the current retry budget began: the first claim of the message, or the first claim
    -- after an operator queued a dead message again (state 'pending'), which starts a fresh
    -- budget. NOT NULL: every delivery row has a budget; the default serves rows written outside
    -- the delivery worker (the SMS path records its single attempt at once).
    ADD COLUMN first_attempt_at timestamptz NOT NULL DEFAULT now();

-- Rows from before this migration: measure from when the message was queued, the closest time
-- known for their first attempt.
UPDATE notification_deliveries d
SET first_attempt_at = m.created_at
FROM notification_messages m
WHERE m.message_id = d.message_id;

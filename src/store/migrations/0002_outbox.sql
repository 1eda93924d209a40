-- 0002: the outbox. A Tempr renders a stored message into one DHIS2 request per chain step;
-- the sync stage sends rows in id order and records each outcome here. A row stays 'pending'
-- until a response was classified, so a crash mid-send re-sends the same request (same
-- deterministic UIDs, CREATE_AND_UPDATE: an update, never a duplicate).
ALTER TABLE messages ADD COLUMN error TEXT;          -- why rendering or delivery failed

CREATE TABLE outbox (
    id               INTEGER PRIMARY KEY,
    message_id       INTEGER NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    tempr            TEXT    NOT NULL,
    tempr_version    INTEGER NOT NULL,
    step             INTEGER NOT NULL DEFAULT 0,     -- position in the Tempr chain
    endpoint         TEXT    NOT NULL CHECK (endpoint IN ('tracker', 'events', 'data_value_sets', 'get')),
    request          TEXT    NOT NULL,               -- Dhis2Request JSON
    status           TEXT    NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'delivered', 'rejected', 'superseded')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms  INTEGER NOT NULL DEFAULT 0,     -- unix ms; 0 = now
    last_error       TEXT,
    response         TEXT,                           -- DHIS2's answer (JSON) once classified
    created_at       TEXT    NOT NULL,
    delivered_at     TEXT
);
CREATE INDEX outbox_due ON outbox (status, id);
CREATE INDEX outbox_message ON outbox (message_id);

-- Small facts the sync stage keeps across restarts: pause reason, server version, link state.
CREATE TABLE sync_state (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);

-- 0007: an outbox lane per destination (issue 20). Each row now names the system it goes to:
-- 'dhis2' (the [dhis2] section, every row before this migration) or a [[destinations]] id.
-- Rows of other destinations carry a DestRequest (endpoint 'request'). SQLite cannot change a
-- CHECK constraint in place, so the table is rebuilt (https://sqlite.org/lang_altertable.html
-- §7, "Making Other Kinds Of Table Schema Changes"); its indexes and triggers go with the old
-- table and are made again below.
CREATE TABLE outbox_new (
    id               INTEGER PRIMARY KEY,
    message_id       INTEGER NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    tempr            TEXT    NOT NULL,
    tempr_version    INTEGER NOT NULL,
    step             INTEGER NOT NULL DEFAULT 0,     -- position in the Tempr chain
    destination      TEXT    NOT NULL DEFAULT 'dhis2',
    endpoint         TEXT    NOT NULL
                     CHECK (endpoint IN ('tracker', 'events', 'data_value_sets', 'get', 'request')),
    request          TEXT    NOT NULL,               -- Dhis2Request JSON, or DestRequest JSON
    status           TEXT    NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'delivered', 'rejected', 'superseded')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms  INTEGER NOT NULL DEFAULT 0,     -- unix ms; 0 = now
    last_error       TEXT,
    response         TEXT,                           -- the destination's answer (JSON) once classified
    created_at       TEXT    NOT NULL,
    delivered_at     TEXT,
    CHECK ((destination = 'dhis2') = (endpoint <> 'request'))
);
INSERT INTO outbox_new (id, message_id, tempr, tempr_version, step, destination, endpoint, request,
                        status, attempts, next_attempt_ms, last_error, response, created_at, delivered_at)
    SELECT id, message_id, tempr, tempr_version, step, 'dhis2', endpoint, request,
           status, attempts, next_attempt_ms, last_error, response, created_at, delivered_at
    FROM outbox;
DROP TABLE outbox;
ALTER TABLE outbox_new RENAME TO outbox;

-- Each lane reads its own head: pending rows of one destination in id order.
CREATE INDEX outbox_lane ON outbox (destination, status, id);
CREATE INDEX outbox_message ON outbox (message_id);
CREATE INDEX outbox_delivered ON outbox (status, delivered_at);

CREATE TRIGGER outbox_count_insert AFTER INSERT ON outbox BEGIN
    INSERT INTO outbox_status_counts (status, n) VALUES (NEW.status, 1)
        ON CONFLICT (status) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER outbox_count_status AFTER UPDATE OF status ON outbox
WHEN OLD.status IS NOT NEW.status BEGIN
    UPDATE outbox_status_counts SET n = n - 1 WHERE status = OLD.status;
    INSERT INTO outbox_status_counts (status, n) VALUES (NEW.status, 1)
        ON CONFLICT (status) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER outbox_count_delete AFTER DELETE ON outbox BEGIN
    UPDATE outbox_status_counts SET n = n - 1 WHERE status = OLD.status;
END;

-- 0008: what was sent to a [[destinations]] entry and what it answered, kept when the
-- destination says `store_exchanges = true` (pipeline/dest.rs), for `keep_exchanges`. For
-- debugging a mapping with the EMR's or FHIR server's people; nothing reads it to deliver.
CREATE TABLE exchanges (
    id           INTEGER PRIMARY KEY,
    destination  TEXT    NOT NULL,
    outbox_id    INTEGER NOT NULL,                -- the row sent (it may since be deleted)
    at           TEXT    NOT NULL,                -- RFC 3339 UTC, when the answer came
    request      TEXT    NOT NULL,                -- DestRequest JSON
    outcome      TEXT    NOT NULL,                -- delivered | rejected | retry | pause
    status       INTEGER,                         -- HTTP status; NULL for tcp/udp or no answer
    response     TEXT    NOT NULL,                -- the answer as the next chain step sees it
    took_ms      INTEGER NOT NULL
);
CREATE INDEX exchanges_at ON exchanges (destination, at);

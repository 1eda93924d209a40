-- 0001: raw messages and their parsed observations (docs/decisions.md "Why SQLite FULL").
-- A message row holds the wire bytes and the reassembled text, so a parser fix or a new
-- Tempr version can re-read every stored message.
CREATE TABLE messages (
    id            INTEGER PRIMARY KEY,
    source        TEXT    NOT NULL,
    protocol      TEXT    NOT NULL
                  CHECK (protocol IN ('astm', 'hl7', 'poct1', 'http', 'modbus', 'mqtt', 'file')),
    received_at   TEXT    NOT NULL,             -- RFC 3339 UTC, gateway clock
    content_hash  BLOB    NOT NULL CHECK (length(content_hash) = 32),
    wire          BLOB    NOT NULL,             -- bytes as framed on the wire
    text          BLOB    NOT NULL,             -- reassembled record text
    parse_errors  TEXT,                         -- NULL when the message parsed cleanly
    status        TEXT    NOT NULL DEFAULT 'received'
                  CHECK (status IN ('received', 'invalid', 'unmatched', 'render_failed',
                                    'rendered', 'delivered', 'rejected')),
    UNIQUE (source, content_hash)
);
CREATE INDEX messages_status ON messages (status, id);

CREATE TABLE observations (
    id          INTEGER PRIMARY KEY,
    message_id  INTEGER NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    seq         INTEGER NOT NULL,               -- position in the message, from 0
    sample_id   TEXT,
    patient_id  TEXT,
    test_code   TEXT    NOT NULL,
    body        TEXT    NOT NULL,               -- canonical Observation JSON
    UNIQUE (message_id, seq)
);
CREATE INDEX observations_sample ON observations (sample_id);
CREATE INDEX observations_patient ON observations (patient_id);

-- 0006: history for the web UI. Every saved Tempr text, so an edit can be compared with and
-- rolled back to an earlier one (src/web/temprs.rs); and an index that lets a fridge chart
-- read one register's observations by the time the device stated (src/web/charts.rs) without
-- scanning every observation of the week.
CREATE TABLE tempr_versions (
    id            INTEGER PRIMARY KEY,
    name          TEXT    NOT NULL,                -- the Tempr's name (its file is <name>.toml)
    version       INTEGER NOT NULL,                -- 1, 2, … per name, in save order
    file_version  INTEGER,                         -- the text's own `version` key, if it has one
    content       TEXT    NOT NULL,                -- the whole file as saved
    saved_at      TEXT    NOT NULL,                -- RFC 3339 UTC, gateway clock
    saved_by      TEXT    NOT NULL,                -- client address; 'file' = found on disk
    action        TEXT    NOT NULL
                  CHECK (action IN ('found', 'edit', 'builder', 'api', 'restore')),
    UNIQUE (name, version)
);

CREATE INDEX observations_code_time
    ON observations (test_code, json_extract(body, '$.observed_at'));

-- 0004: the web UI's own facts. The admin password hash (argon2id, PHC string; never the
-- password) and an audit log of every config change made through the web page or API.
CREATE TABLE web_admin (
    id             INTEGER PRIMARY KEY CHECK (id = 1),   -- one admin account
    password_hash  TEXT    NOT NULL,
    set_at         TEXT    NOT NULL,
    set_by         TEXT    NOT NULL                     -- 'setup', 'file', 'change'
);

CREATE TABLE audit_log (
    id      INTEGER PRIMARY KEY,
    at      TEXT    NOT NULL,                           -- RFC 3339 UTC, gateway clock
    actor   TEXT    NOT NULL,                           -- client address of the session
    action  TEXT    NOT NULL,                           -- e.g. 'source.add', 'dhis2.auth'
    detail  TEXT    NOT NULL                            -- what changed; never a secret
);
CREATE INDEX audit_log_at ON audit_log (at);

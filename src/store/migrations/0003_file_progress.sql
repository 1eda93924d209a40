-- 0003: how far each file of a folder source has been read (src/ingest/folder.rs).
-- A row is written in the same transaction as the message holding the file's bytes, so after a
-- crash either both exist (the rows are not read again) or neither (they are read again once):
-- rows appended to a daily CSV are stored exactly once.
CREATE TABLE file_progress (
    source       TEXT    NOT NULL,
    name         TEXT    NOT NULL,                -- file name inside the folder
    consumed     INTEGER NOT NULL,                -- bytes from the start already stored
    prefix_hash  BLOB    NOT NULL CHECK (length(prefix_hash) = 32), -- SHA-256 of those bytes
    size         INTEGER NOT NULL,                -- file size and mtime when last read: an
    mtime_ns     INTEGER NOT NULL,                -- unchanged file is skipped without reading it
    message_id   INTEGER REFERENCES messages (id), -- the last message stored from it
    updated_at   TEXT    NOT NULL,
    PRIMARY KEY (source, name)
);

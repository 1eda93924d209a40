//! Integration tests: the real binary, real sockets and ptys, a real SQLite file.

mod cli;
mod ingest;
mod support;
mod sync;

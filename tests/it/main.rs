//! Integration tests: the real binary, real sockets and ptys, a real SQLite file.

mod capture;
mod cli;
mod hl7;
mod http;
mod ingest;
mod poct1;
mod support;
mod sync;
mod web;

//! Integration tests: the real binary, real sockets and ptys, a real SQLite file.

mod capture;
mod cli;
mod dest;
mod folder;
mod hl7;
mod hotplug;
mod http;
mod http_limits;
mod ingest;
mod modbus;
mod mqtt;
mod net;
mod poct1;
mod profiles;
mod support;
mod sync;
mod web;

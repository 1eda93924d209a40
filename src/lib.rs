//! pocketgate — a pocket-sized gateway: clinic analyzers in, a durable SQLite buffer, DHIS2 out.
//!
//! Module map (arrows point one way: `protocol ← ingest → store`; `app` knows all):
//! - [`record`]   the nouns: Observation, SourceId, RecordId
//! - [`config`]   raw TOML (+ device profiles) → validated [`config::Config`]; every error at once with its path
//! - [`protocol`] PURE decoders: bytes in, messages and replies out (no sockets, clock or DB):
//!   ASTM E1381/E1394, HL7 v2 + MLLP, POCT1-A2, FHIR/JSON/CSV/XML bodies, Modbus polling, export
//!   files (CSV/XML/ASTM/HL7 from USB sticks and shared folders)
//! - [`ingest`]   transports (TCP server/client, RS-232, HTTP, MQTT, Modbus TCP/RTU, watched
//!   folders): open, read, reply after commit, reconnect
//! - [`store`]    the one SQLite writer (WAL, synchronous=FULL, group commit), migrations, queries
//! - [`capture`]  capture mode: record an unknown analyzer's bytes, rank baud rates, detect the protocol
//! - [`sim`]      an analyzer simulator that plays capture files over TCP or a serial port/pty
//! - [`tempr`]    Temprs: builder / minijinja template / JavaScript (boa) → DHIS2 request, chains
//! - [`sync`]     DHIS2 client, pure response classification, metadata cache and local validation
//! - [`pipeline`] the stages after the commit: render to the outbox, deliver, record outcomes
//! - [`netcfg`]   network settings (hotspot, Wi-Fi/Ethernet/cellular uplinks) → hostapd,
//!   wpa_supplicant, dnsmasq, ifupdown, pppd files, applied through a `System` seam
//! - [`dhis2sim`] a DHIS2 2.36–2.42 test server (the `dhis2-sim` binary), for tests and the demo
//! - [`web`]      the local web page and JSON API (axum, minijinja pages compiled in)
//! - [`app`]      wiring and supervision only

pub mod app;
pub mod capture;
pub mod config;
pub mod dhis2sim;
pub mod ingest;
pub mod netcfg;
pub mod pipeline;
pub mod protocol;
pub mod record;
pub mod sim;
pub mod store;
pub mod sync;
pub mod tempr;
pub mod web;

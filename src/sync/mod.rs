//! Talking to DHIS2: what a response means ([`classify`]), the HTTP client ([`client`]) and the
//! metadata cache that lets a request be checked before it is sent ([`metadata`]). Other
//! destinations (FHIR, HTTP APIs, TCP/UDP listeners) have their client and classification in
//! [`dest`].
//!
//! Facts about DHIS2's wire behaviour come from `shared/reference/dhis2.md`; section numbers in
//! comments (`§2.2`) point there.

pub mod classify;
pub mod client;
pub mod dest;
pub mod metadata;
pub mod trust;

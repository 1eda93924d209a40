//! Pure protocol code: bytes in, messages/replies out. No sockets, no clock (time is passed in),
//! no database — so every decoder is unit-tested and fuzzed with plain byte slices.

pub mod astm;
pub mod export;
pub mod fhir;
pub mod hl7;
pub mod modbus;
pub mod mqtt;
pub mod poct1;
pub mod quantity;
#[cfg(test)]
pub(crate) mod quantity_messages;
pub mod xml;

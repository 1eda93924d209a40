//! ASTM: E1381 (CLSI LIS01-A2) link layer in [`link`], E1394 (CLSI LIS02-A2) records in [`record`],
//! and [`session`], which joins them into "a complete message is ready: commit it, then reply".
//! See shared/reference/protocols.md §1.1–§1.2.

pub mod decode;
pub mod link;
pub mod record;
pub mod session;

#[cfg(test)]
mod fixtures;

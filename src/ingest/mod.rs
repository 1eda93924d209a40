//! Transports: open a connection to a device, run its protocol session, reply after the commit,
//! reconnect. One task per source (and per TCP connection); a failing source only logs and
//! retries, it never stops another.

pub mod astm;
pub mod conn_limit;
pub mod folder;
pub mod hl7;
pub mod http;
pub mod modbus;
pub mod mqtt;
pub mod poct1;
pub mod serial;
pub mod tcp;
pub mod usb_serial;

use crate::config::profile::TestTable;
use crate::config::{Encoding, Limits, Protocol};
use crate::protocol::astm::link::ReceiverLimits;
use crate::protocol::astm::session::SessionLimits;
use crate::record::SourceId;
use crate::store::Store;
use std::time::Duration;

/// Everything a connection of one source needs.
#[derive(Clone)]
pub struct SourceCtx {
    pub id: SourceId,
    pub protocol: Protocol,
    pub limits: Limits,
    pub store: Store,
    /// The source's profile test table: names, units and LOINC codes a message leaves out.
    pub tests: TestTable,
}

impl SourceCtx {
    /// Text encoding for messages that do not declare their own.
    pub fn encoding(&self) -> Encoding {
        match &self.protocol {
            Protocol::Astm(a) => a.encoding,
            Protocol::Hl7(s) | Protocol::Poct1(s) => s.encoding,
            Protocol::Http(_) | Protocol::Mqtt | Protocol::Modbus(_) | Protocol::File(_) => {
                Encoding::Utf8
            }
        }
    }

    /// Silence after which a half-received message is dropped.
    pub fn receive_timeout(&self) -> Duration {
        match &self.protocol {
            Protocol::Astm(a) => a.receive_timeout,
            Protocol::Hl7(s) | Protocol::Poct1(s) => s.receive_timeout,
            Protocol::Http(_) | Protocol::Mqtt | Protocol::Modbus(_) | Protocol::File(_) => {
                Duration::from_secs(30)
            }
        }
    }

    /// Decoded observations completed from the profile's test table before they are stored.
    pub fn enriched(
        &self,
        mut observations: Vec<crate::record::Observation>,
    ) -> Vec<crate::record::Observation> {
        self.tests.enrich(&mut observations);
        observations
    }

    pub fn session_limits(&self) -> SessionLimits {
        SessionLimits {
            link: ReceiverLimits {
                max_frame_bytes: self.limits.max_frame_bytes,
                timeout: self.receive_timeout(),
            },
            max_message_bytes: self.limits.max_message_bytes,
        }
    }
}

/// Run the source's protocol over one connected byte stream until it closes.
pub async fn converse<S>(io: &mut S, ctx: &SourceCtx) -> std::io::Result<String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    match &ctx.protocol {
        Protocol::Astm(_) => astm::converse(io, ctx).await.map(|s| format!("{s:?}")),
        Protocol::Hl7(_) => hl7::converse(io, ctx).await.map(|s| format!("{s:?}")),
        Protocol::Poct1(_) => poct1::converse(io, ctx).await.map(|s| format!("{s:?}")),
        Protocol::Http(_) => Err(std::io::Error::other(
            "protocol http is served by its own listener, not over a stream",
        )),
        Protocol::Mqtt => Err(std::io::Error::other(
            "protocol mqtt is received from a broker, not over a stream",
        )),
        Protocol::Modbus(_) => Err(std::io::Error::other(
            "protocol modbus polls the device from its own task, not over a stream",
        )),
        Protocol::File(_) => Err(std::io::Error::other(
            "protocol file reads a folder, not a stream",
        )),
    }
}

/// Exponential backoff between reconnect attempts: `min`, doubling, capped at `max`.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max: max.max(min),
            next: min,
        }
    }

    /// The wait before the next attempt; each call doubles the following one.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        d
    }

    /// A connection worked: start again from the minimum.
    pub fn reset(&mut self) {
        self.next = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(5));
        let got: Vec<_> = (0..5).map(|_| b.next_delay().as_secs()).collect();
        assert_eq!(got, [1, 2, 4, 5, 5]);
        b.reset();
        assert_eq!(b.next_delay().as_secs(), 1);
    }
}

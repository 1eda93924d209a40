//! MQTT ingest: subscribe on a broker (QoS 1, persistent session) and acknowledge each message
//! only after it is durably committed.
//!
//! * **Session.** `clean_session = false` under a stable client id: while the gateway is away the
//!   broker keeps the subscriptions and queues QoS 1 messages for it; on reconnect it resends every
//!   message that was not acknowledged (MQTT 3.1.1 §4.4).
//! * **Acks.** Manual: the PUBACK for a message is sent after [`Store::commit`] returned `Ok`, in
//!   the order the messages arrived (§4.6). A crash between commit and PUBACK makes the broker
//!   resend it; the store recognises the same payload (same source, same SHA-256) and keeps one
//!   row, and the resend is acknowledged.
//! * **Commit failure.** Nothing of that connection is acknowledged any more, and the gateway
//!   reconnects after a backoff so the broker resends what was not acknowledged.
//! * **Bad payloads** are stored raw as `invalid` with an error naming the topic and where the
//!   payload is wrong, and acknowledged (resending cannot fix them; the bytes are kept).
//!   A payload over `max_payload` is recorded as `invalid` by size and SHA-256 only.
//! * **Stale acks.** A PUBACK carries a packet id that is only meaningful on the connection that
//!   delivered the message. Each delivery remembers its connection number; an ack for an older
//!   connection is dropped (the broker resends that message). The connection number changes
//!   under the same lock as rumqttc's request queue is cleared, so no stale PUBACK slips through.
//!
//! Two tasks: `drive` owns rumqttc's event loop (it must be polled without pause for acks,
//! pings and reconnects) and hands deliveries over a bounded channel; `settle` decodes,
//! commits up to `max_in_flight` at once (grouped by the store writer), and acks in order.
//!
//! [`Store::commit`]: crate::store::Store::commit

use super::{Backoff, SourceCtx};
use crate::config::{MqttSettings, MqttTls};
use crate::protocol::mqtt::{decode_payload, envelope, topic_matches};
use crate::store::{Committed, NewMessage, ProtocolKind, StoreError};
use futures_util::StreamExt;
use futures_util::stream::FuturesOrdered;
use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, EventLoop, MqttOptions, Outgoing,
    Packet, Publish, QoS, Request, StateError, SubscribeFilter, SubscribeReasonCode,
    TlsConfiguration, Transport,
};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

/// Bytes an MQTT PUBLISH may carry beyond its payload (topic up to 65535 bytes, headers): the
/// packet limit given to rumqttc is `max_payload` plus this, so an oversized payload reaches
/// [`settle`] and is recorded instead of breaking the connection.
const PACKET_OVERHEAD: usize = 65_535 + 16;

/// How often acks that did not fit in rumqttc's request queue are tried again.
const ACK_RETRY: Duration = Duration::from_millis(20);

/// One message handed from the event loop to the committer.
struct Delivery {
    /// The connection it arrived on (see "Stale acks" above).
    conn: u64,
    publish: Publish,
}

/// Which connection is current, and whether acking on it has stopped.
#[derive(Default)]
struct ConnState {
    number: u64,
    /// A commit failed on this connection: ack nothing more of it (the broker resends it all).
    stopped: bool,
}

type Shared = Arc<Mutex<ConnState>>;

fn lock(s: &Shared) -> MutexGuard<'_, ConnState> {
    s.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Run the source until the task is dropped: connect, subscribe, store, ack, reconnect.
pub async fn run(ctx: SourceCtx, settings: MqttSettings, client_id: String) {
    let settings = Arc::new(settings);
    let mut backoff = Backoff::new(settings.backoff_min, settings.backoff_max);
    // Secrets and certificates are read before the first connection; a missing file is retried.
    let options = loop {
        match options(&settings, &client_id) {
            Ok(o) => break o,
            Err(e) => {
                error!(source = %ctx.id, error = %e, "MQTT source cannot start; retrying");
                tokio::time::sleep(backoff.next_delay()).await;
            }
        }
    };
    info!(source = %ctx.id, broker = %format!("{}:{}", settings.host, settings.port), client_id = %client_id, tls = settings.tls.is_some(), "MQTT source starting");
    let (client, eventloop) = AsyncClient::new(options, 2 * settings.max_in_flight + 16);
    let (tx, rx) = mpsc::channel(settings.max_in_flight);
    let shared = Shared::default();
    let settler = tokio::spawn(settle(
        rx,
        client.clone(),
        ctx.clone(),
        settings.clone(),
        shared.clone(),
    ));
    // Dropping this task's future (shutdown) drops the event loop; abort the settler with it.
    let _guard = AbortOnDrop(settler);
    drive(eventloop, client, tx, ctx, settings, shared, backoff).await;
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// rumqttc options from the settings: QoS 1 session that survives restarts, manual acks.
fn options(settings: &MqttSettings, client_id: &str) -> Result<MqttOptions, String> {
    let mut o = MqttOptions::new(client_id, settings.host.clone(), settings.port);
    o.set_keep_alive(settings.keep_alive)
        .set_clean_session(false)
        .set_manual_acks(true)
        .set_max_packet_size(settings.max_payload_bytes + PACKET_OVERHEAD, 64 * 1024)
        .set_inflight(settings.max_in_flight.clamp(1, u16::MAX as usize) as u16);
    if let Some(user) = &settings.username {
        let password = match &settings.password {
            Some(secret) => secret.read().map_err(|e| format!("MQTT password: {e}"))?,
            None => String::new(),
        };
        o.set_credentials(user.clone(), password);
    }
    if let Some(tls) = &settings.tls {
        let config = tls_config(tls, settings.bare_host())?;
        o.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            Arc::new(config),
        )));
    }
    Ok(o)
}

/// Own the event loop: forward deliveries, subscribe after each connect, reconnect with backoff.
async fn drive(
    mut eventloop: EventLoop,
    client: AsyncClient,
    tx: mpsc::Sender<Delivery>,
    ctx: SourceCtx,
    settings: Arc<MqttSettings>,
    shared: Shared,
    mut backoff: Backoff,
) {
    let broker = format!("{}:{}", settings.host, settings.port);
    loop {
        let event = eventloop.poll().await;
        match event {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                backoff.reset();
                info!(source = %ctx.id, %broker, session_present = ack.session_present, "connected to the MQTT broker");
                // Subscribing again on a kept session is harmless (the broker replaces the
                // subscription) and picks up topics added to the config.
                let filters = settings
                    .topics
                    .iter()
                    .map(|t| SubscribeFilter::new(t.filter.clone(), QoS::AtLeastOnce));
                if let Err(e) = client.try_subscribe_many(filters) {
                    warn!(source = %ctx.id, error = %e, "could not queue the subscription; reconnecting");
                    lost(&mut eventloop, &shared);
                }
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                let conn = lock(&shared).number;
                if tx.send(Delivery { conn, publish }).await.is_err() {
                    return;
                }
            }
            Ok(Event::Incoming(Packet::SubAck(ack))) => {
                for (code, topic) in ack.return_codes.iter().zip(&settings.topics) {
                    match code {
                        SubscribeReasonCode::Failure => {
                            error!(source = %ctx.id, filter = %topic.filter, "the broker refused the subscription (check the broker's ACL for this user)")
                        }
                        SubscribeReasonCode::Success(qos) => {
                            debug!(source = %ctx.id, filter = %topic.filter, ?qos, "subscribed")
                        }
                    }
                }
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) => {
                // `settle` asked for a new session after a failed commit.
                lost(&mut eventloop, &shared);
                let wait = backoff.next_delay();
                info!(source = %ctx.id, ?wait, "disconnected after a failed commit; the broker will resend what was not acknowledged");
                tokio::time::sleep(wait).await;
            }
            Ok(_) => {}
            Err(e) => {
                lost(&mut eventloop, &shared);
                let wait = backoff.next_delay();
                report(&ctx, &broker, &settings, &e, wait);
                tokio::time::sleep(wait).await;
                if matches!(
                    e,
                    ConnectionError::ConnectionRefused(
                        ConnectReturnCode::BadUserNamePassword | ConnectReturnCode::NotAuthorized
                    )
                ) {
                    // A corrected password file works without a restart.
                    reread_password(&mut eventloop, &settings, &ctx);
                }
            }
        }
    }
}

fn reread_password(eventloop: &mut EventLoop, settings: &MqttSettings, ctx: &SourceCtx) {
    let (Some(user), Some(secret)) = (&settings.username, &settings.password) else {
        return;
    };
    match secret.read() {
        Ok(password) => {
            eventloop
                .mqtt_options
                .set_credentials(user.clone(), password);
        }
        Err(e) => error!(source = %ctx.id, error = %e, "cannot read the MQTT password"),
    }
}

/// The connection is gone (or being dropped): start a new connection number and clear rumqttc's
/// queue of PUBACKs, together, so no ack for this connection reaches the next one.
fn lost(eventloop: &mut EventLoop, shared: &Shared) {
    let mut state = lock(shared);
    state.number += 1;
    state.stopped = false;
    eventloop.clean();
    eventloop
        .pending
        .retain(|r| !matches!(r, Request::PubAck(_) | Request::Disconnect(_)));
}

/// One log line per failed attempt, saying what to fix where that is knowable.
fn report(
    ctx: &SourceCtx,
    broker: &str,
    settings: &MqttSettings,
    e: &ConnectionError,
    wait: Duration,
) {
    let id = &ctx.id;
    match e {
        // Mosquitto answers a wrong password with "not authorised" (5), others with 4.
        ConnectionError::ConnectionRefused(
            ConnectReturnCode::BadUserNamePassword | ConnectReturnCode::NotAuthorized,
        ) => error!(
            source = %id, %broker, user = settings.username.as_deref().unwrap_or(""), ?wait,
            "the MQTT broker refused the login: wrong user name or password, or this user is not allowed (check mqtt.username and the password file/variable)"
        ),
        ConnectionError::ConnectionRefused(ConnectReturnCode::BadClientId) => error!(
            source = %id, %broker, ?wait,
            "the MQTT broker refused the client id (set mqtt.client_id to one it accepts)"
        ),
        ConnectionError::ConnectionRefused(code) => {
            error!(source = %id, %broker, ?code, ?wait, "the MQTT broker refused the connection")
        }
        ConnectionError::Tls(t) => error!(
            source = %id, %broker, error = %t, ?wait,
            "TLS with the MQTT broker failed (check mqtt.ca_file and mqtt.server_name)"
        ),
        ConnectionError::MqttState(StateError::Deserialization(
            rumqttc::mqttbytes::Error::PayloadSizeLimitExceeded(n),
        )) => error!(
            source = %id, %broker, bytes = n, max_payload = settings.max_payload_bytes, ?wait,
            "the broker sent a message far larger than max_payload; the connection was dropped and the broker will resend it (raise max_payload or remove the message from the broker)"
        ),
        other => {
            warn!(source = %id, %broker, error = %other, ?wait, "MQTT connection lost; reconnecting")
        }
    }
}

/// What became of one delivery.
struct Settled {
    delivery: Delivery,
    result: Result<Committed, StoreError>,
    errors: usize,
}

/// Decode and commit deliveries, up to `max_in_flight` at once; ack them in arrival order.
async fn settle(
    mut rx: mpsc::Receiver<Delivery>,
    client: AsyncClient,
    ctx: SourceCtx,
    settings: Arc<MqttSettings>,
    shared: Shared,
) {
    let mut committing = FuturesOrdered::new();
    let mut unsent: VecDeque<Delivery> = VecDeque::new();
    loop {
        tokio::select! {
            Some(done) = committing.next(), if !committing.is_empty() => {
                if let Some(d) = finish(done, &ctx, &client, &shared) {
                    unsent.push_back(d);
                    flush(&mut unsent, &client, &shared);
                }
            }
            d = rx.recv(), if committing.len() < settings.max_in_flight => match d {
                Some(d) => committing.push_back(commit(d, ctx.clone(), settings.clone())),
                None => return,
            },
            _ = tokio::time::sleep(ACK_RETRY), if !unsent.is_empty() => {
                flush(&mut unsent, &client, &shared);
            }
        }
    }
}

/// Queue the acks waiting in `unsent`, oldest first, until rumqttc's request queue is full.
fn flush(unsent: &mut VecDeque<Delivery>, client: &AsyncClient, shared: &Shared) {
    while let Some(d) = unsent.pop_front() {
        if let Some(d) = ack(d, client, shared) {
            unsent.push_front(d);
            return;
        }
    }
}

/// Decode one delivery and commit it (pure decoding, then the store's group commit).
async fn commit(delivery: Delivery, ctx: SourceCtx, settings: Arc<MqttSettings>) -> Settled {
    let p = &delivery.publish;
    let topic = p.topic.as_str();
    let msg = if p.payload.len() > settings.max_payload_bytes {
        let hash = {
            use sha2::{Digest, Sha256};
            Sha256::digest(&p.payload)
        };
        let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
        let why = format!(
            "topic {topic:?}: payload of {} bytes is over max_payload ({} bytes); not kept (sha256 {hex})",
            p.payload.len(),
            settings.max_payload_bytes
        );
        error!(source = %ctx.id, topic, bytes = p.payload.len(), max_payload = settings.max_payload_bytes, "MQTT payload too large: recorded as invalid without its bytes");
        // The record stands for the payload by its hash, so a resend is recognised.
        let text = why.clone().into_bytes();
        NewMessage {
            source: ctx.id.clone(),
            protocol: ProtocolKind::Mqtt,
            wire: envelope(topic, &text),
            text,
            observations: Vec::new(),
            parse_errors: vec![why],
        }
    } else {
        let decoded = match settings
            .topics
            .iter()
            .find(|t| topic_matches(&t.filter, topic))
        {
            Some(t) => decode_payload(t.format, t.encoding, topic, &p.payload),
            None => crate::protocol::mqtt::Decoded {
                observations: Vec::new(),
                errors: vec![format!(
                    "topic {topic:?} matches no configured filter (a subscription left on the broker's session?)"
                )],
            },
        };
        NewMessage {
            source: ctx.id.clone(),
            protocol: ProtocolKind::Mqtt,
            wire: envelope(topic, &p.payload),
            text: p.payload.to_vec(),
            observations: ctx.enriched(decoded.observations),
            parse_errors: decoded.errors,
        }
    };
    let errors = msg.parse_errors.len();
    for e in &msg.parse_errors {
        warn!(source = %ctx.id, error = %e, "MQTT payload stored as invalid");
    }
    let result = ctx.store.commit(msg).await;
    Settled {
        delivery,
        result,
        errors,
    }
}

/// After a commit: the delivery to acknowledge, or `None` when the commit failed (acking this
/// connection stops and a new one is asked for).
fn finish(
    done: Settled,
    ctx: &SourceCtx,
    client: &AsyncClient,
    shared: &Shared,
) -> Option<Delivery> {
    let topic = done.delivery.publish.topic.as_str();
    match done.result {
        Ok(c) => {
            if c.duplicate {
                info!(source = %ctx.id, topic, id = %c.id, "resent MQTT message already stored; acknowledged again");
            } else {
                debug!(source = %ctx.id, topic, id = %c.id, invalid = done.errors > 0, "MQTT message stored");
            }
            Some(done.delivery)
        }
        Err(e) => {
            let mut state = lock(shared);
            if state.number == done.delivery.conn && !state.stopped {
                state.stopped = true;
                warn!(source = %ctx.id, topic, error = %e, "commit failed; not acknowledged, reconnecting so the broker resends");
                // Sent by the event loop, which then drops the connection (see `drive`).
                let _ = client.try_disconnect();
            }
            None
        }
    }
}

/// Queue the PUBACK if the delivery's connection is still the current one and acking on it has
/// not stopped. Returns the delivery when rumqttc's request queue is full (try again later).
fn ack(d: Delivery, client: &AsyncClient, shared: &Shared) -> Option<Delivery> {
    let state = lock(shared);
    if state.number != d.conn || state.stopped {
        debug!(topic = %d.publish.topic, "not acknowledged: its connection is gone; the broker resends it");
        return None;
    }
    // The queue is sized for 2 × max_in_flight acks; full only while the event loop is busy.
    match client.try_ack(&d.publish) {
        Ok(()) => None,
        Err(_) => Some(d),
    }
}

/// rustls client settings: ring, the configured CA file or the system bundle (sync/trust.rs), and the
/// certificate always verified — against `server_name` when given, else the broker host.
fn tls_config(tls: &MqttTls, host: &str) -> Result<rustls::ClientConfig, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    match &tls.ca_file {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("mqtt.ca_file {}: {e}", path.display()))?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(format!(
                    "mqtt.ca_file {}: no usable PEM certificate in it",
                    path.display()
                ));
            }
        }
        None => {
            let system = crate::sync::trust::system_roots();
            if let Some(why) = system.missing() {
                return Err(format!("TLS with the broker: {why} (mqtt.ca_file)"));
            }
            roots.add_parsable_certificates(system.certs.iter().cloned());
        }
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?;
    let name = tls.server_name.as_deref().unwrap_or(host);
    let name = ServerName::try_from(name.to_owned())
        .map_err(|_| format!("\"{name}\" is not a DNS name or IP address for TLS"))?;
    let verifier =
        rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| format!("TLS setup: {e}"))?;
    Ok(builder
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(NamedVerifier {
            inner: verifier,
            name,
        }))
        .with_no_client_auth())
}

/// The standard WebPKI verification, checking the certificate against one configured name
/// (rumqttc gives rustls the broker host, which is wrong when connecting by IP address).
#[derive(Debug)]
struct NamedVerifier {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    name: rustls::pki_types::ServerName<'static>,
}

impl rustls::client::danger::ServerCertVerifier for NamedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        ocsp_response: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, &self.name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_file_problems_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let tls = |ca: &std::path::Path| MqttTls {
            ca_file: Some(ca.to_owned()),
            server_name: None,
        };
        let e = tls_config(&tls(&missing), "broker.lan").unwrap_err();
        assert!(
            e.starts_with(&format!("mqtt.ca_file {}: ", missing.display())),
            "{e}"
        );
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let e = tls_config(&tls(&empty), "broker.lan").unwrap_err();
        assert!(e.ends_with("no usable PEM certificate in it"), "{e}");
    }

    #[test]
    fn system_roots_and_ip_hosts_build_a_verifying_config() {
        let tls = MqttTls {
            ca_file: None,
            server_name: None,
        };
        assert!(tls_config(&tls, "192.168.1.5").is_ok());
        assert!(tls_config(&tls, "broker.lan").is_ok());
        let bad = MqttTls {
            ca_file: None,
            server_name: Some("not a name".into()),
        };
        assert!(tls_config(&bad, "broker.lan").is_err());
    }
}

//! POCT1-A2 against the real binary: a tokio "device" replays the Nova StatStrip conversation of
//! protocols.md S25 (tests/fixtures/poct1) over TCP and checks each reply.

use crate::support::*;
use pocketgate::config::Encoding;
use pocketgate::protocol::poct1::split::{Split, Splitter};
use pocketgate::protocol::poct1::xml::{self, Element};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn poct1_fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/poct1")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn source(addr: SocketAddr, receive_timeout: &str) -> String {
    format!(
        "[[sources]]\nid = \"statstrip\"\nprotocol = \"poct1\"\ntransport = \"tcp-server\"\n\
         listen = \"{addr}\"\nreceive_timeout = \"{receive_timeout}\"\n"
    )
}

/// The analyzer's side of the conversation.
struct Device {
    s: TcpStream,
    split: Splitter,
    ready: VecDeque<Vec<u8>>,
}

impl Device {
    async fn connect(addr: SocketAddr) -> Device {
        Device {
            s: TcpStream::connect(addr).await.unwrap(),
            split: Splitter::new(1 << 16),
            ready: VecDeque::new(),
        }
    }

    async fn send(&mut self, doc: &[u8]) {
        self.s.write_all(doc).await.unwrap();
        self.s.flush().await.unwrap();
    }

    /// The next reply document, parsed.
    async fn reply(&mut self, gw: &Gateway) -> Element {
        let mut buf = [0u8; 4096];
        loop {
            if let Some(doc) = self.ready.pop_front() {
                return xml::parse(&doc, Encoding::Utf8).unwrap_or_else(|e| {
                    panic!("reply is not XML ({e}): {}", String::from_utf8_lossy(&doc))
                });
            }
            let read = tokio::time::timeout(Duration::from_secs(10), self.s.read(&mut buf)).await;
            let n = match read {
                Ok(Ok(n)) if n > 0 => n,
                other => panic!("no reply ({other:?}); log:\n{}", gw.log()),
            };
            for item in self.split.feed(&buf[..n]) {
                match item {
                    Split::Document(d) => self.ready.push_back(d),
                    other => panic!("unexpected bytes from the gateway: {other:?}"),
                }
            }
        }
    }

    /// Send `doc` and expect ACK.R01 `type_cd` for `control_id`.
    async fn expect_ack(&mut self, gw: &Gateway, doc: &[u8], type_cd: &str, control_id: &str) {
        self.send(doc).await;
        let r = self.reply(gw).await;
        assert_ack(&r, type_cd, control_id);
    }
}

fn assert_ack(r: &Element, type_cd: &str, control_id: &str) {
    assert_eq!(r.name, "ACK.R01", "{r:?}");
    let hdr = r.child("HDR").expect("the reply has its own HDR");
    assert_eq!(hdr.child_value("HDR.message_type"), Some("ACK.R01"));
    assert_eq!(hdr.child_value("HDR.version_id"), Some("POCT1"));
    assert!(hdr.child_value("HDR.control_id").is_some());
    assert!(hdr.child_value("HDR.creation_dttm").is_some());
    let ack = r.child("ACK").expect("ACK block");
    assert_eq!(ack.child_value("ACK.type_cd"), Some(type_cd), "{r:?}");
    assert_eq!(
        ack.child_value("ACK.ack_control_id"),
        Some(control_id),
        "{r:?}"
    );
}

fn control(doc: &str, id: &str) -> Vec<u8> {
    format!("<{doc}><HDR><HDR.message_type V=\"{doc}\"/><HDR.control_id V=\"{id}\"/><HDR.version_id V=\"POCT1\"/></HDR></{doc}>")
        .into_bytes()
}

#[tokio::test(flavor = "multi_thread")]
async fn s25_conversation_glucose_is_in_sqlite_before_the_obs_ack() {
    let addr = free_addr();
    let mut gw = Gateway::start(&source(addr, "30s"));
    gw.wait_listening(addr);
    let mut dev = Device::connect(addr).await;

    dev.expect_ack(&gw, &poct1_fixture("s25-hel-r01.xml"), "AA", "7135")
        .await;

    dev.send(&poct1_fixture("s25-dst-r01.xml")).await;
    let req = dev.reply(&gw).await;
    assert_eq!(req.name, "REQ.R01");
    assert_eq!(req.child_value("REQ.topic_cd"), Some("OBS.R01"));

    let obs = poct1_fixture("s25-obs-r01.xml");
    dev.expect_ack(&gw, &obs, "AA", "10003").await;
    // Kill the gateway the moment the device saw the ACK: no shutdown, no flush.
    gw.kill9();

    let stored = gw.reader().messages(None, 10).unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].protocol, "poct1");
    assert_ne!(stored[0].status, "invalid", "{stored:?}");
    assert_eq!(gw.reader().texts("statstrip").unwrap(), vec![obs]);
    let [glu] = &stored[0].observations[..] else {
        panic!("{:?}", stored[0].observations)
    };
    assert_eq!(glu.test_code, "2341-6");
    assert_eq!(glu.value.as_deref(), Some("145"));
    assert_eq!(glu.unit.as_deref(), Some("mg/dL"));
    assert_eq!(glu.patient_id.as_deref(), Some("PT222-55-7777"));
    assert_eq!(glu.observed_at.as_deref(), Some("2001-11-01T16:29:54"));
    assert_eq!(glu.device.model.as_deref(), Some("StatStrip"));
    assert_eq!(glu.device.serial.as_deref(), Some("0600100736"));
    assert_eq!(glu.extra.get("loinc").map(String::as_str), Some("2341-6"));
    assert_eq!(gw.reader().integrity_check().unwrap(), "ok");
}

#[tokio::test(flavor = "multi_thread")]
async fn second_identical_obs_is_acked_again_and_stored_once() {
    let addr = free_addr();
    let gw = Gateway::start(&source(addr, "30s"));
    gw.wait_listening(addr);
    let mut dev = Device::connect(addr).await;
    dev.expect_ack(&gw, &poct1_fixture("s25-hel-r01.xml"), "AA", "7135")
        .await;
    let obs = poct1_fixture("s25-obs-r01.xml");
    dev.expect_ack(&gw, &obs, "AA", "10003").await;
    dev.expect_ack(&gw, &obs, "AA", "10003").await;
    dev.expect_ack(&gw, &control("EOT.R01", "10004"), "AA", "10004")
        .await;
    dev.send(&control("END.R01", "10005")).await;
    drop(dev);
    gw.wait_log("resent message already stored");
    assert_eq!(texts(&gw, "statstrip"), vec![obs]);
}

#[tokio::test(flavor = "multi_thread")]
async fn truncated_xml_then_silence_is_dropped_and_the_connection_recovers() {
    let addr = free_addr();
    let gw = Gateway::start(&source(addr, "1s"));
    gw.wait_listening(addr);
    let mut dev = Device::connect(addr).await;
    let hel = poct1_fixture("s25-hel-r01.xml");
    let obs = poct1_fixture("s25-obs-r01.xml");
    dev.expect_ack(&gw, &hel, "AA", "7135").await;

    // Half an OBS, then the device goes quiet past the receive timeout.
    dev.send(&obs[..300]).await;
    gw.wait_log("partial message dropped");
    assert_eq!(
        gw.reader().count().unwrap(),
        0,
        "nothing of the half document is stored"
    );

    // Same connection, next conversation.
    dev.expect_ack(&gw, &hel, "AA", "7135").await;
    dev.send(&poct1_fixture("s25-dst-r01.xml")).await;
    assert_eq!(dev.reply(&gw).await.name, "REQ.R01");
    dev.expect_ack(&gw, &obs, "AA", "10003").await;
    assert_eq!(texts(&gw, "statstrip"), vec![obs]);
}

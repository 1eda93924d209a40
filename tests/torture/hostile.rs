//! Hostile devices: random bytes, endless frames, ENQ storms and slowloris connections on one
//! ASTM port and on the HL7 port, while well-behaved analyzers on other ports keep sending. The
//! gateway must keep serving them, store nothing from the junk, and stay within its memory limit.

use crate::analyzers::{Analyzer, Wire};
use crate::proc_kib;
use crate::support::*;
use pocketgate::store::flood::{INVALID_BURST, INVALID_REFILL};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Peak RSS the gateway may reach while under attack (its normal peak under load is ~12 MiB).
pub const RSS_LIMIT_KIB: u64 = 64 * 1024;

#[derive(Debug, Default)]
pub struct Report {
    pub seconds: f64,
    pub hostile_connections: usize,
    pub junk_bytes: usize,
    pub good_results: usize,
    pub good_acked: usize,
    pub stored: usize,
    /// Invalid messages the junk sources may have kept (their flood budget).
    pub junk_budget: usize,
    pub stored_from_junk: usize,
    pub peak_rss_kib: u64,
    pub alive: bool,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.alive
            && self.good_acked == self.good_results
            && self.stored == self.good_results + self.stored_from_junk
            && self.stored_from_junk <= self.junk_budget
            && self.peak_rss_kib <= RSS_LIMIT_KIB
    }

    pub fn markdown(&self) -> String {
        format!(
            "## Hostile devices (random bytes, endless frames, ENQ storms, slowloris)\n\n\
             | figure | value |\n|---|---|\n\
             | attack length | {:.0} s |\n\
             | hostile connections opened | {} |\n\
             | junk bytes sent | {} |\n\
             | good results sent on other ports / acknowledged | {} / {} |\n\
             | stored messages | {} |\n\
             | stored from junk (raw bytes kept as invalid; budget {}) | {} |\n\
             | gateway peak RSS (VmHWM) | {:.1} MiB (limit {} MiB) |\n\
             | gateway alive at the end | {} |\n",
            self.seconds,
            self.hostile_connections,
            self.junk_bytes,
            self.good_results,
            self.good_acked,
            self.stored,
            self.junk_budget,
            self.stored_from_junk,
            self.peak_rss_kib as f64 / 1024.0,
            RSS_LIMIT_KIB / 1024,
            if self.alive { "yes" } else { "no" },
        )
    }
}

/// The kinds of abuse, each run in its own loop of connections.
#[derive(Debug, Clone, Copy)]
enum Attack {
    /// Random bytes as fast as the socket takes them.
    RandomBytes,
    /// ENQ, then one STX frame that never ends.
    EndlessFrame,
    /// ENQ over and over.
    EnqStorm,
    /// One byte every second on as many connections as the source allows.
    Slowloris,
    /// An MLLP start block and a message that never reaches its end block.
    EndlessMllp,
}

struct Counters {
    connections: AtomicUsize,
    bytes: AtomicUsize,
    stop: AtomicBool,
}

async fn attack(kind: Attack, addr: SocketAddr, seed: u64, c: Arc<Counters>) {
    let mut x = seed.max(1);
    let mut rand = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    while !c.stop.load(Ordering::Relaxed) {
        let Ok(mut io) = TcpStream::connect(addr).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        c.connections.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let mut first = true;
        // Each connection lives a few seconds (or until the gateway drops it).
        while !c.stop.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(4) {
            let chunk: Vec<u8> = match kind {
                Attack::RandomBytes => (0..4096).map(|_| rand() as u8).collect(),
                Attack::EndlessFrame if first => b"\x05\x021".to_vec(),
                Attack::EndlessFrame => vec![b'R'; 4096],
                Attack::EnqStorm => vec![0x05; 64],
                Attack::Slowloris => vec![0x05],
                Attack::EndlessMllp if first => b"\x0bMSH|^~\\&|X".to_vec(),
                Attack::EndlessMllp => vec![b'A'; 4096],
            };
            first = false;
            if io.write_all(&chunk).await.is_err() {
                break;
            }
            c.bytes.fetch_add(chunk.len(), Ordering::Relaxed);
            let pause = match kind {
                Attack::Slowloris => 1000,
                Attack::EnqStorm => 5,
                _ => 1,
            };
            tokio::time::sleep(Duration::from_millis(pause)).await;
        }
    }
}

pub async fn run(seconds: u64) -> Report {
    let addrs = free_addrs(4);
    let (junk_astm, junk_hl7, good_astm, good_hl7) = (addrs[0], addrs[1], addrs[2], addrs[3]);
    let gw = Gateway::start(&format!(
        "[limits]\nmax_frame_bytes = 65536\nmax_message_bytes = 1048576\nmax_connections = 4\n\n\
         {}\n{}\n\
         [[sources]]\nid = \"junk-hl7\"\nprotocol = \"hl7\"\ntransport = \"tcp-server\"\n\
         listen = \"{junk_hl7}\"\nreceive_timeout = \"2s\"\n\n\
         [[sources]]\nid = \"good-hl7\"\nprotocol = \"hl7\"\ntransport = \"tcp-server\"\n\
         listen = \"{good_hl7}\"\n",
        tcp_source("junk-astm", junk_astm, "2s"),
        tcp_source("good-astm", good_astm, "30s"),
    ));
    for a in &addrs {
        gw.wait_listening(*a);
    }
    let pid = gw.pid().expect("gateway running");
    let c = Arc::new(Counters {
        connections: AtomicUsize::new(0),
        bytes: AtomicUsize::new(0),
        stop: AtomicBool::new(false),
    });
    let started = Instant::now();
    let mut attackers = Vec::new();
    for (i, kind) in [
        Attack::RandomBytes,
        Attack::EndlessFrame,
        Attack::EnqStorm,
        Attack::Slowloris,
        Attack::Slowloris,
        Attack::Slowloris,
        Attack::Slowloris,
        Attack::Slowloris,
    ]
    .into_iter()
    .enumerate()
    {
        attackers.push(tokio::spawn(attack(
            kind,
            junk_astm,
            7 + i as u64,
            c.clone(),
        )));
    }
    for (i, kind) in [Attack::EndlessMllp, Attack::RandomBytes, Attack::Slowloris]
        .into_iter()
        .enumerate()
    {
        attackers.push(tokio::spawn(attack(
            kind,
            junk_hl7,
            77 + i as u64,
            c.clone(),
        )));
    }
    // The good analyzers send throughout the attack.
    let per = (seconds as usize * 2).max(10);
    let gap = Duration::from_millis(seconds * 1000 / per as u64);
    let good = [
        Analyzer::new("good-astm", Wire::Astm, good_astm, per),
        Analyzer::new("good-hl7", Wire::Hl7, good_hl7, per),
    ];
    let good_tasks: Vec<_> = good
        .iter()
        .cloned()
        .map(|a| tokio::spawn(a.run(gap, Duration::from_secs(seconds + 60))))
        .collect();
    let mut r = Report {
        good_results: 2 * per,
        ..Report::default()
    };
    for t in good_tasks {
        r.good_acked += t.await.expect("good analyzer").acked.len();
    }
    tokio::time::sleep(Duration::from_secs(seconds).saturating_sub(started.elapsed())).await;
    c.stop.store(true, Ordering::Relaxed);
    for a in attackers {
        let _ = a.await;
    }
    r.seconds = started.elapsed().as_secs_f64();
    // Two junk sources, each a burst plus one per refill period.
    r.junk_budget =
        2 * (INVALID_BURST as usize + (r.seconds / INVALID_REFILL.as_secs_f64()).ceil() as usize);
    r.hostile_connections = c.connections.load(Ordering::Relaxed);
    r.junk_bytes = c.bytes.load(Ordering::Relaxed);
    r.peak_rss_kib = proc_kib(pid, "VmHWM:");
    r.alive = std::path::Path::new(&format!("/proc/{pid}")).exists()
        && std::net::TcpStream::connect(good_astm).is_ok();
    let rows = gw.reader().messages(None, 100_000).unwrap_or_default();
    r.stored = rows.len();
    r.stored_from_junk = rows.iter().filter(|m| m.source.starts_with("junk")).count();
    if !r.passed() {
        eprintln!("gateway log (tail):\n{}", gw.log_tail(40));
    }
    r
}

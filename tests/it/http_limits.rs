//! The HTTP ingest listener honours `limits.max_connections`: one connection too many gets
//! `503` with `Retry-After` at once; when a connection closes, its slot is free again.

use crate::support::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn get_health(addr: std::net::SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET /health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// A keep-alive connection that has been served once, so it holds a slot for sure (a closed
/// connection's slot may take a moment to come back, so a refused attempt is repeated).
fn hold(addr: std::net::SocketAddr) -> TcpStream {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(s, "GET /health HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        while !got.ends_with(b"}") {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        if got.starts_with(b"HTTP/1.1 200") {
            return s;
        }
        assert!(Instant::now() < until, "{}", String::from_utf8_lossy(&got));
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn http_connection_beyond_max_connections_gets_503_until_one_closes() {
    let addr = free_addr();
    let gw = Gateway::start(&format!(
        "[limits]\nmax_connections = 2\n\n[[sources]]\nid = \"lab\"\nprotocol = \"http\"\ntransport = \"tcp-server\"\nlisten = \"{addr}\"\n"
    ));
    gw.wait_listening(addr);
    // wait_listening's probe connection may still hold a slot for a moment.
    let until = Instant::now() + Duration::from_secs(10);
    while !get_health(addr).starts_with("HTTP/1.1 200") {
        assert!(Instant::now() < until, "{}", gw.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    // Two senders hold their connections open (served once, then idle keep-alive).
    let idle: Vec<TcpStream> = (0..2).map(|_| hold(addr)).collect();
    let refused = get_health(addr);
    assert!(
        refused.starts_with("HTTP/1.1 503"),
        "{refused}\n{}",
        gw.log()
    );
    assert!(
        refused.to_ascii_lowercase().contains("retry-after: 5"),
        "{refused}"
    );
    assert!(refused.contains("max_connections"), "{refused}");
    gw.wait_log("max_connections reached");

    drop(idle);
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = get_health(addr);
        if answer.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(
            Instant::now() < until,
            "slot never freed: {answer}\n{}",
            gw.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

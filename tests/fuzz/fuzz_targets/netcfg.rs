//! Fuzz the network engine's text inputs (src/netcfg): `iw` scan/link and `ip addr` output
//! (what the radio reports, including SSIDs anyone nearby can choose) and `network.toml`.
//! Never a panic; a file that validates renders, and saves back to the same settings.
//! The first byte picks the input kind.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pocketgate::netcfg::{self, scan};

fuzz_target!(|data: &[u8]| {
    let Some((&kind, bytes)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(bytes);
    match kind % 3 {
        0 => {
            let all = scan::parse_scan(&text);
            assert!(all.len() <= scan::MAX_SCAN_RESULTS);
            let _ = scan::networks(&all);
        }
        1 => {
            let _ = scan::parse_link(&text);
            let _ = scan::parse_ip_addr(&text);
            let _ = scan::unescape_iw(&text);
        }
        _ => {
            if let Ok(n) = netcfg::parse(&text) {
                let _ = netcfg::render(&n);
                assert_eq!(netcfg::parse(&netcfg::to_toml(&n)).ok(), Some(n));
            }
        }
    }
});

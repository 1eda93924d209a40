//! The CA certificates outbound TLS trusts by default: the system bundle, read once.
//!
//! On the appliance that is the image's Debian `ca-certificates` bundle
//! (`/etc/ssl/certs/ca-certificates.crt`; Buildroot: `BR2_PACKAGE_CA_CERTIFICATES`), so an image
//! update refreshes the roots without a new binary, and the binary carries no copy of its own
//! (−0.1 MB, issue 17; benches/results/2026-12-07-binary-size.md). `SSL_CERT_FILE` and
//! `SSL_CERT_DIR` point elsewhere. A private DHIS2 or broker adds its CA on top with
//! `dhis2.extra_ca_file` / `mqtt.ca_file`.

use rustls::pki_types::CertificateDer;
use std::sync::OnceLock;

/// What was found in the system bundle: the certificates, and why some could not be read.
#[derive(Debug)]
pub struct SystemRoots {
    pub certs: Vec<CertificateDer<'static>>,
    pub errors: Vec<String>,
}

/// The system's CA certificates, loaded on first use and kept for the process's life.
pub fn system_roots() -> &'static SystemRoots {
    static ROOTS: OnceLock<SystemRoots> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        SystemRoots {
            certs: found.certs,
            errors: found.errors.iter().map(|e| e.to_string()).collect(),
        }
    })
}

impl SystemRoots {
    /// Why nothing can be trusted, for an error message; `None` when there are certificates.
    pub fn missing(&self) -> Option<String> {
        if !self.certs.is_empty() {
            return None;
        }
        let mut why = String::from(
            "no CA certificates in the system bundle (/etc/ssl/certs/ca-certificates.crt, \
             or SSL_CERT_FILE / SSL_CERT_DIR): install ca-certificates or give the server's CA file",
        );
        for e in self.errors.iter().take(3) {
            why.push_str("; ");
            why.push_str(e);
        }
        Some(why)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_bundle_is_explained_and_a_full_one_is_not() {
        let empty = SystemRoots {
            certs: Vec::new(),
            errors: vec!["could not load PEM file \"/x\": No such file".into()],
        };
        let why = empty.missing().unwrap();
        assert!(why.contains("/etc/ssl/certs/ca-certificates.crt"), "{why}");
        assert!(why.ends_with("No such file"), "{why}");
        let full = SystemRoots {
            certs: vec![CertificateDer::from(vec![0x30, 0x00])],
            errors: Vec::new(),
        };
        assert_eq!(full.missing(), None);
    }

    /// The build and CI machines are Debian with ca-certificates, as the image is.
    #[test]
    fn this_machine_has_a_system_bundle() {
        let roots = system_roots();
        assert!(
            roots.certs.len() > 50,
            "{} roots: {:?}",
            roots.certs.len(),
            roots.errors
        );
    }
}

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
        let mut errors: Vec<String> = found.errors.iter().map(|e| e.to_string()).collect();
        let (certs, skipped) = usable(found.certs);
        if skipped > 0 {
            errors.push(format!(
                "{skipped} certificate(s) in the bundle are not usable as roots"
            ));
        }
        SystemRoots { certs, errors }
    })
}

/// Only the certificates rustls takes as trust anchors: reqwest refuses to build a client when
/// one added root does not parse, and one odd entry in a system bundle must not stop sync.
fn usable(certs: Vec<CertificateDer<'static>>) -> (Vec<CertificateDer<'static>>, usize) {
    let total = certs.len();
    let kept: Vec<_> = certs
        .into_iter()
        .filter(|c| rustls::RootCertStore::empty().add(c.clone()).is_ok())
        .collect();
    let skipped = total - kept.len();
    (kept, skipped)
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

    #[test]
    fn a_certificate_that_does_not_parse_is_left_out() {
        let good = system_roots().certs[0].clone();
        let (kept, skipped) = usable(vec![CertificateDer::from(vec![0x30, 0x03, 1, 2, 3]), good]);
        assert_eq!((kept.len(), skipped), (1, 1));
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

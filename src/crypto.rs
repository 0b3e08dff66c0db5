//! The process's one TLS crypto provider: `ring`.
//!
//! Four parts of the binary speak TLS through `rustls`: the probe engine, lettre (SMTP), ureq
//! (the channels' POSTs and the self-check) and the MySQL driver. The first three are handed
//! [`provider`]; the MySQL driver asks rustls for the *process default*. rustls picks that
//! default by itself only when exactly one of its providers (`ring`, `aws-lc-rs`) is compiled
//! in, and a build of several workspace packages at once unifies features: the test kit's SMTP
//! server brings `aws-lc-rs` in, and then the driver's first TLS connection (a TLS parameter
//! in the `--db` URL, docs/database.md) panicked. [`install`] makes the choice explicit, whatever the build.
//!
//! Why ring and not aws-lc-rs: ring is already in the binary (the MySQL driver's `webpki`
//! 0.22 uses it), and dropping aws-lc-rs made the binary a seventh smaller (6.6 → 5.9 MB),
//! its resident memory with it, and the build shorter (no aws-lc-sys).

use std::sync::Arc;

use rustls::crypto::CryptoProvider;

/// The provider every TLS client of this binary uses.
pub fn provider() -> Arc<CryptoProvider> {
    CryptoProvider::get_default()
        .map(Arc::clone)
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()))
}

/// Makes [`provider`] the process default. Call it first thing in `main`; calling it again, or
/// after another default was installed, changes nothing.
pub fn install() {
    // Err only when a default is already installed, which is what this asks for.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test build has both providers compiled in (the test kit's SMTP server brings
    /// aws-lc-rs), so without `install` rustls cannot choose and `ClientConfig::builder()`, the
    /// call the MySQL driver makes, panics.
    #[test]
    fn after_install_the_process_default_is_ring() {
        install();
        install();
        let _ = rustls::ClientConfig::builder();
        let default = CryptoProvider::get_default().expect("a process default");
        let ring = rustls::crypto::ring::default_provider();
        let names = |p: &CryptoProvider| {
            p.cipher_suites.iter().map(|s| format!("{:?}", s.suite())).collect::<Vec<_>>()
        };
        assert_eq!(names(default), names(&ring));
        assert!(Arc::ptr_eq(&provider(), default));
    }
}

//! `--tls`: serve HTTPS with a certificate made at start-up and signed by nobody.
//!
//! It exists for the probe's "invalid certificate" case: a real TLS server, speaking correct
//! TLS, whose certificate no client trusts (`UnknownIssuer`). The certificate is generated on
//! each start, so no private key is kept in the repository and none can expire in it.
//!
//! The crypto provider is handed to `rustls` explicitly, and it is `ring`, the one api-monitor
//! uses. Features unify across a workspace build, and mailin-embedded (mail-sink) enables
//! aws-lc-rs too, so `rustls` sees two providers and has no process default: every user here
//! names its provider (api-monitor installs ring as the default, `src/crypto.rs`).

use crate::server::Wire;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ServerConfig, ServerConnection, StreamOwned};
use std::io;
use std::net::{IpAddr, TcpStream};
use std::sync::Arc;

/// A TLS server configuration with a fresh self-signed certificate for `localhost`, the
/// loopback addresses and `bind` (so a client connecting to any of them gets past the name
/// check and fails on the issuer alone).
pub fn self_signed_config(bind: IpAddr) -> io::Result<Arc<ServerConfig>> {
    let mut names: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    if !bind.is_unspecified() && !names.contains(&bind.to_string()) {
        names.push(bind.to_string());
    }
    let certified = rcgen::generate_simple_self_signed(names)
        .map_err(|e| io::Error::other(format!("cannot create a TLS certificate: {e}")))?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|builder| {
            builder.with_no_client_auth().with_single_cert(vec![certified.cert.der().clone()], key)
        })
        .map(Arc::new)
        .map_err(|e| io::Error::other(format!("cannot set up TLS: {e}")))
}

/// Wraps an accepted socket in a server-side TLS session; the handshake happens on the first
/// read, so a client that rejects the certificate shows up as a failed request read.
pub fn accept(config: &Arc<ServerConfig>, socket: TcpStream) -> io::Result<TlsStream> {
    let session = ServerConnection::new(Arc::clone(config)).map_err(io::Error::other)?;
    Ok(StreamOwned::new(session, socket))
}

/// One HTTPS connection.
pub type TlsStream = StreamOwned<ServerConnection, TcpStream>;

impl Wire for TlsStream {
    fn socket(&self) -> &TcpStream {
        self.get_ref()
    }

    /// Sends TLS `close_notify`, so a client reading to the end of the stream sees a proper end
    /// rather than a truncation.
    fn close(&mut self) -> io::Result<()> {
        self.conn.send_close_notify();
        io::Write::flush(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_is_made_for_any_bind_address() {
        for bind in ["127.0.0.1", "0.0.0.0", "::1", "10.1.2.3"] {
            let bind: IpAddr = bind.parse().expect("ip");
            assert!(self_signed_config(bind).is_ok(), "{bind}");
        }
    }
}

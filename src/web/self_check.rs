//! `api-monitor check --healthz`: the monitor's own health, asked of the instance running on
//! this machine through its `--listen` server. A container health check must judge the monitor,
//! not the API it watches — plain `check` fails during every outage the monitor is busy
//! reporting — and the image has no shell or HTTP client, so the binary asks itself.

use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

/// The most of `/healthz`'s body that is read and shown (it is one line).
const MAX_BODY: u64 = 4096;

/// The URL of `/healthz` for a server listening on `listen`. A wildcard address (`0.0.0.0`,
/// `[::]`) is listened on but cannot be connected to: its loopback stands for it.
pub fn healthz_url(listen: SocketAddr) -> String {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}/healthz", SocketAddr::new(ip, listen.port()))
}

/// What `/healthz` said: well (200, with its one line: `ok`, or why this instance stands by),
/// or unwell (any other status, or no answer), with the reason.
#[derive(Debug, PartialEq, Eq)]
pub enum Health {
    Well(String),
    Unwell(String),
}

/// Asks `url` once, within `timeout` for the whole exchange.
pub fn ask(url: &str, timeout: Duration) -> Health {
    let agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .new_agent();
    let response = match agent.get(url).call() {
        Ok(response) => response,
        Err(e) => return Health::Unwell(format!("no answer: {e}")),
    };
    let status = response.status().as_u16();
    let mut body = String::new();
    let read = response.into_body().into_reader().take(MAX_BODY).read_to_string(&mut body);
    let line = match read {
        Ok(_) => body.trim().to_owned(),
        Err(e) => format!("(body unreadable: {e})"),
    };
    if status == 200 {
        Health::Well(line)
    } else {
        Health::Unwell(format!("HTTP {status}: {line}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wildcard_listen_address_is_asked_on_its_loopback() {
        let cases = [
            ("0.0.0.0:9898", "http://127.0.0.1:9898/healthz"),
            ("[::]:9898", "http://[::1]:9898/healthz"),
            ("127.0.0.1:80", "http://127.0.0.1:80/healthz"),
            ("10.1.2.3:9898", "http://10.1.2.3:9898/healthz"),
            ("[fe80::1]:9898", "http://[fe80::1]:9898/healthz"),
        ];
        for (listen, url) in cases {
            assert_eq!(healthz_url(listen.parse().unwrap()), url, "{listen}");
        }
    }

    #[test]
    fn the_status_decides_and_the_body_says_why() {
        let mut server = mockito::Server::new();
        let well = server.mock("GET", "/healthz").with_body("standby: held by b\n").create();
        let url = format!("{}/healthz", server.url());
        assert_eq!(ask(&url, Duration::from_secs(5)), Health::Well("standby: held by b".into()));
        well.remove();
        server
            .mock("GET", "/healthz")
            .with_status(503)
            .with_body("waiting for the database\n")
            .create();
        assert_eq!(
            ask(&url, Duration::from_secs(5)),
            Health::Unwell("HTTP 503: waiting for the database".into())
        );
    }

    #[test]
    fn no_server_is_unwell() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let url = format!("http://127.0.0.1:{port}/healthz");
        assert!(
            matches!(ask(&url, Duration::from_secs(5)), Health::Unwell(why) if why.starts_with("no answer"))
        );
    }
}

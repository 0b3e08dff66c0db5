//! What `--listen` serves: the bounded HTTP server, Prometheus metrics and liveness, and the
//! status page.

pub mod metrics;
pub mod self_check;
pub mod server;
pub mod status_page;
pub mod wire;

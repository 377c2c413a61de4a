//! HTTP/1.0, 1.1 and 0.9: `wire` parses messages, `state` follows a connection and pairs
//! responses with requests.

pub mod state;
pub mod wire;

pub use state::Http1;
pub use wire::{probe_request, probe_response};

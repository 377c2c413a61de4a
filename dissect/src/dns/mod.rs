//! DNS over UDP and TCP (and mDNS): `wire` reads messages, `state` pairs them.

pub mod state;
pub mod wire;

pub use state::{DnsPairing, DnsTcp};

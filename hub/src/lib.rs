//! kshark's hub: workers ship entries to it, it keeps them, filters them, and streams
//! them live.
//!
//! - [`record`]: the batch format on the wire and the [`record::Record`] each entry
//!   becomes (its slim form for filters and metrics, its full JSON compressed).
//! - [`store`]: the SQLite store, bounded by [`store::Retention`], queried by time and
//!   filter.
//! - [`hub::Hub`]: the writer thread (group commits, exactly-once per worker batch), the
//!   live subscribers (bounded, cut loose when slow), counters.
//! - [`metrics`]: Prometheus text, the service map and golden signals over time.
//! - [`api`]: the HTTP API of `cli.md` (axum), worker ingest over a WebSocket, TLS.
//! - [`guard`]: who may talk to the hub (same origin, allowed hosts, the reader and
//!   worker tokens) and the headers every response carries.
//! - [`serve`]: the listener, with a connection cap, header-read and idle timeouts, and a
//!   stop within seconds.
//! - [`web`]: the dashboard (`web/`, built by `build.rs`), embedded and served.
//! - [`client`]: the WebSocket client for workers, `observe` and the terminal UI.
//! - [`filter`]: the filter language of `cli.md` (CEL syntax with KFL2-style short names),
//!   compiled once with [`Filter::compile`], evaluated on each entry's JSON.

pub mod api;
pub mod client;
pub mod filter;
pub mod guard;
pub mod hub;
pub mod join;
pub mod metrics;
pub mod record;
pub mod serve;
pub mod store;
pub mod web;

pub use filter::{Filter, FilterError};
pub use hub::{Hub, HubConfig};

/// Everything that goes wrong in the hub.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A batch that cannot be taken: what is wrong with it, and where.
    #[error("malformed batch: {0}")]
    Malformed(String),
    /// The hub (or a worker's peer) said no: a wrong token, a refused batch.
    #[error("{0}")]
    Refused(String),
    #[error("store: {0}")]
    Store(String),
    #[error("the hub is shutting down")]
    Closed,
    /// A query stopped: its client left, its time ran out, or the hub is stopping.
    #[error("the query was stopped (its client left, its time ran out, or the hub is stopping)")]
    Cancelled,
    #[error("{0}")]
    Serve(String),
}

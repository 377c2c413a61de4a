//! kshark's hub library. Today: [`filter`], the filter language of `cli.md` (CEL syntax
//! with KFL2-style short names), compiled once with [`filter::Filter::compile`] and
//! evaluated on each entry's JSON with [`filter::Filter::matches`]. `kshark read
//! --filter` uses it; the hub's ingest, store and API will.

pub mod filter;

pub use filter::{Filter, FilterError};

//! The one error type of the dissect crate.

/// What the dissector refuses to do. Malformed traffic is not an error (it becomes
/// counters and anomalies); these are problems with how the dissector is used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The capture's link-layer type is one the dissector cannot decode.
    #[error("unsupported link-layer type {linktype} (supported: Ethernet, NULL/loopback, raw IP, Linux SLL/SLL2, NFLOG)")]
    UnsupportedLinkType { linktype: u32 },
}

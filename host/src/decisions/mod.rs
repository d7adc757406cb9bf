//! The decision log: one line per decision the service or a campaign run makes, and what the
//! lines answer afterwards.

pub mod entry;
pub mod sink;

pub use entry::Entry;
pub use sink::{Sink, SinkConfig, SinkStatus};

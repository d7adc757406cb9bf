//! The HTTP service: the API ([`http`]), the plugins it serves ([`registry`]), hot reload
//! ([`reload`]) and Prometheus metrics ([`metrics`]).

pub mod http;
pub mod metrics;
pub mod registry;
pub mod reload;

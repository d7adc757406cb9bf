//! The HTTP service: the API ([`http`]), the plugins it serves ([`registry`]), the campaigns it
//! runs ([`campaigns`]), hot reload ([`reload`]) and Prometheus metrics ([`metrics`]).

pub mod automation;
pub mod campaigns;
pub mod http;
pub mod metrics;
pub mod registry;
pub mod reload;
pub mod stream;
pub mod webhook;

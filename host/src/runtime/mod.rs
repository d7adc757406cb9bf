//! The wasm runtime: the sandbox ([`engine`]), compiled code kept between runs ([`cache`]), loading and checking a plugin ([`plugin`]), one
//! call on a fresh instance (`instance`), the customers of a call in the ABI's layout
//! ([`chunk`]), and the [`worker`] that evaluates a plugin over a batch.

pub mod cache;
pub mod chunk;
pub mod engine;
pub mod error;
pub(crate) mod instance;
pub mod plugin;
pub mod worker;

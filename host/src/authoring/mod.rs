//! Tools for rule authors: building plugins ([`build`]) and generating test customers
//! ([`generate`]).

pub mod build;
pub mod generate;

//! The evaluation pipeline: records read once ([`record`]), lines cut into chunks and answered in
//! order on a pool of workers ([`batch`], [`pool`]), answers written as NDJSON or CSV
//! ([`output`]).

pub mod batch;
pub mod campaign;
pub mod output;
pub mod pool;
pub mod record;

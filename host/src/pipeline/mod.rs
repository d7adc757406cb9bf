//! The evaluation pipeline: one [`evaluator`] cuts input into chunks, answers them on a pool of
//! workers ([`pool`]) and gives the answers back in order; records are read once ([`record`]);
//! the plans it runs are plugins side by side ([`batch`]) or campaigns ([`campaign`]); answers
//! are written as NDJSON or CSV ([`output`]); their decisions go to a [`recorder`].

pub mod batch;
pub mod campaign;
pub mod columnar;
pub mod evaluator;
pub mod output;
mod pool;
pub mod record;
pub mod recorder;

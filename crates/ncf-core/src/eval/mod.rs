//! Evaluation: HR@K / NDCG@K for the sampled and full-ranking protocols ([`metrics`]), the
//! validation split used for tuning ([`validation`]), the one top-K selection ([`topk`]), the
//! one note on NaN scores and non-finite models ([`nan`]) and several models scored as one
//! ([`Ensemble`]).

pub mod ensemble;
pub mod metrics;
pub mod nan;
pub mod topk;
pub mod validation;

pub use ensemble::Ensemble;

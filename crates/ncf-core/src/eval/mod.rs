//! Evaluation: HR@K / NDCG@K for the sampled and full-ranking protocols ([`metrics`]), the
//! validation split used for tuning ([`validation`]), the one top-K selection ([`topk`]) and
//! the one note on NaN scores and non-finite models ([`nan`]).

pub mod metrics;
pub mod nan;
pub mod topk;
pub mod validation;

//! Evaluation: HR@K / NDCG@K for the sampled and full-ranking protocols ([`metrics`]), the
//! validation split used for tuning ([`validation`]) and the one top-K selection ([`topk`]).

pub mod metrics;
pub mod topk;
pub mod validation;

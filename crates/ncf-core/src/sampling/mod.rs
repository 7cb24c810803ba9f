//! Random numbers and what is drawn with them: the one counter-based RNG ([`rng`]), an epoch's
//! shuffled samples with their training negatives ([`sampler`]), and the test negatives and
//! sample files of `ncf-negsample` ([`negatives`]).

pub mod negatives;
pub mod rng;
pub mod sampler;

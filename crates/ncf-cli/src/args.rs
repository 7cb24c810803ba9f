//! Flag groups more than one tool takes, defined once (`#[command(flatten)]`): where to compute
//! and which validation split to rank. The enums are `ncf-core`'s own (`clap::ValueEnum` behind
//! its `clap` feature), so a flag's values are the library's names.

use clap::Args;
use ncf_core::data::dataset::Dataset;
use ncf_core::eval::metrics::EvalSet;
use ncf_core::eval::validation::{self, Holdout};
use ncf_core::train::Device;

/// `--device` and `--gpu` (ncf-train, ncf-eval, ncf-topk).
#[derive(Args, Clone, Debug)]
pub struct DeviceArgs {
    /// Where to compute.
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: Device,
    /// GPU to use (CUDA device ordinal; default: the rank's local rank modulo the GPUs
    /// visible, else 0).
    #[arg(long)]
    pub gpu: Option<usize>,
}

/// `--validation`, `--validation-seed`, `--validation-holdout` (ncf-train, ncf-eval): both tools
/// must carve the same split from the same flags.
#[derive(Args, Clone, Debug)]
pub struct ValidationArgs {
    /// Rank the held-out items of a validation split carved from the training data (one
    /// interaction per user) instead of the test set.
    #[arg(long)]
    pub validation: bool,
    /// Seed of the validation split (kept fixed while tuning other things; ncf-eval takes the
    /// one ncf-train was given).
    #[arg(long, default_value_t = 0, requires = "validation")]
    pub validation_seed: u64,
    /// Which training interaction per user --validation holds out: the latest (as the test
    /// split does; needs timestamps) or a random one. Default: latest when the training rows
    /// have timestamps that are not all equal, else random.
    #[arg(long, value_enum, requires = "validation")]
    pub validation_holdout: Option<Holdout>,
}

impl ValidationArgs {
    /// The validation split of `data` these flags name (its training rows without the held-out
    /// ones, and the held-out items with their negatives), or `None` without `--validation`.
    pub fn split(&self, data: &Dataset) -> ncf_core::Result<Option<(Dataset, EvalSet)>> {
        if !self.validation {
            return Ok(None);
        }
        validation::default_validation(data, self.validation_seed, self.validation_holdout)
            .map(Some)
    }
}

//! Dropout masks of the MLP, defined once for every backend: unit `j` of layer `l` of the sample
//! with unshuffled epoch index `s` is kept or dropped by one byte of a Philox block, so the CPU,
//! every GPU thread and every rank draw the same masks, and the GPU can recompute them in the
//! backward pass instead of storing them.

use crate::sampling::rng::{stream, Rng};

/// Dropout threshold byte of probability `p`: a unit is kept iff its random byte is `>= t`.
pub fn dropout_threshold(p: f32) -> u32 {
    (p * 256.0).round().clamp(0.0, 255.0) as u32
}

/// Scale of kept units for threshold `t` (`1 / keep probability`).
pub fn dropout_scale(t: u32) -> f32 {
    256.0 / (256 - t) as f32
}

/// What a dropout mask depends on besides the sample, layer and unit.
#[derive(Clone, Copy, Debug)]
pub struct DropoutKey {
    pub rng: Rng,
    pub epoch: u32,
    /// From [`dropout_threshold`].
    pub threshold: u32,
}

/// The random bytes of units `16 b .. 16 b + 16` of MLP layer `layer` (0-based) of the sample
/// with unshuffled epoch index `s`: one Philox block, unit `16 b + j` is byte `j % 4` (little
/// endian) of word `j / 4`:
///
/// `rng.block(stream::DROPOUT, s, epoch, (layer << 16) | b)` for `s < 2^32` (an index at or
/// above it puts its high bits above the stream's, [`Rng::block_at`]).
///
/// This is the definition the CUDA kernels copy: unit `j` is kept iff
/// `((w[(j % 16) / 4] >> (8 * (j % 4))) & 0xff) >= t`, with `t = round(p · 256)` clamped to
/// 0..=255, and kept values are scaled by `256 / (256 − t)`.
#[inline]
pub fn dropout_block(rng: &Rng, s: u64, epoch: u32, layer: u32, b: u32) -> [u32; 4] {
    rng.block_at(stream::DROPOUT, s, epoch, (layer << 16) | b)
}

/// Whether unit `unit` of MLP layer `layer` of sample `s` is kept (threshold `t`).
pub fn dropout_keep(rng: &Rng, s: u64, epoch: u32, layer: u32, unit: u32, t: u32) -> bool {
    let w = dropout_block(rng, s, epoch, layer, unit / 16)[((unit % 16) / 4) as usize];
    (w >> (8 * (unit % 4))) & 0xff >= t
}

/// Keep flags of every unit of layer `layer` of sample `s`, block-wise ([`dropout_keep`] for all).
pub fn sample_dropout_mask(key: &DropoutKey, s: u64, layer: u32, keep: &mut [bool]) {
    for (b, chunk) in keep.chunks_mut(16).enumerate() {
        let w = dropout_block(&key.rng, s, key.epoch, layer, b as u32);
        for (j, k) in chunk.iter_mut().enumerate() {
            *k = (w[j / 4] >> (8 * (j % 4))) & 0xff >= key.threshold;
        }
    }
}

//! The one random number generator of ncf: counter-based Philox4x32-10.
//!
//! A value is a pure function of (seed, stream, counter), so every tool, backend (CPU or CUDA) and
//! rank count produces the same numbers for the same purpose. `kernels/rng.cuh` is the CUDA twin of
//! this file; `tests` below pin the published Random123 known-answer vectors.

const M0: u32 = 0xD251_1F53;
const M1: u32 = 0xCD9E_8D57;
const W0: u32 = 0x9E37_79B9;
const W1: u32 = 0xBB67_AE85;

/// Streams: the fourth counter word says what a number is for, so purposes never collide.
pub mod stream {
    pub const TRAIN_NEGATIVE: u32 = 1;
    pub const SHUFFLE: u32 = 2;
    pub const DROPOUT: u32 = 3;
    pub const TEST_NEGATIVE: u32 = 4;
    pub const INIT: u32 = 5;
    pub const SPLIT: u32 = 6;
    pub const SYNTH: u32 = 7;
    pub const VALIDATION: u32 = 8;
}

#[inline(always)]
fn mulhilo(a: u32, b: u32) -> (u32, u32) {
    let p = (a as u64) * (b as u64);
    ((p >> 32) as u32, p as u32)
}

/// Philox4x32 with 10 rounds (Salmon et al., SC'11), bit-identical to Random123 and curand.
#[inline]
pub fn philox4x32_10(ctr: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let (mut c, mut k) = (ctr, key);
    for round in 0..10 {
        if round > 0 {
            k[0] = k[0].wrapping_add(W0);
            k[1] = k[1].wrapping_add(W1);
        }
        let (hi0, lo0) = mulhilo(M0, c[0]);
        let (hi1, lo1) = mulhilo(M1, c[2]);
        c = [hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0];
    }
    c
}

/// A seeded generator: `block(stream, a, b, c)` = Philox(ctr = [a, b, c, stream], key = seed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rng {
    key: [u32; 2],
}

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng {
            key: [seed as u32, (seed >> 32) as u32],
        }
    }

    pub fn seed(&self) -> u64 {
        self.key[0] as u64 | ((self.key[1] as u64) << 32)
    }

    #[inline]
    pub fn block(&self, stream: u32, a: u32, b: u32, c: u32) -> [u32; 4] {
        philox4x32_10([a, b, c, stream], self.key)
    }

    /// The `k`-th 32-bit word of the sequence addressed by (stream, a, b): words 4j..4j+3 come
    /// from block c = j. Used for rejection loops that need "the next" number.
    #[inline]
    pub fn word(&self, stream: u32, a: u32, b: u32, k: u32) -> u32 {
        self.block(stream, a, b, k / 4)[(k % 4) as usize]
    }

    /// [`Rng::block`] addressed by a 64-bit index `i` (a sample of an epoch) in place of `a`:
    /// its low 32 bits are word `a` and its high bits sit above the stream's 8 bits in the fourth
    /// word, so an index below 2^32 gives the numbers it always did. `i < 2^48` ([`MAX_INDEX`]).
    #[inline]
    pub fn block_at(&self, stream: u32, i: u64, b: u32, c: u32) -> [u32; 4] {
        debug_assert!(stream < 1 << 8 && i < MAX_INDEX);
        self.block(stream | ((i >> 32) as u32) << 8, i as u32, b, c)
    }

    /// [`Rng::word`] addressed by a 64-bit index, as [`Rng::block_at`].
    #[inline]
    pub fn word_at(&self, stream: u32, i: u64, b: u32, k: u32) -> u32 {
        self.block_at(stream, i, b, k / 4)[(k % 4) as usize]
    }

    /// Uniform f64 in [0, 1) from two words of one block (53 bits).
    #[inline]
    pub fn uniform_f64(&self, stream: u32, a: u32, b: u32, c: u32) -> f64 {
        let w = self.block(stream, a, b, c);
        let bits = ((w[0] as u64) << 21) ^ (w[1] as u64 >> 11);
        (bits & ((1u64 << 53) - 1)) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal by Box-Muller from one block.
    pub fn normal(&self, stream: u32, a: u32, b: u32, c: u32) -> f64 {
        let w = self.block(stream, a, b, c);
        let u1 = ((w[0] as f64) + 1.0) / 4_294_967_296.0; // (0, 1]
        let u2 = (w[1] as f64) / 4_294_967_296.0;
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

/// Indices of [`Rng::block_at`] are below this (2^48): the high 16 bits above the stream's 8.
pub const MAX_INDEX: u64 = 1 << 48;

/// Map a uniform 32-bit word to [0, n) by multiply-shift (Lemire); the CUDA twin uses `__umulhi`.
#[inline(always)]
pub fn below(word: u32, n: u32) -> u32 {
    (((word as u64) * (n as u64)) >> 32) as u32
}

/// murmur3's 32-bit finaliser: the round function of [`Permutation`].
#[inline(always)]
pub fn fmix32(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85EB_CA6B);
    h ^= h >> 13;
    h = h.wrapping_mul(0xC2B2_AE35);
    h ^ (h >> 16)
}

/// A random permutation of `0..n` evaluated one index at a time (4-round Feistel network with
/// cycle walking): position `p` of the shuffled order holds element `apply(p)`. Needs no memory,
/// so every rank and the GPU compute their own part of the same shuffle.
#[derive(Clone, Copy, Debug)]
pub struct Permutation {
    n: u64,
    half_bits: u32,
    keys: [u32; 4],
}

impl Permutation {
    pub fn new(rng: &Rng, stream: u32, a: u32, b: u32, n: u64) -> Self {
        assert!(n <= 1 << 62, "permutation domain too large");
        let mut bits = 64 - n.saturating_sub(1).leading_zeros();
        bits = bits.max(2);
        let half_bits = bits.div_ceil(2);
        Permutation {
            n,
            half_bits,
            keys: rng.block(stream, a, b, 0),
        }
    }

    pub fn len(&self) -> u64 {
        self.n
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    pub fn keys(&self) -> [u32; 4] {
        self.keys
    }

    pub fn half_bits(&self) -> u32 {
        self.half_bits
    }

    #[inline]
    fn feistel(&self, x: u64) -> u64 {
        let mask = (1u64 << self.half_bits) - 1;
        let (mut l, mut r) = (x >> self.half_bits, x & mask);
        for k in self.keys {
            let f = fmix32((r as u32).wrapping_mul(0x9E37_79B1) ^ k) as u64 & mask;
            (l, r) = (r, l ^ f);
        }
        (l << self.half_bits) | r
    }

    #[inline]
    pub fn apply(&self, p: u64) -> u64 {
        debug_assert!(p < self.n);
        let mut v = self.feistel(p);
        while v >= self.n {
            v = self.feistel(v);
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn philox_known_answers() {
        // Random123 kat_vectors, philox4x32_10.
        assert_eq!(
            philox4x32_10([0; 4], [0; 2]),
            [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]
        );
        assert_eq!(
            philox4x32_10([u32::MAX; 4], [u32::MAX; 2]),
            [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd]
        );
        assert_eq!(
            philox4x32_10(
                [0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344],
                [0xa4093822, 0x299f31d0]
            ),
            [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1]
        );
    }

    #[test]
    fn indexed_blocks_keep_the_32_bit_numbers_and_differ_above() {
        let rng = Rng::new(11);
        for i in [0u64, 1, 12_345, u32::MAX as u64] {
            assert_eq!(
                rng.block_at(stream::DROPOUT, i, 3, 7),
                rng.block(stream::DROPOUT, i as u32, 3, 7)
            );
            assert_eq!(
                rng.word_at(stream::TRAIN_NEGATIVE, i, 2, 9),
                rng.word(stream::TRAIN_NEGATIVE, i as u32, 2, 9)
            );
        }
        // Indices that agree in their low 32 bits get other numbers, and no stream's.
        let low = rng.block_at(stream::TRAIN_NEGATIVE, 5, 0, 0);
        let mut seen = vec![low];
        for hi in [1u64, 2, 0xffff] {
            let b = rng.block_at(stream::TRAIN_NEGATIVE, (hi << 32) | 5, 0, 0);
            assert!(!seen.contains(&b), "index {hi}<<32 | 5 repeats a block");
            seen.push(b);
        }
        for s in 1..=stream::VALIDATION {
            assert!(!seen[1..].contains(&rng.block(s, 5, 0, 0)));
        }
    }

    #[test]
    fn permutation_beyond_2_pow_32_is_in_range_and_injective_on_a_sample() {
        let n = 6_108_824_090u64; // ml-20mx16x32 × (1 + 4)
        let p = Permutation::new(&Rng::new(3), stream::SHUFFLE, 0, 0, n);
        let mut out: Vec<u64> = (0..20_000u64).map(|k| p.apply(k * (n / 20_000))).collect();
        assert!(out.iter().all(|&v| v < n));
        assert!(out.iter().any(|&v| v >= 1 << 32), "never reaches past 2^32");
        out.sort_unstable();
        out.dedup();
        assert_eq!(out.len(), 20_000);
    }

    #[test]
    fn permutation_is_a_bijection() {
        let rng = Rng::new(42);
        for n in [1u64, 2, 3, 7, 64, 1000, 4097] {
            let p = Permutation::new(&rng, stream::SHUFFLE, 3, 0, n);
            let mut seen = vec![false; n as usize];
            for i in 0..n {
                let v = p.apply(i) as usize;
                assert!(!seen[v], "n={n}: {v} twice");
                seen[v] = true;
            }
        }
    }

    #[test]
    fn permutation_moves_things() {
        let rng = Rng::new(7);
        let p = Permutation::new(&rng, stream::SHUFFLE, 0, 0, 10_000);
        let fixed = (0..10_000).filter(|&i| p.apply(i) == i).count();
        assert!(fixed < 20, "{fixed} fixed points");
        let q = Permutation::new(&rng, stream::SHUFFLE, 1, 0, 10_000);
        let same = (0..10_000).filter(|&i| p.apply(i) == q.apply(i)).count();
        assert!(same < 20, "epochs share {same} positions");
    }

    #[test]
    fn below_is_in_range_and_uniform_enough() {
        let rng = Rng::new(1);
        let mut counts = [0u32; 10];
        for i in 0..100_000 {
            counts[below(rng.word(stream::TRAIN_NEGATIVE, i, 0, 0), 10) as usize] += 1;
        }
        for c in counts {
            assert!((9_500..10_500).contains(&c), "{counts:?}");
        }
    }

    #[test]
    fn normal_has_unit_variance() {
        let rng = Rng::new(3);
        let n = 50_000;
        let xs: Vec<f64> = (0..n).map(|i| rng.normal(stream::INIT, i, 0, 0)).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        assert!(
            mean.abs() < 0.02 && (var - 1.0).abs() < 0.03,
            "{mean} {var}"
        );
    }
}

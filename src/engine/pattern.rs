//! Where each I/O goes: sequential and random offset streams, and the read/write mix.
//!
//! Random patterns must visit every block exactly once per pass (fio's "random map")
//! so that a random read of a file touches all of it, not a birthday-paradox 63 %.
//! A bitmap per file would cost 64 Ki bits per 32 GiB file at 64 KiB blocks but 8 Mi
//! bits at 4 KiB — and a bitmap lookup per I/O. Instead each pass walks a keyed
//! *bijection* of `[0, 2^k)` (`2^k` the smallest power of two ≥ the block count) and
//! skips images that fall outside `[0, n)`: every block appears exactly once, no memory
//! is needed, and at most half the draws are skipped. The bijection is a chain of
//! invertible steps on k-bit words (odd multiply, xor-shift, add), keyed by the seed
//! and the pass number so successive passes differ, and reproducible from `randseed`.
pub use crate::rng::SplitMix64;

/// A keyed bijection on `[0, 2^bits)`.
#[derive(Debug, Clone)]
pub struct Permutation {
    bits: u32,
    mask: u64,
    keys: [u64; 4],
}

impl Permutation {
    pub fn new(bits: u32, key: u64) -> Self {
        assert!(bits <= 64, "permutation domain is at most 2^64");
        let mask = if bits == 64 { u64::MAX } else { (1u64 << bits) - 1 };
        let mut rng = SplitMix64::new(key);
        // Multipliers must be odd to be invertible modulo 2^bits.
        let keys = [rng.next_u64() | 1, rng.next_u64(), rng.next_u64() | 1, rng.next_u64()];
        Self { bits, mask, keys }
    }

    /// The image of `x` (which must be inside the domain).
    #[inline]
    pub fn apply(&self, x: u64) -> u64 {
        if self.bits == 0 {
            return 0;
        }
        let shift = self.bits.div_ceil(2);
        let m = self.mask;
        let mut v = x & m;
        v = v.wrapping_mul(self.keys[0]) & m;
        v ^= v >> shift;
        v = v.wrapping_add(self.keys[1]) & m;
        v = v.wrapping_mul(self.keys[2]) & m;
        v ^= v >> shift;
        v = v.wrapping_add(self.keys[3]) & m;
        v = v.wrapping_mul(self.keys[0]) & m;
        v ^ (v >> shift)
    }
}

/// Order in which the blocks of one file are visited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    Sequential,
    Random,
}

/// An endless stream of block indices in `[0, blocks)`, pass after pass.
///
/// `next()` returns the block index and whether it starts a new pass (so size-based
/// runs know when one full pass is done).
#[derive(Debug, Clone)]
pub struct BlockStream {
    order: Order,
    blocks: u64,
    seed: u64,
    pass: u64,
    cursor: u64,
    emitted: u64,
    perm: Permutation,
}

impl BlockStream {
    pub fn new(order: Order, blocks: u64, seed: u64) -> Self {
        assert!(blocks > 0, "a file has at least one block");
        let bits = 64 - (blocks - 1).leading_zeros();
        Self { order, blocks, seed, pass: 0, cursor: 0, emitted: 0, perm: Permutation::new(bits, pass_key(seed, 0)) }
    }

    /// Completed passes so far.
    pub fn passes(&self) -> u64 {
        self.pass
    }

    /// The next block index.
    #[inline]
    pub fn next_block(&mut self) -> u64 {
        match self.order {
            Order::Sequential => {
                let b = self.cursor;
                self.cursor += 1;
                if self.cursor == self.blocks {
                    self.end_pass();
                }
                b
            }
            Order::Random => loop {
                let b = self.perm.apply(self.cursor);
                self.cursor += 1;
                if b < self.blocks {
                    self.emitted += 1;
                    // Every block has been visited once: the rest of the domain maps
                    // outside the file, so the pass ends here.
                    if self.emitted == self.blocks {
                        self.end_pass();
                    }
                    return b;
                }
            },
        }
    }

    fn end_pass(&mut self) {
        self.cursor = 0;
        self.emitted = 0;
        self.pass += 1;
        if self.order == Order::Random {
            self.perm = Permutation::new(self.perm.bits, pass_key(self.seed, self.pass));
        }
    }
}

fn pass_key(seed: u64, pass: u64) -> u64 {
    SplitMix64::new(seed ^ pass.wrapping_mul(0xD1B5_4A32_D192_ED03)).next_u64()
}

/// Decides, I/O by I/O, whether a mixed workload reads or writes.
#[derive(Debug, Clone)]
pub struct Mix {
    read_percent: u32,
    rng: SplitMix64,
}

impl Mix {
    pub fn new(read_percent: u32, seed: u64) -> Self {
        Self { read_percent: read_percent.min(100), rng: SplitMix64::new(seed ^ 0x005E_ED0F_0B1E) }
    }

    #[inline]
    pub fn is_read(&mut self) -> bool {
        match self.read_percent {
            100 => true,
            0 => false,
            p => (self.rng.next_u64() % 100) < u64::from(p),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn one_pass(order: Order, blocks: u64, seed: u64) -> Vec<u64> {
        let mut s = BlockStream::new(order, blocks, seed);
        let mut out = Vec::new();
        while s.passes() == 0 {
            out.push(s.next_block());
        }
        out
    }

    proptest! {
        #[test]
        fn random_pass_covers_every_block_once(blocks in 1u64..5000, seed: u64) {
            let mut seen = one_pass(Order::Random, blocks, seed);
            prop_assert_eq!(seen.len() as u64, blocks);
            prop_assert!(seen.iter().all(|&b| b < blocks));
            seen.sort_unstable();
            seen.dedup();
            prop_assert_eq!(seen.len() as u64, blocks);
        }

        #[test]
        fn sequential_pass_is_in_order(blocks in 1u64..5000) {
            let seen = one_pass(Order::Sequential, blocks, 0);
            prop_assert_eq!(seen, (0..blocks).collect::<Vec<_>>());
        }

        #[test]
        fn permutation_is_a_bijection(bits in 0u32..13, key: u64) {
            let p = Permutation::new(bits, key);
            let n = 1u64 << bits;
            let mut images: Vec<u64> = (0..n).map(|x| p.apply(x)).collect();
            prop_assert!(images.iter().all(|&y| y < n));
            images.sort_unstable();
            images.dedup();
            prop_assert_eq!(images.len() as u64, n);
        }
    }

    #[test]
    fn same_seed_same_order_and_passes_differ() {
        let a = one_pass(Order::Random, 1000, 7);
        let b = one_pass(Order::Random, 1000, 7);
        assert_eq!(a, b);
        let mut s = BlockStream::new(Order::Random, 1000, 7);
        let first: Vec<u64> = (0..1000).map(|_| s.next_block()).collect();
        let second: Vec<u64> = (0..1000).map(|_| s.next_block()).collect();
        assert_eq!(first, a);
        assert_ne!(first, second, "each pass is a fresh permutation");
        assert_ne!(a, one_pass(Order::Random, 1000, 8));
    }

    #[test]
    fn mix_respects_share() {
        let mut m = Mix::new(70, 1);
        let reads = (0..100_000).filter(|_| m.is_read()).count();
        assert!((68_000..72_000).contains(&reads), "{reads}");
        assert!((0..100).all(|_| Mix::new(100, 3).is_read()));
        assert!((0..100).all(|_| !Mix::new(0, 3).is_read()));
    }
}

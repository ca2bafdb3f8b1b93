//! I/O buffers: page-aligned (O_DIRECT needs it) and, for writes, incompressible.
//!
//! A write buffer is filled with pseudo-random bytes once, then *scrambled* before each
//! write by overwriting one 8-byte word in every 512-byte sector. Filling 64 KiB anew
//! per write would cost more than the write on tmpfs; never changing it would let a
//! deduplicating filesystem store one block. Scrambling keeps every sector of every
//! write distinct for ~1/64 of the cost of a refill (fio's `scramble_buffers` idea).

use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::ptr::NonNull;

use crate::engine::pattern::SplitMix64;

/// Alignment of every buffer: a page, which satisfies any O_DIRECT memory alignment
/// a Linux filesystem asks for.
pub const BUFFER_ALIGN: usize = 4096;

const SECTOR: usize = 512;

/// A heap buffer aligned to [`BUFFER_ALIGN`].
pub struct AlignedBuf {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: AlignedBuf owns its allocation exclusively, like a Box<[u8]>.
unsafe impl Send for AlignedBuf {}

impl AlignedBuf {
    pub fn new(len: usize) -> Self {
        assert!(len > 0, "buffers are never empty");
        let layout = Self::layout(len);
        // SAFETY: the layout has a non-zero size.
        let raw = unsafe { alloc_zeroed(layout) };
        let ptr = NonNull::new(raw).unwrap_or_else(|| std::alloc::handle_alloc_error(layout));
        Self { ptr, len }
    }

    /// A buffer filled with incompressible bytes.
    pub fn random(len: usize, rng: &mut SplitMix64) -> Self {
        let mut b = Self::new(len);
        rng.fill(b.as_mut_slice());
        b
    }

    fn layout(len: usize) -> Layout {
        Layout::from_size_align(len, BUFFER_ALIGN).expect("buffer size fits in isize")
    }

    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: ptr is valid for len initialized (zeroed) bytes for our lifetime.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as above, and &mut self guarantees exclusive access.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }

    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Makes every sector of the buffer differ from its previous contents.
    #[inline]
    pub fn scramble(&mut self, rng: &mut SplitMix64) {
        let s = self.as_mut_slice();
        let mut i = 0;
        while i + 8 <= s.len() {
            s[i..i + 8].copy_from_slice(&rng.next_u64().to_le_bytes());
            i += SECTOR;
        }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with exactly this layout.
        unsafe { dealloc(self.ptr.as_ptr(), Self::layout(self.len)) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_and_scrambled() {
        let mut rng = SplitMix64::new(1);
        let mut b = AlignedBuf::random(65536, &mut rng);
        assert_eq!(b.as_mut_ptr() as usize % BUFFER_ALIGN, 0);
        let before = b.as_slice().to_vec();
        b.scramble(&mut rng);
        let after = b.as_slice();
        for (old, new) in before.chunks(SECTOR).zip(after.chunks(SECTOR)) {
            assert_ne!(old, new, "every sector changes");
        }
        // Random data does not compress: few repeated 8-byte words.
        let mut words: Vec<&[u8]> = after.chunks(8).collect();
        words.sort_unstable();
        words.dedup();
        assert_eq!(words.len(), after.len() / 8);
    }
}

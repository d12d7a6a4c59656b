//! `memcmp` and `bcmp` for wasm guests, eight bytes at a time.
//!
//! WebAssembly has no instruction to compare memory, and the versions that
//! Rust's `compiler-builtins` links into a wasm module compare one byte at a
//! time. Every string comparison goes through them: map lookups by key,
//! `==` on strings, a cache keyed by user agents. These compare eight bytes
//! per step (wasm loads need no alignment) and find the first difference
//! only in the word that has it. `compiler-builtins` defines its versions as
//! weak symbols, so these take their place.

/// Compares `n` bytes; the sign of the first differing byte pair, as C's.
///
/// # Safety
/// `a` and `b` must be valid for reads of `n` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: i + 8 <= n, and both are readable for n bytes.
        let (x, y) = unsafe { (a.add(i).cast::<u64>().read_unaligned(), b.add(i).cast::<u64>().read_unaligned()) };
        if x != y {
            // Little-endian: the first differing byte is the lowest set bit.
            let shift = (x ^ y).trailing_zeros() & !7;
            return i32::from((x >> shift) as u8) - i32::from((y >> shift) as u8);
        }
        i += 8;
    }
    while i < n {
        // SAFETY: i < n.
        let (x, y) = unsafe { (*a.add(i), *b.add(i)) };
        if x != y {
            return i32::from(x) - i32::from(y);
        }
        i += 1;
    }
    0
}

/// Zero when the `n` bytes are equal, as C's `bcmp`.
///
/// # Safety
/// `a` and `b` must be valid for reads of `n` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: as the caller promised.
    unsafe { memcmp(a, b, n) }
}

//! `memcmp` and `bcmp` for wasm guests, eight bytes at a time.
//!
//! WebAssembly has no instruction to compare memory, and the versions that
//! Rust's `compiler-builtins` links into a wasm module compare one byte at a
//! time. Every string comparison goes through them: map lookups by key,
//! `==` on strings, a cache keyed by user agents. These compare eight bytes
//! per step (wasm loads need no alignment) and look for the first
//! difference only in the word that has it. `compiler-builtins` defines its
//! versions as weak symbols, so these take their place in a plugin; on
//! other targets nothing is exported and the platform's are used.

/// Compares two equally long byte strings: the sign of the first differing
/// byte pair, as C's `memcmp`.
fn compare(a: &[u8], b: &[u8]) -> i32 {
    debug_assert_eq!(a.len(), b.len());
    let mut words = a.chunks_exact(8).zip(b.chunks_exact(8));
    for (x, y) in words.by_ref() {
        let x = u64::from_le_bytes(x.try_into().expect("8 bytes"));
        let y = u64::from_le_bytes(y.try_into().expect("8 bytes"));
        if x != y {
            // Little-endian: the first differing byte holds the lowest set bit.
            let shift = (x ^ y).trailing_zeros() & !7;
            return i32::from((x >> shift) as u8) - i32::from((y >> shift) as u8);
        }
    }
    let done = a.len() - a.len() % 8;
    for (x, y) in a[done..].iter().zip(&b[done..]) {
        if x != y {
            return i32::from(*x) - i32::from(*y);
        }
    }
    0
}

/// C's `memcmp`.
///
/// # Safety
/// `a` and `b` must be valid for reads of `n` bytes.
#[cfg(target_family = "wasm")]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    if n == 0 {
        return 0;
    }
    // SAFETY: the caller promises n readable bytes at each.
    unsafe { compare(std::slice::from_raw_parts(a, n), std::slice::from_raw_parts(b, n)) }
}

/// C's `bcmp`: zero when the `n` bytes are equal.
///
/// # Safety
/// `a` and `b` must be valid for reads of `n` bytes.
#[cfg(target_family = "wasm")]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: as the caller promised.
    unsafe { memcmp(a, b, n) }
}

#[cfg(test)]
mod tests {
    use super::compare;

    #[test]
    fn orders_as_slices_do() {
        let texts: [&[u8]; 9] = [b"", b"a", b"b", b"abcdefgh", b"abcdefgi", b"abcdefghij", b"abcdefghik", b"\xffbcdefgh", b"abcdefg\x00"];
        for x in texts {
            for y in texts {
                let n = x.len().min(y.len());
                let expected = x[..n].cmp(&y[..n]) as i32;
                assert_eq!(compare(&x[..n], &y[..n]).signum(), expected, "{x:?} {y:?}");
            }
        }
        // A difference in every position of a long string.
        let base: Vec<u8> = (0..100).collect();
        for i in 0..100 {
            let mut other = base.clone();
            other[i] += 1;
            assert!(compare(&base, &other) < 0 && compare(&other, &base) > 0, "at {i}");
        }
    }
}

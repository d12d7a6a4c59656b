//! The plugin's allocator (wasm only, the `fast-alloc` feature).
//!
//! Stages allocate many small blocks per event and free them before the
//! next: JSON values, map nodes, keys, strings, the events the bindings
//! build. A general allocator spends most of its time on those (talc took
//! about a fifth of a JSON stage's time in wasm). So blocks of up to 1 KiB
//! come from free lists, one per multiple of 16 bytes, refilled from 64 KiB
//! chunks; freeing pushes the block back on its list. Larger blocks, and
//! blocks aligned to more than 16, go to talc.
//!
//! 1 KiB covers an event's payload as the host copies it in (a few hundred
//! bytes is typical), the nodes of a JSON object's `BTreeMap` and the
//! buffer a small event is serialised into. With 256 the payload and the
//! map nodes went to talc: the `noop` stage ran 6% more instructions per
//! event, `json-map` 3% more (callgrind).
//!
//! A freed small block is kept for the next allocation of its size, not
//! returned to talc: a stage's small-block memory stays at its peak (a
//! batch's worth), within the stage's `limits.memory`. A chunk's tail that
//! is too short for the block asked for is left unused: at most 1 KiB of
//! each 64 KiB.

use std::alloc::{GlobalAlloc, Layout};
use std::cell::UnsafeCell;
use std::ptr;

/// Small blocks are multiples of this, and aligned to it.
const GRANULE: usize = 16;
/// The largest small block.
const MAX_SMALL: usize = 1024;
const CLASSES: usize = MAX_SMALL / GRANULE;
/// What a refill takes from talc.
const CHUNK: usize = 64 * 1024;

/// Free lists for small blocks in front of talc.
pub struct Allocator {
    large: talc::wasm::WasmDynamicTalc,
    small: UnsafeCell<Small>,
}

struct Small {
    /// Per class, the first free block; each free block holds the next.
    free: [*mut u8; CLASSES],
    /// The unused rest of the current chunk.
    next: *mut u8,
    end: *mut u8,
}

// SAFETY: a wasm plugin without the `atomics` feature has one thread.
unsafe impl Sync for Allocator {}

impl Allocator {
    /// An allocator with no memory yet.
    pub const fn new() -> Allocator {
        Allocator {
            large: talc::wasm::new_wasm_dynamic_allocator(),
            small: UnsafeCell::new(Small { free: [ptr::null_mut(); CLASSES], next: ptr::null_mut(), end: ptr::null_mut() }),
        }
    }
}

/// The class of a small layout, `None` for one that talc serves. The same
/// layout always gets the same answer, so a block is freed where it came
/// from.
fn class(layout: Layout) -> Option<usize> {
    (layout.size() <= MAX_SMALL && layout.align() <= GRANULE).then(|| layout.size().max(1).div_ceil(GRANULE) - 1)
}

unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let Some(class) = class(layout) else {
            // SAFETY: forwarded as received.
            return unsafe { self.large.alloc(layout) };
        };
        // SAFETY: one thread, and no reentrancy: talc never calls back.
        let small = unsafe { &mut *self.small.get() };
        let head = small.free[class];
        if !head.is_null() {
            // SAFETY: a free block holds the next free block of its class.
            small.free[class] = unsafe { head.cast::<*mut u8>().read() };
            return head;
        }
        let size = (class + 1) * GRANULE;
        if (small.end as usize) - (small.next as usize) < size {
            // SAFETY: a valid, non-zero layout.
            let chunk = unsafe { self.large.alloc(Layout::from_size_align_unchecked(CHUNK, GRANULE)) };
            if chunk.is_null() {
                return chunk;
            }
            small.next = chunk;
            // SAFETY: within the chunk just allocated.
            small.end = unsafe { chunk.add(CHUNK) };
        }
        let block = small.next;
        // SAFETY: `size` bytes remain in the chunk.
        small.next = unsafe { block.add(size) };
        block
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        let Some(class) = class(layout) else {
            // SAFETY: allocated by talc with this layout.
            return unsafe { self.large.dealloc(block, layout) };
        };
        // SAFETY: as in `alloc`.
        let small = unsafe { &mut *self.small.get() };
        // SAFETY: the block is ours again, at least 16 bytes, 16-aligned.
        unsafe { block.cast::<*mut u8>().write(small.free[class]) };
        small.free[class] = block;
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `GlobalAlloc::realloc` guarantees a valid new layout.
        let new = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        match (class(layout), class(new)) {
            (Some(old), Some(grown)) if old == grown => block,
            // SAFETY: both talc's; talc may grow in place.
            (None, None) => unsafe { self.large.realloc(block, layout, new_size) },
            _ => {
                // SAFETY: a fresh block, then the old one's bytes, then free it.
                unsafe {
                    let moved = self.alloc(new);
                    if !moved.is_null() {
                        ptr::copy_nonoverlapping(block, moved, layout.size().min(new_size));
                        self.dealloc(block, layout);
                    }
                    moved
                }
            }
        }
    }
}

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

/// The plugin's global allocator: free lists in front of talc.
#[cfg(all(target_family = "wasm", feature = "fast-alloc"))]
pub type Allocator = FreeLists<talc::wasm::WasmDynamicTalc>;

/// Free lists for small blocks in front of a general allocator: talc in a
/// plugin; the system's in this module's tests, which run natively.
pub struct FreeLists<L> {
    large: L,
    small: UnsafeCell<Small>,
}

struct Small {
    /// Per class, the first free block; each free block holds the next.
    free: [*mut u8; CLASSES],
    /// The unused rest of the current chunk.
    next: *mut u8,
    end: *mut u8,
}

// SAFETY: a wasm plugin without the `atomics` feature has one thread. Not
// on other targets: there the free lists are only for one thread's tests.
#[cfg(target_family = "wasm")]
unsafe impl<L> Sync for FreeLists<L> {}

#[cfg(all(target_family = "wasm", feature = "fast-alloc"))]
impl Allocator {
    /// An allocator with no memory yet.
    pub const fn new() -> Allocator {
        FreeLists::with(talc::wasm::new_wasm_dynamic_allocator())
    }
}

impl<L> FreeLists<L> {
    /// Free lists with no memory yet, refilled from and backed by `large`.
    pub const fn with(large: L) -> FreeLists<L> {
        FreeLists { large, small: UnsafeCell::new(Small { free: [ptr::null_mut(); CLASSES], next: ptr::null_mut(), end: ptr::null_mut() }) }
    }
}

/// The class of a small layout, `None` for one that talc serves. The same
/// layout always gets the same answer, so a block is freed where it came
/// from.
fn class(layout: Layout) -> Option<usize> {
    (layout.size() <= MAX_SMALL && layout.align() <= GRANULE).then(|| layout.size().max(1).div_ceil(GRANULE) - 1)
}

unsafe impl<L: GlobalAlloc> GlobalAlloc for FreeLists<L> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let Some(class) = class(layout) else {
            // SAFETY: forwarded as received.
            return unsafe { self.large.alloc(layout) };
        };
        // SAFETY: one thread, and no reentrancy: talc (or `L`) never calls back.
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

#[cfg(test)]
mod tests {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    use super::{CHUNK, CLASSES, FreeLists, GRANULE, MAX_SMALL};

    /// The system allocator, counting what is asked of it: what talc would
    /// be asked in a plugin.
    #[derive(Default)]
    struct Counting {
        /// Blocks allocated and not yet freed.
        live: Cell<usize>,
        /// Sizes of every allocation, in order.
        sizes: Cell<Vec<usize>>,
    }

    impl Counting {
        fn sizes(&self) -> Vec<usize> {
            let sizes = self.sizes.take();
            self.sizes.set(sizes.clone());
            sizes
        }

        fn record(&self, size: usize) {
            let mut sizes = self.sizes.take();
            sizes.push(size);
            self.sizes.set(sizes);
        }
    }

    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            self.live.set(self.live.get() + 1);
            self.record(layout.size());
            // SAFETY: forwarded as received.
            unsafe { System.alloc(layout) }
        }

        unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
            self.live.set(self.live.get() - 1);
            // SAFETY: allocated by `System` with this layout.
            unsafe { System.dealloc(block, layout) }
        }

        unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            self.record(new_size);
            // SAFETY: forwarded as received.
            unsafe { System.realloc(block, layout, new_size) }
        }
    }

    fn lists() -> FreeLists<Counting> {
        FreeLists::with(Counting::default())
    }

    fn layout(size: usize, align: usize) -> Layout {
        Layout::from_size_align(size, align).expect("a valid layout")
    }

    /// Fills a block with a pattern derived from `seed`.
    fn fill(block: *mut u8, size: usize, seed: u8) {
        for i in 0..size {
            // SAFETY: the tests pass blocks of at least `size` bytes.
            unsafe { block.add(i).write(seed.wrapping_add(i as u8)) };
        }
    }

    /// Whether the first `size` bytes still hold `fill`'s pattern.
    fn holds(block: *const u8, size: usize, seed: u8) -> bool {
        // SAFETY: as in `fill`.
        (0..size).all(|i| unsafe { block.add(i).read() } == seed.wrapping_add(i as u8))
    }

    #[test]
    fn every_size_gets_a_block_of_its_own() {
        let lists = lists();
        // Every size up to the largest small block, all alive at once, each
        // filled: a block that overlapped another would spoil its pattern.
        let blocks: Vec<(*mut u8, usize)> = (1..=MAX_SMALL)
            .map(|size| {
                // SAFETY: a non-zero layout.
                let block = unsafe { lists.alloc(layout(size, 1)) };
                assert!(!block.is_null(), "size {size}");
                assert_eq!(block as usize % GRANULE, 0, "size {size} is 16-aligned");
                fill(block, size, size as u8);
                (block, size)
            })
            .collect();
        for &(block, size) in &blocks {
            assert!(holds(block, size, size as u8), "size {size} kept its bytes");
        }
        // All of it came from 64 KiB chunks: nothing else was asked of talc.
        let sizes = lists.large.sizes();
        assert!(sizes.iter().all(|&s| s == CHUNK), "{sizes:?}");
        // Blocks are rounded up to 16 bytes, and a chunk is used up to less
        // than a block from its end before the next is taken.
        let rounded: usize = (1..=MAX_SMALL).map(|s| s.div_ceil(GRANULE) * GRANULE).sum();
        let chunks = sizes.len();
        assert!(rounded <= chunks * CHUNK && rounded > (chunks - 1) * (CHUNK - MAX_SMALL), "{chunks} chunks for {rounded} bytes");
        for (block, size) in blocks {
            // SAFETY: allocated above with this layout.
            unsafe { lists.dealloc(block, layout(size, 1)) };
        }
        // Small blocks go back on their lists, not to talc.
        assert_eq!(lists.large.live.get(), sizes.len());
    }

    #[test]
    fn a_freed_block_serves_its_class_again() {
        let lists = lists();
        for class in 0..CLASSES {
            let (smallest, largest) = (class * GRANULE + 1, (class + 1) * GRANULE);
            // SAFETY: non-zero layouts, each freed with the layout it was allocated with.
            unsafe {
                let first = lists.alloc(layout(largest, 8));
                let second = lists.alloc(layout(smallest, 1));
                assert_ne!(first, second);
                lists.dealloc(first, layout(largest, 8));
                lists.dealloc(second, layout(smallest, 1));
                // Last freed, first served, whatever the size within the class.
                assert_eq!(lists.alloc(layout(largest, 16)), second, "class {class}");
                assert_eq!(lists.alloc(layout(smallest, 2)), first, "class {class}");
                // Neither serves the next class.
                if largest < MAX_SMALL {
                    lists.dealloc(first, layout(smallest, 2));
                    let next = lists.alloc(layout(largest + 1, 1));
                    assert_ne!(next, first, "class {class}");
                    assert_eq!(lists.alloc(layout(largest, 1)), first, "class {class}");
                }
            }
        }
    }

    #[test]
    fn chunks_are_refilled_when_used_up() {
        let lists = lists();
        // 1008-byte blocks: 65 fit in a chunk, and its last 16 bytes stay unused.
        let size = 1008;
        let per_chunk = CHUNK / size;
        let blocks: Vec<*mut u8> = (0..=per_chunk)
            .map(|_| {
                // SAFETY: a non-zero layout.
                unsafe { lists.alloc(layout(size, 16)) }
            })
            .collect();
        assert_eq!(lists.large.sizes(), [CHUNK, CHUNK]);
        let first = blocks[0] as usize;
        for (i, &block) in blocks[..per_chunk].iter().enumerate() {
            assert_eq!(block as usize, first + i * size, "block {i} follows the one before");
        }
        let last = blocks[per_chunk] as usize;
        assert!(last < first || last >= first + CHUNK, "the 66th block is in the second chunk");
    }

    #[test]
    fn alignment() {
        let lists = lists();
        for shift in 0..=16 {
            let align = 1usize << shift;
            for size in [1, 7, 16, 24, 100, MAX_SMALL, MAX_SMALL + 1, 5000] {
                let before = lists.large.sizes().len();
                // SAFETY: a valid, non-zero layout, freed with the same layout.
                unsafe {
                    let block = lists.alloc(layout(size, align));
                    assert!(!block.is_null());
                    assert_eq!(block as usize % align, 0, "size {size}, align {align}");
                    fill(block, size, 7);
                    assert!(holds(block, size, 7));
                    let asked = &lists.large.sizes()[before..];
                    if size <= MAX_SMALL && align <= GRANULE {
                        assert!(asked.iter().all(|&s| s == CHUNK), "size {size}, align {align} is small: {asked:?}");
                    } else {
                        assert_eq!(asked, [size], "size {size}, align {align} goes to talc");
                    }
                    lists.dealloc(block, layout(size, align));
                }
            }
        }
    }

    #[test]
    fn large_blocks_go_to_talc_and_back() {
        let lists = lists();
        for size in [MAX_SMALL + 1, 4096, CHUNK, 10 * 1024 * 1024] {
            // SAFETY: a non-zero layout, freed with the same layout.
            unsafe {
                let block = lists.alloc(layout(size, 8));
                assert_eq!(lists.large.live.get(), 1, "size {size}");
                fill(block, size, 3);
                assert!(holds(block, size, 3));
                lists.dealloc(block, layout(size, 8));
                assert_eq!(lists.large.live.get(), 0, "size {size} was given back");
            }
        }
    }

    #[test]
    fn realloc_keeps_the_contents() {
        let lists = lists();
        // Grow through every size class and into talc's blocks, then shrink
        // back: each step keeps the bytes both sizes have in common.
        let sizes = [1, 8, 16, 17, 40, 100, 512, 1000, 1024, 1025, 3000, 100_000, 70_000, 2000, 1024, 600, 33, 32, 5, 1];
        for align in [1, 8, 16, 64] {
            // SAFETY: a non-zero layout; every realloc passes the block's current layout.
            unsafe {
                let mut block = lists.alloc(layout(sizes[0], align));
                fill(block, sizes[0], 1);
                for pair in sizes.windows(2) {
                    let (old, new) = (pair[0], pair[1]);
                    let moved = lists.realloc(block, layout(old, align), new);
                    assert!(!moved.is_null());
                    assert_eq!(moved as usize % align, 0, "{old} -> {new}, align {align}");
                    assert!(holds(moved, old.min(new), 1), "{old} -> {new}, align {align} kept the bytes");
                    let same_class = |s: usize| (s <= MAX_SMALL && align <= GRANULE).then(|| s.div_ceil(GRANULE));
                    if same_class(old).is_some() && same_class(old) == same_class(new) {
                        assert_eq!(moved, block, "{old} -> {new} stays in place");
                    }
                    fill(moved, new, 1);
                    block = moved;
                }
                lists.dealloc(block, layout(1, align));
            }
        }
        // Small blocks moved to a larger class were freed onto their lists:
        // a fresh block of the first class is one of them, not new memory.
        let chunks = lists.large.sizes().iter().filter(|&&s| s == CHUNK).count();
        // SAFETY: a non-zero layout.
        let again = unsafe { lists.alloc(layout(8, 8)) };
        assert!(!again.is_null());
        assert_eq!(lists.large.sizes().iter().filter(|&&s| s == CHUNK).count(), chunks);
    }
}

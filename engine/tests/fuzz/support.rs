//! What every fuzz target shares: the case count, a counting allocator, and byte-level
//! mutations of valid encodings.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use proptest::prelude::*;
use proptest::test_runner::Config;

/// Cases per target: `TESSERA_FUZZ_CASES`, else `default` (sized so that every target of the
/// short run together stays well under a minute in a debug build on two cores).
pub fn config(default: u32) -> Config {
    let cases = std::env::var("TESSERA_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    Config {
        cases,
        // Failures are kept as explicit regression tests, not as files next to the sources.
        failure_persistence: None,
        max_shrink_iters: 4096,
        ..Config::default()
    }
}

/// Counts allocations made on the measuring thread while `measure` runs.
pub struct Counting;

thread_local! {
    static ACTIVE: Cell<bool> = const { Cell::new(false) };
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(grow: usize, shrink: usize) {
    let _ = ACTIVE.try_with(|a| {
        if !a.get() {
            return;
        }
        let live = LIVE.get() + grow as isize - shrink as isize;
        LIVE.set(live);
        PEAK.set(PEAK.get().max(live));
        LARGEST.set(LARGEST.get().max(grow));
    });
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            note(layout.size(), 0);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            note(layout.size(), 0);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        note(0, layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            note(new_size, layout.size());
        }
        p
    }
}

/// What a measured call allocated on its thread: the most bytes live at once (beyond what was
/// live when it started) and the largest single allocation.
#[derive(Debug, Clone, Copy)]
pub struct Usage {
    pub peak: usize,
    pub largest: usize,
}

/// Runs `f`, counting its allocations.
pub fn measure<T>(f: impl FnOnce() -> T) -> (T, Usage) {
    LIVE.set(0);
    PEAK.set(0);
    LARGEST.set(0);
    ACTIVE.set(true);
    let out = f();
    ACTIVE.set(false);
    let usage = Usage {
        peak: PEAK.get().max(0) as usize,
        largest: LARGEST.get(),
    };
    (out, usage)
}

/// Asserts that a measured call stayed within `bound` bytes (peak live and single allocation).
#[track_caller]
pub fn within(u: Usage, bound: usize, what: &str) {
    assert!(
        u.peak <= bound && u.largest <= bound,
        "{what}: allocated {u:?}, bound {bound}"
    );
}

/// One byte-level change to a valid encoding.
#[derive(Debug, Clone)]
pub enum Edit {
    /// XOR a byte.
    Flip(usize, u8),
    /// Overwrite a (4-aligned) little-endian u32, often with an edge value.
    Word(usize, u32),
    /// Cut the tail.
    Cut(usize),
    /// Remove a range.
    Drop(usize, usize),
    /// Insert bytes.
    Insert(usize, Vec<u8>),
    /// Duplicate a range in place.
    Repeat(usize, usize),
}

/// u32 values at the edges of what headers hold.
pub fn edge_u32() -> impl Strategy<Value = u32> {
    prop_oneof![
        3 => prop::sample::select(vec![
            0u32, 1, 2, 3, 7, 8, 9, 15, 16, 31, 32, 33, 63, 64, 255, 256, 511, 512, 513, 1 << 16,
            (1 << 16) - 1, 1 << 20, 1 << 24, 1 << 30, i32::MAX as u32, 1 << 31, u32::MAX - 1,
            u32::MAX,
        ]),
        1 => any::<u32>(),
    ]
}

/// A position biased towards the start, where headers are.
fn position() -> impl Strategy<Value = usize> {
    prop_oneof![2 => 0usize..64, 1 => any::<usize>()]
}

pub fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        4 => (position(), 1u8..=255).prop_map(|(at, m)| Edit::Flip(at, m)),
        4 => (position(), edge_u32()).prop_map(|(at, v)| Edit::Word(at, v)),
        1 => any::<usize>().prop_map(Edit::Cut),
        1 => (any::<usize>(), 0usize..64).prop_map(|(at, n)| Edit::Drop(at, n)),
        1 => (any::<usize>(), prop::collection::vec(any::<u8>(), 1..32))
            .prop_map(|(at, b)| Edit::Insert(at, b)),
        1 => (any::<usize>(), 1usize..128).prop_map(|(at, n)| Edit::Repeat(at, n)),
    ]
}

/// Up to `n` edits.
pub fn edits(n: usize) -> impl Strategy<Value = Vec<Edit>> {
    prop::collection::vec(edit(), 1..=n)
}

/// `seed` with `edits` applied in order (positions taken modulo the current length).
pub fn apply(seed: &[u8], edits: &[Edit]) -> Vec<u8> {
    let mut b = seed.to_vec();
    for e in edits {
        let len = b.len();
        match e {
            Edit::Flip(at, m) if len > 0 => b[at % len] ^= m,
            Edit::Word(at, v) if len >= 4 => {
                let at = (at % (len - 3)) & !3;
                b[at..at + 4].copy_from_slice(&v.to_le_bytes());
            }
            Edit::Cut(at) => b.truncate(at % (len + 1)),
            Edit::Drop(at, n) if len > 0 => {
                let at = at % len;
                b.drain(at..(at + n).min(len));
            }
            Edit::Insert(at, bytes) => {
                let at = at % (len + 1);
                b.splice(at..at, bytes.iter().copied());
            }
            Edit::Repeat(at, n) if len > 0 => {
                let at = at % len;
                let piece = b[at..(at + n).min(len)].to_vec();
                b.splice(at..at, piece);
            }
            _ => {}
        }
    }
    b
}

/// Arbitrary bytes up to `max` long.
pub fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..max)
}

/// Real labels: the pinky40 crops of `engine/tests/data` (from the shared 512³ cutout), each a
/// (side, voxels) cube.
pub fn real_cubes() -> Vec<(usize, Vec<u64>)> {
    use std::io::Read;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let mut out = Vec::new();
    for name in [
        "pinky40-0-0-0-64.u64.gz",
        "pinky40-200-300-100-64.u64.gz",
        "pinky40-448-448-448-64.u64.gz",
    ] {
        let mut raw = Vec::new();
        flate2::read::GzDecoder::new(std::fs::File::open(dir.join(name)).unwrap())
            .read_to_end(&mut raw)
            .unwrap();
        let v: Vec<u64> = raw
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(v.len(), 64 * 64 * 64, "{name}");
        out.push((64, v));
    }
    out
}

/// The `n`³ crop at `at` of a 64³ cube.
pub fn crop(cube: &[u64], at: [usize; 3], n: usize) -> Vec<u64> {
    let mut out = Vec::with_capacity(n * n * n);
    for z in at[2]..at[2] + n {
        for y in at[1]..at[1] + n {
            let row = (z * 64 + y) * 64;
            out.extend_from_slice(&cube[row + at[0]..row + at[0] + n]);
        }
    }
    out
}

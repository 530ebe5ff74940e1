//! Property-based fuzzing of every parser that takes bytes from the network (issue 21).
//!
//! Each target checks that a parser never panics on arbitrary bytes, on hostile headers and on
//! byte-level mutations of valid encodings (seeded from the real pinky40 crops in
//! `tests/data`); that whatever parses re-encodes to something that parses the same; and that
//! a parse allocates no more than a bound derived from its input or its declared output,
//! measured by the counting allocator below.
//!
//! Cases per target: `TESSERA_FUZZ_CASES` (default: a short run of a few hundred).

mod support;

#[global_allocator]
static ALLOC: support::Counting = support::Counting;

mod codec;
mod cseg;
mod json;
mod labelmap;
mod stored;
mod tar;
mod transfer;
mod url;

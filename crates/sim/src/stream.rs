//! Generated DMA streams: which page each of a stream's requests touches.
//!
//! A stream is `count` requests over `pages` 4K pages. The page sequence depends only on the
//! stream's shape and seed, so a scenario replays the same requests on every run and on every
//! architecture:
//!
//! | kind | request `i` touches page |
//! |---|---|
//! | `sequential` | `i mod pages` |
//! | `strided` | `(i * stride) mod pages` |
//! | `uniform` | uniformly random over `0..pages` |
//! | `zipf` | page `k` with probability proportional to `1 / (k + 1)^exponent` (page 0 the most popular) |
//!
//! Random draws come from ChaCha8 (`rand_chacha`, whose output is fixed for a given seed on
//! every platform), seeded with the stream's 64-bit seed in little-endian order followed by
//! zero bytes. A uniform page is the first 64-bit draw `x` at or above `2^64 mod pages`, taken
//! modulo `pages` (rejection sampling, so no page is favoured). A zipf page is found by inverse
//! CDF: a 53-bit draw scaled to `[0, total weight)`, then the first page whose cumulative
//! weight exceeds it (binary search over the `pages` cumulative weights, summed in page order).

use rand_chacha::rand_core::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::scenario::{ScenarioError, Source, Stream};

/// Most pages a stream may cover: 4 GiB of input addresses, and a zipf table of 8 MiB.
pub const MAX_PAGES: u64 = 1 << 20;
/// Most requests a stream may send.
pub const MAX_COUNT: u64 = 1 << 22;
/// A page.
pub const PAGE_BYTES: u64 = 0x1000;
/// Largest zipf exponent.
pub const MAX_EXPONENT: f64 = 16.0;

/// How a stream chooses its pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StreamKind {
    /// Page 0, 1, 2, ... wrapping at `pages`.
    Sequential,
    /// Every `stride`-th page, wrapping at `pages`.
    Strided,
    /// Uniformly random pages.
    Uniform,
    /// Zipf-distributed pages: a few hot pages and a long tail.
    Zipf,
}

impl std::fmt::Display for StreamKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Sequential => "sequential",
            Self::Strided => "strided",
            Self::Uniform => "uniform",
            Self::Zipf => "zipf",
        })
    }
}

/// A checked stream shape: what decides its page sequence.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Shape {
    /// How pages are chosen.
    pub kind: StreamKind,
    /// Pages covered (1 to [`MAX_PAGES`]).
    pub pages: u64,
    /// Requests (up to [`MAX_COUNT`]).
    pub count: u64,
    /// The random kinds' seed.
    pub seed: u64,
    /// The strided kind's step, in pages.
    pub stride: u64,
    /// The zipf kind's exponent (finite, above 0).
    pub exponent: f64,
}

/// The page indices of a stream, in order.
#[derive(Clone, Debug)]
pub struct Pages {
    shape: Shape,
    next: u64,
    rng: ChaCha8Rng,
    /// Zipf only: cumulative weights, one per page.
    cdf: Vec<f64>,
}

impl Pages {
    /// The page sequence of `shape`. Pages and count are clamped to their maxima, so a shape
    /// that skipped the scenario's checks stays bounded.
    pub fn new(shape: Shape) -> Self {
        let shape = Shape {
            pages: shape.pages.clamp(1, MAX_PAGES),
            count: shape.count.min(MAX_COUNT),
            ..shape
        };
        let mut seed = [0u8; 32];
        if let Some(head) = seed.get_mut(..8) {
            head.copy_from_slice(&shape.seed.to_le_bytes());
        }
        let cdf = if shape.kind == StreamKind::Zipf {
            let mut total = 0.0;
            (1..=shape.pages)
                .map(|rank| {
                    total += (rank as f64).powf(-shape.exponent);
                    total
                })
                .collect()
        } else {
            Vec::new()
        };
        Self { shape, next: 0, rng: ChaCha8Rng::from_seed(seed), cdf }
    }

    /// A uniform draw from `0..n` (`n > 0`), by rejection.
    fn below(&mut self, n: u64) -> u64 {
        // The values at or above `2^64 mod n` are a whole number of runs of `n`.
        let floor = (u64::MAX % n).wrapping_add(1) % n;
        loop {
            let x = self.rng.next_u64();
            if x >= floor {
                return x % n;
            }
        }
    }

    fn zipf(&mut self) -> u64 {
        let total = self.cdf.last().copied().unwrap_or(0.0);
        // 53 random bits: a uniform f64 in [0, 1).
        let u = (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * total;
        let k = self.cdf.partition_point(|&c| c <= u);
        (k as u64).min(self.shape.pages - 1)
    }
}

impl Iterator for Pages {
    type Item = u64;

    fn next(&mut self) -> Option<u64> {
        if self.next >= self.shape.count {
            return None;
        }
        let i = self.next;
        self.next += 1;
        let n = self.shape.pages;
        Some(match self.shape.kind {
            StreamKind::Sequential => i % n,
            // (i * stride) mod n without overflow: both reduced first, product in u128.
            StreamKind::Strided => {
                let p = u128::from(i % n) * u128::from(self.shape.stride % n) % u128::from(n);
                u64::try_from(p).unwrap_or(0)
            }
            StreamKind::Uniform => self.below(n),
            StreamKind::Zipf => self.zipf(),
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = usize::try_from(self.shape.count - self.next).unwrap_or(usize::MAX);
        (left, Some(left))
    }
}

/// Checks a scenario's stream field by field: its shape, or an error at the field.
pub fn check(source: &Source, s: &Stream) -> Result<Shape, ScenarioError> {
    let err = |span: std::ops::Range<usize>, field: &str, message: String| {
        source.error(span, &format!("step.stream.{field}"), message)
    };
    let kind = *s.kind.get_ref();
    let pages = *s.pages.get_ref();
    if !(1..=MAX_PAGES).contains(&pages) {
        return Err(err(
            s.pages.span(),
            "pages",
            format!("expected 1 to {MAX_PAGES} pages, got {pages}"),
        ));
    }
    let count = *s.count.get_ref();
    if !(1..=MAX_COUNT).contains(&count) {
        return Err(err(
            s.count.span(),
            "count",
            format!("expected 1 to {MAX_COUNT} requests, got {count}"),
        ));
    }
    let base = *s.base.get_ref();
    if base % PAGE_BYTES != 0 {
        return Err(err(
            s.base.span(),
            "base",
            format!("expected a 4K-aligned address, got {base:#x}"),
        ));
    }
    if pages.checked_mul(PAGE_BYTES).and_then(|b| b.checked_add(base)).is_none() {
        return Err(err(
            s.base.span(),
            "base",
            format!("{pages} pages from {base:#x} pass the end of the address space"),
        ));
    }
    let random = matches!(kind, StreamKind::Uniform | StreamKind::Zipf);
    let seed = match (&s.seed, random) {
        (Some(seed), true) => *seed.get_ref(),
        (None, true) => {
            return Err(err(
                s.kind.span(),
                "seed",
                format!("a {kind} stream needs a `seed`, so it is the same on every run"),
            ));
        }
        (Some(seed), false) => {
            return Err(err(
                seed.span(),
                "seed",
                format!(
                    "a {kind} stream is not random: remove `seed`, or choose `uniform` or `zipf`"
                ),
            ));
        }
        (None, false) => 0,
    };
    let stride = match (&s.stride, kind) {
        (Some(st), StreamKind::Strided) if *st.get_ref() >= 1 => *st.get_ref(),
        (Some(st), StreamKind::Strided) => {
            return Err(err(
                st.span(),
                "stride",
                "expected a stride of at least 1 page".to_owned(),
            ));
        }
        (None, StreamKind::Strided) => {
            return Err(err(
                s.kind.span(),
                "stride",
                "a strided stream needs a `stride` in pages".to_owned(),
            ));
        }
        (Some(st), _) => {
            return Err(err(
                st.span(),
                "stride",
                format!("`stride` is for `kind = \"strided\"`, not {kind}"),
            ));
        }
        (None, _) => 1,
    };
    let exponent = match (&s.exponent, kind) {
        (Some(e), StreamKind::Zipf) => {
            let v = *e.get_ref();
            if !(v > 0.0 && v <= MAX_EXPONENT) {
                return Err(err(
                    e.span(),
                    "exponent",
                    format!("expected an exponent above 0 and at most {MAX_EXPONENT}, got {v}"),
                ));
            }
            v
        }
        (Some(e), _) => {
            return Err(err(
                e.span(),
                "exponent",
                format!("`exponent` is for `kind = \"zipf\"`, not {kind}"),
            ));
        }
        (None, _) => 1.0,
    };
    Ok(Shape { kind, pages, count, seed, stride, exponent })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(kind: StreamKind, seed: u64) -> Shape {
        Shape { kind, pages: 64, count: 1000, seed, stride: 3, exponent: 1.1 }
    }

    #[test]
    fn deterministic_kinds_follow_their_formula() {
        let seq: Vec<u64> =
            Pages::new(Shape { count: 5, pages: 3, ..shape(StreamKind::Sequential, 0) }).collect();
        assert_eq!(seq, [0, 1, 2, 0, 1]);
        let strided: Vec<u64> =
            Pages::new(Shape { count: 5, pages: 8, ..shape(StreamKind::Strided, 0) }).collect();
        assert_eq!(strided, [0, 3, 6, 1, 4]);
    }

    #[test]
    fn random_pages_stay_in_range_and_zipf_favours_the_first() {
        let uniform: Vec<u64> = Pages::new(shape(StreamKind::Uniform, 1)).collect();
        assert!(uniform.iter().all(|&p| p < 64));
        let zipf: Vec<u64> = Pages::new(shape(StreamKind::Zipf, 1)).collect();
        assert!(zipf.iter().all(|&p| p < 64));
        let count = |p| zipf.iter().filter(|&&x| x == p).count();
        assert!(
            count(0) > count(1) && count(1) > count(63),
            "{} {} {}",
            count(0),
            count(1),
            count(63)
        );
    }

    #[test]
    fn one_page_is_always_page_zero() {
        for kind in
            [StreamKind::Sequential, StreamKind::Strided, StreamKind::Uniform, StreamKind::Zipf]
        {
            let pages: Vec<u64> = Pages::new(Shape { pages: 1, ..shape(kind, 9) }).collect();
            assert!(pages.iter().all(|&p| p == 0), "{kind}");
        }
    }
}

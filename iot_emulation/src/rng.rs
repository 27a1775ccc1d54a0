//! Seeded random streams: one independent, reproducible generator per (seed, purpose, index), so
//! adding a function to a scenario does not change the draws of the others.

use rand::SeedableRng;
use rand::rngs::StdRng;

/// What a stream is used for; each purpose gets its own sequence of draws.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Request arrival times of one function.
    Arrivals = 1,
    /// The latency class drawn for one function.
    LatencyClass = 2,
    /// Execution times (spin durations) of one function's requests.
    ExecTime = 3,
    /// Payload contents (text words, image pixels, binary bytes) of one function.
    Payload = 4,
}

/// SplitMix64's finaliser: a cheap, well-mixing bijection on `u64`.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The generator for `stream` of item `index` (e.g. the function's position) under `seed`.
pub fn stream(seed: u64, stream: Stream, index: u64) -> StdRng {
    StdRng::seed_from_u64(mix(seed ^ mix(((stream as u64) << 48) ^ index)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    #[test]
    fn the_same_seed_stream_and_index_give_the_same_draws() {
        let a: Vec<u64> = (0..5)
            .map(|_| 0)
            .scan(stream(7, Stream::Arrivals, 3), |r, _| Some(r.random()))
            .collect();
        let b: Vec<u64> = (0..5)
            .map(|_| 0)
            .scan(stream(7, Stream::Arrivals, 3), |r, _| Some(r.random()))
            .collect();
        assert_eq!(a, b);
    }

    #[test]
    fn different_indices_or_purposes_give_different_draws() {
        let first = |s, i| stream(7, s, i).random::<u64>();
        assert_ne!(first(Stream::Arrivals, 0), first(Stream::Arrivals, 1));
        assert_ne!(first(Stream::Arrivals, 0), first(Stream::ExecTime, 0));
        assert_ne!(
            stream(7, Stream::Arrivals, 0).random::<u64>(),
            stream(8, Stream::Arrivals, 0).random::<u64>()
        );
    }
}

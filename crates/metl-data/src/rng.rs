//! Seeded random number generation.
//!
//! All sampling in metl draws from [`Rng`] (ChaCha8): portable, fast, and the same stream
//! for the same seed on every platform, independent of thread count and device.

use rand::SeedableRng;

/// The random number generator used for all sampling.
pub type Rng = rand_chacha::ChaCha8Rng;

/// A generator for `seed`.
pub fn seeded(seed: u64) -> Rng {
    Rng::seed_from_u64(seed)
}

/// An independent generator for sub-stream `stream` of `seed` (e.g. one per worker or
/// per split), so that adding a consumer never shifts another consumer's samples.
pub fn substream(seed: u64, stream: u64) -> Rng {
    let mut rng = Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng
}

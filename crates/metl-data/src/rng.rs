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

/// The number of words in [`to_words`]: the seed (4), the stream (1) and the word
/// position (2, low word first).
pub const RNG_WORDS: usize = 7;

/// The whole state of `rng` as words, for checkpoints: [`from_words`] gives back a
/// generator that continues exactly where `rng` is.
pub fn to_words(rng: &Rng) -> [u64; RNG_WORDS] {
    let seed = rng.get_seed();
    let mut words = [0; RNG_WORDS];
    for (w, chunk) in words.iter_mut().zip(seed.chunks_exact(8)) {
        *w = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
    }
    let pos = rng.get_word_pos();
    words[4] = rng.get_stream();
    words[5] = pos as u64;
    words[6] = (pos >> 64) as u64;
    words
}

/// The generator whose state [`to_words`] gave `words`.
pub fn from_words(words: &[u64; RNG_WORDS]) -> Rng {
    let mut seed = [0u8; 32];
    for (chunk, w) in seed.chunks_exact_mut(8).zip(&words[..4]) {
        chunk.copy_from_slice(&w.to_le_bytes());
    }
    let mut rng = Rng::from_seed(seed);
    rng.set_stream(words[4]);
    rng.set_word_pos(u128::from(words[5]) | (u128::from(words[6]) << 64));
    rng
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::RngCore;

    #[test]
    fn words_restore_a_generator_mid_block() {
        let mut rng = substream(11, 5);
        // An odd number of 32-bit draws leaves the generator inside a block and a word.
        for _ in 0..37 {
            rng.next_u32();
        }
        let mut restored = from_words(&to_words(&rng));
        let expected: Vec<u64> = (0..100).map(|_| rng.next_u64()).collect();
        let got: Vec<u64> = (0..100).map(|_| restored.next_u64()).collect();
        assert_eq!(got, expected);
        assert_eq!(to_words(&restored), to_words(&rng));
    }
}

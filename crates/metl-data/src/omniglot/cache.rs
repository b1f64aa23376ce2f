//! The on-disk cache of decoded Omniglot images.
//!
//! Decoding and resizing 32,460 PNGs takes seconds; reading back 25 MB of decoded bytes
//! takes milliseconds. The cache file is named after a hash of its *key* — the format
//! version, the image size and filter, and the size and modification time of each source
//! (zip file, or the files of an extracted folder) — and stores the full key, so a changed
//! source, size or filter never reads a stale file. Files are written to a temporary name
//! and renamed, so concurrent loaders never see half a file; a file that fails its
//! checksum is ignored and rewritten.

use crate::{
    error::{DataError, Result},
    image::{ImageStore, StoredClass},
};
use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
};

const MAGIC: &[u8; 8] = b"METLOMNI";
const VERSION: u32 = 1;

/// The default cache folder: `$XDG_CACHE_HOME/metl`, else `$HOME/.cache/metl`.
pub fn default_cache_dir() -> Option<PathBuf> {
    let non_empty = |v: std::ffi::OsString| (!v.is_empty()).then(|| PathBuf::from(v));
    std::env::var_os("XDG_CACHE_HOME")
        .and_then(non_empty)
        .map(|d| d.join("metl"))
        .or_else(|| std::env::var_os("HOME").and_then(non_empty).map(|h| h.join(".cache").join("metl")))
}

/// FNV-1a, 64 bits: the file name hash and the checksum.
fn fnv1a(bytes: &[u8], mut hash: u64) -> u64 {
    for &b in bytes {
        hash ^= b as u64;
        hash = hash.wrapping_mul(0x100_0000_01b3);
    }
    hash
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// The cache file for `key` in `dir`.
pub fn cache_path(dir: &Path, key: &str) -> PathBuf {
    dir.join(format!("omniglot-{:016x}.bin", fnv1a(key.as_bytes(), FNV_OFFSET)))
}

/// What the cache holds besides the images: the set (0 background, 1 evaluation) of each
/// alphabet.
pub(crate) struct Cached {
    pub store: ImageStore,
    pub alphabet_sets: Vec<u8>,
}

/// Reads `path` if it exists, holds `key` and is intact; `None` otherwise.
pub(crate) fn read(path: &Path, key: &str) -> Option<Cached> {
    let bytes = fs::read(path).ok()?;
    parse(&bytes, key)
}

fn parse(bytes: &[u8], key: &str) -> Option<Cached> {
    let (body, sum) = bytes.split_at(bytes.len().checked_sub(8)?);
    if fnv1a(body, FNV_OFFSET) != u64::from_le_bytes(sum.try_into().ok()?) {
        return None;
    }
    let mut r = Reader { bytes: body };
    if r.take(8)? != MAGIC || r.u32()? != VERSION || r.string()? != key {
        return None;
    }
    let shape = [r.u32()? as usize, r.u32()? as usize, r.u32()? as usize];
    let n_groups = r.u32()? as usize;
    let mut groups = Vec::with_capacity(n_groups.min(1 << 16));
    let mut alphabet_sets = Vec::with_capacity(n_groups.min(1 << 16));
    for _ in 0..n_groups {
        groups.push(r.string()?);
        alphabet_sets.push(r.take(1)?[0]);
    }
    let n_classes = r.u32()? as usize;
    let mut classes = Vec::with_capacity(n_classes.min(1 << 20));
    for _ in 0..n_classes {
        let (group, first, len) = (r.u32()? as usize, r.u32()? as usize, r.u32()? as usize);
        classes.push(StoredClass { name: r.string()?, group, first, len });
    }
    let n_pixels = r.u64()? as usize;
    let pixels = r.take(n_pixels)?.to_vec();
    if !r.bytes.is_empty() {
        return None;
    }
    let store = ImageStore::new(shape, pixels, classes, groups).ok()?;
    Some(Cached { store, alphabet_sets })
}

/// Writes the cache file atomically (temporary file, then rename).
pub(crate) fn write(path: &Path, key: &str, store: &ImageStore, alphabet_sets: &[u8]) -> Result<()> {
    let mut out = Vec::with_capacity(store.pixels().len() + 256 * 1024);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    put_string(&mut out, key);
    let shape = crate::image::ClassImages::image_shape(store);
    shape.iter().for_each(|d| out.extend_from_slice(&(*d as u32).to_le_bytes()));
    out.extend_from_slice(&(store.groups().len() as u32).to_le_bytes());
    for (name, set) in store.groups().iter().zip(alphabet_sets) {
        put_string(&mut out, name);
        out.push(*set);
    }
    out.extend_from_slice(&(store.classes().len() as u32).to_le_bytes());
    for class in store.classes() {
        for v in [class.group, class.first, class.len] {
            out.extend_from_slice(&(v as u32).to_le_bytes());
        }
        put_string(&mut out, &class.name);
    }
    out.extend_from_slice(&(store.pixels().len() as u64).to_le_bytes());
    out.extend_from_slice(store.pixels());
    let sum = fnv1a(&out, FNV_OFFSET);
    out.extend_from_slice(&sum.to_le_bytes());

    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let written = fs::File::create(&tmp).and_then(|mut f| f.write_all(&out).and_then(|()| f.sync_all()));
    if let Err(e) = written.and_then(|()| fs::rename(&tmp, path)) {
        let _ = fs::remove_file(&tmp);
        return Err(DataError::io(path, e));
    }
    Ok(())
}

fn put_string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.bytes.len() {
            return None;
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Some(head)
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    fn string(&mut self) -> Option<String> {
        let n = self.u32()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> ImageStore {
        let classes = vec![
            StoredClass { name: "A/c1".into(), group: 0, first: 0, len: 2 },
            StoredClass { name: "B/c1".into(), group: 1, first: 2, len: 1 },
        ];
        ImageStore::new([1, 2, 2], (0..12).collect(), classes, vec!["A".into(), "B".into()]).unwrap()
    }

    #[test]
    fn round_trip_and_rejections() {
        let dir = std::env::temp_dir().join(format!("metl-cache-test-{}", std::process::id()));
        let path = cache_path(&dir, "key");
        write(&path, "key", &store(), &[0, 1]).unwrap();
        let cached = read(&path, "key").unwrap();
        assert_eq!(cached.store, store());
        assert_eq!(cached.alphabet_sets, [0, 1]);
        // Another key, a flipped byte, a truncated file: all ignored.
        assert!(read(&path, "other").is_none());
        let mut bytes = fs::read(&path).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 1;
        assert!(parse(&bytes, "key").is_none());
        bytes[mid] ^= 1;
        assert!(parse(&bytes, "key").is_some());
        assert!(parse(&bytes[..bytes.len() - 3], "key").is_none());
        assert!(parse(&[], "key").is_none());
        assert_ne!(cache_path(&dir, "a"), cache_path(&dir, "b"));
        fs::remove_dir_all(&dir).unwrap();
    }
}

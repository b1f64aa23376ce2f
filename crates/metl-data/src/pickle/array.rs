//! [`NdArray`] and [`Dtype`]: numpy arrays of numbers as found in a pickle.

use std::borrow::Cow;

/// A numpy dtype of numbers: kind, item size and byte order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dtype {
    /// numpy's kind character: `b'u'` (unsigned), `b'i'` (signed), `b'f'` (float),
    /// `b'b'` (bool).
    pub kind: u8,
    /// Bytes per item.
    pub itemsize: usize,
    /// Big-endian items (`>`); little-endian and single bytes otherwise.
    pub big_endian: bool,
}

impl Dtype {
    /// Parses numpy's dtype strings (`u1`, `uint8`, `<i8`, `int64`, `f4`, `bool`, ...).
    pub fn parse(name: &str) -> Option<Dtype> {
        let (big_endian, rest) = match name.as_bytes().first()? {
            b'>' | b'!' => (true, &name[1..]),
            b'<' | b'=' | b'|' => (false, &name[1..]),
            _ => (false, name),
        };
        let (kind, itemsize) = match rest {
            "bool" | "b1" | "?" => (b'b', 1),
            "uint8" | "u1" | "B" => (b'u', 1),
            "int8" | "i1" | "b" => (b'i', 1),
            "uint16" | "u2" => (b'u', 2),
            "int16" | "i2" => (b'i', 2),
            "uint32" | "u4" => (b'u', 4),
            "int32" | "i4" => (b'i', 4),
            "uint64" | "u8" => (b'u', 8),
            "int64" | "i8" => (b'i', 8),
            "float32" | "f4" => (b'f', 4),
            "float64" | "f8" => (b'f', 8),
            _ => return None,
        };
        Some(Dtype { kind, itemsize, big_endian })
    }

    /// Item `i` of `bytes` as an integer (`None` for floats).
    fn int_at(&self, bytes: &[u8], i: usize) -> Option<i64> {
        let n = self.itemsize;
        let raw = &bytes[i * n..(i + 1) * n];
        let mut word = [0u8; 8];
        if self.big_endian {
            word[8 - n..].copy_from_slice(raw);
            word[..8 - n]
                .iter_mut()
                .for_each(|b| *b = if self.kind == b'i' && raw[0] >= 0x80 { 0xff } else { 0 });
            Some(i64::from_be_bytes(word)).filter(|_| self.kind != b'f')
        } else {
            word[..n].copy_from_slice(raw);
            let negative = self.kind == b'i' && raw[n - 1] >= 0x80;
            word[n..].iter_mut().for_each(|b| *b = if negative { 0xff } else { 0 });
            Some(i64::from_le_bytes(word)).filter(|_| self.kind != b'f')
        }
    }
}

/// A numpy array: shape, dtype, memory order and its bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct NdArray<'a> {
    /// The dimensions.
    pub shape: Vec<usize>,
    /// The item type.
    pub dtype: Dtype,
    /// Column-major (`F`) rather than row-major (`C`) items.
    pub fortran_order: bool,
    /// The raw items, `shape.product() × dtype.itemsize` bytes.
    pub data: Cow<'a, [u8]>,
}

impl NdArray<'_> {
    /// The number of items.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether the array has no item.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The items as integers, in memory order, for integer and bool arrays; `None` for
    /// floats, and for integers above `i64::MAX` (`u8` items).
    pub fn to_ints(&self) -> Option<Vec<i64>> {
        if self.dtype.kind == b'f' {
            return None;
        }
        let values: Option<Vec<i64>> = (0..self.len()).map(|i| self.dtype.int_at(&self.data, i)).collect();
        let values = values?;
        if self.dtype.kind == b'u' && self.dtype.itemsize == 8 && values.iter().any(|&v| v < 0) {
            return None;
        }
        Some(values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dtypes_and_integers_of_every_width_and_order() {
        assert_eq!(Dtype::parse("u1"), Some(Dtype { kind: b'u', itemsize: 1, big_endian: false }));
        assert_eq!(Dtype::parse(">i4"), Some(Dtype { kind: b'i', itemsize: 4, big_endian: true }));
        assert_eq!(Dtype::parse("O8"), None);
        let array = |dtype: &str, data: Vec<u8>| NdArray {
            shape: vec![2],
            dtype: Dtype::parse(dtype).unwrap(),
            fortran_order: false,
            data: Cow::Owned(data),
        };
        assert_eq!(array("<i2", vec![0xfe, 0xff, 3, 0]).to_ints(), Some(vec![-2, 3]));
        assert_eq!(array(">i2", vec![0xff, 0xfe, 0, 3]).to_ints(), Some(vec![-2, 3]));
        assert_eq!(array("u2", vec![0xfe, 0xff, 3, 0]).to_ints(), Some(vec![65534, 3]));
        assert_eq!(array("i1", vec![0x80, 7]).to_ints(), Some(vec![-128, 7]));
        assert_eq!(array("f4", vec![0; 8]).to_ints(), None);
        let big = array("u8", [u64::MAX.to_le_bytes(), 1u64.to_le_bytes()].concat());
        assert_eq!(big.to_ints(), None);
    }
}

//! NumPy's `.npy` files (format versions 1.0–3.0): the magic string `\x93NUMPY`, the version,
//! the header length (`u16` in 1.0, `u32` after, little-endian), a header that is a Python
//! dict literal — `{'descr': '<f4', 'fortran_order': False, 'shape': (288, 384, 3), }` —
//! padded with spaces and a newline, then the array's bytes in C order.
//!
//! [`read_npy`] checks that the file holds exactly the bytes the header announces before
//! anything is copied (tch's own reader trusts the header), so a truncated file is an
//! error naming it. Little-endian and byte-sized dtypes are read: `f2`, `f4`, `f8`, `i1`,
//! `i2`, `i4`, `i8`, `u1`, `b1`.

use crate::error::{DataError, Result};
use std::path::Path;
use tch::{Kind, Tensor};

const MAGIC: &[u8] = b"\x93NUMPY";

/// The value of `key` in the header dict (the text after `'key':`, up to the next top-level
/// comma).
fn field<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let start = header.find(&format!("'{key}'"))? + key.len() + 2;
    let rest = header[start..].trim_start().strip_prefix(':')?.trim_start();
    let end = if rest.starts_with('(') { rest.find(')')? + 1 } else { rest.find([',', '}'])? };
    Some(rest[..end].trim())
}

fn kind_of(descr: &str) -> Option<Kind> {
    let (order, code) = descr.split_at(1);
    if !matches!(order, "<" | "|" | "=") {
        return None;
    }
    Some(match code {
        "f2" => Kind::Half,
        "f4" => Kind::Float,
        "f8" => Kind::Double,
        "i1" => Kind::Int8,
        "i2" => Kind::Int16,
        "i4" => Kind::Int,
        "i8" => Kind::Int64,
        "u1" => Kind::Uint8,
        "b1" => Kind::Bool,
        _ => return None,
    })
}

/// Parses `bytes` of a `.npy` file; `path` names it in errors.
pub fn parse_npy(bytes: &[u8], path: &Path) -> Result<Tensor> {
    let bad = |reason: String| DataError::layout(path, format!("not a .npy array: {reason}"));
    if !bytes.starts_with(MAGIC) || bytes.len() < 10 {
        return Err(bad("no \\x93NUMPY magic string".into()));
    }
    let (len_bytes, start) = match bytes[6] {
        1 => (2, 10),
        2 | 3 => (4, 12),
        v => return Err(bad(format!("format version {v}"))),
    };
    let header_len = bytes[8..8 + len_bytes].iter().rev().fold(0usize, |acc, &b| acc * 256 + b as usize);
    let header = bytes.get(start..start + header_len).ok_or_else(|| bad("truncated header".into()))?;
    let header = std::str::from_utf8(header).map_err(|_| bad("header is not text".into()))?;
    let descr = field(header, "descr").ok_or_else(|| bad(format!("no descr in {header:?}")))?;
    let descr = descr.trim_matches('\'');
    let kind = kind_of(descr).ok_or_else(|| bad(format!("dtype {descr:?} (little-endian numbers only)")))?;
    if field(header, "fortran_order") != Some("False") {
        return Err(bad("Fortran order (expected C order)".into()));
    }
    let shape = field(header, "shape").ok_or_else(|| bad(format!("no shape in {header:?}")))?;
    let shape: Vec<i64> = shape
        .trim_matches(|c| c == '(' || c == ')')
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|d| d.parse::<i64>().map_err(|_| bad(format!("shape {shape}"))))
        .collect::<Result<_>>()?;
    let data = &bytes[start + header_len..];
    let want = shape.iter().product::<i64>() as usize * kind.elt_size_in_bytes();
    if data.len() != want {
        return Err(bad(format!(
            "the header announces {shape:?} {descr} ({want} bytes), the file holds {}",
            data.len()
        )));
    }
    Ok(Tensor::f_from_data_size(data, &shape, kind)?)
}

/// Reads a `.npy` file (see the module docs).
pub fn read_npy(path: &Path) -> Result<Tensor> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    parse_npy(&bytes, path)
}

/// The bytes of a `.npy` file (format 1.0) holding `tensor`, with the header NumPy writes:
/// `{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }`, padded with spaces so that
/// the data starts at a multiple of 64 bytes (as `np.save`).
pub fn encode_npy(tensor: &Tensor) -> Result<Vec<u8>> {
    let descr = match tensor.kind() {
        Kind::Half => "<f2",
        Kind::Float => "<f4",
        Kind::Double => "<f8",
        Kind::Int8 => "|i1",
        Kind::Int16 => "<i2",
        Kind::Int => "<i4",
        Kind::Int64 => "<i8",
        Kind::Uint8 => "|u1",
        Kind::Bool => "|b1",
        other => return Err(DataError::invalid("npy dtype", format!("{other:?}"), "a real or integer kind")),
    };
    let dims: Vec<String> = tensor.size().iter().map(i64::to_string).collect();
    let shape = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    // NumPy's `_wrap_header`: 64 − (length % 64) spaces, so a whole 64 when it divides.
    let unpadded = MAGIC.len() + 4 + header.len() + 1;
    header.push_str(&" ".repeat(64 - unpadded % 64));
    header.push('\n');
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    let tensor = tensor.f_contiguous()?;
    let mut data = vec![0u8; tensor.numel() * tensor.kind().elt_size_in_bytes()];
    tensor.f_copy_data_u8(&mut data, tensor.numel())?;
    out.extend_from_slice(&data);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numpy_headers_round_trip_and_are_checked() {
        // The bytes `np.save` writes for np.arange(6, dtype='<f8').reshape(2, 3): a 118-byte
        // header (magic, version 1.0, length 118 = 0x76) and 48 bytes of data.
        let t = Tensor::arange(6, (Kind::Double, tch::Device::Cpu)).view([2, 3]);
        let bytes = encode_npy(&t).unwrap();
        assert_eq!(&bytes[..10], b"\x93NUMPY\x01\x00\x76\x00");
        assert!(bytes[10..].starts_with(b"{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }"));
        assert_eq!((bytes.len() - 48) % 64, 0);
        assert_eq!(bytes[127], b'\n');
        let back = parse_npy(&bytes, Path::new("a.npy")).unwrap();
        assert_eq!(back.size(), [2, 3]);
        assert_eq!(Vec::<f64>::try_from(back.flatten(0, -1)).unwrap(), [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
        // A 1-d array's shape is written `(n,)`; version 2.0 headers have a 4-byte length.
        let v = encode_npy(&Tensor::from_slice(&[7u8, 8])).unwrap();
        assert!(
            String::from_utf8_lossy(&v).contains("'descr': '|u1'")
                && String::from_utf8_lossy(&v).contains("(2,)")
        );
        let mut v2 = b"\x93NUMPY\x02\x00".to_vec();
        let header = "{'descr': '<i8', 'fortran_order': False, 'shape': (1,), }\n";
        v2.extend_from_slice(&(header.len() as u32).to_le_bytes());
        v2.extend_from_slice(header.as_bytes());
        v2.extend_from_slice(&(-3i64).to_le_bytes());
        assert_eq!(parse_npy(&v2, Path::new("b.npy")).unwrap().int64_value(&[0]), -3);

        let err = |b: &[u8]| parse_npy(b, Path::new("c.npy")).unwrap_err().to_string();
        assert!(
            err(&bytes[..bytes.len() - 8]).contains("c.npy")
                && err(&bytes[..bytes.len() - 8]).contains("the file holds 40")
        );
        assert!(err(b"PK\x03\x04 not npy").contains("magic"));
        let replace = |from: &[u8], to: &[u8]| {
            let at = bytes.windows(from.len()).position(|w| w == from).unwrap();
            [&bytes[..at], to, &bytes[at + from.len()..]].concat()
        };
        assert!(err(&replace(b"<f8", b">f8")).contains("little-endian"));
        assert!(err(&replace(b"False", b"True ")).contains("Fortran order"));
    }
}

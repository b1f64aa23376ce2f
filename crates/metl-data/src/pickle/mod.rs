//! A small, safe reader of Python pickles holding plain data and numpy arrays: what the
//! few-shot datasets are distributed as (CIFAR-100's `train`/`test`/`meta`, the
//! miniImageNet `mini-imagenet-cache-*.pkl`, tieredImageNet's `*_images_png.pkl` and
//! `*_labels.pkl`).
//!
//! [`parse`] runs the pickle virtual machine over protocols 2 to 5, the binary opcodes
//! only, and builds a [`Value`] tree. It never runs code: the only callables it accepts
//! are the handful numpy and Python use to rebuild arrays and byte strings —
//! `numpy.core.multiarray._reconstruct` with `ndarray.__setstate__` (protocols 2–4),
//! `numpy.core.numeric._frombuffer` (protocol 5), `numpy.dtype`,
//! `numpy.core.multiarray.scalar` and `_codecs.encode` (how Python 3 writes `bytes` at
//! protocol 2) — under both `numpy.core` and numpy 2's `numpy._core`. Anything else is an
//! error naming the global, as is a truncated file, an unknown opcode or an array whose
//! bytes do not match its shape. Large byte strings (the pixels) are borrowed from the
//! input, not copied.
//!
//! Python 2 `str` objects (CIFAR-100 was pickled by Python 2) come back as
//! [`Value::Bytes`]; [`Value::get`] and [`Value::as_text`] treat them as text, as
//! `pickle.load(f, encoding="bytes")` users do.

mod array;
mod machine;

pub use array::{Dtype, NdArray};
pub use machine::parse;

use std::borrow::Cow;

/// A decoded Python object.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    /// `None`.
    None,
    /// `True` / `False`.
    Bool(bool),
    /// An integer (Python's are unbounded; larger than 64 bits is an error).
    Int(i64),
    /// A float.
    Float(f64),
    /// A text string (Python 3 `str`, Python 2 `unicode`).
    Str(String),
    /// A byte string: Python 3 `bytes` or `bytearray`, Python 2 `str`.
    Bytes(Cow<'a, [u8]>),
    /// A list.
    List(Vec<Value<'a>>),
    /// A tuple.
    Tuple(Vec<Value<'a>>),
    /// A dict, in insertion order.
    Dict(Vec<(Value<'a>, Value<'a>)>),
    /// A numpy array.
    Array(NdArray<'a>),
}

impl<'a> Value<'a> {
    /// The value of `key` in a dict whose keys are text or (Python 2) byte strings.
    pub fn get(&self, key: &str) -> Option<&Value<'a>> {
        match self {
            Value::Dict(items) => {
                items.iter().find(|(k, _)| k.as_text().as_deref() == Some(key)).map(|(_, v)| v)
            }
            _ => None,
        }
    }

    /// A text or byte string as text (bytes read as UTF-8, invalid sequences replaced).
    pub fn as_text(&self) -> Option<Cow<'_, str>> {
        match self {
            Value::Str(s) => Some(Cow::Borrowed(s)),
            Value::Bytes(b) => Some(String::from_utf8_lossy(b)),
            _ => None,
        }
    }

    /// An integer (booleans count as 0 and 1, as in Python).
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Bool(b) => Some(*b as i64),
            _ => None,
        }
    }

    /// The items of a list or tuple.
    pub fn as_items(&self) -> Option<&[Value<'a>]> {
        match self {
            Value::List(items) | Value::Tuple(items) => Some(items),
            _ => None,
        }
    }

    /// The numpy array.
    pub fn as_array(&self) -> Option<&NdArray<'a>> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    /// Integers from a list or tuple of ints, or from an integer numpy array.
    pub fn to_ints(&self) -> Option<Vec<i64>> {
        match self {
            Value::Array(a) => a.to_ints(),
            _ => self.as_items()?.iter().map(Value::as_int).collect(),
        }
    }

    /// Python's name of the value's type, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Bytes(_) => "bytes",
            Value::List(_) => "list",
            Value::Tuple(_) => "tuple",
            Value::Dict(_) => "dict",
            Value::Array(_) => "numpy.ndarray",
        }
    }
}

/// Why a pickle could not be read: the byte offset and the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("pickle byte {offset}: {reason}")]
pub struct PickleError {
    /// Where in the input the problem was found.
    pub offset: usize,
    /// What is wrong.
    pub reason: String,
}

#[cfg(test)]
mod tests;

//! The pickle virtual machine: binary opcodes of protocols 2–5 over a stack, a memo and
//! an arena of containers (so that a list or array stored in the memo and filled later
//! is seen filled, as in Python).

use super::{Dtype, NdArray, PickleError, Value};
use std::{borrow::Cow, collections::HashMap};

/// The deepest nesting [`parse`] accepts (also what stops reference cycles).
const MAX_DEPTH: usize = 64;

/// Reads one pickle from `input`; trailing bytes after its `STOP` are ignored.
///
/// Errors name the byte offset: truncated input, unsupported opcodes or protocols,
/// callables outside the numpy/bytes allowlist (see the module docs), malformed array
/// states, and data nested deeper than 64 levels.
pub fn parse(input: &[u8]) -> Result<Value<'_>> {
    Machine { input, pos: 0, stack: Vec::new(), marks: Vec::new(), memo: HashMap::new(), arena: Vec::new() }
        .run()
}

/// What the stack and the memo hold: immutable values inline, containers by reference.
#[derive(Debug, Clone)]
enum Slot<'a> {
    Val(Value<'a>),
    Ref(usize),
}

/// The callables a pickle may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Callable {
    /// `numpy.core.multiarray._reconstruct(ndarray, (0,), b"b")`: an empty array filled by
    /// `BUILD` with its state.
    Reconstruct,
    /// The `numpy.ndarray` type (an argument of `_reconstruct`).
    NdarrayType,
    /// `numpy.dtype(name, align, copy)`, byte order set by `BUILD`.
    DtypeType,
    /// `_codecs.encode(text, "latin1")`: Python 3's `bytes` at protocol 2.
    CodecsEncode,
    /// `numpy.core.numeric._frombuffer(buffer, dtype, shape, order)`: protocol 5 arrays.
    FromBuffer,
    /// `numpy.core.multiarray.scalar(dtype, bytes)`: a numpy number.
    Scalar,
}

fn callable(module: &str, name: &str) -> Option<Callable> {
    let numpy_core =
        |m: &str, sub: &str| m == format!("numpy.core.{sub}") || m == format!("numpy._core.{sub}");
    match name {
        "_reconstruct" if numpy_core(module, "multiarray") => Some(Callable::Reconstruct),
        "scalar" if numpy_core(module, "multiarray") => Some(Callable::Scalar),
        "_frombuffer" if numpy_core(module, "numeric") => Some(Callable::FromBuffer),
        "ndarray" if module == "numpy" => Some(Callable::NdarrayType),
        "dtype" if module == "numpy" => Some(Callable::DtypeType),
        "encode" if module == "_codecs" => Some(Callable::CodecsEncode),
        _ => None,
    }
}

/// A container or object, referenced from the stack and the memo.
#[derive(Debug)]
enum Node<'a> {
    List(Vec<Slot<'a>>),
    Tuple(Vec<Slot<'a>>),
    Dict(Vec<(Slot<'a>, Slot<'a>)>),
    Callable(Callable),
    Dtype(Dtype),
    /// An array from `_reconstruct`, `None` until its `BUILD`.
    Array(Option<NdArray<'a>>),
}

struct Machine<'a> {
    input: &'a [u8],
    pos: usize,
    stack: Vec<Slot<'a>>,
    /// Stack heights at each open `MARK`.
    marks: Vec<usize>,
    memo: HashMap<u64, Slot<'a>>,
    arena: Vec<Node<'a>>,
}

type Result<T> = std::result::Result<T, PickleError>;

impl<'a> Machine<'a> {
    fn error(&self, reason: impl Into<String>) -> PickleError {
        PickleError { offset: self.pos, reason: reason.into() }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if n > self.input.len() - self.pos {
            return Err(
                self.error(format!("truncated: {n} bytes announced, {} left", self.input.len() - self.pos))
            );
        }
        let bytes = &self.input[self.pos..self.pos + n];
        self.pos += n;
        Ok(bytes)
    }

    fn uint(&mut self, width: usize) -> Result<u64> {
        let mut word = [0u8; 8];
        word[..width].copy_from_slice(self.take(width)?);
        Ok(u64::from_le_bytes(word))
    }

    fn len(&mut self, width: usize) -> Result<usize> {
        let n = self.uint(width)?;
        usize::try_from(n).map_err(|_| self.error("length out of range"))
    }

    fn line(&mut self) -> Result<&'a str> {
        let rest = &self.input[self.pos..];
        let end = rest.iter().position(|&b| b == b'\n').ok_or_else(|| self.error("unterminated GLOBAL"))?;
        let line = std::str::from_utf8(&rest[..end]).map_err(|_| self.error("GLOBAL name is not UTF-8"))?;
        self.pos += end + 1;
        Ok(line)
    }

    fn text(&mut self, n: usize) -> Result<Value<'a>> {
        let bytes = self.take(n)?;
        let s = std::str::from_utf8(bytes).map_err(|_| self.error("string is not UTF-8"))?;
        Ok(Value::Str(s.to_owned()))
    }

    fn push(&mut self, value: Value<'a>) {
        self.stack.push(Slot::Val(value));
    }

    fn push_node(&mut self, node: Node<'a>) {
        self.arena.push(node);
        self.stack.push(Slot::Ref(self.arena.len() - 1));
    }

    fn pop(&mut self) -> Result<Slot<'a>> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err(self.error("stack underflow"));
        }
        Ok(self.stack.pop().expect("checked"))
    }

    fn pop_mark(&mut self) -> Result<Vec<Slot<'a>>> {
        let start = self.marks.pop().ok_or_else(|| self.error("no MARK to pop to"))?;
        Ok(self.stack.split_off(start))
    }

    fn top_node(&mut self) -> Result<&mut Node<'a>> {
        let floor = self.marks.last().copied().unwrap_or(0);
        match self.stack.last() {
            Some(Slot::Ref(i)) if self.stack.len() > floor => Ok(&mut self.arena[*i]),
            _ => Err(self.error("expected a container or object on the stack")),
        }
    }

    fn run(mut self) -> Result<Value<'a>> {
        loop {
            let op = self.take(1)?[0];
            match op {
                0x80 => {
                    let proto = self.take(1)?[0];
                    if !(2..=5).contains(&proto) {
                        return Err(self.error(format!("protocol {proto} (2 to 5 are supported)")));
                    }
                }
                0x95 => {
                    self.take(8)?; // FRAME: a length hint
                }
                b'.' => {
                    let top = self.pop()?;
                    return self.resolve(&top, 0);
                }
                b'(' => self.marks.push(self.stack.len()),
                b'0' => {
                    self.pop()?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'N' => self.push(Value::None),
                0x88 => self.push(Value::Bool(true)),
                0x89 => self.push(Value::Bool(false)),
                b'K' => {
                    let v = self.uint(1)?;
                    self.push(Value::Int(v as i64));
                }
                b'M' => {
                    let v = self.uint(2)?;
                    self.push(Value::Int(v as i64));
                }
                b'J' => {
                    let v = self.uint(4)? as u32 as i32;
                    self.push(Value::Int(v as i64));
                }
                0x8a => {
                    let n = self.len(1)?;
                    if n > 8 {
                        return Err(self.error(format!("integer of {n} bytes (at most 8 supported)")));
                    }
                    let bytes = self.take(n)?;
                    let negative = bytes.last().is_some_and(|&b| b >= 0x80);
                    let mut word = [if negative { 0xff } else { 0 }; 8];
                    word[..n].copy_from_slice(bytes);
                    self.push(Value::Int(i64::from_le_bytes(word)));
                }
                b'G' => {
                    let bytes: [u8; 8] = self.take(8)?.try_into().expect("8 bytes");
                    self.push(Value::Float(f64::from_be_bytes(bytes)));
                }
                b'U' | b'C' | b'T' | b'B' | 0x8e | 0x96 => {
                    let n = match op {
                        b'U' | b'C' => self.len(1)?,
                        b'T' => {
                            let n = self.uint(4)? as u32 as i32;
                            usize::try_from(n).map_err(|_| self.error("negative string length"))?
                        }
                        b'B' => self.len(4)?,
                        _ => self.len(8)?,
                    };
                    let bytes = self.take(n)?;
                    self.push(Value::Bytes(Cow::Borrowed(bytes)));
                }
                0x8c | b'X' | 0x8d => {
                    let n = match op {
                        0x8c => self.len(1)?,
                        b'X' => self.len(4)?,
                        _ => self.len(8)?,
                    };
                    let text = self.text(n)?;
                    self.push(text);
                }
                b'}' => self.push_node(Node::Dict(Vec::new())),
                b']' => self.push_node(Node::List(Vec::new())),
                b')' => self.push_node(Node::Tuple(Vec::new())),
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    let floor = self.marks.last().copied().unwrap_or(0);
                    if self.stack.len() < floor + n {
                        return Err(self.error("stack underflow"));
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    self.push_node(Node::Tuple(items));
                }
                b't' => {
                    let items = self.pop_mark()?;
                    self.push_node(Node::Tuple(items));
                }
                b'l' => {
                    let items = self.pop_mark()?;
                    self.push_node(Node::List(items));
                }
                b'd' => {
                    let items = self.pop_mark()?;
                    let pairs = self.pairs(items)?;
                    self.push_node(Node::Dict(pairs));
                }
                b'a' | b'e' => {
                    let items = if op == b'a' { vec![self.pop()?] } else { self.pop_mark()? };
                    match self.top_node()? {
                        Node::List(list) => list.extend(items),
                        _ => return Err(self.error("APPEND to something that is not a list")),
                    }
                }
                b's' | b'u' => {
                    let items = if op == b's' {
                        let value = self.pop()?;
                        let key = self.pop()?;
                        vec![key, value]
                    } else {
                        self.pop_mark()?
                    };
                    let pairs = self.pairs(items)?;
                    match self.top_node()? {
                        Node::Dict(dict) => dict.extend(pairs),
                        _ => return Err(self.error("SETITEM on something that is not a dict")),
                    }
                }
                b'q' | b'r' | 0x94 => {
                    let key = match op {
                        b'q' => self.uint(1)?,
                        b'r' => self.uint(4)?,
                        _ => self.memo.len() as u64,
                    };
                    let top =
                        self.stack.last().ok_or_else(|| self.error("memoizing an empty stack"))?.clone();
                    self.memo.insert(key, top);
                }
                b'h' | b'j' => {
                    let key = self.uint(if op == b'h' { 1 } else { 4 })?;
                    let slot =
                        self.memo.get(&key).ok_or_else(|| self.error(format!("memo key {key} unset")))?;
                    self.stack.push(slot.clone());
                }
                b'c' => {
                    let (module, name) = (self.line()?, self.line()?);
                    self.push_global(module, name)?;
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (module, name) {
                        (Slot::Val(Value::Str(module)), Slot::Val(Value::Str(name))) => {
                            self.push_global(&module, &name)?
                        }
                        _ => return Err(self.error("STACK_GLOBAL needs two strings")),
                    }
                }
                b'R' => {
                    let args = self.pop()?;
                    let function = self.pop()?;
                    let result = self.reduce(&function, &args)?;
                    self.stack.push(result);
                }
                b'b' => {
                    let state = self.pop()?;
                    self.build(&state)?;
                }
                other => return Err(self.error(format!("unsupported opcode 0x{other:02x}"))),
            }
        }
    }

    fn pairs(&self, items: Vec<Slot<'a>>) -> Result<Vec<(Slot<'a>, Slot<'a>)>> {
        if items.len() % 2 != 0 {
            return Err(self.error("odd number of items for a dict"));
        }
        let mut items = items.into_iter();
        Ok(std::iter::from_fn(|| Some((items.next()?, items.next()?))).collect())
    }

    fn push_global(&mut self, module: &str, name: &str) -> Result<()> {
        let c = callable(module, name).ok_or_else(|| {
            self.error(format!(
                "global {module}.{name} is not allowed (only numpy arrays and plain data are read)"
            ))
        })?;
        self.push_node(Node::Callable(c));
        Ok(())
    }

    /// The items of a tuple slot.
    fn tuple(&self, slot: &Slot<'a>, what: &str) -> Result<Vec<Slot<'a>>> {
        match slot {
            Slot::Ref(i) => match &self.arena[*i] {
                Node::Tuple(items) => Ok(items.clone()),
                _ => Err(self.error(format!("{what}: expected a tuple"))),
            },
            Slot::Val(_) => Err(self.error(format!("{what}: expected a tuple"))),
        }
    }

    fn dtype(&self, slot: &Slot<'a>) -> Result<Dtype> {
        match slot {
            Slot::Ref(i) => match &self.arena[*i] {
                Node::Dtype(d) => Ok(*d),
                _ => Err(self.error("expected a numpy dtype")),
            },
            Slot::Val(_) => Err(self.error("expected a numpy dtype")),
        }
    }

    fn bytes(&self, slot: &Slot<'a>, what: &str) -> Result<Cow<'a, [u8]>> {
        match slot {
            Slot::Val(Value::Bytes(b)) => Ok(b.clone()),
            Slot::Val(Value::List(_)) | Slot::Ref(_) => {
                Err(self.error(format!("{what}: object arrays are not supported (numbers only)")))
            }
            _ => Err(self.error(format!("{what}: expected bytes"))),
        }
    }

    fn shape(&self, slot: &Slot<'a>) -> Result<Vec<usize>> {
        let dims = self.tuple(slot, "array shape")?;
        dims.iter()
            .map(|d| match d {
                Slot::Val(Value::Int(n)) => usize::try_from(*n).map_err(|_| self.error("negative dimension")),
                _ => Err(self.error("array shape: expected integers")),
            })
            .collect()
    }

    fn array(
        &self,
        shape: Vec<usize>,
        dtype: Dtype,
        fortran_order: bool,
        data: Cow<'a, [u8]>,
    ) -> Result<NdArray<'a>> {
        let expected = shape
            .iter()
            .try_fold(dtype.itemsize, |n, &d| n.checked_mul(d))
            .ok_or_else(|| self.error("array size overflows"))?;
        if data.len() != expected {
            return Err(
                self.error(format!("array {shape:?} needs {expected} bytes, the pickle has {}", data.len()))
            );
        }
        Ok(NdArray { shape, dtype, fortran_order, data })
    }

    fn reduce(&mut self, function: &Slot<'a>, args: &Slot<'a>) -> Result<Slot<'a>> {
        let Slot::Ref(f) = function else { return Err(self.error("REDUCE: not a callable")) };
        let Node::Callable(c) = self.arena[*f] else { return Err(self.error("REDUCE: not a callable")) };
        let args = self.tuple(args, "REDUCE arguments")?;
        let text = |slot: &Slot<'a>| match slot {
            Slot::Val(v) => v.as_text().map(Cow::into_owned),
            Slot::Ref(_) => None,
        };
        let node = match (c, args.as_slice()) {
            (Callable::Reconstruct, [_, _, _]) => Node::Array(None),
            (Callable::DtypeType, [name, ..]) => {
                let name = text(name).ok_or_else(|| self.error("numpy.dtype: expected a name"))?;
                let dtype = Dtype::parse(&name).ok_or_else(|| {
                    self.error(format!("numpy dtype {name:?} is not supported (numbers only)"))
                })?;
                Node::Dtype(dtype)
            }
            (Callable::CodecsEncode, [Slot::Val(Value::Str(s)), encoding]) => {
                if !matches!(text(encoding).as_deref(), Some("latin1" | "latin-1")) {
                    return Err(self.error("_codecs.encode: only latin1 is supported"));
                }
                let bytes: Option<Vec<u8>> = s.chars().map(|c| u8::try_from(c as u32).ok()).collect();
                let bytes = bytes.ok_or_else(|| self.error("_codecs.encode: character above U+00FF"))?;
                return Ok(Slot::Val(Value::Bytes(Cow::Owned(bytes))));
            }
            (Callable::FromBuffer, [buffer, dtype, shape, order]) => {
                let fortran = text(order).as_deref() == Some("F");
                let array = self.array(
                    self.shape(shape)?,
                    self.dtype(dtype)?,
                    fortran,
                    self.bytes(buffer, "_frombuffer")?,
                )?;
                return Ok(Slot::Val(Value::Array(array)));
            }
            (Callable::Scalar, [dtype, data]) => {
                let array =
                    self.array(vec![], self.dtype(dtype)?, false, self.bytes(data, "numpy scalar")?)?;
                let value = match array.to_ints() {
                    Some(ints) => Value::Int(ints[0]),
                    None if array.dtype.itemsize == 8 && !array.dtype.big_endian => {
                        Value::Float(f64::from_le_bytes(array.data[..8].try_into().expect("8 bytes")))
                    }
                    None => return Err(self.error("numpy scalar: unsupported type")),
                };
                return Ok(Slot::Val(value));
            }
            (c, args) => return Err(self.error(format!("{c:?} called with {} arguments", args.len()))),
        };
        self.arena.push(node);
        Ok(Slot::Ref(self.arena.len() - 1))
    }

    fn build(&mut self, state: &Slot<'a>) -> Result<()> {
        let Some(Slot::Ref(target)) = self.stack.last().cloned() else {
            return Err(self.error("BUILD: nothing to build"));
        };
        let state = self.tuple(state, "BUILD state")?;
        match &self.arena[target] {
            Node::Dtype(d) => {
                let order = match state.get(1) {
                    Some(Slot::Val(v)) => v.as_text().map(Cow::into_owned),
                    _ => None,
                };
                let big_endian =
                    order.as_deref() == Some(">") || (order.as_deref() != Some("<") && d.big_endian);
                self.arena[target] = Node::Dtype(Dtype { big_endian, ..*d });
            }
            Node::Array(None) => {
                // ndarray.__setstate__: (version, shape, dtype, is_fortran, data) or the
                // same without the version.
                let parts = match state.len() {
                    5 => &state[1..],
                    4 => &state[..],
                    n => return Err(self.error(format!("array state of {n} items"))),
                };
                let fortran = matches!(parts[2], Slot::Val(Value::Bool(true)) | Slot::Val(Value::Int(1)));
                let array = self.array(
                    self.shape(&parts[0])?,
                    self.dtype(&parts[1])?,
                    fortran,
                    self.bytes(&parts[3], "array data")?,
                )?;
                self.arena[target] = Node::Array(Some(array));
            }
            _ => return Err(self.error("BUILD on an object that is not a numpy array or dtype")),
        }
        Ok(())
    }

    /// The value a slot stands for, containers resolved recursively.
    fn resolve(&self, slot: &Slot<'a>, depth: usize) -> Result<Value<'a>> {
        if depth > MAX_DEPTH {
            return Err(self.error(format!("data nested deeper than {MAX_DEPTH} levels")));
        }
        let i = match slot {
            Slot::Val(v) => return Ok(v.clone()),
            Slot::Ref(i) => *i,
        };
        let all =
            |items: &[Slot<'a>]| items.iter().map(|s| self.resolve(s, depth + 1)).collect::<Result<Vec<_>>>();
        Ok(match &self.arena[i] {
            Node::List(items) => Value::List(all(items)?),
            Node::Tuple(items) => Value::Tuple(all(items)?),
            Node::Dict(pairs) => Value::Dict(
                pairs
                    .iter()
                    .map(|(k, v)| Ok((self.resolve(k, depth + 1)?, self.resolve(v, depth + 1)?)))
                    .collect::<Result<_>>()?,
            ),
            Node::Array(Some(a)) => Value::Array(a.clone()),
            Node::Array(None) => return Err(self.error("a numpy array without its state")),
            Node::Callable(_) | Node::Dtype(_) => {
                return Err(self.error("a numpy type where data was expected"))
            }
        })
    }
}

//! The reader against pickles written by Python 3.11 and numpy 2.4
//! (`tests/fixtures/pickle/make_pickles.py`), a Python 2 style pickle as CIFAR-100's, and
//! hostile input.

use super::*;

const FILES: [(&str, &[u8]); 3] = [
    ("protocol 2", include_bytes!("../../tests/fixtures/pickle/numpy_protocol2.pkl")),
    ("protocol 4", include_bytes!("../../tests/fixtures/pickle/numpy_protocol4.pkl")),
    ("protocol 5", include_bytes!("../../tests/fixtures/pickle/numpy_protocol5.pkl")),
];

#[test]
fn python_pickles_of_every_protocol_read_the_same() {
    for (name, bytes) in FILES {
        let v = parse(bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        let image = v.get("image_data").and_then(Value::as_array).unwrap();
        assert_eq!(image.shape, [2, 2, 2, 3], "{name}");
        assert_eq!(
            image.data.iter().map(|&b| b as usize).collect::<Vec<_>>(),
            (0..24).map(|i| i * 10).collect::<Vec<_>>()
        );
        let classes = v.get("class_dict").unwrap();
        assert_eq!(classes.get("n02").and_then(Value::to_ints), Some(vec![1]), "{name}");
        assert_eq!(v.get("labels").and_then(Value::to_ints), Some(vec![-1, 1 << 40]), "{name}");
        assert_eq!(v.get("big_endian").and_then(Value::to_ints), Some(vec![1, -2]), "{name}");
        let fortran = v.get("fortran").and_then(Value::as_array).unwrap();
        // Column-major bytes of [[0, 1, 2], [3, 4, 5]].
        assert!(fortran.fortran_order, "{name}");
        assert_eq!(&fortran.data[..], [0, 3, 1, 4, 2, 5], "{name}");
        // The same array object twice: the second comes from the memo, filled.
        let shared = v.get("shared").and_then(Value::as_items).unwrap();
        assert_eq!(shared[0], shared[1], "{name}");
        assert_eq!(shared[1].to_ints(), Some(vec![3, 1, 4]), "{name}");
        assert_eq!(v.get("scalar").and_then(Value::as_int), Some(7), "{name}");
        assert_eq!(v.get("text"), Some(&Value::Str("na\u{ef}ve".into())), "{name}");
        assert_eq!(v.get("raw"), Some(&Value::Bytes((0..=255).collect::<Vec<u8>>().into())), "{name}");
        assert_eq!(v.get("float"), Some(&Value::Float(1.5)), "{name}");
        assert_eq!(v.get("none"), Some(&Value::None), "{name}");
        assert_eq!(v.get("flag"), Some(&Value::Bool(true)), "{name}");
        assert_eq!(v.get("long").and_then(Value::as_int), Some(1 << 62), "{name}");
    }
}

/// `{b"data": array([[1, 2]], uint8), b"fine_labels": [5]}` as Python 2's cPickle writes
/// it at protocol 2: `str` keys and array bytes as SHORT_BINSTRING / BINSTRING, numpy's
/// globals by GLOBAL.
fn python2_style() -> Vec<u8> {
    let mut p = b"\x80\x02}q\x01(U\x04dataq\x02cnumpy.core.multiarray\n_reconstruct\nq\x03cnumpy\nndarray\nq\x04K\x00\x85U\x01b\x87Rq\x05(K\x01K\x01K\x02\x86cnumpy\ndtype\nq\x06U\x02u1K\x00K\x01\x87Rq\x07(K\x03U\x01|NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89T\x02\x00\x00\x00".to_vec();
    p.extend_from_slice(b"\x01\x02tbU\x0bfine_labelsq\x08]q\x09K\x05au.");
    p
}

#[test]
fn python2_strings_are_bytes_that_read_as_text() {
    let bytes = python2_style();
    let v = parse(&bytes).unwrap();
    let data = v.get("data").and_then(Value::as_array).unwrap();
    assert_eq!((data.shape.as_slice(), &data.data[..]), ([1, 2].as_slice(), [1u8, 2].as_slice()));
    assert!(matches!(data.data, std::borrow::Cow::Borrowed(_)), "pixels are not copied");
    assert_eq!(v.get("fine_labels").and_then(Value::to_ints), Some(vec![5]));
}

#[test]
fn hostile_input_is_an_error_not_a_panic() {
    let good = python2_style();
    // Every truncation fails cleanly.
    for end in 0..good.len() {
        assert!(parse(&good[..end]).is_err(), "truncated at {end}");
    }
    let err = |bytes: &[u8]| parse(bytes).unwrap_err().to_string();
    assert!(err(b"\x80\x02cos\nsystem\nX\x02\x00\x00\x00lsR.").contains("global os.system is not allowed"));
    assert!(err(b"\x80\x02X\xff\xff\xff\x7f").contains("truncated"));
    assert!(err(b"\x80\x02h\x05.").contains("memo key 5 unset"));
    assert!(err(b"\x80\x09N.").contains("protocol 9"));
    assert!(err(b"\x80\x02N\x01.").contains("unsupported opcode 0x01"));
    assert!(err(b"\x80\x02a.").contains("stack underflow"));
    // A list that contains itself.
    assert!(err(b"\x80\x02]q\x00h\x00a.").contains("nested deeper"));
    // Array bytes that do not match the shape.
    let mut short = good.clone();
    let at = short.windows(5).position(|w| w == b"T\x02\x00\x00\x00").unwrap();
    short[at + 1] = 1;
    short.remove(at + 5);
    assert!(err(&short).contains("needs 2 bytes, the pickle has 1"), "{}", err(&short));
}

//! The operator counter of `metl bench --count-ops`. Its callback counts what every thread
//! of the process dispatches, so this test lives in a binary of its own: beside the library's
//! unit tests, which run in parallel threads, it counted their operators too.

use metl_runner::op_count::{count, OpCount};
use tch::{Kind, Tensor};

#[test]
fn counts_the_operators_and_autograd_nodes_of_a_small_graph() {
    let x = Tensor::ones([3], (Kind::Float, tch::Device::Cpu)).set_requires_grad(true);
    let ((), counted) = count(|| {
        let y = (&x * 2.0).sum(Kind::Float);
        y.backward();
        Ok(())
    })
    .unwrap();
    // mul and sum forward, their backward nodes (and the accumulation into x.grad).
    assert!((2..=40).contains(&counted.operators), "{counted:?}");
    assert!((2..=4).contains(&counted.autograd_nodes), "{counted:?}");
    // Nothing is counted after the end.
    let ((), none) = count(|| Ok(())).unwrap();
    assert_eq!(none, OpCount::default());
    // A second counter cannot start while one counts.
    let nested = count(|| count(|| Ok(())).map(|_| ()));
    assert!(nested.is_err(), "nested counting must be refused");
}

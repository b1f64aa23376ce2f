//! Checks of a [`TaskBatch`] at the boundary of every learner, so that a mis-shaped batch is
//! a [`MetaError::InvalidBatch`] naming the field and the shapes instead of a panic deep
//! inside libtorch.
//!
//! ```
//! use metl_data::TaskBatch;
//! use metl_meta::validate::{validate_batch, Targets};
//! use tch::{Device, Kind, Tensor};
//!
//! let f = (Kind::Float, Device::Cpu);
//! let batch = TaskBatch {
//!     support_x: Tensor::zeros([4, 5, 1], f),
//!     support_y: Tensor::zeros([4, 5, 1], f),
//!     query_x: Tensor::zeros([4, 7, 1], f),
//!     query_y: Tensor::zeros([4, 6, 1], f), // one query target short
//! };
//! let err = validate_batch(&batch, Targets::Values, None).unwrap_err().to_string();
//! assert!(err.contains("query_y"), "{err}");
//! ```

use crate::error::{MetaError, Result};
use metl_data::TaskBatch;
use metl_models::Params;
use tch::{Kind, Tensor};

pub use metl_models::loss::Targets;

fn invalid(message: String) -> MetaError {
    MetaError::InvalidBatch(message)
}

fn is_float(kind: Kind) -> bool {
    matches!(kind, Kind::Float | Kind::Double | Kind::Half | Kind::BFloat16)
}

/// Checks `batch`: all four tensors defined; inputs `[B, S, ...]` and `[B, Q, ...]` of a
/// floating-point kind with `B, S, Q ≥ 1` and the same feature shape; targets with the
/// leading dimensions of their inputs and of the kind `targets` asks for (class indices:
/// `Int64` `[B, S]`/`[B, Q]`, non-negative, every query class among the support classes;
/// values: a floating-point kind, the inputs' one); every tensor on one device — and,
/// given the parameters, on theirs, with inputs of their kind.
pub fn validate_batch(batch: &TaskBatch, targets: Targets, params: Option<&Params>) -> Result<()> {
    let device = params.map(Params::device);
    let fields: [(&str, &Tensor); 4] = [
        ("support_x", &batch.support_x),
        ("support_y", &batch.support_y),
        ("query_x", &batch.query_x),
        ("query_y", &batch.query_y),
    ];
    for (name, t) in fields {
        if !t.defined() {
            return Err(invalid(format!("{name} is an undefined tensor")));
        }
    }
    let expected_device = device.unwrap_or_else(|| batch.support_x.device());
    for (name, t) in fields {
        if t.device() != expected_device {
            return Err(invalid(format!(
                "{name} is on {:?}, expected {:?} (the {})",
                t.device(),
                expected_device,
                if device.is_some() { "parameters' device" } else { "device of support_x" }
            )));
        }
    }
    let (sx, qx) = (batch.support_x.size(), batch.query_x.size());
    for (name, shape, set) in [("support_x", &sx, "S"), ("query_x", &qx, "Q")] {
        if shape.len() < 2 || shape[0] < 1 || shape[1] < 1 {
            return Err(invalid(format!(
                "{name} has shape {shape:?}; expected [B, {set}, ...] with B, {set} >= 1"
            )));
        }
    }
    for (name, t) in [("support_x", &batch.support_x), ("query_x", &batch.query_x)] {
        if !is_float(t.kind()) {
            return Err(invalid(format!("{name} is {:?}; inputs must be floating point", t.kind())));
        }
    }
    if let Some(p) = params.filter(|p| !p.is_empty()) {
        for (name, t) in [("support_x", &batch.support_x), ("query_x", &batch.query_x)] {
            if t.kind() != p.kind() {
                return Err(invalid(format!(
                    "{name} is {:?} but the parameters are {:?}",
                    t.kind(),
                    p.kind()
                )));
            }
        }
    }
    if sx[0] != qx[0] {
        return Err(invalid(format!(
            "support_x has {} tasks ({sx:?}) but query_x has {} ({qx:?})",
            sx[0], qx[0]
        )));
    }
    if sx[2..] != qx[2..] {
        return Err(invalid(format!(
            "support_x examples are {:?} but query_x examples are {:?}",
            &sx[2..],
            &qx[2..]
        )));
    }
    for (name, y, x) in [("support_y", &batch.support_y, &sx), ("query_y", &batch.query_y, &qx)] {
        let shape = y.size();
        if shape.len() < 2 || shape[..2] != x[..2] {
            return Err(invalid(format!(
                "{name} has shape {shape:?}; expected [{}, {}, ...] like its inputs",
                x[0], x[1]
            )));
        }
        match targets {
            Targets::Classes if y.kind() != Kind::Int64 || shape.len() != 2 => {
                return Err(invalid(format!(
                    "{name} is {:?} {shape:?}; class targets must be Int64 [{}, {}]",
                    y.kind(),
                    x[0],
                    x[1]
                )));
            }
            Targets::Values if !is_float(y.kind()) || y.kind() != batch.support_x.kind() => {
                return Err(invalid(format!(
                    "{name} is {:?}; regression targets must be floating point, of the inputs' kind {:?}",
                    y.kind(),
                    batch.support_x.kind()
                )));
            }
            _ => {}
        }
    }
    if targets == Targets::Classes {
        let (s_min, s_max) = (batch.support_y.min().int64_value(&[]), batch.support_y.max().int64_value(&[]));
        let (q_min, q_max) = (batch.query_y.min().int64_value(&[]), batch.query_y.max().int64_value(&[]));
        if s_min < 0 || q_min < 0 {
            return Err(invalid(format!("negative class index {} in the targets", s_min.min(q_min))));
        }
        if q_max > s_max {
            return Err(invalid(format!(
                "query_y has class {q_max}, but the support classes go up to {s_max} only"
            )));
        }
    }
    Ok(())
}

/// Checks that every class index of `batch` (support and query targets, class indices as
/// [`validate_batch`] with [`Targets::Classes`] accepts them) lies in `0..classes`: the
/// classes the model scores (the width of its logits) or has been trained on.
pub fn validate_classes(batch: &TaskBatch, classes: i64) -> Result<()> {
    for (name, y) in [("support_y", &batch.support_y), ("query_y", &batch.query_y)] {
        if y.numel() == 0 {
            continue;
        }
        let (min, max) = (y.min().int64_value(&[]), y.max().int64_value(&[]));
        if min < 0 || max >= classes {
            return Err(invalid(format!(
                "{name} has class indices {min}..={max}, but the model scores {classes} classes (0..{classes})"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    fn classification() -> TaskBatch {
        let f = (Kind::Float, Device::Cpu);
        let labels = Tensor::from_slice(&[0i64, 1, 2]).view([1, 3]).repeat([2, 1]);
        TaskBatch {
            support_x: Tensor::zeros([2, 3, 1, 4, 4], f),
            support_y: labels.shallow_clone(),
            query_x: Tensor::zeros([2, 3, 1, 4, 4], f),
            query_y: labels,
        }
    }

    fn message(batch: &TaskBatch, targets: Targets) -> String {
        validate_batch(batch, targets, None).unwrap_err().to_string()
    }

    #[test]
    fn a_good_batch_passes_and_each_rule_names_its_field() {
        validate_batch(&classification(), Targets::Classes, None).unwrap();
        let f = (Kind::Float, Device::Cpu);

        let b = TaskBatch { query_x: Tensor::zeros([3, 3, 1, 4, 4], f), ..classification() };
        assert!(message(&b, Targets::Classes).contains("query_x has 3"));
        let b = TaskBatch { query_x: Tensor::zeros([2, 3, 1, 5, 5], f), ..classification() };
        assert!(message(&b, Targets::Classes).contains("[1, 5, 5]"));
        let b = TaskBatch { support_x: Tensor::zeros([2, 0, 1, 4, 4], f), ..classification() };
        assert!(message(&b, Targets::Classes).contains("support_x has shape [2, 0, 1, 4, 4]"));
        let b = TaskBatch {
            support_x: Tensor::zeros([2, 3, 1, 4, 4], (Kind::Int64, Device::Cpu)),
            ..classification()
        };
        assert!(message(&b, Targets::Classes).contains("floating point"));
        let b =
            TaskBatch { support_y: Tensor::zeros([2, 4], (Kind::Int64, Device::Cpu)), ..classification() };
        assert!(message(&b, Targets::Classes).contains("support_y has shape [2, 4]"));
        let b = TaskBatch { query_y: Tensor::zeros([2, 3], f), ..classification() };
        assert!(message(&b, Targets::Classes).contains("must be Int64"));
        let b = TaskBatch {
            query_y: Tensor::from_slice(&[0i64, 1, 3]).view([1, 3]).repeat([2, 1]),
            ..classification()
        };
        assert!(message(&b, Targets::Classes).contains("class 3"));
        let b = TaskBatch {
            support_y: Tensor::from_slice(&[0i64, -1, 2]).view([1, 3]).repeat([2, 1]),
            ..classification()
        };
        assert!(message(&b, Targets::Classes).contains("negative class index -1"));
        let b = TaskBatch { query_y: Tensor::new(), ..classification() };
        assert!(message(&b, Targets::Classes).contains("query_y is an undefined tensor"));
        // Integer targets are fine for a loss that takes anything, not for regression.
        assert!(message(&classification(), Targets::Values).contains("regression targets"));
        validate_batch(&classification(), Targets::Any, None).unwrap();
    }
}

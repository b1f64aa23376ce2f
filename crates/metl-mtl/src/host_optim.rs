//! PyTorch's Adam and SGD-with-momentum on small host vectors, for strategies that learn
//! a few numbers of their own with an optimizer of their own (FAMO's task logits,
//! Auto-Lambda's task weights, the inner loops of CAGrad and SDMGrad).

use crate::{
    checkpoint::{StateReader, StrategyState},
    error::Result,
};

/// `torch.optim.Adam` (L2 `weight_decay` added to the gradient, bias-corrected moments).
#[derive(Debug, Clone)]
pub struct HostAdam {
    lr: f64,
    betas: (f64, f64),
    eps: f64,
    weight_decay: f64,
    m: Vec<f64>,
    v: Vec<f64>,
    t: i32,
}

impl HostAdam {
    /// Adam for `n` numbers with PyTorch's `betas = (0.9, 0.999)` and `eps = 1e-8`.
    pub fn new(n: usize, lr: f64, weight_decay: f64) -> Self {
        Self { lr, betas: (0.9, 0.999), eps: 1e-8, weight_decay, m: vec![0.0; n], v: vec![0.0; n], t: 0 }
    }

    /// One step of `params` along `grad`.
    pub fn step(&mut self, params: &mut [f64], grad: &[f64]) {
        self.t += 1;
        let (b1, b2) = self.betas;
        let c1 = 1.0 - b1.powi(self.t);
        let c2 = 1.0 - b2.powi(self.t);
        for i in 0..params.len() {
            let g = grad[i] + self.weight_decay * params[i];
            self.m[i] = b1 * self.m[i] + (1.0 - b1) * g;
            self.v[i] = b2 * self.v[i] + (1.0 - b2) * g * g;
            params[i] -= self.lr * (self.m[i] / c1) / ((self.v[i] / c2).sqrt() + self.eps);
        }
    }

    /// Adds its moments and step count to `state` as `{prefix}.m`, `{prefix}.v` and
    /// `{prefix}.t`.
    pub fn save(&self, prefix: &str, state: StrategyState) -> StrategyState {
        state
            .with_values(&format!("{prefix}.m"), self.m.clone())
            .with_values(&format!("{prefix}.v"), self.v.clone())
            .with_word(&format!("{prefix}.t"), u64::from(self.t.unsigned_abs()))
    }

    /// The same Adam with the moments and step count [`HostAdam::save`] wrote.
    pub fn load(&self, prefix: &str, reader: &mut StateReader<'_>) -> Result<Self> {
        let n = self.m.len();
        let m = reader.values(&format!("{prefix}.m"), n)?;
        let v = reader.values(&format!("{prefix}.v"), n)?;
        let entry = format!("{prefix}.t");
        let t = reader.word(&entry)?;
        let t = i32::try_from(t)
            .map_err(|_| reader.error(&format!("words/{entry}"), format!("is {t}, too large")))?;
        Ok(Self { m, v, t, ..self.clone() })
    }
}

/// `torch.optim.SGD` with momentum (no dampening): `b ← μ b + g` (`b = g` at the first
/// step), `p ← p − lr · b`.
#[derive(Debug, Clone)]
pub struct HostSgd {
    lr: f64,
    momentum: f64,
    buf: Option<Vec<f64>>,
}

impl HostSgd {
    /// SGD with learning rate `lr` and `momentum`.
    pub fn new(lr: f64, momentum: f64) -> Self {
        Self { lr, momentum, buf: None }
    }

    /// One step of `params` along `grad`.
    pub fn step(&mut self, params: &mut [f64], grad: &[f64]) {
        let buf = match self.buf.take() {
            None => grad.to_vec(),
            Some(b) => b.iter().zip(grad).map(|(b, g)| self.momentum * b + g).collect(),
        };
        for (p, b) in params.iter_mut().zip(&buf) {
            *p -= self.lr * b;
        }
        self.buf = Some(buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adam_follows_pytorchs_update_rule() {
        // Two steps of Adam(lr=0.1, weight_decay=0.01) with grads (0.5, 0.25), (-1, 2).
        let mut p = [1.0, -2.0];
        let mut adam = HostAdam::new(2, 0.1, 0.01);
        adam.step(&mut p, &[0.5, 0.25]);
        // First Adam step moves every coordinate by lr against the sign of its gradient.
        assert!((p[0] - 0.9).abs() < 1e-6 && (p[1] + 2.1).abs() < 1e-6, "{p:?}");
        let first = p;
        adam.step(&mut p, &[-1.0, 2.0]);
        // m = 0.9·m + 0.1·g' with g' = g + 0.01 p; checked by hand below.
        let g1 = [0.5 + 0.01, 0.25 - 0.02];
        let g2 = [-1.0 + 0.01 * first[0], 2.0 + 0.01 * first[1]];
        for i in 0..2 {
            let m = 0.09 * g1[i] + 0.1 * g2[i];
            let v = 0.999 * 0.001 * g1[i] * g1[i] + 0.001 * g2[i] * g2[i];
            let step: f64 = 0.1 * (m / (1.0 - 0.81)) / ((v / (1.0 - 0.998001f64)).sqrt() + 1e-8);
            assert!((p[i] - (first[i] - step)).abs() < 1e-12);
        }
    }

    #[test]
    fn adam_state_round_trips() {
        let mut p = [1.0, -2.0];
        let mut adam = HostAdam::new(2, 0.1, 0.01);
        adam.step(&mut p, &[0.5, 0.25]);
        let state = adam.save("adam", StrategyState::default());
        let mut reader = state.reader("test");
        let mut restored = HostAdam::new(2, 0.1, 0.01).load("adam", &mut reader).unwrap();
        reader.finish().unwrap();
        let mut q = p;
        adam.step(&mut p, &[-1.0, 2.0]);
        restored.step(&mut q, &[-1.0, 2.0]);
        assert_eq!(p, q);
    }

    #[test]
    fn sgd_momentum_accumulates() {
        let mut p = [0.0];
        let mut sgd = HostSgd::new(1.0, 0.5);
        sgd.step(&mut p, &[1.0]);
        sgd.step(&mut p, &[1.0]);
        // Steps of 1 and 1.5.
        assert_eq!(p, [-2.5]);
    }
}

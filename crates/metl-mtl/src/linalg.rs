//! Small dense linear algebra in `f64` on the host, for the `T×T` problems of the
//! strategies (Gramians of `T ≤ a few hundred` task gradients).
//!
//! The gradients themselves stay on their device; only the Gramian `G = J Jᵀ` (one
//! matmul there) comes to the host, where every sub-problem is solved in double precision.

use crate::error::{MtlError, Result};
use tch::{Device, Kind, Tensor};

/// A square `n×n` matrix of `f64`, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Matrix {
    n: usize,
    data: Vec<f64>,
}

impl Matrix {
    /// The `n×n` zero matrix.
    pub fn zeros(n: usize) -> Self {
        Self { n, data: vec![0.0; n * n] }
    }

    /// The `n×n` identity.
    pub fn identity(n: usize) -> Self {
        let mut m = Self::zeros(n);
        for i in 0..n {
            m.set(i, i, 1.0);
        }
        m
    }

    /// A matrix from its rows (which must all have `rows.len()` entries).
    pub fn from_rows(rows: &[Vec<f64>]) -> Result<Self> {
        let n = rows.len();
        if rows.iter().any(|r| r.len() != n) {
            return Err(MtlError::Shape(format!("a {n}×{n} matrix needs {n} entries per row")));
        }
        Ok(Self { n, data: rows.concat() })
    }

    /// A square 2-D tensor (any kind, any device) copied to the host as `f64`.
    pub fn from_tensor(t: &Tensor) -> Result<Self> {
        let size = t.size();
        if size.len() != 2 || size[0] != size[1] {
            return Err(MtlError::Shape(format!("expected a square matrix, got shape {size:?}")));
        }
        let host = t.f_to_device(Device::Cpu)?.f_to_kind(Kind::Double)?.f_contiguous()?.f_view([-1])?;
        Ok(Self { n: size[0] as usize, data: Vec::<f64>::try_from(&host)? })
    }

    /// The matrix as a `Float` tensor on `device` (`[n, n]`).
    pub fn to_tensor(&self, device: Device) -> Tensor {
        Tensor::from_slice(&self.data)
            .view([self.n as i64, self.n as i64])
            .to_kind(Kind::Float)
            .to_device(device)
    }

    /// The dimension `n`.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Entry `(i, j)`.
    pub fn get(&self, i: usize, j: usize) -> f64 {
        self.data[i * self.n + j]
    }

    /// Sets entry `(i, j)`.
    pub fn set(&mut self, i: usize, j: usize, v: f64) {
        self.data[i * self.n + j] = v;
    }

    /// Row `i`.
    pub fn row(&self, i: usize) -> &[f64] {
        &self.data[i * self.n..(i + 1) * self.n]
    }

    /// The diagonal.
    pub fn diag(&self) -> Vec<f64> {
        (0..self.n).map(|i| self.get(i, i)).collect()
    }

    /// The trace.
    pub fn trace(&self) -> f64 {
        self.diag().iter().sum()
    }

    /// The mean of all entries.
    pub fn mean(&self) -> f64 {
        if self.n == 0 {
            0.0
        } else {
            self.data.iter().sum::<f64>() / (self.n * self.n) as f64
        }
    }

    /// The Frobenius norm.
    pub fn frobenius(&self) -> f64 {
        self.data.iter().map(|v| v * v).sum::<f64>().sqrt()
    }

    /// Whether every entry is finite.
    pub fn is_finite(&self) -> bool {
        self.data.iter().all(|v| v.is_finite())
    }

    /// `A x`.
    pub fn mul_vec(&self, x: &[f64]) -> Vec<f64> {
        (0..self.n).map(|i| dot(self.row(i), x)).collect()
    }

    /// `Aᵀ x`.
    pub fn mul_vec_t(&self, x: &[f64]) -> Vec<f64> {
        let mut out = vec![0.0; self.n];
        for (i, xi) in x.iter().enumerate() {
            for (o, a) in out.iter_mut().zip(self.row(i)) {
                *o += a * xi;
            }
        }
        out
    }

    /// `xᵀ A x`.
    pub fn quad(&self, x: &[f64]) -> f64 {
        dot(x, &self.mul_vec(x))
    }

    /// `A B`.
    pub fn matmul(&self, b: &Matrix) -> Matrix {
        let n = self.n;
        let mut out = Matrix::zeros(n);
        for i in 0..n {
            for k in 0..n {
                let a = self.get(i, k);
                if a != 0.0 {
                    for j in 0..n {
                        out.data[i * n + j] += a * b.data[k * n + j];
                    }
                }
            }
        }
        out
    }

    /// `Aᵀ`.
    pub fn transpose(&self) -> Matrix {
        let mut out = Matrix::zeros(self.n);
        for i in 0..self.n {
            for j in 0..self.n {
                out.set(j, i, self.get(i, j));
            }
        }
        out
    }

    /// `s · A`.
    pub fn scaled(&self, s: f64) -> Matrix {
        Matrix { n: self.n, data: self.data.iter().map(|v| v * s).collect() }
    }

    /// `A + s · I`.
    pub fn add_diag(&self, s: f64) -> Matrix {
        let mut out = self.clone();
        for i in 0..self.n {
            out.data[i * self.n + i] += s;
        }
        out
    }

    /// `D A D` for the diagonal matrix `D = diag(d)` (rescaled rows and columns).
    pub fn scale_rows_cols(&self, d: &[f64]) -> Matrix {
        let mut out = self.clone();
        for i in 0..self.n {
            for j in 0..self.n {
                out.data[i * self.n + j] *= d[i] * d[j];
            }
        }
        out
    }

    /// The sub-matrix of rows and columns `idx`.
    pub fn select(&self, idx: &[usize]) -> Matrix {
        let mut out = Matrix::zeros(idx.len());
        for (a, &i) in idx.iter().enumerate() {
            for (b, &j) in idx.iter().enumerate() {
                out.set(a, b, self.get(i, j));
            }
        }
        out
    }

    /// `Σ_r r rᵀ` over `rows` of length `n` (the Gram matrix `RᵀR` of the rows' matrix).
    pub fn gram_of_rows(rows: &[Vec<f64>], n: usize) -> Matrix {
        let mut out = Matrix::zeros(n);
        for r in rows {
            for (a, &ra) in r.iter().enumerate() {
                if ra != 0.0 {
                    let dst = &mut out.data[a * n..a * n + n];
                    for (d, rb) in dst[a..].iter_mut().zip(&r[a..]) {
                        *d += ra * rb;
                    }
                }
            }
        }
        for a in 0..n {
            for b in 0..a {
                out.data[a * n + b] = out.data[b * n + a];
            }
        }
        out
    }

    /// The lower Cholesky factor `L` (`A = L Lᵀ`) of a symmetric positive-definite matrix,
    /// or `None` when a pivot is not positive.
    pub fn cholesky(&self) -> Option<Matrix> {
        let n = self.n;
        let mut l = Matrix::zeros(n);
        for i in 0..n {
            for j in 0..=i {
                let s = self.get(i, j) - (0..j).map(|k| l.get(i, k) * l.get(j, k)).sum::<f64>();
                if i == j {
                    if s <= 0.0 || !s.is_finite() {
                        return None;
                    }
                    l.set(i, i, s.sqrt());
                } else {
                    l.set(i, j, s / l.get(j, j));
                }
            }
        }
        Some(l)
    }

    /// Solves `A x = b` for symmetric positive-definite `A` (Cholesky), `None` if `A` is
    /// not positive definite.
    pub fn solve_spd(&self, b: &[f64]) -> Option<Vec<f64>> {
        let l = self.cholesky()?;
        Some(cholesky_solve(&l, b))
    }

    /// Solves `A x = b` by Gaussian elimination with partial pivoting; `None` when `A` is
    /// singular to working precision.
    pub fn solve(&self, b: &[f64]) -> Option<Vec<f64>> {
        let n = self.n;
        let mut a = self.data.clone();
        let mut x = b.to_vec();
        let scale = self.data.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(f64::MIN_POSITIVE);
        for col in 0..n {
            let pivot = (col..n).max_by(|&i, &j| a[i * n + col].abs().total_cmp(&a[j * n + col].abs()))?;
            if a[pivot * n + col].abs() <= 1e-14 * scale {
                return None;
            }
            if pivot != col {
                for k in 0..n {
                    a.swap(pivot * n + k, col * n + k);
                }
                x.swap(pivot, col);
            }
            for row in col + 1..n {
                let f = a[row * n + col] / a[col * n + col];
                if f != 0.0 {
                    for k in col..n {
                        a[row * n + k] -= f * a[col * n + k];
                    }
                    x[row] -= f * x[col];
                }
            }
        }
        for row in (0..n).rev() {
            let s: f64 = (row + 1..n).map(|k| a[row * n + k] * x[k]).sum();
            x[row] = (x[row] - s) / a[row * n + row];
        }
        Some(x)
    }

    /// Eigen-decomposition of a symmetric matrix by cyclic Jacobi rotations: eigenvalues
    /// (ascending) and the matrix whose columns are the matching unit eigenvectors.
    ///
    /// Sweeps until the off-diagonal mass is below `1e-15` of the Frobenius norm
    /// (at most 100 sweeps; Jacobi converges quadratically, 10 are typical at `n = 40`).
    pub fn symmetric_eigen(&self) -> (Vec<f64>, Matrix) {
        let n = self.n;
        let mut a = self.clone();
        let mut v = Matrix::identity(n);
        let norm = self.frobenius();
        for _sweep in 0..100 {
            let off: f64 = (0..n)
                .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
                .map(|(i, j)| a.get(i, j).powi(2))
                .sum();
            if off.sqrt() <= 1e-15 * norm || norm == 0.0 {
                break;
            }
            for p in 0..n {
                for q in p + 1..n {
                    let apq = a.get(p, q);
                    if apq == 0.0 {
                        continue;
                    }
                    let theta = (a.get(q, q) - a.get(p, p)) / (2.0 * apq);
                    let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                    let t = if theta == 0.0 { 1.0 } else { t };
                    let c = 1.0 / (t * t + 1.0).sqrt();
                    let s = t * c;
                    for k in 0..n {
                        let (akp, akq) = (a.get(k, p), a.get(k, q));
                        a.set(k, p, c * akp - s * akq);
                        a.set(k, q, s * akp + c * akq);
                    }
                    for k in 0..n {
                        let (apk, aqk) = (a.get(p, k), a.get(q, k));
                        a.set(p, k, c * apk - s * aqk);
                        a.set(q, k, s * apk + c * aqk);
                    }
                    for k in 0..n {
                        let (vkp, vkq) = (v.get(k, p), v.get(k, q));
                        v.set(k, p, c * vkp - s * vkq);
                        v.set(k, q, s * vkp + c * vkq);
                    }
                }
            }
        }
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&i, &j| a.get(i, i).total_cmp(&a.get(j, j)));
        let values = order.iter().map(|&i| a.get(i, i)).collect();
        let mut vectors = Matrix::zeros(n);
        for (col, &i) in order.iter().enumerate() {
            for k in 0..n {
                vectors.set(k, col, v.get(k, i));
            }
        }
        (values, vectors)
    }

    /// The Moore–Penrose pseudo-inverse of a symmetric matrix: eigenvalues below
    /// `rtol · max|λ|` are treated as zero (`torch.linalg.pinv(hermitian=True)` semantics).
    pub fn pinv_symmetric(&self, rtol: f64) -> Matrix {
        let (values, vectors) = self.symmetric_eigen();
        let cutoff = rtol * values.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let n = self.n;
        let mut out = Matrix::zeros(n);
        for (k, &lambda) in values.iter().enumerate() {
            if lambda.abs() > cutoff && lambda != 0.0 {
                for i in 0..n {
                    for j in 0..n {
                        out.data[i * n + j] += vectors.get(i, k) * vectors.get(j, k) / lambda;
                    }
                }
            }
        }
        out
    }
}

/// Solves `L Lᵀ x = b` given the lower Cholesky factor `L`.
pub fn cholesky_solve(l: &Matrix, b: &[f64]) -> Vec<f64> {
    let n = l.n();
    let mut y = b.to_vec();
    for i in 0..n {
        let s: f64 = (0..i).map(|k| l.get(i, k) * y[k]).sum();
        y[i] = (y[i] - s) / l.get(i, i);
    }
    for i in (0..n).rev() {
        let s: f64 = (i + 1..n).map(|k| l.get(k, i) * y[k]).sum();
        y[i] = (y[i] - s) / l.get(i, i);
    }
    y
}

/// `Σ aᵢ bᵢ`.
pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// `‖a‖₂`.
pub fn norm(a: &[f64]) -> f64 {
    dot(a, a).sqrt()
}

/// `softmax(a)`, computed stably.
pub fn softmax(a: &[f64]) -> Vec<f64> {
    let max = a.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v));
    let exp: Vec<f64> = a.iter().map(|v| (v - max).exp()).collect();
    let sum: f64 = exp.iter().sum();
    exp.iter().map(|e| e / sum).collect()
}

/// `(diag(p) − p pᵀ) g`: the gradient through `p = softmax(w)` of a function with gradient
/// `g` with respect to `p` (what autograd gives for `∂/∂w`).
pub fn softmax_backward(p: &[f64], g: &[f64]) -> Vec<f64> {
    let pg = dot(p, g);
    p.iter().zip(g).map(|(pi, gi)| pi * (gi - pg)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Matrix {
        Matrix::from_rows(&[vec![4.0, 1.0, 0.5], vec![1.0, 3.0, -0.2], vec![0.5, -0.2, 2.0]]).unwrap()
    }

    #[test]
    fn eigen_reconstructs_the_matrix() {
        let a = sample();
        let (values, v) = a.symmetric_eigen();
        assert!(values.windows(2).all(|w| w[0] <= w[1]));
        for i in 0..3 {
            for j in 0..3 {
                let r: f64 = (0..3).map(|k| v.get(i, k) * values[k] * v.get(j, k)).sum();
                assert!((r - a.get(i, j)).abs() < 1e-12, "{r} vs {}", a.get(i, j));
            }
        }
        // Trace is the sum of the eigenvalues.
        assert!((values.iter().sum::<f64>() - a.trace()).abs() < 1e-12);
    }

    #[test]
    fn solvers_agree() {
        let a = sample();
        let b = [1.0, -2.0, 0.5];
        let x1 = a.solve_spd(&b).unwrap();
        let x2 = a.solve(&b).unwrap();
        let x3 = a.pinv_symmetric(1e-12).mul_vec(&b);
        for i in 0..3 {
            assert!((x1[i] - x2[i]).abs() < 1e-12 && (x1[i] - x3[i]).abs() < 1e-12);
        }
        let back = a.mul_vec(&x1);
        assert!(back.iter().zip(&b).all(|(u, v)| (u - v).abs() < 1e-12));
    }

    #[test]
    fn pinv_of_a_rank_one_matrix() {
        // G = g gᵀ with g = (1, 2): pinv = g gᵀ / ‖g‖⁴.
        let g = Matrix::from_rows(&[vec![1.0, 2.0], vec![2.0, 4.0]]).unwrap();
        let p = g.pinv_symmetric(1e-10);
        for (i, j) in [(0, 0), (0, 1), (1, 1)] {
            assert!((p.get(i, j) - g.get(i, j) / 25.0).abs() < 1e-12);
        }
        assert!(g.cholesky().is_none());
        assert!(g.solve(&[1.0, 1.0]).is_none());
    }

    #[test]
    fn softmax_gradient_matches_finite_differences() {
        let w = [0.3, -1.0, 2.0];
        let g = [1.0, 0.5, -0.25];
        let analytic = softmax_backward(&softmax(&w), &g);
        for i in 0..3 {
            let mut wp = w;
            wp[i] += 1e-6;
            let mut wm = w;
            wm[i] -= 1e-6;
            let fd = (dot(&softmax(&wp), &g) - dot(&softmax(&wm), &g)) / 2e-6;
            assert!((fd - analytic[i]).abs() < 1e-8);
        }
    }
}

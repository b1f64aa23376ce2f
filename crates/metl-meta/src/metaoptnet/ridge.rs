//! MetaOptNet's ridge-regression base learner: a linear classifier fitted in closed form
//! to the one-hot labels of the support embeddings.
//!
//! For support embeddings `X` `[S, D]` with one-hot labels `Y` `[S, N]`, ridge regression
//! `min_W ‖XW − Y‖² + λ‖W‖²` has the solution
//!
//! ```text
//! W = (XᵀX + λI_D)⁻¹ XᵀY = Xᵀ (XXᵀ + λI_S)⁻¹ Y           (the Woodbury / dual form),
//! logits(Q) = Q W = (QXᵀ) (K + λI_S)⁻¹ Y,   K = XXᵀ.
//! ```
//!
//! The dual form needs one `S × S` system per episode however wide the embedding (`S` is
//! tens, `D` up to 16,000 for ResNet-12), solved by a Cholesky factorisation of the
//! positive definite `K + λI`; libtorch differentiates `cholesky` and `cholesky_solve`, so
//! the gradient reaches the embeddings. There is no bias, as in Lee et al.

use tch::Tensor;

/// Ridge-regression logits `[T, Q, N]` of query embeddings `[T, Q, D]` from support
/// embeddings `[T, S, D]` and their one-hot labels `[T, S, N]` (see the
/// [module documentation](self)), with regulariser `lambda` > 0.
pub fn ridge_logits(support: &Tensor, labels: &Tensor, query: &Tensor, lambda: f64) -> Tensor {
    let shots = support.size()[1];
    let support_t = support.transpose(1, 2);
    let gram = support.matmul(&support_t);
    let eye = Tensor::eye(shots, (support.kind(), support.device()));
    let factor = (gram + eye * lambda).linalg_cholesky(false);
    let dual = labels.cholesky_solve(&factor, false);
    query.matmul(&support_t).matmul(&dual)
}

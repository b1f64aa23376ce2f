"""MAML on sinusoid regression (Finn et al. 2017) in PyTorch: metl's reference workload.

MLP 1-40-40-1 (ReLU), K = 10 support and 10 query points, meta-batch 25, one inner SGD
step of 0.01, Adam 1e-3 outside; amplitudes U[0.1, 5], phases U[0, pi], x U[-5, 5].
`--first-order` drops the Hessian terms. Three implementations of the same meta-gradient
(maml.py):
  func  a loop over tasks, torch.func.functional_call and torch.autograd.grad
  vmap  all tasks at once, torch.func.vmap over torch.func.grad
  l2l   learn2learn's MAML wrapper (clone / adapt)
Evaluation (unless --skip-eval): test MSE on 100 points of 1000 new tasks after 0, 1 and 10
steps. Result keys: meta_iters_per_s, windows_s, peak_rss_mb, test_mse.
"""
import math

import torch
from torch.func import functional_call

import common
import maml

MSE = torch.nn.functional.mse_loss


def sample(n, k, generator, queries=None):
    """n tasks: k support and `queries` (default k) query points each."""
    q = k if queries is None else queries
    amp = torch.empty(n, 1, 1).uniform_(0.1, 5.0, generator=generator)
    phase = torch.empty(n, 1, 1).uniform_(0.0, math.pi, generator=generator)
    x = torch.empty(n, k + q, 1).uniform_(-5.0, 5.0, generator=generator)
    y = amp * torch.sin(x - phase)
    return x[:, :k], y[:, :k], x[:, k:], y[:, k:]


def model():
    return torch.nn.Sequential(
        torch.nn.Linear(1, 40), torch.nn.ReLU(), torch.nn.Linear(40, 40), torch.nn.ReLU(), torch.nn.Linear(40, 1)
    )


def main():
    p = common.parser(__doc__.splitlines()[0], warmup=50, window=200)
    maml.add_flags(p, meta_batch=25, inner_lr=0.01)
    p.add_argument("--shots", type=int, default=10)
    p.add_argument("--test-tasks", type=int, default=1000)
    args = p.parse_args()
    common.setup(args)
    net = model()
    generator = torch.Generator().manual_seed(args.seed)
    rate, windows, total, ops = maml.train(args, net, MSE, lambda: sample(args.meta_batch, args.shots, generator))
    result = {"workload": "maml_sinusoid", "impl": args.impl, "first_order": args.first_order,
              "iterations": total, "meta_iters_per_s": rate, "windows_s": windows, **ops}
    if not args.skip_eval:
        test = torch.Generator().manual_seed(args.test_seed)
        mse = {0: [], 1: [], 10: []}
        for _ in range(args.test_tasks // 100):
            xs, ys, xq, yq = sample(100, args.shots, test, queries=100)
            for i in range(100):
                for steps in mse:
                    fast = maml.adapt_detached(net, MSE, xs[i], ys[i], args.inner_lr, steps)
                    with torch.no_grad():
                        mse[steps].append(MSE(functional_call(net, fast, (xq[i],)), yq[i]).item())
        result["test_mse"] = {str(k): common.mean_ci95(v) for k, v in mse.items()}
    common.finish(args, "maml_sinusoid", result)


if __name__ == "__main__":
    main()

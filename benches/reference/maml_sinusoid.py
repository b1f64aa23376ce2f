"""MAML on sinusoid regression (Finn et al. 2017) in PyTorch: metl's reference workload.

MLP 1-40-40-1 (ReLU), K = 10 support and 10 query points, meta-batch 25, one inner SGD
step of 0.01, Adam 1e-3 outside; amplitudes U[0.1, 5], phases U[0, pi], x U[-5, 5].
`--first-order` drops the Hessian terms. Three implementations of the same meta-gradient:
  func  a loop over tasks, torch.func.functional_call and torch.autograd.grad
  vmap  all tasks at once, torch.func.vmap over torch.func.grad
  l2l   learn2learn's MAML wrapper (clone / adapt)
Evaluation (unless --skip-eval): test MSE on 100 points of 1000 new tasks after 0, 1 and 10
steps. Result keys: meta_iters_per_s, windows_s, peak_rss_mb, test_mse.
"""
import math

import torch
from torch.func import functional_call, grad, vmap

import common


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


def adapt_func(net, params, x, y, lr, steps, create_graph):
    for _ in range(steps):
        loss = torch.nn.functional.mse_loss(functional_call(net, params, (x,)), y)
        grads = torch.autograd.grad(loss, list(params.values()), create_graph=create_graph)
        params = {n: p - lr * g for (n, p), g in zip(params.items(), grads)}
    return params


def meta_loss_func(net, xs, ys, xq, yq, lr, first_order):
    params = dict(net.named_parameters())
    total = 0.0
    for i in range(xs.shape[0]):
        fast = adapt_func(net, params, xs[i], ys[i], lr, 1, not first_order)
        total = total + torch.nn.functional.mse_loss(functional_call(net, fast, (xq[i],)), yq[i])
    return total / xs.shape[0]


def meta_loss_vmap(net, xs, ys, xq, yq, lr, first_order):
    params = dict(net.named_parameters())

    def support_loss(p, x, y):
        return torch.nn.functional.mse_loss(functional_call(net, p, (x,)), y)

    def query_loss(p, x, y, xq_, yq_):
        g = grad(support_loss)(p, x, y)
        if first_order:
            g = {n: v.detach() for n, v in g.items()}
        fast = {n: p[n] - lr * g[n] for n in p}
        return torch.nn.functional.mse_loss(functional_call(net, fast, (xq_,)), yq_)

    return vmap(query_loss, in_dims=(None, 0, 0, 0, 0))(params, xs, ys, xq, yq).mean()


def meta_loss_l2l(maml, xs, ys, xq, yq):
    total = 0.0
    for i in range(xs.shape[0]):
        learner = maml.clone()
        learner.adapt(torch.nn.functional.mse_loss(learner(xs[i]), ys[i]))
        total = total + torch.nn.functional.mse_loss(learner(xq[i]), yq[i])
    return total / xs.shape[0]


def main():
    p = common.parser(__doc__.splitlines()[0], warmup=50, window=200)
    p.add_argument("--impl", choices=["func", "vmap", "l2l"], default="func")
    p.add_argument("--first-order", action="store_true")
    p.add_argument("--meta-batch", type=int, default=25)
    p.add_argument("--shots", type=int, default=10)
    p.add_argument("--inner-lr", type=float, default=0.01)
    p.add_argument("--outer-lr", type=float, default=1e-3)
    p.add_argument("--test-tasks", type=int, default=1000)
    args = p.parse_args()
    common.setup(args)
    net = model()
    generator = torch.Generator().manual_seed(args.seed)
    if args.impl == "l2l":
        import learn2learn as l2l

        maml = l2l.algorithms.MAML(net, lr=args.inner_lr, first_order=args.first_order)
        opt = torch.optim.Adam(maml.parameters(), args.outer_lr)
    else:
        opt = torch.optim.Adam(net.parameters(), args.outer_lr)
    meta_loss = {"func": meta_loss_func, "vmap": meta_loss_vmap}.get(args.impl)

    timer = common.Timer(args.warmup, args.window)
    total = timer.total(args.iters)
    for it in range(total):
        timer.tick(it)
        xs, ys, xq, yq = sample(args.meta_batch, args.shots, generator)
        if args.impl == "l2l":
            loss = meta_loss_l2l(maml, xs, ys, xq, yq)
        else:
            loss = meta_loss(net, xs, ys, xq, yq, args.inner_lr, args.first_order)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if args.log_every and (it + 1) % args.log_every == 0:
            print(f"iteration {it + 1}: meta-loss {loss.item():.4f}", flush=True)
    timer.tick(total)
    rate, windows = timer.per_second()
    result = {"workload": "maml_sinusoid", "impl": args.impl, "first_order": args.first_order,
              "iterations": total, "meta_iters_per_s": rate, "windows_s": windows}
    if not args.skip_eval:
        test = torch.Generator().manual_seed(args.test_seed)
        mse = {0: [], 1: [], 10: []}
        params = dict(net.named_parameters())
        for _ in range(args.test_tasks // 100):
            xs, ys, xq, yq = sample(100, args.shots, test, queries=100)
            for i in range(100):
                for steps in mse:
                    fast = adapt_func(net, {n: v.detach().requires_grad_() for n, v in params.items()},
                                      xs[i], ys[i], args.inner_lr, steps, False)
                    with torch.no_grad():
                        mse[steps].append(torch.nn.functional.mse_loss(functional_call(net, fast, (xq[i],)), yq[i]).item())
        result["test_mse"] = {str(k): common.mean_ci95(v) for k, v in mse.items()}
    common.finish(args, "maml_sinusoid", result)


if __name__ == "__main__":
    main()

"""The MAML machinery the two MAML reference workloads share: the three implementations of
the same meta-gradient (func, vmap, l2l), the timed meta-training loop and adaptation for
evaluation; each workload brings its model, its task sampler and its loss."""
import torch
from torch.func import functional_call, grad, vmap

import common


def add_flags(p, meta_batch, inner_lr):
    p.add_argument("--impl", choices=["func", "vmap", "l2l"], default="func")
    p.add_argument("--first-order", action="store_true")
    p.add_argument("--meta-batch", type=int, default=meta_batch)
    p.add_argument("--inner-lr", type=float, default=inner_lr)
    p.add_argument("--outer-lr", type=float, default=1e-3)
    p.add_argument("--count-ops", type=int, default=0, metavar="N",
                   help="after the timed loop, count the operators of N more iterations (torch.profiler)")


def adapt(net, loss, params, x, y, lr, steps, create_graph):
    """`steps` SGD steps of `loss` from `params` (a dict), differentiable if `create_graph`."""
    for _ in range(steps):
        value = loss(functional_call(net, params, (x,)), y)
        grads = torch.autograd.grad(value, list(params.values()), create_graph=create_graph)
        params = {n: p - lr * g for (n, p), g in zip(params.items(), grads)}
    return params


def adapt_detached(net, loss, x, y, lr, steps):
    """Fast weights for evaluation: `steps` first-order steps from the current weights."""
    params = {n: v.detach().requires_grad_() for n, v in net.named_parameters()}
    return adapt(net, loss, params, x, y, lr, steps, False)


def _meta_loss_func(net, loss, xs, ys, xq, yq, lr, first_order):
    params = dict(net.named_parameters())
    total = 0.0
    for i in range(xs.shape[0]):
        fast = adapt(net, loss, params, xs[i], ys[i], lr, 1, not first_order)
        total = total + loss(functional_call(net, fast, (xq[i],)), yq[i])
    return total / xs.shape[0]


def _meta_loss_vmap(net, loss, xs, ys, xq, yq, lr, first_order):
    params = dict(net.named_parameters())

    def support_loss(p, x, y):
        return loss(functional_call(net, p, (x,)), y)

    def query_loss(p, x, y, xq_, yq_):
        g = grad(support_loss)(p, x, y)
        if first_order:
            g = {n: v.detach() for n, v in g.items()}
        fast = {n: p[n] - lr * g[n] for n in p}
        return loss(functional_call(net, fast, (xq_,)), yq_)

    return vmap(query_loss, in_dims=(None, 0, 0, 0, 0), randomness="same")(params, xs, ys, xq, yq).mean()


def _meta_loss_l2l(maml, loss, xs, ys, xq, yq):
    total = 0.0
    for i in range(xs.shape[0]):
        learner = maml.clone()
        learner.adapt(loss(learner(xs[i]), ys[i]))
        total = total + loss(learner(xq[i]), yq[i])
    return total / xs.shape[0]


def train(args, net, loss, sample):
    """Meta-trains `net` with `args.impl` on meta-batches from `sample()` (support x, y, query
    x, y, task-stacked) under the timing protocol; returns (meta-iterations/s, windows,
    iterations run)."""
    if args.impl == "l2l":
        import learn2learn as l2l

        maml = l2l.algorithms.MAML(net, lr=args.inner_lr, first_order=args.first_order)
        opt = torch.optim.Adam(maml.parameters(), args.outer_lr)
        meta_loss = lambda *batch: _meta_loss_l2l(maml, loss, *batch)  # noqa: E731
    else:
        opt = torch.optim.Adam(net.parameters(), args.outer_lr)
        impl = {"func": _meta_loss_func, "vmap": _meta_loss_vmap}[args.impl]
        meta_loss = lambda *batch: impl(net, loss, *batch, args.inner_lr, args.first_order)  # noqa: E731
    timer = common.Timer(args.warmup, args.window)
    total = timer.total(args.iters)

    def step():
        value = meta_loss(*sample())
        opt.zero_grad()
        value.backward()
        opt.step()
        return value

    for it in range(total):
        timer.tick(it)
        value = step()
        if args.log_every and (it + 1) % args.log_every == 0:
            print(f"iteration {it + 1}: meta-loss {value.item():.4f}", flush=True)
    timer.tick(total)
    rate, windows = timer.per_second()
    return rate, windows, total, count_operators(step, args.count_ops)


def count_operators(step, iterations):
    """Operators (aten::* events, nested ones included) and autograd nodes per iteration of
    `step`, from torch.profiler over `iterations` iterations; empty when 0."""
    if iterations <= 0:
        return {}
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(iterations):
            step()
    names = [e.name for e in prof.events()]
    return {
        "operators_per_iteration": sum(n.startswith("aten::") for n in names) / iterations,
        "autograd_nodes_per_iteration": sum(n.startswith("autograd::engine::evaluate_function") for n in names)
        / iterations,
    }

"""MAML on Omniglot 5-way 1-shot (Finn et al. 2017) in PyTorch: metl's reference workload.

Conv4 with a linear head (64 channels, batch norm on batch statistics), 28x28 images,
background characters with their four rotations as classes; meta-batch 32 episodes of 5
ways, 1 shot and 15 queries per class; one inner SGD step of 0.4 (three at test); Adam
1e-3 outside. `--first-order` drops the Hessian terms. Implementations:
  func  a loop over tasks, torch.func.functional_call and torch.autograd.grad
  vmap  all tasks at once, torch.func.vmap over torch.func.grad
  l2l   learn2learn's MAML wrapper (clone / adapt)
Evaluation (unless --skip-eval): 5-way 1-shot accuracy on the evaluation characters after
1 and 3 steps over --test-episodes episodes, with 95% intervals.
Result keys: meta_iters_per_s, windows_s, peak_rss_mb, accuracy.
"""
import torch
from torch.func import functional_call, grad, vmap

import common

F = torch.nn.functional


def adapt(net, params, x, y, lr, steps, create_graph):
    for _ in range(steps):
        loss = F.cross_entropy(functional_call(net, params, (x,)), y)
        grads = torch.autograd.grad(loss, list(params.values()), create_graph=create_graph)
        params = {n: p - lr * g for (n, p), g in zip(params.items(), grads)}
    return params


def meta_loss_func(net, xs, ys, xq, yq, lr, first_order):
    params = dict(net.named_parameters())
    total = 0.0
    for i in range(xs.shape[0]):
        fast = adapt(net, params, xs[i], ys[i], lr, 1, not first_order)
        total = total + F.cross_entropy(functional_call(net, fast, (xq[i],)), yq[i])
    return total / xs.shape[0]


def meta_loss_vmap(net, xs, ys, xq, yq, lr, first_order):
    params = dict(net.named_parameters())

    def support_loss(p, x, y):
        return F.cross_entropy(functional_call(net, p, (x,)), y)

    def query_loss(p, x, y, xq_, yq_):
        g = grad(support_loss)(p, x, y)
        if first_order:
            g = {n: v.detach() for n, v in g.items()}
        fast = {n: p[n] - lr * g[n] for n in p}
        return F.cross_entropy(functional_call(net, fast, (xq_,)), yq_)

    return vmap(query_loss, in_dims=(None, 0, 0, 0, 0), randomness="same")(params, xs, ys, xq, yq).mean()


def meta_loss_l2l(maml, xs, ys, xq, yq):
    total = 0.0
    for i in range(xs.shape[0]):
        learner = maml.clone()
        learner.adapt(F.cross_entropy(learner(xs[i]), ys[i]))
        total = total + F.cross_entropy(learner(xq[i]), yq[i])
    return total / xs.shape[0]


def main():
    p = common.parser(__doc__.splitlines()[0], warmup=2, window=5)
    p.add_argument("--impl", choices=["func", "vmap", "l2l"], default="func")
    p.add_argument("--first-order", action="store_true")
    common.add_data_dir(p)
    p.add_argument("--meta-batch", type=int, default=32)
    p.add_argument("--ways", type=int, default=5)
    p.add_argument("--shots", type=int, default=1)
    p.add_argument("--queries", type=int, default=15)
    p.add_argument("--inner-lr", type=float, default=0.4)
    p.add_argument("--outer-lr", type=float, default=1e-3)
    p.add_argument("--test-episodes", type=int, default=600)
    args = p.parse_args()
    common.setup(args)
    background, evaluation = common.omniglot(args.data_dir)
    train = common.Episodes(background, rotations=True, seed=args.seed)
    net = common.conv4(out=args.ways)
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
        xs, ys, xq, yq = train.sample(args.meta_batch, args.ways, args.shots, args.queries)
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
    result = {"workload": "maml_omniglot", "impl": args.impl, "first_order": args.first_order,
              "iterations": total, "meta_iters_per_s": rate, "windows_s": windows}
    if not args.skip_eval:
        test = common.Episodes(evaluation, rotations=False, seed=args.test_seed)
        params = dict(net.named_parameters())
        hits = {1: [], 3: []}
        for _ in range(args.test_episodes):
            xs, ys, xq, yq = test.sample(1, args.ways, args.shots, args.queries)
            for steps in hits:
                fast = adapt(net, {n: v.detach().requires_grad_() for n, v in params.items()},
                             xs[0], ys[0], args.inner_lr, steps, False)
                with torch.no_grad():
                    hits[steps].append((functional_call(net, fast, (xq[0],)).argmax(1) == yq[0]).float().mean().item())
        result["accuracy"] = {f"{k}step": common.mean_ci95(v) for k, v in hits.items()}
    common.finish(args, "maml_omniglot", result)


if __name__ == "__main__":
    main()

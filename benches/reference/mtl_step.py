"""One multi-task training step in PyTorch: metl's reference workload.

A shared MLP trunk 64 -> 256 -> 256 (ReLU), T linear heads 256 -> 1, a batch of 256 inputs
with T regression targets, Adam 1e-3. Methods:
  equal   the sum of the task losses, one backward pass
  pcgrad  T backward passes for the trunk's per-task gradients, each projected away from the
          others it conflicts with (random order, Yu et al. 2020); heads get their own
          gradients
  mgda    MGDA-UB: per-task gradients of the shared representation (one backward pass
          each through the heads only), min-norm weights by 20 Frank-Wolfe iterations
          (Sener & Koltun 2018), then one backward pass of the weighted loss
Result keys: results[i].{method, tasks, steps_per_s, ms_per_step}, peak_rss_mb.
"""
import torch

import common


class Net(torch.nn.Module):
    def __init__(self, tasks):
        super().__init__()
        self.trunk = torch.nn.Sequential(
            torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 256), torch.nn.ReLU()
        )
        self.heads = torch.nn.ModuleList(torch.nn.Linear(256, 1) for _ in range(tasks))

    def forward(self, x):
        z = self.trunk(x)
        return z, [h(z) for h in self.heads]


def frank_wolfe(gram, iters=20):
    """Min-norm point of the convex hull of the gradients whose Gramian is `gram`."""
    t = gram.shape[0]
    w = torch.full((t,), 1.0 / t, dtype=gram.dtype)
    for _ in range(iters):
        gw = gram @ w
        i = int(torch.argmin(gw))
        a, b, c = w @ gw, gw[i], gram[i, i]  # |v|^2, <v, g_i>, |g_i|^2
        denom = a - 2 * b + c
        gamma = 1.0 if denom <= 0 else float(((a - b) / denom).clamp(0.0, 1.0))
        if gamma == 0.0:
            break
        w = (1 - gamma) * w
        w[i] += gamma
    return w


def step(method, net, opt, x, ys, generator):
    opt.zero_grad()
    z, outs = net(x)
    losses = [torch.nn.functional.mse_loss(o, y) for o, y in zip(outs, ys)]
    shared = list(net.trunk.parameters())
    if method == "equal":
        sum(losses).backward()
    elif method == "pcgrad":
        grads = []
        for i, loss in enumerate(losses):
            g = torch.autograd.grad(loss, shared + list(net.heads[i].parameters()), retain_graph=True)
            for p, gi in zip(net.heads[i].parameters(), g[len(shared):]):
                p.grad = gi
            grads.append(torch.cat([gi.reshape(-1) for gi in g[: len(shared)]]))
        grads = torch.stack(grads)
        projected = grads.clone()
        for i in range(len(losses)):
            for j in torch.randperm(len(losses), generator=generator).tolist():
                if j == i:
                    continue
                dot = projected[i] @ grads[j]
                if dot < 0:
                    projected[i] -= dot / (grads[j] @ grads[j]) * grads[j]
        total = projected.sum(0)
        offset = 0
        for p in shared:
            p.grad = total[offset: offset + p.numel()].view_as(p).clone()
            offset += p.numel()
    elif method == "mgda":
        zd = z.detach().requires_grad_()
        reps = []
        for h, y in zip(net.heads, ys):
            (g,) = torch.autograd.grad(torch.nn.functional.mse_loss(h(zd), y), zd)
            reps.append(g.reshape(-1))
        reps = torch.stack(reps)
        w = frank_wolfe((reps @ reps.T).double())
        sum(float(wi) * loss for wi, loss in zip(w, losses)).backward()
    opt.step()


def main():
    p = common.parser(__doc__.splitlines()[0], warmup=20, window=100)
    p.add_argument("--tasks", type=int, nargs="+", default=[2, 10, 40])
    p.add_argument("--methods", nargs="+", choices=["equal", "pcgrad", "mgda"], default=["equal", "pcgrad", "mgda"])
    p.add_argument("--batch", type=int, default=256)
    args = p.parse_args()
    common.setup(args)
    generator = torch.Generator().manual_seed(args.seed)
    results = []
    for tasks in args.tasks:
        for method in args.methods:
            torch.manual_seed(args.seed)
            net = Net(tasks)
            opt = torch.optim.Adam(net.parameters(), 1e-3)
            w = torch.randn(64, tasks, generator=generator)
            timer = common.Timer(args.warmup, args.window)
            total = timer.total(args.iters)
            for it in range(total):
                timer.tick(it)
                x = torch.randn(args.batch, 64, generator=generator)
                targets = torch.tanh(x @ w)
                step(method, net, opt, x, [targets[:, t: t + 1] for t in range(tasks)], generator)
            timer.tick(total)
            rate, windows = timer.per_second()
            results.append({"method": method, "tasks": tasks, "steps_per_s": rate, "ms_per_step": 1000.0 / rate,
                            "windows_s": windows})
            print(f"{method}, T={tasks}: {rate:.1f} steps/s", flush=True)
    common.finish(args, "mtl_step", {"workload": "mtl_step", "batch": args.batch, "results": results})


if __name__ == "__main__":
    main()

"""MAML on Omniglot 5-way 1-shot (Finn et al. 2017) in PyTorch: metl's reference workload.

Conv4 with a linear head (64 channels, batch norm on batch statistics), 28x28 images,
background characters with their four rotations as classes; meta-batch 32 episodes of 5
ways, 1 shot and 15 queries per class; one inner SGD step of 0.4 (three at test); Adam
1e-3 outside. `--first-order` drops the Hessian terms. Implementations (maml.py):
  func  a loop over tasks, torch.func.functional_call and torch.autograd.grad
  vmap  all tasks at once, torch.func.vmap over torch.func.grad
  l2l   learn2learn's MAML wrapper (clone / adapt)
Evaluation (unless --skip-eval): 5-way 1-shot accuracy on the evaluation characters after
1 and 3 steps over --test-episodes episodes, with 95% intervals.
Result keys: meta_iters_per_s, windows_s, peak_rss_mb, accuracy.
"""
import torch
from torch.func import functional_call

import common
import maml

CE = torch.nn.functional.cross_entropy


def main():
    p = common.parser(__doc__.splitlines()[0], warmup=2, window=5)
    maml.add_flags(p, meta_batch=32, inner_lr=0.4)
    common.add_data_dir(p)
    p.add_argument("--ways", type=int, default=5)
    p.add_argument("--shots", type=int, default=1)
    p.add_argument("--queries", type=int, default=15)
    p.add_argument("--test-episodes", type=int, default=600)
    args = p.parse_args()
    common.setup(args)
    background, evaluation = common.omniglot(args.data_dir)
    train = common.Episodes(background, rotations=True, seed=args.seed)
    net = common.conv4(out=args.ways)
    rate, windows, total, ops = maml.train(
        args, net, CE, lambda: train.sample(args.meta_batch, args.ways, args.shots, args.queries)
    )
    result = {"workload": "maml_omniglot", "impl": args.impl, "first_order": args.first_order,
              "iterations": total, "meta_iters_per_s": rate, "windows_s": windows, **ops}
    if not args.skip_eval:
        test = common.Episodes(evaluation, rotations=False, seed=args.test_seed)
        hits = {1: [], 3: []}
        for _ in range(args.test_episodes):
            xs, ys, xq, yq = test.sample(1, args.ways, args.shots, args.queries)
            for steps in hits:
                fast = maml.adapt_detached(net, CE, xs[0], ys[0], args.inner_lr, steps)
                with torch.no_grad():
                    hits[steps].append((functional_call(net, fast, (xq[0],)).argmax(1) == yq[0]).float().mean().item())
        result["accuracy"] = {f"{k}step": common.mean_ci95(v) for k, v in hits.items()}
    common.finish(args, "maml_omniglot", result)


if __name__ == "__main__":
    main()

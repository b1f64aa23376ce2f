"""Prototypical networks on Omniglot (Snell et al. 2017) in PyTorch: metl's reference
workload.

Conv4 embedding (64 channels, batch norm), 28x28 images; training episodes of 60 ways, 5
shots and 5 queries per class from the background characters with their four rotations as
classes; squared Euclidean distance to class means; Adam 1e-3 halved every 2000 episodes.
Evaluation (unless --skip-eval): 5-way and 20-way 1-shot accuracy, 15 queries per class,
over --test-episodes episodes of the evaluation characters, with 95% intervals.
Result keys: episodes_per_s, windows_s, peak_rss_mb, accuracy.
"""
import torch

import common


def logits(net, xs, xq, ways, shots):
    z = net(torch.cat([xs, xq]))
    support, query = z[: xs.shape[0]], z[xs.shape[0]:]
    prototypes = support.view(ways, shots, -1).mean(1)
    return -torch.cdist(query, prototypes).pow(2)


def main():
    p = common.parser(__doc__.splitlines()[0], warmup=10, window=50)
    common.add_data_dir(p)
    p.add_argument("--ways", type=int, default=60)
    p.add_argument("--shots", type=int, default=5)
    p.add_argument("--queries", type=int, default=5)
    p.add_argument("--test-episodes", type=int, default=1000)
    args = p.parse_args()
    common.setup(args)
    background, evaluation = common.omniglot(args.data_dir)
    train = common.Episodes(background, rotations=True, seed=args.seed)
    net = common.conv4(running_stats=True)
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    schedule = torch.optim.lr_scheduler.StepLR(opt, step_size=2000, gamma=0.5)
    timer = common.Timer(args.warmup, args.window)
    total = timer.total(args.iters)
    net.train()
    for it in range(total):
        timer.tick(it)
        xs, _, xq, yq = train.sample(1, args.ways, args.shots, args.queries)
        loss = torch.nn.functional.cross_entropy(logits(net, xs[0], xq[0], args.ways, args.shots), yq[0])
        opt.zero_grad()
        loss.backward()
        opt.step()
        schedule.step()
        if args.log_every and (it + 1) % args.log_every == 0:
            print(f"episode {it + 1}: loss {loss.item():.4f}", flush=True)
    timer.tick(total)
    rate, windows = timer.per_second()
    result = {"workload": "protonet_omniglot", "episodes": total, "episodes_per_s": rate, "windows_s": windows}
    if not args.skip_eval:
        net.eval()
        result["accuracy"] = {}
        for ways in (5, 20):
            test = common.Episodes(evaluation, rotations=False, seed=args.test_seed)
            hits = []
            with torch.no_grad():
                for _ in range(args.test_episodes):
                    xs, _, xq, yq = test.sample(1, ways, 1, 15)
                    hits.append((logits(net, xs[0], xq[0], ways, 1).argmax(1) == yq[0]).float().mean().item())
            result["accuracy"][f"{ways}way1shot"] = common.mean_ci95(hits)
    common.finish(args, "protonet_omniglot", result)


if __name__ == "__main__":
    main()

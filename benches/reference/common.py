"""Shared by metl's PyTorch reference workloads: command-line flags, timing windows,
results as JSON, Omniglot loading.

Timing protocol (the same as `metl bench`): W warm-up iterations, then 3 timed windows of
N iterations each, data sampling inside the timed loop; the figure is N / (median window
time). Every script prints one JSON object and writes it to OUT_DIR/NAME.json.
"""
import argparse
import io
import json
import os
import resource
import sys
import tempfile
import time
import zipfile

import numpy as np
import torch


def parser(description, warmup, window):
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    p.add_argument("--seed", type=int, default=0, help="training seed")
    p.add_argument("--test-seed", type=int, default=12345, help="evaluation seed")
    p.add_argument("--warmup", type=int, default=warmup, help=f"untimed warm-up iterations (default {warmup})")
    p.add_argument("--window", type=int, default=window, help=f"iterations per timed window, 3 windows (default {window})")
    p.add_argument("--iters", type=int, default=0,
                   help="training iterations in all (at least warm-up + 3 windows are run)")
    p.add_argument("--skip-eval", action="store_true", help="measure speed only")
    p.add_argument("--log-every", type=int, default=0, help="print the loss every N iterations (0: never)")
    p.add_argument("--out-dir", default=os.path.join(tempfile.gettempdir(), "metl-reference"))
    p.add_argument("--name", default=None, help="result file name (default: the script's)")
    return p


def setup(args):
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class Timer:
    """Times windows [warmup, warmup + window), [.. + window), [.. + 2 window) of a loop."""

    def __init__(self, warmup, window):
        self.warmup, self.window = warmup, window
        self.marks = {}

    def total(self, iters):
        return max(iters, self.warmup + 3 * self.window)

    def tick(self, i):
        """Call before iteration i (0-based) and once more with i = the number run."""
        if i >= self.warmup and (i - self.warmup) % self.window == 0 and (i - self.warmup) // self.window <= 3:
            self.marks[(i - self.warmup) // self.window] = time.perf_counter()

    def per_second(self):
        windows = sorted(self.marks[k + 1] - self.marks[k] for k in range(3))
        return self.window / windows[1], windows


def finish(args, script, result):
    result.setdefault("peak_rss_mb", peak_rss_mb())
    result.setdefault("torch", torch.__version__)
    result.setdefault("threads", args.threads)
    name = args.name or script
    os.makedirs(args.out_dir, exist_ok=True)
    path = os.path.join(args.out_dir, f"{name}.json")
    with open(path, "w") as f:
        json.dump(result, f, indent=1)
    print(json.dumps(result))
    return path


def mean_ci95(values):
    v = np.asarray(values, dtype=np.float64)
    return float(v.mean()), float(1.96 * v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else 0.0


def add_data_dir(p):
    """`--data-dir`: the folder of Omniglot's two zips; default $METL_OMNIGLOT_DIR, else
    data/omniglot (as metl's own tools)."""
    default = os.environ.get("METL_OMNIGLOT_DIR") or "data/omniglot"
    p.add_argument("--data-dir", default=default,
                   help="folder of the two Omniglot zips (default: $METL_OMNIGLOT_DIR, else data/omniglot)")


def omniglot(data_dir, size=28):
    """Omniglot's two official zips as {alphabet/character: uint8 [20, size, size]} per set,
    resized with Pillow's Lanczos filter (the usual 28x28 preprocessing), cached as .npz in
    the temp dir."""
    from PIL import Image

    cache = os.path.join(tempfile.gettempdir(), f"metl-reference-omniglot-{size}.npz")
    if os.path.exists(cache):
        data = np.load(cache, allow_pickle=True)
        return data["background"].item(), data["evaluation"].item()
    sets = []
    for part in ("images_background", "images_evaluation"):
        path = os.path.join(data_dir, f"{part}.zip")
        if not os.path.exists(path):
            sys.exit(f"{path} not found: put Omniglot's {part}.zip in --data-dir")
        chars = {}
        with zipfile.ZipFile(path) as z:
            for entry in sorted(n for n in z.namelist() if n.endswith(".png")):
                _, alphabet, character, _ = entry.split("/")
                img = Image.open(io.BytesIO(z.read(entry))).convert("L").resize((size, size), Image.LANCZOS)
                chars.setdefault(f"{alphabet}/{character}", []).append(np.asarray(img, dtype=np.uint8))
        sets.append({k: np.stack(v) for k, v in chars.items()})
    np.savez(cache, background=sets[0], evaluation=sets[1])
    return sets[0], sets[1]


class Episodes:
    """N-way K-shot episodes from a dict of classes ([20, H, W] uint8 each), optionally with
    the four rotations as extra classes; ink is 1, background 0."""

    def __init__(self, classes, rotations, seed):
        images = [torch.from_numpy(1.0 - v.astype(np.float32) / 255.0) for v in classes.values()]
        if rotations:
            images = [torch.rot90(x, k, dims=(1, 2)) for x in images for k in range(4)]
        self.images = torch.stack(images).unsqueeze(2)  # [C, 20, 1, H, W]
        self.generator = torch.Generator().manual_seed(seed)

    def sample(self, tasks, ways, shots, queries):
        """Support [T, N*K, 1, H, W] and query [T, N*Q, 1, H, W] with labels 0..N grouped by class."""
        xs, xq = [], []
        for _ in range(tasks):
            cls = torch.randperm(self.images.shape[0], generator=self.generator)[:ways]
            idx = torch.stack([torch.randperm(20, generator=self.generator)[: shots + queries] for _ in range(ways)])
            chosen = self.images[cls.unsqueeze(1), idx]  # [N, K+Q, 1, H, W]
            xs.append(chosen[:, :shots].flatten(0, 1))
            xq.append(chosen[:, shots:].flatten(0, 1))
        ys = torch.arange(ways).repeat_interleave(shots).expand(tasks, -1)
        yq = torch.arange(ways).repeat_interleave(queries).expand(tasks, -1)
        return torch.stack(xs), ys, torch.stack(xq), yq


def conv4(in_channels=1, hidden=64, out=None, running_stats=False):
    """Four blocks of 3x3 convolution, batch norm (batch statistics unless `running_stats`),
    ReLU, 2x2 max-pool; a
    linear head of `out` classes if given."""
    layers = []
    for i in range(4):
        layers += [
            torch.nn.Conv2d(in_channels if i == 0 else hidden, hidden, 3, padding=1),
            torch.nn.BatchNorm2d(hidden, track_running_stats=running_stats),
            torch.nn.ReLU(),
            torch.nn.MaxPool2d(2),
        ]
    layers.append(torch.nn.Flatten())
    if out is not None:
        layers.append(torch.nn.Linear(hidden, out))
    return torch.nn.Sequential(*layers)

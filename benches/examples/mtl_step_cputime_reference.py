#!/usr/bin/env python3
"""CPU time per step of the PyTorch reference `benches/reference/mtl_step.py`, one thread.

The counterpart of `mtl_step_cputime.rs` for comparisons on a busy machine: it imports the
reference's model (`Net`) and step function (`step`) unchanged, feeds them 8 pre-generated
batches in turn (as the Rust side does), and times them with `time.process_time()` after 5
warm-up steps, so that other processes on the machine do not count.

    $METL_PYTHON benches/examples/mtl_step_cputime_reference.py 2,10,40 equal,pcgrad,mgda 30
"""
import os
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "reference"))
import mtl_step as ref  # noqa: E402

BATCH, IN_DIM, BATCHES, WARMUP = 256, 64, 8, 5


def batches(tasks, generator):
    """The reference's data: x ~ N(0, 1), task t's target tanh(x @ w)[:, t]."""
    w = torch.randn(IN_DIM, tasks, generator=generator)
    out = []
    for _ in range(BATCHES):
        x = torch.randn(BATCH, IN_DIM, generator=generator)
        targets = torch.tanh(x @ w)
        out.append((x, [targets[:, t: t + 1] for t in range(tasks)]))
    return out


def main():
    if len(sys.argv) != 4:
        sys.exit(f"usage: {sys.argv[0]} TASKS METHODS STEPS, e.g. 2,10,40 equal,pcgrad,mgda 30")
    tasks, methods, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
    torch.set_num_threads(1)
    for t in map(int, tasks.split(",")):
        for method in methods.split(","):
            torch.manual_seed(0)
            generator = torch.Generator().manual_seed(0)
            net = ref.Net(t)
            opt = torch.optim.Adam(net.parameters(), 1e-3)
            data = batches(t, generator)
            for i in range(WARMUP):
                ref.step(method, net, opt, *data[i % BATCHES], generator)
            start = time.process_time()
            for i in range(steps):
                ref.step(method, net, opt, *data[i % BATCHES], generator)
            per_step = (time.process_time() - start) / steps
            print(f"{method:>16} T={t:3}: {per_step * 1e3:8.2f} ms CPU/step  "
                  f"({1 / per_step:7.1f} steps/s uncontended, 1 thread)")


if __name__ == "__main__":
    main()

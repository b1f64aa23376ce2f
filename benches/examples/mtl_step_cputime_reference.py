#!/usr/bin/env python3
"""CPU time per step of the PyTorch reference `benches/reference/mtl_step.py`, one thread.

The counterpart of `mtl_step_cputime.rs` for comparisons on a busy machine: it imports the
reference's model, data and step functions unchanged and times them with
`time.process_time()` after 5 warm-up steps.

    $METL_PYTHON benches/examples/mtl_step_cputime_reference.py 2,10,40 equal,pcgrad,mgda 30
"""
import argparse
import os
import random
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "..", "shared", "reference"))
import mtl_step as ref  # noqa: E402


def main():
    tasks, methods, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
    settings = argparse.Namespace(batch=256, in_dim=64, hidden=256, lr=1e-3, fw_iters=20, n_batches=8, seed=0)
    torch.set_num_threads(1)
    for t in map(int, tasks.split(",")):
        for m in methods.split(","):
            torch.manual_seed(0)
            random.seed(0)
            net = ref.MTLNet(settings.in_dim, settings.hidden, t)
            opt = torch.optim.Adam(net.parameters(), lr=settings.lr)
            data = ref.make_data(settings, t, torch.Generator().manual_seed(0))
            step = ref.STEPS[m]
            for i in range(5):
                step(net, opt, *data[i % 8], settings)
            start = time.process_time()
            for i in range(steps):
                step(net, opt, *data[i % 8], settings)
            per_step = (time.process_time() - start) / steps
            print(f"{m:>16} T={t:3}: {per_step * 1e3:8.2f} ms CPU/step  ({1 / per_step:7.1f} steps/s uncontended, 1 thread)")


if __name__ == "__main__":
    main()

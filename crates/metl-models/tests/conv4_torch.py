#!/usr/bin/env python3
"""Loads a metl Conv4 checkpoint into a PyTorch re-implementation and compares outputs.

Usage: conv4_torch.py CHECKPOINT IO INITIAL

CHECKPOINT: the safetensors state dict metl wrote (Classifier(Conv4, LinearHead): parameters
and batch-norm buffers) after training-mode passes on the batches `warmup_{i}`. IO: a
safetensors file with the input `x`, metl's outputs `y_eval` (running statistics) and
`y_train` (batch statistics), the `warmup_{i}` batches, and `config` (in_channels, hidden,
classes, number of warm-up batches) as int64. INITIAL: the state dict before the warm-up.

The model is built from torch.nn modules with the attribute names metl documents, loaded
with load_state_dict(strict=True) (every name and shape must match), and must reproduce
both outputs to 1e-5; and PyTorch's own training-mode passes on the warm-up batches from
INITIAL must reach metl's running statistics (to 1e-6). Prints one line and exits 0 on
success, 1 otherwise.
"""
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file


class Block(nn.Module):
    def __init__(self, c_in, c_out):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.bn = nn.BatchNorm2d(c_out)

    def forward(self, x):
        return F.max_pool2d(F.relu(self.bn(self.conv(x))), 2)


class Conv4(nn.Module):
    def __init__(self, c_in, hidden):
        super().__init__()
        self.blocks = nn.ModuleList([Block(c_in if i == 0 else hidden, hidden) for i in range(4)])

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return x.flatten(1)


class Classifier(nn.Module):
    def __init__(self, c_in, hidden, classes, features):
        super().__init__()
        self.backbone = Conv4(c_in, hidden)
        self.head = nn.Linear(features, classes)

    def forward(self, x):
        return self.head(self.backbone(x))


def main():
    checkpoint, io_path, initial = sys.argv[1], sys.argv[2], sys.argv[3]
    torch.set_num_threads(1)
    io = load_file(io_path)
    c_in, hidden, classes, tracked = (int(v) for v in io["config"].tolist())
    x = io["x"]
    with torch.no_grad():
        features = Conv4(c_in, hidden)(x).shape[1]
    model = Classifier(c_in, hidden, classes, features)
    state = load_file(checkpoint)
    model.load_state_dict(state, strict=True)
    errors = []
    for block in model.backbone.blocks:
        if int(block.bn.num_batches_tracked) != tracked:
            errors.append(f"num_batches_tracked {int(block.bn.num_batches_tracked)} != {tracked}")
    with torch.no_grad():
        model.eval()
        err_eval = (model(x) - io["y_eval"]).abs().max().item()
        model.train()
        err_train = (model(x) - io["y_train"]).abs().max().item()
    for name, err in (("eval (running statistics)", err_eval), ("train (batch statistics)", err_train)):
        if not err <= 1e-5:
            errors.append(f"{name}: max |torch - metl| = {err:.3e} > 1e-5")
    # PyTorch's running-statistics updates from the initial state reach metl's buffers.
    fresh = Classifier(c_in, hidden, classes, features)
    fresh.load_state_dict(load_file(initial), strict=True)
    fresh.train()
    with torch.no_grad():
        for i in range(tracked):
            fresh(io[f"warmup_{i}"])
    buffers = {k: v for k, v in fresh.state_dict().items() if "running" in k or "num_batches" in k}
    err_stats = max((v.double() - state[k].double()).abs().max().item() for k, v in buffers.items())
    if not err_stats <= 1e-6:
        errors.append(f"running statistics: max |torch - metl| = {err_stats:.3e} > 1e-6")
    if errors:
        print("; ".join(errors))
        return 1
    print(f"ok: {len(state)} tensors loaded strictly; eval error {err_eval:.2e}, train error {err_train:.2e}, "
          f"running statistics error {err_stats:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

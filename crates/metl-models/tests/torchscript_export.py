"""Exports a small PyTorch MLP as TorchScript with its parameters as inputs of forward
(the form metl_models::torchscript::ScriptModel runs), plus reference outputs.

usage: python torchscript_export.py OUT_DIR
writes OUT_DIR/model.pt and OUT_DIR/expected.safetensors (x, the outputs at the module's
own parameters, a perturbation of every parameter `delta.<name>`, the outputs there).
"""
import sys

import torch
from safetensors.torch import save_file


class ParametersAsInputs(torch.nn.Module):
    """forward(x, *params): `model` on the given parameters, in named_parameters() order.

    The given tensors stand in the parameters' places while the model runs (tracing then
    records the operations on them); torch.func.functional_call does the same but refuses
    to run under torch.jit.trace.
    """

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.slots = []
        for name, _ in model.named_parameters():
            owner, _, attr = name.rpartition(".")
            self.slots.append((model.get_submodule(owner), attr))

    def forward(self, x, *params):
        own = [module._parameters[attr] for module, attr in self.slots]
        try:
            for (module, attr), p in zip(self.slots, params):
                module._parameters[attr] = p
            return self.model(x)
        finally:
            for (module, attr), p in zip(self.slots, own):
                module._parameters[attr] = p


def main(out):
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(1, 8), torch.nn.Tanh(), torch.nn.Linear(8, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1)
    ).double()
    wrapper = ParametersAsInputs(model)
    params = [p for _, p in model.named_parameters()]
    x = torch.linspace(-3.0, 3.0, 7, dtype=torch.float64).unsqueeze(1)
    traced = torch.jit.trace(wrapper, (x, *params))
    traced.save(f"{out}/model.pt")
    with torch.no_grad():
        deltas = {name: 0.1 * torch.randn_like(p) for name, p in model.named_parameters()}
        moved = [p + deltas[name] for name, p in model.named_parameters()]
        tensors = {"x": x, "y": model(x), "y_moved": wrapper(x, *moved)}
    tensors.update({f"delta.model.{name}": d for name, d in deltas.items()})
    save_file({k: v.contiguous() for k, v in tensors.items()}, f"{out}/expected.safetensors")


if __name__ == "__main__":
    main(sys.argv[1])

#!/usr/bin/env python3
"""Reference values for crates/metl-mtl/tests/reference_values.rs.

Feeds fixed float64 Jacobians (and losses) to the implementations researchers trust:

* TorchJD 0.18.0 (PyPI `torchjd[full]`), the aggregators and weightings of
  `torchjd.aggregation`;
* LibMTL 1.1.5 (PyPI `LibMTL`, the only release there), its weighting classes driven
  by a minimal stand-in for its model (one shared parameter `w`, linear losses
  `L_i = g_i . w + c_i`, so the per-task gradients are exactly the Jacobian's rows);

with metl's default hyper-parameters (where a library's default differs it is set to
metl's, and the line says so), and prints Rust constants to paste into the test: the
inputs first, then the libraries' results.

Run (about 20 s):

    cd /work/main && eval "$(cargo xtask env)"
    echo torch==2.13.0 > /tmp/constraints.txt
    $METL_PYTHON -m pip install -c /tmp/constraints.txt "torchjd[full]==0.18.0"
    $METL_PYTHON -m pip install -c /tmp/constraints.txt --no-deps LibMTL==1.1.5
    $METL_PYTHON crates/metl-mtl/tests/reference/make_reference.py > /tmp/reference.rs
"""

import itertools
import random
import sys

import numpy as np
import torch
from torch import nn

torch.set_default_dtype(torch.float64)  # LibMTL allocates its gradient buffers with the default
torch.manual_seed(0)
random.seed(0)

import torchjd  # noqa: E402
from torchjd import aggregation as jd  # noqa: E402
from torchjd.aggregation import _pcgrad as jd_pcgrad  # noqa: E402

# LibMTL 1.1.5 imports `torchvision.models.utils`, gone from torchvision since 0.13 (only
# for its ResNet weights, unused here): stand it in with the function's new home.
import types  # noqa: E402

import torch.hub  # noqa: E402

sys.modules["torchvision.models.utils"] = types.SimpleNamespace(load_state_dict_from_url=torch.hub.load_state_dict_from_url)

import LibMTL  # noqa: E402,F401
from LibMTL.weighting import (  # noqa: E402
    CAGrad as LCAGrad,
    DWA as LDWA,
    EW as LEW,
    GLS as LGLS,
    GradDrop as LGradDrop,
    GradNorm as LGradNorm,
    GradVac as LGradVac,
    IMTL as LIMTL,
    MGDA as LMGDA,
    PCGrad as LPCGrad,
    UW as LUW,
)

from importlib.metadata import version  # noqa: E402

TORCHJD_VERSION = version("torchjd")
assert TORCHJD_VERSION == "0.18.0", TORCHJD_VERSION
assert version("LibMTL") == "1.1.5", version("LibMTL")
assert torch.__version__.startswith("2.13.0"), torch.__version__

# ---------------------------------------------------------------------------------------
# Inputs (literal; copied verbatim into the Rust test).

J2 = [[1.0, 0.2, -0.5, 0.3], [-0.8, 0.6, 0.4, 0.1]]  # conflicting: g1.g2 = -0.85
J2_B = [[-0.006, -0.505, -0.976, -0.615], [0.384, -0.599, -0.261, -0.993]]
J2_C = [[0.66, -0.691, -0.465, 0.761], [0.02, 0.694, 0.279, 0.484]]
L2 = [0.7, 1.9]
J3 = [
    [0.352, -0.571, -0.381, 0.599, 0.992],
    [-0.716, -0.843, -0.638, -0.281, -0.661],
    [0.178, 0.234, -0.789, 0.131, -0.991],
]
J3_B = [
    [0.25, 0.794, 0.551, -0.55, -0.4],
    [0.747, -0.989, 0.642, 0.594, -0.064],
    [-0.394, -0.443, -0.49, -0.11, 0.009],
]
J3_C = [
    [0.107, 0.991, 0.585, 0.244, 0.978],
    [-0.569, -0.68, 0.225, -0.912, -0.929],
    [0.03, -0.068, 0.834, 0.258, 0.028],
]
L3 = [0.5, 1.2, 2.3]
L3_B = [0.45, 1.3, 2.0]
J5 = [
    [-0.07, 0.951, 0.599, 0.194, -0.349, -0.587, -0.115, -0.444],
    [0.75, -0.574, -0.452, 0.614, -0.463, -0.464, -0.858, -0.066],
    [-0.472, 0.778, -0.427, 0.548, -0.026, -0.064, 0.93, 0.796],
    [-0.842, -0.51, -0.63, 0.811, 0.108, -0.257, 0.668, -0.302],
    [0.363, -0.543, -0.952, 0.392, -0.326, -0.316, -0.448, -0.497],
]
L5 = [0.9, 0.3, 1.7, 2.4, 0.6]
# Four tasks in three dimensions: a singular Gramian.
J4_LOW = [[0.14, -0.332, -0.149], [-0.596, 0.01, 0.171], [-0.159, -0.193, 0.888], [-0.904, -0.348, 0.038]]

CASES = {"J2": J2, "J3": J3, "J5": J5, "J4_LOW": J4_LOW}


def t(x):
    return torch.tensor(x, dtype=torch.float64)


def gram(j):
    j = t(j)
    return j @ j.T


OUT = []


def emit(name, value, comment=None):
    """Adds a Rust constant `name` (a vector or a matrix of f64)."""
    a = np.asarray(value.detach().numpy() if torch.is_tensor(value) else value, dtype=np.float64)
    if comment:
        OUT.append(f"/// {comment}")
    if a.ndim == 1:
        OUT.append(f"const {name}: [f64; {a.shape[0]}] = [{', '.join(repr(float(v)) for v in a)}];")
    else:
        rows = ", ".join("[" + ", ".join(repr(float(v)) for v in r) + "]" for r in a)
        OUT.append(f"const {name}: [[f64; {a.shape[1]}]; {a.shape[0]}] = [{rows}];")


# The inputs, printed too, so that the Rust test holds exactly what was fed in.
for _name, _value in [
    ("J2", J2), ("J2_B", J2_B), ("J2_C", J2_C), ("L2", L2),
    ("J3", J3), ("J3_B", J3_B), ("J3_C", J3_C), ("L3", L3), ("L3_B", L3_B),
    ("J5", J5), ("L5", L5), ("J4_LOW", J4_LOW),
]:
    emit(_name, _value, "input")

# ---------------------------------------------------------------------------------------
# TorchJD: closed forms and exact solvers (one call, no state).

for case, j in CASES.items():
    m = t(j)
    g = m @ m.T
    # metl's DualConeConfig default = TorchJD's QuadprogProjector(norm_eps=1e-4, reg_eps=1e-4).
    emit(f"UPGRAD_{case}", jd.UPGradWeighting()(g), f"TorchJD UPGrad weights on {case}")
    emit(f"DUALPROJ_{case}", jd.DualProjWeighting()(g), f"TorchJD DualProj weights on {case}")
    emit(f"IMTL_G_{case}", jd.IMTLGWeighting()(g), f"TorchJD IMTL-G weights on {case}")
    # TorchJD weights B·(1/T) (a mean preference); metl and LibMTL B·1: metl = T × these.
    emit(f"ALIGNED_MTL_{case}", jd.AlignedMTLWeighting()(g), f"TorchJD Aligned-MTL weights (B/T) on {case}")
    emit(f"CONFIG_{case}", jd.ConFIG()(m), f"TorchJD ConFIG direction on {case}")
    # The exact min-norm point: TorchJD's Frank-Wolfe run to convergence (its defaults
    # epsilon=1e-3, max_iters=100 stop early; metl's own defaults are tol 1e-5, 250 iters).
    emit(
        f"MGDA_{case}",
        jd.MGDAWeighting(epsilon=1e-14, max_iters=1_000_000)(g),
        f"TorchJD MGDA weights on {case}, Frank-Wolfe to convergence",
    )
    # TorchJD's CAGrad has no final rescaling (metl's default rescale=1 divides by 1 + c²).
    emit(f"CAGRAD_{case}", jd.CAGradWeighting(c=0.5)(g), f"TorchJD CAGrad(c=0.5) weights on {case}")
    # metl's default alpha = 1 (TorchJD has no default).
    emit(f"FAIRGRAD_{case}", jd.FairGradWeighting(alpha=1.0)(g), f"TorchJD FairGrad(alpha=1) weights on {case}")

# MGDA as TorchJD runs it by default (early stop), to size the solver difference.
emit("MGDA_J5_TORCHJD_DEFAULT", jd.MGDAWeighting()(gram(J5)), "TorchJD MGDA weights on J5, its defaults")

# EW = TorchJD Sum.
emit("SUM_J5", jd.Sum()(t(J5)), "TorchJD Sum on J5")

# PCGrad: for T = 2 the order does not matter. For T = 3, every combination of visiting
# orders, forced through torch.randperm: task i visits the others in ORDERS[c][i].
emit("PCGRAD_J2", jd.PCGradWeighting()(gram(J2)), "TorchJD PCGrad weights on J2")
orders = list(itertools.product(*[list(itertools.permutations([j for j in range(3) if j != i])) for i in range(3)]))
pc = []
real_randperm = torch.randperm
for combo in orders:
    queue = [torch.tensor(list(o)) for o in combo]
    jd_pcgrad.torch.randperm = lambda n, q=queue: q.pop(0)
    try:
        pc.append(jd.PCGradWeighting()(gram(J3)).numpy())
    finally:
        jd_pcgrad.torch.randperm = real_randperm
OUT.append(f"/// PCGrad visiting orders on J3: order[c][i] is the order in which task i visits the others.")
OUT.append(
    "const PCGRAD_J3_ORDERS: [[[usize; 2]; 3]; 8] = ["
    + ", ".join("[" + ", ".join(f"[{o[0]}, {o[1]}]" for o in combo) + "]" for combo in orders)
    + "];"
)
emit("PCGRAD_J3", np.array(pc), "TorchJD PCGrad weights on J3 for each order combination")

# Random (RLW): E[w_1²] of softmax(N(0, I_3)) by Monte Carlo over 4·10⁶ draws (TorchJD's
# RandomWeighting is `softmax(randn(T))`; checked on 2000 calls against the vectorised form).
gen = torch.Generator().manual_seed(1)
draws = torch.softmax(torch.randn(4_000_000, 3, generator=gen), dim=1)
rw = torch.stack([jd.RandomWeighting()(t(J3)) for _ in range(2000)])
assert abs(rw[:, 0].pow(2).mean() - draws[:, 0].pow(2).mean()) < 0.01
m2 = draws[:, 0].pow(2)
emit("RLW_T3_SECOND_MOMENT", [m2.mean().item(), m2.std().item()], "E[w₁²] and sd(w₁²) of softmax(N(0, I₃))")

# GradDrop (batch 1, positive representation): E[direction] in closed form, checked
# against TorchJD's GradDrop by Monte Carlo.
m = t(J5)
p = 0.5 * (1 + m.sum(0) / m.abs().sum(0))
expected = ((m > 0) * p + (m < 0) * (1 - p)).mul(m).sum(0)
mc = torch.stack([jd.GradDrop()(m) for _ in range(20000)]).mean(0)
assert (mc - expected).abs().max() < 0.05, (mc, expected)
emit("GRADDROP_J5_EXPECTED", expected, "E[GradDrop direction] on J5 (one sample, z > 0)")

# ---------------------------------------------------------------------------------------
# TorchJD: stateful methods over successive steps.

# Nash-MTL with metl's defaults (= TorchJD's and the paper's code): max_norm 1,
# update every step, 20 iterations; three steps, so that the warm start carries over.
nash = jd.NashMTL(n_tasks=3, max_norm=1.0, update_weights_every=1, optim_niter=20)
emit("NASH_MTL_STEPS", torch.stack([nash(t(j)) for j in (J3, J3_B, J3_C)]), "TorchJD Nash-MTL directions, steps 1-3")

# GradVac, T = 2 (order-free); TorchJD's default beta = 0.5 (LibMTL's) set to metl's
# (the paper's) 0.01. Both update the EMA at every visit (the paper's Eq. 3).
gv = jd.GradVacWeighting(beta=0.01)
emit("GRADVAC_STEPS", torch.stack([gv(gram(j)) for j in (J2, J2_B, J2_C)]), "TorchJD GradVac weights, steps 1-3")

# ExcessMTL with metl's robust_step_size 0.01 (TorchJD's default 1.0). n_warmup_steps=1
# reproduces LibMTL's and metl's first step (no update, its excess risks the baseline);
# with TorchJD's default 0 it also updates at step 1, from the unscaled risks.
ex = jd.ExcessMTLWeighting(robust_step_size=0.01, n_warmup_steps=1)
emit("EXCESS_MTL_STEPS", torch.stack([ex(t(j)) for j in (J3, J3_B, J3_C, J3)]), "TorchJD ExcessMTL weights (sum 1), steps 1-4")
ex0 = jd.ExcessMTLWeighting(robust_step_size=0.01)
emit("EXCESS_MTL_STEPS_TORCHJD_DEFAULT", torch.stack([ex0(t(j)) for j in (J3, J3_B, J3_C, J3)]), "the same, n_warmup_steps=0")

# MoDo: λ from J1 J2ᵀ, direction J3ᵀλ. metl's (LibMTL's) gamma 1e-3 and, to move λ
# visibly, 0.1 (TorchJD's default); rho 0.1 in both.
SAMPLES = [(J3, J3_B, J3_C), (J3_B, J3_C, J3), (J3_C, J3, J3_B)]
for gamma, name in [(1e-3, "MODO_STEPS"), (0.1, "MODO_STEPS_GAMMA_0_1")]:
    mo = jd.MoDoWeighting(gamma=gamma, rho=0.1)
    emit(name, torch.stack([mo(t(a) @ t(b).T) for a, b, _ in SAMPLES]), f"TorchJD MoDo(gamma={gamma}) weights, steps 1-3")

# SDMGrad: weights on J0 from the cross-Gramian J1 J2ᵀ; lambda 0.3, 20 iterations,
# momentum 0.5 in all three; lr 10 is TorchJD's and the authors' code's (LibMTL uses 5).
for lr, name in [(10.0, "SDMGRAD_STEPS"), (5.0, "SDMGRAD_STEPS_LR_5")]:
    sd = jd.SDMGradWeighting(lr=lr, momentum=0.5, n_iter=20, lambda_=0.3)
    emit(name, torch.stack([sd(t(b) @ t(c).T) for _, b, c in SAMPLES]), f"TorchJD SDMGrad(lr={lr}) weights on J0, steps 1-3")

# ---------------------------------------------------------------------------------------
# LibMTL 1.1.5: its weighting classes on a stand-in model with one shared parameter.


def libmtl(cls, j, losses, *, epoch=0, buffer=None, rep=None, init=None, **kwargs):
    """Runs LibMTL's `cls.backward` on linear losses with gradients `j` (rows) and values
    `losses`; returns (direction, returned weights, the weighting's own parameters)."""

    class Model(cls):
        def __init__(self):
            super().__init__()
            self.task_num = len(j)
            self.task_name = [f"t{i}" for i in range(self.task_num)]
            self.device = torch.device("cpu")
            self.rep_grad = rep is not None
            self.epoch = epoch
            self.train_loss_buffer = buffer
            self.init_param()

        def get_share_params(self):
            return [w]

        def zero_grad_share_params(self):
            w.grad.zero_()

    m = t(j)
    if rep is None:
        w = nn.Parameter(torch.zeros(m.shape[1]))
    else:
        w = nn.Parameter(t(rep).reshape(-1).clone())
    w.grad = torch.zeros_like(w)
    model = Model()
    if init is not None:
        with torch.no_grad():
            model.loss_scale.copy_(t(init))
    if rep is None:
        ls = torch.stack([m[i] @ w + losses[i] for i in range(len(j))])
    else:
        batch = t(rep).shape[0]
        model.rep = w.reshape(batch, -1)
        model.rep_tasks = {k: model.rep.detach().clone().requires_grad_(True) for k in model.task_name}
        ls = torch.stack([(model.rep_tasks[k] * m[i].reshape(batch, -1)).sum() for i, k in enumerate(model.task_name)])
    out = model.backward(ls, **kwargs)
    own = model.loss_scale.grad if hasattr(model, "loss_scale") else None
    return w.grad.clone(), out, own


emit("LIBMTL_EW_J3", libmtl(LEW, J3, L3)[0], "LibMTL EW direction on J3")
d, wts, grad_s = libmtl(LUW, J3, L3)
emit("LIBMTL_UW_J3", d, "LibMTL UW direction on J3, log-variances -0.5")
emit("LIBMTL_UW_J3_LOGVAR_GRAD", grad_s, "LibMTL UW gradient of the log-variances")
emit("LIBMTL_GLS_J3", libmtl(LGLS, J3, L3)[0], "LibMTL GLS direction on J3")
# DWA at epoch 2 (metl: after two end_epoch calls) with epoch means L3 then L3_B; metl's
# temperature 2 = LibMTL's T.
buf = np.zeros((3, 3))
buf[:, 0], buf[:, 1] = L3, L3_B
emit("LIBMTL_DWA_J3", libmtl(LDWA, J3, L3, epoch=2, buffer=buf, T=2.0)[0], "LibMTL DWA direction, epoch 2")
# GradNorm at LibMTL's epoch 1 with initial losses L3 and current losses L3_B; alpha 1.5
# in both. LibMTL learns logits s with w = T softmax(s); at s = 1 (w = 1) the chain rule
# gives ∂/∂s = ∂/∂w − mean(∂/∂w).
buf = np.zeros((3, 2))
buf[:, 0] = L3
d, wts, grad_s = libmtl(LGradNorm, J3, L3_B, epoch=1, buffer=buf, alpha=1.5)
emit("LIBMTL_GRADNORM_J3", d, "LibMTL GradNorm direction (weights 1)")
emit("LIBMTL_GRADNORM_J3_LOGIT_GRAD", grad_s, "LibMTL GradNorm gradient of its logits")
# IMTL with learned scales s (LibMTL's init 0, and s = (0.3, -0.2, 0.1)).
for init, name in [([0.0, 0.0, 0.0], "LIBMTL_IMTL_J3"), ([0.3, -0.2, 0.1], "LIBMTL_IMTL_J3_SCALED")]:
    d, wts, grad_s = libmtl(LIMTL, J3, L3, init=init)
    emit(name, d, f"LibMTL IMTL direction, s = {init}")
    emit(name + "_SCALE_GRAD", grad_s, "LibMTL IMTL gradient of s")
for case, j, losses in [("J2", J2, L2), ("J3", J3, L3), ("J5", J5, L5)]:
    emit(f"LIBMTL_MGDA_{case}", libmtl(LMGDA, j, losses, mgda_gn="none")[0], f"LibMTL MGDA direction on {case}")
emit("LIBMTL_MGDA_J3_L2", libmtl(LMGDA, J3, L3, mgda_gn="l2")[0], "LibMTL MGDA direction on J3, l2 normalisation")
emit("LIBMTL_MGDA_J3_LOSS", libmtl(LMGDA, J3, L3, mgda_gn="loss")[0], "LibMTL MGDA direction on J3, loss normalisation")
# A gradient in the other's "shadow": LibMTL's MinNormSolver returns 0.999/0.001, not 1/0.
SHADOW = [[1.0, 0.0], [1.0, 1.0]]
emit("SHADOW", SHADOW, "input")
emit("LIBMTL_MGDA_SHADOW", libmtl(LMGDA, SHADOW, [1.0, 1.0], mgda_gn="none")[0], "LibMTL MGDA direction on SHADOW")
emit("LIBMTL_PCGRAD_J2", libmtl(LPCGrad, J2, L2)[0], "LibMTL PCGrad direction on J2")
# LibMTL 1.1.5's CAGrad hard-codes three tasks (x.reshape(1, 3)); calpha 0.5, rescale 1.
emit("LIBMTL_CAGRAD_J3", libmtl(LCAGrad, J3, L3, calpha=0.5, rescale=1)[0], "LibMTL CAGrad direction on J3 (SLSQP)")
# GradVac's first step (LibMTL's default beta 0.5 set to metl's 0.01; the first step
# does not depend on it).
emit("LIBMTL_GRADVAC_J2", libmtl(LGradVac, J2, L2, beta=0.01)[0], "LibMTL GradVac direction on J2, step 1")
# GradDrop on a representation z (batch 2, 3 features, mixed signs): E[direction] in
# closed form, checked against LibMTL by Monte Carlo.
Z = [[0.5, -1.0, 2.0], [-0.3, 0.8, 1.1]]
R = [[0.4, -0.2, 0.9, -0.7, 0.1, 0.3], [-0.6, 0.5, 0.2, 0.3, -0.4, -0.8], [0.1, 0.7, -0.5, 0.6, 0.2, -0.1]]
emit("Z", Z, "input: a representation, batch 2 × 3 features")
emit("R", R, "input: the task gradients with respect to Z, flattened")
r3 = t(R).reshape(3, 2, 3)
gsum = (r3 * t(Z).sign()).sum(1)
p = 0.5 * (1 + gsum.sum(0) / (gsum.abs().sum(0) + 1e-7))
keep = (gsum > 0) * p + (gsum < 0) * (1 - p)
expected = (r3 * keep.unsqueeze(1)).sum(0).reshape(-1)
mc = torch.stack([libmtl(LGradDrop, R, [0.0] * 3, rep=Z, leak=0.0)[0] for _ in range(4000)]).mean(0)
assert (mc - expected).abs().max() < 0.05, (mc, expected)
emit("GRADDROP_REP_EXPECTED", expected, "E[GradDrop direction] on the representation Z with gradients R")
emit("GRADDROP_REP_P", p, "GradDrop's sign purity P per feature")

print("// Generated by crates/metl-mtl/tests/reference/make_reference.py")
print(f"// torch {torch.__version__}, torchjd {TORCHJD_VERSION}, LibMTL 1.1.5, numpy {np.__version__}")
print("\n".join(OUT))
print(f"done: {len(OUT)} lines", file=sys.stderr)

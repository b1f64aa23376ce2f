#!/usr/bin/env python3
"""Prints the tables of docs/claims.md from the runs of configs/claims/claims.sh.

Usage: tables.py RUNS_DIR   (default runs/claims). Missing runs show as "-".
Only the standard library: it reads each run's eval.json and metrics.jsonl.
"""

import json
import math
import os
import statistics
import sys

OUT = sys.argv[1] if len(sys.argv) > 1 else "runs/claims"
ALPHABETS = [0, 6, 12, 18, 24]
# Two-sided 95% Student t quantiles by degrees of freedom.
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571}


def load(name, file="eval.json"):
    path = os.path.join(OUT, name, file)
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        if file.endswith(".jsonl"):
            return [json.loads(line) for line in f if line.strip()]
        return json.load(f)


def pooled_error(evals):
    """Error over the pooled test samples of `evals`' tasks, and its binomial 95% half-width."""
    tasks = [t for e in evals for t in e["tasks"]]
    n = sum(t["samples"] for t in tasks)
    wrong = sum(t["error_percent"] / 100 * t["samples"] for t in tasks)
    p = wrong / n
    return 100 * p, 196 * math.sqrt(p * (1 - p) / n), n


def fmt(value, half=None):
    if value is None:
        return "-"
    return f"{value:.2f}" if half is None else f"{value:.2f} ± {half:.2f}"


def claim_a():
    print("(a) test error (%) on five Omniglot alphabets, pooled over their test drawings, ± binomial 95% half-width")
    print()
    print("| training drawings per character | single-task (5 models) | multi-task EW | multi-task UW | test images |")
    print("|---:|---:|---:|---:|---:|")
    for d in [15, 10, 5, 2]:
        singles = [load(f"a-d{d}-single-{a}") for a in ALPHABETS]
        cells, n = [], None
        if all(singles):
            e, h, n = pooled_error(singles)
            cells.append(fmt(e, h))
        else:
            cells.append("-")
        for s in ["ew", "uw"]:
            run = load(f"a-d{d}-{s}")
            if run:
                e, h, n = pooled_error([run])
                cells.append(fmt(e, h))
            else:
                cells.append("-")
        print(f"| {d} | " + " | ".join(cells) + f" | {n or '-'} |")
    print()


def mean_ci(values):
    if len(values) < 2:
        return (values[0], None) if values else (None, None)
    m = statistics.mean(values)
    return m, T95[len(values) - 1] * statistics.stdev(values) / math.sqrt(len(values))


def claim_c():
    print("(c) five alphabets, 5 training drawings per character; mean over seeds 0, 1, 2 ± 95% t-interval")
    print()
    print("| strategy | test error (%) | per seed | task pairs in conflict (cos < 0), mean over training | mean pairwise cosine | conflicts, first 200 steps → last 200 |")
    print("|---|---:|---|---:|---:|---|")
    for s in ["ew", "pcgrad", "cagrad", "nash_mtl"]:
        errors, conflicts, cosines, early, late = [], [], [], [], []
        for seed in [0, 1, 2]:
            run = load(f"c-s{seed}-{s}")
            metrics = load(f"c-s{seed}-{s}", "metrics.jsonl")
            if not run or not metrics:
                continue
            errors.append(pooled_error([run])[0])
            rows = [m for m in metrics if m.get("grad_conflicts") is not None]
            conflicts.append(statistics.mean(m["grad_conflicts"] for m in rows))
            cosines.append(statistics.mean(m["grad_cosine"] for m in rows))
            early.append(statistics.mean(m["grad_conflicts"] for m in rows if m["step"] <= 200))
            last = max(m["step"] for m in rows)
            late.append(statistics.mean(m["grad_conflicts"] for m in rows if m["step"] > last - 200))
        m, h = mean_ci(errors)
        per_seed = ", ".join(f"{e:.2f}" for e in errors) or "-"
        c = f"{100 * statistics.mean(conflicts):.1f} %" if conflicts else "-"
        cos = f"{statistics.mean(cosines):+.3f}" if cosines else "-"
        trend = f"{100 * statistics.mean(early):.0f} % → {100 * statistics.mean(late):.0f} %" if early else "-"
        print(f"| {s} | {fmt(m, h)} | {per_seed} | {c} | {cos} | {trend} |")
    print()


def claim_b():
    print("(b) the same 600 Omniglot 5-way 1-shot test episodes (Vinyals split), accuracy (%) ± 95% interval")
    print()
    print("| method | training | adaptation at test | accuracy (%) |")
    print("|---|---|---|---:|")
    rows = [
        ("protonet", "Prototypical networks", "1,500 episodes, 20-way"),
        ("fomaml", "First-order MAML", "600 meta-iterations × 8 tasks"),
        ("maml", "MAML (second order)", "600 meta-iterations × 8 tasks"),
        ("baseline", "Baseline (linear head)", "3,000 batches of 64, 4,112 classes"),
        ("baseline_plus_plus", "Baseline++ (cosine head)", "3,000 batches of 64, 4,112 classes"),
    ]
    for key, label, training in rows:
        run = load(f"b-{key}")
        if not run:
            print(f"| {label} | {training} | - | - |")
            continue
        r = run["results"][-1]
        adapt = "none (nearest prototype)" if r["steps"] == 0 else f"{r['steps']} SGD steps"
        acc = r["accuracy"]
        print(f"| {label} | {training} | {adapt} | {fmt(100 * acc['mean'], 100 * acc['ci95'])} |")
    print()


claim_a()
claim_b()
claim_c()

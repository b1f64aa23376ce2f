#!/usr/bin/env bash
# The GPU check of a bundle made by `cargo xtask gpu-bundle`, in one command:
#
#   bash gpu-bundle/run.sh [--cpu] [--quick] [--python PYTHON] OUT_DIR
#
# Unpacks the bundle beside this script (metl-gpu-torch<VERSION>.tar.xz) into a temporary
# folder, finds the machine's own PyTorch (`python3`, or --python / $METL_GPU_PYTHON),
# checks that its version is the one the bundle was built for, and loads its libraries
# through LD_LIBRARY_PATH (the bundle holds no libtorch). Then it runs metl-models' tests
# on CUDA (METL_TEST_DEVICE=cuda, as `cargo xtask gpu-check` does), the `metl bench`
# workloads on CUDA and the models_speed table, and writes OUT_DIR/gpu-check.json (versions,
# device, each test's result, each benchmark's figures; rewritten after every step, so a
# run cut short still leaves what it did) and OUT_DIR/gpu-check.log (everything printed).
#
# --cpu runs the same steps on the CPU (to test a bundle on a machine without a GPU);
# --quick shortens the benchmarks (1 warm-up iteration, one window of 2) and the table.
# Exit status: 0 all passed; 1 a test or benchmark failed; 2 bad usage, a missing or
# mismatched torch, or no CUDA device (without --cpu).
set -u

usage="usage: bash run.sh [--cpu] [--quick] [--python PYTHON] OUT_DIR"
device=cuda quick=0 python=${METL_GPU_PYTHON:-python3} out=
while [ $# -gt 0 ]; do
    case $1 in
        --cpu) device=cpu ;;
        --quick) quick=1 ;;
        --python) python=${2:?$usage}; shift ;;
        -h|--help) echo "$usage"; exit 0 ;;
        -*) echo "run.sh: unknown option $1; $usage" >&2; exit 2 ;;
        *) [ -z "$out" ] || { echo "run.sh: one OUT_DIR only; $usage" >&2; exit 2; }; out=$1 ;;
    esac
    shift
done
[ -n "$out" ] || { echo "$usage" >&2; exit 2; }
mkdir -p "$out" && out=$(cd "$out" && pwd) || exit 2
here=$(cd "$(dirname "$0")" && pwd)
log=$out/gpu-check.log
: >"$log"
say() { echo "run.sh: $*" | tee -a "$log"; }

set -- "$here"/metl-gpu-torch*.tar.xz
[ $# -eq 1 ] && [ -f "$1" ] || { say "expected one metl-gpu-torch*.tar.xz beside run.sh in $here"; exit 2; }
archive=$1
want=${archive##*/metl-gpu-torch} want=${want%.tar.xz}

# The machine's torch: version, library folder, CUDA, device name (one line each).
probe='import os, torch
print(torch.__version__)
print(os.path.join(os.path.dirname(torch.__file__), "lib"))
print(torch.version.cuda or "none")
print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none")'
if ! info=$("$python" -c "$probe" 2>>"$log"); then
    say "'$python' cannot import torch: this bundle needs PyTorch $want installed (give --python PYTHON)"
    exit 2
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/metl-gpu-check.XXXXXX") || exit 2
trap 'rm -rf "$work"' EXIT
# Python unpacks (the machine may have no xz); "tar" keeps the executable bits.
unpack='import sys, tarfile
with tarfile.open(sys.argv[1]) as archive:
    try:
        archive.extractall(sys.argv[2], filter="tar")
    except TypeError:
        archive.extractall(sys.argv[2])'
"$python" -c "$unpack" "$archive" "$work" 2>>"$log" || { say "cannot unpack $archive"; exit 2; }
bundle=$(echo "$work"/metl-gpu-torch*)
records=$work/records
mkdir -p "$records"
manifest() { sed -n "s/^$1=//p" "$bundle/MANIFEST"; }
{ read -r have; read -r torch_lib; read -r cuda; read -r gpu; } <<<"$info"
device_name=$gpu
[ "$device" = cpu ] && device_name="CPU ($(nproc) cores)"
{
    echo "torch_version=$have"; echo "torch_lib=$torch_lib"; echo "python=$(command -v "$python")"
    echo "cuda=$cuda"; echo "device=$device"; echo "device_name=$device_name"
    command -v nvidia-smi >/dev/null &&
        echo "driver=$(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -1)"
} >"$records/machine"

summary() {
    "$python" - "$bundle/MANIFEST" "$records" "$out/gpu-check.json" "$1" <<'PY'
import json, os, re, sys
manifest, records, path, status = sys.argv[1:]
def keyvalues(file):
    pairs = (line.rstrip("\n").split("=", 1) for line in open(file) if "=" in line)
    return {k: v for k, v in pairs}
machine = keyvalues(os.path.join(records, "machine"))
tests, benches, failures = [], [], []
for name in sorted(os.listdir(records)):
    base = os.path.join(records, name)
    if name.endswith(".meta"):
        meta = keyvalues(base)
        meta["exit"] = int(meta["exit"]) if meta.get("exit", "").lstrip("-").isdigit() else None
        if "start" in meta:
            meta["seconds"] = round(float(meta.pop("end")) - float(meta.pop("start")), 2)
        out = base[:-5] + ".out"
        text = open(out, errors="replace").read() if os.path.exists(out) else ""
        if meta.pop("kind") == "test":
            results = dict(re.findall(r"^test (\S+) \.\.\. (ok|FAILED|ignored)$", text, re.M))
            meta["passed"] = sum(r == "ok" for r in results.values())
            meta["failed"] = sum(r == "FAILED" for r in results.values())
            meta["ignored"] = sum(r == "ignored" for r in results.values())
            meta["results"] = results
            tests.append(meta)
            if meta["exit"] != 0:
                failures.append("test binary " + meta["name"])
        else:
            lines = [l for l in text.splitlines() if l.strip()]
            if meta["name"] == "models_speed":
                meta["table"] = [l for l in lines if l.startswith("|")]
            elif meta["exit"] == 0 and lines:
                meta["result"] = json.loads(lines[-1])
            benches.append(meta)
            if meta["exit"] not in (0, None):
                failures.append("benchmark " + meta["name"])
summary = {
    "status": "failed" if failures and status in ("passed", "running") else status,
    "bundle": keyvalues(manifest), "machine": machine,
    "tests": tests, "benches": benches, "failures": failures,
}
json.dump(summary, open(path + ".tmp", "w"), indent=1)
os.replace(path + ".tmp", path)
PY
}

if [ "${have%%+*}" != "$want" ]; then
    say "this machine's torch is $have ($python), the bundle was built for torch $want:"
    say "build one for it here with \`cargo xtask gpu-bundle --torch ${have%%+*}\`"
    summary torch_mismatch; exit 2
fi
if [ "$device" = cuda ] && [ "$gpu" = none ]; then
    say "torch $have sees no CUDA device (torch.cuda.is_available() is False);"
    say "--cpu runs the same checks on the CPU"
    summary no_cuda; exit 2
fi
export LD_LIBRARY_PATH=$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
if missing=$(ldd "$bundle/bin/metl" | grep 'not found'); then
    say "libraries not found with LD_LIBRARY_PATH=$LD_LIBRARY_PATH:"; echo "$missing" | tee -a "$log"
    summary missing_libraries; exit 2
fi
echo "libtorch_loaded_from=$(ldd "$bundle/bin/metl" | sed -n 's/.*libtorch_cpu.so => \(.*\)\/libtorch_cpu.so.*/\1/p')" \
    >>"$records/machine"
say "bundle for torch $want ($(manifest metl_revision)); machine: torch $have, CUDA $cuda, device $device ($device_name)"

# step KIND NAME COMMAND...: runs COMMAND, its output into the log and the records (files
# named KIND.NUMBER, so that the summary keeps the order of the steps).
count=0
step() {
    local kind=$1 name=$2 id start status
    shift 2
    count=$((count + 1)) id=$records/$kind.$(printf %02d $count)
    say "\$ $*"
    start=$(date +%s.%N)
    "$@" >"$id.out" 2>"$id.err"
    status=$?
    printf 'kind=%s\nname=%s\nexit=%s\nstart=%s\nend=%s\ncommand=%s\n' "$kind" "$name" "$status" "$start" \
        "$(date +%s.%N)" "$*" >"$id.meta"
    cat "$id.out" "$id.err" >>"$log"
    say "$name: $([ $status -eq 0 ] && echo passed || echo "FAILED (exit $status)")"
    summary running
}
skip() {
    count=$((count + 1))
    printf 'kind=bench\nname=%s\nskipped=%s\n' "$1" "$2" >"$records/bench.$(printf %02d $count).meta"
    say "$1: skipped: $2"
}

summary running
for test in "$bundle"/tests/*; do
    METL_TEST_DEVICE=$device step test "$(basename "$test")" "$test"
done

omniglot=${METL_OMNIGLOT_DIR:-$bundle/data/omniglot}
export METL_OMNIGLOT_DIR=$omniglot
args=(--device "$device")
[ "$quick" = 1 ] && args+=(--warmup 1 --window 2 --windows 1)
metl=$bundle/bin/metl
step bench maml-sinusoid "$metl" bench maml-sinusoid "${args[@]}"
step bench "maml-sinusoid --first-order" "$metl" bench maml-sinusoid --first-order "${args[@]}"
if [ -e "$omniglot/images_background.zip" ] || [ -d "$omniglot/images_background" ]; then
    step bench maml-omniglot "$metl" bench maml-omniglot "${args[@]}"
    step bench "maml-omniglot --first-order" "$metl" bench maml-omniglot --first-order "${args[@]}"
    step bench protonet-omniglot "$metl" bench protonet-omniglot "${args[@]}"
else
    for name in maml-omniglot "maml-omniglot --first-order" protonet-omniglot; do
        skip "$name" "no Omniglot at $omniglot (the bundle was built without data; set METL_OMNIGLOT_DIR)"
    done
fi
reps=5
[ "$quick" = 1 ] && reps=1
step bench models_speed "$bundle/examples/models_speed" --device "$device" --reps "$reps"

summary passed
"$python" - "$out/gpu-check.json" <<'PY' | tee -a "$log"
import json, sys
s = json.load(open(sys.argv[1]))
m = s["machine"]
print(f"\ngpu-check ({s['status']}): metl {s['bundle'].get('metl_revision')} on {m.get('device_name')}, "
      f"torch {m.get('torch_version')}, CUDA {m.get('cuda')}")
for t in s["tests"]:
    print(f"  test {t['name']}: {t['passed']} passed, {t['failed']} failed, {t['ignored']} ignored ({t['seconds']:.1f} s)")
for b in s["benches"]:
    if "skipped" in b:
        print(f"  {b['name']}: skipped ({b['skipped']})")
    elif "result" in b:
        r = b["result"]
        print(f"  {b['name']}: {r['per_second']:.2f} {r['unit']}, peak RSS {r['peak_rss_mb']:.0f} MB")
    else:
        print(f"  {b['name']}: exit {b['exit']} ({b['seconds']:.1f} s)")
for line in next((b.get("table", []) for b in s["benches"] if b["name"] == "models_speed"), []):
    print("  " + line)
print(f"  written: {sys.argv[1]}")
PY
status=$("$python" -c 'import json,sys; print(json.load(open(sys.argv[1]))["status"])' "$out/gpu-check.json")
[ "$status" = passed ]

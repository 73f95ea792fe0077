#!/usr/bin/env bash
# The GPU check of dhs (benchmarks/gpu/README.md): the cuda-marked tests of every package, then the
# injection, training-step and scoring benchmarks on the GPU; a summary table at the end.
#
#   bash benchmarks/gpu/run.sh [WHEEL_DIR]      (WHEEL_DIR: default benchmarks/gpu/wheels)
#
# Needs no network: the preinstalled torch, torchvision, timm, pyarrow, scipy, scikit-learn and
# matplotlib are used through a venv made with --system-site-packages, everything else comes from
# WHEEL_DIR (README.md, "Download the wheels"). Exit status: 0 when every step passed, 1 when one
# did not, 2 when no step could run (no CUDA device, no wheels, an install that failed).
#
# Environment:
#   DHS_GPU_SKIP_INSTALL=1  no venv and no installs: the python3 on PATH, as it is, runs everything
#   DHS_GPU_DEVICE=cpu      dry run without a GPU: no CUDA check, every step on --device cpu
#   DHS_GPU_VENV=DIR        the venv (default benchmarks/gpu/.venv; reused when it exists)
#   DHS_GPU_BUDGET_S=N      seconds for all the steps together (default 480)
#   OUT                     when set, the log is written to $OUT/gpu-check.log (else ./gpu-check.log)
set -euo pipefail

WHEEL_DIR=${1:-benchmarks/gpu/wheels}
[[ $WHEEL_DIR == /* ]] || WHEEL_DIR="$PWD/$WHEEL_DIR"
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ROOT=$PWD
DEVICE=${DHS_GPU_DEVICE:-cuda}
VENV=${DHS_GPU_VENV:-benchmarks/gpu/.venv}
[[ $VENV == /* ]] || VENV="$ROOT/$VENV"
BUDGET=${DHS_GPU_BUDGET_S:-480}
LOG=${OUT:+$OUT/}gpu-check.log
[[ $LOG == /* ]] || LOG="$ROOT/$LOG"
if [[ $DEVICE != cuda && $DEVICE != cpu ]]; then
    echo "DHS_GPU_DEVICE=$DEVICE: use cuda (the default) or cpu (a dry run)" >&2
    exit 2
fi
exec > >(tee "$LOG") 2>&1
TEE_PID=$!
PIN='' STEP_OUT=''
cleanup() {
    rm -f "$PIN" "$STEP_OUT"
    # the end of the output reaches the log before the script returns
    exec >&- 2>&-
    wait "$TEE_PID" 2>/dev/null || true
}
trap cleanup EXIT

export DHS_LOAD_PLUGINS=builtin MPLBACKEND=Agg PYTHONUNBUFFERED=1
# the packages of the checkout, in import order (DESIGN §1)
PACKAGES=(dhs-core dhs-data dhs-eval dhs-models dhs-inject dhs-cli)
# the preinstalled stack: printed, and pinned while installing (a wheel must never replace them)
STACK=(torch torchvision timm numpy scipy scikit-learn matplotlib pyarrow)

header() { printf '\n==== %s ====\n' "$*"; }

header "dhs GPU check, $(date -u '+%Y-%m-%d %H:%M:%S UTC'), $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo 'no git')"
echo "python3: $(command -v python3) ($(python3 -c 'import sys; print(sys.version.split()[0])'))"
echo "log: $LOG"

# ---- a. the GPU -------------------------------------------------------------------------------
header "CUDA device"
if [[ $DEVICE == cuda ]]; then
    if command -v nvidia-smi >/dev/null; then
        nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
    fi
    if ! python3 -c '
import sys

try:
    import torch
except ImportError as exc:
    sys.exit(f"python3 cannot import torch ({exc})")
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}")
if not torch.cuda.is_available():
    sys.exit(f"torch {torch.__version__} sees no CUDA device (torch.cuda.is_available() is False; "
             f"CUDA build: {torch.version.cuda})")
print(f"GPU: {torch.cuda.get_device_name(0)} (compute capability {torch.cuda.get_device_capability(0)}, "
      f"{torch.cuda.get_device_properties(0).total_memory / 2**30:.1f} GiB), "
      f"bf16 {torch.cuda.is_bf16_supported()}, devices visible: {torch.cuda.device_count()}")
'; then
        echo "no CUDA device: this check needs one CUDA GPU and a CUDA build of torch in python3" \
             "(the reason is on the line above). DHS_GPU_DEVICE=cpu runs the same steps on the CPU as a dry run."
        exit 2
    fi
else
    echo "DHS_GPU_DEVICE=cpu: dry run, no CUDA check; every step runs on the CPU"
fi
python3 - "${STACK[@]}" <<'EOF'
import importlib.metadata as md
import sys

found = []
for name in sys.argv[1:]:
    try:
        found.append(f"{name} {md.version(name)}")
    except md.PackageNotFoundError:
        found.append(f"{name} MISSING")
print("preinstalled: " + ", ".join(found))
EOF

# ---- b. the environment -----------------------------------------------------------------------
if [[ ${DHS_GPU_SKIP_INSTALL:-0} == 1 ]]; then
    header "environment: DHS_GPU_SKIP_INSTALL=1, the current python3 as it is"
    PY=$(command -v python3)
else
    header "environment: $VENV (--system-site-packages), wheels from $WHEEL_DIR"
    if ! compgen -G "$WHEEL_DIR/*.whl" >/dev/null; then
        echo "no wheels in $WHEEL_DIR: download them on a machine with internet first" \
             "(benchmarks/gpu/README.md, \"Download the wheels\"), or pass their directory: bash $0 WHEEL_DIR"
        exit 2
    fi
    if [[ ! -x $VENV/bin/python ]]; then
        # without ensurepip (Debian's python3 without python3-venv) the venv borrows python3's pip
        python3 -m venv --system-site-packages "$VENV" 2>/dev/null \
            || { rm -rf "$VENV"; python3 -m venv --system-site-packages --without-pip "$VENV"; }
        # python3 may itself be a venv (torch in /opt/.../.venv): --system-site-packages reaches only
        # its base interpreter's packages, so python3's own site directories are added by a .pth file
        # (after the new venv's: what is installed here wins)
        python3 -c '
import site, sys
dirs = [*site.getsitepackages(), *(p for p in sys.path if p.endswith(("site-packages", "dist-packages")))]
print("\n".join(dict.fromkeys(dirs)))' >"$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')/_dhs_gpu_check_python3.pth"
    fi
    PY=$VENV/bin/python
    PIN=$(mktemp)
    "$PY" - "${STACK[@]}" >"$PIN" <<'EOF'
import importlib.metadata as md
import sys

for name in sys.argv[1:]:
    try:
        print(f"{name}=={md.version(name)}")
    except md.PackageNotFoundError:
        pass
EOF
    # the preinstalled stack stays as it is: a wheel that needs another version of it is a conflict
    OFFLINE=(--disable-pip-version-check --no-input --no-index --find-links "$WHEEL_DIR" -c "$PIN")
    t=$SECONDS
    # pip skips what the machine already has in a version that fits ("Requirement already
    # satisfied") and takes the rest from the wheel directory
    if ! timeout 300 "$PY" -m pip install "${OFFLINE[@]}" -r benchmarks/gpu/requirements.txt; then
        echo "pip could not install benchmarks/gpu/requirements.txt from $WHEEL_DIR without network" \
             "(its reason is above; the preinstalled versions are printed further up): see" \
             "benchmarks/gpu/README.md, \"When pip stops the install\""
        exit 2
    fi
    # without its declared dependencies (requirements-bench.txt says why)
    timeout 120 "$PY" -m pip install "${OFFLINE[@]}" --no-deps -r benchmarks/gpu/requirements-bench.txt \
        || echo "WARNING: lenstronomy is not installed (pip's reason above): bench_inject will fail; the other steps run"
    for pkg in "${PACKAGES[@]}"; do
        # --no-deps: the dependencies are installed above; no build isolation: hatchling comes from the wheels
        timeout 120 "$PY" -m pip install "${OFFLINE[@]}" --quiet --no-deps --no-build-isolation -e "packages/$pkg" \
            || { echo "could not install packages/$pkg (pip's reason above)"; exit 2; }
    done
    echo "installed in $((SECONDS - t)) s"
fi
if ! "$PY" -c 'import torch, torchvision, timm, dhs_core, dhs_data, dhs_eval, dhs_models, dhs_inject, dhs_cli, pytest
print("torch, the dhs packages and pytest import")'; then
    echo "$PY cannot import torch, the dhs packages or pytest (above); with DHS_GPU_SKIP_INSTALL=1 the python3" \
         "on PATH must have them installed"
    exit 2
fi
"$PY" -m pip list --disable-pip-version-check 2>/dev/null | grep -E '^(dhs-|pydantic |pluggy |healpy |astropy |scikit-image |typer |rich |pytest |lenstronomy )' || true

# ---- c. the steps -----------------------------------------------------------------------------
NAMES=() STATUS=() SECS=() RESULT=()
T0=$SECONDS
STEP_OUT=$(mktemp)

# run_step NAME LIMIT_S KIND COMMAND...: runs COMMAND within min(LIMIT_S, what is left of the budget)
# and records its status; KIND "pytest" reads exit status 5 (nothing collected) as "none"
run_step() {
    local name=$1 limit=$2 kind=$3
    shift 3
    local left=$((BUDGET - (SECONDS - T0)))
    header "$name"
    if ((left < 20)); then
        echo "not run: the ${BUDGET} s budget is spent"
        NAMES+=("$name") STATUS+=("NOT RUN") SECS+=(0) RESULT+=("budget of ${BUDGET} s spent")
        return
    fi
    ((limit > left)) && limit=$left
    echo "\$ $* (limit ${limit} s)"
    local t=$SECONDS rc
    set +e
    timeout --kill-after=15 "$limit" "$@" 2>&1 | tee "$STEP_OUT"
    rc=${PIPESTATUS[0]}
    set -e
    local status result=''
    if [[ $kind == pytest ]]; then
        # pytest's last line: "3 passed, 2 skipped, 120 deselected in 30.0s"
        result=$(grep -E '(passed|failed|skipped|error|deselected|no tests ran)' "$STEP_OUT" | tail -n 1 || true)
    fi
    [[ -n ${result:-} ]] || result=$(grep -v '^[[:space:]]*$' "$STEP_OUT" | tail -n 1 || true)
    case $rc in
        0) status=ok ;;
        5) if [[ $kind == pytest ]]; then status=none; else status="FAIL (exit 5)"; fi ;;
        124 | 137) status="TIMEOUT (${limit} s)" ;;
        *) status="FAIL (exit $rc)" ;;
    esac
    NAMES+=("$name") STATUS+=("$status") SECS+=($((SECONDS - t))) RESULT+=("$result")
}

TRAIN_ARGS=(--quick --device "$DEVICE")
# a dry run on a CPU keeps EfficientNetV2-S's steps small
[[ $DEVICE == cpu ]] && TRAIN_ARGS+=(--batch 8)

for pkg in "${PACKAGES[@]}"; do
    [[ -d packages/$pkg/tests ]] || continue
    run_step "pytest -m cuda $pkg" 240 pytest \
        "$PY" -m pytest -q -rfEs -p no:cacheprovider -m cuda "packages/$pkg/tests"
done
# lenstronomy at levels 3 and 9 only: at 27 with its sub-pixel PSF one injection takes ~40 s of CPU,
# minutes of the budget. At 9 it misses the 1 % tolerance, so the printed ratio is a lower bound.
run_step "bench_inject" 240 bench "$PY" benchmarks/bench_inject.py --quick --device "$DEVICE" --levels 3,9
run_step "bench_train_step" 120 bench "$PY" benchmarks/bench_train_step.py "${TRAIN_ARGS[@]}"
run_step "bench_score" 150 bench "$PY" benchmarks/bench_score.py --quick --device "$DEVICE"

# ---- summary ----------------------------------------------------------------------------------
header "summary (device $DEVICE, steps $((SECONDS - T0)) s of a ${BUDGET} s budget)"
failed=0
printf '%-26s %-16s %7s  %s\n' step status seconds result
for i in "${!NAMES[@]}"; do
    printf '%-26s %-16s %7s  %s\n' "${NAMES[$i]}" "${STATUS[$i]}" "${SECS[$i]}" "${RESULT[$i]}"
    [[ ${STATUS[$i]} == ok || ${STATUS[$i]} == none ]] || failed=$((failed + 1))
done
if ((failed)); then
    echo "$failed step(s) did not pass; their output is above in $LOG"
    exit 1
fi
echo "every step passed (log: $LOG)"

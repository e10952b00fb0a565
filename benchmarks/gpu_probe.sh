#!/bin/sh
# The device run of benchmarks/gpu_probe.py: installs the wheelhouse (.whl/, made here by
# benchmarks/wheelhouse.sh and carried along) offline into /tmp/site, then runs the probe with
# its JSON lines in $OUT/gpu_probe.jsonl, its stderr in $OUT/gpu_probe.stderr (last lines
# echoed) and nvidia-smi's report in $OUT/nvidia-smi.txt. Arguments go to the probe.
#
#   sh benchmarks/gpu_probe.sh [--budget-s 440] [--variants ...]
#
# PROBE_TIMEOUT (default 520 s) kills the probe if it overruns its own budget; the lines
# written so far stay in $OUT. PYTHON (python3) and SITE (/tmp/site) can be changed.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-$(mktemp -d)}
export OUT
if ! ls .whl/*.whl >/dev/null 2>&1; then
    echo "no wheels in .whl/: run sh benchmarks/wheelhouse.sh here first and carry .whl" >&2
    exit 2
fi
PYTHON=${PYTHON:-python3}
SITE=${SITE:-/tmp/site}
"$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$SITE" .whl/*.whl || exit 2
export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
nvidia-smi >"$OUT/nvidia-smi.txt" 2>&1 || true
rc=0
timeout -k 10 "${PROBE_TIMEOUT:-520}" "$PYTHON" benchmarks/gpu_probe.py "$@" \
    2>"$OUT/gpu_probe.stderr" || rc=$?
tail -n 25 "$OUT/gpu_probe.stderr" >&2
echo "exit $rc; JSON lines: $OUT/gpu_probe.jsonl" >&2
exit "$rc"

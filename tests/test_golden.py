"""The demo job's task ids and results table, pinned as committed data.

`tests/data/demo_golden.json` holds what `jobs/demo.yaml` produces on the tiny model with one
torch thread (CPU image bytes depend on the thread count): the task ids in expansion order, the
results parts' Arrow schema (column order and types), the pandas dtypes of `load_run`, every
value of every row except the timing and worker columns (binary columns by sha256), and each
PNG's sha256, checked against the file on disk. Task ids, columns, values or bytes that change
are a change of behaviour, which this test names column by column.

    python tests/test_golden.py OUT_ROOT    # rewrite the golden file from a fresh demo run
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
from pathlib import Path

import pyarrow.parquet as pq

GOLDEN = Path(__file__).parent / "data" / "demo_golden.json"
REPO = Path(__file__).resolve().parent.parent
VOLATILE = ("gen_seconds", "worker")  # wall time and host:pid


def _value(v):
    """A cell as JSON: floats exactly (repr round-trips), NaN as text, bytes by sha256."""
    if hasattr(v, "tolist"):  # numpy scalars and arrays
        v = v.tolist()
    if isinstance(v, bytes):
        return {"sha256": hashlib.sha256(v).hexdigest()}
    if isinstance(v, float) and math.isnan(v):
        return "NaN"
    if isinstance(v, (list, tuple)):
        return [_value(x) for x in v]
    return v


def snapshot(run_dir: Path) -> dict:
    """The golden record of a finished demo run directory."""
    from analysis import load_run
    from animagine_batch import cli, driver

    spec, _, dirs = cli.load_spec(str(REPO / "jobs" / "demo.yaml"), ["runner.threads=1"])
    tasks = [t.task_id for t in driver.make_plan(spec, dirs).tasks]
    parts = sorted((run_dir / "results").glob("part-*.parquet"))
    schema = pq.read_schema(parts[0])
    df = load_run(run_dir).set_index("task_id").loc[tasks]
    rows = {tid: {c: _value(row[c]) for c in df.columns if c not in VOLATILE}
            for tid, row in zip(df.index, df.to_dict("records"))}
    pngs = {tid: hashlib.sha256((run_dir / row["image_path"]).read_bytes()).hexdigest()
            for tid, row in rows.items()}
    return {"task_ids": tasks,
            "schema": [[f.name, str(f.type)] for f in schema],
            "dtypes": {c: str(t) for c, t in load_run(run_dir).dtypes.items()},
            "rows": rows, "png_sha256": pngs}


def test_demo_task_ids_table_and_bytes_match_the_golden_record(demo_run):
    golden = json.loads(GOLDEN.read_text())
    got = snapshot(demo_run)
    assert got["task_ids"] == golden["task_ids"]
    assert got["schema"] == golden["schema"]
    assert got["dtypes"] == golden["dtypes"]
    for tid, want in golden["rows"].items():
        have = got["rows"][tid]
        changed = {c: (want.get(c), have.get(c)) for c in set(want) | set(have)
                   if want.get(c) != have.get(c)}
        assert not changed, f"task {tid}: columns changed (golden, now): {changed}"
    assert got["png_sha256"] == golden["png_sha256"]
    assert {tid: r["image_sha256"] for tid, r in got["rows"].items()} == golden["png_sha256"]


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    from animagine_batch import cli

    root = Path(sys.argv[1])
    assert cli.main(["run", str(REPO / "jobs" / "demo.yaml"), f"output.root={root}",
                     "runner=local", "runner.threads=1"]) == 0
    GOLDEN.parent.mkdir(exist_ok=True)
    GOLDEN.write_text(json.dumps(snapshot(root / "demo"), indent=1, sort_keys=True) + "\n")
    print(f"-> {GOLDEN}")

"""Compaction during a run (rundir/compact.py): the base-16 structure, a kill at every step of a
merge, the dedupe rule across merges, provenance kept apart, foreign and damaged parts left
alone, and readers that open each part once."""

import io
import shutil
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from animagine_batch.engine.generator import UnitResult
from animagine_batch.rundir import compact, load_run, read, verify
from animagine_batch.rundir import schema as S
from animagine_batch.rundir import write as store

SCHEMA = S.results_schema({}, {}, {"package": "one"})
# rows that only the dedupe rule tells apart, spread over units that different merges take in
LATER = {3: [("a", "error", "oom", None)], 200: [("a", "ok", None, "a-late")],
         5: [("b", "ok", None, "b-old")], 250: [("b", "ok", None, "b-new")],  # --verify's redo
         7: [("c", "ok", None, "c-first")], 255: [("c", "error", "late", None)],
         258: [("d", "error", "early", None)], 259: [("d", "error", "late", None)]}


def unit(i: int) -> UnitResult:
    rows = [{"task_id": f"t{i}", "status": "ok", "seed": i, "image_sha256": f"s{i}"}]
    rows += [{"task_id": t, "status": st, "seed": i, "error": err, "image_sha256": sha}
             for t, st, err, sha in LATER.get(i, [])]
    return UnitResult(f"{i:016x}x{len(rows)}", rows, [None] * len(rows), 0.1)


def spans(run: Path) -> list[tuple[int, int, int]]:
    return [(p.first, p.last, p.level) for p in compact.parts(run / "results")]


def table(run: Path) -> pd.DataFrame:
    return load_run(run).sort_values("task_id").reset_index(drop=True)


def write_units(run: Path, units, schema=SCHEMA) -> store.RunStore:
    s = store.RunStore(run, schema)
    s.open("job: {}\n")
    for i in units:
        s.write(unit(i))
    return s


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """Unkilled runs of 255, 256 and 261 units."""
    base = tmp_path_factory.mktemp("clean")
    runs = {}
    s = write_units(base / "run", range(255))
    for n in (255, 256, 261):
        while s._seq < n:
            s.write(unit(s._seq))
        runs[n] = base / f"run{n}"
        shutil.copytree(base / "run", runs[n])
    return runs


def test_structure_is_the_base_16_digits():
    assert compact.structure(0) == [] and compact.structure(15) == [(i, i, 0) for i in range(15)]
    assert compact.structure(16) == [(0, 15, 1)]
    assert compact.structure(16 * 16 + 5) == [(0, 255, 2)] + [(i, i, 0) for i in range(256, 261)]
    big = compact.structure(250_000)  # 0x3d090: 3 + 13 + 0 + 9 + 0 parts
    assert len(big) == 25 and big[-1] == (249_856 + 128, 249_999, 1)
    assert [lvl for *_, lvl in big] == [4] * 3 + [3] * 13 + [1] * 9
    assert all(b[0] == a[1] + 1 for a, b in zip(big, big[1:]))


def test_the_policy_leaves_exactly_that_structure_after_every_write(tmp_path):
    run = tmp_path / "run"
    s = write_units(run, [])
    for n in range(1, 16 * 16 + 6):
        s.write(unit(n - 1))
        assert spans(run) == compact.structure(n), n
    names = sorted(p.name for p in (run / "results").iterdir())
    assert names[0] == "part-000255-L2-000000.parquet" and len(names) == 6
    df = table(run)
    assert len(df) == 261 + 4 and df.task_id.is_unique
    got = df.set_index("task_id")
    assert got.loc["a", "status"] == "ok" and got.loc["a", "image_sha256"] == "a-late"
    assert got.loc["b", "image_sha256"] == "b-new"  # the regenerated row, written later
    assert got.loc["c", "status"] == "ok" and got.loc["c", "image_sha256"] == "c-first"
    assert got.loc["d", "error"] == "late"
    assert s.done_ids() == {f"t{i}" for i in range(261)} | {"a", "b", "c"}
    # inside a merged part each task has one row: the one readers pick
    merged = pq.read_table(run / "results" / names[0])
    assert merged.num_rows == 256 + 3 and len(set(merged["task_id"].to_pylist())) == 259
    assert pq.read_schema(run / "results" / names[0]).metadata == SCHEMA.metadata


def _dies_at(step: int):
    """os.replace and Path.unlink, the steps that change the folder: the process dies at the
    given one (and nothing after it runs, as in a real kill)."""
    count, real_replace, real_unlink = [0], store.os.replace, Path.unlink

    def alive():
        count[0] += 1
        if count[0] > step:
            raise KeyboardInterrupt

    def replace(*a, **kw):
        alive()
        return real_replace(*a, **kw)

    def unlink(self, *a, **kw):
        alive()
        return real_unlink(self, *a, **kw)

    return replace, unlink, count


@pytest.mark.filterwarnings("ignore:.*is not a results part")  # the killed write's temporary file
def test_a_kill_at_any_step_of_a_merge_loses_nothing(clean, tmp_path, monkeypatch):
    """The 256th unit's write: its part, the merge of 16 level-0 parts and the merge of 16
    level-1 parts (a replace and 16 deletions each): killed before each of those 35 steps."""
    steps = 1 + 2 * (1 + compact.FANOUT)
    for k in range(steps + 1):
        run = tmp_path / f"k{k}"
        shutil.copytree(clean[255], run)
        s = store.RunStore(run, SCHEMA)
        s.open("job: {}\n")
        replace, unlink, count = _dies_at(k)
        monkeypatch.setattr(store.os, "replace", replace)
        monkeypatch.setattr(Path, "unlink", unlink)
        if k < steps:
            with pytest.raises(KeyboardInterrupt):
                s.write(unit(255))
        else:
            s.write(unit(255))
            assert count[0] == steps  # every step was counted
        monkeypatch.undo()
        # straight after the kill: duplicates at most, the same table
        before = clean[255] if k == 0 else clean[256]
        pd.testing.assert_frame_equal(table(run), table(before))
        assert read.done_ids(run) == read.done_ids(before)
        # the rerun: leftovers cleared, the merge finished, the pending unit redone
        s = store.RunStore(run, SCHEMA)
        s.open("job: {}\n")
        assert not list((run / "results").glob(".tmp-*"))
        if "t255" not in s.done_ids():
            s.write(unit(255))
        assert spans(run) == compact.structure(256), k
        for i in range(256, 261):
            s.write(unit(i))
        assert spans(run) == compact.structure(261)
        pd.testing.assert_frame_equal(table(run), table(clean[261]))
        assert read.done_ids(run) == read.done_ids(clean[261])


def test_recover_leaves_a_part_that_the_merge_does_not_hold(clean, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(clean[256], run)
    stranger = run / "results" / "part-000100-ffffffffffffffffx1.parquet"  # inside [0, 255]
    pq.write_table(pa.Table.from_pylist([{"task_id": "new", "status": "ok"}], schema=SCHEMA),
                   stranger)
    assert compact.recover(run / "results", lambda folder: None) == []
    assert stranger.exists() and "new" in read.done_ids(run)


def test_parts_of_different_provenance_stay_apart(tmp_path):
    run = tmp_path / "run"
    write_units(run, range(10))
    other = S.results_schema({}, {}, {"package": "two"})
    s = write_units(run, range(10, 30), other)
    assert spans(run) == [(i, i, 0) for i in range(10)] + [(10, 25, 1)] + [
        (i, i, 0) for i in range(26, 30)]
    meta = {p.path.name: pq.read_schema(p.path).metadata for p in compact.parts(run / "results")}
    assert meta["part-000025-L1-000010.parquet"] == other.metadata
    assert sum(m == SCHEMA.metadata for m in meta.values()) == 10
    s.compact(min_parts=2)  # the end of the run: one part per stretch of one provenance
    assert spans(run) == [(0, 9, 1), (10, 29, 2)]
    parts = compact.parts(run / "results")
    assert [pq.read_schema(p.path).metadata for p in parts] == [SCHEMA.metadata, other.metadata]
    assert len(load_run(run)) == 30 + 3


@pytest.mark.filterwarnings("ignore:.*has no task_id, status column")
def test_a_foreign_or_damaged_part_is_left_where_it_is(tmp_path):
    run = tmp_path / "run"
    write_units(run, range(5))
    foreign = run / "results" / "part-000005-notes.parquet"
    pq.write_table(pa.table({"a": [1]}), foreign)
    raw = foreign.read_bytes()
    s = write_units(run, range(6, 22))
    assert spans(run) == [(i, i, 0) for i in range(6)] + [(6, 21, 1)]  # no merge across it
    assert foreign.read_bytes() == raw
    s.compact(min_parts=2)
    assert spans(run) == [(0, 4, 1), (5, 5, 0), (6, 21, 1)] and foreign.read_bytes() == raw
    # a damaged merged part: --verify sets it aside, its tasks are generated again
    merged = run / "results" / "part-000021-L1-000006.parquet"
    merged.write_bytes(merged.read_bytes()[:-40])
    out = io.StringIO()
    assert verify.verify(run, out) == {f"t{i}" for i in range(5)}  # rows without PNGs here
    assert f"1 unreadable part(s) moved to damaged/: results/{merged.name}" in out.getvalue()
    assert (run / "damaged" / "results" / merged.name).exists()
    assert read.done_ids(run) == {f"t{i}" for i in range(5)}
    write_units(run, range(6, 22))
    assert spans(run) == [(0, 4, 1), (5, 5, 0), (6, 21, 1)]
    assert read.done_ids(run) == {f"t{i}" for i in [*range(5), *range(6, 22)]} | {"c"}


def test_readers_open_each_part_once_and_read_only_what_they_need(clean, monkeypatch):
    opened, reads = [], []

    class Counted(pq.ParquetFile):
        def __init__(self, source, *a, **kw):
            opened.append(Path(source).name)
            super().__init__(source, *a, **kw)

        def read(self, columns=None, *a, **kw):
            reads.append(columns)
            return super().read(columns, *a, **kw)

    def refused(*a, **kw):
        raise AssertionError("a second way into a part")

    monkeypatch.setattr(read.pq, "ParquetFile", Counted)
    monkeypatch.setattr(read.pq, "read_schema", refused)
    monkeypatch.setattr(read.pq, "read_table", refused)
    names = sorted(p.name for p in (clean[261] / "results").iterdir())
    assert len(read.done_ids(clean[261])) == 261 + 3
    assert sorted(opened) == names and reads == [["task_id", "status"]] * len(names)
    opened.clear(), reads.clear()
    assert len(load_run(clean[261])) == 261 + 4
    assert sorted(opened) == names and reads == [None] * len(names)


def test_the_policy_merges_on_object_storage_too(tmp_path):
    """The same structure and table on a filesystem with no rename (fsspec's in-memory one: a
    part is one whole write, its inputs deleted after it)."""
    pytest.importorskip("fsspec")
    from animagine_batch.rundir.storage import location

    remote = location("memory://animagine-compaction/run")
    s = write_units(remote, [])
    local = write_units(tmp_path / "run", [])
    for n in range(1, 16 * 2 + 4):
        s.write(unit(n - 1))
        local.write(unit(n - 1))
    assert [(p.first, p.last, p.level) for p in compact.parts(remote / "results")] == \
        compact.structure(35) == spans(tmp_path / "run")
    got = load_run(remote).sort_values("task_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(got, table(tmp_path / "run"))

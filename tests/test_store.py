"""PNG metadata, the Parquet schema, atomic writes and the resume/dedupe rules."""

import io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from analysis import ResultsError, load_run
from animagine_batch.rundir import metadata
from animagine_batch.rundir import schema as S
from animagine_batch.rundir import write as store
from animagine_batch.errors import ConfigError
from animagine_batch.engine.generator import UnitResult


def test_infotext_round_trips_through_the_a1111_regex():
    params = {"Steps": 28, "Sampler": "DPM++ 2M Karras", "CFG scale": "7", "Seed": 123456,
              "Size": "832x1216", "Model hash": "abcdef0123", "Model": "animagine-xl-3.1",
              "Note": 'has, comma: colon and "quote" \\ slash'}
    text = metadata.infotext("1girl, solo\nsecond line", "lowres, (bad)", params)
    assert text.split("\n")[2] == "Negative prompt: lowres, (bad)"
    assert 'Note: "has, comma: colon and \\"quote\\" \\\\ slash"' in text
    back = metadata.parse_infotext(text)
    assert back["Prompt"] == "1girl, solo\nsecond line"
    assert back["Negative prompt"] == "lowres, (bad)"
    assert back["Steps"] == "28" and back["Sampler"] == "DPM++ 2M Karras"
    assert back["Size-1"] == 832 and back["Size-2"] == 1216
    assert back["Note"] == 'has, comma: colon and "quote" \\ slash'


def test_png_carries_both_chunks_and_is_deterministic():
    px = np.random.default_rng(1).integers(0, 255, (16, 24, 3), dtype=np.uint8)
    meta = {"prompt": "p", "seed": 3}
    a = metadata.encode_png(px, "p\nSteps: 2", meta, 1)
    assert a == metadata.encode_png(px, "p\nSteps: 2", meta, 1)
    im = Image.open(io.BytesIO(a))
    assert im.text["parameters"] == "p\nSteps: 2" and json.loads(im.text["metadata"]) == meta
    assert np.array_equal(np.asarray(im), px)


def test_schema_types_and_unknown_columns(tmp_path):
    schema = S.results_schema({"quality": "string", "cfg": "float64", "hires": "float64"},
                                  {"aesthetic_score": "float32"}, {"package": "x"})
    assert schema.field("steps").type == pa.int32() and schema.field("cfg").type == pa.float64()
    assert schema.field("seed").type == pa.int64() and schema.field("hires").type == pa.float64()
    assert schema.names.count("cfg") == 1
    s = store.RunStore(tmp_path / "run", schema)
    s.open("job: {}\n")
    with pytest.raises(ValueError, match="outside the results schema: \\['bogus'\\]"):
        s.write(UnitResult("u", [{"task_id": "a", "bogus": 1}], [None], 0.1))
    assert not list((tmp_path / "run" / "results").iterdir())


def test_decimal_settings_read_back_as_written(tmp_path):
    """cfg and the hi-res settings are float64: a query with the number the user wrote finds
    them, and group labels print as written; a part written before (float32) still reads."""
    run = tmp_path / "run"
    old = S.results_schema({}, {}).set(
        S.results_schema({}, {}).get_field_index("hires_strength"),
        pa.field("hires_strength", pa.float32()))
    s = store.RunStore(run, old)
    s.open("job: {}\n")
    s.write(UnitResult("u0", [_row("old", "ok", hires_strength=0.55)], [None], 0.1))
    s.schema = S.results_schema({}, {})
    s.write(UnitResult("u1", [_row("a", "ok", cfg=6.3, hires_scale=1.3, hires_strength=0.55),
                              _row("b", "ok", cfg=4.1, hires_scale=1.3, hires_strength=0.35)],
                       [None, None], 0.1))
    df = load_run(run).set_index("task_id")
    assert df.loc["a", "cfg"] == 6.3 and df.loc["a", "hires_scale"] == 1.3
    assert list(df.query("hires_strength == 0.55").index) == ["a"]  # not the float32 one
    assert df.loc["old", "hires_strength"] == pytest.approx(0.55, abs=1e-7)
    labels = [str(v) for v in df.groupby("hires_strength").size().index]
    assert labels == ["0.35", "0.55", "0.550000011920929"]  # the old part keeps its float32


def _row(task_id, status, **kw):
    return {"task_id": task_id, "status": status, "steps": 2, "cfg": 7.0, "seed": 1, **kw}


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_writes_are_atomic_and_png_precedes_row(tmp_path, monkeypatch):
    run = tmp_path / "run"
    s = store.RunStore(run, S.results_schema({}, {}))
    s.open("job: {}\n")
    (run / "images" / ".tmp-leftover").write_bytes(b"x")
    s.open("job: {}\n")  # a rerun clears temporary leftovers
    assert not list((run / "images").glob(".tmp-*"))
    rows = [_row("a", "ok", image_path="images/a.png"), _row("b", "ok", image_path="images/b.png")]
    # the PNGs are on disk, whole, when the unit's rows are written
    seen, write_table = [], store.atomic_write_table
    monkeypatch.setattr(store, "atomic_write_table", lambda path, table: (
        seen.append(_files(run / "images")), write_table(path, table)))
    s.write(UnitResult("u1", rows, [b"PNG-A", b"PNG-B"], 0.1))
    assert seen == [{"a.png": b"PNG-A", "b.png": b"PNG-B"}]
    parts = sorted((run / "results").iterdir())
    assert [p.name for p in parts] == ["part-000000-u1.parquet"]
    assert pq.read_table(parts[0]).schema.field("steps").type == pa.int32()
    monkeypatch.undo()

    def dies_after(calls: int):  # fsync of a temporary file: the process dies mid-write
        real, count = store.os.fsync, []

        def fsync(fd):
            count.append(fd)
            if len(count) > calls:
                raise KeyboardInterrupt
            real(fd)

        return fsync

    # killed writing the second PNG: the first is whole, the second absent, no rows written
    monkeypatch.setattr(store.os, "fsync", dies_after(1))
    with pytest.raises(KeyboardInterrupt):
        s.write(UnitResult("u2", [_row("c", "ok", image_path="images/c.png"),
                                  _row("d", "ok", image_path="images/d.png")],
                           [b"PNG-C", b"PNG-D"], 0.1))
    monkeypatch.undo()
    assert _files(run / "images") == {"a.png": b"PNG-A", "b.png": b"PNG-B", "c.png": b"PNG-C"}
    assert [p.name for p in (run / "results").iterdir()] == ["part-000000-u1.parquet"]
    # killed writing the rows (after both PNGs): the part is absent, not half there
    monkeypatch.setattr(store.os, "fsync", dies_after(3))  # two PNGs, the images folder
    with pytest.raises(KeyboardInterrupt):
        s.write(UnitResult("u3", [_row("e", "ok", image_path="images/e.png"),
                                  _row("f", "ok", image_path="images/f.png")],
                           [b"PNG-E", b"PNG-F"], 0.1))
    monkeypatch.undo()
    assert {"e.png", "f.png"} <= set(_files(run / "images"))
    assert [p.name for p in (run / "results").iterdir()] == ["part-000000-u1.parquet"]
    assert set(load_run(run).task_id) == {"a", "b"}
    # a failed rewrite of a finished file leaves the old one whole
    monkeypatch.setattr(store.os, "fsync", dies_after(0))
    with pytest.raises(KeyboardInterrupt):
        store.atomic_write_bytes(run / "job.yaml", b"job: {name: new}\n")
    monkeypatch.undo()
    assert (run / "job.yaml").read_bytes() == b"job: {}\n"
    assert not list(run.rglob(".tmp-*"))  # nothing half-written is left behind


def test_load_run_prefers_finished_rows_then_the_latest(tmp_path):
    schema = S.results_schema({}, {})
    s = store.RunStore(tmp_path / "run", schema)
    s.open("")
    s.write(UnitResult("u1", [_row("a", "error", error="oom"), _row("b", "ok")], [None, None], 1))
    s.write(UnitResult("u2", [_row("a", "ok"), _row("c", "error", error="x")], [None, None], 1))
    s.write(UnitResult("u3", [_row("b", "error", error="late")], [None], 1))
    df = load_run(tmp_path / "run")
    assert sorted(df.task_id) == ["a", "b", "c"]
    got = dict(zip(df.task_id, df.status))
    assert got == {"a": "ok", "b": "ok", "c": "error"}
    assert s.done_ids() == {"a", "b"}
    s.compact(min_parts=2)
    assert len(list((tmp_path / "run" / "results").glob("part-*"))) == 1
    assert dict(zip(*load_run(tmp_path / "run")[["task_id", "status"]].T.values)) == got


def test_compaction_keeps_parts_of_different_provenance_apart(tmp_path):
    """A run resumed after its scorer changed: the parts of each provenance are merged among
    themselves, so every row keeps the record of what scored it."""
    for i, prov in enumerate(({"scorers": {"s": {"version": "1"}}},
                              {"scorers": {"s": {"version": "1"}}},
                              {"scorers": {"s": {"version": "2"}}})):
        s = store.RunStore(tmp_path / "run", S.results_schema({}, {}, prov))
        s.open("")
        s.write(UnitResult(f"u{i}", [_row(f"t{i}", "ok")], [None], 1))
    s.compact(min_parts=2)
    parts = sorted((tmp_path / "run" / "results").glob("part-*"))
    versions = sorted((len(pq.read_table(p)), json.loads(pq.read_schema(p).metadata[
        b"animagine_batch"])["scorers"]["s"]["version"]) for p in parts)
    assert versions == [(1, "2"), (2, "1")]
    assert sorted(load_run(tmp_path / "run").task_id) == ["t0", "t1", "t2"]


def test_corrupt_results_file_is_named(tmp_path):
    (tmp_path / "run" / "results").mkdir(parents=True)
    bad = tmp_path / "run" / "results" / "part-000000-x.parquet"
    bad.write_bytes(b"not parquet at all")
    with pytest.raises(ResultsError, match="part-000000-x.parquet is corrupt"):
        load_run(tmp_path / "run")


def test_unwritable_root_is_a_config_error(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(ConfigError, match="is a file, not a folder"):
        store.check_writable(f / "sub")
    with pytest.raises(ConfigError, match="/proc/no-such/out is not writable"):
        store.check_writable(Path("/proc/no-such/out"))
    store.check_writable(tmp_path / "a" / "b" / "c")
    assert not (tmp_path / "a").exists()  # the probe leaves nothing behind

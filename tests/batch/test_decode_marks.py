"""A file that crashes its decoder: set aside as an error row after two attempts, not retried without end by Ray
(it had been: a run that never finished) nor fatal to every rerun without Ray."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image, PngImagePlugin

from conftest import gradient, png_bytes

TOKEN = "medimg-test-crash-this-decoder"
CRASH_SITE = Path(__file__).parent / "crash_site"
REPO = Path(__file__).resolve().parents[2]


def _folder(root: Path) -> Path:
    """Four PNGs, one of which (c.png) crashes the test's decoder."""
    root.mkdir()
    for name in ("a.png", "b.png", "d.png"):
        (root / name).write_bytes(png_bytes((gradient() * 255).astype(np.uint8)))
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", TOKEN)
    buf = io.BytesIO()
    Image.fromarray((gradient() * 200).astype(np.uint8)).save(buf, format="PNG", pnginfo=info)
    (root / "c.png").write_bytes(buf.getvalue())
    return root


def _crashing_env(log: Path, monkeypatch: pytest.MonkeyPatch | None = None) -> dict[str, str]:
    env = {"PYTHONPATH": os.pathsep.join([str(CRASH_SITE), str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]),
           "MEDIMG_TEST_CRASH_TOKEN": TOKEN, "MEDIMG_TEST_CRASH_LOG": str(log)}
    if monkeypatch is not None:
        for k, v in env.items():
            monkeypatch.setenv(k, v)
    return {**os.environ, **env}


def _key(src: Path, name: str) -> str:
    from medimg_demo.batch.listing import list_files

    return next(f[3] for f in list_files(src) if f[1] == name)


def test_only_a_process_that_dies_while_decoding_leaves_its_mark(tmp_path: Path) -> None:
    from medimg_demo.batch.quarantine import STOPS, DecodeMarks

    marks, key = DecodeMarks(tmp_path / "m"), "0" * 32
    with pytest.raises(ZeroDivisionError), marks.decoding(key):  # a decode that came back with an error: no stop
        _ = 1 / 0
    assert marks.stops(key) == 0 and marks.stopped(key) is None
    die = (f"from medimg_demo.batch.quarantine import DecodeMarks; import os\n"
           f"with DecodeMarks({str(tmp_path / 'm')!r}).decoding({key!r}): os._exit(3)")
    for n in range(1, STOPS + 1):
        assert subprocess.run([sys.executable, "-c", die], cwd=REPO).returncode == 3
        assert marks.stops(key) == n
    assert f"{STOPS} times" in (marks.stopped(key) or "")
    with pytest.raises(ValueError, match="not a file key"):  # a mark is never named by anything but a key
        marks.stops("../../etc/passwd")


def test_a_file_is_read_and_decoded_under_its_mark_and_marked_files_go_first(tiny_registry: Path,
                                                                              tmp_path: Path) -> None:
    """A file that stopped a process before is decoded before the batch's other images are held: a batch that ran
    out of memory as a whole had blamed the file it happened to be decoding, twice, and made it an error row."""
    from medimg_demo.batch.quarantine import DecodeMarks
    from medimg_demo.batch.score import BatchScorer

    marks, seen = DecodeMarks(tmp_path / "m"), []
    keys = [f"{i:032x}" for i in range(3)]
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / keys[2]).write_text("1")  # the third file stopped a process once

    def reader(i: int):  # noqa: ANN202
        def read() -> bytes:
            seen.append((i, marks.stops(keys[i])))  # its mark, one attempt more, is there while it is read
            return png_bytes((gradient() * 255).astype(np.uint8))
        return read

    base = [{"path": f"{i}.png", "file_key": k} for i, k in enumerate(keys)]
    rows, studies = BatchScorer("lung_ct.tiny_v0", prefer_onnx=False, registry=tiny_registry).score(
        [reader(i) for i in range(3)], base, marks)
    assert seen == [(2, 2), (0, 1), (1, 1)]
    assert [r["path"] for r in rows] == ["0.png", "1.png", "2.png"] and all(s is not None for s in studies)
    assert not list((tmp_path / "m").iterdir())  # every decode came back: no mark is left


def test_ctrl_c_puts_back_the_counts_of_decodes_it_cut_short_and_keeps_real_stops(tmp_path: Path) -> None:
    """Ctrl-C had removed every mark the run wrote, the stops of a file that really crashed (twice) too; and a
    Ctrl-C during a decode removed the file's earlier count."""
    from medimg_demo.batch.quarantine import DecodeMarks, forget_interrupted

    marks = DecodeMarks(tmp_path / "m")
    marks.write("a" * 32, 1)
    with pytest.raises(KeyboardInterrupt), marks.decoding("a" * 32):  # stopped by hand mid-decode
        assert marks.stops("a" * 32) == 2
        raise KeyboardInterrupt
    assert marks.stops("a" * 32) == 1  # the earlier stop stands, the cut-short attempt is not one
    # Ray's actors, about to be stopped with the run: a live one's decode is put back, a dead one's stop kept
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    try:
        (tmp_path / "m" / ("b" * 32)).write_text(f"2 {live.pid}")
        (tmp_path / "m" / ("c" * 32)).write_text(f"1 {live.pid}")
        (tmp_path / "m" / ("d" * 32)).write_text(f"2 {int(dead.stdout)}")
        forget_interrupted(tmp_path / "m")
    finally:
        live.kill()
    assert [marks.stops(k * 32) for k in "abcd"] == [1, 1, 0, 2]
    assert not (tmp_path / "m" / ("c" * 32)).exists()


def test_a_link_or_a_file_in_the_marks_folders_place_is_refused_before_any_work(tiny_registry: Path,
                                                                              tmp_path: Path) -> None:
    """A link had marks written into the folder it named (and kept there), a file stopped the run with a traceback."""
    from medimg_demo.batch.pipeline import run_batch
    from medimg_demo.batch.quarantine import marks_dir
    from medimg_demo.errors import InputError

    src, out, elsewhere = _folder(tmp_path / "in"), tmp_path / "t.parquet", tmp_path / "elsewhere"
    elsewhere.mkdir()
    marks_dir(out).symlink_to(elsewhere)
    with pytest.raises(InputError, match="is not the run's own folder of decode marks"):
        run_batch(src, "lung_ct.tiny_v0", out, registry=tiny_registry, use_ray=False, prefer_onnx=False)
    marks_dir(out).unlink()
    marks_dir(out).write_text("hello")
    with pytest.raises(InputError, match="move it away, or give another --out"):
        run_batch(src, "lung_ct.tiny_v0", out, registry=tiny_registry, use_ray=False, prefer_onnx=False)
    assert not list(elsewhere.iterdir()) and marks_dir(out).read_text() == "hello" and not out.exists()


def test_a_file_marked_twice_is_an_error_row_once_is_tried_again(tiny_registry: Path, tmp_path: Path) -> None:
    from medimg_demo.batch.pipeline import run_batch
    from medimg_demo.batch.quarantine import DecodeMarks, marks_dir

    src = _folder(tmp_path / "in")
    out = src / "t.parquet"  # the table and its marks inside the input: neither is listed
    marks = marks_dir(out)
    marks.mkdir()
    (marks / _key(src, "a.png")).write_text("2")  # stopped its process twice
    (marks / _key(src, "b.png")).write_text("1")  # once: a run killed by hand while it decoded
    summary = run_batch(src, "lung_ct.tiny_v0", out, registry=tiny_registry, use_ray=False, prefer_onnx=False)
    table = pd.read_parquet(out).set_index("path")
    assert table.loc["a.png", "status"] == "error" and "stopped the process decoding it 2 times" in table.loc[
        "a.png", "reason"]
    assert pd.isna(table.loc["a.png", "image_sha256"])  # not decoded again
    assert (table.drop(index="a.png")["status"] != "error").all() and summary.done == 4
    assert not marks.exists() and DecodeMarks(marks).stops(_key(src, "b.png")) == 0  # a finished run clears them


@pytest.mark.slow  # Ray's start and four actor starts: about 40 s; .ci/run runs it
def test_a_file_that_crashes_its_decoder_on_ray_ends_as_an_error_row(tiny_registry: Path, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Ray restarted the actor and retried the batch without end (23 crashes in two minutes, the run never ended)."""
    from medimg_demo.batch.pipeline import run_batch
    from medimg_demo.batch.quarantine import STOPS, marks_dir

    src, out, log = _folder(tmp_path / "in"), tmp_path / "t.parquet", tmp_path / "crashes"
    _crashing_env(log, monkeypatch)  # Ray's workers inherit it
    summary = run_batch(src, "lung_ct.tiny_v0", out, registry=tiny_registry, prefer_onnx=False, batch_size=2)
    table = pd.read_parquet(out).set_index("path")
    assert log.read_text().count("crash") == STOPS
    assert table.loc["c.png", "status"] == "error" and "decoder crashed" in table.loc["c.png", "reason"]
    assert (table.drop(index="c.png")["status"] != "error").all() and summary.done == 4
    assert not marks_dir(out).exists()


@pytest.mark.slow  # Ray's start and one actor: about 25 s; .ci/run runs it
def test_a_batch_that_keeps_stopping_its_process_ends_the_run_with_a_message(tiny_registry: Path, tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Ray's retries run out (here none are allowed): the run ends with what to do, not Ray's traceback alone."""
    from medimg_demo.batch import ray_run
    from medimg_demo.batch.pipeline import run_batch
    from medimg_demo.batch.quarantine import marks_dir

    src, out, log = _folder(tmp_path / "in"), tmp_path / "t.parquet", tmp_path / "crashes"
    _crashing_env(log, monkeypatch)
    monkeypatch.setattr(ray_run, "retries", lambda batch_size, local: 0)
    with pytest.raises(ray_run.RunStopped, match="run the command again to resume"):
        run_batch(src, "lung_ct.tiny_v0", out, registry=tiny_registry, prefer_onnx=False, batch_size=4,
                  concurrency=1)
    assert log.read_text().count("crash") == 1
    assert [m.read_text().split()[0] for m in marks_dir(out).iterdir()] == ["1"]  # kept for the next run


@pytest.mark.slow  # three command runs: about 30 s; .ci/run runs it
def test_without_ray_a_crashing_file_stops_two_runs_and_the_third_goes_past_it(tiny_registry: Path,
                                                                               tmp_path: Path) -> None:
    src, out, log = _folder(tmp_path / "in"), tmp_path / "t.parquet", tmp_path / "crashes"
    env = _crashing_env(log) | {"MEDIMG_MODELS_DIR": str(tiny_registry)}
    cmd = [sys.executable, "-m", "medimg_demo", "batch", str(src), "--model", "lung_ct.tiny_v0", "--out", str(out),
           "--no-ray", "--torch", "--batch-size", "1"]
    runs = [subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300) for _ in range(3)]
    assert [r.returncode != 0 for r in runs] == [True, True, False], runs[-1].stderr[-2000:]
    assert log.read_text().count("crash") == 2
    table = pd.read_parquet(out).set_index("path")
    assert table.loc["c.png", "status"] == "error" and (table.drop(index="c.png")["status"] != "error").all()
    assert "2 files scored (error 1, ok 1); 2 skipped" in runs[2].stdout  # a and b were written before the crash


def test_ctrl_c_ends_a_batch_with_what_to_do_not_a_traceback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    from medimg_demo.batch import pipeline
    from medimg_demo.cli import main

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "run_batch", interrupted)
    (tmp_path / "in").mkdir()
    assert main(["batch", str(tmp_path / "in"), "--out", str(tmp_path / "t.parquet")]) == 130
    assert "run the same command again to resume" in caplog.text

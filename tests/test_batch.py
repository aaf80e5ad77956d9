"""`python -m infinity_core batch`: rows checked before any model loads, the same bytes however the rows are
batched, a manifest that resumes after a kill at any moment, files that are not ours never replaced, and
PNG metadata that draws the image again. On the demo model at its 0.06M."""
from __future__ import annotations

import json
import logging
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from infinity_core import InfinityError, cli
from infinity_core.batch.manifest import MANIFEST_NAME, Manifest, RowState
from infinity_core.batch.render import ModelFiles, RowRenderer, device_batches
from infinity_core.batch.rows import METADATA_KEY, RowDefaults, read_rows

ROOT = Path(__file__).resolve().parents[1]
LOADED = "loaded transformer"        # the loader's log line: absent when the run stopped before the models

# Two shapes, two guidance settings, negatives and not, seeds out of order: four device batches at
# --rows-per-batch 4, and rows with unrelated seeds side by side in one of them.
ROWS = [
    {"prompt": "a red circle at the top left on a blue background", "seed": 11},
    {"prompt": "a green square at the center", "seed": 3},
    {"prompt": "a yellow triangle on a black background", "seed": 11, "name": "triangle"},
    {"prompt": "a blue circle at the bottom right", "seed": 7, "aspect": "2:1"},
    {"prompt": "a white square on a purple background", "seed": 0},
    {"prompt": "an orange circle at the top", "seed": 3, "cfg": 1},
    {"prompt": "a red triangle at the left", "seed": 5, "negative": "a blue background"},
]
NAMES = ["00001.png", "00002.png", "triangle.png", "00004.png", "00005.png", "00006.png", "00007.png"]


def write_list(folder: Path, rows=ROWS, name="list.jsonl") -> Path:
    path = folder / name
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def batch(list_path: Path, folder: Path, *options: str) -> int:
    """The command in this process (the models load in about a second)."""
    return cli.main(["batch", str(list_path), "-o", str(folder), "--quiet", *options])


def batch_process(list_path: Path, folder: Path, *options: str, **popen) -> subprocess.Popen:
    command = [sys.executable, "-m", "infinity_core", "batch", str(list_path), "-o", str(folder), *options]
    return subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.glob("*.png"))}


@pytest.fixture(scope="module")
def one_by_one(tmp_path_factory) -> dict[str, bytes]:
    """The reference: every row drawn alone (--rows-per-batch 1)."""
    folder = tmp_path_factory.mktemp("one_by_one")
    assert batch(write_list(folder), folder / "out", "--rows-per-batch", "1") == 0
    images = folder_bytes(folder / "out")
    assert sorted(images) == sorted(NAMES)
    return images


# --- rows ------------------------------------------------------------------------------------------------


def test_rows_take_their_own_settings_else_the_commands_else_the_models(tmp_path):
    path = write_list(tmp_path, [{"prompt": "a", "seed": 4, "cfg": [3, 4], "pixels": "0.25M", "speed": "fast"},
                                 {"prompt": "b"}])
    rows = read_rows(path, RowDefaults(seed=9, cfg="2", tau="0.7", aspect="16:9", speed="balanced"),
                     {"pixels": "0.06M"}).rows
    assert [(r.config.seed, r.config.cfg, r.config.pixels, r.config.tau, r.config.speed) for r in rows] == [
        (4, (3, 4), "0.25M", 0.7, "fast"), (9, 2.0, "0.06M", 0.7, "balanced")]
    assert rows[0].batch_key != rows[1].batch_key and "--speed fast" in rows[0].generate_command()
    assert rows[1].config.schedule.image_size[1] > rows[1].config.schedule.image_size[0]     # 16:9 is wide
    assert [r.name for r in rows] == ["00001.png", "00002.png"]


def test_txt_and_csv_lists(tmp_path):
    txt = tmp_path / "list.txt"
    txt.write_text("\ufeffa red circle\n\n# a comment\n  a blue square  \r\n")
    rows = read_rows(txt, RowDefaults(), {}).rows
    assert [(r.prompt, r.line, r.name) for r in rows] == [("a red circle", 1, "00001.png"),
                                                          ("a blue square", 4, "00002.png")]
    csv_list = tmp_path / "list.csv"
    csv_list.write_text('prompt,seed,cfg,name\n"a red circle, small",3,"3, 4",red\na blue square,,,\n')
    rows = read_rows(csv_list, RowDefaults(seed=8), {}).rows
    assert [(r.prompt, r.config.seed, r.config.cfg, r.name, r.line) for r in rows] == [
        ("a red circle, small", 3, (3.0, 4.0), "red.png", 2), ("a blue square", 8, 3.0, "00002.png", 3)]


def test_bad_rows_are_named_by_line(tmp_path):
    path = tmp_path / "list.jsonl"
    path.write_text('{"prompt": "good"}\nnot json\n\n{"prompt": ""}\n{"prompt": "x", "cfg": 1000}\n'
                    '{"prompt": "y", "name": "00001"}\n{"prompt": "z", "colour": 1}\n[1]\n'
                    '{"prompt": "w", "name": "../up"}\n{"prompt": "v", "seed": -1}\n{"prompt": "u", "aspect": "wide"}\n'
                    '{"prompt": "t", "speed": "turbo"}\n')
    listed = read_rows(path, RowDefaults(), {})
    assert [row.line for row in listed.rows] == [1]
    reasons = {bad.line: bad.reason for bad in listed.bad}
    assert sorted(reasons) == [2, 4, 5, 6, 7, 8, 9, 10, 11, 12]
    assert "speed must be one of ['exact', 'balanced', 'fast']" in reasons[12]
    assert "not JSON" in reasons[2] and "prompt is empty" in reasons[4] and "cfg must be" in reasons[5]
    assert "also the file of line 1" in reasons[6] and "unknown field(s) ['colour']" in reasons[7]
    assert "JSON object" in reasons[8] and "plain file name" in reasons[9] and "seed must be in" in reasons[10]
    assert "aspect 'wide'" in reasons[11]


def test_lists_that_cannot_be_read_are_refused(tmp_path):
    for name, content, message in [("l.csv", "prompt,colour\na,b\n", "unknown column(s) ['colour']"),
                                   ("l.csv", "seed\n1\n", "no 'prompt' column"),
                                   ("l.txt", "\n# only a comment\n", "has no rows"),
                                   ("l.md", "a", "must end in one of")]:
        (tmp_path / name).write_text(content)
        with pytest.raises(InfinityError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
            read_rows(tmp_path / name, RowDefaults(), {})
    (tmp_path / "latin.txt").write_bytes("a\ncaf\xe9\n".encode("latin-1"))
    with pytest.raises(InfinityError, match="line 2 is not UTF-8"):
        read_rows(tmp_path / "latin.txt", RowDefaults(), {})


def test_device_batches_group_equal_settings_in_list_order(tmp_path):
    rows = read_rows(write_list(tmp_path), RowDefaults(), {"pixels": "0.06M"}).rows
    batches = device_batches(rows, 2)
    assert [[row.number for row in group] for group in batches] == [[1, 2], [3, 5], [4], [6], [7]]


def test_a_list_with_bad_rows_is_refused_before_any_model_loads(tmp_path, caplog):
    path = write_list(tmp_path, [{"prompt": "a red circle"}, {"prompt": "b", "pixels": "9M"}])
    with caplog.at_level(logging.INFO):
        assert cli.main(["batch", str(path), "-o", str(tmp_path / "out")]) == 2
    assert "line 2: pixels must be one of" in caplog.text and "--skip-bad-rows" in caplog.text
    assert LOADED not in caplog.text and not (tmp_path / "out").exists()
    assert batch(path, tmp_path / "out", "--skip-bad-rows") == 0
    assert sorted(folder_bytes(tmp_path / "out")) == ["00001.png"]


# --- the same bytes -----------------------------------------------------------------------------------------


def test_batched_rows_are_the_bytes_of_rows_drawn_alone(one_by_one, tmp_path):
    """Rows with unrelated seeds, prompts and negatives in one device batch, in another order: same bytes."""
    shuffled = [ROWS[i] | {"name": NAMES[i]} for i in (6, 4, 2, 0, 1, 3, 5)]
    assert batch(write_list(tmp_path, shuffled), tmp_path / "out", "--rows-per-batch", "4") == 0
    assert folder_bytes(tmp_path / "out") == one_by_one


def test_the_png_carries_the_settings_and_its_command_draws_the_same_pixels(one_by_one, tmp_path):
    path = tmp_path / "00007.png"
    path.write_bytes(one_by_one["00007.png"])
    record = json.loads(Image.open(path).text[METADATA_KEY])
    assert {k: record[k] for k in ("prompt", "negative", "seed", "pixels", "cfg", "size", "transformer")} == {
        "prompt": ROWS[6]["prompt"], "negative": "a blue background", "seed": 5, "pixels": "0.06M", "cfg": 3.0,
        "size": "256x256", "transformer": cli.DEMO_TRANSFORMER.name}
    words = shlex.split(record["command"])
    assert words[:4] == ["python", "-m", "infinity_core", "generate"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)        # the batch decodes on one CPU thread (see render.py); so must generate
    try:
        assert cli.main(words[3:] + ["-o", str(tmp_path / "again.png"), "--device", "cpu"]) == 0
    finally:
        torch.set_num_threads(threads)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "again.png")), np.asarray(Image.open(path)))


def test_a_workers_images_do_not_depend_on_its_thread_count(tmp_path):
    """Ray workers get the machine's cores divided among them: 1 thread or 2, the same pixels."""
    rows = read_rows(write_list(tmp_path, ROWS[:2]), RowDefaults(), {"pixels": "0.06M"}).rows
    renderer = RowRenderer(ModelFiles(cli.DEMO_TRANSFORMER, cli.DEMO_VAE, cli.DEMO_TEXT_ENCODER), "cpu")
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = renderer.render(rows)
        torch.set_num_threads(2)
        two = renderer.render(rows)
    finally:
        torch.set_num_threads(threads)
    assert all(np.array_equal(a, b) for a, b in zip(one, two))


# --- resuming ----------------------------------------------------------------------------------------------


def finished_folder(tmp_path: Path, one_by_one: dict[str, bytes]) -> tuple[Path, Path]:
    """(list, folder) as a finished run leaves them: the images and their manifest records."""
    folder = tmp_path / "out"
    folder.mkdir()
    path = write_list(tmp_path)
    names = ModelFiles(cli.DEMO_TRANSFORMER, cli.DEMO_VAE, cli.DEMO_TEXT_ENCODER).names
    with Manifest.open(folder) as manifest:
        for row in read_rows(path, RowDefaults(), {"pixels": "0.06M"}).rows:
            (folder / row.name).write_bytes(one_by_one[row.name])
            assert manifest.state(row.name, row.key(names)) is RowState.FOREIGN     # no record: not ours
            manifest.start(row.name, row.key(names))
            assert manifest.state(row.name, row.key(names)) is RowState.REDO
            manifest.finish(row.name, row.key(names), one_by_one[row.name])
            assert manifest.state(row.name, row.key(names)) is RowState.DONE
    return path, folder


def test_a_rerun_of_a_finished_job_draws_nothing(one_by_one, tmp_path, caplog):
    path, folder = finished_folder(tmp_path, one_by_one)
    with caplog.at_level(logging.INFO):
        assert cli.main(["batch", str(path), "-o", str(folder)]) == 0
    assert "7 row(s): 7 done before, 0 to draw" in caplog.text and LOADED not in caplog.text


def test_every_state_a_kill_can_leave_is_finished_to_the_same_bytes(one_by_one, tmp_path):
    """A torn last manifest line, an image claimed but not recorded (written or not), a temporary file, a
    done image deleted since: the re-run draws exactly those and leaves the folder as a clean run does."""
    path, folder = finished_folder(tmp_path, one_by_one)
    lines = (folder / MANIFEST_NAME).read_text().splitlines(keepends=True)
    records = [json.loads(line) for line in lines[1:]]
    done = {r["name"]: line for r, line in zip(records, lines[1:]) if r["state"] == "done"}
    started = {r["name"]: line for r, line in zip(records, lines[1:]) if r["state"] == "started"}
    kept = [done[name] for name in ("00001.png", "00002.png", "00004.png")]
    torn = done["00005.png"][:40]                                    # the append a kill cut off
    (folder / MANIFEST_NAME).write_text(lines[0] + "".join(kept) + started["triangle.png"] + started["00006.png"]
                                        + started["00005.png"] + torn)
    (folder / "triangle.png").write_bytes(b"half an image: never happens (atomic writes), but it is ours")
    (folder / "00006.png").unlink()                                  # claimed, killed before the write
    (folder / "00004.png").unlink()                                  # done, then deleted by the user
    (folder / ".00007.png.abcd1234.part").write_bytes(b"an interrupted write")
    (folder / "00007.png").unlink()
    before = {name: (folder / name).stat().st_mtime_ns for name in ("00001.png", "00002.png")}
    assert batch(path, folder) == 0
    assert folder_bytes(folder) == one_by_one
    assert {name: (folder / name).stat().st_mtime_ns for name in before} == before     # not drawn again
    assert not list(folder.glob(".*.part"))
    entries = Manifest.open(folder).entries
    assert sorted(entries) == sorted(NAMES) and {e.state for e in entries.values()} == {"done"}


def test_a_job_killed_at_a_random_moment_resumes_to_the_same_bytes(one_by_one, tmp_path):
    """SIGKILL to the command mid-job (after its first image), then the same command again."""
    folder = tmp_path / "out"
    path = write_list(tmp_path)
    process = batch_process(path, folder, "--rows-per-batch", "1")
    deadline = time.monotonic() + 300
    while not (folder / "00001.png").exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    assert len(list(folder.glob("*.png"))) < len(NAMES)              # it was stopped mid-job
    assert batch(path, folder) == 0
    assert folder_bytes(folder) == one_by_one


# --- what is not ours ----------------------------------------------------------------------------------------


def test_files_not_written_by_the_command_are_never_replaced(one_by_one, tmp_path, caplog):
    folder = tmp_path / "new"
    folder.mkdir()
    (folder / "00002.png").write_bytes(b"the user's own picture")
    with caplog.at_level(logging.INFO):
        assert batch(write_list(tmp_path), folder, "--overwrite") == 2
    assert "00002.png (line 2) is in" in caplog.text and "never replaced" in caplog.text
    assert LOADED not in caplog.text and (folder / "00002.png").read_bytes() == b"the user's own picture"
    path, folder = finished_folder(tmp_path, one_by_one)
    (folder / "00005.png").write_bytes(b"edited by the user after the run")      # ours no longer
    caplog.clear()
    with caplog.at_level(logging.INFO):
        assert batch(path, folder, "--overwrite") == 2
    assert "00005.png (line 5) is in" in caplog.text
    assert (folder / "00005.png").read_bytes() == b"edited by the user after the run"


def test_rows_whose_settings_changed_are_redrawn_only_when_asked(one_by_one, tmp_path, caplog):
    path, folder = finished_folder(tmp_path, one_by_one)
    changed = [dict(row) for row in ROWS]
    changed[1]["seed"] = 4
    path = write_list(tmp_path, changed)
    with caplog.at_level(logging.INFO):
        assert batch(path, folder) == 2
    assert "00002.png (line 2) is made from other settings" in caplog.text and LOADED not in caplog.text
    assert batch(path, folder, "--overwrite") == 0
    images = folder_bytes(folder)
    assert images["00002.png"] != one_by_one["00002.png"]
    assert {n: d for n, d in images.items() if n != "00002.png"} == {n: d for n, d in one_by_one.items()
                                                                      if n != "00002.png"}
    assert json.loads(Image.open(folder / "00002.png").text[METADATA_KEY])["seed"] == 4


def test_one_run_at_a_time_holds_a_folder(tmp_path):
    with Manifest.open(tmp_path / "out"):
        with pytest.raises(InfinityError, match="in use by another batch run"):
            Manifest.open(tmp_path / "out")
    Manifest.open(tmp_path / "out").close()


def test_a_file_named_like_the_manifest_that_is_not_one_is_refused(tmp_path):
    (tmp_path / MANIFEST_NAME).write_text('{"something": "else"}\n')
    with pytest.raises(InfinityError, match="is not a manifest of this command"):
        Manifest.open(tmp_path)
    assert (tmp_path / MANIFEST_NAME).read_text() == '{"something": "else"}\n'


# --- the command ----------------------------------------------------------------------------------------------


def test_progress_bar_and_quiet(tmp_path, capfd):
    path = write_list(tmp_path, ROWS[:2])
    assert cli.main(["batch", str(path), "-o", str(tmp_path / "loud")]) == 0
    err = capfd.readouterr().err
    assert "2/2" in err and "img/s" in err, err
    assert batch(path, tmp_path / "quiet") == 0
    err = capfd.readouterr().err
    assert "img/s" not in err and LOADED not in err, err
    assert folder_bytes(tmp_path / "loud") == folder_bytes(tmp_path / "quiet")


def test_ray_options_are_read_and_checked_before_anything_runs(tmp_path, caplog):
    from infinity_core.batch.command import _list_and_ray

    parser = cli.build_parser()
    parsed = parser.parse_args(["batch", "--ray", "list.txt", "-o", "out"])      # --ray took LIST as its address
    assert _list_and_ray(parsed) == (Path("list.txt"), "local")
    parsed = parser.parse_args(["batch", "list.csv", "-o", "out", "--ray", "auto"])
    assert _list_and_ray(parsed) == (Path("list.csv"), "auto")
    path = write_list(tmp_path, ROWS[:1])
    for options, message in [(["--workers", "2"], "--workers is the number of Ray workers"),
                             (["--ray", "--device", "cpu"], "--device is for a run on this machine"),
                             (["--rows-per-batch", "0"], "--rows-per-batch must be 1 or more")]:
        caplog.clear()
        with caplog.at_level(logging.INFO):
            assert batch(path, tmp_path / "out", *options) == 2
        assert message in caplog.text and not (tmp_path / "out").exists()


def test_the_plain_batch_path_never_imports_ray(tmp_path):
    path = write_list(tmp_path, ROWS[:1])
    code = ("import sys, infinity_core; assert 'ray' not in sys.modules; from infinity_core import cli; "
            f"assert cli.main(['batch', {str(path)!r}, '-o', {str(tmp_path / 'out')!r}, '--quiet']) == 0; "
            "assert not [m for m in sys.modules if m.split('.')[0] == 'ray'], 'ray imported'; print('ok')")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_generate_still_runs_as_before(tmp_path):
    assert cli.main(["generate", "--prompt", "a red circle", "-o", str(tmp_path / "one.png"), "--device", "cpu"]) == 0
    assert Image.open(tmp_path / "one.png").size == (256, 256)
    assert os.stat(tmp_path / "one.png").st_mode & 0o644 == 0o644          # a usual file mode, not 0600

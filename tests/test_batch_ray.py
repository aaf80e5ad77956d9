"""`batch --ray` on a local Ray instance with two workers: the bytes of the single-process run, a worker
killed mid-job and the job finishing, and a job moved between this process and Ray that resumes either way.
Skipped without Ray (`pip install ".[ray]"`)."""
from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from infinity_core import cli

ray = pytest.importorskip("ray")

from infinity_core.batch.ray_runner import connect, worker_options  # noqa: E402  (needs ray installed)

ROWS = [
    {"prompt": "a red circle at the top left on a blue background", "seed": 11},
    {"prompt": "a green square at the center", "seed": 3},
    {"prompt": "a yellow triangle on a black background", "seed": 11, "cfg": 1},
    {"prompt": "a blue circle at the bottom right", "seed": 7},
    {"prompt": "a white square on a purple background", "seed": 0, "negative": "a red background"},
    {"prompt": "an orange circle at the top", "seed": 9},
]


def write_list(folder: Path, rows=ROWS) -> Path:
    path = folder / "list.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def batch(list_path: Path, folder: Path, *options: str) -> int:
    return cli.main(["batch", str(list_path), "-o", str(folder), "--quiet", *options])


def on_ray(list_path: Path, folder: Path) -> int:
    return batch(list_path, folder, "--ray", "--workers", "2", "--rows-per-batch", "1")


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.glob("*.png"))}


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray instance (two CPUs) for the module; the command joins it instead of starting its own."""
    started = connect(ray, "local")
    yield
    if started:
        ray.shutdown()


@pytest.fixture(scope="module")
def single_process(tmp_path_factory) -> dict[str, bytes]:
    folder = tmp_path_factory.mktemp("single")
    assert batch(write_list(folder), folder / "out") == 0
    return folder_bytes(folder / "out")


def worker_processes() -> list[int]:
    """Ids of this process's descendants that are Ray workers holding a RowRenderer."""
    parents, commands = {}, {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                commands[int(entry.name)] = (entry / "cmdline").read_bytes().decode(errors="replace")
            except (OSError, IndexError, ValueError):
                continue
    mine = {os.getpid()}
    changed = True
    while changed:
        found = {pid for pid, parent in parents.items() if parent in mine} - mine
        changed = bool(found)
        mine |= found
    return sorted(pid for pid in mine if "RowRenderer" in commands.get(pid, ""))


def test_worker_options_take_a_gpu_each_where_there_are_gpus():
    assert worker_options({"GPU": 4.0, "CPU": 32.0}, None) == (4, {"num_gpus": 1, "num_cpus": 1}, None)
    assert worker_options({"CPU": 8.0}, 2) == (2, {"num_cpus": 4}, 4)
    assert worker_options({"CPU": 2.0}, None) == (1, {"num_cpus": 2}, 2)


def test_ray_writes_the_bytes_of_the_single_process_run(local_ray, single_process, tmp_path):
    assert on_ray(write_list(tmp_path), tmp_path / "out") == 0
    assert folder_bytes(tmp_path / "out") == single_process


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the workers through /proc")
def test_a_worker_killed_mid_job_and_the_job_finishes(local_ray, single_process, tmp_path):
    folder = tmp_path / "out"
    killed = []

    def kill_a_worker_after_the_first_image():
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and not killed:
            if list(folder.glob("*.png")) and (workers := worker_processes()):
                os.kill(workers[0], signal.SIGKILL)
                killed.append((workers[0], len(list(folder.glob("*.png")))))
            time.sleep(0.05)

    killer = threading.Thread(target=kill_a_worker_after_the_first_image, daemon=True)
    killer.start()
    assert on_ray(write_list(tmp_path), folder) == 0
    killer.join(timeout=5)
    assert killed and killed[0][1] < len(ROWS), killed          # a worker died while rows were left
    assert folder_bytes(folder) == single_process


def test_a_job_moves_between_this_process_and_ray_and_resumes_either_way(local_ray, single_process, tmp_path):
    folder = tmp_path / "out"
    assert batch(write_list(tmp_path, ROWS[:2]), folder) == 0               # started here
    assert on_ray(write_list(tmp_path, ROWS[:4]), folder) == 0             # resumed on Ray
    first = {name: (folder / name).stat().st_mtime_ns for name in ("00001.png", "00002.png")}
    assert batch(write_list(tmp_path), folder) == 0                         # finished here
    assert folder_bytes(folder) == single_process
    assert {name: (folder / name).stat().st_mtime_ns for name in first} == first    # done rows not drawn again

"""Robustness figures: hostile and broken weight files, bad settings, and reproducibility, as tables.

    python tools/robustness_report.py            # builds the cases in a temporary folder, prints the figures

Parts, one module each in tools/robustness/:
- weight_files.py, `weight_file_figures`: the hostile and broken weight files below;
- bad_input.py, `bad_input_figures`: pictures, CLI arguments, outputs, a text encoder folder of pickles and the
  Python API's common mistakes, each refused with an InfinityError naming the argument or file (before any
  model loads where the arguments decide it), or read right;
- settings.py, `bad_setting_figures`: every bad value through `SamplingConfig` and through `generate`, an
  InfinityError whose message starts with the setting's name, raised before the first scale;
- reproducibility.py, on the shipped demo model: `png_bytes_across_processes` (the same seed writes the same
  PNG bytes in two fresh processes) and `batch_images_equal_single_runs` (image i of a batch with seed s is
  the single run with seed s + i).

Each weight-file case is a file (or folder) built from the test fixtures in a model folder, next to an
`outside` folder the loaders must never read. Three things are checked per case:
- the loader raises InfinityError and its message names the file;
- no code ran: pickles with code would create a marker file, which must never appear;
- nothing outside the model folder was read: Python-level opens are recorded with an audit hook
  (`sys.addaudithook`, event "open"), and reads from native code (safetensors, torch's zip reader) are
  caught by a canary file outside whose access time is set before its modification time, so that the
  kernel (relatime) updates it on the first read.
tests/test_weight_file_attacks.py asserts the same for every case in CI.
"""
from __future__ import annotations

import logging
import os
import sys
import tempfile
import warnings
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools.robustness.bad_input import bad_input_figures, print_input_figures  # noqa: E402
from tools.robustness.reproducibility import (_png_digest, batch_images_equal_single_runs,  # noqa: E402
                                              png_bytes_across_processes)
from tools.robustness.settings import bad_setting_figures, print_setting_figures  # noqa: E402
from tools.robustness.weight_files import print_weight_file_figures, weight_file_figures  # noqa: E402


def main() -> int:
    if sys.argv[1:2] == ["--png-digest"]:   # child process of png_bytes_across_processes
        print(_png_digest(int(sys.argv[2])))
        return 0
    logging.basicConfig(level=logging.ERROR)
    warnings.filterwarnings("ignore", category=UserWarning)   # torch's notes on the hostile pickles' protocols
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    with tempfile.TemporaryDirectory() as root:
        outcomes = weight_file_figures(Path(root))
        print_weight_file_figures([replace(o, message=o.message.replace(root, "<tmp>")) for o in outcomes])
    with tempfile.TemporaryDirectory() as root:
        inputs = bad_input_figures(Path(root))
        print_input_figures([replace(o, message=o.message.replace(root, "<tmp>")) for o in inputs])
    settings = bad_setting_figures()
    print_setting_figures(settings)
    digests = png_bytes_across_processes()
    print(f"same seed, two processes: PNG SHA-256 {digests[0][:16]}... and {digests[1][:16]}...: "
          f"{'identical' if len(set(digests)) == 1 else 'DIFFERENT'}")
    batch = batch_images_equal_single_runs()
    print(f"batch of {len(batch)} with seed s: image i equals the single run with seed s + i for "
          f"{sum(batch)} / {len(batch)} (bits and pixels)")
    ok = (all(o.ok for o in outcomes) and all(o.ok for o in inputs) and all(o.named and o.before_work for o in settings)
          and len(set(digests)) == 1 and all(batch))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""CI runs the benchmark once at its smallest size: it must run and reproduce the official bits and image.

Times are printed, never asserted (speed is measured by bench/bench_inference.py on a quiet machine)."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = ROOT.parent / "shared" / "bench"


@pytest.mark.skipif(not (BENCH_DIR / "bench_config.json").exists(), reason="../shared/bench is not beside the checkout")
def test_bench_smoke_reproduces_official_outputs(tmp_path):
    out = tmp_path / "bench.json"
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_inference.py"), "--smoke", "--json", str(out)],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    import json
    (result,) = json.loads(out.read_text())
    assert result["bits_equal_official"] is True
    assert result["image_max_diff"] <= 1
    assert result["tokens"] == 521 and len(result["per_scale_s"]) == 7

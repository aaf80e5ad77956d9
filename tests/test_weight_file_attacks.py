"""Hostile and broken weight files: every case is refused with an InfinityError that names the file and the
reason, no pickled code runs, and nothing outside the model folder is read (tools/robustness/weight_files.py)."""
import pickle
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
from robustness.weight_files import (WEIGHT_CASES, CodePayload, Layout, OpenAudit, canary_read,  # noqa: E402
                                     try_weight_case, _load)

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")   # torch's notes on the pickles' protocols


@pytest.fixture(scope="module")
def layout(tmp_path_factory) -> Layout:
    layout = Layout(tmp_path_factory.mktemp("attacks"))
    layout.create()
    return layout


@pytest.mark.parametrize("case", WEIGHT_CASES, ids=[case.name for case in WEIGHT_CASES])
def test_weight_file_is_refused_safely(case, layout):
    outcome = try_weight_case(case, layout, OpenAudit.install())
    assert outcome.refused, outcome.message
    assert outcome.names_file and outcome.says_why, (case.expect, outcome.message)
    assert not outcome.code_ran
    assert not outcome.read_outside


def test_the_detectors_see_what_they_guard_against(layout):
    """The marker payload really runs when unpickled without weights_only, a load of the canary is seen
    through its access time, and a Python-level open of it through the audit hook."""
    pickle.loads(pickle.dumps(CodePayload(layout.marker)))
    assert layout.marker.exists()
    layout.marker.unlink()
    _load("transformer", layout.canary)   # a valid file: it loads, and is read by native code
    assert canary_read(layout.canary)
    audit = OpenAudit.install()
    audit.watch(layout)
    with open(layout.canary, "rb"):
        pass
    audit.forbidden = ()
    assert audit.seen == [str(layout.canary.resolve())]

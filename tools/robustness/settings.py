"""Bad sampling settings through SamplingConfig and generate: an InfinityError naming the setting, before the
first scale."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from infinity_core import InfinityError, SamplingConfig, TextCondition, generate, load_transformer

from .common import TRANSFORMER_FIXTURE


NAN, INF = float("nan"), float("inf")
BAD_SETTINGS: tuple[tuple[str, object], ...] = (
    *(("cfg", v) for v in (NAN, INF, -INF, -3.0, 1e30, "abc", None, True, (), (3.0, NAN), (3.0,) * 14)),
    *(("tau", v) for v in (NAN, INF, 0.0, -1.0, 1e9, "0.5", (0.5, 0.0))),
    *(("top_k", v) for v in (NAN, -1, 10 ** 6, 1.5, "900", None)),
    *(("top_p", v) for v in (NAN, INF, -0.1, 1.5, "0.9")),
    *(("seed", v) for v in (2 ** 64, -1, 1.5, NAN, "7", None)),
    *(("batch_size", v) for v in (0, -1, 1000, 2.5, NAN, None)),
    *(("pixels", v) for v in ("4M", "", 1, None)),
    *(("h_div_w", v) for v in (0.0, -1.0, NAN, INF, 100.0, "abc")),
)


@dataclass(frozen=True)
class SettingOutcome:
    setting: str
    value: object
    path: str               # "SamplingConfig" or "generate"
    raised: str             # "InfinityError", the name of another exception, or "" when accepted
    named: bool             # InfinityError whose message starts with the setting's name
    before_work: bool       # no scale was sampled
    message: str


def _try_setting(path: str, setting: str, value, run: Callable[[dict, Callable], None]) -> SettingOutcome:
    scales_started = []
    try:
        run({setting: value}, lambda done, total, codes: scales_started.append(done))
        raised, named, message = "", False, "accepted"
    except InfinityError as err:
        raised, named, message = "InfinityError", str(err).startswith(setting), str(err)
    except Exception as err:   # noqa: BLE001 -- any other exception is a finding, reported as such
        raised, named, message = type(err).__name__, False, str(err)
    return SettingOutcome(setting, value, path, raised, named, not scales_started, message)


def bad_setting_figures() -> list[SettingOutcome]:
    """Every bad value through SamplingConfig and through generate on the tiny fixture model (generate takes
    None as "the default", so None values go through SamplingConfig only)."""
    transformer = load_transformer(TRANSFORMER_FIXTURE, "cpu", torch.float32)
    cond = TextCondition.from_features([torch.zeros(3, transformer.config.text_channels)])
    outcomes = []
    for setting, value in BAD_SETTINGS:
        outcomes.append(_try_setting("SamplingConfig", setting, value, lambda kw, _: SamplingConfig(**kw)))
        if value is not None:
            outcomes.append(_try_setting("generate", setting, value,
                                         lambda kw, callback: generate(transformer, cond, callback=callback,
                                                                       **{"pixels": "0.06M", **kw})))
    return outcomes


def print_setting_figures(outcomes: list[SettingOutcome]) -> None:
    for outcome in outcomes:
        if not (outcome.named and outcome.before_work):
            print(f"NOT REFUSED WELL: {outcome.path} {outcome.setting}={outcome.value!r}: {outcome.message[:90]}")
    print(f"bad settings: {len(outcomes)} tried ({len(BAD_SETTINGS)} values through SamplingConfig and generate), "
          f"{sum(o.raised not in ('', 'InfinityError') for o in outcomes)} other exceptions, "
          f"{sum(not o.raised for o in outcomes)} accepted, "
          f"{sum(o.named for o in outcomes)} InfinityErrors naming the setting, "
          f"{sum(o.before_work for o in outcomes)} before the first scale")

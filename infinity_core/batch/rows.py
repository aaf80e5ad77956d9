"""A prompt list read into checked rows: every row's settings resolved and validated before a model loads.

LIST formats:
- `.txt`: one prompt a line; blank lines and lines starting with `#` are left out;
- `.jsonl`: one JSON object a line, with any of the ROW_FIELDS (`prompt` is required);
- `.csv`: a header row naming ROW_FIELDS columns, then one row each (an empty cell takes the default).

A row's settings are its own, else the command's options (`RowDefaults`), else what the model file
recommends, else SamplingConfig's defaults. Row n (counting rows, not lines) is written to `n` as five
digits (`00001.png`) unless it names its own file.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import shlex
from dataclasses import dataclass, replace
from pathlib import Path

from ..errors import InfinityError
from ..sampling_config import SamplingConfig, parse_per_scale
from ..schedules import describe, parse_aspect

LIST_SUFFIXES = (".txt", ".jsonl", ".csv")
ROW_FIELDS = ("prompt", "negative", "seed", "aspect", "pixels", "cfg", "speed", "name")
NAME_SUFFIX = ".png"            # the settings travel in PNG text chunks
MAX_NAME_LENGTH = 200
METADATA_KEY = "infinity"       # the PNG text chunk holding a row's settings as JSON


@dataclass(frozen=True)
class RowDefaults:
    """The command's options: the settings of a row that leaves them out (None: the model's or the core's)."""

    negative: str = ""
    seed: int | None = None
    aspect: str | None = None
    pixels: str | None = None
    cfg: str | None = None      # text, as on the command line: "3" or "3, 3, 4"
    tau: str | None = None
    top_k: int | None = None
    top_p: float | None = None
    speed: str | None = None


@dataclass(frozen=True)
class ModelNames:
    """The file names of the three models, recorded with every image (paths differ between machines)."""

    transformer: str
    vae: str
    text_encoder: str


@dataclass(frozen=True)
class BatchRow:
    number: int                 # 1-based position among the list's rows
    line: int                   # where the row starts in the list file (errors name it)
    name: str                   # the image's file name in the output folder
    prompt: str
    negative: str               # "" = the model's learned unconditional text
    aspect: str | None          # as given (row or command); None = square
    config: SamplingConfig      # one image: batch_size 1, seed = the row's seed

    @property
    def batch_key(self) -> tuple:
        """Rows with equal keys can be drawn in one device batch: same shape, same guidance, same kind of
        negative (none, or a text per row)."""
        config = self.config
        return (config.pixels, config.schedule.grids, config.cfg_per_scale, config.tau_per_scale, config.top_k,
                config.top_p, config.speed, bool(self.negative))

    def record(self, models: ModelNames) -> dict:
        """Everything the image depends on, as JSON values: its PNG metadata, and what the manifest keys on."""
        config = self.config
        height, width = config.schedule.image_size
        return {"prompt": self.prompt, "negative": self.negative, "seed": config.seed, "aspect": self.aspect,
                "h_div_w": config.h_div_w, "shape": describe(config.schedule), "size": f"{width}x{height}",
                "pixels": config.pixels, "cfg": _json_number(config.cfg), "tau": _json_number(config.tau),
                "top_k": config.top_k, "top_p": config.top_p, "speed": config.speed,
                "transformer": models.transformer, "vae": models.vae,
                "text_encoder": models.text_encoder, "command": self.generate_command()}

    def key(self, models: ModelNames) -> str:
        """A digest of what the image depends on: equal keys, equal images (how the settings were written,
        "3" or "3, 3", or the shape's name, does not count)."""
        config = self.config
        inputs = {"prompt": self.prompt, "negative": self.negative, "seed": config.seed, "pixels": config.pixels,
                  "grids": config.schedule.grids, "cfg": config.cfg_per_scale, "tau": config.tau_per_scale,
                  "top_k": config.top_k, "top_p": config.top_p, "speed": config.speed, "models": vars(models)}
        return hashlib.sha256(metadata_text(inputs).encode()).hexdigest()

    def generate_command(self) -> str:
        """The `generate` command that draws this image alone (model options left out: see the record)."""
        config = self.config
        words = ["python", "-m", "infinity_core", "generate", "--prompt", self.prompt, "--seed", str(config.seed),
                 "--pixels", config.pixels, "--cfg", _option_number(config.cfg), "--tau", _option_number(config.tau),
                 "--top-k", str(config.top_k), "--top-p", repr(config.top_p), "--speed", config.speed]
        if self.aspect is not None:
            words += ["--aspect", self.aspect]
        if self.negative:
            words += ["--negative", self.negative]
        return shlex.join(words)


@dataclass(frozen=True)
class BadRow:
    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


@dataclass(frozen=True)
class RowList:
    rows: tuple[BatchRow, ...]
    bad: tuple[BadRow, ...]


def metadata_text(record: dict) -> str:
    """The record as the PNG chunk holds it: canonical JSON (sorted keys, ASCII), the same bytes every time."""
    return json.dumps(record, sort_keys=True, ensure_ascii=True, separators=(",", ":"))


def _json_number(value):
    return list(value) if isinstance(value, tuple) else value


def _option_number(value) -> str:
    return ",".join(repr(v) for v in value) if isinstance(value, tuple) else repr(value)


def read_rows(path: Path, defaults: RowDefaults, model_settings: dict) -> RowList:
    """Every row of the list at `path`, resolved; the rows that cannot be drawn are in `bad` with the reason.
    A file that cannot be read at all (missing, not UTF-8, unknown suffix or CSV columns) raises."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in LIST_SUFFIXES:
        raise InfinityError(f"LIST '{path}' must end in one of {list(LIST_SUFFIXES)}")
    text = _read_text(path)
    raw = {".txt": _txt_rows, ".jsonl": _jsonl_rows, ".csv": _csv_rows}[suffix](text, path)
    rows, bad, names = [], [], {}
    for number, (line, values) in enumerate(raw, start=1):
        try:
            if isinstance(values, BadRow):
                raise InfinityError(values.reason)
            row = resolve_row(number, line, values, defaults, model_settings)
            earlier = names.get(row.name.lower())
            if earlier is not None:
                raise InfinityError(f"name '{row.name}' is also the file of line {earlier}")
            names[row.name.lower()] = line
            rows.append(row)
        except InfinityError as err:
            bad.append(BadRow(line, str(err)))
    if not raw:
        raise InfinityError(f"LIST '{path}' has no rows")
    return RowList(tuple(rows), tuple(bad))


def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise InfinityError(f"LIST '{path}' is not a file") from None
    except OSError as err:
        raise InfinityError(f"LIST '{path}' cannot be read ({err.strerror})") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[:err.start].count(b"\n") + 1
        raise InfinityError(f"LIST '{path}' line {line} is not UTF-8 text; save the list as UTF-8") from None


def _txt_rows(text: str, path: Path) -> list[tuple[int, dict]]:
    return [(line, {"prompt": content.strip()}) for line, content in enumerate(text.splitlines(), start=1)
            if content.strip() and not content.lstrip().startswith("#")]


def _jsonl_rows(text: str, path: Path) -> list[tuple[int, dict | BadRow]]:
    rows = []
    for line, content in enumerate(text.splitlines(), start=1):
        if not content.strip():
            continue
        try:
            values = json.loads(content)
        except json.JSONDecodeError as err:
            rows.append((line, BadRow(line, f"not JSON ({err.msg} at column {err.colno})")))
            continue
        if not isinstance(values, dict):
            rows.append((line, BadRow(line, f"a row is a JSON object such as {{\"prompt\": \"a fox\"}}, "
                                            f"not {type(values).__name__}")))
            continue
        rows.append((line, values))
    return rows


def _csv_rows(text: str, path: Path) -> list[tuple[int, dict | BadRow]]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    columns = reader.fieldnames or []
    unknown = [c for c in columns if c not in ROW_FIELDS]
    if unknown or "prompt" not in columns:
        raise InfinityError(f"LIST '{path}': the first line names the columns; "
                            + (f"unknown column(s) {unknown}; " if unknown else "there is no 'prompt' column; ")
                            + f"valid: {list(ROW_FIELDS)}")
    rows = []
    try:
        for record in reader:      # reader.line_num: the line the row ends on
            line = reader.line_num
            if None in record:
                rows.append((line, BadRow(line, f"{len(record[None])} more cell(s) than the {len(columns)} columns")))
            elif any(value not in (None, "") for value in record.values()):
                rows.append((line, {key: value for key, value in record.items() if value not in (None, "")}))
    except csv.Error as err:
        raise InfinityError(f"LIST '{path}' line {reader.line_num}: {err}") from None
    return rows


def resolve_row(number: int, line: int, values: dict, defaults: RowDefaults, model_settings: dict) -> BatchRow:
    """One row's settings checked and resolved (its own, else the command's, else the model's)."""
    unknown = sorted(set(values) - set(ROW_FIELDS))
    if unknown:
        raise InfinityError(f"unknown field(s) {unknown}; valid: {list(ROW_FIELDS)}")
    prompt = _text(values, "prompt", None)
    if not prompt.strip():
        raise InfinityError("the prompt is empty")
    negative = _text(values, "negative", defaults.negative)
    aspect = values.get("aspect", defaults.aspect)
    if isinstance(aspect, bool) or (aspect is not None and not isinstance(aspect, (str, int, float))):
        raise InfinityError(f"aspect must be text such as '16:9' or a number width/height, got {aspect!r}")
    aspect = None if aspect is None else str(aspect)
    cfg = values.get("cfg", defaults.cfg)
    if isinstance(cfg, str):
        cfg = parse_per_scale(cfg, "cfg")
    given = {"seed": _seed(values.get("seed", defaults.seed)), "pixels": values.get("pixels", defaults.pixels),
             "h_div_w": parse_aspect(aspect) if aspect is not None else None, "cfg": cfg,
             "tau": parse_per_scale(defaults.tau, "tau") if defaults.tau is not None else None,
             "top_k": defaults.top_k, "top_p": defaults.top_p, "speed": values.get("speed", defaults.speed)}
    config = SamplingConfig.from_keywords(model_settings | {k: v for k, v in given.items() if v is not None})
    name = check_name(_text(values, "name", f"{number:05d}"))
    return BatchRow(number, line, name, prompt, negative, aspect, replace(config, batch_size=1))


def _text(values: dict, field: str, default: str | None) -> str:
    value = values.get(field, default)
    if value is None:
        raise InfinityError(f"there is no {field}")
    if not isinstance(value, str):
        raise InfinityError(f"{field} must be text, got {value!r}")
    return value


def _seed(value) -> int | None:
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            raise InfinityError(f"seed must be a whole number, got '{value}'") from None
    return value


def check_name(name: str) -> str:
    """An output file name inside the folder: no folders, not hidden, `.png` (added when left out)."""
    if Path(name).suffix.lower() != NAME_SUFFIX:
        if Path(name).suffix.lower() in (".jpg", ".jpeg", ".webp"):
            raise InfinityError(f"name '{name}' must be a .png (the prompt and settings are written into it)")
        name += NAME_SUFFIX
    if "/" in name or "\\" in name or name.startswith(".") or len(name) > MAX_NAME_LENGTH or not name.isprintable():
        raise InfinityError(f"name '{name}' must be a plain file name (no folders, not starting with '.', "
                            f"printable, at most {MAX_NAME_LENGTH} characters)")
    return name

"""`python -m infinity_core batch LIST -o FOLDER`: its options, and the job from the list to the images.

The order is the promise: the list is read and every row checked, the folder and its manifest opened and
the plan made (what is done, what is not ours), and only then are the models loaded.
"""
from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from ..errors import InfinityError
from ..schedules import ASPECT_PRESETS, PIXEL_BUDGETS
from ..speed import SPEED_MODES
from ..weights import model_defaults
from .manifest import MANIFEST_NAME, Manifest
from ..model_files import ModelFiles, add_model_arguments, model_files
from .render import RowRenderer, device_batches
from .rows import LIST_SUFFIXES, ROW_FIELDS, RowDefaults, read_rows
from .runner import ImageWriter, plan, run_local

log = logging.getLogger("infinity_core")

DEFAULT_ROWS_PER_BATCH = 4
MAX_LISTED_BAD = 20

EPILOG = f"""\
LIST: a .txt (one prompt a line; blank and '#' lines left out), a .jsonl (one object a line) or a .csv
(a header line naming the columns). Rows may set {', '.join(ROW_FIELDS)}; what a row leaves out takes
the options below. Row n is written to FOLDER/0000n.png unless it has a name.

FOLDER/{MANIFEST_NAME} records the images done: run the same command again to finish a stopped job (rows
done are skipped, a row whose write was cut off is drawn again). A file in FOLDER that this command did
not write is never replaced: the run refuses and names it. Each PNG carries its prompt and settings (text
chunk 'infinity', JSON, with the generate command that draws it alone).
"""


def add_arguments(parser: argparse.ArgumentParser, demo: ModelFiles) -> None:
    parser.description = "Draw every row of a prompt list into a folder; resumable; on this machine or on Ray."
    parser.epilog = EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("list", type=Path, nargs="?", metavar="LIST", help=f"the prompt list ({', '.join(LIST_SUFFIXES)})")
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="FOLDER", help="the images' folder")
    add_model_arguments(parser, demo)
    parser.add_argument("--negative", default="", help="negative prompt of rows without one")
    parser.add_argument("--seed", type=int, help="seed of rows without one (default 0)")
    parser.add_argument("--cfg", help="guidance of rows without one, or a per-scale comma list")
    parser.add_argument("--tau", help="temperature, or a per-scale comma list")
    parser.add_argument("--top-k", type=int)
    parser.add_argument("--top-p", type=float)
    parser.add_argument("--speed", choices=list(SPEED_MODES), help="speed mode of rows without one (default exact)")
    parser.add_argument("--aspect", help=f"aspect of rows without one: width:height, or one of {', '.join(ASPECT_PRESETS)}")
    parser.add_argument("--pixels", choices=list(PIXEL_BUDGETS), help="pixel budget of rows without one")
    parser.add_argument("--device", help="cpu, cuda, cuda:N, mps (default: the best available; not with --ray)")
    parser.add_argument("--rows-per-batch", type=int, default=DEFAULT_ROWS_PER_BATCH,
                        help=f"rows of equal size and settings drawn together on one device (default "
                             f"{DEFAULT_ROWS_PER_BATCH}; 1 = one by one); the images are the same either way")
    parser.add_argument("--skip-bad-rows", action="store_true", help="draw the good rows of a list that has bad ones")
    parser.add_argument("--overwrite", action="store_true",
                        help="draw again the rows whose settings changed since their image was made (never "
                             "replaces a file this command did not write)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar; warnings and errors only")
    parser.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                        help="run on Ray: a local Ray instance, or the cluster at ADDRESS ('auto', 'ray://host:10001')")
    parser.add_argument("--workers", type=int, help="Ray workers (default: one per GPU, else 1)")


def _list_and_ray(args: argparse.Namespace) -> tuple[Path, str | None]:
    """LIST, and the Ray address; `--ray LIST` (the list taken for the address) is read as `LIST --ray`."""
    if args.list is not None:
        return args.list, args.ray
    if args.ray is not None and Path(args.ray).suffix.lower() in LIST_SUFFIXES:
        return Path(args.ray), "local"
    raise InfinityError("batch needs LIST, the prompt list")


def run(args: argparse.Namespace) -> int:
    """The whole job; returns the exit status (0 all drawn, 1 some rows failed). Refusals raise InfinityError."""
    level = log.level
    if args.quiet:
        log.setLevel(logging.WARNING)
    try:
        return _run(args)
    finally:
        log.setLevel(level)


def _run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    list_path, ray_address = _list_and_ray(args)
    if args.rows_per_batch < 1:
        raise InfinityError(f"--rows-per-batch must be 1 or more, got {args.rows_per_batch}")
    if args.workers is not None and (ray_address is None or args.workers < 1):
        raise InfinityError("--workers is the number of Ray workers: 1 or more, with --ray")
    if ray_address is not None and args.device is not None:
        raise InfinityError("--device is for a run on this machine; Ray workers take a GPU where there is one")
    models = model_files(args)
    defaults = RowDefaults(args.negative, args.seed, args.aspect, args.pixels, args.cfg, args.tau, args.top_k, args.top_p,
                           args.speed)
    listed = read_rows(list_path, defaults, model_defaults(args.transformer))
    if listed.bad:
        shown = "\n".join(f"  {bad}" for bad in listed.bad[:MAX_LISTED_BAD])
        more = f"\n  ... and {len(listed.bad) - MAX_LISTED_BAD} more" if len(listed.bad) > MAX_LISTED_BAD else ""
        if not args.skip_bad_rows:
            raise InfinityError(f"LIST '{list_path}' has {len(listed.bad)} bad row(s); fix them or pass "
                                f"--skip-bad-rows:\n{shown}{more}")
        log.warning("leaving out %d bad row(s) of '%s':\n%s%s", len(listed.bad), list_path, shown, more)
    with Manifest.open(args.output) as manifest:
        work = plan(listed.rows, manifest, models.names, overwrite=args.overwrite)
        log.info("%d row(s): %d done before, %d to draw", len(listed.rows), work.done, len(work.todo))
        if not work.todo:
            return 0
        batches = device_batches(work.todo, args.rows_per_batch)
        with logging_redirect_tqdm(), tqdm(total=len(work.todo), unit="img", disable=args.quiet,
                                           dynamic_ncols=True) as bar:
            writer = ImageWriter(manifest, models.names, bar.update)
            if ray_address is None:
                failed = run_local(batches, RowRenderer(models, args.device), writer)
            else:
                from .ray_runner import run_on_ray
                failed = run_on_ray(batches, models, writer, address=ray_address, workers=args.workers)
    failed_rows = sum(len(batch.rows) for batch in failed)
    log.info("wrote %d image(s) into %s in %.1f s%s", writer.written, args.output, time.perf_counter() - started,
             f"; {failed_rows} row(s) failed: run the command again to retry them" if failed else "")
    return 1 if failed else 0

"""Problem loading: JSON Lines files of math problems, by name or path, plus synthetic ones.

A data set is a folder of split files, `<data_dir>/<name>/<split>.jsonl`, with one JSON
object per line holding at least `problem` (str) and `answer` (str); other fields are kept.

What `spec` in `load_problems(spec)` means:
  * `name:split`      -> `<data_dir>/<name>/<split>.jsonl`   e.g. `math:train_level3to5`, `gsm8k:test`
  * `name`            -> the folder's only split file when it has one (`math500` -> test.jsonl),
                         else the first of DEFAULT_SPLITS that exists (`gsm8k` -> train.jsonl).
                         Say `gsm8k:test` when you mean the test split.
  * a path to a file  -> that file (anything ending in `.jsonl` or holding a `/`, or any existing file)
  * `synthetic`, `synthetic:<difficulty>` -> generated offline by data/synthetic.py (level 1 if
                         not given), `n` problems (keyword `n`, else `limit`, else 1000).
  * `synthetic_image:<difficulty>` -> the same problems drawn into images (data/images.py), for
                         vision-language models.

A row may carry images: `images`, one per `<image>` placeholder in `problem` (data/images.py has the format).

Two problems are the same problem when they have the same `row_key`: the text's `problem_key` (Unicode-
normalised, case-folded, whitespace collapsed) and, for rows with images, the images (file or bytes digest). `load_problems(..., exclude=keys)` leaves such problems out and
`distinct=True` keeps only the first of each: this is how train_grpo keeps its held-out problems out
of training, for files with repeated lines and for the synthetic generator (which then never draws them).

The data directory is, in order: the `data_dir` argument (a `--data_dir` flag), the environment
variable HICRA_DATA_DIR, `<repo>/data` (where data/prepare.py writes) when it holds data sets,
else `<repo>/../shared/data` when that exists, else `<repo>/data`.

Blank lines are skipped. Any other bad line raises DataError naming file, line and field.
"""
import itertools
import json
import os
import random
import unicodedata
from pathlib import Path

from .images import PLACEHOLDER, checked_images, image_key, image_stream, json_images
from .synthetic import stream

REPO = Path(__file__).resolve().parent.parent
# Strategic Gram lists by name (data/README.md): the paper's published list (the default) and the one
# mined here from MATH reference solutions.
GRAM_LISTS = {"paper": REPO / "data" / "paper_strategic_grams.txt", "mined": REPO / "data" / "strategic_grams.txt"}
STRATEGIC_GRAMS = GRAM_LISTS["paper"]   # the default gram list
DEFAULT_SPLITS = ("train", "test")  # what a bare name means when its folder has several splits
REQUIRED = ("problem", "answer")


class DataError(ValueError):
    """A data set that cannot be found or read; the message is one line saying where and why."""


def _has_datasets(d):
    return d.is_dir() and any(d.glob("*/*.jsonl"))


def resolve_data_dir(data_dir=None):
    """The data directory: flag, else $HICRA_DATA_DIR, else <repo>/data, else <repo>/../shared/data."""
    if data_dir:
        return Path(data_dir).expanduser()
    if os.environ.get("HICRA_DATA_DIR"):
        return Path(os.environ["HICRA_DATA_DIR"]).expanduser()
    local, shared = REPO / "data", REPO.parent / "shared" / "data"
    if not _has_datasets(local) and shared.is_dir():
        return shared
    return local


def available(data_dir=None):
    """Every `name:split` in the data directory, sorted."""
    d = resolve_data_dir(data_dir)
    return sorted(f"{p.parent.name}:{p.stem}" for p in d.glob("*/*.jsonl"))


def dataset_path(spec, data_dir=None):
    """The file a dataset name or path stands for (see the module docstring)."""
    p = Path(spec).expanduser()
    if spec.endswith(".jsonl") or "/" in spec or os.sep in spec or p.is_file():
        if not p.is_file():
            raise DataError(f"{spec}: no such file")
        return p
    d = resolve_data_dir(data_dir)
    if not d.is_dir():
        raise DataError(f"data directory {d} does not exist: run `python data/prepare.py` "
                        "or set HICRA_DATA_DIR (or pass --data_dir) to a folder of <name>/<split>.jsonl")
    name, _, split = spec.partition(":")
    folder = d / name
    splits = sorted(f.stem for f in folder.glob("*.jsonl")) if folder.is_dir() else []
    if not splits:
        have = ", ".join(available(d)) or "nothing (run `python data/prepare.py`)"
        raise DataError(f"unknown dataset '{name}' in {d}; available: {have}")
    if not split:  # bare name: the only split, else the first default split present
        split = splits[0] if len(splits) == 1 else next((s for s in DEFAULT_SPLITS if s in splits), None)
        if split is None:
            raise DataError(f"dataset '{name}' has several splits, say which: "
                            + ", ".join(f"{name}:{s}" for s in splits))
    if split not in splits:
        raise DataError(f"dataset '{name}' has no split '{split}' in {d}; available: "
                        + ", ".join(f"{name}:{s}" for s in splits))
    return folder / f"{split}.jsonl"


def read_jsonl(path):
    """Rows of one JSON Lines file, checked; a made-up `id` (`<file>:<line>`) where a row has none."""
    path = Path(path)
    rows, seen = [], {}
    with open(path, "rb") as f:  # bytes, so a bad encoding is reported with its line number
        for lineno, raw in enumerate(f, 1):
            where = f"{path}:{lineno}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataError(f"{where}: not UTF-8 ({e.reason} at byte {e.start})") from None
            if not line.strip():
                continue  # a trailing or stray blank line is harmless
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{where}: invalid JSON ({e.msg} at column {e.colno})") from None
            if not isinstance(row, dict):
                raise DataError(f"{where}: expected a JSON object, got {type(row).__name__}")
            for field in REQUIRED:
                if field not in row:
                    raise DataError(f"{where}: missing field '{field}'")
                if not isinstance(row[field], str) or not row[field].strip():
                    raise DataError(f"{where}: field '{field}' must be a non-empty string")
            try:
                if row.get("images") or PLACEHOLDER in row["problem"]:
                    row["images"] = checked_images(row, where, path.parent)
            except ValueError as e:
                raise DataError(str(e)) from None
            if row.get("id") is None:
                row["id"] = f"{path.name}:{lineno}"
            elif isinstance(row["id"], (str, int)) and not isinstance(row["id"], bool):
                row["id"] = str(row["id"])  # integer ids are common upstream; callers get str
            else:
                raise DataError(f"{where}: field 'id' must be a string or an integer")
            if row["id"] in seen:  # ids key rollouts and eval results, so they must be unique
                raise DataError(f"{where}: duplicate id '{row['id']}' (first on line {seen[row['id']]})")
            seen[row["id"]] = lineno
            rows.append(row)
    return rows


def problem_key(text):
    """What makes two problem texts the same problem: NFKC Unicode form, case-folded, whitespace collapsed."""
    return " ".join(unicodedata.normalize("NFKC", str(text)).casefold().split())


def json_row(row):
    """A row as JSON can hold it, in the format the loader reads (embedded image bytes as base64)."""
    return {**row, "images": json_images(row["images"])} if row.get("images") else row


def row_key(row):
    """What makes two rows the same problem: problem_key of the text, and the images' keys where it has any."""
    images = row.get("images") or []
    return problem_key(row["problem"]) + "".join(f" |image {image_key(i)}" for i in images)


def load_problems(spec, data_dir=None, limit=None, seed=None, exclude=(), distinct=False, **synthetic_kwargs):
    """Problems as dicts with `id`, `problem`, `answer` (all str) and any other fields.

    `seed` shuffles the rows before `limit` cuts them (None keeps file order); for
    `synthetic` it is the generator's seed (None means 0). Extra keyword arguments
    (`n`, ...) go to data.synthetic.stream. `exclude` (a set of row_key values) drops those
    problems and `distinct` keeps one row per problem (row_key), both before `limit` counts.
    """
    spec = str(spec)
    name, _, level = spec.partition(":")
    exclude = set(exclude)

    def wanted(row):
        key = row_key(row)
        if key in exclude:
            return False
        if distinct:
            exclude.add(key)
        return True

    if name in ("synthetic", "synthetic_image"):
        try:
            difficulty = int(level or synthetic_kwargs.pop("difficulty", 1))
        except ValueError:
            raise DataError(f"{spec}: difficulty must be an integer, e.g. {name}:2") from None
        n = synthetic_kwargs.pop("n", limit if limit is not None else 1000)
        make = stream if name == "synthetic" else image_stream
        draws = itertools.islice(make(difficulty, 0 if seed is None else seed, **synthetic_kwargs),
                                 max(10_000, 100 * n))   # the easy levels run out of new problems
        try:
            rows = list(itertools.islice(filter(wanted, draws), n))
        except ValueError as e:
            raise DataError(f"{spec}: {e}") from None
        if len(rows) < n:
            what = "distinct problems" if distinct else "problems outside the held-out set"
            raise DataError(f"{spec}: found only {len(rows)} {what} of the {n} asked for "
                            f"(level {difficulty} has few distinct problems: ask for fewer, or use a harder level)")
    else:
        if synthetic_kwargs:
            raise TypeError(f"unexpected arguments for a file data set: {sorted(synthetic_kwargs)}")
        rows = read_jsonl(dataset_path(spec, data_dir))
        if seed is not None:
            random.Random(seed).shuffle(rows)
        rows = [r for r in rows if wanted(r)]
    return rows if limit is None else rows[:limit]

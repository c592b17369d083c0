"""Download the public math sets and normalise them into <out_dir>/<name>/<split>.jsonl.

Every row gets the schema the loader (data/__init__.py) and ../shared/data use:
`id`, `problem`, `answer` (the reference final answer, a non-empty string), `solution`
where the source has one, `source`, plus a few upstream fields (subject, level, url...).
  * GSM8K: the answer is the text after the last `####`, with thousands commas removed.
  * MATH train and Minerva: the content of the last `\\boxed{}` (or `\\fbox{}`), braces matched.
Sources are the public GitHub files that ../shared/data/README.md names (their default
branch; that README gives the commits the shared copy was taken from).

The paper's training sets, from the Hugging Face Hub (train split only, deduplicated):
  * dapo_math_17k: BytedTsinghua-SIA/DAPO-Math-17k, data/dapo-math-17k.parquet (Apache-2.0). A verl-format
    Parquet file (needs pyarrow) whose 17.4K problems repeat about 100 times (1.79M rows). The problem is the
    user turn without DAPO's own answer-format wrapper ("Solve the following math problem step by step. The
    last line of your response should be of the form Answer: $Answer ..."), since the trainer adds its
    instruction (\\boxed{} by default); the answer is reward_model.ground_truth (an integer: DAPO rewrote
    every answer as one), the id extra_info.index. A row without that wrapper or with an empty answer stops
    the script, naming the row: a changed upstream format is not guessed at.
  * deepscaler: agentica-org/DeepScaleR-Preview-Dataset, deepscaler.json (MIT): 40.3K problems from AIME
    1984-2023, AMC before 2023, Omni-MATH and STILL, as a JSON list of {problem, answer, solution}; the id is
    the row's position upstream. Rows with an empty problem or answer are left out (the count is printed).
Both keep the first row of each problem (the loader's problem_key: Unicode-normalised, case-folded,
whitespace collapsed) and say how many repeats they dropped.

The vision-language sets (the paper's Table 2), also from the Hub. Each image is written to
<out_dir>/<name>/images/ and the row holds its path, with one `<image>` placeholder per image in the problem
(data/images.py); a multiple-choice problem gets its options as "Choices:" lines "(A) ..." and its answer is
the letter, which the reward compares with the letter a response boxes.
  * virl39k: TIGER-Lab/ViRL39K (MIT), 39Krelease.parquet and images.zip: `question` (a `<image>` per image),
    `answer` (\boxed{...}), `image` (paths into the zip), `qid`, `category`, `source`. A row whose question has
    fewer placeholders than images gets the missing ones in front (about 2% lost theirs upstream); a row with
    more is left out (counted).
  * mathvista: AI4Math/MathVista testmini (1,000): `question`, `choices` (null when free-form), `unit`,
    `answer` (the option's text, made its letter here), `decoded_image` (bytes). The image goes first.
  * mathvision: MathLLMs/MathVision test (3,040) and testmini (304): `question` (with `<image1>` markers, yet one
    composite image a row), `options` (empty when free-form), `answer` (a letter or a value), `decoded_image`.
    The markers are dropped and the image goes first.
  * mathverse: AI4Math/MathVerse testmini (3,940: 788 problems in five versions, `problem_version`), `question`
    (choices inside it), `answer`, `image` (bytes). The image goes first.
  * emma: luckychao/EMMA, its Math subset (892): `question` with `<image_1>`..`<image_5>` markers, `options`
    (null when open-ended), `answer`, `image_1`..`image_5`. Each marker (in the question or an option) becomes a
    placeholder, in order; an image no marker names goes in front.
Letters past E: the reward reads a boxed letter as a choice (with "(B)", "B. 12" forms) for A-E only; a later
letter is compared as a plain answer, so `\boxed{F}` counts and `\boxed{(F)}` does not.
Needs the network; offline it stops with one line. Then point HICRA_DATA_DIR at a copy.

    python data/prepare.py                       # all sets into data/
    python data/prepare.py --datasets gsm8k,math500 --out_dir /tmp/data
    python data/prepare.py --datasets dapo_math_17k,deepscaler   # the paper's training sets
    python data/prepare.py --datasets virl39k,mathvista,mathvision,mathverse,emma   # vision-language
"""
import argparse
import io
import json
import re
import sys
import tarfile
import urllib.error
import zipfile
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))   # run as a script: the project's data package
from data import problem_key  # noqa: E402
from data.images import PLACEHOLDER  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
RAW = "https://raw.githubusercontent.com"
QWEN = f"{RAW}/QwenLM/Qwen2.5-Math/HEAD/evaluation/data"
HUB = "https://huggingface.co/datasets"
URLS = {
    "gsm8k": f"{RAW}/openai/grade-school-math/HEAD/grade_school_math/data/{{split}}.jsonl",
    "math500": f"{RAW}/hkust-nlp/simpleRL-reason/HEAD/examples/simplelr_math_eval/data/math500/test.jsonl",
    "aime24": f"{QWEN}/aime24/test.jsonl",
    "aime25": f"{RAW}/zhshgmail/AReaL/HEAD/evaluation/data/aime25/test.jsonl",
    "amc23": f"{QWEN}/amc23/test.jsonl",
    "minerva_math": f"{QWEN}/minerva_math/test.jsonl",
    "olympiadbench": f"{QWEN}/olympiadbench/test.jsonl",
    # The MATH train split as 7500 small files; one tarball is far quicker than 7500 requests.
    "math": "https://codeload.github.com/aiwaves-cn/agents/tar.gz/HEAD",
    # The paper's training sets (see above).
    "dapo_math_17k": f"{HUB}/BytedTsinghua-SIA/DAPO-Math-17k/resolve/main/data/dapo-math-17k.parquet",
    "deepscaler": f"{HUB}/agentica-org/DeepScaleR-Preview-Dataset/resolve/main/deepscaler.json",
    # Vision-language (see above): {split: Parquet file}, and ViRL39K's images.
    "virl39k": {"train": f"{HUB}/TIGER-Lab/ViRL39K/resolve/main/39Krelease.parquet"},
    "mathvista": {"testmini": f"{HUB}/AI4Math/MathVista/resolve/main/data/testmini-00000-of-00001-725687bf7a18d64b.parquet"},
    "mathvision": {"test": f"{HUB}/MathLLMs/MathVision/resolve/main/data/test-00000-of-00001-3532b8d3f1b4047a.parquet",
                   "testmini": f"{HUB}/MathLLMs/MathVision/resolve/main/data/testmini-00000-of-00001-f8ff70fcb2f29b1d.parquet"},
    "mathverse": {"testmini": f"{HUB}/AI4Math/MathVerse/resolve/main/testmini.parquet"},
    "emma": {"test": f"{HUB}/luckychao/EMMA/resolve/main/Math/test-00000-of-00001.parquet"},
}
VIRL_IMAGES = f"{HUB}/TIGER-Lab/ViRL39K/resolve/main/images.zip"
VISION_SETS = ("virl39k", "mathvista", "mathvision", "mathverse", "emma")
# DAPO-Math-17k wraps every problem in its own answer-format instruction; the trainer adds its own.
DAPO_PREFIX = ("Solve the following math problem step by step. The last line of your response should be of the "
               "form Answer: $Answer (without quotes) where $Answer is the answer to the problem.\n\n")
DAPO_SUFFIX = '\n\nRemember to put your answer on its own line after "Answer:".'


# ---- pure normalisers (unit-tested; no network) ----

def gsm8k_answer(solution):
    """'... #### 1,234' -> '1234'; None when there is no '####'."""
    if "####" not in solution:
        return None
    return solution.rsplit("####", 1)[1].strip().replace(",", "")


def last_boxed(text):
    """Content of the last \\boxed{...} or \\fbox{...} (nested braces matched), else None."""
    matches = list(re.finditer(r"\\(?:boxed|fbox)\s*", text))
    if not matches:
        return None
    i = matches[-1].end()
    if not text.startswith("{", i):  # `\boxed 5`: the argument runs to the next space or `$`
        return re.match(r"[^\s$]*", text[i:]).group().strip() or None
    depth = 0
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i + 1:j].strip()
    return None  # unbalanced braces


def repair_escapes(text):
    """Undo single-backslash LaTeX read as JSON escapes (`\\frac` -> form feed + 'rac')."""
    text = text.replace("\f", "\\f").replace("\b", "\\b")
    return re.sub(r"\t(?=riangle|ext|imes|heta|frac|ilde|an|au|o\b|op)", r"\\t", text)


def integer_string(x):
    """27.0 -> '27', '025' -> '25' (AIME and AMC answers are integers)."""
    return str(int(float(x)))


def aops_id(url):
    """AoPS wiki URL -> '2024-I-1' / '2023-AMC12A-1'."""
    m = re.search(r"(\d{4})_(AIME_I+|AMC_\w+?)_Problems/Problem_(\d+)", url)
    year, contest, num = m.groups()
    return f"{year}-{contest.replace('AIME_', '').replace('AMC_', 'AMC')}-{num}"


# ---- per-set normalisation: upstream rows -> {split: rows} ----

def norm_gsm8k(split, rows):
    return [{"id": f"gsm8k-{split}-{i}", "problem": r["question"], "answer": gsm8k_answer(r["answer"]),
             "solution": r["answer"], "source": "gsm8k"} for i, r in enumerate(rows)]


def norm_math500(rows):
    return [{"id": r["unique_id"], "problem": r["problem"], "answer": r["answer"].strip(),
             "solution": r["solution"], "subject": r["subject"], "level": r["level"],
             "source": "math500"} for r in rows]


def norm_aime(rows, name):
    out = []
    for i, r in enumerate(rows):
        half = "I" if i < 15 else "II"  # aime25 upstream has no labels: rows 1-15 are contest I
        row = {"id": aops_id(r["url"]) if "url" in r else f"2025-{half}-{i % 15 + 1}",
               "problem": r.get("problem") or r["question"],
               "answer": integer_string(r["answer"])}
        row.update({k: r[k] for k in ("solution", "url") if k in r}, source=name)
        out.append(row)
    # Contest I before II, then by problem number.
    return sorted(out, key=lambda r: (r["id"].rsplit("-", 1)[0], int(r["id"].rsplit("-", 1)[1])))


def norm_minerva(rows):
    return [{"id": f"minerva-{i}", "problem": r["problem"], "answer": last_boxed(r["solution"]),
             "solution": r["solution"], "type": r["type"], "source": "minerva_math"}
            for i, r in enumerate(rows)]


def norm_olympiad(rows):
    out = []
    for r in rows:
        final = [a.replace("$", "") for a in r["final_answer"]]
        problem = f"{r['context']}\n{r['question']}" if r.get("context") else r["question"]
        row = {"id": f"olympiadbench-{r['id']}", "problem": problem, "answer": ", ".join(final),
               "solution": "\n\n".join(r["solution"]), "final_answer": final}
        row.update({k: r[k] for k in ("is_multiple_answer", "answer_type", "subfield", "unit")
                    if r.get(k) is not None}, source="olympiadbench")
        out.append(row)
    return out


def norm_math_train(files):
    """files: {'algebra/0.json': row}. Rows whose last \\boxed{} is empty are left out."""
    out = []
    for key in sorted(files, key=lambda k: (k.split("/")[0], int(k.split("/")[1].split(".")[0]))):
        r, answer = files[key], last_boxed(files[key]["solution"])
        if not answer:
            continue
        row = {"id": f"train/{key}", "problem": r["problem"], "answer": answer,
               "solution": r["solution"], "subject": r["type"]}
        if re.fullmatch(r"Level \d", r.get("level", "")):
            row["level"] = int(r["level"][-1])
        out.append(dict(row, source="math_train"))
    return out


def first_of_each_problem(rows):
    """rows (any iterable) without repeats of a problem (data.problem_key), the first kept; and how many were
    dropped. Only the kept rows are held: DAPO's 1.79M rows are read one by one."""
    seen, kept, dropped = set(), [], 0
    for r in rows:
        key = problem_key(r["problem"])
        if key in seen:
            dropped += 1
        else:
            seen.add(key)
            kept.append(r)
    return kept, dropped


def norm_dapo(rows):
    """DAPO-Math-17k's verl rows (prompt: [{role, content}], reward_model: {ground_truth}, extra_info: {index}),
    one normalised row at a time."""
    for i, r in enumerate(rows):
        try:
            content = next(m["content"] for m in r["prompt"] if m["role"] == "user")
            answer, index = str(r["reward_model"]["ground_truth"]).strip(), str(r["extra_info"]["index"])
        except (KeyError, TypeError, StopIteration) as e:
            sys.exit(f"prepare.py: dapo_math_17k row {i}: not DAPO's verl format (missing {e})")
        if not (content.startswith(DAPO_PREFIX) and content.endswith(DAPO_SUFFIX)) or not answer:
            sys.exit(f"prepare.py: dapo_math_17k row {i} (index {index}): not DAPO's answer-format wrapper around "
                     "a problem with a ground truth; has the upstream format changed?")
        yield {"id": f"dapo-{index}", "problem": content[len(DAPO_PREFIX):-len(DAPO_SUFFIX)].strip(),
               "answer": answer, "source": "dapo_math_17k"}


def norm_deepscaler(rows):
    """DeepScaleR's JSON list of {problem, answer, solution}; rows with an empty answer are left out."""
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        sys.exit("prepare.py: deepscaler: not a JSON list of {problem, answer, solution} objects; has the upstream "
                 "format changed?")
    given = lambda value: value is not None and str(value).strip() != ""   # noqa: E731  (an answer 0 counts)
    out = [{"id": f"deepscaler-{i}", "problem": str(r["problem"]).strip(), "answer": str(r["answer"]).strip(),
            "solution": r.get("solution") or "", "source": "deepscaler"}
           for i, r in enumerate(rows) if given(r.get("answer")) and given(r.get("problem"))]
    print(f"deepscaler: {len(rows) - len(out)} rows without a problem or an answer left out")
    return out


# ---- vision-language sets: upstream rows -> rows whose `images` hold bytes or paths into the set's folder ----

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def with_choices(question, options):
    """The question with its options as lines "(A) ...", the layout of MathVista's own prompt."""
    return question.rstrip() + "\nChoices:\n" + "\n".join(f"({LETTERS[k]}) {o}" for k, o in enumerate(options))


def image_bytes(value, where):
    """An HF Image cell ({bytes, path}) or raw bytes -> bytes; anything else stops the script naming the row."""
    data = value.get("bytes") if isinstance(value, dict) else value
    if not isinstance(data, bytes) or not data:
        sys.exit(f"prepare.py: {where}: no image bytes; has the upstream format changed?")
    return data


def norm_virl(rows):
    """ViRL39K rows -> (rows, how many were left out). Answers are \boxed{...}: their content is the answer."""
    out, dropped = [], 0
    for r in rows:
        images, question = list(r.get("image") or []), str(r["question"])
        missing = len(images) - question.count(PLACEHOLDER)
        answer = last_boxed(str(r["answer"])) or str(r["answer"]).strip()
        if missing < 0 or not answer:
            dropped += 1
            continue
        out.append({"id": f"virl39k-{r['qid']}", "problem": PLACEHOLDER * missing + question, "answer": answer,
                    "images": images, "category": r.get("category"), "source": r.get("source") or "virl39k"})
    return out, dropped


def norm_mathvista(rows):
    out = []
    for r in rows:
        question = r["question"] + (f" (Unit: {r['unit']})" if r.get("unit") else "")
        answer, choices = str(r["answer"]).strip(), r.get("choices")
        if r.get("question_type") == "multi_choice":
            if answer not in choices:
                sys.exit(f"prepare.py: mathvista {r['pid']}: answer {answer!r} is none of its choices")
            question, answer = with_choices(question, choices), LETTERS[choices.index(answer)]
        out.append({"id": f"mathvista-{r['pid']}", "problem": f"{PLACEHOLDER}\n{question}", "answer": answer,
                    "images": [image_bytes(r["decoded_image"], f"mathvista {r['pid']}")],
                    "question_type": r.get("question_type"), "source": "mathvista"})
    return out


def norm_mathvision(rows):
    out = []
    for r in rows:
        question = re.sub(r"\s*<image\d*>\s*", " ", r["question"]).strip()   # one composite image a row
        if r.get("options"):
            question = with_choices(question, r["options"])
        out.append({"id": f"mathvision-{r['id']}", "problem": f"{PLACEHOLDER}\n{question}", "answer": str(r["answer"]).strip(),
                    "images": [image_bytes(r["decoded_image"], f"mathvision {r['id']}")], "level": r.get("level"),
                    "subject": r.get("subject"), "solution": r.get("solution") or "", "source": "mathvision"})
    return out


def norm_mathverse(rows):
    return [{"id": f"mathverse-{r['sample_index']}", "problem": f"{PLACEHOLDER}\n{r['question'].strip()}",
             "answer": str(r["answer"]).strip(), "images": [image_bytes(r["image"], f"mathverse {r['sample_index']}")],
             "problem_version": r.get("problem_version"), "question_type": r.get("question_type"),
             "source": "mathverse"} for r in rows]


def norm_emma(rows):
    """EMMA's Math rows: each `<image_k>` marker (in the question or an option) becomes a placeholder with image_k,
    in order of appearance; an image no marker names goes in front."""
    out = []
    for r in rows:
        where, images, named = f"emma {r['pid']}", [], set()

        def place(match):
            named.add(match.group(1))
            images.append(image_bytes(r.get(f"image_{match.group(1)}"), f"{where} image_{match.group(1)}"))
            return PLACEHOLDER
        question = re.sub(r"<image_(\d)>", place, r["question"])
        if r.get("options"):
            question = with_choices(question, [re.sub(r"<image_(\d)>", place, o) for o in r["options"]])
        unnamed = [k for k in "12345" if r.get(f"image_{k}") is not None and k not in named]
        question = PLACEHOLDER * len(unnamed) + question
        images = [image_bytes(r[f"image_{k}"], f"{where} image_{k}") for k in unnamed] + images
        context = r.get("context")
        problem = f"{context}\n{question}" if context and context != "none" else question
        out.append({"id": f"emma-{r['pid']}", "problem": problem, "answer": str(r["answer"]).strip(), "images": images,
                    "solution": r.get("solution") or "", "category": r.get("category"), "source": "emma"})
    return out


def store_images(folder, rows):
    """Write each row's image bytes to folder/images/<id>-<k>.<png|jpg> and put the relative path in their place."""
    for r in rows:
        for k, item in enumerate(r.get("images", [])):
            if isinstance(item, bytes):
                extension = "png" if item.startswith(b"\x89PNG") else "jpg"
                name = f"images/{re.sub(r'[^A-Za-z0-9_.-]', '_', r['id'])}-{k}.{extension}"
                (folder / name).parent.mkdir(parents=True, exist_ok=True)
                (folder / name).write_bytes(item)
                r["images"][k] = name
    return rows


def extract_images(zip_data, folder, names):
    """The members `names` of a zip archive (bytes) into folder, at their paths; a missing one stops the script."""
    with zipfile.ZipFile(io.BytesIO(zip_data)) as archive:
        members = set(archive.namelist())
        for name in sorted(set(names)):
            if name not in members or name.startswith("/") or ".." in Path(name).parts:
                sys.exit(f"prepare.py: virl39k: image {name} is not in images.zip; has the upstream format changed?")
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(archive.read(name))


def build_vision(name, folder):
    """{split: rows} of a vision-language set, its images written under folder."""
    splits = {}
    for split, url in URLS[name].items():
        rows = list(parquet_rows(fetch(url), None))
        if name == "virl39k":
            rows, dropped = norm_virl(rows)
            print(f"virl39k: {dropped} rows left out (more placeholders than images, or no answer)")
            extract_images(fetch(VIRL_IMAGES), folder, [i for r in rows for i in r["images"]])
        else:
            rows = {"mathvista": norm_mathvista, "mathvision": norm_mathvision, "mathverse": norm_mathverse,
                    "emma": norm_emma}[name](rows)
        splits[split] = store_images(folder, rows)
    return splits


def parquet_rows(data, columns):
    """The rows of a Parquet file (bytes) as dicts of `columns`, one at a time."""
    try:
        import pyarrow.parquet
    except ImportError:
        sys.exit("prepare.py: DAPO-Math-17k is a Parquet file: pip install pyarrow (requirements.txt has it)")
    for batch in pyarrow.parquet.read_table(io.BytesIO(data), columns=columns).to_batches():
        yield from batch.to_pylist()


# ---- download and write ----

def fetch(url):
    try:
        with urllib.request.urlopen(url, timeout=60) as resp:
            return resp.read()
    except (urllib.error.URLError, OSError) as e:
        sys.exit(f"prepare.py: cannot download {url} ({getattr(e, 'reason', e)}); offline? "
                 "Set HICRA_DATA_DIR to an existing copy of the data instead.")


def fetch_jsonl(url):
    return [json.loads(line) for line in fetch(url).decode("utf-8").splitlines() if line.strip()]


def build(name):
    """{split: normalised rows} for one data set."""
    url = URLS[name]
    if name == "gsm8k":
        return {s: norm_gsm8k(s, fetch_jsonl(url.format(split=s))) for s in ("train", "test")}
    if name == "math":
        files = {}
        with tarfile.open(fileobj=io.BytesIO(fetch(url)), mode="r:gz") as tar:
            for m in tar:
                hit = re.search(r"/datasets/data/math/train/(\w+/\d+\.json)$", m.name)
                if hit and m.isfile():
                    files[hit.group(1)] = json.load(tar.extractfile(m))
        rows = norm_math_train(files)
        return {"train": rows, "train_level3to5": [r for r in rows if r.get("level", 0) >= 3]}
    if name in ("dapo_math_17k", "deepscaler"):
        rows = norm_dapo(parquet_rows(fetch(url), ["prompt", "reward_model", "extra_info"])) \
            if name == "dapo_math_17k" else norm_deepscaler(json.loads(fetch(url)))
        kept, repeats = first_of_each_problem(rows)
        print(f"{name}: {len(kept)} problems ({repeats} repeated rows dropped)")
        return {"train": kept}
    rows = fetch_jsonl(url)
    norm = {"math500": norm_math500, "minerva_math": norm_minerva, "olympiadbench": norm_olympiad}
    return {"test": norm[name](rows) if name in norm else norm_aime(rows, name)}


def write_jsonl(path, rows):
    # Some upstream files hold LaTeX written with single backslashes; repair every text field.
    rows = [{k: repair_escapes(v) if isinstance(v, str) else v for k, v in r.items()} for r in rows]
    bad = [r["id"] for r in rows if not r.get("answer") or not r.get("problem")]
    if bad:
        sys.exit(f"prepare.py: {path}: {len(bad)} rows without problem or answer (first: {bad[0]})")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".jsonl.tmp")  # write then rename: no half-written file on failure
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    tmp.replace(path)


def main(argv=None):
    p = argparse.ArgumentParser(description="Download the public math sets and normalise them "
                                "into <out_dir>/<name>/<split>.jsonl (needs the network).")
    p.add_argument("--out_dir", default=str(REPO / "data"), help="where to write (default: <repo>/data)")
    p.add_argument("--datasets", default=",".join(URLS), help=f"comma list (default: all of {','.join(URLS)})")
    p.add_argument("--force", action="store_true", help="download again even if the files exist")
    args = p.parse_args(argv)
    names = [n.strip() for n in args.datasets.split(",") if n.strip()]
    unknown = [n for n in names if n not in URLS]
    if unknown:
        p.error(f"unknown dataset(s) {','.join(unknown)}; known: {','.join(URLS)}")
    out = Path(args.out_dir)
    for name in names:
        if not args.force and (out / name).is_dir() and any((out / name).glob("*.jsonl")):
            print(f"{name}: already in {out / name}, skipped (--force to redo)")
            continue
        for split, rows in (build_vision(name, out / name) if name in VISION_SETS else build(name)).items():
            write_jsonl(out / name / f"{split}.jsonl", rows)
            print(f"{name}/{split}.jsonl: {len(rows)} rows")


if __name__ == "__main__":
    main()

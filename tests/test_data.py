"""Tests for data/: the JSON Lines loader, name resolution, the synthetic generator, prepare.py's normalisers."""
import json
import re
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # `from data import ...` also when pytest is not run from the repo root

from data import DataError, available, dataset_path, load_problems, resolve_data_dir  # noqa: E402
from data.prepare import aops_id, gsm8k_answer, integer_string, last_boxed, repair_escapes  # noqa: E402
from data.synthetic import generate  # noqa: E402

SHARED = REPO.parent / "shared" / "data"


def write(path, lines):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def row(**kw):
    return json.dumps({"problem": "What is 1 + 1?", "answer": "2", **kw})


# ---- loader: good rows ----

def test_good_rows_keep_fields_and_make_up_ids(tmp_path):
    f = write(tmp_path / "p.jsonl", [row(id="a", level=3, extra=[1, 2]), "", row(), "   ", row(id=7)])
    rows = load_problems(f)
    assert [r["id"] for r in rows] == ["a", "p.jsonl:3", "7"]  # made up from file + line; int -> str
    assert rows[0]["level"] == 3 and rows[0]["extra"] == [1, 2]
    assert all(r["problem"] == "What is 1 + 1?" and r["answer"] == "2" for r in rows)


def test_limit_and_seeded_shuffle(tmp_path):
    f = write(tmp_path / "p.jsonl", [row(id=str(i)) for i in range(20)])
    assert [r["id"] for r in load_problems(str(f), limit=3)] == ["0", "1", "2"]
    a, b = load_problems(f, seed=1), load_problems(f, seed=1)
    assert [r["id"] for r in a] == [r["id"] for r in b] != [str(i) for i in range(20)]
    assert sorted(r["id"] for r in a) == sorted(str(i) for i in range(20))
    assert len(load_problems(f, seed=1, limit=5)) == 5


# ---- loader: each kind of bad row ----

@pytest.mark.parametrize("bad, message", [
    ('{"problem": "x", "answer": "1"', "p.jsonl:2: invalid JSON (Expecting ',' delimiter"),
    ("not json", "p.jsonl:2: invalid JSON (Expecting value"),
    ('["problem", "answer"]', "p.jsonl:2: expected a JSON object, got list"),
    ('{"problem": "x"}', "p.jsonl:2: missing field 'answer'"),
    ('{"answer": "1"}', "p.jsonl:2: missing field 'problem'"),
    ('{"problem": "", "answer": "1"}', "p.jsonl:2: field 'problem' must be a non-empty string"),
    ('{"problem": "x", "answer": "  "}', "p.jsonl:2: field 'answer' must be a non-empty string"),
    ('{"problem": "x", "answer": 5}', "p.jsonl:2: field 'answer' must be a non-empty string"),
    ('{"problem": null, "answer": "5"}', "p.jsonl:2: field 'problem' must be a non-empty string"),
    ('{"problem": "x", "answer": "5", "id": [1]}', "p.jsonl:2: field 'id' must be a string or an integer"),
    ('{"problem": "x", "answer": "5", "id": "a"}', "p.jsonl:2: duplicate id 'a' (first on line 1)"),
])
def test_bad_rows_name_file_line_and_field(tmp_path, bad, message):
    f = write(tmp_path / "p.jsonl", [row(id="a"), bad, row(id="c")])
    with pytest.raises(DataError) as e:
        load_problems(f)
    text = str(e.value)
    assert message in text and str(f) in text and "\n" not in text


def test_bad_encoding_names_the_line(tmp_path):
    f = tmp_path / "p.jsonl"
    f.write_bytes(row().encode() + b"\n" + b'{"problem": "\xff", "answer": "1"}\n')
    with pytest.raises(DataError, match=r"p\.jsonl:2: not UTF-8"):
        load_problems(f)


# ---- name resolution ----

@pytest.fixture
def data_dir(tmp_path):
    d = tmp_path / "datasets"
    write(d / "gsm8k" / "train.jsonl", [row(id="tr")])
    write(d / "gsm8k" / "test.jsonl", [row(id="te")])
    write(d / "math500" / "test.jsonl", [row(id="m")])
    write(d / "math" / "train_level3to5.jsonl", [row(id="l35")])
    write(d / "math" / "train.jsonl", [row(id="all")])
    write(d / "odd" / "a.jsonl", [row(id="a")])
    write(d / "odd" / "b.jsonl", [row(id="b")])
    return d


def test_names_and_splits(data_dir):
    first_id = lambda spec: load_problems(spec, data_dir=data_dir)[0]["id"]  # noqa: E731
    assert first_id("gsm8k") == "tr"  # several splits: train
    assert first_id("gsm8k:test") == "te"
    assert first_id("math500") == "m"  # the only split
    assert first_id("math:train_level3to5") == "l35"
    assert first_id("math") == "all"
    assert dataset_path("gsm8k:test", data_dir) == data_dir / "gsm8k" / "test.jsonl"
    assert "gsm8k:test" in available(data_dir) and "math:train_level3to5" in available(data_dir)


def test_name_errors(data_dir):
    with pytest.raises(DataError, match=r"unknown dataset 'aime99' in .*available: .*gsm8k:test.*math500:test"):
        load_problems("aime99", data_dir=data_dir)
    with pytest.raises(DataError, match=r"dataset 'gsm8k' has no split 'dev' .*available: gsm8k:test, gsm8k:train"):
        load_problems("gsm8k:dev", data_dir=data_dir)
    with pytest.raises(DataError, match=r"several splits, say which: odd:a, odd:b"):
        load_problems("odd", data_dir=data_dir)
    with pytest.raises(DataError, match=r"data directory .* does not exist: run `python data/prepare.py` or set HICRA_DATA_DIR"):
        load_problems("gsm8k", data_dir=data_dir / "nope")
    with pytest.raises(DataError, match=r"missing\.jsonl: no such file"):
        load_problems(str(data_dir / "missing.jsonl"))


def test_data_dir_from_flag_then_env(data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("HICRA_DATA_DIR", str(data_dir))
    assert resolve_data_dir() == data_dir
    assert load_problems("gsm8k:test")[0]["id"] == "te"
    other = tmp_path / "other"
    write(other / "gsm8k" / "test.jsonl", [row(id="flag")])
    assert resolve_data_dir(other) == other  # the flag beats the environment
    assert load_problems("gsm8k:test", data_dir=other)[0]["id"] == "flag"


def test_default_data_dir_without_env(monkeypatch, tmp_path):
    import data
    monkeypatch.delenv("HICRA_DATA_DIR", raising=False)
    repo = tmp_path / "project"
    monkeypatch.setattr(data, "REPO", repo)
    assert resolve_data_dir() == repo / "data"                       # nothing anywhere: the project's data/
    write(tmp_path / "shared" / "data" / "gsm8k" / "test.jsonl", [row()])
    assert resolve_data_dir() == tmp_path / "shared" / "data"       # ../shared/data beside the project
    write(repo / "data" / "gsm8k" / "test.jsonl", [row()])
    assert resolve_data_dir() == repo / "data"                       # prepare.py's downloads come first


# ---- the real shared files ----

SHARED_COUNTS = {"math500": 500, "aime24": 30, "aime25": 30, "amc23": 40, "gsm8k:train": 7473,
                 "gsm8k:test": 1319, "minerva_math": 272, "olympiadbench": 675, "math:train": 7498,
                 "math:train_level3to5": 5584}


@pytest.mark.skipif(not SHARED.is_dir(), reason=f"no shared data beside the repo at {SHARED}")
@pytest.mark.parametrize("spec, count", SHARED_COUNTS.items())
def test_shared_data_loads(spec, count):
    rows = load_problems(spec, data_dir=SHARED)
    assert len(rows) == count
    assert len({r["id"] for r in rows}) == count


@pytest.mark.skipif(not SHARED.is_dir(), reason=f"no shared data beside the repo at {SHARED}")
def test_normalisers_reproduce_shared_answers():
    # prepare.py cannot be run here (no network), so check its rules against the files it should rebuild.
    for spec, rule in [("gsm8k:test", gsm8k_answer), ("minerva_math", last_boxed), ("math500", last_boxed)]:
        for r in load_problems(spec, data_dir=SHARED):
            assert rule(r["solution"]) == r["answer"], r["id"]
    for spec in ("aime24", "amc23"):
        for r in load_problems(spec, data_dir=SHARED):
            assert aops_id(r["url"]) == r["id"]


# ---- synthetic generator ----

def test_synthetic_is_deterministic():
    for d in range(1, 6):
        assert generate(50, d, seed=3) == generate(50, d, seed=3)
        assert generate(50, d, seed=3) != generate(50, d, seed=4)
    assert load_problems("synthetic:2", n=10, seed=5) == generate(10, 2, seed=5)
    assert load_problems("synthetic", limit=7) == generate(7, 1, seed=0)


def _value(expr):
    """Evaluate '2/3 ÷ 4/5', '(3 + 4) × 5 - 12 ÷ 3' exactly, independently of the generator."""
    expr = re.sub(r"(\d+)/(\d+)", r"(\1/\2)", expr)  # '/' only appears inside fractions: bracket them
    expr = re.sub(r"(\d+)", r"Fraction(\1)", expr)  # exact arithmetic, so ÷ never rounds
    expr = expr.replace("×", "*").replace("÷", "/")
    assert re.fullmatch(r"[\sFraction()\d+\-*/]+", expr), expr
    return eval(expr, {"Fraction": Fraction})


def _check(problem, answer):
    """True when `answer` is right for `problem`, worked out from the text alone."""
    assert re.fullmatch(r"-?\d+(/\d+)?", answer), answer
    got = Fraction(answer)
    if answer.count("/"):
        assert got.denominator > 1 and str(got) == answer  # reduced, e.g. 3/4 not 6/8
    m = re.fullmatch(r"What is (.+?)\?( Give the answer as a fraction in lowest terms\.)?", problem)
    if m:
        return _value(m.group(1)) == got
    m = re.fullmatch(r"Solve for x: (.+) = (.+)\.", problem)
    assert m, problem
    # Substitute the answer into both sides: '3x + 4' with x = -2 -> '3 × (-2) + 4'.
    sides = [_value(re.sub(r"(\d*)x", lambda k: f"{k.group(1) or 1} × ({answer})", s)) for s in m.groups()]
    return sides[0] == sides[1]


@pytest.mark.parametrize("difficulty", [1, 2, 3, 4, 5, 7])
def test_synthetic_answers_are_right(difficulty):
    rows = generate(300, difficulty, seed=11)
    assert len({r["id"] for r in rows}) == 300
    for r in rows:
        assert r["source"] == "synthetic" and r["difficulty"] == difficulty
        assert _check(r["problem"], r["answer"]), r
    if difficulty == 1:  # the easy end: two single-digit addends
        assert all(re.fullmatch(r"What is [1-9] \+ [1-9]\?", r["problem"]) for r in rows)
    if difficulty == 7:  # three one-digit numbers, and the running total never goes below zero
        for r in rows:
            a, first, b, second, c = re.fullmatch(r"What is ([1-9]) ([+-]) ([1-9]) ([+-]) ([1-9])\?", r["problem"]).groups()
            assert _value(f"{a} {first} {b}") >= 0 and int(r["answer"]) >= 0
        assert {r["problem"][10] + r["problem"][14] for r in rows} == {"++", "+-", "-+", "--"}


def test_check_catches_wrong_answers():
    assert not _check("What is 3 + 5?", "9")
    assert not _check("Solve for x: 3x + 4 = 19.", "4")
    assert _check("Solve for x: 5x - 7 = 2x + 8.", "5")
    assert _check("What is 2/3 ÷ 4/5? Give the answer as a fraction in lowest terms.", "5/6")


def test_synthetic_bad_difficulty():
    with pytest.raises(ValueError):
        generate(3, difficulty=9)
    with pytest.raises(DataError, match="synthetic:9"):
        load_problems("synthetic:9")


def test_synthetic_cli():
    out = subprocess.run([sys.executable, "data/synthetic.py", "--n", "5", "--difficulty", "2", "--seed", "0"],
                         cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert [json.loads(line) for line in out.splitlines()] == generate(5, 2, seed=0)


# ---- prepare.py: pure normalisers and the offline failure ----

def test_gsm8k_answer():
    assert gsm8k_answer("She makes 9 * 2 = $<<9*2=18>>18.\n#### 18") == "18"
    assert gsm8k_answer("a #### b\n#### 1,234,567 ") == "1234567"
    assert gsm8k_answer("#### -5") == "-5"
    assert gsm8k_answer("no marker") is None


def test_last_boxed():
    assert last_boxed(r"so $\boxed{5}$") == "5"
    assert last_boxed(r"\boxed{1} then \boxed{\frac{1}{2}}") == r"\frac{1}{2}"
    assert last_boxed(r"\fbox{ x^{2} }.") == "x^{2}"
    assert last_boxed(r"$\boxed 7$") == "7"
    assert last_boxed(r"\boxed{}") == ""
    assert last_boxed(r"\boxed{\frac{1}{2}") is None  # unbalanced
    assert last_boxed("no box") is None


def test_small_normalisers():
    assert integer_string(27.0) == "27" and integer_string("025") == "25" and integer_string(-1.0) == "-1"
    assert aops_id("https://artofproblemsolving.com/wiki/index.php/2024_AIME_II_Problems/Problem_15") == "2024-II-15"
    assert aops_id("https://artofproblemsolving.com/wiki/index.php/2023_AMC_12B_Problems/Problem_3") == "2023-AMC12B-3"
    assert repair_escapes("$\frac{1}{2}$ in \triangle ABC\tat") == r"$\frac{1}{2}$ in \triangle ABC" + "\tat"


def test_prepare_help_and_unknown_dataset(tmp_path):
    cmd = [sys.executable, "data/prepare.py"]
    assert "--out_dir" in subprocess.run(cmd + ["--help"], cwd=REPO, capture_output=True, text=True).stdout
    bad = subprocess.run(cmd + ["--datasets", "nope", "--out_dir", str(tmp_path)], cwd=REPO,
                         capture_output=True, text=True)
    assert bad.returncode != 0 and "unknown dataset(s) nope" in bad.stderr


# ---- prepare.py: the paper's training sets, from files in their upstream formats made here ----

DAPO_WRAP = ("Solve the following math problem step by step. The last line of your response should be of the form "
             "Answer: $Answer (without quotes) where $Answer is the answer to the problem.\n\n{}\n\nRemember to put "
             "your answer on its own line after \"Answer:\".")


def dapo_row(problem, answer, index):
    """One row of DAPO-Math-17k's verl Parquet file, as upstream writes it."""
    return {"data_source": "math_dapo", "prompt": [{"content": DAPO_WRAP.format(problem), "role": "user"}],
            "ability": "MATH", "reward_model": {"ground_truth": answer, "style": "rule-lighteval/MATH_v2"},
            "extra_info": {"index": index}}


def serve(monkeypatch, files: dict):
    """prepare.fetch answers from `files` (URL ending -> bytes) instead of the network."""
    import data.prepare as prepare
    monkeypatch.setattr(prepare, "fetch", lambda url: next(v for k, v in files.items() if url.endswith(k)))
    return prepare


def parquet_bytes(rows):
    import io

    import pyarrow
    import pyarrow.parquet
    sink = io.BytesIO()
    pyarrow.parquet.write_table(pyarrow.Table.from_pylist(rows), sink)
    return sink.getvalue()


def test_dapo_and_deepscaler_are_normalised_deduplicated_and_load(tmp_path, monkeypatch, capsys):
    """DAPO's Parquet repeats each problem (100 times upstream) inside its answer-format wrapper; DeepScaleR is a
    JSON list with some repeats and an empty answer. Out come the loader's rows: the bare problem (the trainer
    adds its own instruction), the answer as a string, one row per problem, and the training loop loads them."""
    problems = ["What is $1+1$?", "Find the least prime $p > 10$.", "How many  divisors does 12 have?"]
    dapo = [dapo_row(p, a, f"uid-{i}") for _ in range(3) for i, (p, a) in enumerate(zip(problems, ["2", "11", "6"]))]
    dapo.append(dapo_row("how many divisors does 12 have?", "6", "uid-dup"))   # the same problem, other case
    deepscaler = [{"problem": "Compute $\\frac{1}{2}+\\frac{1}{3}$.", "answer": "\\frac{5}{6}", "solution": "..."},
                  {"problem": "Compute $\\frac{1}{2}+\\frac{1}{3}$.", "answer": "\\frac{5}{6}", "solution": "again"},
                  {"problem": "An unanswered one.", "answer": "", "solution": ""},
                  {"problem": "Let $x=3$. Find $x^2$.", "answer": 9, "solution": "9"},
                  {"problem": "What is $3-3$?", "answer": 0, "solution": "0"}]   # an answer 0 is an answer
    prepare = serve(monkeypatch, {"dapo-math-17k.parquet": parquet_bytes(dapo),
                                  "deepscaler.json": json.dumps(deepscaler).encode()})
    prepare.main(["--datasets", "dapo_math_17k,deepscaler", "--out_dir", str(tmp_path)])
    rows = load_problems("dapo_math_17k:train", data_dir=tmp_path)
    assert [(r["id"], r["problem"], r["answer"]) for r in rows] == [
        ("dapo-uid-0", problems[0], "2"), ("dapo-uid-1", problems[1], "11"), ("dapo-uid-2", problems[2], "6")]
    assert {r["source"] for r in rows} == {"dapo_math_17k"}
    rows = load_problems("deepscaler", data_dir=tmp_path)
    assert [(r["id"], r["answer"]) for r in rows] == [("deepscaler-0", "\\frac{5}{6}"), ("deepscaler-3", "9"),
                                                      ("deepscaler-4", "0")]
    assert rows[0]["problem"] == "Compute $\\frac{1}{2}+\\frac{1}{3}$."    # LaTeX kept as written
    said = capsys.readouterr().out
    assert "dapo_math_17k: 3 problems (7 repeated rows dropped)" in said
    assert "deepscaler: 3 problems (1 repeated rows dropped)" in said
    assert "deepscaler: 1 rows without a problem or an answer left out" in said
    import train_grpo
    cfg = train_grpo.parse_config(["--dataset", "dapo_math_17k:train", "--data_dir", str(tmp_path), "--eval_size", "1",
                                   "--batch_size", "2"])
    train, held_out = train_grpo.load_data(cfg)
    assert len(train) == 2 and len(held_out) == 1


def test_a_dapo_row_in_another_format_is_refused_naming_it(tmp_path, monkeypatch):
    row = dapo_row("What is 2+2?", "4", "uid-7")
    row["prompt"][0]["content"] = "What is 2+2? Put the answer in a box."   # no DAPO wrapper: upstream changed
    prepare = serve(monkeypatch, {"dapo-math-17k.parquet": parquet_bytes([dapo_row("What is 1+1?", "2", "u0"), row])})
    with pytest.raises(SystemExit, match=r"dapo_math_17k row 1 \(index uid-7\): not DAPO's answer-format wrapper"):
        prepare.main(["--datasets", "dapo_math_17k", "--out_dir", str(tmp_path)])
    assert not (tmp_path / "dapo_math_17k").exists()

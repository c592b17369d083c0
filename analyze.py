"""Error analysis of a training run: are its failures planning errors or execution errors?

    python analyze.py errors runs/hicra --judge_url https://api.openai.com/v1        # the paper's judge, gpt-4o
    python analyze.py errors runs/hicra --judge_url http://localhost:8000/v1 --judge_model Qwen/Qwen2.5-7B-Instruct
    python analyze.py errors runs/hicra --judge local:smollm2-135m      # offline: proves the plumbing only

The paper's mechanism rests on this analysis: a judge model reads failed responses and labels each failure
a planning error (a wrong plan, a missed case, a wrong approach) or an execution error (a slip in arithmetic
or algebra under a sound plan); over RL training planning errors fall far more than execution errors.

What it does:
  1. reads the failed rollouts the run kept for it, RUN/failures.jsonl (--log_failures a step, with their
     problems' reference solutions); for runs older than that file, the failed ones among RUN/rollouts.jsonl
     (a wrong answer: `correct` false, or reward 0 in runs older than that field);
  2. splits the run's steps into `--buckets` equal spans and draws `--per_bucket` failures from each, with
     `--seed` (the same call draws the same rollouts);
  3. asks the judge (--prompt paper, the default) the paper's Listing 2: the problem, the reference solution
     and the student's solution, and a choice answered as \boxed{A-D}: (A) dummy reasons, (B) low-level
     execution, (C) flawed high-level plan, (D) actually acceptable; or (--prompt json) for one JSON object
     {"label": "planning" | "execution" | "other", "reason": "..."};
  4. appends each verdict, with the judge's name and the prompt, to RUN/errors.jsonl as it arrives, so a second
     call with the same judge and prompt (after Ctrl-C, a crash, or with a larger --per_bucket) judges only what
     is missing; a reply that holds no verdict is kept with label "unparsed" and the reply itself (never a
     guess); a request that still fails after its retries is left out of the file, reported, and asked again
     by the next call, which is also what the exit status 1 says;
  5. writes RUN/errors_summary.json (per step bucket: counts and fractions of each label; with the paper's
     prompt, Figure 5's counts of planning errors (C) against other errors (A, B), acceptable (D) apart) and
     RUN/errors.png (those counts per span; the JSON prompt: the fractions).

The judge is any OpenAI-compatible chat-completions endpoint (a local vLLM or llama.cpp server, a hosted
API; key from the environment variable --key_env), spoken to with the standard library's urllib: a
timeout per request, retries with exponential backoff on 429, 5xx and network errors (other 4xx, such as a
wrong key, stop the analysis at once), and at most --max_in_flight requests at once. `--judge local:MODEL` runs the judge through this project's own sampler.
"""

import argparse
import hashlib
import http.client
import itertools
import json
import math
import os
import queue
import re
import socket
import sys
import threading
import urllib.parse
from pathlib import Path

import runfolder

LABELS = ("planning", "execution", "other")
UNPARSED = "unparsed"   # the judge replied, but not with one of the prompt's labels

# --prompt paper: the paper's Listing 2, a multiple choice answered as \boxed{A-D}, its four options as the paper
# gives them (this wording is this project's). C is a planning error; A and B are the other errors; D is not an
# error at all (the grader was too strict), reported apart.
CHOICES = {"A": "dummy", "B": "execution", "C": "planning", "D": "acceptable"}
PAPER_PROMPT = """You are given a math problem, its reference solution, and a student's solution whose final answer was graded wrong. Choose the one option that best describes the student's error.

(A) Dummy reasons: the solution is unrelated to the problem, makes no real attempt, or shows no basic understanding of it.
(B) Low-level execution and procedural fidelity: the approach is sound, but a calculation, an algebraic manipulation, a substitution or the solving of an equation goes wrong.
(C) Flaws in high-level plans: a conceptual error, a wrong approach, or a wrong strategic move.
(D) The answer is actually acceptable: the student's final answer is correct, or equivalent to the reference.

Problem:
{problem}

Reference solution:
{solution}

Student's solution:
{response}

Reply with at most two sentences of reasons, then your choice as one letter in \\boxed{{}}, for example \\boxed{{C}}."""

JUDGE_PROMPT = """You are grading why a solution to a math problem is wrong. Its final answer is known to be wrong.

Labels:
- planning: a strategic error. The plan is wrong: a wrong approach, a missed case, a wrong way to set up the problem, or giving up on a sound idea.
- execution: a procedural error. The plan is sound, but a step is carried out wrongly: an arithmetic or algebra slip, a miscopied number, a wrong final step of a right method.
- other: neither, for example no real attempt, text unrelated to the problem, or an answer cut off before any plan.

Problem:
{problem}

Correct answer: {answer}

Solution to grade:
{response}

Reply with one JSON object and nothing else: {{"label": "planning" | "execution" | "other", "reason": "<one sentence>"}}"""


# ----------------------------------------------------------------------------- which rollouts to judge

def digest(*parts) -> str:
    return hashlib.sha1(json.dumps(parts, ensure_ascii=False).encode()).hexdigest()[:16]


def failed_rollouts(run_dir: Path) -> list[dict]:
    """The run's failed rollouts, each with a stable id: its step, prompt and response, and which occurrence of
    those it is (two rollouts may give the same response to the same prompt). From the step failures.jsonl
    starts at (the sample the run keeps for this, --log_failures, with the reference solutions) they come from
    it; before that step (a run made before that file, perhaps resumed since) from the failed ones among
    rollouts.jsonl's."""
    kept = read_failed(run_dir / "failures.jsonl") if (run_dir / "failures.jsonl").is_file() else []
    first = min((r["step"] for r in kept), default=math.inf)
    older = [r for r in read_failed(run_dir / "rollouts.jsonl") if r["step"] < first] \
        if (run_dir / "rollouts.jsonl").is_file() else []
    if not kept and not (run_dir / "rollouts.jsonl").is_file():
        sys.exit(f"error: {run_dir}: no failures.jsonl or rollouts.jsonl (train with --log_failures > 0)")
    if kept and older:
        print(f"[errors] steps before {first}: failures from rollouts.jsonl (failures.jsonl starts at step {first})",
              file=sys.stderr)
    return older + kept


def read_failed(path: Path) -> list[dict]:
    """The failed rollouts of one JSON Lines file of rollouts (failures.jsonl or rollouts.jsonl), with their ids."""
    rows, seen = [], {}
    with open(path) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)   # a failure: the answer was wrong (`correct`; older runs: reward 0)
                failed = not row["correct"] if "correct" in row else float(row["reward"]) == 0.0
                row = {"step": int(row["step"]), "prompt": row["prompt"], "answer": row["answer"],
                       "response": row["response"], "solution": str(row.get("solution") or "")}
            except (ValueError, KeyError, TypeError) as e:
                if not line.endswith("\n"):   # the last line of a run that is writing it, or crashed doing so
                    break
                sys.exit(f"error: {path}:{number}: not a rollout row ({type(e).__name__}: {e})")
            key = (row["step"], row["prompt"], row["response"])
            seen[key] = seen.get(key, -1) + 1
            if failed:
                rows.append({"id": digest(*key, seen[key]), **row})
    return rows


def step_buckets(last_step: int, buckets: int) -> list[tuple[int, int]]:
    """Steps 0..last_step in `buckets` spans (first, last) whose lengths differ by at most one step; fewer
    spans when there are fewer steps."""
    steps = last_step + 1
    edges = sorted({b * steps // buckets for b in range(buckets)} | {steps})
    return [(lo, hi - 1) for lo, hi in itertools.pairwise(edges)]


def bucket_of(step: int, spans: list[tuple[int, int]]) -> int:
    return next(i for i, (lo, hi) in enumerate(spans) if lo <= step <= hi)


def choose(rows: list[dict], spans, per_bucket: int, seed: int) -> list[dict]:
    """Up to per_bucket rows of each span, drawn with the seed: each row's place in the draw is a hash of
    (seed, its id), so a larger per_bucket keeps the earlier draw, and a run that has gone on since moves
    only the rows near the spans' new edges."""
    chosen = []
    for b in range(len(spans)):
        in_span = sorted((r for r in rows if bucket_of(r["step"], spans) == b), key=lambda r: digest(seed, r["id"]))
        chosen += [{**r, "bucket": b} for r in in_span[:per_bucket]]
    return chosen


# ----------------------------------------------------------------------------- the judge's reply

def parse_choice(reply: str) -> dict | None:
    """--prompt paper: the letter in the reply's last \\boxed{} ("C", "(C)", "[C]", "$C$", "C) Flaws ...",
    "\\text{C}", "\\mathbf{C}"), as a verdict {"choice", "label"}; None when the last box holds none of A-D, or
    two of them ("A or C", "B/C"): never a guess."""
    boxes = re.findall(r"\\boxed\s*\{((?:[^{}]|\{[^{}]*\})*)\}", reply)
    if not boxes:
        return None
    inner = re.sub(r"\\(?:text|textbf|mathbf|mathrm)\s*\{([^{}]*)\}", r"\1", boxes[-1])
    inner = inner.strip().strip("$").strip().lstrip("([").strip()
    letter = re.match(r"([A-Da-d])(?![A-Za-z])[)\].:]?(.*)", inner, re.DOTALL)
    if letter is None or re.match(r"\s*(?:or|and|/|,|&)\s*[(\[]?[A-Da-d](?![A-Za-z])", letter.group(2)):
        return None
    return {"choice": letter.group(1).upper(), "label": CHOICES[letter.group(1).upper()]}


def parse_verdict(reply: str) -> dict | None:
    """The first JSON object in the reply with a known label: {"label", "reason"}; None if there is none.
    Code fences and text around the object are fine; a missing reason becomes ""."""
    decoder = json.JSONDecoder()
    start = reply.find("{")
    while start != -1:
        try:
            obj, _ = decoder.raw_decode(reply, start)
        except json.JSONDecodeError:
            obj = None
        if isinstance(obj, dict) and str(obj.get("label", "")).strip().lower() in LABELS:
            return {"label": obj["label"].strip().lower(), "reason": str(obj.get("reason", "")).strip()}
        start = reply.find("{", start + 1)
    return None


def verdict_row(row: dict, reply: str, judge_name: str, prompt: str = "paper") -> dict:
    """What errors.jsonl keeps for one judged rollout (`prompt`: which question the judge was asked)."""
    verdict = parse_choice(reply) if prompt == "paper" else parse_verdict(reply)
    out = {"judge": judge_name, "prompt_kind": prompt, **{k: row[k] for k in ("id", "step", "prompt", "answer",
                                                                             "response")}}
    if verdict is None:
        return {**out, "label": UNPARSED, "reason": "", "reply": reply[:MAX_KEPT_REPLY]}
    return {**out, **verdict}


# ----------------------------------------------------------------------------- judges

class JudgeError(RuntimeError):
    """A request that failed for good: its retries are spent (`final` False: the next call asks again), or
    asking again cannot help (`final` True: a wrong key, URL or model, a prompt too long for the judge)."""

    def __init__(self, message: str, final: bool = False):
        super().__init__(message)
        self.final = final


MAX_REPLY_BYTES = 1 << 20   # a chat completion of a few hundred tokens is a few KB; a reply past this is refused
MAX_KEPT_REPLY = 4000       # characters of an unparsed reply kept in errors.jsonl


def mask(text: str, key: str = "") -> str:
    """Text for a message, with the key and key-like strings (a bearer token, sk-...) masked: a gateway that
    echoes the request must not print the key."""
    if len(key) >= 4:
        text = text.replace(key, "***")
    text = re.sub(r"(?i)(bearer\s+)[^\s\"']+", r"\1***", text)
    return re.sub(r"\b(sk|pk|rk|hf|api|key)[-_][A-Za-z0-9_-]{8,}", r"\1-***", text)


def post(endpoint: str, body: bytes, headers: dict, timeout: float) -> tuple[int, dict, bytes]:
    """One HTTP POST: (status, headers, body), redirects not followed. `timeout` bounds the whole request,
    connect to last byte: a watchdog shuts the socket when it passes, however slowly the server trickles."""
    parts = urllib.parse.urlsplit(endpoint)
    connection = (http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection)(
        parts.hostname, parts.port, timeout=timeout)
    expired = threading.Event()

    def abort():
        expired.set()
        if connection.sock is not None:
            try:
                connection.sock.shutdown(socket.SHUT_RDWR)   # wakes a blocked read at once
            except OSError:
                pass

    watchdog = threading.Timer(timeout, abort)
    watchdog.daemon = True
    watchdog.start()
    try:
        connection.request("POST", parts.path + (f"?{parts.query}" if parts.query else ""), body=body, headers=headers)
        response = connection.getresponse()
        data = response.read(MAX_REPLY_BYTES + 1)
        if response.length and len(data) <= MAX_REPLY_BYTES:   # the body ended before its Content-Length
            raise http.client.IncompleteRead(data, response.length)
        return response.status, dict(response.getheaders()), data
    except (OSError, http.client.HTTPException):
        if expired.is_set():
            raise TimeoutError(f"no whole reply within {timeout:g} s") from None
        raise
    finally:
        watchdog.cancel()
        connection.close()


def chat_completion(url: str, model: str, prompt: str, key: str = "", timeout: float = 60.0, retries: int = 4,
                    backoff: float = 1.0, max_tokens: int = 512, stop: threading.Event | None = None) -> str:
    """One chat-completions request; the reply's text. `timeout` bounds each attempt as a whole. Retries 429,
    5xx and network errors with exponential backoff (or the server's Retry-After, up to 60 s); raises
    JudgeError when that is spent, at once on other 4xx and on a redirect (never followed: the key goes to
    the URL given and nowhere else), and when `stop` is set (Ctrl-C, or another request's final error)."""
    endpoint = url.rstrip("/") + ("" if url.rstrip("/").endswith("/chat/completions") else "/chat/completions")
    if urllib.parse.urlsplit(endpoint).scheme not in ("http", "https"):
        raise JudgeError(f"--judge_url {url}: not an http(s) URL", final=True)
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": prompt}],
                       "temperature": 0, "max_tokens": max_tokens}).encode()
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    stop = stop or threading.Event()
    for attempt in range(retries + 1):
        if stop.is_set():
            raise JudgeError("not asked: the analysis is stopping")
        wait = backoff * 2 ** attempt
        try:
            status, reply_headers, data = post(endpoint, body, headers, timeout)
        except (OSError, http.client.HTTPException) as e:   # refused, reset, timed out, cut short
            error = mask(f"{type(e).__name__}: {e}", key)
        else:
            if len(data) > MAX_REPLY_BYTES:
                raise JudgeError(f"a reply of more than {MAX_REPLY_BYTES} bytes from {endpoint}: refused")
            if 300 <= status < 400:
                raise JudgeError(f"HTTP {status} from {endpoint}, to {mask(str(reply_headers.get('Location')), key)}: "
                                 f"redirects are not followed (the key goes nowhere else); give that URL", final=True)
            if status == 429 or status >= 500:
                error = f"HTTP {status}"
                retry_after = reply_headers.get("Retry-After", "")
                if retry_after.replace(".", "", 1).isdigit():
                    wait = min(float(retry_after), 60.0)
            elif status >= 400:   # a bad request, a wrong key: asking again cannot help
                raise JudgeError(f"HTTP {status} from {endpoint}: {mask(repr(data[:200]), key)}", final=True)
            else:
                try:
                    content = json.loads(data)["choices"][0]["message"]["content"]
                    if not isinstance(content, str):
                        raise TypeError(f"message content is {type(content).__name__}, not text")
                    return content
                except (ValueError, KeyError, IndexError, TypeError) as e:   # a body that is not a chat completion
                    raise JudgeError(f"not a chat-completions reply from {endpoint}: "
                                     f"{mask(f'{type(e).__name__}: {e}', key)[:200]}") from None
        if attempt < retries:
            stop.wait(wait)
    raise JudgeError(f"{error} from {endpoint}, {retries + 1} tries")


def http_judge(url: str, model: str, key: str, timeout: float, retries: int, max_in_flight: int, backoff: float = 1.0):
    """judge(prompts) -> yields (index, reply text or JudgeError) as the replies come, at most
    max_in_flight requests at once. A final error (a wrong key, say) stops the requests not yet made. The
    requests run in daemon threads: Ctrl-C ends the analysis at once, without waiting for those in flight."""
    def judge(prompts):
        stop, tasks, results = threading.Event(), queue.Queue(), queue.Queue()
        for item in enumerate(prompts):
            tasks.put(item)

        def work():
            while True:
                try:
                    i, prompt = tasks.get_nowait()
                except queue.Empty:
                    return
                try:
                    results.put((i, chat_completion(url, model, prompt, key, timeout, retries, backoff, stop=stop)))
                except Exception as e:   # noqa: BLE001 - whatever a request raised, it is that rollout's failure
                    results.put((i, e if isinstance(e, JudgeError) else JudgeError(mask(f"{type(e).__name__}: {e}", key))))

        for _ in range(min(max_in_flight, len(prompts))):
            threading.Thread(target=work, daemon=True).start()
        try:
            for _ in range(len(prompts)):   # every prompt gets one result: a reply, an error, or "not asked"
                i, reply = results.get()
                if isinstance(reply, JudgeError) and reply.final:
                    stop.set()
                yield i, reply
        finally:   # Ctrl-C, or the caller stopped: no new requests, no more retries
            stop.set()
    return judge


def local_judge(model_name: str, max_new_tokens: int = 128, batch: int = 8):
    """The judge as this project's own greedy sampler on a local model (rollout.load_model's names)."""
    import rollout
    model, tokenizer = rollout.load_model(model_name)

    context = getattr(model.config, "max_position_embeddings", None) or math.inf

    def judge(prompts):
        ids = rollout.encode_prompts(tokenizer, [rollout.format_prompt(tokenizer, p, "chat", "") for p in prompts])
        fits = [i for i, p in enumerate(ids) if len(p) + max_new_tokens <= context]
        for i in sorted(set(range(len(prompts))) - set(fits)):
            yield i, JudgeError(f"the judge prompt ({len(ids[i])} tokens) and its reply ({max_new_tokens}) exceed "
                                f"{model_name}'s context of {context} tokens", final=True)
        for first in range(0, len(fits), batch):
            chunk = fits[first:first + batch]
            out = rollout.sample(model, [ids[i] for i in chunk], max_new_tokens, temperature=0.0,
                                 eos_token_id=tokenizer.stop_token_ids, pad_token_id=tokenizer.pad_token_id)
            yield from zip(chunk, tokenizer.batch_decode(out.completion_ids, skip_special_tokens=True))
    return judge


# ----------------------------------------------------------------------------- the analysis

def read_verdicts(path: Path, judge_name: str, prompt: str = "paper") -> dict[str, dict]:
    """This judge's rows of errors.jsonl for this prompt as {id: row} (another judge's or prompt's verdicts stay
    in the file, unused; rows from before the paper prompt existed were asked the json one).
    A last line cut short by a crash is removed first, so its rollout is judged again; any other line that
    is not a verdict (torn in the middle, or foreign) is skipped, with a count."""
    if not path.is_file():
        return {}
    text = path.read_text(encoding="utf-8", errors="replace")
    if text and not text.endswith("\n"):
        text = text[:text.rfind("\n") + 1]
        runfolder.write_text(path, text)
    rows, skipped = [], 0
    for line in text.splitlines():
        try:
            row = json.loads(line)
            if not (isinstance(row, dict) and isinstance(row.get("id"), str) and "label" in row):
                raise ValueError("not a verdict")
            rows.append(row)
        except ValueError:
            skipped += bool(line.strip())
    if skipped:
        print(f"[errors] {path}: skipped {skipped} lines that are not verdicts", file=sys.stderr)
    return {row["id"]: row for row in rows if row.get("judge") == judge_name and row.get("prompt_kind", "json") == prompt}


def summarise(verdicts: list[dict], spans, available: list[int], prompt: str = "paper") -> dict:
    """Per step bucket: how many failures there were, how many were judged, counts of each label and the
    fractions among the judged ones that got an error label (unparsed replies counted apart). With the paper's prompt
    also its Figure 5's counts: planning errors (C) and other errors (A + B); acceptable answers (D) are not
    errors and count in neither."""
    labels = tuple(CHOICES.values()) if prompt == "paper" else LABELS
    errors_only = [label for label in labels if label != "acceptable"]   # D is not an error: no share of the errors
    buckets = []
    for b, (lo, hi) in enumerate(spans):
        rows = [v for v in verdicts if bucket_of(v["step"], spans) == b]
        counts = {label: sum(v["label"] == label for v in rows) for label in (*labels, UNPARSED)}
        labelled = sum(counts[label] for label in errors_only)
        buckets.append({"steps": [lo, hi], "failed": available[b], "judged": len(rows), "counts": counts,
                        "fractions": {label: counts[label] / labelled if labelled else None for label in errors_only}})
        if prompt == "paper":
            buckets[-1] |= {"planning_errors": counts["planning"], "other_errors": counts["dummy"] + counts["execution"],
                            "acceptable": counts["acceptable"]}
    return {"buckets": buckets}


def plot_summary(summary: dict, path: Path, title: str):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        print(f"no figure ({e})", file=sys.stderr)
        return
    buckets = summary["buckets"]
    middles = [(b["steps"][0] + b["steps"][1]) / 2 for b in buckets]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    if "planning_errors" in buckets[0]:   # the paper's Figure 5: counts of planning vs other errors per span
        spans = [f"{b['steps'][0]}-{b['steps'][1]}" for b in buckets]
        x = range(len(buckets))
        for offset, key, name in ((-0.27, "planning_errors", "planning errors (C)"),
                                  (0.0, "other_errors", "other errors (A, B)"), (0.27, "acceptable", "acceptable (D)")):
            ax.bar([i + offset for i in x], [b[key] for b in buckets], width=0.27, label=name,
                   hatch="//" if key == "acceptable" else None, alpha=0.5 if key == "acceptable" else 1.0)
        ax.set_xticks(list(x), spans)
        ax.set(xlabel="training steps", ylabel="judged failures", title=title)
    else:
        for label in LABELS:
            values = [b["fractions"][label] for b in buckets]
            ax.plot(middles, [math.nan if v is None else v for v in values], marker="o", label=label)
        ax.set(xlabel="training step (middle of the bucket)", ylabel="share of judged failures", ylim=(0, 1),
               title=title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def question(row: dict, prompt: str) -> str:
    """What the judge is asked about one failed rollout."""
    if prompt == "json":
        return JUDGE_PROMPT.format(problem=row["prompt"], answer=row["answer"], response=row["response"])
    solution = row["solution"] or f"(none in the data; the correct final answer is {row['answer']})"
    return PAPER_PROMPT.format(problem=row["prompt"], solution=solution, response=row["response"])


def errors(run_dir: Path, judge, judge_name: str, buckets: int = 4, per_bucket: int = 25, seed: int = 0,
           prompt: str = "paper") -> dict:
    """The whole analysis of one run (see the module docstring); returns the summary."""
    rows = failed_rollouts(run_dir)
    if not rows:
        sys.exit(f"error: {run_dir}: no failed rollouts to judge")
    spans = step_buckets(max(r["step"] for r in rows), buckets)
    out_path = run_dir / "errors.jsonl"
    done = read_verdicts(out_path, judge_name, prompt)
    chosen = choose(rows, spans, per_bucket, seed)
    todo = [r for r in chosen if r["id"] not in done]
    print(f"[errors] {len(rows)} failed rollouts, steps {spans[0][0]}-{spans[-1][1]} in {len(spans)} buckets; "
          f"{len(chosen)} chosen, {len(chosen) - len(todo)} already judged, asking {judge_name} about {len(todo)}",
          flush=True)
    with_images = sum("<image>" in r["prompt"] for r in todo)
    if with_images:   # a VLM run: the judge is a text model here
        print(f"[errors] warning: {with_images} of the problems have images, which the judge does not see; it "
              f"judges them from their text and reference solution alone", file=sys.stderr)
    prompts = [question(r, prompt) for r in todo]
    failures = []
    for i, reply in judge(prompts):
        if isinstance(reply, Exception):   # left out of the file, so the next call asks again
            failures.append(reply)
            print(f"[errors] {todo[i]['id']}: {reply}", file=sys.stderr, flush=True)
            continue
        row = verdict_row(todo[i], reply, judge_name, prompt)
        done[row["id"]] = row
        runfolder.append_text(out_path, json.dumps(row, ensure_ascii=False) + "\n")   # kept as it comes
    judged = [done[r["id"]] for r in chosen if r["id"] in done]
    available = [sum(bucket_of(r["step"], spans) == b for r in rows) for b in range(len(spans))]
    summary = {"run": str(run_dir), "judge": judge_name, "prompt": prompt, "seed": seed, "per_bucket": per_bucket,
               "not_judged": len(failures), **summarise(judged, spans, available, prompt)}
    runfolder.write_text(run_dir / "errors_summary.json", json.dumps(summary, indent=1) + "\n")
    plot_summary(summary, run_dir / "errors.png", f"{run_dir.name}: failures judged by {judge_name}")
    for b in summary["buckets"]:
        shares = ", ".join(f"{k} {b['counts'][k]} ({'-' if v is None else f'{v:.2f}'})" for k, v in b["fractions"].items())
        print(f"[errors] steps {b['steps'][0]}-{b['steps'][1]}: {b['judged']} judged of {b['failed']} failed; "
              f"{shares}; unparsed {b['counts'][UNPARSED]}")
    if failures:
        final = [e for e in failures if e.final]
        print(f"[errors] {len(failures)} rollouts not judged: " + (f"{final[0]} (fix that, then run again)" if final
              else "their requests failed after the retries; run the same command again to ask again"), file=sys.stderr)
    return summary


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("errors", help="label a run's failed rollouts planning / execution / other with a judge")
    p.add_argument("run_dir", help="a training run folder with rollouts.jsonl")
    p.add_argument("--judge_url", default="", help="an OpenAI-compatible API base, e.g. http://localhost:8000/v1")
    p.add_argument("--judge_model", default="gpt-4o", help="the model name the endpoint serves (default: the paper's)")
    p.add_argument("--prompt", choices=["paper", "json"], default="paper",
                   help="paper: Listing 2's multiple choice, \\boxed{A-D}, with the reference solution; json: three "
                        "labels (planning, execution, other) as a JSON object")
    p.add_argument("--judge", default="", help="local:MODEL: judge with this project's sampler instead (offline)")
    p.add_argument("--key_env", default="OPENAI_API_KEY", help="environment variable holding the API key (if any)")
    p.add_argument("--buckets", type=int, default=4, help="spans of training steps")
    p.add_argument("--per_bucket", type=int, default=25, help="failed rollouts judged per span")
    p.add_argument("--seed", type=int, default=0, help="which failures are drawn")
    p.add_argument("--max_in_flight", type=int, default=4, help="requests at once")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per request")
    p.add_argument("--retries", type=int, default=4, help="retries per request on 429, 5xx and network errors")
    args = parser.parse_args(argv)
    for flag in ("buckets", "per_bucket", "max_in_flight"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag} {getattr(args, flag)}: needs an integer >= 1")
    if args.timeout <= 0 or args.retries < 0:
        parser.error(f"--timeout {args.timeout} / --retries {args.retries}: need a timeout > 0 and retries >= 0")
    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        parser.error(f"{run_dir}: no such run folder")
    if args.judge:
        if not args.judge.startswith("local:") or args.judge_url:
            parser.error(f"--judge {args.judge!r}: expected local:MODEL, and not together with --judge_url")
        judge, name = local_judge(args.judge.removeprefix("local:")), args.judge
    elif args.judge_url and args.judge_model:
        judge = http_judge(args.judge_url, args.judge_model, os.environ.get(args.key_env, ""), args.timeout,
                           args.retries, args.max_in_flight)
        name = args.judge_model
    else:
        parser.error("give --judge_url (an OpenAI-compatible endpoint serving --judge_model, default gpt-4o), or "
                     "--judge local:MODEL")
    try:   # one analysis of a folder at a time (beside its trainer, which writes other files)
        runfolder.acquire(run_dir, "analyze.py errors", lock=".errors.lock")
    except runfolder.FolderError as e:
        sys.exit(f"error: {e}")
    try:
        summary = errors(run_dir, judge, name, args.buckets, args.per_bucket, args.seed, args.prompt)
    except KeyboardInterrupt:
        sys.exit(f"\ninterrupted: the verdicts so far are kept in {run_dir / 'errors.jsonl'}; run the same command "
                 f"to ask only what is missing")
    except runfolder.FolderError as e:
        sys.exit(f"error: {e}")
    finally:
        runfolder.release(run_dir, lock=".errors.lock")
    sys.exit(1 if summary["not_judged"] else 0)


if __name__ == "__main__":
    main()

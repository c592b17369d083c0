"""analyze.py errors: a real HTTP server on the loopback address, speaking chat completions, answers by a
rule written here; the labels, the summary, the resume and each failure mode are checked against it."""

import json
import shutil
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import analyze


class FakeJudge:
    """What the server does, keyed by a word in the response under judgement:
    SLIP -> execution, bare JSON          PLAN -> planning, in a ```json fence
    CHAT -> other, with text around it    GARBAGE -> no JSON at all
    SLOW -> the first request waits past the client's timeout, then execution
    BUSY -> the first request gets 429, then planning
    DROP -> the first connection is closed without a reply, then other
    SHORT -> the first body is cut short of its Content-Length, then other
    DOWN -> 500 while `down` is set, then execution"""

    def __init__(self):
        self.requests, self.down, self.lock = [], True, threading.Lock()
        self.in_flight = self.most_in_flight = 0
        self.seen = {}

    def reply(self, prompt: str):
        """(status, content or None); the response under judgement is the last block of the prompt."""
        response = prompt.split("Solution to grade:\n")[1]
        tag = next(t for t in ("SLIP", "PLAN", "CHAT", "GARBAGE", "SLOW", "BUSY", "DROP", "SHORT", "DOWN")
                   if t in response)
        with self.lock:
            self.seen[tag] = self.seen.get(tag, 0) + 1
            first = self.seen[tag] == 1
        if tag == "SLOW" and first:
            time.sleep(1.5)
        if tag == "BUSY" and first:
            return 429, None
        if tag in ("DROP", "SHORT") and first:
            return tag, None
        if tag == "DOWN" and self.down:
            return 500, None
        return 200, {
            "SLIP": '{"label": "execution", "reason": "7 + 5 is 12, not 13."}',
            "PLAN": '```json\n{"label": "planning", "reason": "It multiplies instead of adding."}\n```',
            "CHAT": 'Sure. {"label": "Other", "reason": "No attempt."} Hope that helps!',
            "GARBAGE": "I would call this a planning error.",
            "SLOW": '{"label": "execution", "reason": "slow"}',
            "BUSY": '{"label": "planning", "reason": "busy"}',
            "DROP": '{"label": "other", "reason": "dropped"}',
            "SHORT": '{"label": "other", "reason": "short"}',
            "DOWN": '{"label": "execution", "reason": "back up"}',
        }[tag]


@pytest.fixture
def server():
    fake = FakeJudge()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with fake.lock:
                fake.requests.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
                fake.in_flight += 1
                fake.most_in_flight = max(fake.most_in_flight, fake.in_flight)
            try:
                time.sleep(0.05)   # long enough for requests to overlap
                status, content = fake.reply(body["messages"][0]["content"])
                if status == "DROP":
                    self.close_connection = True
                    return
                payload = json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]}
                                     if content is not None else {"error": "try later"}).encode()
                self.send_response(200 if status == "SHORT" else status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload) + (100 if status == "SHORT" else 0)))
                self.end_headers()
                self.wfile.write(payload)
                if status == "SHORT":
                    self.close_connection = True
            except (BrokenPipeError, ConnectionResetError):   # the client gave up on a slow request
                pass
            finally:
                with fake.lock:
                    fake.in_flight -= 1

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    fake.url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    yield fake
    httpd.shutdown()
    httpd.server_close()


# step, tag, reward: two spans of steps (0-3, 4-7) once the run's last step is 7
ROLLOUTS = [(0, "SLIP", 0), (0, "PLAN", 0), (1, "CHAT", 0), (1, "right", 1), (2, "GARBAGE", 0), (3, "SLOW", 0),
            (4, "BUSY", 0), (5, "SLIP again", 0), (6, "DOWN", 0), (7, "right", 1), (7, "PLAN again", 0),
            (5, "DROP", 0), (6, "SHORT", 0)]


def write_run(folder, rows=ROLLOUTS):
    folder.mkdir(exist_ok=True)
    with open(folder / "rollouts.jsonl", "w") as f:
        for step, tag, reward in rows:
            f.write(json.dumps({"step": step, "prompt": f"What is {step} + 5?", "answer": str(step + 5),
                                "response": f"Response {tag} at step {step}.", "reward": float(reward),
                                "advantage": 0.0}) + "\n")
    return folder


def judge_of(server, in_flight=3):
    return analyze.http_judge(server.url, "judge-7b", "secret", timeout=0.5, retries=2, max_in_flight=in_flight,
                              backoff=0.01)


def labels(folder):
    return {row["response"].split()[1]: row["label"] for row in map(json.loads, (folder / "errors.jsonl").read_text().splitlines())}


def test_labels_summary_and_each_failure_mode(server, tmp_path):
    run = write_run(tmp_path / "run")
    summary = analyze.errors(run, judge_of(server), "judge-7b", buckets=2, per_bucket=10, prompt="json")
    assert labels(run) == {"SLIP": "execution", "PLAN": "planning", "CHAT": "other", "GARBAGE": "unparsed",
                           "SLOW": "execution", "BUSY": "planning", "DROP": "other", "SHORT": "other"}
    # DOWN's retries were spent: left out
    rows = {row["response"].split()[1]: row for row in map(json.loads, (run / "errors.jsonl").read_text().splitlines())}
    assert rows["GARBAGE"]["reply"] == "I would call this a planning error."   # kept as it came, no guess
    assert rows["PLAN"]["reason"] == "It multiplies instead of adding."
    assert server.seen["SLOW"] == server.seen["BUSY"] == server.seen["DROP"] == server.seen["SHORT"] == 2
    assert server.seen["DOWN"] == 3   # 1 + 2 retries
    first = server.requests[0]
    assert first["path"] == "/v1/chat/completions" and first["auth"] == "Bearer secret"
    assert first["body"]["model"] == "judge-7b" and first["body"]["temperature"] == 0
    # By hand: steps 0-3 hold SLIP, PLAN, CHAT, GARBAGE, SLOW (execution 2, planning 1, other 1, unparsed 1);
    # steps 4-7 hold BUSY, SLIP again, DROP, DOWN (not judged), SHORT, PLAN again.
    assert summary == json.loads((run / "errors_summary.json").read_text())
    early, late = summary["buckets"]
    assert early["steps"] == [0, 3] and late["steps"] == [4, 7]
    assert early["failed"] == 5 and early["judged"] == 5 and late["failed"] == 6 and late["judged"] == 5
    assert early["counts"] == {"planning": 1, "execution": 2, "other": 1, "unparsed": 1}
    assert early["fractions"] == {"planning": 0.25, "execution": 0.5, "other": 0.25}
    assert late["counts"] == {"planning": 2, "execution": 1, "other": 2, "unparsed": 0}
    assert late["fractions"] == {"planning": 0.4, "execution": 0.2, "other": 0.4}
    assert summary["not_judged"] == 1
    assert (run / "errors.png").is_file()


def test_a_second_call_judges_only_what_is_missing(server, tmp_path):
    run = write_run(tmp_path / "run")
    analyze.errors(run, judge_of(server), "judge-7b", buckets=2, per_bucket=10, prompt="json")
    before = len(server.requests)
    server.down = False
    summary = analyze.errors(run, judge_of(server), "judge-7b", buckets=2, per_bucket=10, prompt="json")
    assert [r["body"]["messages"][0]["content"].count("Response DOWN") for r in server.requests[before:]] == [1]
    assert labels(run)["DOWN"] == "execution" and summary["buckets"][1]["judged"] == 6
    assert len((run / "errors.jsonl").read_text().splitlines()) == 11
    analyze.errors(run, judge_of(server), "judge-7b", buckets=2, per_bucket=10, prompt="json")   # nothing left: no request
    assert len(server.requests) == before + 1


def test_another_judge_judges_afresh(server, tmp_path):
    run = write_run(tmp_path / "run", [(0, "SLIP", 0), (1, "PLAN", 0)])
    analyze.errors(run, judge_of(server), "judge-7b", buckets=1, per_bucket=10, prompt="json")
    summary = analyze.errors(run, judge_of(server), "judge-70b", buckets=1, per_bucket=10, prompt="json")
    assert len(server.requests) == 4 and summary["buckets"][0]["judged"] == 2
    assert [json.loads(line)["judge"] for line in (run / "errors.jsonl").read_text().splitlines()] == \
        ["judge-7b"] * 2 + ["judge-70b"] * 2


def test_a_line_cut_short_by_a_crash_is_judged_again(server, tmp_path):
    run = write_run(tmp_path / "run", [(0, "SLIP", 0), (1, "PLAN", 0)])
    analyze.errors(run, judge_of(server), "judge-7b", buckets=1, per_bucket=10, prompt="json")
    lines = (run / "errors.jsonl").read_text().splitlines()
    (run / "errors.jsonl").write_text(lines[0] + "\n" + lines[1][:20])
    before = len(server.requests)
    analyze.errors(run, judge_of(server), "judge-7b", buckets=1, per_bucket=10, prompt="json")
    assert len(server.requests) == before + 1
    assert sorted(labels(run).values()) == ["execution", "planning"]


def test_bounded_in_flight(server, tmp_path):
    run = write_run(tmp_path / "run", [(s, "SLIP", 0) for s in range(12)])
    analyze.errors(run, judge_of(server, in_flight=2), "judge-7b", buckets=1, per_bucket=12, prompt="json")
    assert len(server.requests) == 12 and server.most_in_flight == 2


def test_a_request_that_cannot_succeed_is_not_retried(tmp_path, capsys):
    class Refuse(BaseHTTPRequestHandler):
        calls = 0

        def do_POST(self):
            Refuse.calls += 1
            # read the request first: a server that answers before reading a longer body (the paper's prompt) may
            # reset the connection, which the client rightly retries as a network error
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(401)
            self.end_headers()

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Refuse)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    try:
        with pytest.raises(analyze.JudgeError, match="HTTP 401"):
            analyze.chat_completion(url, "m", "hi", retries=3, backoff=0.01)
        assert Refuse.calls == 1
        # in a whole analysis, the first such answer stops the requests not yet made, and the exit status is 1
        run = write_run(tmp_path / "run", [(s, "SLIP", 0) for s in range(20)])
        with pytest.raises(SystemExit) as stopped:
            analyze.main(["errors", str(run), "--judge_url", url, "--judge_model", "m", "--max_in_flight", "1",
                          "--buckets", "1", "--per_bucket", "20"])
        assert stopped.value.code == 1 and Refuse.calls <= 3
        assert "20 rollouts not judged: HTTP 401" in capsys.readouterr().err
        assert not (run / "errors.jsonl").exists()   # no verdict, no file
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_parse_verdict():
    assert analyze.parse_verdict('{"label": "planning", "reason": "r"}') == {"label": "planning", "reason": "r"}
    assert analyze.parse_verdict('```json\n{"label": "EXECUTION"}\n```') == {"label": "execution", "reason": ""}
    # the first object with a known label wins; braces in the text before it do not confuse the reader
    assert analyze.parse_verdict('x = {1, 2}; {"label": "maybe"} then {"label": "other", "reason": "{b}"}') == \
        {"label": "other", "reason": "{b}"}
    for reply in ("planning", '{"label": planning}', '{"reason": "r"}', "", '["planning"]'):
        assert analyze.parse_verdict(reply) is None


def test_buckets_and_the_draw():
    assert analyze.step_buckets(7, 2) == [(0, 3), (4, 7)]
    assert analyze.step_buckets(9, 4) == [(0, 1), (2, 4), (5, 6), (7, 9)]
    assert analyze.step_buckets(12, 4) == [(0, 2), (3, 5), (6, 8), (9, 12)]
    assert analyze.step_buckets(1, 4) == [(0, 0), (1, 1)]
    rows = [{"id": f"{i:04d}", "step": i % 10} for i in range(200)]
    spans = analyze.step_buckets(9, 2)
    small, large = analyze.choose(rows, spans, 5, seed=0), analyze.choose(rows, spans, 8, seed=0)
    assert [r["bucket"] for r in small] == [0] * 5 + [1] * 5
    assert all(r["step"] <= 4 for r in small[:5]) and all(r["step"] >= 5 for r in small[5:])
    assert {r["id"] for r in small} <= {r["id"] for r in large}   # a larger draw keeps the smaller one
    assert analyze.choose(rows[::-1], spans, 5, seed=0) == small   # the file's order does not matter
    assert analyze.choose(rows, spans, 5, seed=1) != small


def test_bad_run_folders(tmp_path):
    with pytest.raises(SystemExit, match="no failures.jsonl or rollouts.jsonl"):
        analyze.failed_rollouts(tmp_path)
    (tmp_path / "rollouts.jsonl").write_text('{"step": 0, "prompt": "p", "answer": "1", "response": "r", '
                                             '"reward": 0.0}\n{"step": 1}\n')
    with pytest.raises(SystemExit, match=r"rollouts.jsonl:2: not a rollout row"):
        analyze.failed_rollouts(tmp_path)
    write_run(tmp_path, [(0, "SLIP", 0)])
    with open(tmp_path / "rollouts.jsonl", "a") as f:   # a last line being written (or cut by a crash) is skipped
        f.write('{"step": 2, "prompt": "p", "ans')
    assert [r["step"] for r in analyze.failed_rollouts(tmp_path)] == [0]
    write_run(tmp_path, [(0, "right", 1)])
    with pytest.raises(SystemExit, match="no failed rollouts"):
        analyze.errors(tmp_path, None, "judge", buckets=1, per_bucket=1)
    with pytest.raises(SystemExit) as usage:
        analyze.main(["errors", str(tmp_path)])   # neither an endpoint nor a local judge
    assert usage.value.code == 2


def test_local_judge_runs_offline(tiny_model_dir, tmp_path):
    """The plumbing end to end with the project's own sampler (a random model: its replies are unparsed). The
    tiny model's context is stretched to fit the judge prompt; a response too long for it is left out."""
    model_dir = tmp_path / "judge"
    shutil.copytree(tiny_model_dir, model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    (model_dir / "config.json").write_text(json.dumps({**config, "max_position_embeddings": 1024}))
    run = write_run(tmp_path / "run", [(0, "SLIP", 0), (0, "PLAN", 0), (1, "CHAT", 0), (1, "GARBAGE" * 200, 0)])
    with pytest.raises(SystemExit) as finished:   # status 1: one rollout could not be judged
        analyze.main(["errors", str(run), "--judge", f"local:{model_dir}", "--buckets", "2", "--per_bucket", "2"])
    assert finished.value.code == 1
    rows = [json.loads(line) for line in (run / "errors.jsonl").read_text().splitlines()]
    summary = json.loads((run / "errors_summary.json").read_text())
    assert sorted(r["response"].split()[1] for r in rows) == ["CHAT", "PLAN", "SLIP"]
    assert {r["label"] for r in rows} <= {*analyze.CHOICES.values(), analyze.UNPARSED}   # the paper's prompt
    assert [b["judged"] for b in summary["buckets"]] == [2, 1] and summary["not_judged"] == 1
    assert summary["judge"] == f"local:{model_dir}"


# ----------------------------------------------------------------------------- a judge that misbehaves

def serve(handler_class):
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler_class)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}/v1"


class Quiet(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_a_judge_that_trickles_is_abandoned_at_the_deadline():
    class Trickle(Quiet):
        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            try:
                for byte in b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n":   # a byte at a time, forever
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(0.2)
            except (BrokenPipeError, ConnectionResetError):
                pass

    httpd, url = serve(Trickle)
    try:
        start = time.monotonic()
        with pytest.raises(analyze.JudgeError, match=r"no whole reply within 1 s"):
            analyze.chat_completion(url, "m", "hi", timeout=1.0, retries=0)
        assert time.monotonic() - start < 2.0      # each read returned a byte: only a deadline for the whole ends it
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_a_redirect_is_not_followed_and_the_key_goes_nowhere_else():
    elsewhere = []

    class Elsewhere(Quiet):
        def do_GET(self):
            elsewhere.append(self.headers.get("Authorization"))
            self.send_response(200)
            self.end_headers()

        do_POST = do_GET

    other, other_url = serve(Elsewhere)

    class Redirect(Quiet):
        def do_POST(self):
            self.send_response(302)
            self.send_header("Location", other_url + "/chat/completions")
            self.end_headers()

    httpd, url = serve(Redirect)
    try:
        with pytest.raises(analyze.JudgeError, match="HTTP 302 .* redirects are not followed") as info:
            analyze.chat_completion(url, "m", "hi", key="sk-secret-0123456789", retries=2, backoff=0.01)
        assert info.value.final and elsewhere == []
    finally:
        for server in (httpd, other):
            server.shutdown()
            server.server_close()


def test_errors_never_print_the_key_and_huge_replies_are_refused():
    class Echo(Quiet):
        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            if self.path.endswith("/big/chat/completions"):
                payload = b'{"choices": [{"message": {"content": "' + b"x" * (analyze.MAX_REPLY_BYTES + 10) + b'"}}]}'
                self.send_response(200)
            else:   # a gateway that echoes the request's headers in its error
                payload = f"bad request, you sent {self.headers.get('Authorization')}".encode()
                self.send_response(400)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    httpd, url = serve(Echo)
    try:
        with pytest.raises(analyze.JudgeError) as info:
            analyze.chat_completion(url, "m", "hi", key="sk-secret-0123456789", retries=0)
        assert "HTTP 400" in str(info.value) and "secret" not in str(info.value) and "Bearer ***" in str(info.value)
        with pytest.raises(analyze.JudgeError, match="a reply of more than 1048576 bytes"):
            analyze.chat_completion(url + "/big", "m", "hi", retries=0)
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert analyze.mask("key sk-abcdefghijkl and hf_abcdefghijklmnop", "") == "key sk-*** and hf-***"


def test_lines_of_errors_jsonl_that_are_not_verdicts_are_skipped(server, tmp_path, capsys):
    run = write_run(tmp_path / "run", [(0, "SLIP", 0), (1, "PLAN", 0)])
    analyze.errors(run, judge_of(server), "judge-7b", buckets=1, per_bucket=10, prompt="json")
    lines = (run / "errors.jsonl").read_text().splitlines()
    (run / "errors.jsonl").write_text(lines[0][:30] + "\n" + '{"no": "id"}\n[1, 2]\n' + lines[1] + "\n")
    before = len(server.requests)
    analyze.errors(run, judge_of(server), "judge-7b", buckets=1, per_bucket=10, prompt="json")
    assert "skipped 3 lines that are not verdicts" in capsys.readouterr().err
    assert len(server.requests) == before + 1                # only the torn verdict is asked again
    assert sorted(labels_of_verdicts(run)) == ["execution", "planning"]


def labels_of_verdicts(folder):
    out = []
    for line in (folder / "errors.jsonl").read_text().splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and "label" in row:
            out.append(row["label"])
    return out


def test_ctrl_c_ends_at_once_and_a_second_analysis_is_refused(tmp_path):
    import signal
    import subprocess
    import sys
    from conftest import ROOT

    class Slow(Quiet):
        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            time.sleep(30)

    httpd, url = serve(Slow)
    run = write_run(tmp_path / "run", [(s, "SLIP", 0) for s in range(6)])
    command = [sys.executable, str(ROOT / "analyze.py"), "errors", str(run), "--judge_url", url, "--judge_model", "m",
               "--buckets", "1", "--per_bucket", "6", "--timeout", "60"]
    # Ctrl-C as a terminal delivers it: a shell's background job (`make test &`) ignores SIGINT, its children inherit
    # that, and Python then installs no KeyboardInterrupt; give the analysis the default disposition.
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert "asking m about 6" in first.stdout.readline()
        second = subprocess.run(command, capture_output=True, text=True, timeout=60)
        assert second.returncode == 1 and second.stderr.strip().startswith(f"error: {run}: in use by pid {first.pid}")
        time.sleep(0.5)                          # requests in flight, each for 30 s
        start = time.monotonic()
        first.send_signal(signal.SIGINT)
        _, err = first.communicate(timeout=20)
        assert time.monotonic() - start < 5
        assert first.returncode == 1 and "Traceback" not in err
        assert err.strip().splitlines()[-1].startswith("interrupted: the verdicts so far are kept in")
    finally:
        first.kill()
        httpd.shutdown()
        httpd.server_close()


# ----------------------------------------------------------------------------- the paper's prompt (Listing 2)

def paper_server():
    """A judge answering Listing 2's multiple choice by a word in the student's solution: PLAN -> \\boxed{C},
    SLIP -> \\boxed{B} after some reasoning, DUMMY -> \\boxed{(A)}, FINE -> \\boxed{\\text{D}}, GARBAGE -> no box,
    BUSY -> 429 the first time, then \\boxed{C}. It records every question."""
    asked, seen = [], {}

    class Judge(Quiet):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            question = body["messages"][0]["content"]
            asked.append(question)
            tag = next(t for t in ("PLAN", "SLIP", "DUMMY", "FINE", "GARBAGE", "BUSY")
                       if t in question[question.rindex("Response "):])   # the solution under judgement
            seen[tag] = seen.get(tag, 0) + 1
            if tag == "BUSY" and seen[tag] == 1:
                self.send_response(429)
                self.end_headers()
                return
            content = {"PLAN": "\\boxed{C}", "SLIP": "The plan is fine but 7 + 5 = 13 is wrong. \\boxed{B}",
                       "DUMMY": "\\boxed{(A)}", "FINE": "\\boxed{\\text{D}}", "GARBAGE": "It is a planning error.",
                       "BUSY": "\\boxed{C}"}[tag]
            data = json.dumps({"choices": [{"message": {"content": content}}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    httpd, url = serve(Judge)
    return httpd, url, asked


def write_failures(folder, rows):
    """failures.jsonl as the trainer writes it: failed rollouts with their problem's reference solution."""
    folder.mkdir(exist_ok=True)
    (folder / "failures.jsonl").write_text("".join(json.dumps(
        {"step": step, "prompt": f"What is {step} + 5?", "answer": str(step + 5), "response": f"Response {tag}.",
         "solution": f"Add: {step} + 5 = {step + 5}." if step % 2 == 0 else "", "reward": 0.0, "correct": False})
        + "\n" for step, tag in rows))
    return folder


def test_a_run_resumed_into_failures_jsonl_keeps_its_earlier_failures_from_rollouts_jsonl(tmp_path, capsys):
    """A run made before failures.jsonl existed and resumed since: its steps before that file's first come from
    rollouts.jsonl, the later ones from failures.jsonl only."""
    run = write_run(tmp_path / "run", [(0, "SLIP", 0), (1, "PLAN", 0), (2, "CHAT", 0), (3, "SLOW", 0)])
    write_failures(run, [(2, "BUSY"), (3, "DROP")])
    assert [(r["step"], r["response"]) for r in analyze.failed_rollouts(run)] == [
        (0, "Response SLIP at step 0."), (1, "Response PLAN at step 1."), (2, "Response BUSY."), (3, "Response DROP.")]
    assert "steps before 2: failures from rollouts.jsonl" in capsys.readouterr().err


def test_the_papers_prompt_counts_planning_against_other_errors_and_resumes_without_asking_twice(tmp_path):
    run = write_failures(tmp_path / "run", [(0, "PLAN"), (1, "SLIP"), (2, "DUMMY"), (3, "GARBAGE"),
                                            (4, "PLAN"), (5, "BUSY"), (6, "FINE"), (7, "SLIP")])
    httpd, url, asked = paper_server()
    try:
        judge = analyze.http_judge(url, "gpt-4o", "", timeout=2, retries=2, max_in_flight=2, backoff=0.01)
        summary = analyze.errors(run, judge, "gpt-4o", buckets=2, per_bucket=10)
        # the question holds the reference solution where the data has one, else says it has none
        step0 = next(q for q in asked if "What is 0 + 5?" in q)
        assert "Reference solution:\nAdd: 0 + 5 = 5." in step0 and "\\boxed{C}" in step0
        assert "(none in the data; the correct final answer is 6)" in next(q for q in asked if "What is 1 + 5?" in q)
        early, late = summary["buckets"]   # steps 0-3: PLAN, SLIP, DUMMY, GARBAGE; 4-7: PLAN, BUSY, FINE, SLIP
        assert early["counts"] == {"dummy": 1, "execution": 1, "planning": 1, "acceptable": 0, "unparsed": 1}
        assert (early["planning_errors"], early["other_errors"], early["acceptable"]) == (1, 2, 0)
        assert early["fractions"] == pytest.approx({"dummy": 1 / 3, "execution": 1 / 3, "planning": 1 / 3})
        assert late["counts"] == {"dummy": 0, "execution": 1, "planning": 2, "acceptable": 1, "unparsed": 0}
        assert (late["planning_errors"], late["other_errors"], late["acceptable"]) == (2, 1, 1)
        assert late["fractions"] == pytest.approx({"dummy": 0, "execution": 1 / 3, "planning": 2 / 3})   # D apart
        assert summary["prompt"] == "paper" and summary["not_judged"] == 0 and len(asked) == 9   # BUSY twice
        rows = {json.loads(line)["response"]: json.loads(line) for line in (run / "errors.jsonl").read_text().splitlines()}
        assert rows["Response GARBAGE."]["reply"] == "It is a planning error." and rows["Response FINE."]["choice"] == "D"
        analyze.errors(run, judge, "gpt-4o", buckets=2, per_bucket=10)   # everything judged: nothing asked again
        assert len(asked) == 9
        analyze.errors(run, judge, "gpt-4o", buckets=2, per_bucket=10, prompt="json")   # another question: afresh
        assert len(asked) == 17
        assert (run / "errors.png").is_file()
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.mark.parametrize("reply, choice", [("\\boxed{C}", "C"), ("so \\boxed{(B)}.", "B"), ("\\boxed{\\text{D}}", "D"),
                                           ("\\boxed{A) Dummy}", "A"), ("\\boxed{c}", "C"),
                                           ("\\boxed{\\mathbf{C}}", "C"), ("\\boxed{[C]}", "C"), ("\\boxed{$C$}", "C"),
                                           ("\\boxed{C. A wrong approach}", "C"), ("\\boxed{A or C}", None),
                                           ("\\boxed{B/C}", None), ("\\boxed{B, C}", None),
                                           ("\\boxed{A} no, \\boxed{Cat}", None), ("C", None), ("\\boxed{E}", None)])
def test_the_choice_is_the_letter_in_the_last_box(reply, choice):
    parsed = analyze.parse_choice(reply)
    assert (parsed and parsed["choice"]) == choice

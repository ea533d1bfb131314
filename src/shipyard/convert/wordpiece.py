"""BERT's wordpiece vocabulary and tokenization in Python, as onnxruntime-extensions' BertTokenizer op
does it: the reference the tokenizer's check (convert/text.py) compares the graph's ids with, and the
sentences checks are made of."""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from shipyard.errors import InvalidInput, NotFound

MAX_WORD_CHARS = 100  # a longer word is [UNK], as in BERT
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")  # the op refuses a vocabulary without
CHECK_ROWS = 16
_UNKNOWN_WORDS = ("zorblat", "Qwxyz", "flimbo", "Zürich", "snarfle")
_ENDINGS = (".", "!", "?", "...", "", ".")
_JOINS = (" ", " ", " ", ", ", "; ", " - ", ": ")
# the CJK blocks whose characters BERT splits apart (its _is_chinese_char)
_CJK = [(0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F), (0x2B740, 0x2B81F)]
_CJK += [(0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F)]


def wordpiece(text: str, index: Mapping[str, int], lowercase: bool, max_length: int) -> list[int]:
    """The ids of ``[CLS] pieces [SEP]`` for one sentence, truncated to `max_length`, as the op gives
    them: BERT's basic split (control characters dropped, whitespace, punctuation and CJK characters
    apart; lowercased without accents when `lowercase`), then the longest pieces of each word found
    in the vocabulary, "##" marking those inside a word."""
    pieces: list[int] = []
    for word in _basic_split(text, lowercase):
        pieces.extend(_pieces(word, index))
    return [index["[CLS]"], *pieces[: max_length - 2], index["[SEP]"]]


def _basic_split(text: str, lowercase: bool) -> list[str]:
    spaced = []
    for char in text:
        if char in "\t\n\r" or unicodedata.category(char) == "Zs":
            spaced.append(" ")
        elif unicodedata.category(char).startswith("C"):
            continue
        elif _is_cjk(ord(char)):
            spaced.append(f" {char} ")
        else:
            spaced.append(char)
    words = []
    for word in "".join(spaced).split():
        if lowercase:
            # one character at a time, as the op: İ, whose lowercase is two, stays (then loses its dot)
            lower = "".join(c.lower() if len(c.lower()) == 1 else c for c in word)
            normal = unicodedata.normalize("NFD", lower)
            word = "".join(c for c in normal if unicodedata.category(c) != "Mn")
        current = ""
        for char in word:
            if _is_punctuation(char):
                words.extend([current, char] if current else [char])
                current = ""
            else:
                current += char
        if current:
            words.append(current)
    return words


def _pieces(word: str, index: Mapping[str, int]) -> list[int]:
    unknown = index["[UNK]"]
    if len(word) > MAX_WORD_CHARS:
        return [unknown]
    ids, start = [], 0
    while start < len(word):
        for end in range(len(word), start, -1):
            piece = word[start:end] if start == 0 else "##" + word[start:end]
            if piece in index:
                ids.append(index[piece])
                start = end
                break
        else:
            return [*ids, unknown]  # the op keeps the pieces found before the one it cannot find
    return ids


def _is_punctuation(char: str) -> bool:
    code = ord(char)
    if 33 <= code <= 47 or 58 <= code <= 64 or 91 <= code <= 96 or 123 <= code <= 126:
        return True
    return unicodedata.category(char).startswith("P")


def _is_cjk(code: int) -> bool:
    return any(low <= code <= high for low, high in _CJK)


def check_sentences(words: Sequence[str], rows: int = CHECK_ROWS, seed: int = 0) -> list[str]:
    """`rows` sentences for a numerical check, the same every time: words drawn from `words`, some
    unknown ones among them, capitals and punctuation, and one with no known word at all."""
    rng = np.random.default_rng(seed)
    known = [w for w in words if w.strip()] or list(_UNKNOWN_WORDS)
    sentences = []
    for i in range(rows):
        picked = []
        for _ in range(int(rng.integers(2, 12))):
            word = str(rng.choice(_UNKNOWN_WORDS if rng.random() < 0.15 else known))
            case = rng.random()
            picked.append(word.upper() if case < 0.1 else word.capitalize() if case < 0.3 else word)
        if i == rows - 1:
            picked = list(_UNKNOWN_WORDS[:3])
        text = picked[0]
        for word in picked[1:]:
            text += str(rng.choice(_JOINS)) + word
        sentences.append(text + str(rng.choice(_ENDINGS)))
    return sentences


def read_vocab(vocab: Sequence[str] | str | Path) -> list[str]:
    """A wordpiece vocabulary: a list of tokens, or a file of one token a line (BERT's vocab.txt), the
    line number being the id. Refused when empty, not UTF-8, with a blank line, a token given twice, or
    without BERT's special tokens."""
    if isinstance(vocab, str | Path):
        path = Path(vocab)
        try:
            tokens = path.read_text(encoding="utf-8").removesuffix("\n").split("\n")
        except FileNotFoundError:
            raise NotFound(f"no such vocabulary file: {path}") from None
        except UnicodeDecodeError:
            raise InvalidInput(f"vocabulary file {path} is not UTF-8 text") from None
        where = f"vocabulary file {path}"
        tokens = [token.removesuffix("\r") for token in tokens]
    else:
        tokens, where = [str(token) for token in vocab], "the vocabulary"
    if not any(tokens):
        raise InvalidInput(f"{where} is empty")
    seen: dict[str, int] = {}
    for number, token in enumerate(tokens, 1):
        if not token.strip() or token != token.strip():
            raise InvalidInput(f"{where}: line {number} is blank or has spaces around its token")
        if token in seen:
            raise InvalidInput(f"{where}: {token!r} is on lines {seen[token]} and {number}")
        seen[token] = number
    missing = [token for token in SPECIAL_TOKENS if token not in seen]
    if missing:
        raise InvalidInput(f"{where} lacks BERT's special tokens {', '.join(missing)}")
    return tokens

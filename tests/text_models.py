"""Text models built in code for the tests (no downloads): a scikit-learn TF-IDF pipeline fitted on a
few sentences, and a tiny torch classifier of token ids with its wordpiece vocabulary."""

from __future__ import annotations

import io
import unicodedata
import warnings
from functools import cache
from typing import Any

import numpy as np

TOPICS = ["food", "sports", "weather"]
CORPUS = [
    ("The pizza was delicious, with fresh basil!", "food"),
    ("I cooked pasta and a tomato sauce tonight.", "food"),
    ("This bakery sells the best bread in town.", "food"),
    ("Sushi, ramen and dumplings: what a dinner.", "food"),
    ("The chef's soup tasted of garlic and lemon.", "food"),
    ("Our team won the football match 3-1.", "sports"),
    ("She ran the marathon in under three hours!", "sports"),
    ("The tennis final went to a fifth set.", "sports"),
    ("A goal in the last minute saved the match.", "sports"),
    ("The coach praised the players after the game.", "sports"),
    ("Heavy rain and strong wind are expected tomorrow.", "weather"),
    ("It is sunny and warm, a perfect summer day.", "weather"),
    ("Snow fell all night; the roads are icy.", "weather"),
    ("A storm with thunder and lightning hit the coast.", "weather"),
    ("Fog this morning, then clouds and a light drizzle.", "weather"),
]
SENTENCES = [
    "The PIZZA and the soup were great!",
    "Rain, rain and more rain... Snow tomorrow?",
    "The match: a goal, a win, a happy coach.",
    "Émile's café serves bread; it's délicieux.",
    "a b c",
    "",
]


def text_pipeline(ngrams: tuple[int, int] = (1, 1)) -> Any:
    """TF-IDF then logistic regression, fitted on CORPUS (the classes are TOPICS)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    texts, topics = zip(*CORPUS, strict=True)
    return make_pipeline(TfidfVectorizer(ngram_range=ngrams), LogisticRegression(C=10.0)).fit(texts, topics)


VOCAB = [
    *("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"),
    *(".", ",", "!", "?", "'", "-"),
    *("the", "a", "is", "was", "and", "it", "not", "very", "this", "movie", "film", "plot", "actor"),
    *("good", "great", "love", "fun", "bad", "awful", "hate", "boring", "play", "act", "end"),
    *("##s", "##ing", "##ed", "##ly", "##er"),
]


@cache
def text_classifier() -> tuple[Any, bytes]:
    """A torch module (embedding, mean over the unmasked tokens, linear to two classes) and its ONNX
    export, whose inputs are input_ids and attention_mask [batch, sequence], both dynamic."""
    import torch

    class MeanPool(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = torch.nn.Embedding(len(VOCAB), 16)
            self.out = torch.nn.Linear(16, 2)

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            mask = attention_mask.unsqueeze(-1).to(torch.float32)
            pooled = (self.embed(input_ids) * mask).sum(1) / mask.sum(1).clamp(min=1.0)
            return self.out(pooled)

    torch.manual_seed(0)
    module = MeanPool().eval()
    buffer = io.BytesIO()
    axes = {0: "batch", 1: "sequence"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter says it is deprecated
        torch.onnx.export(
            module,
            (torch.zeros(2, 8, dtype=torch.int64), torch.ones(2, 8, dtype=torch.int64)),
            buffer,  # type: ignore[arg-type]
            input_names=["input_ids", "attention_mask"],
            output_names=["logits"],
            dynamic_axes={"input_ids": axes, "attention_mask": axes, "logits": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )
    return module, buffer.getvalue()


def plain_wordpiece(text: str, max_length: int) -> list[int]:
    """BERT's uncased tokenization of plain sentences, written out again for the tests: lowercase, no
    accents, words and punctuation apart, greedy longest pieces; [CLS] ... [SEP], cut to max_length."""
    index = {token: i for i, token in enumerate(VOCAB)}
    text = "".join(c for c in unicodedata.normalize("NFD", text.lower()) if unicodedata.category(c) != "Mn")
    words = "".join(f" {c} " if not (c.isalnum() or c.isspace()) else c for c in text).split()
    ids = []
    for word in words:
        start, pieces = 0, []
        while start < len(word):
            end = len(word)
            while end > start and (word[start:end] if start == 0 else "##" + word[start:end]) not in index:
                end -= 1
            if end == start:
                pieces.append(index["[UNK]"])
                break
            pieces.append(index[word[start:end] if start == 0 else "##" + word[start:end]])
            start = end
        ids.extend(pieces)
    return [index["[CLS]"], *ids[: max_length - 2], index["[SEP]"]]


def logits_of(sentences: list[str], max_length: int) -> np.ndarray:
    """The torch module's logits on the plain wordpiece ids, padded to max_length."""
    import torch

    module, _ = text_classifier()
    rows = [plain_wordpiece(s, max_length) for s in sentences]
    ids = torch.tensor([row + [0] * (max_length - len(row)) for row in rows])
    with torch.no_grad():
        return np.asarray(module(ids, (ids != 0).to(torch.int64)).numpy())

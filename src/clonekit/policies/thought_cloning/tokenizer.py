"""A word-level thought vocabulary built from the data, stored as a plain word list in the policy config.

Ids: 0 pads, 1 ends a thought, 2 is an unknown word; words follow from id 3, most frequent first (ties in
alphabetical order), so the same data always gives the same vocabulary. No downloads, no pickles.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np

PAD, EOS, UNK = 0, 1, 2
SPECIAL = 3


def words_of(text: str) -> list[str]:
    """The words of a thought: lower-cased, split on whitespace."""
    return text.lower().split()


def build_vocab(texts: Iterable[str], max_words: int = 1000) -> tuple[str, ...]:
    """The ``max_words`` most frequent words of ``texts`` (ties alphabetically)."""
    counts = Counter(word for text in texts for word in words_of(text))
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return tuple(word for word, _ in ranked[:max_words])


class ThoughtTokenizer:
    """Encodes thoughts to fixed-length id rows and decodes ids back to text.

    Args:
        words: The vocabulary (ids ``3 ..``), e.g. from :func:`build_vocab`.
        max_len: Row length, the end token included; longer thoughts are cut.
    """

    def __init__(self, words: Sequence[str], max_len: int) -> None:
        self.words = tuple(words)
        self.max_len = int(max_len)
        self._ids = {word: i + SPECIAL for i, word in enumerate(self.words)}

    @property
    def size(self) -> int:
        """Number of ids (special ids included)."""
        return len(self.words) + SPECIAL

    def encode(self, text: str) -> np.ndarray:
        """``(max_len,)`` int64: the word ids, then the end id, then padding."""
        ids = [self._ids.get(w, UNK) for w in words_of(text)][: self.max_len - 1]
        row = np.full(self.max_len, PAD, dtype=np.int64)
        row[: len(ids)] = ids
        row[len(ids)] = EOS
        return row

    def encode_many(self, texts: Sequence[str]) -> np.ndarray:
        """``(N, max_len)`` int64 rows of :meth:`encode`; repeated texts are encoded once."""
        cache: dict[str, np.ndarray] = {}
        out = np.empty((len(texts), self.max_len), dtype=np.int64)
        for i, text in enumerate(texts):
            if text not in cache:
                cache[text] = self.encode(text)
            out[i] = cache[text]
        return out

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        """Text of one id row, up to its end id (padding skipped, unknown words as ``<unk>``)."""
        words = []
        for i in np.asarray(ids).tolist():
            if i == EOS:
                break
            if i == PAD:
                continue
            words.append("<unk>" if i == UNK or i - SPECIAL >= len(self.words) else self.words[i - SPECIAL])
        return " ".join(words)

"""What every built-in synthetic dataset shares: seeding, splits, length, caching.

Sample ``i`` of a split is a pure function of ``(seed, task, split, i)``: its
generator is ``np.random.default_rng(SeedSequence([seed, crc32(task),
crc32(split), i]))``, so nothing depends on the order of access.

Splits are disjoint *by content*, not only by seed stream: every candidate
sample has a signature (its objects and question, or its text and layout,
never the random noise), and the CRC32 of that signature picks a bucket 0-9;
``test`` keeps buckets 0-1, ``val`` bucket 2, ``train`` buckets 3-9
(``val_buckets=2``: ``val`` 2-3, ``train`` 4-9, for a scene space so small that
one bucket leaves validation too few distinct scenes to estimate the test). A
candidate that falls in another split's bucket is redrawn from the same
generator. So no test image ever appears in training, even at the easy level
where the number of distinct scenes is small. The one exception is content
with a single form (an empty image when every object is counted): it is in
every split, at the same rate as any other content, so the answers stay balanced.
"""

from __future__ import annotations

import functools
import hashlib
import operator
import zlib
from collections.abc import Hashable
from typing import Any

import numpy as np

from perception_env.data.sample import Sample
from perception_env.data.synthetic.difficulty import Difficulty, get_difficulty

NUM_BUCKETS = 10
TEST_BUCKETS = 2  # test's share of the scene space, whatever validation takes
MAX_VAL_BUCKETS = 4  # train keeps at least 4 of the 10 buckets


def split_buckets(val_buckets: int = 1) -> dict[str, frozenset[int]]:
    """Which of the 10 scene buckets each split keeps: ``test`` 0-1, ``val`` the next ``val_buckets``,
    ``train`` the rest. The test split is the same whatever ``val_buckets`` is; train gives up what
    validation takes."""
    if (
        isinstance(val_buckets, bool)
        or not isinstance(val_buckets, int)
        or not 1 <= val_buckets <= MAX_VAL_BUCKETS
    ):
        raise ValueError(f"val_buckets must be an int in 1..{MAX_VAL_BUCKETS}, got {val_buckets!r}")
    val_end = TEST_BUCKETS + val_buckets
    return {
        "test": frozenset(range(TEST_BUCKETS)),
        "val": frozenset(range(TEST_BUCKETS, val_end)),
        "train": frozenset(range(val_end, NUM_BUCKETS)),
    }


SPLIT_BUCKETS = split_buckets()  # the default: val keeps one bucket (10% of the scenes)
DEFAULT_SIZES = {"train": 1000, "val": 200, "test": 200}
_MAX_DRAWS = 10_000  # a split owns >= 10% of the buckets: ~10 draws on average, this is never reached


def scene_keys(dataset: Any, n: int | None = None) -> list[str]:
    """The scene of each of ``dataset``'s first ``n`` samples (all by default): a synthetic dataset's
    :meth:`SyntheticDataset.scene_key`; any other dataset's samples are each their own scene (the
    ``sample_id``)."""
    n = len(dataset) if n is None else min(int(n), len(dataset))
    if hasattr(dataset, "scene_key"):
        return [dataset.scene_key(i) for i in range(n)]
    return [dataset[i].sample_id for i in range(n)]


def distinct_scenes(dataset: Any, n: int | None = None) -> int:
    """How many distinct scenes the first ``n`` samples of ``dataset`` show (all by default)."""
    return len(set(scene_keys(dataset, n)))


def stable_hash(value: Any) -> int:
    """A hash that, unlike ``hash()``, is the same in every process."""
    return zlib.crc32(repr(value).encode("utf-8"))


class SyntheticDataset:
    """Base class: subclasses implement :meth:`draw` (content) and :meth:`render` (the Sample).

    Arguments: ``split`` ("train", "val" or "test"), ``difficulty`` (a preset
    name or a :class:`Difficulty`), ``size`` (number of samples; default
    1000 train / 200 val and test), ``seed``, ``cache_size`` (samples kept in
    an LRU cache; generation takes about a millisecond at the easy level), ``val_buckets``
    (validation's share of the scene space in tenths, taken from train's; give the three splits the
    same value, or they overlap; :func:`split_buckets`).

    A dataset pickles (spawned vector envs, Ray and verl workers ship envs to other processes) and copies
    without its cache: the copy starts with an empty one of the same size and, samples being pure
    functions of their index, yields the same samples.
    """

    task: str = ""
    family: str = "shapes"
    categories: tuple[str, ...] = ()

    def __init__(
        self,
        split: str = "train",
        difficulty: str | Difficulty = "easy",
        size: int | None = None,
        seed: int = 0,
        cache_size: int = 256,
        val_buckets: int = 1,
    ):
        if split not in SPLIT_BUCKETS:
            raise ValueError(f"unknown split {split!r}; synthetic splits: {sorted(SPLIT_BUCKETS)}")
        self.split = split
        self.val_buckets = val_buckets
        self.buckets = split_buckets(val_buckets)[split]
        self.difficulty = get_difficulty(difficulty)
        self.size = DEFAULT_SIZES[split] if size is None else int(size)
        if self.size < 0:
            raise ValueError(f"size must be >= 0, got {size}")
        self.seed = int(seed)
        # another split scheme draws other train and val samples: their ids must not pass for the default's
        scheme = "" if val_buckets == 1 else f"-val{val_buckets}"
        self.name = f"{self.family}-{self.task}-{self.difficulty.name}{scheme}"
        self.cache_size = cache_size
        self._start_cache()

    def _start_cache(self) -> None:
        # per instance (samples depend on seed, split and difficulty); a bound lru_cache cannot be pickled
        self._cached = functools.lru_cache(maxsize=self.cache_size)(self._generate)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["_cached"]  # pickled and deep-copied without it: a copy never shares the original's cache
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._start_cache()

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> Sample:
        index = operator.index(index)
        if not 0 <= index < self.size:
            raise IndexError(
                f"index {index} out of range for {self.name} ({self.split}) of {self.size} samples"
            )
        return self._cached(index)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(split={self.split!r}, difficulty={self.difficulty.name!r}, size={self.size})"

    def rng(self, index: int) -> np.random.Generator:
        entropy = [self.seed, stable_hash(self.task), stable_hash(self.split), index]
        return np.random.default_rng(np.random.SeedSequence(entropy))

    def _generate(self, index: int) -> Sample:
        rng, content, _ = self._accepted_draw(index)
        return self.render(rng, content, f"{self.name}/{self.split}/{index}")

    def _accepted_draw(self, index: int) -> tuple[np.random.Generator, Any, Hashable | None]:
        """Sample ``index``'s generator (positioned for rendering), content and signature."""
        rng = self.rng(index)
        for _ in range(_MAX_DRAWS):
            content = self.draw(rng)
            if content is None:  # did not fit: draw again
                continue
            signature = self.signature(content)
            # content that has only one form (an empty image) cannot be kept out of the other splits: it
            # gets a random bucket, so each split accepts it at the rate of any other content
            bucket = (
                int(rng.integers(NUM_BUCKETS)) if signature is None else stable_hash(signature) % NUM_BUCKETS
            )
            if bucket in self.buckets:
                return rng, content, signature
        raise RuntimeError(f"{self.name}: no sample for split {self.split!r} after {_MAX_DRAWS} draws")

    def scene_key(self, index: int) -> str:
        """Sample ``index``'s scene: a digest of its signature (objects and question, or text and layout,
        never the noise). Two samples with one key differ only in pixel noise; a split's figures rest on
        its number of distinct keys, not its number of samples (:func:`distinct_scenes`)."""
        index = operator.index(index)
        if not 0 <= index < self.size:
            raise IndexError(
                f"index {index} out of range for {self.name} ({self.split}) of {self.size} samples"
            )
        _, _, signature = self._accepted_draw(index)
        return hashlib.blake2b(repr(signature).encode("utf-8"), digest_size=8).hexdigest()

    # -- for subclasses -------------------------------------------------------
    @property
    def image_size(self) -> tuple[int, int] | None:
        """``(width, height)`` of every sample's image, or None where the sizes differ (what a render's
        panel is fitted to)."""
        return None

    def draw(self, rng: np.random.Generator) -> Any | None:
        """The sample's content (objects and question), or ``None`` to draw again."""
        raise NotImplementedError

    def signature(self, content: Any) -> Hashable | None:
        """What makes two samples the same (decides the split bucket); ``None`` for content with a single
        form, which every split may hold."""
        raise NotImplementedError

    def render(self, rng: np.random.Generator, content: Any, sample_id: str) -> Sample:
        raise NotImplementedError

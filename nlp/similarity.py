"""Keyed, text-free similarity signatures of reports, for finding similar cases with SQL at a million rows.

A report's text becomes a set of shingles — its words (`nlp.tokenizer.tokenize`), its word bigrams, and the
words and bigrams of its first `LEAD_CHARS` characters once more under a prefix, because a report usually says
what it is about first. Every shingle is hashed under the operator's key (BLAKE2b in keyed mode), and a MinHash
(datasketch, `affine32` scheme, `num_perm` values) is computed over those keyed hashes. The permutations are
seeded from the key as well. Without the key no stored value can be matched to a word by hashing a dictionary,
and two deployments (two keys) produce unrelated signatures.

A `Signature` holds:

- `minhash`: `num_perm` 32-bit values; the share of equal positions of two signatures estimates the Jaccard
  similarity of the two shingle sets (`similarity`).
- `band_keys`: locality-sensitive-hashing keys, one signed 64-bit integer per band of `num_perm / bands` values
  (a keyed hash of the band's index and values). Two reports share a band key with probability 1 - (1 - J^r)^b
  for Jaccard similarity J, r rows and b bands; a SQL table `(band_key, case_id)` with an index on `band_key`
  finds the candidates with `WHERE band_key IN (...)`.
- `place_keys`: keyed 64-bit hashes of the normalised place (see `place_names`), for "same place" matching.

Nothing in a signature is text: `to_bytes` packs only the integers. The parameters (128 permutations, 32 bands
of 4 rows, the shingles) were chosen by measuring pairs of the Teddy Cup 2020 hot-issue messages; the figures and
the lookup benchmark are in docs/mining.md. `combined_score` ranks candidates by text similarity, same place,
same district and the days between the two reports.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from datasketch import MinHash

from nlp.tokenizer import normalise, tokenize

DEFAULT_NUM_PERM = 128
DEFAULT_BANDS = 32
LEAD_CHARS = 50
SIGNATURE_FORMAT = 1

# `combined_score` counts text similarity from FLOOR (99 % of random pairs of real messages stay below 0.04) and
# in full from SATURATION (the median of two messages about the same problem is 0.10, near-copies reach 0.3 and
# more); figures in docs/mining.md.
TEXT_SIMILARITY_FLOOR = 0.05
TEXT_SIMILARITY_SATURATION = 0.2
TEXT_WEIGHT = 0.6
PLACE_WEIGHT = 0.3
DISTRICT_WEIGHT = 0.1
TIME_HALF_LIFE_DAYS = 60.0
# Candidates scoring at least this are shown as similar cases (chosen in docs/mining.md).
SIMILAR_THRESHOLD = 0.45

_MASK63 = (1 << 63) - 1
_SIGNED_OFFSET = 1 << 64

# Administrative units in front of a place: "长沙市", "岳麓区", "a2区", "西地省", "暮云街道", "星沙镇". A unit is up
# to seven characters before the suffix and must be followed by more of the place.
_ADMIN_UNIT = re.compile(
    r"^(?:[^\W\d_a-z省市区县旗镇乡]{1,7}?(?:省|自治区|自治州|市|县|旗|镇|乡|街道)"
    r"|[^\W\d_a-z省市区县旗镇乡]{1,5}?(?<![小社园校厂景片城居住宅营])区(?!域)"
    r"|[a-z]\d*(?:省|市|区|县))(?=.)"
)
# Words after a place that only say where near it ("丽发新城小区附近" is the place 丽发新城) or which building.
_TRAILING = re.compile(
    r"(?:附近|周边|旁边|旁|对面|门口|楼下|一带|内|里|外|\d+(?:栋|号|单元|楼|期|层|室).*|[一二三四五六七八九十]+期.*)$"
)
# Generic kinds of place after a name: the name alone identifies it ("丽发新城小区" → "丽发新城").
_GENERIC_KIND = re.compile(r"(?<=..)(?:小区|社区|居民区|住宅区|片区|项目|楼盘)$")
_NOT_NAME = re.compile(r"[^\u4e00-\u9fff0-9a-z]+")
# What is left after an administrative unit may be an institution of that unit ("星沙镇政府", "东湖区市场监管局",
# "a市人民医院", "东湖区第三中学"): every district has one, so the innermost unit is part of the name.
_GENERIC_INSTITUTION = re.compile(
    r"(?:政府|局|所|院|委|委员会|办|办公室|站|队|中心|大厅|窗口|学校|小学|中学|大学|幼儿园|银行|公司|集团)$"
)


def _blake_key(key: bytes, purpose: bytes) -> bytes:
    """A 32-byte sub-key of `key` for one purpose (BLAKE2b accepts keys of at most 64 bytes)."""
    return hashlib.blake2b(purpose, key=hashlib.blake2b(key, digest_size=64).digest(), digest_size=32).digest()


def _signed64(value: int) -> int:
    """An unsigned 64-bit integer as PostgreSQL's BIGINT holds it."""
    return value - _SIGNED_OFFSET if value > _MASK63 else value


def place_names(place: str | None) -> tuple[str, ...]:
    """The names under which a place counts as the same: the normalised place without administrative units in
    front, words such as 附近/旁边 or building numbers behind and a generic kind (小区/社区/项目) at the end; and,
    when the place is a road or street followed by something on it, that last part too.

    "A2区丽发新城小区附近" → ("丽发新城",); "万家丽南路丽发新城" → ("万家丽南路丽发新城", "丽发新城").
    """
    if not place:
        return ()
    text = _NOT_NAME.sub("", normalise(place))
    while True:
        stripped = _ADMIN_UNIT.sub("", text, count=1)
        if stripped == text or (_GENERIC_INSTITUTION.search(stripped) and not _ADMIN_UNIT.match(stripped)):
            break
        text = stripped
    previous = None
    while text != previous:
        previous = text
        text = _TRAILING.sub("", text)
        text = _GENERIC_KIND.sub("", text)
    if len(text) < 2:
        return ()
    names = [text]
    road = re.search(r"^.+?(?:大道|路|街|巷)(?=..)", text)
    if road is not None:
        tail = text[road.end():]
        if len(tail) >= 2:
            names.append(tail)
    return tuple(names)


def shingles(text: str) -> set[str]:
    """The readable shingles of a text (never stored): words, word bigrams, and the words and bigrams of the lead
    again under the prefix "lead:"."""
    words = tokenize(text)
    result = {word for word in words if len(word) > 1}
    result.update(f"{first} {second}" for first, second in itertools.pairwise(words))
    lead = tokenize(normalise(text)[:LEAD_CHARS])
    result.update(f"lead:{word}" for word in lead if len(word) > 1)
    result.update(f"lead:{first} {second}" for first, second in itertools.pairwise(lead))
    return result


@dataclass(frozen=True, eq=False)
class Signature:
    """A report's similarity signature: integers only (see the module's docstring)."""

    minhash: np.ndarray  # uint32, num_perm values
    band_keys: tuple[int, ...]
    place_keys: tuple[int, ...] = ()

    @property
    def num_perm(self) -> int:
        return int(self.minhash.shape[0])

    def is_empty(self) -> bool:
        """True for a text without any word (its MinHash is all maximal values)."""
        return bool(np.all(self.minhash == np.uint32(0xFFFFFFFF)))

    def minhash_bytes(self) -> bytes:
        """The MinHash as little-endian 32-bit integers (what a `signature` column holds)."""
        return self.minhash.astype("<u4").tobytes()

    def to_bytes(self) -> bytes:
        """Everything in one blob: format, counts, MinHash, band keys, place keys (all integers)."""
        header = struct.pack("<BHHH", SIGNATURE_FORMAT, self.num_perm, len(self.band_keys), len(self.place_keys))
        keys = struct.pack(f"<{len(self.band_keys) + len(self.place_keys)}q", *self.band_keys, *self.place_keys)
        return header + self.minhash_bytes() + keys

    @classmethod
    def from_bytes(cls, data: bytes) -> Signature:
        """The inverse of `to_bytes`; ValueError for anything else."""
        header_size = struct.calcsize("<BHHH")
        if len(data) < header_size:
            raise ValueError("not a similarity signature: too short")
        version, num_perm, band_count, place_count = struct.unpack_from("<BHHH", data)
        if version != SIGNATURE_FORMAT:
            raise ValueError(f"unknown similarity signature format {version}")
        expected = header_size + 4 * num_perm + 8 * (band_count + place_count)
        if len(data) != expected:
            raise ValueError(f"similarity signature of {len(data)} bytes, expected {expected}")
        minhash = np.frombuffer(data, dtype="<u4", count=num_perm, offset=header_size).astype(np.uint32)
        keys = struct.unpack_from(f"<{band_count + place_count}q", data, header_size + 4 * num_perm)
        return cls(minhash, tuple(keys[:band_count]), tuple(keys[band_count:]))

    @classmethod
    def from_minhash_bytes(cls, data: bytes, band_keys: Iterable[int] = (),
                           place_keys: Iterable[int] = ()) -> Signature:
        """A signature from a stored `minhash_bytes` value (band and place keys as stored beside it)."""
        if len(data) % 4:
            raise ValueError("a MinHash is a whole number of 32-bit values")
        return cls(np.frombuffer(data, dtype="<u4").astype(np.uint32), tuple(band_keys), tuple(place_keys))


class SimilarityHasher:
    """Computes signatures under one secret key. `key` is the operator's secret (any length ≥ 16 bytes); the
    hasher derives its own sub-keys from it, so the same key may serve other purposes elsewhere."""

    def __init__(self, key: bytes, *, num_perm: int = DEFAULT_NUM_PERM, bands: int = DEFAULT_BANDS) -> None:
        if len(key) < 16:
            raise ValueError("the similarity key must be at least 16 bytes")
        if num_perm <= 0 or bands <= 0 or num_perm % bands:
            raise ValueError(f"{num_perm} permutations do not split into {bands} bands")
        self.num_perm = num_perm
        self.bands = bands
        self.rows = num_perm // bands
        self._shingle_key = _blake_key(key, b"qinglian similarity shingles")
        self._band_key = _blake_key(key, b"qinglian similarity bands")
        self._place_key = _blake_key(key, b"qinglian similarity places")
        seed = int.from_bytes(_blake_key(key, b"qinglian similarity permutations")[:4], "little")
        # The shingles are hashed under the key before they reach datasketch (`term_hashes`).
        self._template = MinHash(num_perm=num_perm, seed=seed, hashfunc=int, scheme="affine32")

    def term_hashes(self, text: str) -> np.ndarray:
        """The keyed 32-bit hashes of the text's shingles, sorted and unique (uint32). They are what the MinHash
        is computed from, and what hot-issue grouping (`nlp.hotspots`) compares; storable like the MinHash."""
        key = self._shingle_key
        blake2b = hashlib.blake2b
        values = {
            int.from_bytes(blake2b(shingle.encode(), key=key, digest_size=4).digest(), "little")
            for shingle in shingles(text)
        }
        return np.array(sorted(values), dtype=np.uint32)

    def keyed_hash(self, value: str, purpose: str = "place") -> int:
        """A signed 64-bit keyed hash of a string (BIGINT in SQL); `purpose` separates uses."""
        digest = hashlib.blake2b(f"{purpose}\x00{value}".encode(), key=self._place_key, digest_size=8).digest()
        return _signed64(int.from_bytes(digest, "little"))

    def place_keys(self, place: str | None) -> tuple[int, ...]:
        """Keyed hashes of `place_names(place)`; two places are the same when their keys intersect."""
        return tuple(self.keyed_hash(name) for name in place_names(place))

    def minhash(self, text: str) -> np.ndarray:
        return self.minhash_of_terms(self.term_hashes(text))

    def minhash_of_terms(self, terms: np.ndarray) -> np.ndarray:
        sketch = self._template.copy()
        sketch.update_batch(terms.tolist())
        return np.asarray(sketch.hashvalues, dtype=np.uint32)

    def band_keys(self, minhash: np.ndarray) -> tuple[int, ...]:
        """One keyed 64-bit key per band. An empty text (no words) has no band keys: it matches nothing."""
        if bool(np.all(minhash == np.uint32(0xFFFFFFFF))):
            return ()
        values = minhash.astype("<u4")
        keys = []
        for band in range(self.bands):
            data = struct.pack("<H", band) + values[band * self.rows:(band + 1) * self.rows].tobytes()
            digest = hashlib.blake2b(data, key=self._band_key, digest_size=8).digest()
            keys.append(_signed64(int.from_bytes(digest, "little")))
        return tuple(keys)

    def signature(self, text: str, place: str | None = None) -> Signature:
        return self.signature_of_terms(self.term_hashes(text), place)

    def signature_of_terms(self, terms: np.ndarray, place: str | None = None) -> Signature:
        """The signature of a text whose `term_hashes` were already computed."""
        minhash = self.minhash_of_terms(terms)
        return Signature(minhash, self.band_keys(minhash), self.place_keys(place))


def similarity(first: Signature, second: Signature) -> float:
    """Estimated Jaccard similarity of the two reports' shingle sets (0 when either text has no words)."""
    if first.num_perm != second.num_perm:
        raise ValueError("signatures with different numbers of permutations cannot be compared")
    if first.is_empty() or second.is_empty():
        return 0.0
    return float(np.count_nonzero(first.minhash == second.minhash)) / first.num_perm


def similarities(query: Signature, minhashes: np.ndarray) -> np.ndarray:
    """`similarity` of `query` with each row of a (n, num_perm) uint32 array, vectorised."""
    if query.is_empty() or minhashes.size == 0:
        return np.zeros(minhashes.shape[0] if minhashes.ndim == 2 else 0)
    return np.count_nonzero(minhashes == query.minhash[None, :], axis=1) / query.num_perm


def same_place(first: Signature, second: Signature) -> bool:
    return not set(first.place_keys).isdisjoint(second.place_keys)


def combined_score(text_sim: float, same_place: bool, same_district: bool, days_apart: float) -> float:
    """How likely two reports are about the same problem, in [0, 1].

    text  = min(1, max(0, (text_sim - 0.05) / (0.2 - 0.05)))
    score = (0.6 · text + 0.3 · same_place + 0.1 · same_district) · (0.5 + 0.5 · 2^(-days / 60))

    The estimated Jaccard similarity counts from 0.05 and in full from 0.2 (TEXT_SIMILARITY_FLOOR/SATURATION); the
    same place adds 0.3 and the same district 0.1, so place and district alone (0.4) stay below SIMILAR_THRESHOLD
    (0.45): two different problems at one estate are not similar cases. The time factor halves its time-dependent
    half every 60 days: a report a year older keeps a little over half its score. docs/mining.md has the measured
    recall and false-positive rate per threshold.
    """
    if not 0.0 <= text_sim <= 1.0:
        raise ValueError(f"text similarity {text_sim} is not in [0, 1]")
    text_part = min(1.0, max(0.0, (text_sim - TEXT_SIMILARITY_FLOOR)
                                 / (TEXT_SIMILARITY_SATURATION - TEXT_SIMILARITY_FLOOR)))
    base = TEXT_WEIGHT * text_part + PLACE_WEIGHT * float(same_place) + DISTRICT_WEIGHT * float(same_district)
    time_factor = 0.5 + 0.5 * math.pow(2.0, -abs(days_apart) / TIME_HALF_LIFE_DAYS)
    return base * time_factor


"""Hot issues: a period's reports grouped into problems about one place or group of people, ranked by heat.

Two stages, so that a refresh on a million stored cases stays cheap:

1. **At intake, once per case** (`case_record`): the keyed hashes of the report's shingles
   (`SimilarityHasher.term_hashes` — the same values its similarity signature is computed from), its time,
   likes, label and a pseudonymous author key. No text is kept.
2. **At refresh** (`group_cases`, on the records of a period): term weights are the inverse document frequency
   of each hashed term *within the period*, so the name of an estate or a company that many reports share weighs
   more than words every report uses. Two reports' similarity is the cosine of their TF-IDF vectors over the terms
   that occur in at least 2 and at most `max_term_share` of the period's reports (the very common terms add
   little and would make the product dense); the other terms count in the vectors' norms with a tenth of their
   weight (`uncompared_weight`). The sparse product is computed `chunk_rows` rows at a time, and each report keeps
   its `neighbours` most similar reports at `similarity_threshold` or above as edges. Average linkage at the
   threshold then runs inside each connected component of that graph on the component's exact similarities
   (without the neighbour limit an average-linkage cluster could never span two components: merging needs at
   least one pair at the threshold). A component larger than `max_component` is split along its stronger edges
   first. Cost: O(T log T) for the period's T hashed terms, the sparse product (bounded by the
   document-frequency cap), O(c²) per component of c reports; memory: reports × neighbours edges and
   `max_component`² for one component.

Groups are ranked by the heat index (`HeatParameters`, docs/mining.md):

    volume      = min(distinct residents, distinct texts)      # copies and one person's repeats count once
    support     = ln(1 + likes)
    persistence = 1 + 0.1 · ln(1 + span_days / 7)              # over how long
    recency     = 0.5 + 0.5 · 2^(-days_since_last / half_life)  # how recent: half_life is a quarter of the period
    seriousness = mean label weight (LABEL_SERIOUSNESS; 1 for an unlabelled report)
    coherence   = min(1, cohesion / 0.1)    # cohesion: mean similarity of a report to the group's others
    heat        = (volume + 3 · support) · persistence · recency · seriousness · coherence

A group whose reports are only loosely alike — a theme across many places rather than one problem — ranks lower.
Only groups with a volume of at least 2 are hot issues.

`describe` then names each top group from its reports' readable texts (given by the caller, who may decrypt
them): `place_people` is the phrase most of the group's titles share — a place where people live or a group of
people if one is shared by half of them, else an organisation or facility, else any phrase — with the
administrative area most of them name in front; `description` is the most central report's title, tidied.
`find_hotspots` does all of it for messages in memory (the `qinglian hotspots` command).
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, tzinfo

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial.distance import squareform

from nlp.similarity import SimilarityHasher
from nlp.tokenizer import normalise

# Offline runs (`find_hotspots`) need a key only to hash terms; the grouping does not depend on it.
OFFLINE_KEY = b"qinglian hot issues offline key"

# Weight of a label in the heat index: how serious a report of that kind is (taxonomy.md). Labels not listed
# and unlabelled reports weigh 1.
LABEL_SERIOUSNESS: dict[str, float] = {
    "bribery_gifts": 1.5,
    "project_irregularity": 1.3,
    "village_affairs": 1.2,
    "medical": 1.2,
    "education": 1.2,
    "lazy_procrastination": 1.1,
    "formalism": 1.1,
    "slow_service": 1.0,
    "other": 0.8,
}

# Endings of names, in the order `describe` prefers them for place_people (never used to group): places where
# people live and groups of people first, then organisations and facilities.
_PLACE_AND_PEOPLE_ENDINGS = (
    "小区", "花园", "家园", "新村", "新城", "苑", "园", "府", "庭", "湾", "郡", "城", "公馆", "公寓", "山庄", "村",
    "社区", "街道", "镇", "乡", "路", "大道", "街", "人才", "业主", "居民", "村民", "学生", "家长", "教师", "老师",
    "职工", "员工", "工人", "农民", "受害人",
)
_ORGANISATION_ENDINGS = (
    "学校", "小学", "中学", "大学", "学院", "幼儿园", "医院", "卫生院", "公司", "集团", "银行", "酒店", "工厂", "厂",
    "市场", "广场", "大厦", "中心", "项目", "平台", "局", "所",
)
# Administrative units: coded ones anywhere ("a市", "a2区" in anonymised data), named provinces and cities at the
# start of a run ("西地省", "长沙市").
_ADMIN_UNIT = re.compile(r"[a-z]\d*(?:省|市|区|县)|^[\u4e00-\u9fff]{2,3}(?:省|市)")
_ADMIN_AREA = re.compile(r"(?:[a-z]\d*(?:省|市|区|县))+|^(?:[\u4e00-\u9fff]{2,3}(?:省|市))+")
_RUN = re.compile(r"[\u4e00-\u9fff0-9a-z]+")
_TIDY_END = re.compile(r"[\s?？!！。.,，;；:：…~～]+$")
_SENTENCE = re.compile(r"[。！？!?\n]")
MAX_PHRASE = 12
DESCRIPTION_CHARS = 60


@dataclass(frozen=True)
class Message:
    """A report as the hot-issue commands read it. `author` (optional) is the resident's pseudonymous key: a
    resident's repeated reports then count once."""

    id: Hashable
    title: str
    text: str
    time: datetime
    likes: int = 0
    label: str | None = None
    author: str | None = None


@dataclass(frozen=True, eq=False)
class CaseRecord:
    """What a refresh needs of one case: no text. `terms` is `SimilarityHasher.term_hashes` of title and text."""

    id: Hashable
    time: datetime
    terms: np.ndarray
    likes: int = 0
    label: str | None = None
    author: str | None = None


@dataclass(frozen=True)
class GroupingParameters:
    similarity_threshold: float = 0.05
    max_term_share: float = 0.02  # terms in more of the period's reports than this share are not compared ...
    min_term_cap: int = 50  # ... unless they are in at most this many
    max_term_cap: int = 1000  # and never terms in more reports than this (bounds the sparse product)
    max_component: int = 2500  # a larger component is split first (approximation, see `_cluster`)
    uncompared_weight: float = 0.1
    chunk_rows: int = 500  # rows of the similarity product computed at a time (bounds the memory of a refresh)
    neighbours: int = 30  # each report keeps its most similar reports at the threshold or above as edges


@dataclass(frozen=True)
class HeatParameters:
    like_weight: float = 3.0
    persistence_weight: float = 0.1
    # None: a quarter of the period's length (at least 7 days), so "recent" means recent within the period.
    recency_half_life_days: float | None = None
    min_volume: int = 2
    full_coherence: float = 0.1
    seriousness: Mapping[str, float] = field(default_factory=lambda: dict(LABEL_SERIOUSNESS))


@dataclass
class HotGroup:
    """A ranked group of cases (ids only): what a refresh stores and the console lists."""

    case_ids: list[Hashable]
    heat: float
    volume: int
    residents: int
    likes: int
    first: datetime
    last: datetime
    central_id: Hashable
    cohesion: float
    labels: dict[str, int]
    weekly: list[tuple[date, int]]


@dataclass
class Hotspot:
    rank: int
    heat: float
    time_range: tuple[datetime, datetime]
    place_people: str
    description: str
    message_ids: list[Hashable]
    weekly: list[tuple[date, int]]
    residents: int
    likes: int
    labels: dict[str, int]

    def to_json(self) -> dict[str, object]:
        """The `qinglian hotspots` output line: time_range is "YYYY-MM-DD至YYYY-MM-DD"."""
        start, end = self.time_range
        return {
            "rank": self.rank,
            "heat": round(self.heat, 3),
            "time_range": f"{start.date().isoformat()}至{end.date().isoformat()}",
            "place_people": self.place_people,
            "description": self.description,
            "message_ids": list(self.message_ids),
        }


def message_text(message: Message) -> str:
    """Title and text as one report (a product case has no title: its text alone)."""
    return f"{message.title}。{message.text}" if message.title else message.text


def case_record(message: Message, hasher: SimilarityHasher) -> CaseRecord:
    return CaseRecord(message.id, message.time, hasher.term_hashes(message_text(message)), message.likes,
                      message.label, message.author)


def _tfidf(records: Sequence[CaseRecord], parameters: GroupingParameters) -> csr_matrix:
    """Rows: the records' binary term vectors weighted by the period's IDF, restricted to the terms compared
    (document frequency from 2 to the cap) and divided by the norm of the whole vector in which the terms not
    compared count with weight `uncompared_weight` (so a report is not made alike by its few compared terms)."""
    count = len(records)
    lengths = np.array([record.terms.shape[0] for record in records], dtype=np.int64)
    if lengths.sum() == 0:
        return csr_matrix((count, 0))
    terms = np.concatenate([record.terms for record in records])
    vocabulary, columns = np.unique(terms, return_inverse=True)
    frequency = np.bincount(columns, minlength=vocabulary.shape[0])
    idf = np.log((count + 1) / (frequency + 1)) + 1.0
    cap = min(parameters.max_term_cap, max(parameters.min_term_cap, int(parameters.max_term_share * count)))
    compared = (frequency >= 2) & (frequency <= cap)
    weights = idf[columns]
    squares = np.where(compared[columns], 1.0, parameters.uncompared_weight) * weights * weights
    rows = np.repeat(np.arange(count), lengths)
    norms = np.sqrt(np.bincount(rows, weights=squares, minlength=count))
    norms[norms == 0] = 1.0
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    matrix = csr_matrix((weights / norms[rows], columns, indptr), shape=(count, vocabulary.shape[0]))
    return csr_matrix(matrix[:, np.flatnonzero(compared)])


def _average_linkage(similarity: np.ndarray, threshold: float) -> np.ndarray:
    """Cluster labels of average linkage on a dense similarity matrix, cut at `threshold`."""
    distance = 1.0 - np.clip(similarity, 0.0, 1.0)
    np.fill_diagonal(distance, 0.0)
    tree = linkage(squareform(distance, checks=False), method="average")
    return fcluster(tree, t=1.0 - threshold, criterion="distance")


def _principal(matrix: csr_matrix, members: np.ndarray) -> csr_matrix:
    """matrix[members][:, members] of a square sparse matrix, in the order of `members` (row slicing, then the
    columns mapped through a lookup array: scipy's column fancy indexing is far slower on large matrices)."""
    if members.shape[0] == matrix.shape[0] and np.array_equal(members, np.arange(members.shape[0])):
        return matrix
    rows = matrix[members].tocoo()
    position = np.full(matrix.shape[1], -1, dtype=np.int64)
    position[members] = np.arange(members.shape[0])
    columns = position[rows.col]
    keep = columns >= 0
    return csr_matrix((rows.data[keep], (rows.row[keep], columns[keep])), shape=(members.shape[0], members.shape[0]))


def _edges(matrix: csr_matrix, threshold: float, chunk_rows: int = 500, neighbours: int = 30) -> csr_matrix:
    """Each row's `neighbours` most similar rows at `threshold` or above, as a symmetric sparse matrix without its
    diagonal. The product is computed `chunk_rows` rows at a time and only those pairs are kept, so memory holds
    at most rows × neighbours × 2 pairs, whatever the period."""
    count = matrix.shape[0]
    transposed = csr_matrix(matrix.T)
    rows, columns, values = [], [], []
    for start in range(0, count, chunk_rows):
        block = csr_matrix(matrix[start:start + chunk_rows] @ transposed)
        block.setdiag(0.0, k=start)
        block.data[block.data < threshold] = 0.0
        block.eliminate_zeros()
        lengths = np.diff(block.indptr)
        for row in np.flatnonzero(lengths):
            low, high = block.indptr[row], block.indptr[row + 1]
            data = block.data[low:high]
            if data.shape[0] > neighbours:
                chosen = np.argpartition(data, -neighbours)[-neighbours:] + low
            else:
                chosen = np.arange(low, high)
            rows.append(np.full(chosen.shape[0], start + row))
            columns.append(block.indices[chosen])
            values.append(block.data[chosen])
    if not rows:
        return csr_matrix((count, count))
    graph = csr_matrix((np.concatenate(values), (np.concatenate(rows), np.concatenate(columns))),
                       shape=(count, count))
    return graph.maximum(graph.T)


def _cluster(matrix: csr_matrix, graph: csr_matrix, members: np.ndarray, edge_threshold: float,
             parameters: GroupingParameters, out: list[tuple[np.ndarray, np.ndarray]]) -> None:
    """Append to `out` the average-linkage clusters (at `parameters.similarity_threshold`) of `members` (row
    indices), each with its members' centrality (mean similarity to the cluster's others). They are computed
    inside the connected components of `graph` (the pairs at the threshold or above) restricted to the pairs at
    `edge_threshold` or above, from the exact similarities of each component's rows. A component larger than
    `max_component` is split along its edges at a higher edge threshold (a quarter higher each time) first: the
    one approximation, which only a period with thousands of chained reports meets."""
    sub = _principal(graph, members)
    if edge_threshold > parameters.similarity_threshold:
        sub = sub.copy()  # never the caller's graph
        sub.data[sub.data < edge_threshold] = 0.0
        sub.eliminate_zeros()
    components, labels = connected_components(sub, directed=False)
    order = np.argsort(labels, kind="stable")
    bounds = np.searchsorted(labels[order], np.arange(components + 1))
    for component in range(components):
        local = members[order[int(bounds[component]):int(bounds[component + 1])]]
        if local.shape[0] == 1:
            out.append((local, np.zeros(1)))
        elif local.shape[0] > parameters.max_component:
            _cluster(matrix, graph, local, edge_threshold * 1.25, parameters, out)
        else:
            rows = matrix[local]
            dense = (rows @ rows.T).toarray()
            np.fill_diagonal(dense, 0.0)
            clusters = _average_linkage(dense, parameters.similarity_threshold)
            for cluster in np.unique(clusters):
                inside = np.flatnonzero(clusters == cluster)
                centrality = dense[np.ix_(inside, inside)].sum(axis=1) / max(1, inside.shape[0] - 1)
                out.append((local[inside], centrality))


def weekly_counts(times: Sequence[datetime], tz: tzinfo | None = None) -> list[tuple[date, int]]:
    """Reports per week (weeks start on Monday, in `tz` — the city's time — for aware times), from the first
    report's week to the last's, empty weeks too."""
    local = [moment.astimezone(tz) if tz is not None and moment.tzinfo is not None else moment for moment in times]
    weeks = Counter(moment.date() - timedelta(days=moment.weekday()) for moment in local)
    first, last = min(weeks), max(weeks)
    result = []
    week = first
    while week <= last:
        result.append((week, weeks.get(week, 0)))
        week += timedelta(days=7)
    return result


def heat_of(records: Sequence[CaseRecord], now: datetime, parameters: HeatParameters, half_life_days: float,
            cohesion: float = 1.0) -> tuple[float, int, int]:
    """The heat index of a group of records (module docstring) with its volume and number of residents."""
    residents = len({record.author if record.author is not None else ("case", record.id) for record in records})
    texts = len({record.terms.tobytes() for record in records})
    volume = min(residents, texts)
    likes = sum(max(0, record.likes) for record in records)
    times = [record.time for record in records]
    span_days = (max(times) - min(times)).total_seconds() / 86400
    age_days = max(0.0, (now - max(times)).total_seconds() / 86400)
    persistence = 1.0 + parameters.persistence_weight * math.log1p(span_days / 7)
    recency = 0.5 + 0.5 * math.pow(2.0, -age_days / half_life_days)
    seriousness = float(np.mean([parameters.seriousness.get(record.label, 1.0) if record.label else 1.0
                                 for record in records]))
    coherence = min(1.0, cohesion / parameters.full_coherence)
    heat = (volume + parameters.like_weight * math.log1p(likes)) * persistence * recency * seriousness * coherence
    return heat, volume, residents


def group_cases(records: Sequence[CaseRecord], *, now: datetime | None = None, top: int | None = None,
                grouping: GroupingParameters | None = None, heat: HeatParameters | None = None,
                tz: tzinfo | None = None) -> list[HotGroup]:
    """The period's records grouped into problems and ranked by heat (highest first); `top` keeps the first N.
    `now` (default: the latest record's time) is when recency is measured from; `tz` the time zone of the weeks
    of `HotGroup.weekly`."""
    grouping = grouping or GroupingParameters()
    heat = heat or HeatParameters()
    if not records:
        return []
    now = now or max(record.time for record in records)
    half_life_days = heat.recency_half_life_days
    if half_life_days is None:
        period_days = (max(now, *(record.time for record in records)) - min(record.time for record in records))
        half_life_days = max(7.0, period_days.total_seconds() / 86400 / 4)
    matrix = _tfidf(records, grouping)
    graph = _edges(matrix, grouping.similarity_threshold, grouping.chunk_rows, grouping.neighbours)
    clusters: list[tuple[np.ndarray, np.ndarray]] = []
    _cluster(matrix, graph, np.arange(len(records)), grouping.similarity_threshold, grouping, clusters)
    groups = []
    for members, centrality in clusters:
        if members.shape[0] < heat.min_volume:
            continue
        chosen = [records[index] for index in members]
        value, volume, residents = heat_of(chosen, now, heat, half_life_days, float(centrality.mean()))
        if volume < heat.min_volume:
            continue
        order = sorted(range(len(chosen)), key=lambda position: (chosen[position].time, str(chosen[position].id)))
        times = [record.time for record in chosen]
        groups.append(HotGroup(
            case_ids=[chosen[position].id for position in order],
            heat=value, volume=volume, residents=residents,
            likes=sum(max(0, record.likes) for record in chosen),
            first=min(times), last=max(times),
            central_id=chosen[int(np.argmax(centrality))].id,
            cohesion=float(centrality.mean()),
            labels=dict(Counter(record.label for record in chosen if record.label)),
            weekly=weekly_counts(times, tz),
        ))
    groups.sort(key=lambda group: (-group.heat, str(group.central_id)))
    return groups[:top] if top is not None else groups


def _lead(message: Message) -> str:
    """The report's title, or its first sentence when it has none."""
    if message.title.strip():
        return message.title
    return _SENTENCE.split(message.text.strip(), maxsplit=1)[0]


def _phrases(text: str) -> tuple[set[str], str | None]:
    """The phrases (2 to MAX_PHRASE characters, administrative units left out) of a normalised lead, and the
    administrative area it starts with."""
    result = set()
    area = None
    for run in _RUN.findall(normalise(text)):
        if area is None and (found := _ADMIN_AREA.search(run)) is not None:
            area = found.group(0)
        for piece in _ADMIN_UNIT.split(run):
            for start in range(len(piece)):
                for stop in range(start + 2, min(len(piece), start + MAX_PHRASE) + 1):
                    result.add(piece[start:stop])
    return result, area


def _display_form(phrase: str, originals: Sequence[str]) -> str:
    """The phrase as the reports write it (normalise lower-cases Latin letters): "a2区" → "A2区"."""
    pattern = re.compile(r"\W*".join(re.escape(char) for char in phrase), re.IGNORECASE)
    for original in originals:
        found = pattern.search(unicodedata.normalize("NFKC", original))
        if found is not None:
            return re.sub(r"\s+", "", found.group(0))
    return phrase


def _name(leads: Sequence[str]) -> str:
    """The phrase shared by most of the leads, preferring names of places and groups of people (module
    docstring), with the administrative area most leads start with in front of it."""
    coverage: Counter[str] = Counter()
    areas: Counter[str] = Counter()
    for lead in leads:
        phrases, area = _phrases(lead)
        coverage.update(phrases)
        if area:
            areas[area] += 1
    size = len(leads)
    least = max(2, math.ceil(0.3 * size)) if size > 1 else 1
    best = ""
    for endings, share in ((_PLACE_AND_PEOPLE_ENDINGS, 0.5), (_ORGANISATION_ENDINGS, 0.5), ((), 0.0)):
        required = max(least, math.ceil(share * size))
        scored = [(count * min(len(phrase), 6), len(phrase), phrase) for phrase, count in coverage.items()
                  if count >= required and (not endings or phrase.endswith(endings))]
        if scored:
            best = max(scored)[2]
            break
    if not best:
        return ""
    name = _display_form(best, leads)
    if areas:
        area, count = areas.most_common(1)[0]
        if count >= size / 2:
            name = _display_form(area, leads) + name
    return name


def _tidy(text: str) -> str:
    text = re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text)).strip()
    text = _TIDY_END.sub("", text)
    return text if len(text) <= DESCRIPTION_CHARS else text[: DESCRIPTION_CHARS - 1] + "…"


def describe(messages: Sequence[Message], central_id: Hashable) -> tuple[str, str]:
    """`place_people` and `description` of a group from its reports' readable texts (module docstring)."""
    leads = [_lead(message) for message in messages]
    central = next((message for message in messages if message.id == central_id), messages[0])
    return _name(leads), _tidy(_lead(central))


def find_hotspots(messages: Sequence[Message], top: int = 5, now: datetime | None = None, *,
                  hasher: SimilarityHasher | None = None, grouping: GroupingParameters | None = None,
                  heat: HeatParameters | None = None) -> list[Hotspot]:
    """The `top` hot issues among `messages` (all of them are the period), ranked by heat."""
    hasher = hasher or SimilarityHasher(OFFLINE_KEY)
    records = [case_record(message, hasher) for message in messages]
    groups = group_cases(records, now=now, top=top, grouping=grouping, heat=heat)
    by_id = {message.id: message for message in messages}
    hotspots = []
    for rank, group in enumerate(groups, start=1):
        members = [by_id[case_id] for case_id in group.case_ids]
        place_people, description = describe(members, group.central_id)
        hotspots.append(Hotspot(rank, group.heat, (group.first, group.last), place_people, description,
                                list(group.case_ids), group.weekly, group.residents, group.likes, group.labels))
    return hotspots

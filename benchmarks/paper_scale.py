"""Paper-scale end-to-end benchmark: Amazon-2018 files -> loader -> filters -> features ->
MuSiC (Task 2) and the inductive MICRec protocol (Electronics size), every stage timed.

    python benchmarks/paper_scale.py --out /tmp/ps                     # both pipelines, scale 1
    python benchmarks/paper_scale.py --out /tmp/ps --scale 0.02        # a quick smoke run
    python benchmarks/paper_scale.py --out /tmp/ps --only electronics
    python benchmarks/paper_scale.py --table benchmarks/results/paper_scale.json   # Markdown

What it does (issue 17, part 3):

1. **Generates** Amazon Reviews 2018 files (``<Category>.json`` reviews, ``meta_<Category>.json``
   metadata, JSON lines, the released field names) at benchmark time in ``--out`` (never
   committed): MuSiC Task 2 (Books 53,442 users / 2.77M ratings, Movies_and_TV 18,045 /
   881k, 3,545 overlapping) and a MICRec Electronics-size pair (9,729 users, 6,065 items,
   ~150k edges per domain). Structure: K latent topics; a user's topic preferences follow
   their taste vector (softmax), an item belongs to one topic and has a power-law
   popularity within it; stars come from taste x topic + item and user biases + noise,
   cut at quantiles into Amazon's skewed star distribution (so ratings are learnable:
   the run's MAE is reported next to the global-mean reference); overlapping users'
   tastes in the two domains share a component (so transfer is possible). Review text and
   item titles / descriptions / categories are drawn from per-topic vocabularies. A few
   percent of rows exist to be removed by the papers' filters (short reviews, items without
   a description, light users). Generation is vectorised numpy (item draws by one
   ``searchsorted`` over per-topic cumulative popularity) and streamed to disk in chunks.
2. **Runs** cdr's own code paths, each timed (wall and CPU s) with its peak RSS: the
   registered ``amazon2018`` provider's ``load`` (raw JSON lines -> dataset), the papers'
   filters (``apply_filters``), the Parquet store (``save_dataset`` / ``read_dataset``),
   then the registered protocol's split and each of its stages in order, exactly as
   ``cdr.pipelines.context.run_protocol`` runs them (the context is built as
   ``make_context`` builds it, from the dataset read back from the store). Task 2: the
   ``cold-start`` protocol with ``id`` features and the ``ddpm`` generator, early stopping
   on validation RMSE ("to convergence"); ``plm`` (MiniLM) on a sample of Books items
   (items/s), when its weights are installed. Electronics: the ``inductive`` protocol with
   INMO (multimodal, ``plm`` text) + InfoNCE for ``--micrec-epochs`` epochs; the epoch time is
   read off the training loop's per-epoch progress reports.
3. **Writes** a JSON (machine, threads, torch, scale, the generated and filtered counts,
   per-stage wall / CPU / peak RSS, the targets and whether they pass) and prints a table.

Peak RSS: the kernel's per-process high-water mark (``VmHWM``), reset at the start of every
stage by writing ``5`` to ``/proc/self/clear_refs`` (Linux >= 4.0), so each stage's peak is
its own; where the reset is refused the figure is the process's high-water mark so far (the
JSON says which). ``rss_increase_gib`` is that peak minus the RSS when the stage started.

Targets (issue 17; checked only at ``--scale 1``, recorded as ``null`` otherwise): Task-2
load + filters < 60 s; MuSiC training (stages 0, 1, 2) to convergence < 10 min; evaluation
of all cold-start test users (the ``test`` stage) < 30 s; peak RSS of the pipeline < 8 GiB;
one MICRec epoch at Electronics size < 5 s. All are wall times on the machine as found (a
shared 2-core CPU here: the load average is recorded at the start and end of each stage).

Deviations from the papers' setups, and why:

- MuSiC drops items without an image; the ``amazon2018`` loader never fetches images (only
  a local ``image_dir``), and writing ~500k image files measures the file system, not cdr,
  so the generated sets have no images and ``require_image`` is off.
- The papers do not give Task 2's item counts in the issue: Movies_and_TV uses MuSiC Table
  1's 156,884 items (Task 1's Movies domain), Books an assumed 360,000 (~7.7 ratings an
  item). The MICRec pair's second domain (Cell_Phones_and_Accessories) is given the
  Electronics shape, with an assumed 3,000 overlapping users; its filter is a 5-core.
- Counts are the generated (pre-filter) sizes; the filters remove a few percent, so the
  filtered counts (in the JSON) are slightly below the papers'.
- Stage 1 (side users) has no validation in cdr's protocol, so its budget is fixed
  (``--stage1-epochs``); stages 0 and 2 stop early (patience 5, at most 100 epochs).
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

import attrs
import numpy as np
import torch

from cdr.components import BuildContext
from cdr.composition import plan
from cdr.config import ExperimentConfig, load_experiment
from cdr.container import build_container
from cdr.data.filters import apply_filters, restrict
from cdr.data.records import CrossDomainDataset
from cdr.data.store import read_dataset, save_dataset
from cdr.device import resolve_device
from cdr.encoders.features import compute_features
from cdr.encoders.plm import PlmConfig
from cdr.errors import CdrError
from cdr.pipelines.context import PROTOCOL, RunContext, RunState
from cdr.registry import Registry
from cdr.runs import write_json
from cdr.seeding import seed_everything

GIB = 2**30
#: seconds of 2005-01-01 and 2018-10-01 (UTC): the review dates
FIRST_DAY, LAST_DAY = 1_104_537_600, 1_538_352_000
DAY = 86_400
#: the issue's targets (wall s, GiB); checked at scale 1 only
TARGETS = {
    "task2/load_and_filters_s": 60.0,
    "task2/music_training_s": 600.0,
    "task2/cold_start_evaluation_s": 30.0,
    "peak_rss_gib": 8.0,
    "electronics/micrec_epoch_s": 5.0,
}

# -- shapes ---------------------------------------------------------------------------------


@attrs.frozen
class DomainShape:
    """One Amazon category at paper size: users, items and ratings (before filtering)."""

    category: str
    users: int
    items: int
    ratings: int
    topics: tuple[str, ...]


@attrs.frozen
class PairShape:
    """Two categories sharing ``overlap`` users; the filters the paper applies to them.

    min_per_user: the fewest ratings a regular user gets in a domain (so the paper's user
    filter keeps them); light_users: extra users per domain below it (the filter's prey);
    short_reviews / no_description: shares of reviews under 10 words / items without a
    description; popularity: the power-law exponent and offset of item popularity.
    """

    name: str
    source: DomainShape
    target: DomainShape
    overlap: int
    filters: dict[str, Any]
    min_per_user: int
    light_users: float = 0.03
    short_reviews: float = 0.02
    no_description: float = 0.015
    popularity: tuple[float, float] = (0.9, 20.0)

    def scaled(self, scale: float) -> PairShape:
        """Users, items, ratings and overlap times ``scale`` (ratings per user unchanged)."""

        def dom(d: DomainShape) -> DomainShape:
            users = max(40, round(d.users * scale))
            return attrs.evolve(
                d,
                users=users,
                items=max(60, round(d.items * scale)),
                ratings=round(d.ratings * users / d.users),
            )

        overlap = max(20, round(self.overlap * scale))
        return attrs.evolve(self, source=dom(self.source), target=dom(self.target), overlap=overlap)


BOOK_TOPICS = (
    "Literature & Fiction",
    "Mystery, Thriller & Suspense",
    "Romance",
    "Science Fiction & Fantasy",
    "Biographies & Memoirs",
    "History",
    "Children's Books",
    "Teen & Young Adult",
    "Cookbooks, Food & Wine",
    "Religion & Spirituality",
    "Business & Money",
    "Self-Help",
    "Health, Fitness & Dieting",
    "Politics & Social Sciences",
    "Arts & Photography",
    "Science & Math",
)
MOVIE_TOPICS = (
    "Drama",
    "Comedy",
    "Action & Adventure",
    "Science Fiction",
    "Horror",
    "Documentary",
    "Kids & Family",
    "Romance",
    "Mystery & Thrillers",
    "Musicals & Performing Arts",
    "Westerns",
    "Anime & Manga",
    "TV",
    "Fitness & Yoga",
    "Classics",
    "Independent",
)
ELECTRONICS_TOPICS = (
    "Headphones",
    "Computers & Accessories",
    "Camera & Photo",
    "Television & Video",
    "Car Electronics",
    "Portable Audio & Video",
    "Home Audio",
    "Power Accessories",
    "GPS & Navigation",
    "Security & Surveillance",
    "Wearable Technology",
    "eBook Readers",
)
PHONE_TOPICS = (
    "Cases",
    "Screen Protectors",
    "Chargers & Power Adapters",
    "Cables",
    "Bluetooth Headsets",
    "Car Accessories",
    "Batteries",
    "Mounts & Stands",
    "Styluses",
    "Replacement Parts",
    "Unlocked Cell Phones",
    "Smartwatches",
)

TASK2 = PairShape(
    "task2",
    DomainShape("Books", 53_442, 360_000, 2_770_000, BOOK_TOPICS),
    DomainShape("Movies_and_TV", 18_045, 156_884, 881_000, MOVIE_TOPICS),
    overlap=3_545,
    filters={"min_review_words": 10, "require_description": True, "min_user_interactions": 20},
    min_per_user=20,
)
ELECTRONICS = PairShape(
    "electronics",
    DomainShape("Electronics", 9_729, 6_065, 150_000, ELECTRONICS_TOPICS),
    DomainShape("Cell_Phones_and_Accessories", 9_729, 6_065, 150_000, PHONE_TOPICS),
    overlap=3_000,
    filters={"k_core": 5},
    min_per_user=5,
    popularity=(0.7, 60.0),
)
PAIRS = {"task2": TASK2, "electronics": ELECTRONICS}

# -- text ------------------------------------------------------------------------------------

SYLLABLES = (
    "ka",
    "lo",
    "mi",
    "ra",
    "ten",
    "vor",
    "sel",
    "dun",
    "pa",
    "qui",
    "bri",
    "mo",
    "zen",
    "tal",
    "nor",
    "fe",
    "gra",
    "lin",
    "hum",
    "ose",
    "ver",
    "ast",
    "ci",
    "dre",
)
COMMON = (
    "the",
    "a",
    "this",
    "it",
    "and",
    "was",
    "is",
    "very",
    "really",
    "story",
    "quality",
    "would",
    "recommend",
    "again",
    "one",
    "of",
    "my",
    "for",
    "with",
    "but",
    "so",
    "more",
    "than",
    "expected",
    "all",
    "time",
    "first",
    "read",
    "watched",
    "bought",
    "great",
    "good",
)
OPENINGS = {
    1: "Disappointing and a waste of money,",
    2: "Not what I hoped for,",
    3: "It was okay overall,",
    4: "Really enjoyed this one,",
    5: "Absolutely loved it, one of the best,",
}
SUMMARIES = {
    1: ("One Star", "Terrible", "Do not buy"),
    2: ("Two Stars", "Meh", "Not great"),
    3: ("Three Stars", "Okay", "Average"),
    4: ("Four Stars", "Good", "Worth it"),
    5: ("Five Stars", "Excellent", "A must have"),
}
SHORT_REVIEWS = (
    "Great.",
    "Loved it!",
    "Not for me.",
    "Five stars",
    "As described.",
    "Good value",
    "Arrived late.",
    "Meh",
)
NAMES = (
    "Alex",
    "Sam",
    "Jordan",
    "Taylor",
    "Chris",
    "Pat",
    "Morgan",
    "Casey",
    "Jamie",
    "Robin",
    "Lee",
    "Dana",
    "Kim",
    "Terry",
    "Avery",
    "Quinn",
)
VARIANTS = 6  # review texts per (topic, stars)
TOPIC_WORDS = 48


def _vocabulary(rng: np.random.Generator, topics: int) -> list[list[str]]:
    """``topics`` lists of made-up words (2-3 syllables), disjoint between topics."""
    seen: set[str] = set()
    out: list[list[str]] = []
    for _ in range(topics):
        words: list[str] = []
        while len(words) < TOPIC_WORDS:
            word = "".join(rng.choice(SYLLABLES, size=int(rng.integers(2, 4))))
            if word not in seen:
                seen.add(word)
                words.append(word)
        out.append(words)
    return out


def _review_pool(rng: np.random.Generator, vocab: list[list[str]]) -> list[str]:
    """Texts indexed by ``(topic * 5 + stars - 1) * VARIANTS + variant``; 12-45 words each."""
    pool: list[str] = []
    for words in vocab:
        for stars in range(1, 6):
            for _ in range(VARIANTS):
                n = int(rng.integers(10, 40))
                body = rng.choice(np.array(words + list(COMMON)), size=n)
                pool.append(f"{OPENINGS[stars]} {' '.join(body)}.")
    return pool


def _base36(values: np.ndarray, width: int) -> np.ndarray:
    """Upper-case base-36 strings of ``width`` characters ([N] unicode), vectorised."""
    alphabet = np.frombuffer(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", dtype=np.uint8)
    digits = np.empty((len(values), width), dtype=np.uint8)
    rest = values.astype(np.int64).copy()
    for col in range(width - 1, -1, -1):
        digits[:, col] = alphabet[rest % 36]
        rest //= 36
    return digits.view(f"S{width}").ravel().astype(f"U{width}")


def _user_ids(count: int) -> np.ndarray:
    """Amazon-like reviewer ids ("A" + 13 base-36 characters), unique: an affine bijection
    of the index modulo 36^10 (the multiplier is coprime to 36)."""
    mixed = (np.arange(count, dtype=np.int64) * 1_000_003 + 7_777_777) % (36**10)
    return np.char.add("A3", _base36(mixed, 12))


def _item_ids(category: str, count: int, salt: int) -> np.ndarray:
    """ISBN-10-like ids for Books, "B" + 9 base-36 characters otherwise (unique)."""
    mixed = (np.arange(count, dtype=np.int64) * 998_244_353 + salt * 10_007) % (36**9)
    if category == "Books":
        return np.char.zfill((mixed % 10**10).astype("U10"), 10)
    return np.char.add("B", _base36(mixed, 9))


# -- generation -------------------------------------------------------------------------------


@attrs.frozen
class DomainDraw:
    """One generated domain: interactions [E] and item attributes [I]."""

    users: np.ndarray  # [E] global user index
    items: np.ndarray  # [E] item index
    stars: np.ndarray  # [E] 1..5
    days: np.ndarray  # [E] unix seconds at midnight
    texts: np.ndarray  # [E] review pool index (-1 - i: short review i)
    item_topic: np.ndarray  # [I]


def _activity(rng: np.random.Generator, users: int, mean: float, floor: int) -> np.ndarray:
    """[users] ratings per user: ``floor`` + a long (log-normal) tail, mean ``mean``."""
    tail = rng.lognormal(0.0, 1.0, size=users)
    extra = max(mean - floor, 0.5)
    return floor + np.floor(tail * extra / tail.mean() + rng.random(users)).astype(np.int64)


def draw_domain(
    rng: np.random.Generator,
    shape: DomainShape,
    pair: PairShape,
    domain_users: np.ndarray,
    taste: np.ndarray,
) -> DomainDraw:
    """Interactions of ``domain_users`` (regular users; light users appended by the caller).

    taste: [U_global, K] this domain's taste vectors. Per interaction: a topic drawn from
    softmax(2 * taste[user]) (Gumbel-max), an item of that topic by its popularity, stars
    from taste[user, topic] + item and user biases + noise cut at Amazon-like quantiles.
    """
    k = len(shape.topics)
    num_items = shape.items
    item_topic = rng.integers(0, k, size=num_items)
    alpha, offset = pair.popularity
    popularity = (rng.permutation(num_items) + offset) ** -alpha  # [I]
    order = np.argsort(item_topic, kind="stable")  # items grouped by topic
    sorted_topic = item_topic[order]
    bounds = np.searchsorted(sorted_topic, np.arange(k + 1))  # [K + 1] topic slices
    cum = np.cumsum(popularity[order])
    start_cum = np.concatenate([[0.0], cum])[bounds[:-1]]  # [K] mass before each topic
    mass = cum[bounds[1:] - 1] - start_cum  # [K] (every topic has items: I >> K)
    key = sorted_topic + (cum - start_cum[sorted_topic]) / mass[sorted_topic]  # in (t, t+1]

    per_user = _activity(
        rng, len(domain_users), shape.ratings / len(domain_users), pair.min_per_user
    )
    users = np.repeat(domain_users, per_user)  # [E]
    topics = np.empty(len(users), dtype=np.int64)
    for lo in range(0, len(users), 1 << 20):  # [chunk, K] Gumbel-max in 1M-row chunks
        chunk = users[lo : lo + (1 << 20)]
        logits = 2.0 * taste[chunk] - np.log(-np.log(rng.random((len(chunk), k))))
        topics[lo : lo + len(chunk)] = logits.argmax(1)
    pos = np.searchsorted(key, topics + rng.random(len(users)), side="left")
    pos = np.clip(pos, bounds[topics], bounds[topics + 1] - 1)
    items = order[pos]
    _, first = np.unique(users * num_items + items, return_index=True)  # one row per pair
    first.sort()
    users, items, topics = users[first], items[first], topics[first]

    item_bias = rng.normal(0.0, 0.5, size=(num_items,))
    user_bias = rng.normal(0.0, 0.4, size=(taste.shape[0],))
    score = (
        1.5 * taste[users, topics]
        + item_bias[items]
        + user_bias[users]
        + rng.normal(0.0, 0.5, size=len(users))
    )
    cuts = np.quantile(score, [0.06, 0.11, 0.21, 0.42])  # Amazon: ~58% five stars
    stars = np.searchsorted(cuts, score) + 1
    days = FIRST_DAY + DAY * rng.integers(0, (LAST_DAY - FIRST_DAY) // DAY, size=len(users))
    texts = (topics * 5 + stars - 1) * VARIANTS + rng.integers(0, VARIANTS, size=len(users))
    short = rng.random(len(users)) < pair.short_reviews
    texts[short] = -1 - rng.integers(0, len(SHORT_REVIEWS), size=int(short.sum()))
    return DomainDraw(users, items, stars, days, texts, item_topic)


def _light_rows(
    rng: np.random.Generator, light: np.ndarray, pair: PairShape, num_items: int, k: int
) -> DomainDraw:
    """Users with fewer ratings than the paper's user filter keeps (1..min_per_user-1)."""
    per_user = rng.integers(1, max(pair.min_per_user, 2), size=len(light))
    users = np.repeat(light, per_user)
    items = rng.integers(0, num_items, size=len(users))
    _, first = np.unique(users * num_items + items, return_index=True)
    first.sort()
    users, items = users[first], items[first]
    n = len(users)
    stars = rng.integers(1, 6, size=n)
    topics = rng.integers(0, k, size=n)
    days = FIRST_DAY + DAY * rng.integers(0, (LAST_DAY - FIRST_DAY) // DAY, size=n)
    texts = (topics * 5 + stars - 1) * VARIANTS + rng.integers(0, VARIANTS, size=n)
    return DomainDraw(users, items, stars, days, texts, np.empty(0, dtype=np.int64))


def _review_time(days: np.ndarray) -> np.ndarray:
    """Amazon 2018's ``reviewTime`` ("MM DD, YYYY") per row, formatted once per distinct day."""
    unique, inverse = np.unique(days, return_inverse=True)
    text = [
        dt.datetime.fromtimestamp(int(d), dt.UTC).strftime("%m %d, %Y").lstrip("0") for d in unique
    ]
    return np.asarray(text, dtype=object)[inverse]


CHUNK = 200_000


def write_reviews(
    path: Path,
    draw: DomainDraw,
    user_ids: np.ndarray,
    item_ids: np.ndarray,
    pool: list[str],
    rng: np.random.Generator,
) -> int:
    """The reviews file, rows grouped by item as in the released dumps; returns the rows."""
    order = np.lexsort((draw.days, draw.items))
    texts_all = np.asarray(pool + list(reversed(SHORT_REVIEWS)), dtype=object)
    # a short review i is stored as -1 - i, i.e. index len(texts_all) - 1 - i
    summaries = [s for stars in range(1, 6) for s in SUMMARIES[stars]]
    summary_all = np.asarray(summaries, dtype=object)
    names = np.asarray([f"{n} {chr(65 + i)}." for n in NAMES for i in range(26)], dtype=object)
    with path.open("w", encoding="utf-8") as fh:
        for lo in range(0, len(order), CHUNK):
            rows = order[lo : lo + CHUNK]
            users, stars = draw.users[rows], draw.stars[rows]
            days = draw.days[rows]
            summary = summary_all[(stars - 1) * 3 + rng.integers(0, 3, size=len(rows))]
            verified = np.where(rng.random(len(rows)) < 0.8, "true", "false")
            columns = zip(
                stars.tolist(),
                verified.tolist(),
                _review_time(days).tolist(),
                user_ids[users].tolist(),
                item_ids[draw.items[rows]].tolist(),
                names[users % len(names)].tolist(),
                texts_all[draw.texts[rows]].tolist(),
                summary.tolist(),
                days.tolist(),
                strict=True,
            )
            fh.write(
                "".join(
                    f'{{"overall": {r}.0, "verified": {v}, "reviewTime": "{rt}", "reviewerID": '
                    f'"{u}", "asin": "{a}", "reviewerName": "{n}", "reviewText": "{t}", '
                    f'"summary": "{s}", "unixReviewTime": {d}}}\n'
                    for r, v, rt, u, a, n, t, s, d in columns
                )
            )
    return len(order)


def write_metadata(
    path: Path,
    shape: DomainShape,
    pair: PairShape,
    item_topic: np.ndarray,
    item_ids: np.ndarray,
    vocab: list[list[str]],
    rng: np.random.Generator,
) -> int:
    """``meta_<Category>.json``: title, description (a list, empty for a few items),
    category path, brand, price, image URLs; one line per item."""
    num_items = len(item_topic)
    words = np.asarray(vocab, dtype=object)  # [K, TOPIC_WORDS]
    title_words = words[item_topic[:, None], rng.integers(0, TOPIC_WORDS, size=(num_items, 4))]
    n_title = rng.integers(2, 5, size=num_items)
    desc_pool = [
        " ".join(rng.choice(np.array(words + list(COMMON)), size=int(rng.integers(15, 60)))) + "."
        for words in vocab
        for _ in range(VARIANTS)
    ]
    desc_all = np.asarray(desc_pool, dtype=object)
    desc = desc_all[item_topic * VARIANTS + rng.integers(0, VARIANTS, size=num_items)]
    no_desc = rng.random(num_items) < pair.no_description
    topics = np.asarray(shape.topics, dtype=object)[item_topic]
    main = shape.category.replace("_", " ").replace(" and ", " & ")
    brands = np.asarray([w.capitalize() for w in vocab[0][:20]], dtype=object)
    brand = brands[rng.integers(0, len(brands), size=num_items)]
    price = rng.integers(199, 9999, size=num_items)
    image = _base36(rng.integers(0, 36**10, size=num_items), 10)
    with path.open("w", encoding="utf-8") as fh:
        for lo in range(0, num_items, CHUNK):
            hi = min(lo + CHUNK, num_items)
            lines = []
            for i in range(lo, hi):  # items are few next to reviews; one f-string each
                title = " ".join(title_words[i, : n_title[i]]).title()
                description = "[]" if no_desc[i] else f'["{desc[i]}"]'
                lines.append(
                    f'{{"category": ["{main}", "{topics[i]}"], "tech1": "", "description": '
                    f'{description}, "fit": "", "title": "{title}", "also_buy": [], '
                    f'"image": [], "tech2": "", "brand": "{brand[i]}", "feature": [], '
                    f'"rank": "", "also_view": [], "details": {{}}, "main_cat": "{main}", '
                    f'"similar_item": "", "date": "", "price": "${price[i] // 100}.'
                    f'{price[i] % 100:02d}", "asin": "{item_ids[i]}", "imageURLHighRes": '
                    f'["https://images-na.ssl-images-amazon.com/images/I/{image[i]}.jpg"]}}\n'
                )
            fh.write("".join(lines))
    return num_items


def generate_pair(pair: PairShape, directory: Path, seed: int = 0) -> dict[str, Any]:
    """Write the four files of ``pair`` into ``directory``; returns the generated counts."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    src, tgt = pair.source, pair.target
    overlap = min(pair.overlap, src.users, tgt.users)
    regular = src.users + tgt.users - overlap
    light_src = round(src.users * pair.light_users)
    light_tgt = round(tgt.users * pair.light_users)
    num_users = regular + light_src + light_tgt
    user_ids = _user_ids(num_users)[rng.permutation(num_users)]
    k = max(len(src.topics), len(tgt.topics))
    shared = rng.normal(size=(num_users, k))
    w = 0.6  # share of a user's taste common to both domains
    tastes = [
        np.sqrt(w) * shared + np.sqrt(1 - w) * rng.normal(size=(num_users, k)) for _ in range(2)
    ]
    # users 0..overlap-1 are in both domains, then source-only, target-only, light users
    members = (
        np.arange(src.users),
        np.concatenate([np.arange(overlap), np.arange(src.users, regular)]),
    )
    light = (
        np.arange(regular, regular + light_src),
        np.arange(regular + light_src, num_users),
    )
    counts: dict[str, Any] = {"users": num_users, "overlapping_users": overlap}
    for role, shape, taste, users, extra, salt in zip(
        ("source", "target"), (src, tgt), tastes, members, light, (1, 2), strict=True
    ):
        kk = len(shape.topics)
        draw = draw_domain(rng, shape, pair, users, taste[:, :kk])
        lite = _light_rows(rng, extra, pair, shape.items, kk)
        both = DomainDraw(
            users=np.concatenate([draw.users, lite.users]),
            items=np.concatenate([draw.items, lite.items]),
            stars=np.concatenate([draw.stars, lite.stars]),
            days=np.concatenate([draw.days, lite.days]),
            texts=np.concatenate([draw.texts, lite.texts]),
            item_topic=draw.item_topic,
        )
        vocab = _vocabulary(rng, kk)
        item_ids = _item_ids(shape.category, shape.items, salt)
        rows = write_reviews(
            directory / f"{shape.category}.json",
            both,
            user_ids,
            item_ids,
            _review_pool(rng, vocab),
            rng,
        )
        items = write_metadata(
            directory / f"meta_{shape.category}.json",
            shape,
            pair,
            draw.item_topic,
            item_ids,
            vocab,
            rng,
        )
        counts[role] = {
            "category": shape.category,
            "users": len(users) + len(extra),
            "items": items,
            "ratings": rows,
            "reviews_bytes": (directory / f"{shape.category}.json").stat().st_size,
        }
    return counts


# -- measuring --------------------------------------------------------------------------------


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _reset_peak() -> bool:
    """Reset this process's VmHWM to its current RSS (Linux clear_refs 5)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


@attrs.define
class StageRecord:
    pipeline: str
    stage: str
    wall_s: float
    cpu_s: float
    peak_rss_gib: float
    rss_increase_gib: float
    rss_after_gib: float
    load_avg_start: float
    load_avg_end: float
    info: dict[str, Any] = attrs.field(factory=dict)


class Meter:
    """Times stages and records each one's peak RSS (see the module docstring)."""

    def __init__(self, out: TextIO | None = sys.stderr) -> None:
        self.records: list[StageRecord] = []
        self.peak_is_per_stage = _reset_peak()
        self.out = out

    @contextmanager
    def stage(self, pipeline: str, name: str) -> Iterator[dict[str, Any]]:
        if self.peak_is_per_stage:
            _reset_peak()
        rss0 = _status_kib("VmRSS")
        load0 = os.getloadavg()[0]
        wall, cpu = time.perf_counter(), time.process_time()
        info: dict[str, Any] = {}
        yield info
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        peak = _status_kib("VmHWM")
        record = StageRecord(
            pipeline,
            name,
            wall,
            cpu,
            peak / 2**20,
            (peak - rss0) / 2**20,
            _status_kib("VmRSS") / 2**20,
            load0,
            os.getloadavg()[0],
            info,
        )
        self.records.append(record)
        if self.out is not None:
            print(
                f"[{pipeline}] {name}: {wall:.1f} s wall, {cpu:.1f} s CPU, peak RSS "
                f"{record.peak_rss_gib:.2f} GiB",
                file=self.out,
                flush=True,
            )


class TimingReporter:
    """A cdr ``Reporter`` that keeps (time, task, advance, total) of every call."""

    def __init__(self) -> None:
        self.events: list[tuple[float, str, int, int | None]] = []

    def __call__(
        self, task: str, advance: int = 1, total: int | None = None, **info: float
    ) -> None:
        self.events.append((time.perf_counter(), task, advance, total))

    def epochs(self, task: str) -> list[float]:
        """Seconds of each epoch of the training stage reporting as ``task``: the loop
        reports once when it starts (with the budget as total) and once after each epoch
        (training steps, validation, checkpoint)."""
        times = [t for t, name, _, _ in self.events if name == task]
        return [b - a for a, b in itertools.pairwise(times)]

    def span(self, prefix: str) -> float:
        """Seconds from the first to the last report of the tasks starting with ``prefix``."""
        times = [t for t, name, _, _ in self.events if name.startswith(prefix)]
        return times[-1] - times[0] if times else 0.0


# -- pipelines --------------------------------------------------------------------------------


def _minilm_installed() -> bool:
    from cdr.encoders.weights import minilm_dir

    try:
        minilm_dir()
    except CdrError:
        return False
    return True


def _config(
    pair: PairShape, data_dir: Path, out: Path, overrides: Sequence[str]
) -> ExperimentConfig:
    base = [
        "dataset.kind=amazon2018",
        f"dataset.directory={data_dir}",
        f"dataset.source={pair.source.category}",
        f"dataset.target={pair.target.category}",
        f"output_dir={out / 'runs'}",
        "device=cpu",
        *(f"dataset.filters.{k}={json.dumps(v)}" for k, v in pair.filters.items()),
    ]
    return load_experiment(None, Registry(), [*base, *overrides])


def _counts(dataset: CrossDomainDataset) -> dict[str, Any]:
    return {
        "users": dataset.num_users,
        "overlapping_users": int(dataset.overlapping_users().numel()),
        "source": {
            "users": int(dataset.source.interactions.user.unique().numel()),
            "items": dataset.source.num_items,
            "ratings": len(dataset.source.interactions),
        },
        "target": {
            "users": int(dataset.target.interactions.user.unique().numel()),
            "items": dataset.target.num_items,
            "ratings": len(dataset.target.interactions),
        },
    }


def prepare(
    meter: Meter, pair: PairShape, cfg: ExperimentConfig, out: Path, registry: Registry
) -> tuple[CrossDomainDataset, dict[str, Any]]:
    """Generate, load, filter, store and reload one pair; each step timed."""
    name = pair.name
    data_dir = Path(cfg.dataset.directory)  # type: ignore[attr-defined]
    summary: dict[str, Any] = {}
    with meter.stage(name, "generate Amazon-2018 files (not cdr)") as info:
        summary["generated"] = generate_pair(pair, data_dir)
        info["lines"] = sum(
            summary["generated"][r]["ratings"] + summary["generated"][r]["items"]
            for r in ("source", "target")
        )
    provider = registry.get("datasets", cfg.dataset.kind).build(cfg.dataset, BuildContext())
    with meter.stage(name, "load (amazon2018: JSON lines -> dataset)") as info:
        dataset = provider.load()
        info["ratings"] = len(dataset.source.interactions) + len(dataset.target.interactions)
    with meter.stage(name, "filters") as info:
        filtered, reports = apply_filters(dataset, cfg.dataset.filters)  # type: ignore[attr-defined]
        info["removed"] = {f"{r.domain}: {r.filter}": r.removed_interactions for r in reports}
    del dataset
    summary["filtered"] = _counts(filtered)
    store = out / "store" / name
    with meter.stage(name, "store: write Parquet"):
        save_dataset(filtered, store, source=provider.source, filters=reports)
    del filtered
    with meter.stage(name, "store: read Parquet"):
        dataset = read_dataset(store)
    return dataset, summary


def run_protocol_timed(
    meter: Meter,
    name: str,
    cfg: ExperimentConfig,
    dataset: CrossDomainDataset,
    registry: Registry,
    reporter: TimingReporter,
) -> dict[str, float]:
    """``cdr.pipelines.context.run_protocol`` with each step timed (same calls, same order;
    the context is ``make_context``'s, with the dataset already read from the store)."""
    protocol = plan(cfg, registry)
    run_dir = Path(cfg.output_dir) / f"{name}-{dt.datetime.now():%Y%m%d-%H%M%S}"
    run_dir.mkdir(parents=True)
    seed_everything(cfg.seed)
    ctx = RunContext(
        cfg,
        registry,
        run_dir,
        resolve_device(cfg.device),
        dataset,
        reporter,
        build_container(cfg, registry),
    )
    write_json(run_dir / PROTOCOL, protocol.describe())
    with meter.stage(name, f"split ({protocol.split_kind})"):
        state = RunState(split=protocol.split(ctx.dataset, cfg.split))
    for stage in protocol.stages:
        with meter.stage(name, stage.name):
            state = stage.run(ctx, state)
    return state.metrics


def plm_sample(
    meter: Meter, dataset: CrossDomainDataset, registry: Registry, out: Path, size: int
) -> dict[str, Any]:
    """``plm`` (MiniLM) item features of ``size`` random auxiliary-domain items; items/s."""
    domain = dataset.source
    size = min(size, domain.num_items)
    gen = torch.Generator().manual_seed(0)
    keep = torch.zeros(domain.num_items, dtype=torch.bool)
    keep[torch.randperm(domain.num_items, generator=gen)[:size]] = True
    sample = restrict(domain, torch.ones(len(domain.interactions), dtype=torch.bool), keep)
    reporter = TimingReporter()
    config = PlmConfig()
    with meter.stage("task2", f"plm features: {size} {domain.name} items") as info:
        start = time.perf_counter()
        features = compute_features(
            config, registry, sample, "item", cache_root=out / "features-plm", reporter=reporter
        )
        seconds = time.perf_counter() - start
        info["items_per_s"] = size / seconds
    # steady rate: from the first batch's report (the model is loaded) to the last
    batches = [
        (t, advance)
        for t, task, advance, _ in reporter.events
        if task.startswith("encode ") and advance > 0
    ]
    steady = None
    if len(batches) >= 2:
        later = sum(advance for _, advance in batches[1:])
        steady = later / (batches[-1][0] - batches[0][0])
    return {
        "items": size,
        "seconds": seconds,
        "items_per_s": size / seconds,
        "items_per_s_after_first_batch": steady,
        "batch_size": config.batch_size,
        "dim": int(features.shape[1]),
    }


def task2(meter: Meter, out: Path, scale: float, args: argparse.Namespace) -> dict[str, Any]:
    pair = TASK2.scaled(scale)
    registry = Registry()
    cfg = _config(
        pair,
        out / "data" / "task2",
        out,
        [
            "name=task2-music",
            "split.kind=cold-start",
            f"split.beta={args.beta}",
            "encoders.item.kind=id",
            "encoders.user.kind=id",
            "generator.kind=ddpm",
            "backbone.kind=none",
            "aligner.kind=none",
            f"trainer.epochs={args.max_epochs}",
            f"trainer.patience={args.patience}",
            f"trainer.stage1_epochs={args.stage1_epochs}",
        ],
    )
    dataset, summary = prepare(meter, pair, cfg, out, registry)
    reporter = TimingReporter()
    os.chdir(out)  # the feature cache (.cache/features) lives under --out, fresh each run
    metrics = run_protocol_timed(meter, "task2", cfg, dataset, registry, reporter)
    summary["epochs"] = {
        task: len(reporter.epochs(task))
        for task in ("stage 0: target space", "stage 1: side users", "stage 2: overlapping users")
    }
    summary["metrics"] = {
        k: metrics[k]
        for k in sorted(metrics)
        if k in ("mae", "rmse", "ndcg@20", "rated_ndcg@20", "val_rmse")
        or (k.startswith("ref/") and k.endswith(("/mae", "/rmse")))
    }
    if args.plm_sample and _minilm_installed():
        summary["plm_sample"] = plm_sample(meter, dataset, registry, out, args.plm_sample)
    else:
        summary["plm_sample"] = None
    return summary


def electronics(meter: Meter, out: Path, scale: float, args: argparse.Namespace) -> dict[str, Any]:
    pair = ELECTRONICS.scaled(scale)
    registry = Registry()
    multimodal = _minilm_installed()
    cfg = _config(
        pair,
        out / "data" / "electronics",
        out,
        [
            "name=electronics-micrec",
            "split.kind=inductive",
            "split.unseen_item_fraction=0.2",
            "generator.kind=none",
            "backbone.kind=inmo",
            f"backbone.multimodal={'true' if multimodal else 'false'}",
            "aligner.kind=infonce",
            f"trainer.epochs={args.micrec_epochs}",
            f"trainer.patience={args.micrec_epochs}",
            "trainer.batch_size=2048",
            "trainer.lr=0.005",
            "trainer.dim=64",
        ],
    )
    dataset, summary = prepare(meter, pair, cfg, out, registry)
    reporter = TimingReporter()
    os.chdir(out)
    metrics = run_protocol_timed(meter, "electronics", cfg, dataset, registry, reporter)
    epochs = reporter.epochs("train epoch")
    summary["epoch_s"] = epochs
    summary["item_text_encoding_s"] = reporter.span("encode ") if multimodal else None
    summary["multimodal"] = multimodal
    summary["metrics"] = {
        k: v for k, v in sorted(metrics.items()) if k.endswith("ndcg@20") and k.count("/") <= 2
    }
    return summary


# -- report -----------------------------------------------------------------------------------


def _machine(threads: int) -> dict[str, Any]:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu_model": model,
        "cores": os.cpu_count(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB, 1),
        "threads": threads,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def _stage_sum(records: list[StageRecord], pipeline: str, prefixes: Sequence[str]) -> float:
    return sum(
        r.wall_s for r in records if r.pipeline == pipeline and r.stage.startswith(tuple(prefixes))
    )


def evaluate_targets(
    records: list[StageRecord], pipelines: dict[str, Any], full_scale: bool
) -> dict[str, dict[str, Any]]:
    """Each target's measured value and whether it passes (None below scale 1)."""
    found: dict[str, float] = {}
    if "task2" in pipelines:
        found["task2/load_and_filters_s"] = _stage_sum(records, "task2", ("load", "filters"))
        found["task2/music_training_s"] = _stage_sum(
            records, "task2", ("stage 0", "stage 1", "stage 2")
        )
        found["task2/cold_start_evaluation_s"] = _stage_sum(records, "task2", ("test",))
    if "electronics" in pipelines and pipelines["electronics"]["epoch_s"]:
        epochs = sorted(pipelines["electronics"]["epoch_s"])
        found["electronics/micrec_epoch_s"] = epochs[len(epochs) // 2]
    cdr_stages = [r for r in records if not r.stage.startswith("generate")]
    if cdr_stages:
        found["peak_rss_gib"] = max(r.peak_rss_gib for r in cdr_stages)
    return {
        key: {
            "value": value,
            "target": TARGETS[key],
            "passed": (value <= TARGETS[key]) if full_scale else None,
        }
        for key, value in found.items()
    }


def write_results(
    path: Path, meter: Meter, pipelines: dict[str, Any], scale: float, threads: int
) -> dict[str, Any]:
    data = {
        "about": "written by benchmarks/paper_scale.py (issue 17, part 3); wall and CPU "
        "seconds and peak RSS (VmHWM) of every stage; targets are checked at scale 1 only",
        "measured": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": _machine(threads),
        "scale": scale,
        "peak_rss_is_per_stage": meter.peak_is_per_stage,
        "pipelines": pipelines,
        "stages": [attrs.asdict(r) for r in meter.records],
        "targets": evaluate_targets(meter.records, pipelines, math.isclose(scale, 1.0)),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, default=_json_default) + "\n")
    return data


def _json_default(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return str(value)


def markdown(data: dict[str, Any]) -> str:
    """The stage table and the targets as Markdown (for docs/scale.md)."""
    lines = [
        "| pipeline | stage | wall s | CPU s | peak RSS GiB | RSS increase GiB |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in data["stages"]:
        lines.append(
            f"| {r['pipeline']} | {r['stage']} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} "
            f"| {r['peak_rss_gib']:.2f} | {r['rss_increase_gib']:.2f} |"
        )
    lines += ["", "| target | measured | target | passed |", "|---|---:|---:|---|"]
    for key, t in data["targets"].items():
        passed = {True: "yes", False: "**no**", None: "n/a (scale < 1)"}[t["passed"]]
        lines.append(f"| {key} | {t['value']:.2f} | {t['target']:g} | {passed} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, help="work directory (generated files, runs)")
    parser.add_argument("--scale", type=float, default=1.0, help="size factor (1 = the papers')")
    parser.add_argument("--only", choices=("task2", "electronics"), default=None)
    parser.add_argument(
        "--json", type=Path, default=None, help="results JSON (default: OUT/paper_scale.json)"
    )
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--beta", type=float, default=0.2, help="share of cold-start users")
    parser.add_argument("--max-epochs", type=int, default=100)
    parser.add_argument("--patience", type=int, default=5)
    parser.add_argument("--stage1-epochs", type=int, default=20)
    parser.add_argument("--micrec-epochs", type=int, default=3)
    parser.add_argument(
        "--plm-sample", type=int, default=1024, help="Books items encoded with plm (0: skip)"
    )
    parser.add_argument(
        "--table",
        type=Path,
        default=None,
        help="print the Markdown table of this results JSON and exit",
    )
    args = parser.parse_args(argv)
    if args.table is not None:
        print(markdown(json.loads(args.table.read_text())))
        return 0
    if args.out is None:
        parser.error("--out is required")
    if not 0 < args.scale <= 1.0:
        parser.error("--scale must be in (0, 1]")
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    json_path = (args.json or out / "paper_scale.json").resolve()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    meter = Meter()
    pipelines: dict[str, Any] = {}
    runs: dict[str, Callable[[Meter, Path, float, argparse.Namespace], dict[str, Any]]] = {
        "task2": task2,
        "electronics": electronics,
    }
    for name, run in runs.items():
        if args.only in (None, name):
            pipelines[name] = run(meter, out, args.scale, args)
            write_results(json_path, meter, pipelines, args.scale, args.threads)
    data = write_results(json_path, meter, pipelines, args.scale, args.threads)
    print(markdown(data))
    print(f"\nwrote {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

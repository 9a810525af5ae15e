"""``synthetic``: the embedded default dataset, generated from a planted latent model.

Generative model (all draws from one seeded NumPy generator; K = ``num_topics``):

1. Users. Shared taste ``s_u ~ N(0, I_K)`` and per-domain parts ``d_u^X ~ N(0, I_K)``;
   the taste in domain X is ``t_u^X = sqrt(w) s_u + sqrt(1 - w) d_u^X`` (w =
   ``shared_weight``), so auxiliary behaviour predicts target taste through ``s_u``.
   Users are overlapping, side (target-only) or auxiliary-only in configured proportions.
2. Items. A primary topic ``z_i`` and a secondary topic; topic vector
   ``v_i = normalize(e_{z_i} + 0.35 e_{z2_i})``, a quality bias ``q_i ~ N(0, 0.3^2)`` and a
   long-tailed popularity ``p_i ~ LogNormal(0, 1)``. Topics drive title, description,
   categories and the drawn image (``cdr.data.drawing``).
3. Interactions. A user draws ``n_u`` items: topic ``k ~ softmax(selectivity * t_u^X)``,
   then an item of topic k with probability proportional to ``p_i``; repeats are dropped.
4. Ratings. ``r = clip(round(3 + rating_scale * <t_u^X, v_i> + q_i + eps), 1, 5)`` with
   ``eps ~ N(0, rating_noise^2)``; ``PlantedTruth.expected_rating`` gives the noiseless value.
5. Reviews. Templates keyed by the rating, the item's topic words and the user's favourite
   topic in that domain.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import attrs
import numpy as np
import torch
from torch import Tensor

from cdr.components import BuildContext, Component, DatasetConfig
from cdr.config.validators import in_range, non_negative, one_of, positive
from cdr.data.drawing import draw_items
from cdr.data.filters import FilterConfig
from cdr.data.records import CrossDomainDataset, Domain, Interactions, ItemContent
from cdr.progress import Reporter, null_reporter
from cdr.seeding import derive_seed

TOPICS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("space", ("galaxy", "rocket", "orbit", "astronaut", "nebula", "comet")),
    ("ocean", ("wave", "reef", "sailor", "tide", "harbor", "whale")),
    ("forest", ("pine", "moss", "fox", "trail", "canopy", "fern")),
    ("city", ("skyline", "subway", "neon", "avenue", "tower", "traffic")),
    ("desert", ("dune", "cactus", "mirage", "caravan", "oasis", "sandstorm")),
    ("mountain", ("summit", "glacier", "ridge", "avalanche", "peak", "valley")),
    ("kitchen", ("recipe", "spice", "oven", "bakery", "feast", "flavor")),
    ("history", ("empire", "castle", "dynasty", "battle", "relic", "chronicle")),
    ("science", ("atom", "laboratory", "theory", "experiment", "molecule", "equation")),
    ("romance", ("heart", "letter", "wedding", "kiss", "promise", "moonlight")),
    ("mystery", ("detective", "clue", "secret", "shadow", "alibi", "cipher")),
    ("sports", ("stadium", "champion", "marathon", "goal", "coach", "trophy")),
)
ADJECTIVES = ("silent", "golden", "hidden", "lost", "bright", "wild", "endless", "quiet",
              "bold", "distant")
SENTIMENT = (
    ("a real letdown", "not for me at all", "a waste of time", "I regret this one"),
    ("disappointing overall", "weaker than I hoped", "only a few good moments",
     "hard to get through"),
    ("decent but uneven", "an okay experience", "fine for a quiet evening",
     "some good ideas in it"),
    ("really enjoyable", "a strong pick", "well worth it", "I liked it a lot"),
    ("an absolute favourite", "brilliant from start to finish", "a must have",
     "I loved every minute"),
)
VERDICT = ("would not recommend it", "expected more", "found it average",
           "would recommend it", "will come back to it again")

#: size presets: num_users, overlap / side fractions, items per domain, interactions per
#: active user and domain, images on/off, image size. ``task1`` = MuSiC Table 1, Task 1
#: (18,045 auxiliary / 10,292 target users, 2,165 overlapping; 156,884 / 159,997 items;
#: about 881k / 513k ratings).
PRESETS: dict[str, dict[str, float | int | bool]] = {
    "tiny": dict(num_users=60, overlap_fraction=0.5, side_fraction=0.3, source_items=40,
                 target_items=40, interactions_per_user=8.0, images=True, image_size=32),
    "default": dict(num_users=2000, overlap_fraction=0.5, side_fraction=0.3,
                    source_items=800, target_items=800, interactions_per_user=16.0,
                    images=True, image_size=64),
    # Task 1's proportions (8.3% overlapping, 31% auxiliary-only users) at a size the
    # real encoders (LLM reviews, image + text items) handle on a CPU in minutes
    "task1-small": dict(num_users=4000, overlap_fraction=2165 / 26172,
                        side_fraction=8127 / 26172, source_items=1000, target_items=1000,
                        interactions_per_user=20.0, images=True, image_size=32),
    "task1": dict(num_users=26172, overlap_fraction=2165 / 26172, side_fraction=8127 / 26172,
                  source_items=156884, target_items=159997, interactions_per_user=49.0,
                  images=False, image_size=64),
}


@attrs.frozen
class SyntheticConfig(DatasetConfig):
    """Planted-model dataset. Fields left None take the value of the ``size`` preset."""

    kind: str = "synthetic"
    size: str = attrs.field(default="default", validator=one_of(tuple(PRESETS)))
    seed: int = attrs.field(default=0, validator=non_negative)
    num_users: int | None = attrs.field(default=None, validator=positive)
    overlap_fraction: float | None = attrs.field(default=None, validator=in_range(0.0, 1.0))
    side_fraction: float | None = attrs.field(default=None, validator=in_range(0.0, 1.0))
    source_items: int | None = attrs.field(default=None, validator=positive)
    target_items: int | None = attrs.field(default=None, validator=positive)
    interactions_per_user: float | None = attrs.field(default=None, validator=positive)
    min_interactions: int = attrs.field(default=3, validator=positive)
    num_topics: int = attrs.field(default=8, validator=in_range(2, len(TOPICS)))
    shared_weight: float = attrs.field(default=0.7, validator=in_range(0.0, 1.0))
    selectivity: float = attrs.field(default=1.5, validator=non_negative)
    rating_scale: float = attrs.field(default=1.0, validator=non_negative)
    rating_noise: float = attrs.field(default=0.5, validator=non_negative)
    images: bool | None = None
    image_size: int | None = attrs.field(default=None, validator=in_range(8, 512))
    source_name: str = "books"
    target_name: str = "movies"
    filters: FilterConfig = attrs.field(factory=FilterConfig)

    def resolved(self, name: str) -> float | int | bool:
        """A size field: the explicit value, else the preset's."""
        value = getattr(self, name)
        return PRESETS[self.size][name] if value is None else value


@attrs.frozen(eq=False)
class PlantedTruth:
    """The latent model behind a synthetic dataset (per role: "source" / "target").

    taste[role]: [U, K] user tastes; item_vectors[role]: [I, K]; item_bias[role]: [I];
    shared: [U, K] the cross-domain part of the tastes.
    """

    shared: Tensor
    taste: dict[str, Tensor]
    item_vectors: dict[str, Tensor]
    item_bias: dict[str, Tensor]
    rating_scale: float

    def expected_rating(self, role: str, users: Tensor, items: Tensor) -> Tensor:
        """[E] noiseless ratings (eq. of step 4 before noise and rounding), clipped to 1..5."""
        affinity = (self.taste[role][users] * self.item_vectors[role][items]).sum(-1)
        value = 3.0 + self.rating_scale * affinity + self.item_bias[role][items]
        return value.clamp(1.0, 5.0)


def _counts(cfg: SyntheticConfig) -> tuple[int, int, int]:
    """(overlapping, side, auxiliary-only) user counts."""
    n = int(cfg.resolved("num_users"))
    overlap = round(n * float(cfg.resolved("overlap_fraction")))
    side = round(n * float(cfg.resolved("side_fraction")))
    side = min(side, n - overlap)
    return overlap, side, n - overlap - side


def _topic_sampler(primary: np.ndarray, popularity: np.ndarray, num_topics: int,
                   topics: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """[E] items: for each drawn topic, an item of that topic with probability ∝ popularity."""
    order = np.argsort(primary, kind="stable")
    cum = np.cumsum(popularity[order])
    starts = np.searchsorted(primary[order], np.arange(num_topics), side="left")
    ends = np.searchsorted(primary[order], np.arange(num_topics), side="right")
    lo = np.where(starts > 0, cum[np.maximum(starts - 1, 0)], 0.0)
    hi = cum[ends - 1]
    x = lo[topics] + rng.random(len(topics)) * (hi[topics] - lo[topics])
    pos = np.searchsorted(cum, x, side="right")
    pos = np.clip(pos, starts[topics], ends[topics] - 1)
    return order[pos]


def _item_text(role_name: str, primary: np.ndarray, secondary: np.ndarray,
               rng: np.random.Generator) -> tuple[list[str], list[str], list[tuple[str, ...]]]:
    n = len(primary)
    w1, w3 = rng.integers(0, 6, n), rng.integers(0, 6, n)
    w2 = (w1 + rng.integers(1, 6, n)) % 6  # a second, different topic word
    adj, adj2 = rng.integers(0, len(ADJECTIVES), n), rng.integers(0, len(ADJECTIVES), n)
    noun = role_name[:-1] if role_name.endswith("s") else role_name
    titles: list[str] = []
    descriptions: list[str] = []
    categories: list[tuple[str, ...]] = []
    for i, (p, s) in enumerate(zip(primary.tolist(), secondary.tolist(), strict=True)):
        pname, pwords = TOPICS[p]
        sname, swords = TOPICS[s]
        titles.append(f"The {ADJECTIVES[adj[i]].title()} {pwords[w1[i]].title()} "
                      f"of the {swords[w3[i]].title()}")
        descriptions.append(
            f"A {ADJECTIVES[adj2[i]]} {noun} about {pwords[w1[i]]} and {pwords[w2[i]]}, "
            f"with a touch of {sname}: {swords[w3[i]]}."
        )
        categories.append((role_name.title(), pname.title(), sname.title()))
    return titles, descriptions, categories


def _capitalized(text: str) -> str:
    return text[:1].upper() + text[1:]


def _review_table(noun: str, num_topics: int) -> np.ndarray:
    """[5, K, K, 4] review templates by (rating, item topic, favourite topic, variant)."""
    table = np.empty((5, num_topics, num_topics, 4), dtype=object)
    for r in range(5):
        for k in range(num_topics):
            name, words = TOPICS[k]
            for f in range(num_topics):
                fav = TOPICS[f][0]
                for v in range(4):
                    table[r, k, f, v] = (
                        f"{_capitalized(SENTIMENT[r][v])}: the {words[v]} and {words[v + 2]} "
                        f"of this {name} {noun}. As a fan of {fav} stories I {VERDICT[r]}."
                    )
    return table


def _domain(cfg: SyntheticConfig, role: str, name: str, active: np.ndarray, taste: np.ndarray,
            num_items: int, rng: np.random.Generator, workdir: Path | None,
            reporter: Reporter) -> tuple[Domain, Tensor, Tensor]:
    """One domain's items, interactions and reviews; also returns item vectors and biases."""
    k = cfg.num_topics
    num_users = len(taste)
    # 2. items: every topic gets at least one item
    primary = np.concatenate([np.arange(min(k, num_items)),
                              rng.integers(0, k, max(num_items - k, 0))])[:num_items]
    primary = rng.permutation(primary)
    secondary = (primary + rng.integers(1, k, num_items)) % k
    vectors = np.zeros((num_items, k))
    vectors[np.arange(num_items), primary] = 1.0
    vectors[np.arange(num_items), secondary] += 0.35
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    bias = rng.normal(0.0, 0.3, num_items)
    popularity = rng.lognormal(0.0, 1.0, num_items)
    # 3. interactions
    users = np.flatnonzero(active)
    mean = float(cfg.resolved("interactions_per_user"))
    extra = max(mean - cfg.min_interactions, 0.0)
    activity = rng.lognormal(-0.18, 0.6, len(users))
    n = cfg.min_interactions + rng.poisson(extra * activity)
    n = np.minimum(n, max(num_items // 2, 1))
    user = np.repeat(users, n)
    logits = cfg.selectivity * taste
    probs = np.exp(logits - logits.max(1, keepdims=True))
    cum = np.cumsum(probs / probs.sum(1, keepdims=True), axis=1)
    draw = rng.random(len(user))
    topic = np.minimum((cum[user] < draw[:, None]).sum(1), k - 1)
    item = _topic_sampler(primary, popularity, k, topic, rng)
    _, first = np.unique(user.astype(np.int64) * num_items + item, return_index=True)
    user, item, topic = user[first], item[first], topic[first]
    # 4. ratings
    affinity = (taste[user] * vectors[item]).sum(1)
    noise = rng.normal(0.0, cfg.rating_noise, len(user))
    rating = np.clip(np.rint(3.0 + cfg.rating_scale * affinity + bias[item] + noise), 1, 5)
    timestamp = 1_300_000_000 + rng.integers(0, 160_000_000, len(user))
    # 5. reviews
    noun = name[:-1] if name.endswith("s") else name
    favourite = np.argmax(taste, axis=1)
    table = _review_table(noun, k)
    variant = rng.integers(0, 4, len(user))
    reviews = table[rating.astype(np.int64) - 1, primary[item], favourite[user], variant]
    titles, descriptions, categories = _item_text(name, primary, secondary, rng)
    item_ids = [f"{name[0].upper()}{i:06d}" for i in range(num_items)]
    images: list[str | None] = [None] * num_items
    root = None
    if cfg.resolved("images"):
        root = (workdir or Path(tempfile.mkdtemp(prefix="cdr-synthetic-"))) / role
        reporter(f"draw {name} images", advance=0, total=num_items)
        files = draw_items(root / "images", item_ids, primary, secondary, k,
                           int(cfg.resolved("image_size")), derive_seed(cfg.seed, role, "img"))
        reporter(f"draw {name} images", advance=num_items)
        images = [f"images/{f}" for f in files]
    domain = Domain(
        name=name,
        num_users=num_users,
        item_ids=tuple(item_ids),
        interactions=Interactions(
            torch.from_numpy(user.astype(np.int64)),
            torch.from_numpy(item.astype(np.int64)),
            torch.from_numpy(rating.astype(np.float32)),
            torch.from_numpy(timestamp.astype(np.int64)),
        ),
        items=ItemContent(tuple(titles), tuple(descriptions), tuple(categories), tuple(images)),
        reviews=tuple(reviews.tolist()),
        root=root,
    )
    return (domain, torch.from_numpy(vectors).float(),
            torch.from_numpy(bias).float())


def generate(cfg: SyntheticConfig, reporter: Reporter | None = None,
             workdir: Path | None = None) -> tuple[CrossDomainDataset, PlantedTruth]:
    """The dataset and its planted truth; identical for identical configs on any machine."""
    report = reporter or null_reporter
    rng = np.random.default_rng(derive_seed(cfg.seed, "synthetic"))
    overlap, side, source_only = _counts(cfg)
    num_users = overlap + side + source_only
    roles = rng.permutation(np.repeat([0, 1, 2], [overlap, side, source_only]))
    in_source = roles != 1
    in_target = roles != 2
    k, w = cfg.num_topics, cfg.shared_weight
    shared = rng.normal(size=(num_users, k))
    taste_source = np.sqrt(w) * shared + np.sqrt(1 - w) * rng.normal(size=(num_users, k))
    taste_target = np.sqrt(w) * shared + np.sqrt(1 - w) * rng.normal(size=(num_users, k))
    source, src_vec, src_bias = _domain(
        cfg, "source", cfg.source_name, in_source, taste_source,
        int(cfg.resolved("source_items")), rng, workdir, report)
    target, tgt_vec, tgt_bias = _domain(
        cfg, "target", cfg.target_name, in_target, taste_target,
        int(cfg.resolved("target_items")), rng, workdir, report)
    user_ids = tuple(f"u{u:06d}" for u in range(num_users))
    dataset = CrossDomainDataset(f"synthetic-{cfg.size}", user_ids, source, target)
    truth = PlantedTruth(
        shared=torch.from_numpy(shared).float(),
        taste={"source": torch.from_numpy(taste_source).float(),
               "target": torch.from_numpy(taste_target).float()},
        item_vectors={"source": src_vec, "target": tgt_vec},
        item_bias={"source": src_bias, "target": tgt_bias},
        rating_scale=cfg.rating_scale,
    )
    return dataset, truth


class SyntheticProvider:
    """DatasetProvider for ``SyntheticConfig``."""

    def __init__(self, config: SyntheticConfig) -> None:
        self.config = config
        self.source = f"synthetic planted model (size {config.size}, seed {config.seed})"

    def load(self, reporter: Reporter | None = None, *,
             workdir: Path | None = None) -> CrossDomainDataset:
        """Generate; images (if on) are written under ``workdir`` (else a temp directory)."""
        return generate(self.config, reporter, workdir)[0]


def _build(config: SyntheticConfig, ctx: BuildContext) -> SyntheticProvider:
    return SyntheticProvider(config)


component = Component(
    "synthetic", "datasets", SyntheticConfig, _build,
    "embedded default: planted-taste cross-domain data with text, images and reviews",
)

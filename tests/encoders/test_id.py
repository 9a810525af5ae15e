from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cdr.data.records import Domain, Interactions, ItemContent
from cdr.encoders import id as id_encoder
from cdr.encoders.id import IdEncoder, IdEncoderConfig, factorize


def _domain(users: list[int], items: list[int], ratings: list[float], nu: int, ni: int) -> Domain:
    inter = Interactions(
        torch.tensor(users, dtype=torch.long),
        torch.tensor(items, dtype=torch.long),
        torch.tensor(ratings),
        torch.zeros(len(users), dtype=torch.long),
    )
    content = ItemContent(("",) * ni, ("",) * ni, ((),) * ni, (None,) * ni)
    return Domain("d", nu, tuple(map(str, range(ni))), inter, content)


def _dense(domain: Domain) -> torch.Tensor:
    m = torch.zeros(domain.num_users, domain.num_items)
    inter = domain.interactions
    m.index_put_((inter.user, inter.item), inter.rating, accumulate=True)
    return m


@settings(max_examples=20, deadline=None)
@given(
    cells=st.sets(st.tuples(st.integers(0, 6), st.integers(0, 4)), min_size=1, max_size=20),
    seed=st.integers(0, 10),
)
def test_full_rank_factors_reconstruct_the_matrix(cells: set[tuple[int, int]], seed: int) -> None:
    users, items = zip(*sorted(cells), strict=True)
    g = torch.Generator().manual_seed(seed)
    ratings = (torch.randint(1, 6, (len(cells),), generator=g)).float().tolist()
    domain = _domain(list(users), list(items), ratings, 8, 5)
    u, v = factorize(domain, dim=5)
    torch.testing.assert_close(u @ v.T, _dense(domain), atol=1e-4, rtol=1e-4)


def test_low_rank_is_best_rank_k_and_inactive_rows_are_zero() -> None:
    g = torch.Generator().manual_seed(0)
    users = torch.randint(0, 30, (200,), generator=g)
    items = torch.randint(0, 20, (200,), generator=g)
    keep = torch.unique(users * 20 + items)
    domain = _domain((keep // 20).tolist(), (keep % 20).tolist(), [1.0] * len(keep), 35, 22)
    u, v = factorize(domain, dim=4)
    assert u.shape == (35, 4) and v.shape == (22, 4)
    s = torch.linalg.svdvals(_dense(domain))
    err = torch.linalg.matrix_norm(_dense(domain) - u @ v.T)
    torch.testing.assert_close(err, s[4:].square().sum().sqrt(), atol=1e-4, rtol=1e-4)
    assert (u[30:] == 0).all() and (v[20:] == 0).all()


def test_randomised_path_is_deterministic_and_close_to_exact(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    g = torch.Generator().manual_seed(1)
    # A rank-3 matrix plus nothing else: randomised SVD recovers it exactly.
    a, b = torch.rand(40, 3, generator=g), torch.rand(25, 3, generator=g)
    dense = a @ b.T
    uu, ii = torch.meshgrid(torch.arange(40), torch.arange(25), indexing="ij")
    domain = _domain(uu.flatten().tolist(), ii.flatten().tolist(), dense.flatten().tolist(), 40, 25)
    exact_u, _ = factorize(domain, dim=3)
    monkeypatch.setattr(id_encoder, "DENSE_LIMIT", 0)
    u1, v1 = factorize(domain, dim=3, seed=5)
    u2, v2 = factorize(domain, dim=3, seed=5)
    assert torch.equal(u1, u2) and torch.equal(v1, v2)
    torch.testing.assert_close(u1 @ v1.T, dense, atol=1e-3, rtol=1e-3)
    torch.testing.assert_close(u1, exact_u, atol=1e-3, rtol=1e-3)  # same sign convention


def test_encoder_shapes_binary_and_dim_beyond_rank() -> None:
    domain = _domain([0, 1, 1], [0, 0, 1], [5.0, 3.0, 1.0], 3, 2)
    enc = IdEncoder(IdEncoderConfig(dim=4, values="binary"))
    items = enc.encode(domain, "item")
    users = enc.encode(domain, "user")
    assert items.shape == (2, 4) and users.shape == (3, 4) and enc.dim == 4
    assert (items[:, 2:] == 0).all() and (users[2] == 0).all()
    torch.testing.assert_close(users @ items.T, torch.tensor([[1.0, 0.0], [1.0, 1.0], [0, 0]]))

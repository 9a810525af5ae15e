"""What the planted model behind ``synthetic`` / ``task1-small`` lets a predictor reach.

Scores every target-domain rating of the overlapping users (the pool the cold-start test
users are drawn from; all of them, not one split) with the planted truth and with
non-personalised predictors, in-sample, so the numbers bound what Table 2 can show:

- oracle target taste: ``3 + <t_u^T, v_i> + q_i`` (only the rating noise and rounding left);
- oracle shared part: the same with ``sqrt(w) s_u`` in place of ``t_u^T``, the part of a
  user's target taste that the auxiliary domain can reveal (the best a cross-domain
  generator can aim at);
- global mean, item mean and the user's auxiliary-domain mean (the tables' references).

Run from the repository root, writing ``planted_bounds.txt`` beside this file:
``python results/music/synthetic/planted_bounds.py > results/music/synthetic/planted_bounds.txt``
"""

import math

import torch

from cdr.data.synthetic import SyntheticConfig, generate


def main() -> None:
    cfg = SyntheticConfig(size="task1-small")
    ds, truth = generate(cfg)
    source, target = ds.source.interactions, ds.target.interactions
    overlapping = torch.zeros(ds.num_users, dtype=torch.bool)
    overlapping[ds.overlapping_users()] = True
    keep = overlapping[target.user]
    users, items, ratings = target.user[keep], target.item[keep], target.rating[keep].float()

    def row(name: str, predicted: torch.Tensor) -> None:
        mae = (predicted - ratings).abs().mean().item()
        rmse = (predicted - ratings).square().mean().sqrt().item()
        print(f"| {name} | {mae:.4f} | {rmse:.4f} |")

    print(f"{len(ratings)} target ratings of {int(overlapping.sum())} overlapping users\n")
    print("| predictor | MAE | RMSE |\n|---|---|---|")
    row("oracle: target taste", truth.expected_rating("target", users, items))
    shared = math.sqrt(cfg.shared_weight) * truth.shared[users]  # [E, K]
    affinity = (shared * truth.item_vectors["target"][items]).sum(-1)
    row("oracle: shared part of the taste",
        (3.0 + truth.rating_scale * affinity + truth.item_bias["target"][items]).clamp(1, 5))
    row("global mean", torch.full_like(ratings, target.rating.float().mean().item()))
    num_items = int(target.item.max()) + 1
    item_sum = torch.zeros(num_items).index_add_(0, target.item, target.rating.float())
    item_mean = item_sum / torch.bincount(target.item, minlength=num_items).clamp(min=1)
    row("item mean", item_mean[items])
    user_sum = torch.zeros(ds.num_users).index_add_(0, source.user, source.rating.float())
    user_mean = user_sum / torch.bincount(source.user, minlength=ds.num_users).clamp(min=1)
    row("user auxiliary mean", user_mean[users])


if __name__ == "__main__":
    main()

"""Search spaces in TOML: types, conditions on a component's kind, grids, one-line errors."""

from __future__ import annotations

import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FixedTrial

from cdr.config.loading import apply_overrides, default_data, structure_experiment
from cdr.errors import ConfigError
from cdr.registry import Registry
from cdr.tuning.space import check_space, literal, space_from_text, suggest

SPACE = """
[params."generator.steps"]
type = "int"
low = 2
high = 50
log = true
when = { "generator.kind" = ["ddpm", "diffcdr"] }

[params."trainer.lr"]
type = "float"
low = 1e-4
high = 1e-2
log = true

[params."trainer.weight_decay"]
type = "float"
low = 0.0
high = 0.1
step = 0.05

[params."generator.kind"]
type = "categorical"
choices = ["ddpm", "mapping"]
"""


class Recording(FixedTrial):
    """A FixedTrial that remembers the distributions asked for."""

    def __init__(self, params: dict[str, object]) -> None:
        super().__init__(params)
        self.asked: dict[str, object] = {}

    def _suggest(self, name: str, distribution: object) -> object:  # type: ignore[override]
        self.asked[name] = distribution
        return super()._suggest(name, distribution)  # type: ignore[arg-type]


def test_types_order_and_conditions() -> None:
    space = space_from_text(SPACE)
    # the condition's parameter is sampled first, whatever the file order
    keys = [p.key for p in space.params]
    assert keys.index("generator.kind") < keys.index("generator.steps")
    base = default_data()
    trial = Recording({"generator.kind": "ddpm", "generator.steps": 7, "trainer.lr": 1e-3,
                       "trainer.weight_decay": 0.05})
    overrides = suggest(space, trial, base)
    assert overrides[0] == 'generator.kind="ddpm"'  # a kind resets its table: first
    assert set(overrides) == {'generator.kind="ddpm"', "generator.steps=7",
                              "trainer.lr=0.001", "trainer.weight_decay=0.05"}
    steps = trial.asked["generator.steps"]
    assert isinstance(steps, IntDistribution) and steps.log and (steps.low, steps.high) == (2, 50)
    lr = trial.asked["trainer.lr"]
    assert isinstance(lr, FloatDistribution) and lr.log
    decay = trial.asked["trainer.weight_decay"]
    assert isinstance(decay, FloatDistribution) and not decay.log and decay.step == 0.05
    assert isinstance(trial.asked["generator.kind"], CategoricalDistribution)
    cfg = structure_experiment(apply_overrides(base, overrides), Registry())
    assert cfg.generator.kind == "ddpm" and cfg.generator.steps == 7  # type: ignore[attr-defined]
    # another kind: its table is reset and the ddpm-only parameter is not sampled
    trial = Recording({"generator.kind": "mapping", "trainer.lr": 1e-3,
                       "trainer.weight_decay": 0.0})
    overrides = suggest(space, trial, base)
    assert "generator.steps" not in trial.asked
    assert not any(o.startswith("generator.steps") for o in overrides)
    cfg = structure_experiment(apply_overrides(base, overrides), Registry())
    assert cfg.generator.kind == "mapping"


def test_a_condition_on_the_base_config() -> None:
    space = space_from_text(SPACE.split('[params."generator.kind"]')[0])
    base = default_data()  # generator.kind = ddpm
    trial = Recording({"generator.steps": 3, "trainer.lr": 1e-3, "trainer.weight_decay": 0.1})
    assert "generator.steps=3" in suggest(space, trial, base)
    base = apply_overrides(base, ["generator.kind=mapping"])
    trial = Recording({"trainer.lr": 1e-3, "trainer.weight_decay": 0.1})
    assert all(not o.startswith("generator.steps") for o in suggest(space, trial, base))


def test_grid() -> None:
    space = space_from_text("""
sampler = "grid"
[params."generator.steps"]
type = "int"
low = 2
high = 50
grid = [2, 5, 10, 20, 50]
[params."trainer.dim"]
type = "categorical"
choices = [16, 32]
[params."trainer.patience"]
type = "int"
low = 1
high = 3
""")
    assert space.grid() == {"generator.steps": [2, 5, 10, 20, 50], "trainer.dim": [16, 32],
                            "trainer.patience": [1, 2, 3]}
    assert space.grid_size() == 30


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[params."a.b"]\ntype = "float"\nlow = 1\n', r"params\.'a\.b'\.high: required"),
        ('[params."a.b"]\ntype = "float"\nlow = 2\nhigh = 1\n', "low 2 is above high 1"),
        ('[params."a.b"]\ntype = "float"\nlow = 0\nhigh = 1\nlog = true\n', "needs low > 0"),
        ('[params."a.b"]\ntype = "real"\n', r"type: 'real' is not one of"),
        ('[params."a.b"]\nchoices = [1]\nlowe = 1\n', r"unknown key\(s\) lowe"),
        ('[params."a.b"]\ntype = "int"\nlow = 1.5\nhigh = 3\n', "expected an integer"),
        ('[params."a.b"]\nchoices = [1]\nwhen = {"c.d" = 1}\n[params."c.d"]\nchoices = [1]\n'
         'when = {"a.b" = 1}\n', "conditions form a cycle"),
        ('sampler = "grid"\n[params."a.b"]\ntype = "float"\nlow = 0\nhigh = 1\n',
         "grid sampling needs finite values"),
        ('sampler = "grid"\n[params."a.b"]\nchoices = [1]\nwhen = {"c.kind" = "x"}\n',
         "grid sampling takes no conditional parameters"),
        ('sampler = "random"\n[params."a.b"]\nchoices = [1]\n', "sampler: 'random'"),
        ("sampler = 'tpe'\n", "nothing to tune"),
        ("[params\n", "not valid TOML"),
    ],
)
def test_bad_spaces_are_one_line_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        space_from_text(text)
    assert "\n" not in str(info.value)


def test_check_space_names_the_parameter_of_an_invalid_config() -> None:
    space = space_from_text('[params."trainer.epochs"]\ntype = "int"\nlow = 0\nhigh = 5\n')
    with pytest.raises(ConfigError, match=r"params\.'trainer\.epochs': trainer\.epochs = 0"):
        check_space(space, default_data(), Registry())
    space = space_from_text('[params."generator.stepz"]\nchoices = [1]\n')
    with pytest.raises(ConfigError, match="unknown key"):
        check_space(space, default_data(), Registry())
    check_space(space_from_text(SPACE), default_data(), Registry())


def test_literals_read_back_as_the_same_value() -> None:
    assert literal("ddpm") == '"ddpm"'
    assert literal("true") == '"true"'  # a string, not a boolean
    assert literal(True) == "true"
    assert literal(1e-05) == "1e-05"
    data = apply_overrides({}, [f"x={literal(3.5e-7)}", f"y={literal('a b')}"])
    assert data == {"x": 3.5e-7, "y": "a b"}


def test_a_kind_is_applied_before_the_keys_of_its_table() -> None:
    # no condition orders them: the file has steps first, yet the kind must come first
    # (setting a kind resets its table, which would drop steps)
    space = space_from_text('[params."generator.steps"]\ntype = "int"\nlow = 2\nhigh = 9\n'
                            '[params."generator.kind"]\nchoices = ["ddpm", "diffcdr"]\n')
    assert [p.key for p in space.params] == ["generator.steps", "generator.kind"]
    overrides = suggest(space, FixedTrial({"generator.steps": 7, "generator.kind": "diffcdr"}),
                        default_data())
    assert overrides == ['generator.kind="diffcdr"', "generator.steps=7"]
    cfg = structure_experiment(apply_overrides(default_data(), overrides), Registry())
    assert cfg.generator.kind == "diffcdr" and cfg.generator.steps == 7  # type: ignore[attr-defined]

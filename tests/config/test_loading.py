from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support import registry_with_fakes

from cdr.config import (
    EncodersConfig,
    EvaluationConfig,
    ExperimentConfig,
    SplitConfig,
    TrainerConfig,
    apply_overrides,
    config_to_dict,
    config_to_toml,
    make_converter,
    structure_experiment,
)
from cdr.config.loading import merge
from cdr.errors import ConfigError
from cdr.registry import Registry

REGISTRY = registry_with_fakes()


def section(group: str, name: str) -> dict[str, Any]:
    cfg = REGISTRY.get(group, name).config_cls()
    return dict(make_converter(REGISTRY).unstructure(cfg))


def first(group: str) -> str:
    names = REGISTRY.names(group)
    return "none" if "none" in names else names[0]


def base_data() -> dict[str, Any]:
    encoder = "constant"
    data: dict[str, Any] = {
        "dataset": {"kind": "tiny"},
        "generator": {"kind": "identity"},
        "backbone": {"kind": "none"},
        "aligner": {"kind": "none"},
        "scorer": {"kind": "dot"},
    }
    data["encoders"] = {"item": {"kind": encoder}, "user": {"kind": encoder}}
    return data


def component_configs(group: str) -> st.SearchStrategy[Any]:
    return st.sampled_from(REGISTRY.names(group)).map(lambda n: REGISTRY.get(group, n).config_cls())


experiments = st.builds(
    ExperimentConfig,
    dataset=component_configs("datasets"),
    encoders=st.builds(
        EncodersConfig,
        component_configs("encoders"),
        component_configs("encoders"),
    ),
    generator=component_configs("generators"),
    backbone=component_configs("backbones"),
    aligner=component_configs("aligners"),
    scorer=component_configs("scorers"),
    split=st.builds(
        SplitConfig,
        kind=st.sampled_from(["cold-start", "inductive"]),
        beta=st.floats(0.01, 0.99),
        val_fraction=st.floats(0.0, 0.5),
        seed=st.integers(0, 2**31),
    ),
    trainer=st.builds(
        TrainerConfig,
        epochs=st.integers(1, 500),
        lr=st.floats(1e-6, 1.0),
        batch_size=st.integers(1, 4096),
    ),
    evaluation=st.builds(EvaluationConfig, k=st.integers(1, 100)),
    name=st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_=+-]{0,19}", fullmatch=True),
    seed=st.integers(0, 2**31),
    device=st.sampled_from(["auto", "cpu", "cuda"]),
)


@settings(max_examples=60, deadline=None)
@given(experiments)
def test_unstructure_then_structure_is_identity(cfg: ExperimentConfig) -> None:
    data = config_to_dict(cfg, REGISTRY)
    assert structure_experiment(data, REGISTRY) == cfg


@settings(max_examples=30, deadline=None)
@given(experiments)
def test_toml_round_trip_is_identity(cfg: ExperimentConfig) -> None:
    text = config_to_toml(cfg, REGISTRY)
    assert structure_experiment(tomllib.loads(text), REGISTRY) == cfg


def test_wrong_type_names_the_dotted_path() -> None:
    data = apply_overrides(base_data(), ["trainer.epochs='ten'"])
    with pytest.raises(ConfigError, match=r"trainer\.epochs: "):
        structure_experiment(data, REGISTRY)


def test_unknown_key_is_an_error_not_ignored() -> None:
    data = apply_overrides(base_data(), ["trainer.epohcs=3"])
    with pytest.raises(ConfigError, match=r"trainer: unknown key\(s\) epohcs"):
        structure_experiment(data, REGISTRY)


def test_validator_error_names_its_field() -> None:
    data = apply_overrides(base_data(), ["split.beta=1.5"])
    with pytest.raises(ConfigError, match=r"split\.beta: 1\.5 is not in"):
        structure_experiment(data, REGISTRY)


def test_unknown_component_kind_lists_known() -> None:
    data = apply_overrides(base_data(), ["generator.kind=difusion"])
    with pytest.raises(ConfigError, match=r"generator: unknown generator 'difusion'; known:"):
        structure_experiment(data, REGISTRY)


def test_setting_a_kind_resets_that_table() -> None:
    data = {"generator": {"kind": "ddpm", "steps": 10}}
    assert apply_overrides(data, ["generator.kind=identity"]) == {"generator": {"kind": "identity"}}
    assert apply_overrides(data, ["generator.steps=5"]) == {
        "generator": {"kind": "ddpm", "steps": 5}
    }


def test_override_values_parse_as_toml() -> None:
    out = apply_overrides({}, ["a.b=1", "a.c=0.5", "a.d=true", "a.e=[1, 2]", "a.f=hello"])
    assert out == {"a": {"b": 1, "c": 0.5, "d": True, "e": [1, 2], "f": "hello"}}


def test_malformed_override_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"expected dotted\.key=value"):
        apply_overrides({}, ["generator.steps"])


def test_merge_replaces_a_component_table_when_kind_changes() -> None:
    base = {"generator": {"kind": "ddpm", "steps": 10}, "seed": 0}
    assert merge(base, {"generator": {"kind": "identity"}})["generator"] == {"kind": "identity"}
    assert merge(base, {"generator": {"steps": 2}})["generator"] == {"kind": "ddpm", "steps": 2}


def test_bad_toml_file_names_the_file(tmp_path: Path) -> None:
    from cdr.config import load_experiment

    bad = tmp_path / "bad.toml"
    bad.write_text("[generator\nkind = 1")
    with pytest.raises(ConfigError, match=r"bad\.toml: not valid TOML"):
        load_experiment(bad, Registry())


def test_frozen_configs_cannot_be_mutated() -> None:
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        TrainerConfig().epochs = 3  # type: ignore[misc]


def test_backbone_without_generator_defaults_to_the_inductive_split(tmp_path: Path) -> None:
    from cdr.config import load_experiment

    chosen = {
        "generator": "none",
        "backbone": "inmo",
        "dataset": "tiny",
        "encoders.item": "constant",
        "encoders.user": "constant",
    }
    split = load_experiment(None, REGISTRY, [], chosen).split
    assert split.kind == "inductive" and split.unseen_item_fraction == 0.2
    # a split the user names wins
    assert load_experiment(None, REGISTRY, ["split.beta=0.5"], chosen).split.kind == "cold-start"
    path = tmp_path / "exp.toml"
    path.write_text('[split]\nkind = "cold-start"\n')
    assert load_experiment(path, REGISTRY, [], chosen).split.kind == "cold-start"
    # a generator keeps the cold-start default
    with_generator = {**chosen, "generator": "ddpm"}
    assert load_experiment(None, REGISTRY, [], with_generator).split.kind == "cold-start"

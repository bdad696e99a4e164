"""``Settings`` spells out the schema: the same keys in the same order, types and defaults."""
from __future__ import annotations

import dataclasses
import typing

import pytest

from purenoise.config import SCHEMA, load_config, saved_value, settings
from purenoise.errors import ConfigError
from purenoise.settings import Settings

_TYPES = {(int,): int, (float, int): float, (str,): str, (bool,): bool, (list,): list, (dict,): dict}


def _fields():
    hints = typing.get_type_hints(Settings)
    return [(f, hints[f.name]) for f in dataclasses.fields(Settings)]


def test_same_keys_in_schema_order():
    assert [f.name for f, _ in _fields()] == list(SCHEMA)


@pytest.mark.parametrize("key", list(SCHEMA))
def test_type_and_nullability_match_the_schema(key):
    hint = dict((f.name, h) for f, h in _fields())[key]
    args = typing.get_args(hint)
    nullable = type(None) in args
    assert nullable == SCHEMA[key].nullable
    base = [a for a in args if a is not type(None)][0] if nullable else hint
    assert (typing.get_origin(base) or base) is _TYPES[SCHEMA[key].types]


@pytest.mark.parametrize("key", list(SCHEMA))
def test_default_matches_the_schema(key):
    f = {f.name: f for f, _ in _fields()}[key]
    expected = SCHEMA[key].default
    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
        assert expected not in (None,) and not isinstance(expected, (int, float, str, list, dict))  # required
        return
    got = f.default_factory() if f.default is dataclasses.MISSING else f.default
    if expected is None:
        assert got is None
        return
    assert got == expected and type(got) is type(expected)  # 5 and 5.0 dump differently


def test_list_defaults_are_not_shared():
    a = Settings(dataset="x", model="y")
    b = Settings(dataset="x", model="y")
    a.milestones.append(1)
    assert b.milestones == [160, 180]


def test_settings_round_trip_and_immutable(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("dataset: fmnist\nmodel: resnet32\nlr: 0.05\n")
    s = settings(load_config(p))
    assert isinstance(s, Settings) and s.lr == 0.05 and s.warmup_epochs == 5
    assert settings(s.as_dict()).as_dict() == s.as_dict()
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.lr = 1.0
    assert s.replace(lr=0.2).lr == 0.2 and s.lr == 0.05
    with pytest.raises(TypeError):
        s["lr"]  # settings are read by attribute only


def test_settings_refuses_an_unvalidated_mapping():
    with pytest.raises(ConfigError, match="not a validated config"):
        settings({"dataset": "fmnist"})


def test_saved_value_reads_data_as_it_is():
    assert saved_value({"seed": 3}, "seed") == 3
    assert saved_value({}, "seed") is None
    assert saved_value("not a mapping", "seed") is None
    with pytest.raises(KeyError):
        saved_value({}, "sed")

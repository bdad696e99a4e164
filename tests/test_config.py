"""Config loading and validation: every mistake is a ConfigError naming the file, key and fix.

The CLI cases check what a user sees: one ``purenoise: error:`` paragraph on stderr, exit code
2, no traceback. They fail before any data is read, so a nonexistent data root is fine.
"""
from __future__ import annotations

import math
import string
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import cli_error
from purenoise.config import SCHEMA, apply_overrides, load_config, parse_override, validate_config
from purenoise.errors import ConfigError, PureNoiseError

BASE = {"dataset": "folder", "data_root": "/nonexistent", "model": "resnet_small", "epochs": 4,
        "defer_epoch": 2, "method": "open", "device": "cpu", "warmup_epochs": 0}


def _write(tmp_path: Path, text: str, name: str = "run.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _cli_error(capsys, *argv: str) -> str:
    return cli_error(capsys, *argv)


@pytest.fixture
def cfg_file(tmp_path):
    return _write(tmp_path, yaml.safe_dump(BASE))


# ------------------------------------------------------------------------------ through the CLI
def test_unknown_key_names_closest_match_and_valid_keys(cfg_file, tmp_path, capsys):
    err = _cli_error(capsys, "train", "-c", str(cfg_file), "-o", str(tmp_path / "r"), "--set", "dleta=0.5")
    assert "unknown config key 'dleta'" in err and str(cfg_file) in err
    assert "Did you mean 'delta'?" in err
    assert "Valid keys: " in err and all(k in err for k in ("defer_epoch", "batch_size", "lr"))


def test_unknown_key_in_the_file(tmp_path, capsys):
    path = _write(tmp_path, yaml.safe_dump({**BASE, "learning_rate": 0.1}))
    err = _cli_error(capsys, "train", "-c", str(path), "-o", str(tmp_path / "r"))
    assert "'learning_rate'" in err and str(path) in err and "Valid keys" in err


@pytest.mark.parametrize("override, expected", [
    ("delta=abc", "config key 'delta' in {src} must be a number, got 'abc' (str)"),
    ("epochs=2.5", "config key 'epochs' in {src} must be an integer, got 2.5"),
    ("nesterov=3", "config key 'nesterov' in {src} must be true or false"),
    ("delta=1.5", "config key 'delta' in {src} must be <= 1, got 1.5"),
    ("delta=-0.1", "config key 'delta' in {src} must be >= 0, got -0.1"),
    ("lr=-0.1", "config key 'lr' in {src} must be > 0, got -0.1"),
    ("lr=0", "config key 'lr' in {src} must be > 0"),
    ("defer_epoch=9", "config key 'defer_epoch' in {src} is 9, beyond the last epoch (epochs = 4)"),
    ("ratio=0.5", "config key 'ratio' in {src} must be >= 1, got 0.5"),
    ("betas=[2, 0.9]", "config key 'betas' in {src} must be two numbers in [0, 1)"),
    ("lr=.inf", "config key 'lr' in {src} must be finite"),
    ("method=opne", "valid values: erm, rs, drs, open, noise_aug. Did you mean 'open'?"),
])
def test_wrong_types_and_ranges(cfg_file, tmp_path, capsys, override, expected):
    err = _cli_error(capsys, "train", "-c", str(cfg_file), "-o", str(tmp_path / "r"), "--set", override)
    assert expected.format(src=cfg_file) in err


def test_yaml_syntax_error_names_file_and_line(tmp_path, capsys):
    path = _write(tmp_path, "dataset: folder\nmodel: resnet_small\nlr: [0.1\nepochs: 3\n")
    err = _cli_error(capsys, "train", "-c", str(path), "-o", str(tmp_path / "r"))
    assert f"YAML syntax error in {path}, line 4" in err


def test_value_yaml_cannot_build_is_a_config_error(tmp_path, capsys):
    # A date that does not exist: PyYAML raises ValueError, not a YAMLError.
    path = _write(tmp_path, yaml.safe_dump(BASE) + "name: 2020-02-30\n")
    err = _cli_error(capsys, "train", "-c", str(path), "-o", str(tmp_path / "r"))
    assert str(path) in err and "quote it" in err


def test_unknown_dataset_lists_registered_ones(cfg_file, tmp_path, capsys):
    err = _cli_error(capsys, "train", "-c", str(cfg_file), "-o", str(tmp_path / "r"), "--set", "dataset=cifar10lt")
    assert "unknown dataset 'cifar10lt'; did you mean cifar10_lt" in err
    assert "Known datasets: " in err and "fmnist_lt" in err and "imagenet_lt" in err


def test_missing_config_file_and_bad_base(tmp_path, capsys):
    err = _cli_error(capsys, "train", "-c", str(tmp_path / "nope.yaml"), "-o", str(tmp_path / "r"))
    assert f"config file {tmp_path / 'nope.yaml'} does not exist" in err
    loop = _write(tmp_path, "base: loop.yaml\n", "loop.yaml")
    err = _cli_error(capsys, "train", "-c", str(loop), "-o", str(tmp_path / "r"))
    assert "config inheritance loops" in err


# ------------------------------------------------------------------------------ the loader itself
def test_scientific_notation_is_a_number(tmp_path):
    """YAML 1.1 would read 1e-4 as a string and reject it as 'must be a number'."""
    path = _write(tmp_path, yaml.safe_dump(BASE) + "lr: 1e-2\nweight_decay: 5E-4\n")
    cfg = load_config(path, ["grad_clip=1e1"])
    assert cfg["lr"] == 0.01 and cfg["weight_decay"] == 0.0005 and cfg["grad_clip"] == 10.0


def test_base_inheritance_and_options_merge(tmp_path):
    _write(tmp_path, yaml.safe_dump({**BASE, "model_options": {"widths": [8, 16]}, "lr": 0.2}), "base.yaml")
    top = _write(tmp_path, "base: base.yaml\nlr: 0.05\nmodel_options: {stem_stride: 1}\n")
    cfg = load_config(top)
    assert cfg["lr"] == 0.05 and cfg["model_options"] == {"widths": [8, 16], "stem_stride": 1}


def test_set_override_parsing():
    assert parse_override("milestones=[1, 2]") == ("milestones", [1, 2])
    assert parse_override("name=2020-02-30") == ("name", "2020-02-30")  # not a date: text
    assert apply_overrides({}, ["model_options.depth=16"]) == {"model_options": {"depth": 16}}
    with pytest.raises(ConfigError, match="key=value"):
        parse_override("lr")
    with pytest.raises(ConfigError, match="only the \\*_options keys"):
        apply_overrides({}, ["lr.x=1"])


def test_required_and_cross_checks():
    with pytest.raises(ConfigError, match="'model' is required"):
        validate_config({"dataset": "folder"})
    with pytest.raises(ConfigError, match="needs 'defer_epoch'"):
        validate_config({**BASE, "defer_epoch": None})
    with pytest.raises(ConfigError, match="warmup_epochs"):
        validate_config({**BASE, "warmup_epochs": 5})


# ------------------------------------------------------------------------------ properties
# YAML-ish values: what a config file or a --set can hold.
_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12), st.sampled_from(["erm", "open", "darbn", "cpu", "exp", "sgd", "gaussian"]),
)
_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=3)
                       | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=6)
_keys = st.one_of(st.sampled_from(sorted(SCHEMA)), st.text(max_size=10))
_FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                         HealthCheck.function_scoped_fixture])


def _assert_resolved(cfg: dict) -> None:
    assert set(cfg) == set(SCHEMA)
    assert 0 <= cfg["delta"] <= 1 and cfg["lr"] > 0 and cfg["epochs"] >= 1
    assert cfg["defer_epoch"] is None or 0 <= cfg["defer_epoch"] <= cfg["epochs"]
    assert cfg["ratio"] is None or cfg["ratio"] >= 1
    assert all(math.isfinite(v) for v in (cfg["lr"], cfg["delta"], cfg["weight_decay"]))


@_FAST
@given(raw=st.dictionaries(_keys, _values, max_size=6))
def test_validate_config_property(raw):
    """Any mapping validates to a complete, in-range config or raises ConfigError."""
    try:
        cfg = validate_config({"dataset": "folder", "model": "resnet_small", **raw})
    except ConfigError:
        return
    _assert_resolved(cfg)


@_FAST
@given(items=st.lists(st.one_of(
    st.text(max_size=20),
    st.builds(lambda k, v: f"{k}={v}", _keys, st.text(max_size=12)),
    st.builds(lambda k, v: f"{k}={yaml.safe_dump(v, default_flow_style=True).strip()}", _keys, _values),
), max_size=4))
def test_overrides_property(items):
    """Arbitrary --set strings give a config or a ConfigError, never another exception."""
    try:
        cfg = load_config(None, items, base={"dataset": "folder", "model": "resnet_small"})
    except ConfigError:
        return
    _assert_resolved(cfg)


_yaml_text = st.one_of(
    st.text(max_size=80),
    st.text(alphabet=string.ascii_letters + string.digits + ":-_ []{},.\n'\"#&*!|>%@`?", max_size=80),
    st.dictionaries(_keys, _values, max_size=5).map(lambda d: yaml.safe_dump(d)),
    st.builds(lambda key, value: f"{key}: {value}\n", _keys, st.sampled_from(
        ["2020-02-30", "!!int x", "!!float y", "!!timestamp 99", "1e400", "[[[[", "&a [*a]", "!!binary x",
         "'\\0'", '"\\0"', "base.yaml", "-1e-3", "0x1F", ".nan", "~"])),
    st.binary(max_size=60),
)


def _bytes(content: str | bytes) -> bytes:
    return content if isinstance(content, bytes) else content.encode("utf-8", errors="surrogatepass")


@_FAST
@given(text=_yaml_text, base_text=st.one_of(st.none(), _yaml_text))
def test_load_config_property(tmp_path_factory, text, base_text):
    """Any file content (optionally with a base file) loads or raises ConfigError."""
    folder = tmp_path_factory.mktemp("cfg")
    content = _bytes(text)
    if base_text is not None:
        (folder / "base.yaml").write_bytes(_bytes(base_text))
        content = b"base: base.yaml\n" + content
    path = folder / "run.yaml"
    path.write_bytes(content)
    try:
        cfg = load_config(path, base={"dataset": "folder", "model": "resnet_small"})
    except PureNoiseError as e:
        assert isinstance(e, ConfigError)
        return
    _assert_resolved(cfg)


def test_binary_file_and_nul_in_base_path(tmp_path):
    path = tmp_path / "bin.yaml"
    path.write_bytes(b"lr: \xff\xfe\n")
    with pytest.raises(ConfigError, match="not UTF-8 text"):
        load_config(path, base=BASE)
    path.write_text('base: "a\\0b.yaml"\n')
    with pytest.raises(ConfigError, match="not a usable file name"):
        load_config(path, base=BASE)


def test_choices_come_from_the_scheme_vocabulary():
    from purenoise import schemes
    from purenoise.config import SCHEMA

    assert SCHEMA["method"].choices is schemes.SCHEMES
    assert SCHEMA["bn_mode"].choices is schemes.BN_MODES
    assert SCHEMA["noise_grad"].choices is schemes.NOISE_GRAD_MODES
    assert SCHEMA["noise_pass"].choices is schemes.NOISE_PASSES
    assert SCHEMA["sampling"].choices is schemes.CLASS_AWARE_SAMPLINGS


def test_every_key_is_classified_by_scope():
    from purenoise.config import SCHEMA, SCOPES, Field, keys_in_scope

    assert all(f.scope in SCOPES for f in SCHEMA.values())
    parts = [set(keys_in_scope(s)) for s in SCOPES]
    assert set().union(*parts) == set(SCHEMA) and sum(map(len, parts)) == len(SCHEMA)
    # A branch shares what shapes the first phase; the scheme and its options are its own.
    assert {"seed", "lr", "epochs", "model", "dataset"} <= parts[0]
    assert {"method", "delta", "bn_mode", "defer_epoch"} <= parts[1]
    assert {"name", "device", "workers", "memorization"} <= parts[2]
    with pytest.raises(ValueError, match="scope"):
        Field((int,), 0, "a key without a scope")


def test_yaml_values_a_checkpoint_cannot_hold_are_refused_when_loading(tmp_path):
    # A date (or set) would pass the type check of a mapping key and fail only at the first
    # checkpoint, since checkpoints load nothing but plain data.
    path = _write(tmp_path, "dataset: folder\nmodel: resnet_small\nmodel_options:\n  when: 2024-01-31\n")
    with pytest.raises(ConfigError, match=r"config key 'model_options\.when' .* is datetime\.date\(2024, 1, 31\)"):
        load_config(path)
    path = _write(tmp_path, "dataset: folder\nmodel: resnet_small\nloss_options: {tags: !!set {a: null}}\n")
    with pytest.raises(ConfigError, match=r"config key 'loss_options\.tags' .* is \{'a'\} \(set\)"):
        load_config(path)
    path = _write(tmp_path, "dataset: folder\nmodel: resnet_small\nmodel_options:\n  when: '2024-01-31'\n")
    assert load_config(path)["model_options"] == {"when": "2024-01-31"}


def test_milestones_beyond_the_run_are_scaled_or_refused_never_kept(tmp_path, capsys):
    """A short run must still decay its lr: defaults and a file's milestones under --set epochs are
    scaled (and said), milestones the user sets beyond the run are refused naming the key."""
    from purenoise.config import load_config

    no_ms = _write(tmp_path, yaml.safe_dump({**BASE, "epochs": 12, "defer_epoch": 9}), "a.yaml")
    assert load_config(no_ms)["milestones"] == [9, 10]  # the default 160, 180 at 80% and 90%
    assert "milestones not set" in capsys.readouterr().out
    paper = _write(tmp_path, yaml.safe_dump({**BASE, "epochs": 200, "defer_epoch": 160,
                                             "milestones": [160, 180]}), "b.yaml")
    assert load_config(paper, ["epochs=12", "defer_epoch=9"])["milestones"] == [9, 10]
    assert "milestones [160, 180] scaled to [9, 10]" in capsys.readouterr().out
    assert load_config(paper)["milestones"] == [160, 180]  # a full run keeps them
    with pytest.raises(ConfigError, match="'milestones'.*beyond the last epoch"):
        load_config(paper, ["epochs=12", "defer_epoch=9", "milestones=[160,180]"])
    err = _cli_error(capsys, "train", "-c", str(paper), "-o", str(tmp_path / "r"), "--set", "defer_epoch=300")
    assert "defer_epoch" in err

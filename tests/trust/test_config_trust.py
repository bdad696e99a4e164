"""A config is input like any other: reading one is bounded, quotes nothing unsafe, and every bad
value or option is a ConfigError (exit code 2) that names the key, never a traceback or a hang.

The CLI cases run ``purenoise.cli.main`` in this process and fail during validation, before any
data is read, so the data root need not exist.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from tests.helpers import cli_error
from purenoise.config import load_config, validate_config
from purenoise.errors import ConfigError

BASE = {"dataset": "folder", "data_root": "/nonexistent", "model": "resnet_small", "epochs": 4,
        "defer_epoch": 2, "method": "open", "device": "cpu", "warmup_epochs": 0}


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _config(tmp_path: Path, extra: str = "", name: str = "run.yaml") -> Path:
    return _write(tmp_path / name, yaml.safe_dump(BASE) + extra)


def _cli_error(capsys, *argv: str) -> str:
    return cli_error(capsys, *argv, seconds=20)


def _train(tmp_path: Path, config: Path, *sets: str) -> list[str]:
    argv = ["train", "-c", str(config), "-o", str(tmp_path / "run")]
    for s in sets:
        argv += ["--set", s]
    return argv


def _laughs(levels: int) -> str:
    """Nested YAML aliases: ``levels`` lists of nine references, each to the list before."""
    lines = ["  a0: &a0 [1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    lines += [f"  a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, levels)]
    return "model_options:\n" + "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------ bounded reading
def test_a_billion_laughs_config_is_refused_at_once(tmp_path, capsys):
    """Nine levels of nine aliases: a few hundred bytes that expand to 9**9 values."""
    path = _config(tmp_path, _laughs(9))
    assert path.stat().st_size < 1024
    err = _cli_error(capsys, *_train(tmp_path, path))
    assert str(path) in err and "more than" in err and "values" in err


def test_a_config_that_aliases_expand_past_the_limit_is_refused(tmp_path):
    """Six levels (531441 values) would load, and be walked and copied at every step."""
    path = _config(tmp_path, _laughs(6))
    with pytest.raises(ConfigError, match="more than .* values"):
        load_config(path)


def test_too_many_values_without_aliases_are_refused(tmp_path):
    path = _config(tmp_path, "model_options: {x: [" + ", ".join(["1"] * 20000) + "]}\n")
    with pytest.raises(ConfigError, match=f"{path}.*more than"):
        load_config(path)


@pytest.mark.parametrize("value", ["&a [*a]", "&a {x: *a}"])
def test_an_alias_that_holds_itself_is_refused(tmp_path, capsys, value):
    path = _config(tmp_path, f"model_options: {{x: {value}}}\n")
    err = _cli_error(capsys, *_train(tmp_path, path))
    assert str(path) in err and "alias" in err


def test_an_alias_that_holds_itself_in_set_is_refused(tmp_path, capsys):
    err = _cli_error(capsys, *_train(tmp_path, _config(tmp_path), "milestones=&a [*a]"))
    assert "--set milestones" in err and "alias" in err


def test_deep_nesting_is_refused(tmp_path):
    path = _config(tmp_path, "model_options: {x: " + "[" * 2000 + "]" * 2000 + "}\n")
    with pytest.raises(ConfigError, match="levels deep"):
        load_config(path)


def test_a_mapping_that_holds_itself_is_refused_from_a_mapping():
    """A checkpoint's config reaches validate_config as a mapping, not as YAML text."""
    loop: list = []
    loop.append(loop)
    with pytest.raises(ConfigError, match="model_options"):
        validate_config({**BASE, "model_options": {"x": loop}})


def test_a_file_over_the_size_limit_is_refused(tmp_path):
    path = _config(tmp_path, "# " + "x" * (1 << 20) + "\n")
    with pytest.raises(ConfigError, match=f"{path} is larger than"):
        load_config(path)


def test_bases_that_fan_out_are_refused(tmp_path):
    """Six levels of three bases each would read 729 files for one config."""
    for level in range(6):
        nxt = f"f{level + 1}.yaml"
        _write(tmp_path / f"f{level}.yaml", f"base: [{nxt}, {nxt}, {nxt}]\n")
    _write(tmp_path / "f6.yaml", yaml.safe_dump(BASE))
    with pytest.raises(ConfigError, match="more than .* config files"):
        load_config(tmp_path / "f0.yaml")


@pytest.mark.parametrize("device", ["/dev/null", "fifo"])
def test_a_device_or_pipe_as_base_is_refused(tmp_path, capsys, device):
    if device == "fifo":
        device = str(tmp_path / "pipe.yaml")
        os.mkfifo(device)
    path = _config(tmp_path, f"base: {device}\n")
    err = _cli_error(capsys, *_train(tmp_path, path))
    assert device in err and "not a regular file" in err


def test_dev_zero_is_refused_without_reading_it(tmp_path):
    from purenoise.config_io import load_config_file

    with pytest.raises(ConfigError, match="/dev/zero is not a regular file"):
        load_config_file(_write(tmp_path / "run.yaml", "base: /dev/zero\n"))


# ------------------------------------------------------------------------------ nothing quoted
def test_a_file_that_is_not_a_config_is_not_quoted(tmp_path, capsys):
    """Like /etc/passwd given as a base: its lines must not reach the terminal."""
    secret = _write(tmp_path / "passwd", "root:*:0:0:System Administrator: /var/root\nhunter2: x\n")
    path = _config(tmp_path, f"base: {secret}\n")
    err = _cli_error(capsys, *_train(tmp_path, path))
    assert str(secret) in err and "not a purenoise config" in err
    assert "root:*" not in err and "Administrator" not in err and "hunter2" not in err


def test_an_unknown_key_is_shown_escaped_and_cut(tmp_path, capsys):
    err = _cli_error(capsys, *_train(tmp_path, _config(tmp_path), "\x1b[2J\x1b[31mkey=1"))
    assert "\x1b" not in err and "\\x1b[2J" in err
    err = _cli_error(capsys, *_train(tmp_path, _config(tmp_path), "k" * 5000 + "=1"))
    assert "k" * 100 not in err and "unknown config key" in err


# ------------------------------------------------------------------------------ values and options
def test_dataset_stats_false_is_refused_naming_the_key(tmp_path, capsys):
    err = _cli_error(capsys, *_train(tmp_path, _config(tmp_path), "dataset_options.stats=false"))
    assert "dataset_options.stats" in err and "mean" in err


def test_dataset_stats_false_with_explicit_statistics_is_fine(tmp_path):
    cfg = load_config(_config(tmp_path), ["dataset_options.stats=false", "dataset_options.mean=[0.5]",
                                          "dataset_options.std=[0.25]"])
    assert cfg["dataset_options"]["stats"] is False


@pytest.mark.parametrize("override, key", [("noise_ratio=1e12", "noise_ratio"), ("noise_ratio=17", "noise_ratio"),
                                           ("lr=1e300", "lr"), ("weight_decay=1e300", "weight_decay"),
                                           ("lr=1" + "0" * 400, "lr"), ("epochs=1" + "0" * 400, "epochs")])
def test_absurdly_large_numbers_are_refused_naming_the_key(tmp_path, capsys, override, key):
    err = _cli_error(capsys, *_train(tmp_path, _config(tmp_path), "method=noise_aug", override))
    assert f"config key '{key}'" in err


def test_a_large_but_usable_noise_ratio_is_fine(tmp_path):
    assert load_config(_config(tmp_path), ["noise_ratio=16"])["noise_ratio"] == 16.0


@pytest.mark.parametrize("override, advice", [
    ("model_options.num_classes=3", "number of classes"),
    ("model_options.in_chans=1", "image channels"),
    ("model_options.pretrained=true", "top-level key 'pretrained'"),
    ("model_options.name=resnet32", "top-level key 'model'"),
    ("dataset_options.download=true", "purenoise data info NAME --download"),
    ("dataset_options.root=/tmp", "top-level key 'data_root'"),
    ("loss_options.class_counts=[1, 2]", "images per class"),
    ("loss_options.name=ce", "top-level key 'loss'"),
])
def test_options_that_purenoise_sets_itself_are_refused(tmp_path, capsys, override, advice):
    err = _cli_error(capsys, *_train(tmp_path, _config(tmp_path), override))
    assert f"config key '{override.split('=')[0]}'" in err and advice in err


def test_an_option_name_that_is_not_a_name_is_refused(tmp_path, capsys):
    err = _cli_error(capsys, *_train(tmp_path, _config(tmp_path), "dataset_options={1: 2}"))
    assert "config key 'dataset_options'" in err and "not an option name" in err

"""A received checkpoint is data: its config does not decide what is read, unpickled or fetched,
and a malformed one is refused with one clear message (exit code 2), never a traceback."""
from __future__ import annotations

import os
import pickle
import socket
import struct
import zlib
from pathlib import Path

import pytest
import torch
import yaml

from purenoise.cli import main

from ..engine.conftest import tiny_config, write_folder


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, Path, Path]:
    """A finished two-epoch ERM run on a tiny folder: its folder, config file and data folder."""
    base = tmp_path_factory.mktemp("trust")
    data = write_folder(base / "data")
    cfg = base / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(tiny_config(data, epochs=2, defer_epoch=1, limit_batches=2)))
    out = base / "run"
    assert main(["train", "-c", str(cfg), "-o", str(out)]) == 0
    return out, cfg, data


@pytest.fixture(autouse=True)
def _own_folders(tmp_path, monkeypatch):
    """The default data folder is an empty one, and the statistics cache a private one."""
    (tmp_path / "default_data").mkdir()
    monkeypatch.setenv("PURENOISE_DATA", str(tmp_path / "default_data"))
    monkeypatch.setenv("PURENOISE_CACHE_DIR", str(tmp_path / "cache"))


def _craft(source: Path, dest: Path, change) -> Path:
    """``source`` loaded as plain data, changed by ``change(state)``, saved to ``dest``."""
    state = torch.load(source, weights_only=True)
    change(state)
    torch.save(state, dest)
    return dest


def _cli(capsys, *argv) -> tuple[int, str]:
    capsys.readouterr()
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


def _cli_caught(capsys, *argv) -> tuple[int, str]:
    """:func:`_cli`, with an escaping exception as exit code 1 (to check side effects first)."""
    try:
        return _cli(capsys, *argv)
    except Exception as e:  # noqa: BLE001
        return 1, f"Traceback: {type(e).__name__}: {e}"


def _assert_clean_refusal(code: int, err: str, *words: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err and err.count("purenoise: error:") == 1, err
    for word in words:
        assert word in err, err


def _pickle_folder(root: Path, marker: Path) -> Path:
    """A CIFAR-10 folder whose every file, when unpickled, creates the folder ``marker``."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)

    class _Mkdir:
        def __reduce__(self):
            return os.mkdir, (str(marker),)

    payload = pickle.dumps(_Mkdir())
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]:
        (folder / name).write_bytes(payload)
    pickle.loads(payload)  # the payload is live
    assert marker.is_dir()
    marker.rmdir()
    return root


def _cifar_from(root: Path):
    def change(state):
        state["config"].update(dataset="cifar10_lt", data_root=str(root), dataset_options={"verify": False},
                               download=True)
    return change


# ------------------------------------------------------------------ settings that reach outside the run
def test_eval_does_not_unpickle_what_a_checkpoint_points_at(run, tmp_path, capsys):
    out, _, _ = run
    marker = tmp_path / "marker"
    pickles = _pickle_folder(tmp_path / "pickles", marker)
    crafted = _craft(out / "model.pt", tmp_path / "model.pt", _cifar_from(pickles))
    # The recorded folder is not read and verify: false is not used; the default folder is empty.
    code, err = _cli_caught(capsys, "eval", "--checkpoint", crafted, "--workers", "0")
    assert not marker.exists(), "the checkpoint's pickles were unpickled"
    _assert_clean_refusal(code, err, "not found", f"--data-root {pickles}", "verify")
    # Named by the user, the folder is read, but its files are checked before being unpickled.
    code, err = _cli_caught(capsys, "eval", "--checkpoint", crafted, "--data-root", pickles, "--workers", "0")
    assert not marker.exists(), "the checkpoint's pickles were unpickled"
    _assert_clean_refusal(code, err, "checksum")


def test_resume_refuses_a_checkpoint_config_that_reaches_outside(run, tmp_path, capsys):
    out, _, _ = run
    marker = tmp_path / "marker"
    pickles = _pickle_folder(tmp_path / "pickles", marker)
    crafted = _craft(out / "checkpoints" / "epoch_0001.pt", tmp_path / "last.pt", _cifar_from(pickles))
    code, err = _cli_caught(capsys, "train", "--resume", crafted, "-o", tmp_path / "resumed")
    assert not marker.exists(), "the checkpoint's pickles were unpickled"
    _assert_clean_refusal(code, err, "dataset_options.verify", "--set dataset_options.verify=false",
                          f"--set data_root={pickles}", "--set download=true")
    assert not (tmp_path / "resumed").exists()


def test_resume_takes_a_clean_checkpoint_config_as_its_base(run, tmp_path, capsys):
    out, _, data = run
    code, err = _cli(capsys, "train", "--resume", out / "checkpoints" / "epoch_0001.pt", "-o", tmp_path / "r",
                     "--set", f"data_root={data}")
    assert code == 0, err


def test_predict_refuses_a_hub_model_without_touching_the_network(run, tmp_path, capsys, monkeypatch):
    out, _, data = run
    calls = []

    def no_network(*args, **kwargs):
        calls.append(args)
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    image = next((data / "test" / "class0").glob("*.png"))

    def hub(state):
        state["model_name"] = state["config"]["model"] = "timm/hf-hub:someone/name"
    crafted = _craft(out / "model.pt", tmp_path / "model.pt", hub)
    code, err = _cli_caught(capsys, "predict", "--checkpoint", crafted, image)
    assert calls == [], "predict reached for the network"
    _assert_clean_refusal(code, err, "timm/hf-hub:someone/name", "network")
    code, err = _cli_caught(capsys, "eval", "--checkpoint", crafted, "--data-root", data, "--workers", "0")
    assert calls == [], "eval reached for the network"
    _assert_clean_refusal(code, err, "timm/hf-hub:someone/name")


# ------------------------------------------------------------------ malformed checkpoints
def _set(key, value):
    return lambda state: state.__setitem__(key, value)


def _weights(fn):
    def change(state):
        name = next(k for k, v in state["model"].items() if v.is_floating_point())
        state["model"][name] = fn(state["model"][name])
    return change


_BAD_MODELS = {
    "no config": lambda state: state.pop("config"),
    "empty class_names": _set("class_names", []),
    "string model_options": _set("model_options", "dropout=0.5"),
    "huge image_size": _set("image_size", [10 ** 9, 10 ** 9]),
    "int64 weights": _weights(lambda t: t.to(torch.int64)),
    "complex weights": _weights(lambda t: t.to(torch.complex64)),
    "NaN weights": _weights(lambda t: torch.full_like(t, float("nan"))),
    "zero std": _set("std", [0.0, 0.0, 0.0]),
    "NaN mean": _set("mean", [float("nan")] * 3),
}


@pytest.mark.parametrize("what", list(_BAD_MODELS))
def test_predict_refuses_a_malformed_model(what, run, tmp_path, capsys):
    out, _, data = run
    image = next((data / "test" / "class1").glob("*.png"))
    crafted = _craft(out / "model.pt", tmp_path / "model.pt", _BAD_MODELS[what])
    code, err = _cli(capsys, "predict", "--checkpoint", crafted, image)
    _assert_clean_refusal(code, err, str(crafted))


@pytest.mark.parametrize("what", ["NaN weights", "complex weights", "no config"])
def test_eval_refuses_a_malformed_model(what, run, tmp_path, capsys):
    out, _, data = run
    crafted = _craft(out / "model.pt", tmp_path / "model.pt", _BAD_MODELS[what])
    code, err = _cli(capsys, "eval", "--checkpoint", crafted, "--data-root", data, "--workers", "0")
    _assert_clean_refusal(code, err, str(crafted))


_BAD_RESUMES = {
    "no optimizer": (lambda state: state.pop("optimizer"), "'optimizer'"),
    "no rng": (lambda state: state.pop("rng"), "'rng'"),
    "epoch 10**9": (_set("epoch", 10 ** 9), "outside this run"),
    "batch -5": (_set("batch", -5), "'batch'"),
    "batch past the epoch": (_set("batch", 2), "outside this run"),
    "NaN weights": (_weights(lambda t: torch.full_like(t, float("nan"))), "NaN"),
}


@pytest.mark.parametrize("what", list(_BAD_RESUMES))
def test_resume_refuses_a_malformed_training_checkpoint(what, run, tmp_path, capsys):
    out, cfg, _ = run
    change, words = _BAD_RESUMES[what]
    crafted = _craft(out / "checkpoints" / "epoch_0001.pt", tmp_path / "last.pt", change)
    code, err = _cli(capsys, "train", "-c", cfg, "--resume", crafted, "-o", tmp_path / "resumed")
    _assert_clean_refusal(code, err, str(crafted), words)


def test_init_from_refuses_a_checkpoint_without_optimizer_state(run, tmp_path, capsys):
    out, cfg, _ = run
    crafted = _craft(out / "checkpoints" / "epoch_0001.pt", tmp_path / "epoch_0001.pt",
                     lambda state: state.pop("optimizer"))
    code, err = _cli(capsys, "train", "-c", cfg, "--init-from", crafted, "-o", tmp_path / "branched")
    _assert_clean_refusal(code, err, str(crafted), "'optimizer'")


# ------------------------------------------------------------------ command-line values and images
def _png_header(path: Path, width: int, height: int) -> Path:
    """A PNG that declares ``width`` x ``height`` pixels (no pixel data: opening reads the header)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))
    return path


def test_predict_refuses_a_decompression_bomb(run, tmp_path, capsys):
    out, _, _ = run
    bomb = _png_header(tmp_path / "huge.png", 20000, 20000)
    code, err = _cli(capsys, "predict", "--checkpoint", out / "model.pt", bomb)
    _assert_clean_refusal(code, err, str(bomb), "too large")


@pytest.mark.parametrize("argv", [
    ("predict", "--top", "-3"), ("predict", "--top", "0"),
    ("eval", "--batch-size", "0"), ("eval", "--workers", "-1"),
])
def test_bad_numbers_on_the_command_line(argv, run, capsys):
    out, _, data = run
    image = next((data / "test" / "class1").glob("*.png"))
    extra = [image] if argv[0] == "predict" else ["--data-root", data]
    with pytest.raises(SystemExit) as exit_:
        main([argv[0], "--checkpoint", str(out / "model.pt"), *argv[1:], *map(str, extra)])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "must be at least" in err and "Traceback" not in err

"""Bad data as a user meets it through ``purenoise train``: one clear message and exit code 2.

Each case checks that the message names the file (and line) at fault and says what to do, and
that no traceback reaches the user. The last test is a property test of the split-file parser.
"""
from __future__ import annotations

import json
import shutil
import string
from pathlib import Path

import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from purenoise.cli import main
from purenoise.data.splitfile import read_split_file
from purenoise.errors import DataError, PureNoiseError

from tests.helpers.writers import save_image, write_split_dataset

from ..engine.conftest import tiny_config, write_folder


@pytest.fixture(autouse=True)
def _one_thread():
    # Two OpenMP threads per process spin against each other on a busy 2-core machine.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def clean_folder(tmp_path_factory) -> Path:
    return write_folder(tmp_path_factory.mktemp("clean"), counts=[12, 8, 6, 4], test_per_class=2)


def _copy(folder: Path, dest: Path) -> Path:
    shutil.copytree(folder, dest)
    return dest


def _train(capsys, tmp_path: Path, cfg: dict, *extra: str) -> tuple[int, str, str]:
    path = tmp_path / f"cfg{len(list(tmp_path.glob('cfg*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    capsys.readouterr()
    code = main(["train", "-c", str(path), "-o", str(tmp_path / "run"), *extra])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def _expect_error(capsys, tmp_path, cfg, *extra) -> str:
    code, _, err = _train(capsys, tmp_path, cfg, *extra)
    assert code == 2, err
    assert err.startswith("purenoise: error: ") and err.count("purenoise: error:") == 1
    return err


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # header readable, pixel data cut off


# ------------------------------------------------------------------------------ missing data
@pytest.mark.parametrize("dataset, hints", [
    ("folder", ["no class folders in {root}", "{root}/<class>/<images>", "{root}/train/<class>/<images>"]),
    ("cifar10_lt", ["CIFAR-10 not found", "{root}/cifar-10-batches-py", "download: true",
                    "cifar-10-python.tar.gz"]),
    ("fmnist_lt", ["Fashion-MNIST not found", "apt-get install dataset-fashion-mnist", "download: true",
                   "zalandoresearch/fashion-mnist"]),
    ("imagenet_lt", ["image root {root} does not exist", "data_root", "image-net.org",
                     "OpenLongTailRecognition-OLTR"]),
])
def test_missing_data_root_says_where_and_how(capsys, tmp_path, dataset, hints):
    root = tmp_path / "nowhere"
    err = _expect_error(capsys, tmp_path, tiny_config(root, dataset=dataset, augment="auto"))
    for hint in hints:
        assert hint.format(root=root) in err


# ------------------------------------------------------------------------------ unreadable images
def test_corrupt_image_is_named_before_training(capsys, tmp_path, clean_folder):
    root = _copy(clean_folder, tmp_path / "data")
    bad = root / "train" / "class1" / "3.png"
    bad.write_bytes(b"\x89PNG this is not an image")
    err = _expect_error(capsys, tmp_path, tiny_config(root))
    assert "1 image file(s) cannot be read" in err and str(bad) in err and "skip_corrupt: true" in err
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_truncated_image_read_by_a_loader_worker_is_named(capsys, tmp_path, clean_folder):
    """A truncated file passes the header check and fails when a DataLoader worker decodes it;
    the user sees the original message, not the worker's traceback."""
    root = _copy(clean_folder, tmp_path / "data")
    bad = root / "train" / "class0" / "5.png"
    _truncate(bad)
    cfg = tiny_config(root, workers=1, epochs=1, batch_size=2, dataset_options={"mean": [0.2] * 3, "std": [0.3] * 3})
    err = _expect_error(capsys, tmp_path, cfg)
    assert f"cannot decode image {bad}" in err and "skip_corrupt: true" in err
    assert "(in DataLoader worker process 0)" in err and "Original Traceback" not in err


def test_skip_corrupt_and_mixed_modes_are_counted_and_reported_at_the_end(capsys, tmp_path, clean_folder):
    root = _copy(clean_folder, tmp_path / "data")
    _truncate(root / "train" / "class0" / "5.png")
    (root / "train" / "class2" / "0.png").write_bytes(b"not an image")
    save_image(root / "train" / "class1" / "gray.png", size=(16, 16), mode="L")
    save_image(root / "train" / "class1" / "gray2.png", size=(16, 16), mode="L")
    save_image(root / "train" / "class3" / "alpha.png", size=(16, 16), mode="RGBA")
    cfg = tiny_config(root, epochs=1, batch_size=8, skip_corrupt=True)
    with pytest.warns(UserWarning, match="skipped 2 of"):
        code, out, err = _train(capsys, tmp_path, cfg)
    assert code == 0, err
    # The notes come after the final summary line, where a user looks when the run ends.
    tail = out[out.index("top-1"):]
    assert "note: folder: skipped 2 of 41 images (2 unreadable)" in tail
    assert "note: folder: converted 2 L, 1 RGBA image(s) to RGB" in tail
    notes = json.loads((tmp_path / "run" / "eval.json").read_text())["data_notes"]
    assert any("skipped 2 of 41" in n for n in notes) and any("converted 2 L, 1 RGBA" in n for n in notes)


def test_class_folder_without_images_is_named(capsys, tmp_path, clean_folder):
    root = _copy(clean_folder, tmp_path / "data")
    for f in (root / "train" / "class3").iterdir():
        f.unlink()
    err = _expect_error(capsys, tmp_path, tiny_config(root, method="open"))
    assert f"{root / 'train' / 'class3'} hold no image files" in err


# ------------------------------------------------------------------------------ split files
def _split_config(root: Path, **overrides) -> dict:
    cfg = tiny_config(root, dataset="imagenet_lt", augment="auto", batch_size=4, epochs=1,
                      dataset_options={"num_classes": 3, "image_size": 16})
    cfg.update(overrides)
    return cfg


@pytest.fixture
def split_root(tmp_path) -> Path:
    write_split_dataset(tmp_path / "imagenet", "ImageNet_LT", [6, 4, 2])
    return tmp_path / "imagenet"


def test_split_file_line_that_does_not_parse(capsys, tmp_path, split_root):
    split = split_root / "ImageNet_LT_train.txt"
    lines = split.read_text().splitlines()
    lines.insert(3, "train/n00000000/odd.JPEG one")
    lines.insert(5, "just-a-path.JPEG")
    split.write_text("\n".join(lines) + "\n")
    err = _expect_error(capsys, tmp_path, _split_config(split_root))
    assert f"2 bad line(s) in {split}" in err
    assert f"{split}:4: label 'one' is not an integer" in err
    assert f"{split}:6: expected 'relative/path label'" in err


def test_split_file_label_outside_the_classes(capsys, tmp_path, split_root):
    split = split_root / "ImageNet_LT_train.txt"
    split.write_text(split.read_text() + "train/n00000000/n00000000_0.JPEG 7\n")
    err = _expect_error(capsys, tmp_path, _split_config(split_root))
    assert f"{split}:13: label 7 is outside [0, 3)" in err and "num_classes" in err


def test_truncated_image_in_split_file_is_named(capsys, tmp_path, split_root):
    bad = split_root / "train" / "n00000001" / "n00000001_2.JPEG"
    _truncate(bad)
    err = _expect_error(capsys, tmp_path, _split_config(split_root))
    assert f"cannot decode image {bad}" in err  # found while computing the set's statistics


def test_class_without_training_images(capsys, tmp_path, split_root):
    split = split_root / "ImageNet_LT_train.txt"
    split.write_text("".join(ln + "\n" for ln in split.read_text().splitlines() if not ln.endswith(" 2")))
    err = _expect_error(capsys, tmp_path, _split_config(split_root, method="open", defer_epoch=0))
    assert "method 'open' needs training images in every class (OPeN's replacement probabilities" in err
    assert "class_2 have none in imagenet_lt" in err
    # The losses weigh classes by their counts too, so ERM stops with the same clear message.
    err = _expect_error(capsys, tmp_path, _split_config(split_root, method="erm"))
    assert "method 'erm' needs training images in every class" in err and "class_2" in err


# ------------------------------------------------------------------------------ property
_line = st.one_of(
    st.text(max_size=30),
    st.builds(lambda p, n: f"{p} {n}", st.text(string.printable, max_size=15), st.integers(-5, 12)),
    st.builds(lambda p, n: f"{p}\t{n}\r", st.text(max_size=10), st.text(string.digits + "+-_ ", max_size=5)),
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.one_of(st.lists(_line, max_size=8).map("\n".join), st.binary(max_size=80)),
       num_classes=st.integers(1, 10))
def test_read_split_file_property(tmp_path, content, num_classes):
    """Any file gives valid (path, label, line) entries or one DataError naming file and line."""
    path = tmp_path / "split.txt"
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8", "surrogatepass"))
    try:
        entries = read_split_file(path, "/root", num_classes)
    except PureNoiseError as e:
        assert isinstance(e, DataError) and str(path) in str(e)
        return
    text = path.read_text(encoding="utf-8").replace("\r\n", "\n").replace("\r", "\n").split("\n")
    assert entries
    for image, label, lineno in entries:
        assert 0 <= label < num_classes and image.startswith("/root/")
        assert text[lineno - 1].strip().rsplit(None, 1)[1].strip() != ""  # the line it came from

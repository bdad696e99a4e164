"""Image folders with symbolic links, and reports of run folders whose files were tampered with.

An image folder counts each image file once, in its own class: links that loop or lead out of a
class folder are not followed, and what was left out is said in the dataset's notes. A report of
a run folder whose eval.json or samples.pt is malformed stops with exit code 2 naming the file.
"""
from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest
import torch
import yaml
from torchvision.datasets.folder import IMG_EXTENSIONS, make_dataset

from purenoise.cli import main
from purenoise.data import create_dataset
from purenoise.data._checks import check_size
from purenoise.data.folder import scan_class_folders
from purenoise.errors import ConfigError, DataError

from tests.helpers.writers import save_image


def _folder(root: Path, counts=(3, 2)) -> Path:
    for k, n in enumerate(counts):
        for i in range(n):
            save_image(root / "train" / f"class{k}" / f"{i}.png", size=(8, 8))
        save_image(root / "test" / f"class{k}" / "t.png", size=(8, 8))
    return root


def _notes(bundle) -> str:
    return "\n".join(bundle.info.notes)


# ----------------------------------------------------------------------------- symbolic links
def test_symlink_loop_counts_each_image_once(tmp_path):
    root = _folder(tmp_path)
    os.symlink(".", root / "train" / "class0" / "self")
    bundle = create_dataset("folder", root, stats=False)
    assert bundle.class_counts == [3, 2]
    assert len({p for p, _ in bundle.train.samples}) == len(bundle.train.samples) == 5
    assert "class0/self: linked folder not followed (a loop)" in _notes(bundle)


def test_link_to_another_class_is_not_counted_twice(tmp_path):
    root = _folder(tmp_path)
    os.symlink("../class0", root / "train" / "class1" / "other")
    os.symlink("../class0/0.png", root / "train" / "class1" / "x.png")
    bundle = create_dataset("folder", root, stats=False)
    assert bundle.class_counts == [3, 2]
    notes = _notes(bundle)
    assert "class1/other: linked folder not followed (outside the class folder)" in notes
    assert "class1/x.png: link to a file outside the class folder" in notes


def test_linked_file_inside_its_class_counts_once(tmp_path):
    root = _folder(tmp_path)
    os.symlink("0.png", root / "train" / "class0" / "again.png")
    bundle = create_dataset("folder", root, stats=False)
    assert bundle.class_counts == [3, 2]
    assert "class0/again.png: same file as" in _notes(bundle)


def test_class_folder_that_is_another_class_is_refused(tmp_path):
    root = _folder(tmp_path)
    os.symlink("class0", root / "train" / "class2")
    with pytest.raises(DataError, match=r"class2 is the same folder as class folder .*class0"):
        create_dataset("folder", root, stats=False)


def test_linked_class_folder_elsewhere_is_still_read(tmp_path):
    """A class folder that is itself a link (images on another disk) is the owner's choice."""
    root = _folder(tmp_path / "data")
    for i in range(2):
        save_image(tmp_path / "elsewhere" / f"{i}.png", size=(8, 8))
    os.symlink(tmp_path / "elsewhere", root / "train" / "class2")
    bundle = create_dataset("folder", root, stats=False)
    assert bundle.class_counts == [3, 2, 2] and not bundle.info.notes


def test_plain_tree_lists_samples_as_torchvision_does(tmp_path):
    """Without links the samples and their order are torchvision's, so seeded splits do not move."""
    for rel in ("a/1.png", "a/b/2.png", "a/b/c/3.png", "a/b-c/4.png", "a/0.PNG", "b/z.jpg", "b/a/y.png"):
        save_image(tmp_path / rel, size=(4, 4), fmt="PNG")
    (tmp_path / "a" / "notes.txt").write_text("not an image")
    classes, samples = scan_class_folders(str(tmp_path), "folder")
    expected = make_dataset(str(tmp_path), {c: i for i, c in enumerate(classes)}, extensions=IMG_EXTENSIONS)
    assert samples == [(str(p), t) for p, t in expected]


@pytest.mark.parametrize("size", [5000, [8, 10**6], 0, True])
def test_image_size_option_is_bounded(size):
    """Resizing every image to a side of a million pixels would exhaust memory: refused at once."""
    with pytest.raises(ConfigError, match="sides up to 4096"):
        check_size("folder", "image_size", size)


def test_huge_image_size_is_refused_before_loading(tmp_path, capsys):
    root = _folder(tmp_path)
    with pytest.raises(ConfigError, match=r"image_size .* got 1000000"):
        create_dataset("folder", root, image_size=10**6, stats=False)


def test_data_info_prints_the_links_left_out(tmp_path, capsys):
    root = _folder(tmp_path)
    os.symlink("..", root / "train" / "class1" / "up")
    assert main(["data", "info", "folder", "--root", str(root)]) == 0
    out = capsys.readouterr().out
    assert "class0  " in out and "     3" in out
    assert "note: folder: 1 link(s) or duplicate file(s)" in out and "class1/up" in out


# ----------------------------------------------------------------------------- report inputs
def _run_folder(root: Path) -> Path:
    """A tiny complete run folder of a three-class run, as the trainer writes it."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.yaml").write_text(yaml.safe_dump({"name": "tiny", "method": "erm", "epochs": 1, "seed": 0}))
    (root / "metrics.jsonl").write_text(json.dumps({"epoch": 0, "train_loss": 1.0, "sampling": "instance"}) + "\n")
    ev = {"top1": 0.5, "balanced_acc": 0.5, "per_class_acc": [0.5, 0.5, 0.5], "class_counts": [4, 2, 1],
          "class_names": ["a", "b", "c"], "confusion": [[1, 1, 0], [0, 1, 1], [1, 0, 1]], "epoch": 1}
    (root / "eval.json").write_text(json.dumps(ev))
    return root


def _report_fails(run: Path, capsys, *words: str) -> str:
    assert main(["report", str(run), "--out", str(run.parent / "report")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.startswith("purenoise: error:")
    for w in words:
        assert w in err, (w, err)
    return err


def _set_eval(run: Path, **changes) -> None:
    ev = json.loads((run / "eval.json").read_text())
    (run / "eval.json").write_text(json.dumps({**ev, **changes}))


@pytest.mark.parametrize("confusion", [
    [["1", "1", "0"], ["0", "1", "1"], ["1", "0", "1"]],  # strings
    [[1, 1, 0], [0, 1], [1, 0, 1]],  # ragged
    [[1, 2], [3, 4]],  # square, but not one row per class
    [[1, 1, 0], [0, -1, 1], [1, 0, 1]],  # a negative count
    [[1, 1, 0], [0, [1], 1], [1, 0, 1]],  # nested garbage
    [[True, 1, 0], [0, 1, 1], [1, 0, 1]],  # a boolean
    {"0": [1, 1, 0]},
    "confusion",
])
def test_malformed_confusion_is_named(tmp_path, capsys, confusion):
    run = _run_folder(tmp_path / "run")
    _set_eval(run, confusion=confusion)
    _report_fails(run, capsys, str(run / "eval.json"), "'confusion'")


@pytest.mark.parametrize("text, words", [
    ("{not json", ["not valid JSON"]),
    ("[1, 2]", ["expected a JSON object, got list"]),
    ("{}", ["holds none of the test metrics"]),
    ('{"top1": 0.5, "epoch": "ten"}', ["'epoch'"]),
    ('{"top1": 0.5, "per_class_acc": [0.5, 0.5], "class_names": ["a"]}', ["class_names"]),
    ('{"top1": 0.5, "train_per_class_acc": ["x"]}', ["train_per_class_acc[0]"]),
])
def test_malformed_eval_json_is_named(tmp_path, capsys, text, words):
    run = _run_folder(tmp_path / "run")
    (run / "eval.json").write_text(text)
    _report_fails(run, capsys, str(run / "eval.json"), *words)


class _Planted:
    """Unpickling this would create a marker file: it must never happen."""

    marker = ""

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def _samples(kind: str, tmp_path: Path):
    images = torch.zeros(2, 1, 4, 4, dtype=torch.uint8)
    return {
        "list": [images],
        "string images": {"natural": "images"},
        "1-d images": {"natural": torch.arange(5)},
        "5-d images": {"natural": torch.zeros(2, 1, 1, 4, 4)},
        "empty images": {"natural": torch.zeros(2, 1, 0, 4)},
        "two channels": {"natural": torch.zeros(2, 2, 4, 4)},
        "complex images": {"noise": torch.zeros(2, 3, 4, 4, dtype=torch.complex64)},
        "huge images": {"natural": torch.zeros(1, 1, 1, 10**5, dtype=torch.uint8)},
        "float labels": {"natural": images, "natural_labels": torch.tensor([0.5, float("nan")])},
        "string labels": {"natural": images, "natural_labels": "ab"},
        "too few labels": {"natural": images, "natural_labels": torch.tensor([1])},
    }[kind]


@pytest.mark.parametrize("kind", ["list", "string images", "1-d images", "5-d images", "empty images",
                                  "two channels", "complex images", "huge images", "float labels",
                                  "string labels", "too few labels"])
def test_malformed_samples_pt_is_named(tmp_path, capsys, kind):
    run = _run_folder(tmp_path / "run")
    torch.save(_samples(kind, tmp_path), run / "samples.pt")
    _report_fails(run, capsys, str(run / "samples.pt"))


@pytest.mark.parametrize("content", ["pickle", "garbage"])
def test_samples_pt_that_is_not_tensors_is_not_loaded(tmp_path, capsys, content):
    run = _run_folder(tmp_path / "run")
    planted = _Planted()
    planted.marker = str(tmp_path / "code_ran")
    data = pickle.dumps({"natural": planted}, protocol=2) if content == "pickle" else b"\x80\x02garbage"
    (run / "samples.pt").write_bytes(data)
    _report_fails(run, capsys, str(run / "samples.pt"), "not loaded")
    assert not (tmp_path / "code_ran").exists()


def test_valid_samples_and_confusion_still_report(tmp_path, capsys):
    run = _run_folder(tmp_path / "run")
    torch.save({"natural": torch.zeros(2, 1, 4, 4, dtype=torch.uint8), "noise": torch.rand(2, 1, 4, 4),
                "natural_labels": torch.tensor([0, 1]), "noise_labels": torch.tensor([2, 2])}, run / "samples.pt")
    assert main(["report", str(run), "--out", str(tmp_path / "report")]) == 0
    text = (tmp_path / "report" / "report.md").read_text()
    assert "## Confusion matrices" in text and "## Images trained on" in text


def test_seeds_with_confusions_of_different_sizes_are_not_summed(tmp_path, capsys):
    """Two seeds of one configuration whose eval.json files disagree on the number of classes."""
    first = _run_folder(tmp_path / "s0")
    second = _run_folder(tmp_path / "s1")
    (second / "config.yaml").write_text(yaml.safe_dump({"name": "tiny", "method": "erm", "epochs": 1, "seed": 1}))
    (second / "eval.json").write_text(json.dumps({"top1": 0.5, "per_class_acc": [0.5, 0.5], "class_counts": [4, 2],
                                                  "confusion": [[1, 1], [1, 1]]}))
    assert main(["report", str(first), str(second), "--out", str(tmp_path / "report")]) == 0
    text = (tmp_path / "report" / "report.md").read_text()
    assert f"Left out of this sum (a confusion matrix of another size than 3 x 3): `{second}`" in text


def test_report_on_a_run_folder_whose_config_is_an_alias_bomb_is_refused_at_once(tmp_path, capsys):
    """A received run folder's config.yaml is read within the config bounds: exit 2, no hang."""
    import time

    from purenoise.cli import main

    run = tmp_path / "run"
    run.mkdir()
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    levels += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)]
    (run / "config.yaml").write_text("\n".join(levels) + "\n")
    (run / "metrics.jsonl").write_text("")
    t0 = time.perf_counter()
    assert main(["report", str(run), "--out", str(tmp_path / "rep")]) == 2
    assert time.perf_counter() - t0 < 10
    assert "config.yaml" in capsys.readouterr().err

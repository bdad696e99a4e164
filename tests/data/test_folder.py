import numpy as np
import pytest
import torch
from torchvision.datasets import ImageFolder

from purenoise.data import as_uint8_tensor, create_dataset, get_targets, longtail_counts
from purenoise.errors import ConfigError, DataError, DataNotFoundError

from tests.helpers.writers import save_image


def make_tree(root, counts, split="train", size=(12, 10), mode="RGB"):
    for name, n in counts.items():
        for i in range(n):
            save_image(root / split / name / f"{name}_{i}.png", size=size, mode=mode)


def test_stratified_split_when_no_held_out_folder(tmp_path):
    make_tree(tmp_path, {"cat": 10, "dog": 6, "fox": 4})
    bundle = create_dataset("folder", tmp_path, val_fraction=0.25, seed=3, stats=False)
    assert isinstance(bundle.train, ImageFolder)
    assert bundle.info.class_names == ["cat", "dog", "fox"] and bundle.info.options["test_split"] == "split"
    held = np.bincount(get_targets(bundle.test), minlength=3).tolist()
    assert held == [round(10 * 0.25), round(6 * 0.25), round(4 * 0.25)]
    assert bundle.class_counts == [10 - held[0], 6 - held[1], 4 - held[2]]
    train_paths = {p for p, _ in bundle.train.samples}
    test_paths = {p for p, _ in bundle.test.samples}
    assert not train_paths & test_paths and len(train_paths | test_paths) == 20
    again = create_dataset("folder", tmp_path, val_fraction=0.25, seed=3, stats=False)
    other = create_dataset("folder", tmp_path, val_fraction=0.25, seed=4, stats=False)
    assert again.test.samples == bundle.test.samples and other.test.samples != bundle.test.samples
    assert bundle.info.image_size == (10, 12) and bundle.info.channels == 3


@pytest.mark.parametrize("held_out", ["test", "val"])
def test_held_out_folder_is_used(tmp_path, held_out):
    make_tree(tmp_path, {"a": 3, "b": 2})
    make_tree(tmp_path, {"a": 2}, split=held_out)  # a held-out split may lack a class
    bundle = create_dataset("folder", tmp_path, stats=False)
    assert bundle.class_counts == [3, 2] and len(bundle.test) == 2
    assert bundle.info.options["test_split"] == held_out


def test_synthetic_imbalance(tmp_path):
    make_tree(tmp_path, {c: 12 for c in "abcd"})
    make_tree(tmp_path, {c: 1 for c in "abcd"}, split="test")
    bundle = create_dataset("folder", tmp_path, ratio=6, stats=False)
    assert bundle.class_counts == longtail_counts(12, 4, 6)
    assert np.bincount(get_targets(bundle.train)).tolist() == bundle.class_counts
    step = create_dataset("folder", tmp_path, ratio=6, profile="step", class_order=["d", "c", "b", "a"], stats=False)
    assert step.class_counts == [2, 2, 12, 12]
    with pytest.raises(ConfigError, match="n_max=20"):
        create_dataset("folder", tmp_path, ratio=6, n_max=20, stats=False)


def test_mixed_modes_convert_to_majority(tmp_path):
    make_tree(tmp_path, {"a": 4}, mode="RGB")
    make_tree(tmp_path, {"b": 2}, mode="L")
    save_image(tmp_path / "train" / "b" / "alpha.png", mode="RGBA")
    make_tree(tmp_path, {"a": 1, "b": 1}, split="test")
    bundle = create_dataset("folder", tmp_path)
    assert bundle.info.channels == 3 and len(bundle.info.mean) == 3
    assert any("converted 2 L, 1 RGBA image(s) to RGB" in n for n in bundle.info.notes)
    assert {bundle.train[i][0].mode for i in range(len(bundle.train))} == {"RGB"}
    x, _ = as_uint8_tensor(bundle.train)
    assert x.shape == (7, 3, 10, 12)


def test_grayscale_majority(tmp_path):
    make_tree(tmp_path, {"a": 3, "b": 3}, mode="L")
    save_image(tmp_path / "train" / "a" / "colour.png", mode="RGB")
    make_tree(tmp_path, {"a": 1}, split="test", mode="L")
    bundle = create_dataset("folder", tmp_path)
    assert bundle.info.channels == 1 and len(bundle.info.mean) == 1
    assert bundle.train[0][0].mode == "L"
    forced = create_dataset("folder", tmp_path, mode="RGB", stats=False)
    assert forced.info.channels == 3


def test_sizes_resized_to_most_common(tmp_path):
    make_tree(tmp_path, {"a": 3}, size=(16, 16))
    save_image(tmp_path / "train" / "a" / "big.png", size=(40, 30))
    bundle = create_dataset("folder", tmp_path, test_split="split", val_fraction=0.5, stats=False)
    assert bundle.info.image_size == (16, 16)
    assert any("resized" in n for n in bundle.info.notes)
    assert all(bundle.train[i][0].size == (16, 16) for i in range(len(bundle.train)))
    fixed = create_dataset("folder", tmp_path, image_size=8, stats=False)
    assert fixed.train[0][0].size == (8, 8)


def test_corrupt_images(tmp_path):
    make_tree(tmp_path, {"a": 3, "b": 3})
    (tmp_path / "train" / "a" / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(DataError, match=r"(?s)1 image file\(s\) cannot be read:\n.*broken.png.*skip_corrupt=True"):
        create_dataset("folder", tmp_path)
    with pytest.warns(UserWarning, match="skipped 1 of 7 images"):
        bundle = create_dataset("folder", tmp_path, skip_corrupt=True, val_fraction=0.34, stats=False)
    assert len(bundle.train) + len(bundle.test) == 6


def test_empty_class_folder_is_named(tmp_path):
    make_tree(tmp_path, {"a": 2})
    (tmp_path / "train" / "empty").mkdir()
    (tmp_path / "train" / "empty" / "notes.txt").write_text("no images here")
    with pytest.raises(DataError, match=r"train/empty hold no image files"):
        create_dataset("folder", tmp_path)


def test_unknown_class_in_held_out_and_missing_train(tmp_path):
    with pytest.raises(DataNotFoundError, match="no class folders"):
        create_dataset("folder", tmp_path)
    make_tree(tmp_path, {"a": 2})
    make_tree(tmp_path, {"zebra": 1}, split="test")
    with pytest.raises(DataError, match="zebra"):
        create_dataset("folder", tmp_path)


def test_stats_of_folder_match_pixels(tmp_path):
    make_tree(tmp_path, {"a": 3, "b": 2})
    make_tree(tmp_path, {"a": 1}, split="test")
    bundle = create_dataset("folder", tmp_path)
    x, _ = as_uint8_tensor(bundle.train)
    pixels = x.double() / 255
    assert np.allclose(bundle.info.mean, pixels.mean(dim=(0, 2, 3)).numpy())
    assert np.allclose(bundle.info.std, pixels.permute(1, 0, 2, 3).reshape(3, -1).std(dim=1, unbiased=False).numpy())
    assert torch.equal(x[0], torch.from_numpy(np.array(bundle.train[0][0])).permute(2, 0, 1))


def test_image_list_pickles(tmp_path):
    import pickle

    make_tree(tmp_path, {"a": 2, "b": 2})
    make_tree(tmp_path, {"a": 1}, split="test")
    train = create_dataset("folder", tmp_path, image_size=6, stats=False).train
    clone = pickle.loads(pickle.dumps(train))
    assert clone.samples == train.samples and np.array_equal(np.array(clone[1][0]), np.array(train[1][0]))
    assert clone[1][0].size == (6, 6)


def test_plain_folder_of_class_folders_is_split_and_says_so(tmp_path):
    """``DIR/<class>/*`` without train/: the same samples as ``DIR/train/<class>/*``, a seeded split noted."""
    make_tree(tmp_path / "plain", {"cat": 10, "dog": 6, "fox": 4}, split=".")
    make_tree(tmp_path / "nested", {"cat": 10, "dog": 6, "fox": 4})
    plain = create_dataset("folder", tmp_path / "plain", val_fraction=0.25, seed=3, stats=False)
    nested = create_dataset("folder", tmp_path / "nested", val_fraction=0.25, seed=3, stats=False)
    assert plain.class_counts == nested.class_counts and plain.info.options["test_split"] == "split"
    assert [p.split("/")[-1] for p, _ in plain.test.samples] == [p.split("/")[-1] for p, _ in nested.test.samples]
    note = next(n for n in plain.info.notes if "held out" in n)
    assert "5 of 20 images" in note and "seed 3" in note
    with pytest.raises(ConfigError, match="test_split"):
        create_dataset("folder", tmp_path / "plain", test_split="test", stats=False)
    make_tree(tmp_path / "only_test", {"cat": 2}, split="test")
    with pytest.raises(DataNotFoundError, match="no class folders"):
        create_dataset("folder", tmp_path / "only_test")

import warnings

import pytest
import torch
from PIL import Image
from torchvision.datasets import ImageFolder

from purenoise.data import as_uint8_tensor, create_dataset, get_targets
from purenoise.data.splitfile import class_names_from_paths, read_split_file
from purenoise.errors import DataError, DataNotFoundError

from tests.helpers.writers import save_image, write_split_dataset

COUNTS = [6, 3, 1]


@pytest.fixture
def imagenet_root(tmp_path):
    lines = write_split_dataset(tmp_path, "ImageNet_LT", COUNTS)
    return tmp_path, lines


def test_imagenet_lt_fixture(imagenet_root):
    root, lines = imagenet_root
    bundle = create_dataset("imagenet_lt", root, num_classes=3, stats_max_images=5)
    assert isinstance(bundle.train, ImageFolder)
    assert bundle.class_counts == COUNTS and len(bundle.train) == 10
    assert get_targets(bundle.train) == [int(l.split()[1]) for l in lines["train"]]
    assert bundle.info.class_names == ["n00000000", "n00000001", "n00000002"]
    assert bundle.info.image_size == (224, 224) and bundle.info.channels == 3
    assert len(bundle.test) == 6 and bundle.test.samples[0][0].endswith("val/n00000000/ILSVRC2012_val_0000.JPEG")
    img, label = bundle.train[7]
    assert isinstance(img, Image.Image) and img.mode == "RGB" and img.size == (11, 8) and label == 1
    assert len(bundle.info.mean) == 3 and bundle.info.options["stats_max_images"] == 5


def test_val_split_and_as_uint8_tensor(imagenet_root):
    root, _ = imagenet_root
    bundle = create_dataset("imagenet_lt", root, num_classes=3, test_split="val", image_size=16, stats=False)
    assert len(bundle.test) == 3
    x, y = as_uint8_tensor(bundle.train)
    assert x.shape == (10, 3, 16, 16) and x.dtype == torch.uint8 and y.tolist() == get_targets(bundle.train)


def test_split_files_in_split_dir_and_leading_slash(tmp_path):
    lines = write_split_dataset(tmp_path / "images", "Places_LT", [2, 1])
    splits = tmp_path / "splits"
    splits.mkdir()
    for split, ls in lines.items():
        (splits / f"Places_LT_{split}.txt").write_text("\n".join("/" + l for l in ls))
    bundle = create_dataset("places_lt", tmp_path / "images", split_dir=splits, num_classes=2, stats=False)
    assert bundle.class_counts == [2, 1]
    assert all(p.startswith(str(tmp_path / "images")) for p, _ in bundle.train.samples)


def test_malformed_lines_report_file_and_line(imagenet_root):
    root, lines = imagenet_root
    bad = lines["train"][:2] + ["train/n00000000/x.JPEG"] + ["train/a.JPEG seven"] + lines["train"][2:]
    (root / "ImageNet_LT_train.txt").write_text("\n".join(bad))
    with pytest.raises(DataError) as e:
        create_dataset("imagenet_lt", root, num_classes=3)
    msg = str(e.value)
    assert "ImageNet_LT_train.txt:3: expected 'relative/path label'" in msg
    assert "ImageNet_LT_train.txt:4: label 'seven' is not an integer" in msg


def test_label_out_of_range(imagenet_root):
    root, _ = imagenet_root
    with pytest.raises(DataError, match=r"ImageNet_LT_train.txt:\d+: label 2 is outside \[0, 2\)"):
        create_dataset("imagenet_lt", root, num_classes=2)


def test_missing_image_reported_with_line_then_skipped(imagenet_root):
    root, lines = imagenet_root
    (root / lines["train"][4].split()[0]).unlink()
    with pytest.raises(DataNotFoundError, match=r"ImageNet_LT_train.txt:5: .*n00000000_4.JPEG"):
        create_dataset("imagenet_lt", root, num_classes=3)
    with pytest.warns(UserWarning, match="skipped 1 of 10 images"):
        bundle = create_dataset("imagenet_lt", root, num_classes=3, skip_corrupt=True, stats=False)
    assert bundle.class_counts == [5, 3, 1]
    assert any("skipped 1 of 10" in n for n in bundle.info.notes)


def test_corrupt_image_lazy_error_and_skip(imagenet_root):
    root, lines = imagenet_root
    path = root / lines["train"][6].split()[0]
    path.write_bytes(path.read_bytes()[:40])  # truncated JPEG: header readable, pixels not
    bundle = create_dataset("imagenet_lt", root, num_classes=3, stats=False)
    with pytest.raises(DataError, match=f"cannot decode image {path}.*skip_corrupt=True"):
        bundle.train[6]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bundle = create_dataset("imagenet_lt", root, num_classes=3, skip_corrupt=True, stats=False)
    assert len(bundle.train) == 9 and bundle.class_counts == [6, 2, 1]
    assert any("1 unreadable" in str(w.message) for w in caught)


def test_missing_split_file_says_where_to_get_it(tmp_path):
    tmp_path.joinpath("train").mkdir()
    with pytest.raises(DataNotFoundError) as e:
        create_dataset("imagenet_lt", tmp_path)
    msg = str(e.value)
    assert "ImageNet_LT_train.txt not found" in msg and "OpenLongTailRecognition-OLTR" in msg
    assert "image-net.org" in msg


def test_read_split_file_paths_with_spaces(tmp_path):
    (tmp_path / "s.txt").write_text("a dir/b c.jpg 1\n\n")
    assert read_split_file(tmp_path / "s.txt", "/r", 2) == [("/r/a dir/b c.jpg", 1, 1)]


def test_class_names_from_paths():
    samples = [("/r/data_256/a/abbey/1.jpg", 0), ("/r/data_256/a/apartment_building/outdoor/2.jpg", 1),
               ("/r/data_256/b/bank/outdoor/3.jpg", 2)]
    assert class_names_from_paths(samples, 3) == ["abbey", "apartment_building/outdoor", "bank/outdoor"]
    # a label spread over two folders: generic names
    assert class_names_from_paths(samples + [("/r/x/4.jpg", 0)], 3) == ["class_0", "class_1", "class_2"]


def test_grayscale_file_is_converted_to_rgb(imagenet_root):
    root, lines = imagenet_root
    save_image(root / lines["train"][0].split()[0], mode="L", fmt="JPEG")
    bundle = create_dataset("imagenet_lt", root, num_classes=3, stats=False)
    assert bundle.train[0][0].mode == "RGB"


def test_paths_that_leave_the_root_are_refused_with_file_and_line(imagenet_root, tmp_path_factory):
    root, lines = imagenet_root
    outside = tmp_path_factory.mktemp("outside")
    save_image(outside / "secret.JPEG")  # a real, readable image outside the root
    escape = "../" * len(root.parts) + str(outside / "secret.JPEG").lstrip("/")
    bad = lines["train"][:2] + [f"{escape} 1", "/../etc/hostname 0", "train/../../x.JPEG 2"] + lines["train"][2:]
    (root / "ImageNet_LT_train.txt").write_text("\n".join(bad))
    with pytest.raises(DataError) as e:
        create_dataset("imagenet_lt", root, num_classes=3, stats=False)
    msg = str(e.value)
    assert "3 bad line(s)" in msg
    for lineno, rel in ((3, escape), (4, "../etc/hostname"), (5, "train/../../x.JPEG")):
        assert f"ImageNet_LT_train.txt:{lineno}: image path {rel!r} leads outside the data root" in msg


def test_dot_dot_that_stays_inside_the_root_is_accepted(tmp_path):
    (tmp_path / "s.txt").write_text("a/../b.jpg 1\n./c.jpg 0\n")
    assert read_split_file(tmp_path / "s.txt", "/r", 2) == [("/r/a/../b.jpg", 1, 1), ("/r/./c.jpg", 0, 2)]
    (tmp_path / "s.txt").write_text("../../../etc/hostname 1\n")
    with pytest.raises(DataError, match=r"s.txt:1: image path '../../../etc/hostname' leads outside the data root /r"):
        read_split_file(tmp_path / "s.txt", "/r", 2)

import numpy as np
import pytest
import torch

from purenoise.data import as_uint8_tensor, create_dataset, get_targets, longtail_counts
from purenoise.data.celeba import CELEBA5_CLASSES
from purenoise.errors import DataError, DataNotFoundError

from tests.helpers.writers import save_image

ATTRS = ("5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose Black_Hair "
         "Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee Gray_Hair Heavy_Makeup "
         "High_Cheekbones Male Mouth_Slightly_Open Mustache Narrow_Eyes No_Beard Oval_Face Pale_Skin Pointy_Nose "
         "Receding_Hairline Rosy_Cheeks Sideburns Smiling Straight_Hair Wavy_Hair Wearing_Earrings Wearing_Hat "
         "Wearing_Lipstick Wearing_Necklace Wearing_Necktie Young").split()
HAIR = ["Blond_Hair", "Black_Hair", "Bald", "Brown_Hair", "Gray_Hair"]
TRAIN = [6, 5, 2, 4, 3]  # per class, in CELEBA5_CLASSES order
COLOURS = [(250, 220, 90), (10, 10, 10), (230, 190, 170), (120, 70, 30), (160, 160, 160)]


def write_celeba(root, csv=False):
    """CelebA's files: list_attr_celeba.txt, list_eval_partition.txt, img_align_celeba/*.jpg."""
    rows, parts = [], []

    def add(hair, partition, colour):
        name = f"{len(rows) + 1:06d}.jpg"
        values = [1 if a in hair else -1 for a in ATTRS]
        values[ATTRS.index("Smiling")] = 1 if len(rows) % 2 else -1
        rows.append((name, values))
        parts.append((name, partition))
        save_image(root / "img_align_celeba" / name, size=(20, 26), color=colour, fmt="JPEG")

    for partition, counts in ((0, TRAIN), (1, [1] * 5), (2, [2] * 5)):
        for k, n in enumerate(counts):
            for _ in range(n):
                add({HAIR[k]}, partition, COLOURS[k])
        add({"Blond_Hair", "Brown_Hair"}, partition, (0, 255, 0))  # two hair colours: dropped
        add(set(), partition, (0, 0, 255))  # none of the five: dropped
    if csv:
        (root / "list_attr_celeba.csv").write_text(
            "image_id," + ",".join(ATTRS) + "\n" + "".join(f"{n}," + ",".join(map(str, v)) + "\n" for n, v in rows))
        (root / "list_eval_partition.csv").write_text(
            "image_id,partition\n" + "".join(f"{n},{p}\n" for n, p in parts))
    else:
        text = f"{len(rows)}\n" + " ".join(ATTRS) + " \n"
        text += "".join(n + " " + " ".join(f"{v:>2}" for v in vals) + "\n" for n, vals in rows)
        (root / "list_attr_celeba.txt").write_text(text)
        (root / "list_eval_partition.txt").write_text("".join(f"{n} {p}\n" for n, p in parts))


@pytest.mark.parametrize("csv", [False, True])
def test_celeba5_rule_and_counts(tmp_path, csv):
    write_celeba(tmp_path, csv=csv)
    bundle = create_dataset("celeba5", tmp_path, image_size=8)
    assert bundle.info.class_names == list(CELEBA5_CLASSES) == ["blond", "black", "bald", "brown", "gray"]
    assert bundle.class_counts == TRAIN and len(bundle.train) == sum(TRAIN)
    assert len(bundle.test) == 10
    assert bundle.info.image_size == (8, 8) and bundle.info.channels == 3
    # Labels are the right images: each class was written in its own colour.
    x, y = as_uint8_tensor(bundle.train)
    assert x.shape == (20, 3, 8, 8) and y.tolist() == get_targets(bundle.train)
    for k, colour in enumerate(COLOURS):
        mean = x[y == k].double().mean(dim=(0, 2, 3)).numpy()
        assert np.allclose(mean, colour, atol=6), (k, mean)
    img, _ = bundle.train[0]
    assert img.size == (8, 8) and img.mode == "RGB"


def test_celeba5_val_split_ratio_and_balanced_test(tmp_path):
    write_celeba(tmp_path)
    assert len(create_dataset("celeba5", tmp_path, test_split="val", stats=False).test) == 5
    bundle = create_dataset("celeba5", tmp_path, ratio=3, test_per_class=1, stats=False)
    # Classes ordered by natural frequency (blond 6, black 5, brown 4, gray 3, bald 2); n_max = 6.
    profile = longtail_counts(6, 5, 3)
    expected = [0] * 5
    for position, label in enumerate([0, 1, 3, 4, 2]):
        expected[label] = min(profile[position], TRAIN[label])
    assert bundle.class_counts == expected
    assert np.bincount(get_targets(bundle.train), minlength=5).tolist() == expected
    assert np.bincount(get_targets(bundle.test), minlength=5).tolist() == [1] * 5


def test_celeba5_prepared_image_folder(tmp_path):
    for split, n in (("train", [3, 2, 1, 2, 1]), ("test", [1] * 5)):
        for name, k in zip(["gray", "blond", "brown", "bald", "black"], [4, 0, 3, 2, 1]):
            for i in range(n[k]):
                save_image(tmp_path / split / name / f"{i}.png", size=(8, 8), color=COLOURS[k])
    bundle = create_dataset("celeba5", tmp_path, image_size=8, stats=False)
    assert bundle.info.class_names == list(CELEBA5_CLASSES)  # canonical order, not alphabetical
    assert bundle.class_counts == [3, 2, 1, 2, 1]
    x, y = as_uint8_tensor(bundle.train)
    assert torch.equal(x[y == 1][:, :, 0, 0], torch.tensor([[10, 10, 10]] * 2, dtype=torch.uint8))


def test_celeba5_missing_files(tmp_path):
    with pytest.raises(DataNotFoundError, match="list_attr_celeba.txt.*mmlab.ie.cuhk.edu.hk"):
        create_dataset("celeba5", tmp_path)


def test_celeba5_malformed_attribute_line(tmp_path):
    write_celeba(tmp_path)
    lines = (tmp_path / "list_attr_celeba.txt").read_text().splitlines()
    lines[4] = lines[4].rsplit(" ", 3)[0]
    (tmp_path / "list_attr_celeba.txt").write_text("\n".join(lines))
    with pytest.raises(DataError, match=r"list_attr_celeba.txt:5: expected a file name and 40 values"):
        create_dataset("celeba5", tmp_path)


def test_celeba5_missing_image(tmp_path):
    write_celeba(tmp_path)
    (tmp_path / "img_align_celeba" / "000001.jpg").unlink()
    with pytest.raises(DataNotFoundError, match="000001.jpg"):
        create_dataset("celeba5", tmp_path)
    with pytest.warns(UserWarning, match="skipped 1"):
        bundle = create_dataset("celeba5", tmp_path, skip_corrupt=True, stats=False)
    assert bundle.class_counts == [5, 5, 2, 4, 3]


@pytest.mark.parametrize("csv", [False, True])
def test_celeba5_image_name_leaving_the_image_folder(tmp_path, csv):
    write_celeba(tmp_path, csv=csv)
    name = "list_attr_celeba.csv" if csv else "list_attr_celeba.txt"
    lines = (tmp_path / name).read_text().splitlines()
    sep = "," if csv else " "
    lines[3] = "../../../etc/hostname" + sep + lines[3].split(sep, 1)[1]
    (tmp_path / name).write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=rf"{name}:4: image name '../../../etc/hostname' leads outside the image folder"):
        create_dataset("celeba5", tmp_path, stats=False)

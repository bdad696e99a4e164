"""Independent reference implementations that tests compare purenoise against."""
from __future__ import annotations

import numpy as np


def ldam_reference(targets, counts, seed):
    """LDAM-DRW's gen_imbalanced_data, written independently with numpy's global RNG."""
    np.random.seed(seed)
    targets_np = np.array(targets, dtype=np.int64)
    selected = []
    for the_class, the_img_num in zip(np.unique(targets_np), counts):
        idx = np.where(targets_np == the_class)[0]
        np.random.shuffle(idx)
        selected.extend(idx[:the_img_num].tolist())
    return selected

"""The README's library example runs as written (on a small random long-tailed set)."""
from __future__ import annotations

import re
from pathlib import Path

import torch


def test_readme_library_example_runs():
    text = (Path(__file__).parents[1] / "README.md").read_text()
    block = re.search(r"## The method in a few lines\s+```python\n(.*?)```", text, re.S).group(1)
    counts = [128, 64, 32, 16, 8, 4, 2, 1, 1, 1]
    labels = [c for c, n in enumerate(counts) for _ in range(n)]
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(len(labels), 3, 8, 8, generator=gen)  # small: the block trains resnet18 at full resolution
    namespace = {
        "train_set": torch.utils.data.TensorDataset(images, torch.tensor(labels)),
        "labels": labels,
        "class_counts": counts,
    }
    exec(compile(block, "README.md", "exec"), namespace)
    model = namespace["model"]
    assert namespace["schedule"].n_noise > 0  # the last batch held noise rows
    assert torch.isfinite(namespace["loss"])
    assert any(type(m).__name__ == "DARBatchNorm2d" for m in model.modules())


def test_readme_study_summary_is_what_results_py_prints(monkeypatch):
    """The README's study numbers are rendered from the committed run folders, never typed by hand."""
    import sys

    study_dir = Path(__file__).parents[1] / "benchmarks" / "fmnist_lt"
    monkeypatch.syspath_prepend(str(study_dir))
    for name in ("study", "study_runs", "evidence", "evidence_results", "evidence_verdicts", "evidence_section",
                 "readme_block", "demo"):
        sys.modules.pop(name, None)
    import demo
    import readme_block
    import study
    from study_runs import Study

    text = (Path(__file__).parents[1] / "README.md").read_text()
    block = text.split(readme_block.BEGIN, 1)[1].split(readme_block.END, 1)[0]
    assert block.strip("\n").splitlines() == readme_block.render(Study(study.RUNS))
    # The demo transcript's study lines are what `make demo` prints from the same run folders.
    printed = demo.study_range(study.demo_cell())
    assert "\n".join(printed[1:]) in text

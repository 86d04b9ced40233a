"""scripts/sample_figure.py: the README's figure of sample crops, on a tiny model and photos."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "sample_figure.py"


@pytest.fixture(scope="module")
def sample_figure():
    spec = importlib.util.spec_from_file_location("sample_figure", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "val"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.png"):
        Image.fromarray(rng.integers(0, 256, (96, 80, 3), dtype=np.uint8)).save(folder / name)
    return folder


def test_one_row_per_image_and_one_panel_per_model(sample_figure, photos, model_dir, tmp_path):
    output = tmp_path / "figure.png"
    argv = [str(photos), "-o", str(output), "--crop", "32", "--degradation", "bicubic"]
    argv += ["--model", str(model_dir), "--label", "old", "--model", str(model_dir)]
    argv += ["--label", "new"]
    assert sample_figure.main(argv) == 0
    with Image.open(output) as figure:
        # LQ, bicubic, two models and HQ across; two images down, each panel under its label.
        assert figure.size == (5 * 32, 2 * (32 + sample_figure.LABEL_HEIGHT))
        labelled = np.asarray(figure.convert("RGB"))

    # The same figure with the default titles (both models' names alike): only the two model
    # panels' title strips differ, and the "old" and "new" titles differ from each other.
    default = tmp_path / "default.png"
    argv = [str(photos), "-o", str(default), "--crop", "32", "--degradation", "bicubic"]
    assert sample_figure.main([*argv, "--model", str(model_dir), "--model", str(model_dir)]) == 0
    with Image.open(default) as figure:
        unlabelled = np.asarray(figure.convert("RGB"))
    title = slice(0, sample_figure.LABEL_HEIGHT)
    columns = [slice(32 * i, 32 * (i + 1)) for i in range(5)]
    changed = [not np.array_equal(labelled[title, c], unlabelled[title, c]) for c in columns]
    assert changed == [False, False, True, True, False]
    assert not np.array_equal(labelled[title, columns[2]], labelled[title, columns[3]])
    pictures = slice(sample_figure.LABEL_HEIGHT, sample_figure.LABEL_HEIGHT + 32)  # first row
    assert np.array_equal(labelled[pictures], unlabelled[pictures])


def test_labels_must_match_the_models(sample_figure, photos, model_dir, tmp_path, capsys):
    output = tmp_path / "figure.png"
    argv = [str(photos), "-o", str(output), "--model", str(model_dir), "--model", str(model_dir)]
    with pytest.raises(SystemExit) as raised:
        sample_figure.main([*argv, "--label", "only one"])
    assert raised.value.code == 2
    assert "1 --label for 2 --model" in capsys.readouterr().err
    assert not output.exists()

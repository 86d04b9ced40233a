"""scripts/gather_photos.py: the DEP-5 parser, attribution and the train / val split, on tiny
synthetic inputs (no download, no Debian tools)."""

from __future__ import annotations

import csv
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gather_photos.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("gather_photos", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gather_photos"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


gp = _load_script()

COPYRIGHT = """\
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: demo
Source: https://example.org/demo

Files: *
Copyright: 2020 Default Author <default@example.org>
License: GPL-2+

Files:
 images/land/*
 images/scene/*
Copyright: Various
License: public-domain
 Donated and placed in the public domain.
 .
 (Exceptions noted below.)

Files: images/land/*-alice*
Copyright: Alice Example
           2019 Alice's Studio
License: CC-BY-SA-4.0
Comment: Cropped and
 edited.

Files: images/land/beach1* images/land/sea?x.jpg
       images/land/star\\*.jpg
Copyright: Various
License: public-domain
 From unsplash.com.

Files: images/land/beach10-bob*
Copyright: Bob Example
License: CC-BY-4.0

License: GPL-2+
 The full text of the licence would be here.
 .
 Second paragraph.
"""


# ------------------------------------------------------------------------- DEP-5 parser


def test_parse_stanzas_multiline_files_and_fields():
    dep5 = gp.Dep5.parse(COPYRIGHT)
    assert len(dep5.stanzas) == 5  # the header and the stand-alone License are not stanzas
    assert dep5.stanzas[1].files == ("images/land/*", "images/scene/*")
    assert dep5.stanzas[2].copyright == "Alice Example; 2019 Alice's Studio"
    assert dep5.stanzas[2].comment == "Cropped and edited."
    assert dep5.stanzas[1].license == "public-domain"
    assert dep5.stanzas[1].license_detail == (
        "Donated and placed in the public domain. (Exceptions noted below.)"
    )
    # Patterns on the Files line itself and on continuation lines.
    assert dep5.stanzas[3].files == (
        "images/land/beach1*",
        "images/land/sea?x.jpg",
        "images/land/star\\*.jpg",
    )


def test_last_matching_stanza_wins():
    dep5 = gp.Dep5.parse(COPYRIGHT)
    assert dep5.lookup("README").copyright.startswith("2020 Default Author")
    assert dep5.lookup("images/land/hill0.jpg").license == "public-domain"
    assert dep5.lookup("images/land/hill0-alice.jpg").license == "CC-BY-SA-4.0"
    # beach10-bob matches `*`, `images/land/*`, `beach1*` and `beach10-bob*`: the last wins.
    assert dep5.lookup("images/land/beach10-bob.jpg").copyright == "Bob Example"
    assert [s.index for s in dep5.matches("images/land/beach10-bob.jpg")] == [0, 1, 3, 4]


def test_glob_semantics():
    assert gp.dep5_match("*", "a/b/c.jpg")  # `*` crosses slashes
    assert gp.dep5_match("images/*", "images/land/x.jpg")
    assert gp.dep5_match("images/land/sea?x.jpg", "images/land/sea1x.jpg")
    assert gp.dep5_match("images/outfit/cooling?ducts*", "images/outfit/cooling ducts@2x.png")
    assert not gp.dep5_match("images/land/sea?x.jpg", "images/land/sea12x.jpg")
    assert not gp.dep5_match("images/land/*", "images/scene/x.jpg")
    assert gp.dep5_match("images/land/star\\*.jpg", "images/land/star*.jpg")
    assert not gp.dep5_match("images/land/star\\*.jpg", "images/land/starry.jpg")
    assert gp.dep5_match("./nature/A.jpg", "nature/A.jpg")
    assert gp.dep5_match("a+b(1).jpg", "a+b(1).jpg")  # regex characters are literal
    assert gp.Dep5.parse(COPYRIGHT).lookup("other/x.jpg").index == 0


def test_parse_errors_are_clear():
    with pytest.raises(gp.GatherError, match="continuation line"):
        gp.Dep5.parse(" orphan continuation\n")
    with pytest.raises(gp.GatherError, match="no Files paragraphs"):
        gp.Dep5.parse("Format: x\nUpstream-Name: y\n")


# ------------------------------------------------------------------------- attribution


def test_attribution_and_conflicts():
    dep5 = gp.Dep5.parse(COPYRIGHT)
    plain = gp.attribute(dep5, "images/land/hill0.jpg")
    assert (plain.copyright, plain.license) == ("Various", "public-domain")
    assert "conflicting" not in plain.note  # `*` and `images/land/*` are mere defaults

    # beach1-alice: the Alice stanza (CC-BY-SA) and the later `beach1*` stanza (public
    # domain) disagree; DEP-5 says the last wins, the default keeps the stricter licence.
    path = "images/land/beach1-alice.jpg"
    restrictive = gp.attribute(dep5, path)
    assert restrictive.copyright.startswith("Alice Example")
    assert restrictive.license == "CC-BY-SA-4.0"
    assert restrictive.comment == "Cropped and edited."
    assert "conflicting DEP-5 stanzas" in restrictive.note
    last = gp.attribute(dep5, path, conflicts="last")
    assert last.license == "public-domain"
    assert isinstance(gp.attribute(dep5, path, conflicts="exclude"), str)

    # beach10-bob: Bob's stanza is both the last and the stricter.
    assert gp.attribute(dep5, "images/land/beach10-bob.jpg").copyright == "Bob Example"

    only_specific = gp.Dep5.parse("Files: nature/A.jpg\nCopyright: A\nLicense: CC0-1.0\n")
    assert isinstance(gp.attribute(only_specific, "nature/B.jpg"), str)  # unattributable


# ------------------------------------------------------------------------- split


def _sizes(count: int, seed: int = 0) -> dict[str, tuple[int, int]]:
    rng = np.random.default_rng(seed)
    return {
        f"src_{i:03d}": (int(rng.integers(200, 900)), int(rng.integers(200, 600)))
        for i in range(count)
    }


def test_split_holds_out_whole_photos():
    sizes = _sizes(80)
    split = gp.plan_split(sizes, val_crops=24, seed=0, held_out=["src_005"])
    assert set(split.train).isdisjoint(split.val)
    assert set(split.train) | set(split.val) == set(sizes)
    assert "src_005" in split.val or min(sizes["src_005"]) < 256
    assert len(split.crops) == 24 >= 20
    for crop in split.crops:
        assert crop.key in split.val and crop.key not in split.train
        left, top, right, bottom = crop.box
        width, height = sizes[crop.key]
        assert right - left == bottom - top == 256
        assert 0 <= left <= right <= width and 0 <= top <= bottom <= height
    assert len({crop.name for crop in split.crops}) == 24


def test_split_is_deterministic_and_seeded():
    sizes = _sizes(80)
    assert gp.plan_split(sizes, 24, seed=0) == gp.plan_split(dict(reversed(sizes.items())), 24, 0)
    assert gp.plan_split(sizes, 24, seed=0).val != gp.plan_split(sizes, 24, seed=1).val


def test_split_ignores_photos_that_may_not_be_held_out():
    sizes = _sizes(80)
    base = gp.plan_split(sizes, 24, seed=0, val_candidates=list(sizes))
    extra = dict(sizes) | {"skimage_astronaut": (512, 512)}
    with_extra = gp.plan_split(extra, 24, seed=0, val_candidates=list(sizes))
    assert with_extra.val == base.val and with_extra.crops == base.crops
    assert "skimage_astronaut" in with_extra.train


def test_split_with_few_photos_takes_several_crops_each():
    sizes = {f"p{i}": (600, 400) for i in range(6)}
    split = gp.plan_split(sizes, val_crops=20, seed=3)
    assert len(split.crops) == 20
    assert 1 <= len(split.val) < 6 and split.train
    assert len({(c.key, c.box) for c in split.crops}) > len(split.val)  # distinct jitter
    with pytest.raises(ValueError, match="256"):
        gp.plan_split({"tiny": (100, 100), "b": (50, 50)}, 20, 0)


# ------------------------------------------------------------------------- end to end


def _fake_package(root: Path, count: int) -> gp.DebSource:
    """An unpacked 'package': photos under usr/share/pics/land, a DEP-5 copyright file."""
    land = root / "usr/share/pics/land"
    land.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        base = rng.integers(0, 255, size=(14, 15, 3), dtype=np.uint8)
        image = Image.fromarray(base).resize((600, 560), Image.Resampling.BICUBIC)
        suffix = "-alice" if i % 5 == 0 else ""
        image.save(land / f"hill{i}{suffix}@2x.jpg", quality=90)
    Image.new("RGB", (600, 560), "red").save(land / "logo@2x.jpg")
    Image.new("RGB", (600, 560), "green").save(land / "orphan@2x.jpg")  # no stanza covers it
    doc = root / "usr/share/doc/demo"
    doc.mkdir(parents=True)
    (doc / "copyright").write_text(
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\n"
        "Files: images/land/hill*\nCopyright: Hill Photographer\nLicense: CC0-1.0\n\n"
        "Files: images/land/*-alice*\nCopyright: Alice Example\nLicense: CC-BY-SA-4.0\n"
    )
    return gp.DebSource(
        key="demo",
        package="demo-photos",
        files="usr/share/pics/land/*",
        copyright_file="usr/share/doc/demo/copyright",
        copyright_root="usr/share/pics",
        copyright_prefix="images/",
        not_photos={"logo@2x.jpg": "a logo"},
    )


def test_collect_and_gather(tmp_path: Path):
    unpacked = tmp_path / "unpacked"
    source = _fake_package(unpacked, count=30)
    photos, excluded = gp.collect_deb_photos(unpacked, source, "1.0-1")
    assert len(photos) == 30
    reasons = {e.original_path.rsplit("/", 1)[1]: e.reason for e in excluded}
    assert set(reasons) == {"logo@2x.jpg", "orphan@2x.jpg"}
    assert reasons["orphan@2x.jpg"].startswith("cannot attribute")
    by_key = {photo.key: photo for photo in photos}
    assert by_key["demo_hill0-alice"].license == "CC-BY-SA-4.0"
    assert by_key["demo_hill1"].copyright == "Hill Photographer"
    assert by_key["demo_hill1"].original_path == "/usr/share/pics/land/hill1@2x.jpg"
    assert by_key["demo_hill1"].package == "demo-photos 1.0-1"

    output = tmp_path / "data"
    report = gp.gather(photos, output, val_crops=20, seed=0, excluded=excluded)
    train = sorted(p.name for p in (output / "train").iterdir())
    val = sorted(p.name for p in (output / "val").iterdir())
    assert len(val) == 20 and len(train) == len(report.split.train)
    for name in val:
        assert Image.open(output / "val" / name).size == (256, 256)
    assert Image.open(output / "train" / train[0]).size == (300, 280)  # downscaled 2x
    val_photos = {name.rsplit("_", 1)[0] for name in val}
    assert val_photos.isdisjoint(Path(name).stem for name in train)

    with (output / "SOURCES.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {row["file"] for row in rows} == {f"train/{n}" for n in train} | {
        f"val/{n}" for n in val
    }
    assert all(row["license"] and row["copyright"] and row["original_path"] for row in rows)
    assert "logo@2x.jpg" in (output / "EXCLUDED.csv").read_text()
    assert "20" in gp.summary(report, output)

    # Idempotent: a second run writes nothing and leaves every byte as it was.
    before = {p: p.read_bytes() for p in output.rglob("*") if p.is_file()}
    again = gp.gather(photos, output, val_crops=20, seed=0, excluded=excluded)
    assert again.written == 0
    assert {p: p.read_bytes() for p in output.rglob("*") if p.is_file()} == before
    # Nothing outside the output folder (and the input tree) was created.
    assert {p.name for p in tmp_path.iterdir()} == {"unpacked", "data"}

    # Another seed moves files between the splits; the stale ones are removed.
    other = gp.gather(photos, output, val_crops=20, seed=1, excluded=excluded)
    assert other.removed
    with (output / "SOURCES.csv").open(newline="") as handle:
        listed = {row["file"] for row in csv.DictReader(handle)}
    on_disk = {p.relative_to(output).as_posix() for p in output.glob("*/*.png")}
    assert listed == on_disk


def test_examples_are_small_and_licensed(tmp_path: Path, monkeypatch):
    unpacked = tmp_path / "unpacked"
    source = _fake_package(unpacked, count=4)
    photos, _ = gp.collect_deb_photos(unpacked, source, "1.0-1")
    specs = (
        gp.ExampleSpec("a.png", "demo_hill1", "A hill"),
        gp.ExampleSpec("b.png", "demo_hill0-alice", "Alice's hill"),
    )
    monkeypatch.setattr(gp, "EXAMPLES", specs)
    written = gp.write_examples({p.key: p for p in photos}, tmp_path / "examples")
    assert [p.name for p in written] == ["a.png", "b.png", "LICENSES.md"]
    assert Image.open(tmp_path / "examples" / "a.png").size == gp.EXAMPLE_SIZE
    licenses = (tmp_path / "examples" / "LICENSES.md").read_text()
    assert "Hill Photographer" in licenses and "CC-BY-SA-4.0" in licenses
    monkeypatch.setattr(gp, "EXAMPLES", (gp.ExampleSpec("c.png", "missing", "?"),))
    with pytest.raises(gp.GatherError, match="missing"):
        gp.write_examples({p.key: p for p in photos}, tmp_path / "examples")


def test_cli_rejects_too_few_val_crops(capsys):
    with pytest.raises(SystemExit):
        gp.parse_args(["--val-crops", "5"])
    assert "at least 20" in capsys.readouterr().err
    args = gp.parse_args(["--output", "somewhere"])
    assert args.cache == Path("somewhere/.debs") and args.val_crops == 24 and args.seed == 0

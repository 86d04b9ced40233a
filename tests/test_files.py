"""upsampler.io.files: finding image files, and writing files and folders atomically."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from upsampler.io.files import atomic_output, find_images, write_model_folder


def _touch(root: Path, *names: str) -> None:
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")


def _relative(paths: list[Path], root: Path) -> list[str]:
    return [path.relative_to(root).as_posix() for path in paths]


@pytest.fixture
def umask_022():
    previous = os.umask(0o022)
    yield
    os.umask(previous)


# --------------------------------------------------------------------------- find_images


def test_find_images_by_suffix_in_any_case_sorted_and_recursive_on_request(tmp_path):
    _touch(
        tmp_path,
        "b.PNG", "a.jpg", "c.Jpeg", "d.webp", "e.tif", "f.TIFF", "g.bmp", "h.gif",
        "notes.txt", "photo.png.part", "no_suffix",
        "sub/z.png", "sub/deeper/y.jpg", "sub-2/x.png",
    )  # fmt: skip
    flat = find_images(tmp_path, recursive=False)
    assert _relative(flat, tmp_path) == [
        "a.jpg", "b.PNG", "c.Jpeg", "d.webp", "e.tif", "f.TIFF", "g.bmp", "h.gif",
    ]  # fmt: skip
    deep = find_images(tmp_path, recursive=True)
    # Sorted as Path objects sort: part by part, so sub/ comes before sub-2/ ("/" is not
    # compared with "-").
    assert _relative(deep, tmp_path) == [
        "a.jpg", "b.PNG", "c.Jpeg", "d.webp", "e.tif", "f.TIFF", "g.bmp", "h.gif",
        "sub/deeper/y.jpg", "sub/z.png", "sub-2/x.png",
    ]  # fmt: skip
    assert deep == sorted(deep)
    assert find_images(tmp_path, recursive=True) == deep  # the same on every call


def test_find_images_takes_a_file_reached_twice_once(tmp_path):
    _touch(tmp_path, "a.png", "b.png")
    (tmp_path / "link.png").symlink_to(tmp_path / "a.png")  # a name of its own: kept
    a, b, link = tmp_path / "a.png", tmp_path / "b.png", tmp_path / "link.png"
    same_a = tmp_path / ".." / tmp_path.name / "a.png"
    found = find_images([b, a, tmp_path, same_a, b], recursive=False)
    assert found == [b, a, link]
    assert find_images([tmp_path / "missing.png"] * 2, recursive=False) == [
        tmp_path / "missing.png"
    ]


def test_find_images_skips_hidden_files_and_folders_inside_folders(tmp_path):
    _touch(tmp_path, "a.png", ".b.png", "._c.jpg", ".thumbnails/d.png", "sub/.e.png", "sub/f.png")
    assert _relative(find_images(tmp_path, recursive=True), tmp_path) == ["a.png", "sub/f.png"]
    # A hidden folder given by name is searched: only what lies below it is filtered.
    hidden = tmp_path / ".thumbnails"
    assert _relative(find_images(hidden, recursive=True), hidden) == ["d.png"]


def test_find_images_takes_files_as_given_and_keeps_the_order_of_the_inputs(tmp_path):
    _touch(tmp_path, "folder/b.png", "folder/a.png", "z.png", ".hidden.png", "notes.txt")
    given = [tmp_path / "z.png", tmp_path / "folder", tmp_path / "notes.txt"]
    given += [tmp_path / ".hidden.png", tmp_path / "missing.png"]
    assert _relative(find_images(given, recursive=False), tmp_path) == [
        "z.png", "folder/a.png", "folder/b.png", "notes.txt", ".hidden.png", "missing.png",
    ]  # fmt: skip
    assert find_images(str(tmp_path / "z.png"), recursive=True) == [tmp_path / "z.png"]


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="no symbolic links")
def test_find_images_takes_linked_files_but_does_not_descend_into_linked_folders(tmp_path):
    # As Path.rglob does: a link to a file is an image, a link to a folder is not followed
    # (no loops, no photos counted twice); a broken link is not a file.
    _touch(tmp_path, "other/y.png", "photos/sub/x.png")
    (tmp_path / "photos" / "linked.png").symlink_to(tmp_path / "other" / "y.png")
    (tmp_path / "photos" / "folder").symlink_to(tmp_path / "other", target_is_directory=True)
    (tmp_path / "photos" / "loop").symlink_to(tmp_path / "photos", target_is_directory=True)
    (tmp_path / "photos" / "broken.png").symlink_to(tmp_path / "nowhere.png")
    photos = tmp_path / "photos"
    found = find_images(photos, recursive=True)
    assert _relative(found, photos) == ["linked.png", "sub/x.png"]
    assert found == sorted(p for p in photos.rglob("*") if p.is_file())
    # A linked folder given as an input is searched.
    assert _relative(find_images(photos / "folder", recursive=True), photos) == ["folder/y.png"]


def test_find_images_leaves_out_the_excluded_folder(tmp_path):
    _touch(tmp_path, "a.png", "out/a.png", "out/sub/b.png", "sub/c.png")
    found = find_images(tmp_path, recursive=True, exclude=tmp_path / "out")
    assert _relative(found, tmp_path) == ["a.png", "sub/c.png"]
    relative_exclude = os.path.relpath(tmp_path / "out")  # compared resolved
    assert find_images(tmp_path, recursive=True, exclude=relative_exclude) == found


def test_find_images_of_an_empty_or_imageless_folder_is_empty(tmp_path):
    assert find_images(tmp_path, recursive=True) == []
    _touch(tmp_path, "notes.txt", ".git/HEAD.png")
    assert find_images([tmp_path], recursive=True) == []


def test_find_images_needs_no_heavy_imports():
    # The command line lists inputs before it loads NumPy, Pillow or torch.
    import subprocess
    import sys

    code = (
        "import sys; from upsampler.io.files import find_images; "
        "print(sorted({'numpy', 'PIL', 'torch'} & {m.split('.')[0] for m in sys.modules}))"
    )
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "[]"


# --------------------------------------------------------------------------- atomic_output


def test_atomic_output_writes_mode_0644_under_umask_022(tmp_path, umask_022):
    target = tmp_path / "new" / "report.json"  # the folder is created
    with atomic_output(target) as temporary:
        assert temporary.parent == target.parent and temporary.name.startswith(".report.json.")
        assert temporary.name.endswith(".part")
        temporary.write_text("{}\n")
        assert not target.exists()  # nothing at the target until the block ends
    assert target.read_text() == "{}\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644  # mkstemp would have left 0600
    assert sorted(p.name for p in target.parent.iterdir()) == ["report.json"]


def test_atomic_output_follows_the_umask(tmp_path):
    previous = os.umask(0o077)
    try:
        with atomic_output(tmp_path / "private.txt") as temporary:
            temporary.write_text("x")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "private.txt").stat().st_mode) == 0o600


@pytest.mark.parametrize("failure", [OSError("disk full"), KeyboardInterrupt()])
def test_atomic_output_leaves_the_target_untouched_and_nothing_behind(tmp_path, failure):
    target = tmp_path / "out.png"
    target.write_bytes(b"previous complete output")
    with pytest.raises(type(failure)), atomic_output(target) as temporary:
        temporary.write_bytes(b"half an ima")
        raise failure
    assert target.read_bytes() == b"previous complete output"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]
    # A new target that fails is not created at all.
    with pytest.raises(type(failure)), atomic_output(tmp_path / "new.png") as temporary:
        temporary.write_bytes(b"half")
        raise failure
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]


def test_atomic_output_replaces_an_existing_file(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with atomic_output(target) as temporary:
        temporary.write_text("new")
    assert target.read_text() == "new"


def test_atomic_output_is_the_one_images_uses():
    from upsampler.io import images

    assert images.atomic_output is atomic_output


# --------------------------------------------------------------------------- write_model_folder


def _private_files(folder: Path) -> None:
    """A writer that makes 0600 files, as safetensors does."""
    for name in ("model.safetensors", "config.json"):
        descriptor = os.open(folder / name, os.O_WRONLY | os.O_CREAT, 0o600)
        os.write(descriptor, name.encode())
        os.close(descriptor)


def test_write_model_folder_gives_ordinary_modes(tmp_path, umask_022):
    output = write_model_folder(tmp_path / "model", _private_files)
    assert sorted(p.name for p in output.iterdir()) == ["config.json", "model.safetensors"]
    for file in output.iterdir():
        assert stat.S_IMODE(file.stat().st_mode) == 0o644, file.name
    assert stat.S_IMODE(output.stat().st_mode) == 0o755


def test_write_model_folder_failing_leaves_the_destination_as_it_was(tmp_path):
    output = tmp_path / "model"
    output.mkdir()
    (output / "config.json").write_text("old config")

    def fails(folder: Path) -> None:
        (folder / "config.json").write_text("new config")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_model_folder(output, fails)
    assert sorted(p.name for p in output.iterdir()) == ["config.json"]
    assert (output / "config.json").read_text() == "old config"
    with pytest.raises(OSError, match="disk full"):
        write_model_folder(tmp_path / "new", fails)
    assert not (tmp_path / "new").exists()  # a folder it created is removed again


def test_a_model_folder_that_is_not_empty_is_refused_unless_asked(tmp_path):
    from upsampler.io.files import check_output_folder

    output = tmp_path / "model"
    assert check_output_folder(output) == output  # new: fine
    output.mkdir()
    assert check_output_folder(output) == output  # empty: fine
    (output / "notes.md").write_text("mine")
    with pytest.raises(FileExistsError, match="--overwrite"):
        check_output_folder(output)
    assert check_output_folder(output, overwrite=True) == output
    with pytest.raises(ValueError, match="is inside"):
        check_output_folder(output / "inner", sources={"the model": output}, overwrite=True)

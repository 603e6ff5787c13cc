"""Fault injection: SIGKILL an ingest at random moments and check the index survives every time.

    python -m eval.crash [--trials 30] [--files 60] [--seed 0] [--json]

Each trial flips the document folder between two states (files added, changed, removed), starts
`rag.ingest.build` in a subprocess and kills it with SIGKILL at a random moment of a full run (parse,
embed and write all get hit). After every kill: the index must open, a search must return hits,
and the live generation must be exactly one of the two clean states. Then the ingest is run to
completion and must equal a clean ingest of the folder (same chunk ids, order, files, vectors).
A deterministic hashing embedder stands in for the model, with a per-batch delay that stretches
the embedding stage out; the model is not what is under test.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import sys
from rag.config import load_config
from rag.models.embed import HashEmbedder
from rag.ingest.build import ingest
cfg = load_config(env={}, overrides={"index_dir": sys.argv[2], "embed_model": "hash-embedder", "rerank": False})
print("start", flush=True)
ingest(sys.argv[1], cfg, embedder=HashEmbedder(delay=float(sys.argv[3]), batch_size=4))
print("done", flush=True)
"""


def write_state(folder: Path, n: int, variant: int) -> None:
    """Variant 0 and 1 differ by added, changed and removed files."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for i in range(n):
        if variant == 1 and i % 5 == 0:
            continue  # removed
        extra = f" Revised in variant one with gadget{i}." if variant == 1 and i % 3 == 0 else ""
        (folder / f"doc{i:03d}.md").write_text(
            f"# Document {i}\n\nTopic {i} covers item{i} and the shared subject of widgets.{extra}\n\n"
            f"Second paragraph of {i} mentions part{i % 7} and more text.\n", encoding="utf-8")
    if variant == 1:
        for i in range(n // 4):
            (folder / f"new{i:03d}.txt").write_text(f"A new note {i} about sprocket{i}.\n", encoding="utf-8")


def fingerprint(index_dir: Path) -> str:
    """Hash of everything a clean ingest determines."""
    from rag.index.store import Index

    idx = Index.open(index_dir)
    con = sqlite3.connect(idx.path / "chunks.sqlite")
    h = hashlib.sha256()
    for row in con.execute("SELECT row, id, source, text, tokens FROM chunks ORDER BY row"):
        h.update(repr(row).encode())
    for row in con.execute("SELECT source, hash, chunks FROM files ORDER BY source"):
        h.update(repr(row).encode())
    con.close()
    h.update(np.asarray(idx.vectors).round(5).tobytes())
    idx.close()
    return h.hexdigest()


def run_child(folder: Path, index_dir: Path, delay: float, kill_after: float | None) -> tuple[bool, float]:
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(folder), str(index_dir), str(delay)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "start"
    if kill_after is None:
        proc.wait()
        return True, time.perf_counter() - t0
    try:
        proc.wait(timeout=kill_after)
        return True, time.perf_counter() - t0  # finished before the kill
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return False, time.perf_counter() - t0


def run(trials: int = 30, files: int = 60, seed: int = 0, delay: float = 0.02, progress: bool = True) -> dict:
    from rag.config import load_config
    from rag.models.embed import HashEmbedder
    from rag.pipeline import Pipeline

    rng = random.Random(seed)
    work = Path(tempfile.mkdtemp(prefix="rag-crash-"))
    try:
        folder, index_dir = work / "docs", work / "index"
        clean = {}
        durations = []
        for v in (0, 1):  # the two clean states, and how long a full ingest takes
            write_state(folder, files, v)
            shutil.rmtree(work / "clean", ignore_errors=True)
            _, secs = run_child(folder, work / "clean", delay, None)
            durations.append(secs)
            clean[v] = fingerprint(work / "clean")
        full = max(durations)
        write_state(folder, files, 0)
        run_child(folder, index_dir, delay, None)
        results = []
        t = -1
        while sum(r["killed"] for r in results) < trials and t < 3 * trials:  # count real kills only
            t += 1
            variant = (t + 1) % 2
            write_state(folder, files, variant)
            before = fingerprint(index_dir)
            kill_at = rng.uniform(0.05, 0.9 * min(durations))
            finished, _ = run_child(folder, index_dir, delay, kill_at)
            # The index must load after every kill and answer a search the way the product does.
            cfg = load_config(env={}, overrides={"index_dir": str(index_dir), "embed_model": "hash-embedder",
                                                 "rerank": False})
            pipe = Pipeline(cfg, embedder=HashEmbedder(), generator=None, reranker=None)
            hits = pipe.search("widgets topic", k=3)
            pipe.index.close()
            live = fingerprint(index_dir)
            ok_live = live in (before, clean[variant])
            run_child(folder, index_dir, delay, None)
            converged = fingerprint(index_dir) == clean[variant]
            results.append({"trial": t, "kill_after_s": round(kill_at, 2), "killed": not finished,
                            "loads": True, "hits": len(hits), "live_is_a_clean_state": ok_live,
                            "live_is_previous": live == before, "converged": converged})
            if progress:
                print(f"trial {t + 1:>2}: kill at {kill_at:5.2f}s "
                      f"{'killed' if not finished else 'finished first'}, hits {len(hits)}, "
                      f"live {'previous' if live == before else 'new' if ok_live else 'WRONG'}, "
                      f"re-run {'converged' if converged else 'DIVERGED'}", file=sys.stderr)
        ok = all(r["hits"] > 0 and r["live_is_a_clean_state"] and r["converged"] for r in results)
        return {"trials": len(results), "killed": sum(r["killed"] for r in results), "full_ingest_s": round(full, 2),
                "all_ok": ok, "results": results}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m eval.crash", description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=30)
    ap.add_argument("--files", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    out = run(args.trials, args.files, args.seed, progress=not args.json)
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        prev = sum(r["live_is_previous"] for r in out["results"])
        print(f"{out['trials']} trials, {out['killed']} killed mid-run (full ingest {out['full_ingest_s']} s): "
              f"index loaded and searchable after every kill; live generation was the previous one {prev} times "
              f"and the new one {out['trials'] - prev} times; re-run converged to the clean state "
              f"{sum(r['converged'] for r in out['results'])}/{out['trials']} — "
              + ("ALL OK" if out["all_ok"] else "FAILURES"))
    return 0 if out["all_ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""Generation with a tiny random GGUF built on the spot; model resolution; the model downloader CLI."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from rag.answer.generate import Generator, complete
from rag.cli.models import main as models_main
from rag.config import Config
from rag.errors import ModelNotFoundError
from rag.models.llama import (
    DecodeThreads,
    LlamaCppGenerator,
    count_physical_cores,
    load_generator,
    model_params,
    physical_cores,
    resolve_gguf,
    weight_repack_default,
)
from rag.models.registry import RECOMMENDED, find_recommended
from rag.testing import write_tiny_gguf

MESSAGES = [{"role": "system", "content": "Answer from the sources."},
            {"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory) -> Path:
    pytest.importorskip("llama_cpp")
    return write_tiny_gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf")


@pytest.fixture(scope="session")
def gen(tiny_gguf) -> LlamaCppGenerator:
    return LlamaCppGenerator(tiny_gguf, n_ctx=256, n_threads=1, seed=7, temperature=0.0)


def test_tiny_gguf_loads_as_a_generator(gen):
    assert isinstance(gen, Generator)
    assert gen.name == "tiny.gguf"
    assert gen.context_window == 256
    assert gen.n_layers == 2
    assert gen.offload == "CPU"


def test_count_tokens_uses_the_model_vocabulary(gen):
    assert gen.count_tokens("") == 0
    assert gen.count_tokens("hello") == 4  # 'he' is a merge; 'l' 'l' 'o' are byte tokens
    assert gen.count_tokens("hello world, the end") > gen.count_tokens("hello")


def test_stream_yields_pieces_and_stops_at_max_tokens(gen):
    pieces = list(gen.stream(MESSAGES, max_tokens=5))
    assert 1 <= len(pieces) <= 5  # the tiny model never emits EOS, so it runs to the limit
    assert gen.count_tokens("".join(pieces)) <= 5
    assert len(list(gen.stream(MESSAGES, max_tokens=12))) > len(pieces)
    assert list(gen.stream(MESSAGES, max_tokens=0)) == []


def test_chat_template_comes_from_gguf_metadata(gen):
    assert "<|im_start|>" in gen.llm.metadata["tokenizer.chat_template"]
    assert gen.llm.chat_format == "chat_template.default"
    assert complete(gen, MESSAGES, max_tokens=3)
    # the rendered prompt was tokenized with the template's control tokens, not as plain text
    im_start = gen.llm.tokenize(b"<|im_start|>", add_bos=False, special=True)
    assert len(im_start) == 1
    assert list(gen.llm.eval_tokens).count(im_start[0]) == 3  # system, user, and the assistant prompt


def test_same_seed_same_answer(gen, tiny_gguf):
    greedy = complete(gen, MESSAGES, max_tokens=10, temperature=0.0)
    assert complete(gen, MESSAGES, max_tokens=10, temperature=0.0) == greedy
    sampled = complete(gen, MESSAGES, max_tokens=10, temperature=1.5)
    assert complete(gen, MESSAGES, max_tokens=10, temperature=1.5) == sampled  # the seed is reset per request
    other = LlamaCppGenerator(tiny_gguf, n_ctx=256, n_threads=1, seed=7, chat_prefix_cache=False)
    assert complete(other, MESSAGES, max_tokens=10, temperature=0.0) == greedy


def test_stop_sequences_cut_the_answer(gen):
    full = complete(gen, MESSAGES, max_tokens=12, temperature=0.0)
    cut = complete(gen, MESSAGES, max_tokens=12, temperature=0.0, stop=[full[3:5]])
    assert full.startswith(cut) and len(cut) <= 3


def test_follow_up_turn_reuses_the_prefix_cache(gen):
    answer = complete(gen, MESSAGES, max_tokens=4, temperature=0.0)
    follow_up = MESSAGES + [{"role": "assistant", "content": answer}, {"role": "user", "content": "And Spain?"}]
    assert complete(gen, follow_up, max_tokens=4)
    assert gen.llm.cache is not None and gen.llm.cache.cache_size > 0


def test_load_generator_reads_the_config(tiny_gguf):
    cfg = Config(llm_model=str(tiny_gguf), n_ctx=512, n_threads=1, seed=3, temperature=0.0)
    g = load_generator(cfg)
    assert g is not None and g.context_window == 512 and g.seed == 3 and g.n_threads == 1


def test_load_generator_without_a_model_is_none(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no models/ folder here
    assert load_generator(Config(llm_model="")) is None


def test_resolve_gguf_finds_files_and_folders(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    assert resolve_gguf("", search_dirs=[models]) is None
    assert resolve_gguf("", search_dirs=[tmp_path / "absent"]) is None
    for name in ("b.gguf", "a.gguf", "mmproj-a.gguf", "c-00002-of-00002.gguf", RECOMMENDED[2].file):
        (models / name).write_bytes(b"GGUF")
    assert resolve_gguf("", search_dirs=[models]) == models / RECOMMENDED[2].file  # recommended first
    (models / RECOMMENDED[2].file).unlink()
    assert resolve_gguf("", search_dirs=[models]) == models / "a.gguf"  # then by name, projectors skipped
    assert resolve_gguf(str(models / "b.gguf")) == models / "b.gguf"
    assert resolve_gguf(str(models)) == models / "a.gguf"
    (models / RECOMMENDED[0].file).write_bytes(b"GGUF")
    assert resolve_gguf(RECOMMENDED[0].name, search_dirs=[models]) == models / RECOMMENDED[0].file


@pytest.mark.parametrize("spec", ["no/such-repo/model.gguf", "no/such-repo:model.gguf", "missing.gguf",
                                  "qwen2.5-7b"])
def test_resolve_gguf_missing_spec_says_how_to_fix(spec, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    with pytest.raises(ModelNotFoundError) as err:
        resolve_gguf(spec, search_dirs=[tmp_path])
    msg = str(err.value)
    assert spec in msg and "python -m rag.models pull" in msg and "path" in msg
    if spec == "qwen2.5-7b":
        assert "pull qwen2.5-7b" in msg


def test_physical_cores():
    assert 1 <= physical_cores() <= (os.cpu_count() or 1)
    two_threads_per_core = "".join(f"processor : {i}\nphysical id : 0\ncore id : {i // 2}\n\n" for i in range(8))
    assert count_physical_cores(two_threads_per_core) == 4
    assert count_physical_cores("processor : 0\nBogoMIPS : 50\n") == 0


def test_weight_repack_is_off_only_for_an_amx_build_on_an_amx_cpu():
    amx = "processor : 0\nflags : fpu sse avx2 avx512f avx512_vnni amx_bf16 amx_tile amx_int8\n\n"
    amx_build = "CPU : AVX2 = 1 | AVX512 = 1 | AMX_INT8 = 1 | OPENMP = 1 | REPACK = 1 | "
    assert weight_repack_default(amx, amx_build) is False
    assert weight_repack_default(amx, amx_build.replace("AMX_INT8 = 1 | ", "")) is True
    assert weight_repack_default(amx.replace(" amx_bf16 amx_tile amx_int8", ""), amx_build) is True
    assert weight_repack_default("", amx_build) is True  # no /proc/cpuinfo (macOS, Windows): llama.cpp's default


def test_without_repack_llama_cpp_loads_with_its_extra_buffer_types_off(tiny_gguf):
    import llama_cpp.llama_cpp as lib

    if "use_extra_bufts" not in {f[0] for f in lib.llama_model_params._fields_}:
        pytest.skip("this llama-cpp-python has no use_extra_bufts model parameter")
    assert lib.llama_model_default_params().use_extra_bufts
    with model_params(weight_repack=False):
        assert not lib.llama_model_default_params().use_extra_bufts
    assert lib.llama_model_default_params().use_extra_bufts  # put back for every later load
    off = LlamaCppGenerator(tiny_gguf, n_ctx=256, n_threads=1, seed=7, temperature=0.0, weight_repack=False)
    on = LlamaCppGenerator(tiny_gguf, n_ctx=256, n_threads=1, seed=7, temperature=0.0, weight_repack=True)
    assert off.llm.model_params.use_extra_bufts is False and on.llm.model_params.use_extra_bufts is True
    assert "".join(off.stream(MESSAGES, max_tokens=6)) == "".join(on.stream(MESSAGES, max_tokens=6))


class FakeCpu:
    """/proc/stat and /proc/self/stat as the CPU seconds they add up to, on a fake clock."""

    def __init__(self, others_per_s: float, own_per_s: float = 0.0) -> None:
        self.t, self.others, self.own = 0.0, others_per_s, own_per_s
        self.reads = 0

    def clock(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.t += s

    def read(self) -> tuple[float, float]:
        self.reads += 1
        return (self.others + self.own) * self.t, self.own * self.t


@pytest.mark.parametrize(("others", "own", "threads"), [(0.0, 0.0, 4), (0.0, 1.5, 4), (0.2, 1.0, 4), (0.3, 0.0, 3),
                                                        (1.0, 0.0, 3)])
def test_decode_threads_are_all_cores_unless_other_processes_use_a_quarter_core(monkeypatch, others, own, threads):
    monkeypatch.setattr("rag.models.llama.physical_cores", lambda: 4)
    cpu = FakeCpu(others, own)
    d = DecodeThreads(clock=cpu.clock, sleep=cpu.sleep, read=cpu.read)
    assert d.now() == threads and d.others == pytest.approx(others)


def test_decode_threads_sample_at_most_every_two_seconds_and_fall_back_to_one_fewer(monkeypatch):
    monkeypatch.setattr("rag.models.llama.physical_cores", lambda: 2)
    cpu = FakeCpu(0.0)
    d = DecodeThreads(clock=cpu.clock, sleep=cpu.sleep, read=cpu.read)
    assert d.now() == 2 and cpu.reads == 2
    cpu.others = 1.0  # a job starts: not seen until the sample is two seconds old
    cpu.t += 1.0
    assert d.now() == 2 and cpu.reads == 2
    cpu.t += 1.0
    assert d.now() == 1 and cpu.reads == 4
    unknown = DecodeThreads(clock=cpu.clock, sleep=cpu.sleep, read=lambda: None)  # no /proc (macOS, a container)
    assert unknown.now() == 1


def test_models_list_marks_downloaded_files(tmp_path, capsys):
    hub = [m for m in RECOMMENDED if m.pypi is None]  # no pinned size: any file counts as downloaded
    (tmp_path / hub[0].file).write_bytes(b"GGUF")
    (tmp_path / "mine.gguf").write_bytes(b"GGUF")
    assert models_main(["list", "--dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    first, second = (next(line for line in out.splitlines() if line.startswith(m.name + " ")) for m in hub[:2])
    assert " yes " in first and " yes " not in second
    assert "mine.gguf" in out
    assert find_recommended("QWEN2.5-1.5B") is hub[0]


def test_models_pull_offline_fails_with_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert models_main(["pull", "qwen2.5-1.5b", "--dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "offline" in err and "HF_HUB_OFFLINE" in err
    assert not list(tmp_path.iterdir())


def test_models_pull_unknown_name(tmp_path, capsys):
    assert models_main(["pull", "gpt-5", "--dir", str(tmp_path)]) == 2
    assert "unknown model 'gpt-5'" in capsys.readouterr().err


def test_models_pull_without_network_fails_cleanly(tmp_path):
    # a closed local port stands in for "no internet": the hub's own connection errors must be caught
    env = {**os.environ, "HF_ENDPOINT": "http://127.0.0.1:9", "HF_HOME": str(tmp_path / "hf")}
    for key in ("HF_HUB_OFFLINE", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        env.pop(key, None)
    proc = subprocess.run([sys.executable, "-m", "rag.models", "pull", "qwen2.5-1.5b", "--dir", str(tmp_path / "m")],
                          env=env, capture_output=True, text=True, timeout=60, cwd=Path(__file__).parent.parent)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "not reachable" in lines[0], proc.stderr


def test_concurrent_requests_are_serialised(gen):
    from concurrent.futures import ThreadPoolExecutor

    expected = complete(gen, MESSAGES, max_tokens=8, temperature=0.0)
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: complete(gen, MESSAGES, max_tokens=8, temperature=0.0), range(8)))
    assert answers == [expected] * 8


@pytest.mark.parametrize("n_gpu_layers, gpu, expected", [
    (0, True, "CPU"),
    (-1, False, "CPU (this llama-cpp-python build has no GPU support; n_gpu_layers is ignored)"),
    (-1, True, "GPU: all layers (CUDA)"),
    (99, True, "GPU: all layers (CUDA)"),
    (10, True, "GPU: 10 of 28 layers (CUDA)"),
])
def test_offload_description(n_gpu_layers, gpu, expected):
    from types import SimpleNamespace

    from rag.models.llama import _describe_offload

    fake = SimpleNamespace(llama_supports_gpu_offload=lambda: gpu,
                           llama_print_system_info=lambda: b"CUDA : ARCHS = 900 | CPU : AVX2 = 1 |")
    assert _describe_offload(fake, n_gpu_layers, 28) == expected

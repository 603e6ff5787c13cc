"""Per-collection settings (rag.settings) and measured model speeds (rag.models.speeds)."""
from __future__ import annotations

import json

import pytest

from rag.config import Config
from rag.errors import ConfigError
from rag.models.speeds import KEEP, MeteredGenerator, last_speed, load_speeds, mean_speed, record_speed
from rag.settings import apply_settings, load_settings, save_settings, settings_path
from rag.testing import FakeGenerator


def test_settings_round_trip_keeps_only_known_keys(tmp_path):
    path = settings_path(tmp_path / "index")
    save_settings(path, {"top_k": 3, "rerank": False, "llm_model": "models/a.gguf", "index_dir": "/elsewhere"})
    assert json.loads(path.read_text())["schema"] == 1
    assert load_settings(path) == {"top_k": 3, "rerank": False, "llm_model": "models/a.gguf"}
    cfg, problems = apply_settings(Config(), load_settings(path))
    assert (cfg.top_k, cfg.rerank, cfg.llm_model, problems) == (3, False, "models/a.gguf", [])
    assert load_settings(tmp_path / "none" / "settings.json") == {}
    assert not list(path.parent.glob("*.tmp"))  # the atomic write left nothing behind


@pytest.mark.parametrize("values, expected", [
    ({"top_k": 0}, "setting 'top_k': 0 is outside the allowed range 1 to 100; using 5"),
    ({"temperature": 3}, "setting 'temperature': 3.0 is outside the allowed range 0 to 2; using 0.1"),
    ({"n_gpu_layers": -2}, "setting 'n_gpu_layers': -2 is outside the allowed range -1 to 10000; using 0"),
    ({"top_k": "many"}, "setting 'top_k': cannot read 'many' as int; using 5"),
    ({"fusion": "rff"}, "setting 'fusion': 'rff' is not one of auto, rrf, bm25, dense; using 'auto'"),
    ({"rerank": "maybe"}, "setting 'rerank': cannot read 'maybe' as bool; using True"),
])
def test_a_bad_value_is_one_sentence_and_the_rest_still_apply(values, expected):
    cfg, problems = apply_settings(Config(), {**values, "n_ctx": 2048})
    assert problems == [expected] and cfg.n_ctx == 2048


def test_a_settings_file_that_is_not_json_names_the_file(tmp_path):
    path = settings_path(tmp_path)
    path.write_text("{top_k: 3")
    with pytest.raises(ConfigError, match=r"settings\.json is not readable JSON.*fix: correct or delete it"):
        load_settings(path)
    path.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="does not hold a JSON object"):
        load_settings(path)


def test_config_ranges_apply_everywhere():
    with pytest.raises(ConfigError, match="'top_k': 0 is outside the allowed range 1 to 100"):
        Config(top_k=0)
    assert Config(n_ctx=0).n_ctx == 0  # 0: the model's own context length


def test_speeds_keep_the_last_answers(tmp_path):
    for i in range(KEEP + 2):
        record_speed(tmp_path, "a.gguf", tokens=10 * (i + 1), seconds=1.0)
    assert load_speeds(tmp_path)["a.gguf"] == [30.0, 40.0, 50.0, 60.0, 70.0]
    assert last_speed(tmp_path, "a.gguf") == 70.0 and mean_speed(tmp_path, "a.gguf") == 50.0
    assert record_speed(tmp_path, "a.gguf", tokens=1, seconds=1.0) is None  # too short to measure
    assert last_speed(tmp_path, "other.gguf") is None
    (tmp_path / "speeds.json").write_text("not json")
    assert load_speeds(tmp_path) == {}  # a damaged measurement file starts again


def test_metered_generator_records_each_streamed_answer(tmp_path):
    inner = FakeGenerator("one two three four five six seven eight nine ten")
    gen = MeteredGenerator(inner, tmp_path)
    assert "".join(gen.stream([], max_tokens=100)).split() == inner.replies[0].split()
    assert gen.name == "fake-generator" and gen.context_window == 4096  # the rest is the inner generator's
    [speed] = load_speeds(tmp_path)["fake-generator"]
    assert speed > 0 and gen.last_speed == speed


def test_metered_generator_closes_the_inner_stream_when_stopped_early(tmp_path):
    closed = []

    class Inner(FakeGenerator):
        def stream(self, messages, *, max_tokens, temperature=None, stop=()):
            try:
                yield from super().stream(messages, max_tokens=max_tokens)
            finally:
                closed.append(True)  # a llama.cpp stream releases the model's lock here

    pieces = MeteredGenerator(Inner(" ".join(["word"] * 20)), tmp_path).stream([], max_tokens=100)
    for i, _ in enumerate(pieces):
        if i == 9:
            break
    pieces.close()
    assert closed == [True]
    assert len(load_speeds(tmp_path)["fake-generator"]) == 1  # ten tokens: measured

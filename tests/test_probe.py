"""eval.probe end to end on a tiny SQuAD-format set and the tiny random GGUF: the plumbing (states
read through llama.cpp's last-token pooling, cached, a probe fitted and reported beside the lexical
score), not its quality, which needs a real model (the module's docstring has the measured figures)."""
from __future__ import annotations

import json

import numpy as np

from eval import probe
from rag.testing import write_tiny_gguf

TOPICS = [("river", "The Aare flows through Bern and joins the Rhine at Koblenz."),
          ("bridge", "The Tower Bridge in London opened in 1894 and crosses the Thames."),
          ("tea", "Assam tea is grown in the lowlands of north-east India near the Brahmaputra."),
          ("volcano", "Mount Etna on Sicily is one of the most active volcanoes in Europe."),
          ("violin", "Antonio Stradivari built his violins in Cremona in the late 1600s."),
          ("canal", "The Kiel Canal links the North Sea to the Baltic Sea across Schleswig-Holstein.")]


def squad() -> dict:
    data = []
    for i, (title, ctx) in enumerate(TOPICS):
        word = ctx.split()[1]
        qas = [{"id": f"a{i}", "question": f"What is said about the {title} {word}?", "is_impossible": False,
                "answers": [{"text": word, "answer_start": ctx.index(word)}]},
               {"id": f"u{i}", "question": f"Who painted the {title} in 1920?", "is_impossible": True, "answers": []}]
        data.append({"title": title, "paragraphs": [{"context": ctx, "qas": qas}]})
    return {"version": "v2.0", "data": data}


def test_probe_reports_itself_beside_the_lexical_score_and_caches_its_states(tmp_path, capsys):
    dataset = tmp_path / "tiny-squad.json"
    dataset.write_text(json.dumps(squad()), encoding="utf-8")
    model = write_tiny_gguf(tmp_path / "tiny.gguf")
    argv = ["--dataset", str(dataset), "--model", str(model), "--n", "2", "--train", "8", "--passages", "1",
            "--threads", "1", "--cache", str(tmp_path / "cache")]
    assert probe.main(argv) == 0
    report = json.loads(capsys.readouterr().out.splitlines()[0])
    assert report["train"] == 8 and report["n"] == 4
    assert [j["judge"] for j in report["judges"]] == ["probe tiny.gguf", "lexical evidence score",
                                                      "probe + lexical (2-fold logistic)"]
    for j in report["judges"]:
        assert 0.0 <= j["auroc"] <= 1.0
        assert j["chosen"]["false_refusals"] == 0.0  # ≤ 10 % of two answerable questions is none
    with np.load(tmp_path / "cache" / "probe-tiny.npz") as z:
        assert z["vecs"].shape[0] == len(z["keys"]) >= 8 + 1  # the fitted states and at least one reported
        assert z["vecs"].shape[1] == 64  # the tiny model's width: the last hidden state, not logits
        states = z["vecs"].copy()
    assert probe.main(argv) == 0  # a second run reads the cache: the same states
    with np.load(tmp_path / "cache" / "probe-tiny.npz") as z:
        assert np.array_equal(z["vecs"], states)

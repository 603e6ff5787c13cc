"""The configuration: closed value sets are checked wherever a setting comes from, with every valid
value named; and every error that names a pip extra names one that pyproject.toml defines."""
from __future__ import annotations

import ast
import tomllib
import typing

import pytest

from rag.config import EMBED_BACKENDS, FUSIONS, LLM_BACKENDS, SCRIPTS, STORES, WEIGHT_REPACKS, Config, load_config
from rag.errors import ConfigError
from tests.conftest import ROOT

LITERAL_FIELDS = {"embed_backend": EMBED_BACKENDS, "fusion": FUSIONS, "llm_backend": LLM_BACKENDS, "store": STORES,
                  "weight_repack": WEIGHT_REPACKS}


def test_the_literal_fields_are_the_ones_tested_here():
    hints = typing.get_type_hints(Config)
    literals = {name for name, kind in hints.items() if typing.get_origin(kind) is typing.Literal}
    assert literals == set(LITERAL_FIELDS)


@pytest.mark.parametrize("name", sorted(LITERAL_FIELDS))
def test_every_valid_value_is_read_from_toml_env_and_flags(name, tmp_path):
    for value in LITERAL_FIELDS[name]:
        toml = tmp_path / "rag.toml"
        toml.write_text(f'[rag]\n{name} = "{value}"\n', encoding="utf-8")
        assert getattr(load_config(toml, env={}), name) == value
        assert getattr(load_config(env={f"RAG_{name.upper()}": f" {value} "}), name) == value  # env: stripped
        assert getattr(load_config(env={}, overrides={name: value}), name) == value


@pytest.mark.parametrize("name", sorted(LITERAL_FIELDS))
def test_an_unknown_value_is_an_error_that_lists_the_valid_ones(name, tmp_path):
    toml = tmp_path / "rag.toml"
    toml.write_text(f'[rag]\n{name} = "nonsense"\n', encoding="utf-8")
    sources = [lambda: load_config(toml, env={}), lambda: load_config(env={f"RAG_{name.upper()}": "nonsense"}),
               lambda: load_config(env={}, overrides={name: "nonsense"}), lambda: Config(**{name: "nonsense"}),
               lambda: Config().with_overrides(**{name: "nonsense"})]
    for source in sources:
        with pytest.raises(ConfigError) as err:
            source()
        assert name in str(err.value) and "'nonsense'" in str(err.value)
        assert ", ".join(LITERAL_FIELDS[name]) in str(err.value)


@pytest.mark.parametrize("value", ["offline", "llm", "nli:cross-encoder/nli-deberta-v3-small", "nli:/models/nli"])
def test_valid_verifiers(value):
    assert load_config(env={"RAG_VERIFIER": value}).verifier == value


@pytest.mark.parametrize("value", ["", "nli:", "nli: ", "offlne", "NLI"])
def test_unknown_verifier_is_an_error_naming_the_forms(value):
    with pytest.raises(ConfigError, match="offline, llm, nli:<model>"):
        Config(verifier=value)


@pytest.mark.parametrize("value", ["auto", "", "multi", "all", "latin", "latin,cjk"])
def test_valid_embed_languages(value):
    assert Config(embed_languages=value).embed_languages == value


@pytest.mark.parametrize("value", ["en", "english", "latin,greek", "latin, cjk"])  # "en" once passed, matching no query
def test_unknown_embed_languages_are_an_error_naming_the_scripts(value):
    with pytest.raises(ConfigError) as err:
        Config(embed_languages=value)
    assert ", ".join(SCRIPTS) in str(err.value) and "auto" in str(err.value)


def test_the_defaults_are_valid():
    assert Config() == load_config(env={}, overrides={})


# --- extras named in error messages ------------------------------------------------------------------


def _named_extras() -> list[tuple[str, int, object]]:
    """(file, line, extra) for every MissingDependencyError(...) call in the product and eval code."""
    found = []
    for folder in ("rag", "app", "eval"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
                if not isinstance(node, ast.Call):
                    continue
                func = node.func
                name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
                if name != "MissingDependencyError":
                    continue
                arg = node.args[1] if len(node.args) > 1 else next(
                    (k.value for k in node.keywords if k.arg == "extra"), ast.Constant(None))
                extra = arg.value if isinstance(arg, ast.Constant) else ast.unparse(arg)
                found.append((str(path.relative_to(ROOT)), node.lineno, extra))
    return found


def test_every_extra_named_in_an_error_exists_in_pyproject():
    with open(ROOT / "pyproject.toml", "rb") as fh:
        extras = set(tomllib.load(fh)["project"]["optional-dependencies"])
    named = _named_extras()
    assert len(named) >= 4  # the scan finds the calls (llama, the embedders, eval)
    wrong = [(f, line, e) for f, line, e in named if e is not None and e not in extras]
    assert not wrong, f"extras not in pyproject.toml ({', '.join(sorted(extras))}): {wrong}"

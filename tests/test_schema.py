"""The schema of params.yaml (`cifarlab.core.params.Params` and the model builders' signatures) is
its documentation: docs/parameters.md is generated from it, and every key has a description."""

from __future__ import annotations

from pathlib import Path

from cifarlab.core.params import MODELS, TOP_KEYS, DataParams, Params, Recipe, RunEntry, TrainParams
from cifarlab.models import list_models, model_info
from cifarlab.tooling.params_doc import COMMAND, option_field, parameters_doc

ROOT = Path(__file__).resolve().parents[1]


def test_parameters_doc_is_generated_from_the_schema():
    doc = (ROOT / "docs" / "parameters.md").read_text(encoding="utf-8")
    assert doc == parameters_doc(), f"docs/parameters.md is not what the schema gives: regenerate it with `{COMMAND}`"


def test_every_field_has_a_description():
    fields = {
        f"{cls.__name__}.{name}": field
        for cls in (Params, DataParams, TrainParams, Recipe, RunEntry)
        for name, field in cls.model_fields.items()
    }
    fields |= {f"{m}.{name}": option_field(p) for m in list_models() for name, p in model_info(m).arch_params.items()}
    missing = [where for where, field in fields.items() if not (field.description or "").strip()]
    assert not missing, f"no description= (the key's row of docs/parameters.md): {', '.join(missing)}"
    # each is one cell of a markdown table
    assert [w for w, f in fields.items() if "|" in f.description or "\n" in f.description] == []


def test_top_level_keys_are_the_fields_and_one_section_per_model():
    assert MODELS == tuple(list_models())
    assert set(Params.model_fields) == {*TOP_KEYS, *MODELS}
    assert not set(TOP_KEYS) & set(MODELS)  # a model named like a top-level key would take its place

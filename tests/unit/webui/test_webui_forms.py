"""reconciler.webui.forms: the forms lanai posts to Open WebUI and the checks on its answers.

Pure functions, no server: the client's tests (test_webui_api.py) show them at work
against an imitation of Open WebUI 0.12.4.
"""

from __future__ import annotations

import pytest

from reconciler.webui.errors import WebUIError
from reconciler.webui.forms import (
    PUBLIC_READ,
    check_grants,
    check_kept,
    check_keys,
    check_role,
    is_public,
    merge_form,
    preset_form,
)

PHI3 = "phi3:3.8b-mini-4k-instruct-q4_K_M"


def test_preset_form_is_what_the_model_editor_sends() -> None:
    kb = {"id": "kb-1", "name": "Recipes", "description": "Family recipes", "file_count": 3,
          "access_grants": [], "user": {"id": "u-admin"}}
    form = preset_form(model_id="family-cook", name="Family cook", base_model_id=PHI3,
                       system="You cook.", params={"temperature": 0.3}, knowledge=[kb],
                       description="Recipes and meal plans")
    assert form == {
        "id": "family-cook", "base_model_id": PHI3, "name": "Family cook",
        "meta": {"description": "Recipes and meal plans",
                 "knowledge": [{"id": "kb-1", "name": "Recipes", "type": "collection",
                                "description": "Family recipes"}]},
        "params": {"temperature": 0.3, "system": "You cook.", "function_calling": "legacy"},
        "access_grants": [PUBLIC_READ], "is_active": True}


def test_preset_form_without_knowledge_or_prompt() -> None:
    form = preset_form(model_id="plain", name="Plain", base_model_id=PHI3, system=" ",
                       params={"system": "old", "top_k": None, "function_calling": "native"},
                       knowledge=[], public=False)
    # a blank prompt and empty values are left out, as ModelEditor.svelte does
    assert form["params"] == {"function_calling": "native"}
    assert form["meta"] == {"description": None}  # no `knowledge` key at all
    assert form["access_grants"] == []
    kept = preset_form(model_id="p", name="P", base_model_id=PHI3, system=None,
                       params={"system": "from params", "function_calling": "native"},
                       knowledge=[{"id": "kb-1", "name": "Recipes"}])
    assert kept["params"] == {"system": "from params", "function_calling": "native"}
    assert kept["meta"]["knowledge"] == [{"id": "kb-1", "name": "Recipes", "type": "collection"}]
    with pytest.raises(ValueError, match="needs its id and name"):
        preset_form(model_id="p", name="P", base_model_id=PHI3, system=None, params={},
                    knowledge=[{"name": "Recipes"}])


def test_merge_form_keeps_the_current_fields_and_lays_changes_over() -> None:
    current = {"A": 1, "B": {"url": "http://old", "key": "k"}, "status": True}
    form = merge_form(current, {"B": {"url": "http://new"}, "A": 2}, ("A", "B"), nested=("B",))
    # a key outside the form is dropped; a nested sub-form keeps the key beside the change
    assert form == {"A": 2, "B": {"url": "http://new", "key": "k"}}
    assert merge_form(current, {"B": {"url": "x"}}, ("A", "B"))["B"] == {"url": "x"}


def test_unknown_keys_and_roles_are_refused() -> None:
    check_keys({"ENABLE_SIGNUP": True}, ("ENABLE_SIGNUP",), "admin settings")
    with pytest.raises(ValueError, match="no BOGUS, OTHER in its admin settings"):
        check_keys({"OTHER": 1, "BOGUS": 2}, ("ENABLE_SIGNUP",), "admin settings")
    check_role("user")
    with pytest.raises(ValueError, match="'owner' is not an Open WebUI role"):
        check_role("owner")


def test_a_value_not_kept_is_an_error_that_hides_secrets() -> None:
    check_kept({"B": {"url": "u"}}, {"B": {"url": "u", "key": "k"}, "C": 3}, "area")
    with pytest.raises(WebUIError, match=r"did not keep X in its area \(sent 1, it kept 2\)"):
        check_kept({"X": 1}, {"X": 2}, "area")
    with pytest.raises(WebUIError, match="accepted but dropped url from its area B"):
        check_kept({"B": {"url": "u"}}, {"B": {}}, "area")
    with pytest.raises(WebUIError) as caught:
        check_kept({"OPENAI_API_KEY": "sk-secret"}, {"OPENAI_API_KEY": "sk-other"}, "area")
    assert "sk-" not in caught.value.message and "(hidden)" in caught.value.message


def test_grants_compare_by_principal_and_permission() -> None:
    assert is_public({"access_grants": [{**PUBLIC_READ, "id": "g-1"}]})
    assert not is_public({"access_grants": None})
    assert not is_public({"access_grants": [{**PUBLIC_READ, "permission": "write"}]})
    check_grants([PUBLIC_READ], {"access_grants": [{**PUBLIC_READ, "id": "g-1"}]}, "model m")
    with pytest.raises(WebUIError, match="did not keep the access grants of model m"):
        check_grants([PUBLIC_READ], {"access_grants": []}, "model m")

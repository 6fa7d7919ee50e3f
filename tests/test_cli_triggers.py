"""`hub triggers import FILE`: NDJSON or CSV through the bulk path, with counts, the rejected lines and their
field errors (the API's), and a non-zero exit when any was rejected."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from hub.cli import main
from hub.models import Action, Trigger
from hub.runtime import Runtime
from tests.conftest import Api
from tests.test_cli_outbox import Hub
from tests.test_outbox import sandbox


@pytest.fixture
def hub(rt: Runtime) -> Hub:
    return Hub(rt)


def trigger(order_id: str, email: str = "ada@example.com") -> dict[str, Any]:
    return {
        "type": "order.fulfilled",
        "customer": {"email": email, "first_name": "Ada"},
        "order": {"id": order_id, "items": [{"product_id": "p-1", "name": "Linen Shirt", "price": "49.00"}]},
    }


def count(rt: Runtime, model: Any) -> int:
    with rt.db.session() as session:
        return session.scalar(select(func.count()).select_from(model))  # type: ignore[no-any-return]


def test_an_ndjson_file_goes_in_and_its_bad_lines_are_listed_with_their_field_errors(
    hub: Hub, api: Api, rt: Runtime, tmp_path: Path
) -> None:
    sandbox(api)
    bad = {"type": "order.fulfilled", "customer": {"email": "not-an-email"}, "order": {"id": "9"}}
    lines = [
        json.dumps(trigger("1")),
        "",
        json.dumps(trigger("2")),
        "{not json",
        json.dumps(bad),
        json.dumps(trigger("1")),
    ]
    source = tmp_path / "triggers.ndjson"
    source.write_text("\n".join(lines) + "\n")
    result = hub("triggers", "import", "--store", str(api.tenant.store.id), str(source))
    assert result.exit_code == 1
    assert "accepted 2, duplicates 1, rejected 2" in result.stdout
    assert "line 4: Not valid JSON" in result.stderr
    answer = api.post("/api/v1/triggers/bulk", json={"triggers": [bad]}).json["results"][0]
    assert answer["errors"] == {"customer.email": ["Not a valid email address."]}
    assert "line 5: customer.email: Not a valid email address." in result.stderr
    assert count(rt, Trigger) == 2 and count(rt, Action) == 2


def test_a_csv_file_names_its_columns_by_the_fields_dotted_paths(
    hub: Hub, api: Api, rt: Runtime, tmp_path: Path
) -> None:
    sandbox(api)
    source = tmp_path / "orders.csv"
    source.write_text(
        "type,customer.email,customer.first_name,order.id,order.items.0.product_id,order.items.0.name,"
        "order.items.1.product_id,order.items.1.name\n"
        "order.fulfilled,ada@example.com,Ada,1001,p-1,Linen Shirt,p-2,Scarf\n"
        "order.fulfilled,bo@example.com,,1002,p-1,Linen Shirt,,\n"
    )
    result = hub("triggers", "import", "--store", str(api.tenant.store.id), str(source))
    assert result.exit_code == 0, result.output
    assert "accepted 2, duplicates 0, rejected 0" in result.stdout
    with rt.db.session() as session:
        payloads = dict(session.execute(select(Trigger.order_id, Trigger.payload)).all())
    assert [i["product_id"] for i in payloads["1001"]["order"]["items"]] == ["p-1", "p-2"]
    assert payloads["1002"]["customer"] == {"email": "bo@example.com"}  # the empty cell is left out
    again = hub("triggers", "import", "--store", str(api.tenant.store.id), str(source))
    assert again.exit_code == 0 and "accepted 0, duplicates 2, rejected 0" in again.stdout


def test_small_chunks_are_each_committed_and_all_go_in(hub: Hub, api: Api, rt: Runtime, tmp_path: Path) -> None:
    source = tmp_path / "triggers.jsonl"
    source.write_text("\n".join(json.dumps(trigger(str(n), f"c{n}@example.com")) for n in range(7)))
    result = hub("triggers", "import", "--store", str(api.tenant.store.id), "--chunk", "3", str(source))
    assert result.exit_code == 0 and "accepted 7, duplicates 0, rejected 0" in result.stdout
    assert count(rt, Trigger) == 7


def test_standard_input_is_read_with_the_format_given(hub: Hub, api: Api, rt: Runtime) -> None:
    result = hub.runner.invoke(
        main,
        ["triggers", "import", "--store", str(api.tenant.store.id), "--format", "csv", "-"],
        input="type,customer.external_id,order.id\norder.delivered,cus_1,77\n",
        env=hub.env,
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert count(rt, Trigger) == 1


def test_a_file_that_cannot_be_read_as_triggers_is_a_message_not_a_traceback(
    hub: Hub, api: Api, rt: Runtime, tmp_path: Path
) -> None:
    store = str(api.tenant.store.id)
    header = tmp_path / "bad.csv"
    header.write_text("type,customer,customer.email\norder.fulfilled,x,a@example.com\n")
    result = hub("triggers", "import", "--store", store, str(header))
    assert result.exit_code == 2 and "contradicts another column" in result.output
    empty = tmp_path / "empty.ndjson"
    empty.write_text("\n\n")
    result = hub("triggers", "import", "--store", store, str(empty))
    assert result.exit_code == 1 and "no triggers in" in result.output
    unknown = hub("triggers", "import", "--store", "999999", str(header.with_name("x.ndjson")))
    assert unknown.exit_code == 2 and "No such file" in unknown.output
    source = tmp_path / "one.ndjson"
    source.write_text(json.dumps(trigger("1")))
    no_store = hub("triggers", "import", "--store", "999999", str(source))
    assert no_store.exit_code == 1 and "no store 999999" in no_store.output
    assert count(rt, Trigger) == 0

"""Customers: look one up, read their timeline, and keep the suppression list."""

from __future__ import annotations

from typing import Any

from sqlalchemy import or_, select

from hub import customers
from hub.api import Blueprint, authenticate, current_store, db_session
from hub.api.paging import page_of
from hub.models import Customer, Suppression
from schemas.common import PageQuery
from schemas.outbox import (
    CustomerPage,
    CustomersQuery,
    SuppressionIn,
    SuppressionOut,
    SuppressionPage,
    TimelineOut,
)

blp = Blueprint("customers", __name__, description="Customers, their timeline and suppressions.")
blp.before_request(authenticate)


@blp.route("/customers", methods=["GET"])
@blp.arguments(CustomersQuery, location="query")
@blp.response(200, CustomerPage)
def list_customers(query: dict[str, Any]) -> Any:
    """Customers, newest first; `q` finds one by email, phone or external id."""
    statement = select(Customer).where(Customer.store_id == current_store().id)
    if query.get("q"):
        value = customers.normalise(query["q"])
        statement = statement.where(
            or_(Customer.email == value, Customer.phone == value, Customer.external_id == query["q"].strip())
        )
    return page_of(statement, Customer, query)


@blp.route("/customers/<int:customer_id>/timeline", methods=["GET"])
@blp.response(200, TimelineOut)
@blp.alt_response(404, description="No such customer in this store")
def customer_timeline(customer_id: int) -> Any:
    """One customer's triggers, actions, events sent and the operations on them, oldest first."""
    session = db_session()
    customer = customers.find(session, current_store().id, customer_id)
    return {"customer": customer, "items": customers.timeline(session, current_store().id, customer)}


@blp.route("/suppressions", methods=["GET"])
@blp.arguments(PageQuery, location="query")
@blp.response(200, SuppressionPage)
def list_suppressions(query: dict[str, Any]) -> Any:
    return page_of(select(Suppression).where(Suppression.store_id == current_store().id), Suppression, query)


@blp.route("/suppressions", methods=["POST"])
@blp.arguments(SuppressionIn)
@blp.response(201, SuppressionOut)
@blp.alt_response(409, description="Already suppressed for that channel")
def add_suppression(data: dict[str, Any]) -> Any:
    """Stop contacting an email, phone or external id: on every channel ("all"), on "email" or "sms", or through
    one app (its key). Actions already scheduled are skipped when they come up."""
    session = db_session()
    row = customers.suppress(session, current_store().id, data)
    session.commit()
    return row


@blp.route("/suppressions/<int:suppression_id>", methods=["DELETE"])
@blp.response(204)
@blp.alt_response(404, description="No such suppression in this store")
def delete_suppression(suppression_id: int) -> None:
    session = db_session()
    customers.unsuppress(session, current_store().id, suppression_id)
    session.commit()

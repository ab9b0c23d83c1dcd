"""Admin pages of the outbound webhooks: endpoints (list, create, deactivate, send a
test event), the delivery log with its filters, and retrying failed deliveries.

Admins only. The secret of a new endpoint is shown once, on the page that answers the
create form; afterwards only its first characters are. Views parse and render;
``integrations.webhooks.service`` validates, writes and appends the ledger entries,
and each view commits once. Nothing here sends: the tick does.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import select

from integrations.webhooks.forms import (
    EVENT_LABELS,
    ConfirmForm,
    DeliveryFilterForm,
    EndpointForm,
)
from integrations.webhooks.models import DELIVERY_STATUSES, WebhookDelivery, WebhookEndpoint
from integrations.webhooks.service import (
    create_endpoint,
    deactivate_endpoint,
    deliveries_page,
    endpoint_counts,
    queue_test,
    retry_delivery,
    retry_failed,
)
from lms.auth.permissions import roles_required
from lms.dbtypes import utcnow
from lms.extensions import db
from lms.field_errors import save_or_show

bp = Blueprint("webhooks", __name__, url_prefix="/admin/integrations/webhooks")

ROLES = ("admin",)


@bp.context_processor
def _labels() -> dict[str, Any]:
    def status_label(code: str) -> str:
        return {"pending": _("Pending"), "delivered": _("Delivered"),
                "failed": _("Failed")}.get(code, code)

    return {"event_labels": EVENT_LABELS, "delivery_status_label": status_label}


def _endpoint_or_404(endpoint_id: int) -> WebhookEndpoint:
    return db.session.get(WebhookEndpoint, endpoint_id) or abort(404)


def _confirmed() -> None:
    if not ConfirmForm().validate_on_submit():
        abort(400)


@bp.get("")
@roles_required(*ROLES)
def endpoints():
    items = db.session.scalars(select(WebhookEndpoint).order_by(
        WebhookEndpoint.is_active.desc(), WebhookEndpoint.name, WebhookEndpoint.id)).all()
    return render_template("webhooks/endpoints.html", endpoints=items,
                           counts=endpoint_counts(db.session), form=ConfirmForm())


@bp.route("/new", methods=["GET", "POST"])
@roles_required(*ROLES)
def endpoint_new():
    form = EndpointForm()
    status = 200
    if form.validate_on_submit():
        created, status = save_or_show(form, lambda: create_endpoint(
            db.session, current_app.extensions["id_vault"], name=form.name.data or "",
            url=form.url.data or "", events=list(form.events.data or []),
            actor_id=current_user.id, now=utcnow()))
        if created is not None:
            # The only time the secret is shown: this response (no-store, like every page).
            return render_template("webhooks/endpoint_created.html",
                                   endpoint=created.endpoint, secret=created.secret), 201
    elif request.method == "POST":
        status = 422
    return render_template("webhooks/endpoint_new.html", form=form), status


@bp.post("/<int:endpoint_id>/deactivate")
@roles_required(*ROLES)
def endpoint_deactivate(endpoint_id: int):
    _confirmed()
    endpoint = _endpoint_or_404(endpoint_id)
    if deactivate_endpoint(db.session, endpoint.id, actor_id=current_user.id, now=utcnow()):
        db.session.commit()
        flash(_("Endpoint %(name)s deactivated; nothing more is sent to it.",
                name=endpoint.name), "success")
    else:
        flash(_("Endpoint %(name)s was already deactivated.", name=endpoint.name), "error")
    return redirect(url_for(".endpoints"))


@bp.post("/<int:endpoint_id>/test")
@roles_required(*ROLES)
def endpoint_test(endpoint_id: int):
    _confirmed()
    endpoint = _endpoint_or_404(endpoint_id)
    delivery, _status = save_or_show(ConfirmForm(), lambda: queue_test(
        db.session, endpoint, base_url=current_app.config["PUBLIC_BASE_URL"],
        actor_id=current_user.id, now=utcnow()))
    if delivery is not None:
        flash(_("Test event queued for %(name)s; it is sent at the next scheduled tick.",
                name=endpoint.name), "success")
    return redirect(url_for(".deliveries", endpoint_id=endpoint.id))


@bp.post("/<int:endpoint_id>/retry-failed")
@roles_required(*ROLES)
def endpoint_retry_failed(endpoint_id: int):
    _confirmed()
    endpoint = _endpoint_or_404(endpoint_id)
    count = retry_failed(db.session, endpoint.id, actor_id=current_user.id, now=utcnow())
    db.session.commit()
    if count:
        flash(_("%(n)d failed deliveries to %(name)s will be sent again at the next tick.",
                n=count, name=endpoint.name), "success")
    elif not endpoint.is_active:
        flash(_("Endpoint %(name)s is deactivated; its deliveries cannot be retried.",
                name=endpoint.name), "error")
    else:
        flash(_("No failed deliveries to %(name)s.", name=endpoint.name), "error")
    return redirect(url_for(".deliveries", endpoint_id=endpoint.id))


def _filters(args) -> dict[str, Any]:
    """The delivery log's filters that are valid, for links and redirects."""
    status = args.get("status", "")
    endpoint = args.get("endpoint_id", "")
    return {k: v for k, v in (("status", status if status in DELIVERY_STATUSES else None),
                              ("endpoint_id", int(endpoint) if endpoint.isdigit() else None))
            if v}


@bp.get("/deliveries")
@roles_required(*ROLES)
def deliveries():
    form = DeliveryFilterForm(formdata=request.args)
    known = db.session.execute(select(WebhookEndpoint.id, WebhookEndpoint.name)
                               .order_by(WebhookEndpoint.name, WebhookEndpoint.id)).all()
    form.endpoint_id.choices = [("", _("All endpoints"))] + [(str(i), n) for i, n in known]
    filters = _filters(request.args)
    page = deliveries_page(db.session, status=filters.get("status"),
                           endpoint_id=filters.get("endpoint_id"),
                           page=request.args.get("page", 1, type=int))
    names = dict(known)
    return render_template("webhooks/deliveries.html", form=form, page=page, filters=filters,
                           names=names, action_form=ConfirmForm())


@bp.post("/deliveries/<int:delivery_id>/retry")
@roles_required(*ROLES)
def delivery_retry(delivery_id: int):
    _confirmed()
    delivery = db.session.get(WebhookDelivery, delivery_id) or abort(404)
    if retry_delivery(db.session, delivery.id, actor_id=current_user.id, now=utcnow()):
        db.session.commit()
        flash(_("Delivery %(id)d will be sent again at the next tick.", id=delivery.id),
              "success")
    else:
        flash(_("Delivery %(id)d cannot be retried: only failed deliveries to an active "
                "endpoint can.", id=delivery.id), "error")
    return redirect(url_for(".deliveries", **_filters(request.form)))

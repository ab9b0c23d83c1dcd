"""Admin page of the xAPI queue: whether an LRS is configured, how many statements are
pending, sent and failed, each statement with its last answer, and retrying failed ones.

Admins only. Nothing here talks to the LRS: the tick sends.
"""

from __future__ import annotations

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user

from integrations.webhooks.forms import ConfirmForm
from integrations.xapi.models import STATEMENT_STATUSES, XapiStatement
from integrations.xapi.service import LrsSettings, queue_counts, retry_failed, statements_page
from lms.auth.permissions import roles_required
from lms.dbtypes import utcnow
from lms.extensions import db

bp = Blueprint("xapi_admin", __name__, url_prefix="/admin/integrations/xapi")

ROLES = ("admin",)


def _status_filter(value: str | None) -> str | None:
    return value if value in STATEMENT_STATUSES else None


@bp.get("")
@roles_required(*ROLES)
def queue():
    status = _status_filter(request.args.get("status"))
    page = statements_page(db.session, status=status,
                           page=request.args.get("page", 1, type=int))
    filters = {"status": status} if status else {}
    return render_template("xapi/queue.html", settings=LrsSettings.from_config(current_app.config),
                           counts=queue_counts(db.session), page=page, filters=filters,
                           form=ConfirmForm())


@bp.post("/retry-failed")
@roles_required(*ROLES)
def retry_all():
    if not ConfirmForm().validate_on_submit():
        abort(400)
    count = retry_failed(db.session, actor_id=current_user.id, now=utcnow())
    db.session.commit()
    if count:
        flash(_("%(n)d failed statements will be sent again at the next tick.", n=count),
              "success")
    else:
        flash(_("No failed statements."), "error")
    return redirect(url_for(".queue"))


@bp.post("/<int:row_id>/retry")
@roles_required(*ROLES)
def retry_one(row_id: int):
    if not ConfirmForm().validate_on_submit():
        abort(400)
    row = db.session.get(XapiStatement, row_id) or abort(404)
    if retry_failed(db.session, actor_id=current_user.id, now=utcnow(),
                    statement_row_id=row.id):
        db.session.commit()
        flash(_("The statement will be sent again at the next tick."), "success")
    else:
        flash(_("Only a failed statement can be retried."), "error")
    return redirect(url_for(".queue", status=_status_filter(request.form.get("status"))))

"""Admin pages for regulation feeds: the sources with their last poll (status, error,
time, items seen), add/edit, "poll now", and the allow-list of private hosts.

Admins only. Views parse and render; ``integrations.feeds.sources`` and
``integrations.feeds.poll`` validate and write, and each view commits once.
"""

from __future__ import annotations

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import func, select

from courses.topics import topic_choices, topic_label
from integrations.feeds import poll
from integrations.feeds.fetch import FetchPolicy
from integrations.feeds.forms import ActionForm, HostForm, HostRemoveForm, SourceForm
from integrations.feeds.sources import (
    allow_host,
    create_source,
    remove_host,
    update_source,
)
from lms.auth.permissions import roles_required
from lms.compliance.regulation.models import (
    MAX_POLL_MINUTES,
    MIN_POLL_MINUTES,
    FeedAllowedHost,
    FeedSource,
    RegulationUpdate,
)
from lms.extensions import db
from lms.field_errors import save_or_show
from lms.workday_overrides import load_calendar

bp = Blueprint("feeds", __name__)



@bp.context_processor
def _labels() -> dict[str, object]:
    def status_label(code: str | None) -> str:
        return {"ok": _("OK"), "not_modified": _("Not modified (304)"),
                "error": _("Error")}.get(code or "", _("Never polled"))

    return {"feed_status_label": status_label, "topic_label": topic_label}


def _list_page(host_form: HostForm | None = None, status: int = 200):
    sources = db.session.scalars(select(FeedSource).order_by(FeedSource.name)).all()
    updates = dict(db.session.execute(
        select(RegulationUpdate.source_id, func.count())
        .where(RegulationUpdate.source_id.is_not(None))
        .group_by(RegulationUpdate.source_id)).all())
    hosts = db.session.scalars(select(FeedAllowedHost).order_by(FeedAllowedHost.host)).all()
    return render_template("feeds/sources.html", sources=sources, updates=updates,
                           hosts=hosts, host_form=host_form or HostForm(formdata=None),
                           action_form=ActionForm(), remove_form=HostRemoveForm()), status


@bp.get("/admin/feeds")
@roles_required("admin")
def sources():
    return _list_page()


def _source_or_404(source_id: int) -> FeedSource:
    return db.session.get(FeedSource, source_id) or abort(404)


def _form_page(source: FeedSource | None):
    form = SourceForm(obj=source) if request.method == "GET" and source else SourceForm()
    form.default_topic.choices = topic_choices()
    if request.method == "GET" and source is None:
        form.default_topic.data = form.default_topic.data or "other"
    status = 200
    if form.validate_on_submit():
        if source is None:
            saved, status = save_or_show(form, lambda: create_source(
                db.session, form.to_input(), actor_id=current_user.id))
            if saved is not None:
                flash(_("Feed %(name)s added; it is polled at the next tick.",
                        name=saved.name), "success")
                return redirect(url_for(".sources"))
        else:
            changed, status = save_or_show(form, lambda: update_source(
                db.session, source, form.to_input(), actor_id=current_user.id))
            if changed is not None:
                flash(_("Changes saved.") if changed else _("Nothing was changed."), "success")
                return redirect(url_for(".sources"))
    elif request.method == "POST":
        status = 422
    return render_template("feeds/source_form.html", form=form, source=source,
                           min_minutes=MIN_POLL_MINUTES, max_minutes=MAX_POLL_MINUTES), status


@bp.route("/admin/feeds/new", methods=["GET", "POST"])
@roles_required("admin")
def source_new():
    return _form_page(None)


@bp.route("/admin/feeds/<int:source_id>", methods=["GET", "POST"])
@roles_required("admin")
def source_edit(source_id: int):
    return _form_page(_source_or_404(source_id))


@bp.post("/admin/feeds/<int:source_id>/poll")
@roles_required("admin")
def poll_now(source_id: int):
    """Poll one source at once, whether due or not (and even when disabled)."""
    if not ActionForm().validate_on_submit():
        abort(400)
    source = _source_or_404(source_id)
    summary = poll.poll_source(db.session, source, now=poll.clock(),
                               calendar=load_calendar(db.session),
                               policy=FetchPolicy.from_config(current_app.config))
    db.session.commit()
    if summary.status == "error":
        flash(_("Polling %(name)s failed: %(error)s", name=source.name, error=summary.error),
              "error")
    elif summary.status == "not_modified":
        flash(_("%(name)s has not changed since the last poll.", name=source.name), "success")
    else:
        flash(_("%(name)s polled: %(new)d new updates, %(dup)d already known.",
                name=source.name, new=summary.new, dup=summary.duplicates), "success")
        if summary.warning:
            flash(_("The feed is malformed; the entries that could be read were kept: "
                    "%(warning)s", warning=summary.warning), "error")
    return redirect(url_for(".sources"))


@bp.post("/admin/feeds/hosts")
@roles_required("admin")
def host_add():
    form = HostForm()
    if not form.validate_on_submit():
        abort(400)
    saved, status = save_or_show(form, lambda: allow_host(
        db.session, form.host.data or "", form.note.data or "", actor_id=current_user.id))
    if saved is None:
        return _list_page(host_form=form, status=status)
    flash(_("%(host)s added to the allow-list.", host=saved.host), "success")
    return redirect(url_for(".sources"))


@bp.post("/admin/feeds/hosts/remove")
@roles_required("admin")
def host_remove():
    form = HostRemoveForm()
    if not form.validate_on_submit():
        abort(400)
    host = form.host.data or ""
    _done, status = save_or_show(form, lambda: remove_host(db.session, host,
                                                           actor_id=current_user.id))
    if status == 200:
        flash(_("%(host)s removed from the allow-list.", host=host), "success")
    return redirect(url_for(".sources"))

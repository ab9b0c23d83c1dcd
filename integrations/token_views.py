"""Admin pages of the API: tokens (list, create, revoke) and the log of API calls.

Only admins manage tokens. The secret of a new token is shown once, on the page that
answers the create form, and never again: only its SHA-256 is stored. Auditors read the
call log as they read the ledger (who called what, with which outcome), but cannot
create or revoke tokens. Views parse and render; ``integrations.tokens`` validates,
writes and appends the ledger entry, and each view commits once.
"""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from integrations.token_forms import (
    NO_TOKEN,
    STATUS_CLASSES,
    CallFilterForm,
    ConfirmForm,
    TokenCreateForm,
    choice,
)
from integrations.tokens import SCOPES, ApiCall, ApiToken, issue_token, revoke_token
from lms.auth.permissions import roles_required
from lms.dbtypes import utcnow
from lms.extensions import db
from lms.field_errors import save_or_show
from lms.paging import Page
from lms.people.models import User

bp = Blueprint("api_admin", __name__)

TOKEN_ROLES = ("admin",)
LOG_ROLES = ("admin", "auditor")  # the auditor reads the log as they read the ledger
PER_PAGE = 50


# --- queries (plain functions: explicit session, no commit) ----------------------------

def usernames(session: Session, ids: set[int | None]) -> dict[int, str]:
    """Usernames of ``ids`` in one query (creators and revokers of tokens)."""
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    return dict(session.execute(select(User.id, User.username).where(User.id.in_(wanted))).all())


def calls_query(token: int | str | None, status_class: str | None, path: str | None) -> Select:
    """Calls newest first with their token's name, narrowed by the log's filters."""
    stmt = (select(ApiCall, ApiToken.name, ApiToken.prefix)
            .outerjoin(ApiToken, ApiToken.id == ApiCall.token_id)
            .order_by(ApiCall.at.desc(), ApiCall.id.desc()))
    if token == NO_TOKEN:
        stmt = stmt.where(ApiCall.token_id.is_(None))
    elif isinstance(token, int):
        stmt = stmt.where(ApiCall.token_id == token)
    if status_class in STATUS_CLASSES:
        low = int(status_class[0]) * 100
        stmt = stmt.where(ApiCall.status >= low, ApiCall.status < low + 100)
    if path:
        stmt = stmt.where(ApiCall.path.icontains(path, autoescape=True))
    return stmt


def page_of(session: Session, stmt: Select, page: int, per_page: int = PER_PAGE) -> Page:
    total = session.execute(select(func.count()).select_from(stmt.order_by(None).subquery())
                            ).scalar_one()
    page = max(1, min(page, max(1, -(-total // per_page))))
    rows = session.execute(stmt.limit(per_page).offset((page - 1) * per_page)).all()
    return Page(items=list(rows), page=page, per_page=per_page, total=total)


def _token_filter(raw: str | None) -> int | str | None:
    """The token filter's value: a token id, ``none`` (no known token) or nothing."""
    if raw == NO_TOKEN:
        return NO_TOKEN
    return int(raw) if raw and raw.isdigit() else None


# --- tokens --------------------------------------------------------------------------

@bp.get("/admin/api/tokens")
@roles_required(*TOKEN_ROLES)
def tokens():
    items = db.session.scalars(select(ApiToken).order_by(ApiToken.revoked_at.is_not(None),
                                                         ApiToken.created_at.desc(),
                                                         ApiToken.id.desc())).all()
    names = usernames(db.session, {t.created_by for t in items} | {t.revoked_by for t in items})
    return render_template("api/tokens.html", tokens=items, names=names, now=utcnow(),
                           scopes=SCOPES)


@bp.route("/admin/api/tokens/new", methods=["GET", "POST"])
@roles_required(*TOKEN_ROLES)
def token_new():
    form = TokenCreateForm()
    status = 200
    if form.validate_on_submit():
        issued, status = save_or_show(form, lambda: issue_token(
            db.session, name=form.name.data or "", scopes=list(form.scopes.data or []),
            expires_in_days=form.expires_in_days.data, actor_id=current_user.id))
        if issued is not None:
            # The only time the secret exists outside the caller's hands: this response
            # (no-store, like every HTML page). A redirect would have to park it somewhere.
            return render_template("api/token_created.html", token=issued.token,
                                   secret=issued.secret, scopes=SCOPES), 201
    elif request.method == "POST":
        status = 422
    return render_template("api/token_new.html", form=form, scopes=SCOPES), status


def _token_or_404(token_id: int) -> ApiToken:
    return db.session.get(ApiToken, token_id) or abort(404)


@bp.route("/admin/api/tokens/<int:token_id>/revoke", methods=["GET", "POST"])
@roles_required(*TOKEN_ROLES)
def token_revoke(token_id: int):
    """GET asks for confirmation; POST revokes (at once, for every caller)."""
    token = _token_or_404(token_id)
    form = ConfirmForm()
    if request.method == "POST":
        if not form.validate_on_submit():
            abort(400)
        done, _status = save_or_show(form, lambda: revoke_token(
            db.session, token.id, actor_id=current_user.id))
        if done:
            flash(_("Token %(name)s revoked; calls with it are refused from now on.",
                    name=token.name), "success")
        elif done is not None:
            flash(_("Token %(name)s was already revoked.", name=token.name), "error")
        return redirect(url_for(".tokens"))
    return render_template("api/token_revoke.html", token=token, form=form, now=utcnow())


# --- the call log --------------------------------------------------------------------

@bp.get("/admin/api/calls")
@roles_required(*LOG_ROLES)
def calls():
    form = CallFilterForm(formdata=request.args)
    known = db.session.execute(select(ApiToken.id, ApiToken.name, ApiToken.prefix)
                               .order_by(ApiToken.name, ApiToken.id)).all()
    form.token.choices = ([choice("", _("All tokens")), choice(NO_TOKEN, _("No known token"))]
                          + [choice(str(i), f"{name} ({prefix}…)") for i, name, prefix in known])
    form.validate()
    token = _token_filter(form.token.data)
    status_class = form.status.data if not form.status.errors else None
    path = form.path.data if not form.path.errors else None
    page = page_of(db.session, calls_query(token, status_class, path),
                   request.args.get("page", 1, type=int))
    filters = {k: v for k, v in (("token", form.token.data if token else None),
                                 ("status", status_class), ("path", path)) if v}
    return render_template("api/calls.html", form=form, page=page, filters=filters,
                           can_manage=current_user.has_role(*TOKEN_ROLES))

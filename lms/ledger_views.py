"""Auditor pages of the evidence ledger: browse entries, verify the chain, show one entry
with everything needed to recompute its hash independently.

Only auditors and admins see the ledger. Verifying is itself evidence (who checked, when,
with what result), so each check is appended to the ledger after it has run.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, abort, render_template, request
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy import select
from sqlalchemy.orm import Session
from wtforms import SearchField, SelectField
from wtforms.validators import Length, Optional

from lms.auth.permissions import roles_required
from lms.extensions import db
from lms.ledger import GENESIS_HASH, LedgerEntry, LedgerHead, append, verify
from lms.ledger_core import ChainCheck, entry_hash, format_time, hashed_text
from lms.people.models import User

bp = Blueprint("ledger", __name__)

LEDGER_ROLES = ("auditor", "admin")
PER_PAGE = 50
VERIFIED_KIND = "ledger.verified"


def _strip(value: str | None) -> str | None:
    return value.strip() if isinstance(value, str) else value


class LedgerFilterForm(FlaskForm):
    """Filters of the entry list (GET, so no CSRF token)."""

    class Meta:
        csrf = False

    kind = SelectField(_l("Kind"), default="")
    subject = SearchField(_l("Subject"), filters=[_strip],
                          validators=[Optional(), Length(max=128)])


class VerifyForm(FlaskForm):
    """Only the CSRF token: verifying writes a ledger entry, so it is a POST."""


# --- queries and the one write (plain functions: explicit session, no commit) ----------

def ledger_kinds(session: Session) -> list[str]:
    """Every kind present in the ledger, for the filter's choices."""
    return list(session.scalars(select(LedgerEntry.kind).distinct().order_by(LedgerEntry.kind)))


def entries_query(kind: str | None, subject: str | None):
    """Entries newest first, narrowed to one kind and/or one exact subject."""
    stmt = select(LedgerEntry).order_by(LedgerEntry.seq.desc())
    if kind:
        stmt = stmt.where(LedgerEntry.kind == kind)
    if subject:
        stmt = stmt.where(LedgerEntry.subject == subject)
    return stmt


def actor_names(session: Session, entries: list[LedgerEntry]) -> dict[int, str]:
    """Usernames of the actors of ``entries``, in one query."""
    ids = {e.actor_id for e in entries if e.actor_id is not None}
    if not ids:
        return {}
    return dict(session.execute(select(User.id, User.username).where(User.id.in_(ids))).all())


def ledger_head(session: Session) -> tuple[int, str]:
    head = session.get(LedgerHead, 1)
    return (head.seq, head.hash) if head else (0, GENESIS_HASH)


def record_verification(session: Session, check: ChainCheck, *, actor_id: int | None
                        ) -> LedgerEntry:
    """Append the outcome of a finished check. Call it only AFTER ``verify``: the entry
    must not be part of the chain it reports on."""
    return append(session, kind=VERIFIED_KIND, subject="ledger", actor_id=actor_id, payload={
        "ok": check.ok,
        "count": check.count,
        "head_hash": check.head_hash,
        "broken_seq": check.broken_seq,
        "reason": check.reason,
    })


def pretty_payload(text: str) -> str:
    """Indented JSON for reading; the stored text itself if it is not JSON (tampered)."""
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)


@bp.context_processor
def _helpers() -> dict[str, Any]:
    return {"pretty_payload": pretty_payload}


# --- views ----------------------------------------------------------------------------

@bp.get("/ledger")
@roles_required(*LEDGER_ROLES)
def index():
    form = LedgerFilterForm(formdata=request.args)
    form.kind.choices = [("", _("All kinds"))] + [(k, k) for k in ledger_kinds(db.session)]
    form.validate()
    kind = form.kind.data if not form.kind.errors else None
    subject = form.subject.data if not form.subject.errors else None
    page = db.paginate(entries_query(kind, subject),
                       page=request.args.get("page", 1, type=int), per_page=PER_PAGE,
                       error_out=False)
    filters = {k: v for k, v in (("kind", kind), ("subject", subject)) if v}
    head_seq, head_hash = ledger_head(db.session)
    return render_template(
        "ledger/index.html", form=form, page=page, filters=filters,
        actors=actor_names(db.session, page.items), head_seq=head_seq, head_hash=head_hash,
        verify_form=VerifyForm(),
    )


@bp.post("/ledger/verify")
@roles_required(*LEDGER_ROLES)
def verify_view():
    form = VerifyForm()
    if not form.validate_on_submit():
        abort(400)
    check = verify(db.session)
    record = record_verification(db.session, check, actor_id=current_user.id)
    db.session.commit()
    return render_template("ledger/verify.html", check=check, record=record)


@bp.get("/ledger/<int:seq>")
@roles_required(*LEDGER_ROLES)
def entry(seq: int):
    item = db.session.get(LedgerEntry, seq)
    if item is None:
        abort(404)
    fields = item.fields()
    neighbours = set(db.session.scalars(
        select(LedgerEntry.seq).where(LedgerEntry.seq.in_((seq - 1, seq + 1)))
    ))
    return render_template(
        "ledger/entry.html", entry=item,
        actor=db.session.get(User, item.actor_id) if item.actor_id is not None else None,
        hashed_at=format_time(item.at), hashed_text=hashed_text(fields),
        recomputed=entry_hash(fields),
        prev_seq=seq - 1 if seq - 1 in neighbours else None,
        next_seq=seq + 1 if seq + 1 in neighbours else None,
    )

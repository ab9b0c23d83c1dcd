"""The inbox, one message, the e-mail tracking link, and the unread badge.

Opening a message records its first read ("inbox"); the signed link in an e-mail
records it as "email_link" with the IP even before the reader logs in, then sends them
to the message (through the login page if needed). Someone else's message and any
forged or tampered token answer a plain 404.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, current_app, g, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy.exc import SQLAlchemyError

from lms.auth.permissions import roles_required
from lms.dbtypes import utcnow
from lms.extensions import db
from lms.notify.models import Message
from lms.notify.service import (
    inbox_page,
    mark_read,
    message_for,
    read_tracking_token,
    unread_count,
)
from lms.people.models import ROLES

bp = Blueprint("notify", __name__)


@bp.app_context_processor
def _unread_badge() -> dict[str, Any]:
    """``unread_messages`` for the nav badge: one indexed COUNT per rendered page, only
    for a logged-in user, cached for the request."""
    if not current_user or not current_user.is_authenticated:
        return {"unread_messages": 0}
    if "unread_messages" not in g:
        try:
            g.unread_messages = unread_count(db.session, current_user.id)
        except SQLAlchemyError:  # e.g. the error page after a failed transaction:
            return {"unread_messages": 0}  # a badge must never break a page
    return {"unread_messages": g.unread_messages}


@bp.get("/inbox")
@roles_required(*ROLES)
def inbox():
    page = inbox_page(db.session, current_user.id, request.args.get("page", 1, type=int))
    g.unread_messages = page.unread
    return render_template("notify/inbox.html", page=page)


@bp.get("/inbox/<int:message_id>")
@roles_required(*ROLES)
def message(message_id: int):
    item: Message | None = message_for(db.session, current_user.id, message_id)
    if item is None:
        abort(404)
    if item.read_at is None:
        mark_read(db.session, item.id, via="inbox", ip=request.remote_addr, now=utcnow(),
                  user_agent=request.user_agent.string)
        db.session.commit()
        db.session.refresh(item)
    return render_template("notify/message.html", message=item)


@bp.get("/n/<token>")
def track(token: str):
    """The e-mail's read receipt. Public on purpose: the reader may not be logged in on
    this device; the signature proves the link came from our e-mail to this person."""
    parsed = read_tracking_token(token, current_app.config["SECRET_KEY"])
    if parsed is None:
        abort(404)
    message_id, user_id = parsed
    item = db.session.get(Message, message_id)
    if item is None or item.recipient_user_id != user_id:
        abort(404)
    if item.read_at is None:
        mark_read(db.session, message_id, via="email_link", ip=request.remote_addr,
                  now=utcnow(), user_agent=request.user_agent.string)
        db.session.commit()
    target = url_for("notify.message", message_id=message_id)
    if current_user.is_authenticated and current_user.id == user_id:
        return redirect(target)
    return redirect(url_for("auth.login", next=target))

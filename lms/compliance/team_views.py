"""A manager's team training page: every direct and indirect report with their
assignments, headline counts and filters.

This is "my team" for the logged-in user's own employee record, so it needs the manager
role (HR sees everyone on its own pages). Scoping happens in SQL (lms.compliance.team);
an employee id outside the manager's tree answers 404 like any record they may not see.
"""

from __future__ import annotations

from datetime import date

from flask import Blueprint, abort, render_template, request
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import BooleanField, SelectField

from lms.auth.permissions import is_in_team, roles_required
from lms.compliance.engine import local_date
from lms.compliance.team import (
    TeamFilters,
    course_choices,
    department_choices,
    team_page,
    team_summary,
)
from lms.dbtypes import utcnow
from lms.extensions import db
from lms.people.forms import optional_int

bp = Blueprint("team", __name__)

STATUS_CHOICES = (
    ("", _l("All statuses")),
    ("overdue", _l("Overdue")),
    ("open", _l("Outstanding")),
    ("completed", _l("Completed")),
    ("suspended", _l("Suspended")),
    ("waived", _l("Waived")),
)


class TeamTrainingFilterForm(FlaskForm):
    class Meta:
        csrf = False  # a GET filter: changes nothing

    direct = BooleanField(_l("Direct reports only"))
    department = SelectField(_l("Department"), coerce=optional_int, validate_choice=False)
    course = SelectField(_l("Course"), coerce=optional_int, validate_choice=False)
    status = SelectField(_l("Status"), choices=STATUS_CHOICES, default="")


def today() -> date:
    """The manager's calendar date (Asia/Shanghai); tests monkeypatch it."""
    return local_date(utcnow())


@bp.get("/team/training")
@roles_required("manager")
def training():
    me = current_user.employee_id
    form = TeamTrainingFilterForm(formdata=request.args)
    if me is None:
        return render_template("compliance/team_training.html", form=form, page=None)
    form.department.choices = [("", _l("All departments")),
                               *department_choices(db.session, me)]
    form.course.choices = [("", _l("All courses")),
                           *((cid, f"{code} · {title}")
                             for cid, code, title in course_choices(db.session, me))]
    form.validate()
    employee_id = request.args.get("employee", type=int)
    if employee_id is not None and not is_in_team(db.session, me, employee_id):
        abort(404)
    filters = TeamFilters(
        direct_only=bool(form.direct.data),
        department_id=form.department.data if not form.department.errors else None,
        course_id=form.course.data if not form.course.errors else None,
        status=(form.status.data or None) if not form.status.errors else None,
        employee_id=employee_id)
    day = today()
    summary = team_summary(db.session, me, filters, day)
    page = team_page(db.session, me, filters, day,
                     page=request.args.get("page", 1, type=int))
    args = {"direct": "y" if filters.direct_only else None,
            "department": filters.department_id, "course": filters.course_id,
            "status": filters.status, "employee": filters.employee_id}
    args = {k: v for k, v in args.items() if v is not None}
    return render_template("compliance/team_training.html", form=form, page=page,
                           summary=summary, filters=args, today=day,
                           employee_filter=employee_id)

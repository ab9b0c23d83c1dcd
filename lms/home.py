"""The home page: what each role needs first after logging in."""

from __future__ import annotations

from flask import Blueprint, render_template
from flask_login import current_user, login_required
from sqlalchemy import func, select

from courses.enrolment import learner_courses
from lms.extensions import db
from lms.people.models import Department, Employee

bp = Blueprint("home", __name__)


@bp.route("/")
@login_required
def index():
    status_counts: dict[str, int] = {}
    if current_user.has_role("hr", "admin"):
        status_counts = dict(
            db.session.execute(select(Employee.status, func.count()).group_by(Employee.status)).all()
        )
    employee = current_user.employee
    department_count = (
        db.session.scalar(select(func.count()).select_from(Department))
        if current_user.has_role("hr", "admin") else None
    )
    courses = learner_courses(db.session, current_user.id)
    return render_template("home.html", employee=employee, status_counts=status_counts,
                           department_count=department_count, courses=courses)

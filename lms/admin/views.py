"""Administration: users and roles, the work calendar, and the due-date calculator."""

from __future__ import annotations

import calendar as pycalendar
from datetime import date, timedelta

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased, selectinload
from wtforms import Form

from lms.admin import services
from lms.admin.forms import (
    BetweenForm,
    DeleteForm,
    DueDateForm,
    OverrideForm,
    PasswordResetForm,
    UserCreateForm,
    UserEditForm,
    UserSearchForm,
    UserStatusForm,
    YearDeclareForm,
)
from lms.auth.models import UserSession
from lms.auth.permissions import roles_required
from lms.dbtypes import utcnow
from lms.extensions import db
from lms.people.models import User, UserRole
from lms.workday_overrides import CalendarYear, WorkdayOverride, load_calendar
from lms.workdays import UnknownYearError, parse_iso_date

bp = Blueprint("admin", __name__)

PER_PAGE = 50
# The calculator walks day by day; a span longer than this is surely a typo.
MAX_SPAN = timedelta(days=3660)


def _fail(form: Form, error: services.AdminInputError) -> None:
    """Show a service's refusal under the field it names, or as a flash message."""
    field = getattr(form, error.field, None)
    if field is not None and hasattr(field, "errors"):
        field.errors = [*field.errors, error.message]
    else:
        flash(error.message, "error")


# --- users -------------------------------------------------------------------------


@bp.route("/admin/users")
@roles_required("admin")
def users():
    form = UserSearchForm(request.args)
    form.validate()
    query = select(User).options(selectinload(User.employee)).order_by(User.username)
    q = (form.q.data or "").strip() if not form.q.errors else ""
    if q:
        query = query.where(User.username.icontains(q, autoescape=True)
                            | User.display_name.icontains(q, autoescape=True))
    role = form.role.data if not form.role.errors else ""
    if role:
        query = query.where(User.role_rows.any(UserRole.role == role))
    page = db.paginate(query, per_page=PER_PAGE, error_out=False)
    ids = [u.id for u in page.items]
    live: dict[int, int] = {}
    if ids:
        live = dict(db.session.execute(
            select(UserSession.user_id, func.count())
            .where(UserSession.user_id.in_(ids), UserSession.revoked_at.is_(None),
                   UserSession.expires_at > utcnow())
            .group_by(UserSession.user_id)
        ).all())
    return render_template("admin/users.html", form=form, page=page, live=live,
                           q=q, role=role or "")


@bp.route("/admin/users/new", methods=["GET", "POST"])
@roles_required("admin")
def user_new():
    form = UserCreateForm()
    if form.validate_on_submit():
        try:
            user = services.create_user(
                db.session, username=form.username.data, display_name=form.display_name.data,
                email=form.email.data, employee_no=form.employee_no.data,
                roles=form.roles.data, password=form.password.data, actor_id=current_user.id)
            db.session.commit()
        except services.AdminInputError as error:
            db.session.rollback()
            _fail(form, error)
        except IntegrityError:  # a concurrent request took the username or employee
            db.session.rollback()
            flash(_("The user could not be saved: the username or employee was taken "
                    "at the same moment. Check and try again."), "error")
        else:
            flash(_("User %(name)s created.", name=user.username), "success")
            return redirect(url_for("admin.user_edit", user_id=user.id))
    status = 400 if request.method == "POST" else 200
    return render_template("admin/user_new.html", form=form), status


def _profile_form(user: User) -> UserEditForm:
    """The profile form filled from the stored user."""
    form = UserEditForm(formdata=None, obj=user)
    form.employee_no.data = user.employee.employee_no if user.employee else ""
    form.roles.data = sorted(user.roles)
    return form


@bp.route("/admin/users/<int:user_id>", methods=["GET", "POST"])
@roles_required("admin")
def user_edit(user_id: int):
    user = db.session.get(User, user_id)
    if user is None:
        abort(404)
    edit = _profile_form(user)
    reset = PasswordResetForm(formdata=None)
    code = 200
    if request.method == "POST":
        action = request.form.get("action", "")
        if action == "save":
            form = edit = UserEditForm()
            handler = _save_user
        elif action in ("disable", "enable"):
            form = UserStatusForm()
            handler = _toggle_user
        elif action == "reset_password":
            form = reset = PasswordResetForm()
            handler = _reset_user
        else:
            abort(400)
        if form.validate_on_submit():
            try:
                message = handler(user, action, form)
                db.session.commit()
            except services.AdminInputError as error:
                db.session.rollback()
                _fail(form, error)
            except IntegrityError:
                db.session.rollback()
                flash(_("The change could not be saved because of a concurrent change. "
                        "Reload and try again."), "error")
            else:
                flash(message, "success")
                return redirect(url_for("admin.user_edit", user_id=user.id))
        code = 400
        if action != "save":  # the profile form shows the stored values
            edit = _profile_form(user)
    live_sessions = db.session.scalar(
        select(func.count()).select_from(UserSession)
        .where(UserSession.user_id == user.id, UserSession.revoked_at.is_(None),
               UserSession.expires_at > utcnow())
    )
    return render_template("admin/user_edit.html", user=user, form=edit,
                           reset=reset,
                           live_sessions=live_sessions), code


def _save_user(user: User, _action: str, form: UserEditForm) -> str:
    changed = services.update_profile(
        db.session, user, display_name=form.display_name.data, email=form.email.data,
        employee_no=form.employee_no.data, actor_id=current_user.id)
    changed = services.change_roles(db.session, user, form.roles.data,
                                    actor=current_user) or changed
    return _("Changes saved.") if changed else _("Nothing was changed.")


def _toggle_user(user: User, action: str, _form: UserStatusForm) -> str:
    if action == "disable":
        revoked = services.set_enabled(db.session, user, False, actor=current_user)
        return _("%(name)s is disabled; %(n)d sessions were ended.",
                 name=user.username, n=revoked)
    services.set_enabled(db.session, user, True, actor=current_user)
    return _("%(name)s is enabled again.", name=user.username)


def _reset_user(user: User, _action: str, form: PasswordResetForm) -> str:
    revoked = services.reset_password(db.session, user, form.new_password.data,
                                      actor=current_user)
    return _("Password of %(name)s reset; %(n)d sessions were ended.",
             name=user.username, n=revoked)


# --- work calendar -----------------------------------------------------------------


def _year_arg() -> int:
    raw = request.args.get("year", "")
    if raw.isdigit() and services.MIN_YEAR <= int(raw) <= services.MAX_YEAR:
        return int(raw)
    return services.shanghai_today().year


def _render_calendar(year: int, *, override_form: OverrideForm | None = None,
                     year_form: YearDeclareForm | None = None, status: int = 200):
    cal = load_calendar(db.session)
    notes = services.override_notes(db.session)
    unknown: UnknownYearError | None = None
    months: list[tuple[int, list[list[services.DayInfo | None]]]] = []
    if cal.is_known_year(year):
        grid = pycalendar.Calendar(firstweekday=0)
        for month in range(1, 13):
            weeks = [[services.describe_day(cal, d, notes) if d.month == month else None
                      for d in week] for week in grid.monthdatescalendar(year, month)]
            months.append((month, weeks))
    else:
        unknown = UnknownYearError(year)
    creator = aliased(User)
    overrides = db.session.execute(
        select(WorkdayOverride, creator.display_name)
        .outerjoin(creator, creator.id == WorkdayOverride.created_by_id)
        .where(WorkdayOverride.day >= date(year, 1, 1), WorkdayOverride.day <= date(year, 12, 31))
        .order_by(WorkdayOverride.day)
    ).all()
    declarer = aliased(User)
    years = db.session.execute(
        select(CalendarYear, declarer.display_name)
        .outerjoin(declarer, declarer.id == CalendarYear.declared_by_id)
        .order_by(CalendarYear.year)
    ).all()
    if override_form is None:
        override_form = OverrideForm(formdata=None)
    if year_form is None:
        year_form = YearDeclareForm(formdata=None, year=year)
    return render_template(
        "admin/calendar.html", year=year, months=months, unknown=unknown,
        overrides=overrides, years=years, override_form=override_form, year_form=year_form,
        statutory=cal.is_known_year(year) and year not in cal.extra_years,
    ), status


@bp.route("/admin/calendar")
@roles_required("admin")
def calendar():
    return _render_calendar(_year_arg())


@bp.route("/admin/calendar/overrides", methods=["POST"])
@roles_required("admin")
def override_add():
    form = OverrideForm()
    if form.validate_on_submit():
        day = form.day.data
        try:
            services.add_override(db.session, day=day, is_workday=form.is_workday.data == "1",
                                  note=form.note.data, actor_id=current_user.id)
            db.session.commit()
        except services.AdminInputError as error:
            db.session.rollback()
            _fail(form, error)
        except IntegrityError:
            db.session.rollback()
            form.day.errors = [*form.day.errors, _(
                "%(day)s already has an override; delete it first to change it.",
                day=day.isoformat())]
        else:
            flash(_("Override for %(day)s saved.", day=day.isoformat()), "success")
            return redirect(url_for("admin.calendar", year=day.year))
    year = form.day.data.year if form.day.data else _year_arg()
    return _render_calendar(year, override_form=form, status=400)


@bp.route("/admin/calendar/overrides/<day>/delete", methods=["POST"])
@roles_required("admin")
def override_delete(day: str):
    try:
        parsed = parse_iso_date(day)
    except ValueError:
        abort(404)
    form = DeleteForm()
    if not form.validate_on_submit():
        abort(400)
    try:
        services.remove_override(db.session, day=parsed, actor_id=current_user.id)
    except services.AdminInputError:
        db.session.rollback()
        abort(404)
    db.session.commit()
    flash(_("Override for %(day)s deleted.", day=parsed.isoformat()), "success")
    return redirect(url_for("admin.calendar", year=parsed.year))


@bp.route("/admin/calendar/years", methods=["POST"])
@roles_required("admin")
def year_declare():
    form = YearDeclareForm()
    if form.validate_on_submit():
        year = form.year.data
        try:
            services.declare_year(db.session, year=year, note=form.note.data,
                                  actor_id=current_user.id)
            db.session.commit()
        except services.AdminInputError as error:
            db.session.rollback()
            _fail(form, error)
        except IntegrityError:
            db.session.rollback()
            form.year.errors = [*form.year.errors, _("%(year)d is already declared.", year=year)]
        else:
            flash(_("%(year)d declared complete.", year=year), "success")
            return redirect(url_for("admin.calendar", year=year))
    year = form.year.data if isinstance(form.year.data, int) and (
        services.MIN_YEAR <= form.year.data <= services.MAX_YEAR) else _year_arg()
    return _render_calendar(year, year_form=form, status=400)


# --- due-date calculator -----------------------------------------------------------


@bp.route("/tools/due-date")
@roles_required("trainer", "hr", "admin")
def due_date():
    args = request.args
    add_form = DueDateForm(args if ("start" in args or "days" in args) else None)
    between_form = BetweenForm(args if ("from_date" in args or "to_date" in args) else None)
    result: dict | None = None
    between: dict | None = None
    unknown: UnknownYearError | None = None
    status = 200
    cal = None
    if "start" in args or "days" in args:
        if add_form.validate():
            cal = load_calendar(db.session)
            start, n = add_form.start.data, add_form.days.data
            try:
                due = cal.add_workdays(start, n)
                skipped = services.days_off_between(cal, start, due,
                                                    services.override_notes(db.session))
                result = {"start": start, "days": n, "due": due, "skipped": skipped}
            except UnknownYearError as exc:
                unknown, status = exc, 400
        else:
            status = 400
    if "from_date" in args or "to_date" in args:
        if between_form.validate():
            first, second = between_form.from_date.data, between_form.to_date.data
            if abs(second - first) > MAX_SPAN:
                between_form.to_date.errors = [*between_form.to_date.errors, _(
                    "The two dates may be at most %(years)d years apart.", years=10)]
                status = 400
            else:
                cal = cal or load_calendar(db.session)
                try:
                    between = {"from": first, "to": second,
                               "count": cal.workdays_between(first, second)}
                except UnknownYearError as exc:
                    unknown, status = exc, 400
        else:
            status = 400
    return render_template("admin/due_date.html", add_form=add_form,
                           between_form=between_form, result=result, between=between,
                           unknown=unknown), status

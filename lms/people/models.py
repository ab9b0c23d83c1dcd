"""Departments, positions (岗位), employees mirrored from the HR record, users and roles."""

from __future__ import annotations

from datetime import date, datetime

from flask_login import UserMixin
from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from lms.dbtypes import UTCDateTime, utcnow
from lms.extensions import db

# Employee statuses in HR order; labels live in lms.people.labels for display.
EMPLOYEE_STATUSES = ("active", "leaving", "absconded", "unpaid_leave", "left")
ROLES = ("trainee", "trainer", "hr", "manager", "admin", "auditor")


def _in_check(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Department(db.Model):
    """A node of the organisation tree (HQ → division → region → store)."""

    __tablename__ = "departments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(128))
    parent_id: Mapped[int | None] = mapped_column(
        ForeignKey("departments.id", ondelete="RESTRICT"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    parent: Mapped[Department | None] = relationship(remote_side=[id], back_populates="children")
    children: Mapped[list[Department]] = relationship(
        back_populates="parent", order_by="Department.code"
    )

    def __repr__(self) -> str:
        return f"<Department {self.code} {self.name}>"


class Position(db.Model):
    """A job position (岗位) such as 店长 or 普工; training rules target positions."""

    __tablename__ = "positions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Employee(db.Model):
    """An employee as the HR record knows them; the ID number is kept encrypted."""

    __tablename__ = "employees"
    __table_args__ = (
        CheckConstraint(_in_check("status", EMPLOYEE_STATUSES), name="status"),
        CheckConstraint("manager_id IS NULL OR manager_id <> id", name="not_own_manager"),
        Index("ix_employees_department_status", "department_id", "status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    employee_no: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(64))
    department_id: Mapped[int] = mapped_column(ForeignKey("departments.id", ondelete="RESTRICT"))
    position_id: Mapped[int | None] = mapped_column(
        ForeignKey("positions.id", ondelete="RESTRICT"), index=True
    )
    manager_id: Mapped[int | None] = mapped_column(
        ForeignKey("employees.id", ondelete="SET NULL"), index=True
    )
    hire_date: Mapped[date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(16), default="active")
    email: Mapped[str | None] = mapped_column(String(254))
    # Fernet ciphertext of the normalised ID number, and a keyed HMAC of it so that the
    # same ID number held by two employees (the "sister's ID" impostor case) is caught
    # by a unique index without decrypting anything.
    id_number_cipher: Mapped[bytes | None] = mapped_column(LargeBinary)
    id_number_index: Mapped[str | None] = mapped_column(String(64), unique=True)
    id_number_masked: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    department: Mapped[Department] = relationship()
    position: Mapped[Position | None] = relationship()
    manager: Mapped[Employee | None] = relationship(remote_side=[id])
    user: Mapped[User | None] = relationship(back_populates="employee")
    tag_rows: Mapped[list[EmployeeTag]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True, order_by="EmployeeTag.tag"
    )

    @property
    def tags(self) -> list[str]:
        """HR's labels on this person (特殊工种, 外派 …), sorted."""
        return sorted(r.tag for r in self.tag_rows)

    def set_tags(self, tags: list[str]) -> None:
        """Replace the tags with an already normalised list (lms.people.tags)."""
        wanted = set(tags)
        keep = [r for r in self.tag_rows if r.tag in wanted]
        have = {r.tag for r in keep}
        self.tag_rows = keep + [EmployeeTag(tag=t) for t in sorted(wanted - have)]


class EmployeeTag(db.Model):
    """One free label HR put on an employee; training rules may target tags."""

    __tablename__ = "employee_tags"
    __table_args__ = (Index("ix_employee_tags_tag_employee", "tag", "employee_id"),)

    employee_id: Mapped[int] = mapped_column(
        ForeignKey("employees.id", ondelete="CASCADE"), primary_key=True
    )
    tag: Mapped[str] = mapped_column(String(32), primary_key=True)


class User(UserMixin, db.Model):
    """A login. Most users are employees; admin and auditor accounts may not be."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(64))
    email: Mapped[str | None] = mapped_column(String(254))
    password_hash: Mapped[str] = mapped_column(String(256))
    is_enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    employee_id: Mapped[int | None] = mapped_column(
        ForeignKey("employees.id", ondelete="SET NULL"), unique=True
    )
    locale: Mapped[str | None] = mapped_column(String(8))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    password_changed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    employee: Mapped[Employee | None] = relationship(back_populates="user")
    role_rows: Mapped[list[UserRole]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True, lazy="selectin"
    )

    # Set by the session loader: the server-side session this request belongs to.
    current_session_id = None

    @property
    def is_active(self) -> bool:  # Flask-Login: disabled users cannot log in
        return bool(self.is_enabled)

    def get_id(self) -> str:
        # Flask-Login stores this in the cookie; it is the server-side session token,
        # never the user id, so revoking the session row logs the cookie out.
        token = getattr(self, "_session_token", None)
        if token is None:
            raise RuntimeError("log in through lms.auth.sessions.start_session")
        return token

    @property
    def roles(self) -> frozenset[str]:
        return frozenset(r.role for r in self.role_rows)

    def has_role(self, *roles: str) -> bool:
        return not self.roles.isdisjoint(roles)

    def set_roles(self, roles: set[str]) -> None:
        unknown = set(roles) - set(ROLES)
        if unknown:
            raise ValueError(f"unknown roles: {sorted(unknown)}")
        keep = [r for r in self.role_rows if r.role in roles]
        have = {r.role for r in keep}
        self.role_rows = keep + [UserRole(role=r) for r in sorted(roles - have)]


class UserRole(db.Model):
    __tablename__ = "user_roles"
    __table_args__ = (CheckConstraint(_in_check("role", ROLES), name="role"),)

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    role: Mapped[str] = mapped_column(String(16), primary_key=True)

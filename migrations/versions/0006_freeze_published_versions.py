"""published course versions are immutable, enforced by the database itself

Revision ID: 0006
Revises: 0005

The service layer (courses/authoring.py) and the ORM guard (courses/immutability.py)
refuse edits of published content, but raw SQL and bulk ``update()``/``delete()`` pass
them by. These triggers refuse, for every connection:

- course_versions: any UPDATE of a published or retired version except the one move a
  published version may still make, published -> retired, changing nothing but
  ``status`` and ``retired_at``; DELETE of a published or retired version.
- lessons: INSERT, UPDATE or DELETE of a lesson of a published or retired version (on
  UPDATE both the version it was in and the one it moves to count).
- media_assets: changing sha256, storage_key, size_bytes or duration_seconds of, or
  deleting, an asset that a lesson of a published or retired version uses.
- courses: changing the code once a version is published or retired (the code is part
  of the content hash).

Errors say "published course version is immutable"; PostgreSQL raises SQLSTATE 42501
(insufficient_privilege), SQLite RAISE(ABORT) (an IntegrityError).

Keep in mind when writing later migrations:
- A new column of course_versions must be added to ``VERSION_COLUMNS`` of a new
  migration that recreates the triggers, or it stays editable on published versions.
- On SQLite, a batch migration that *recreates* one of these tables (anything beyond
  ADD COLUMN, e.g. widening the lessons kind CHECK) silently drops that table's
  triggers (media_assets, courses), or fails because the triggers of another table
  name it (lessons, course_versions). Drop these triggers first and create them again
  afterwards; tests/web/test_version_triggers.py checks that they all exist at head.

PostgreSQL: the triggers on lessons, media_assets and courses first lock the versions
concerned ``FOR SHARE`` and only then read their status (in a statement of its own: a
status filter in the locking statement would be applied to the row as it was before
the wait). So a concurrent publish (an UPDATE of the version row) and a lesson change
wait for each other instead of both passing on the status each saw before the other
committed. TRUNCATE fires no row triggers (the test fixtures rely on that).
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

MESSAGE = "published course version is immutable"
FROZEN = "('published', 'retired')"
# Every column of course_versions except status and retired_at (frozen here, without
# importing the app: these are the columns as of revision 0005).
VERSION_COLUMNS = (
    "id",
    "course_id",
    "number",
    "change_note",
    "requires_retraining",
    "content_hash",
    "created_at",
    "created_by_id",
    "published_at",
    "published_by_id",
)
MEDIA_COLUMNS = ("sha256", "storage_key", "size_bytes", "duration_seconds")

# (trigger name, table) per dialect, in the order they are created.
PG_TRIGGERS = (
    ("course_versions_frozen", "course_versions"),
    ("lessons_frozen", "lessons"),
    ("media_assets_frozen_update", "media_assets"),
    ("media_assets_frozen_delete", "media_assets"),
    ("courses_frozen_code", "courses"),
)
PG_FUNCTIONS = (
    "course_versions_refuse_change",
    "lessons_refuse_change",
    "media_assets_refuse_change",
    "courses_refuse_code_change",
)
SQLITE_TRIGGERS = (
    "course_versions_frozen_update",
    "course_versions_frozen_delete",
    "lessons_frozen_insert",
    "lessons_frozen_update",
    "lessons_frozen_delete",
    "media_assets_frozen_update",
    "media_assets_frozen_delete",
    "courses_frozen_code",
)


def _pg_raise(detail: str, *args: str) -> str:
    params = "".join(f", {a}" for a in args)
    return (f"RAISE EXCEPTION '{MESSAGE}: {detail}'{params} "
            f"USING ERRCODE = 'insufficient_privilege';")


def _upgrade_postgresql() -> None:
    unchanged = " AND ".join(f"NEW.{c} IS NOT DISTINCT FROM OLD.{c}" for c in VERSION_COLUMNS)
    op.execute(f"""
        CREATE FUNCTION course_versions_refuse_change() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'UPDATE' AND OLD.status = 'published' AND NEW.status = 'retired'
                    AND {unchanged} THEN
                RETURN NEW;  -- retirement: only status and retired_at change
            END IF;
            {_pg_raise("% of % version % refused", "TG_OP", "OLD.status", "OLD.id")}
        END $$
    """)
    op.execute(
        "CREATE TRIGGER course_versions_frozen BEFORE UPDATE OR DELETE ON course_versions "
        f"FOR EACH ROW WHEN (OLD.status IN {FROZEN}) "
        "EXECUTE FUNCTION course_versions_refuse_change()"
    )

    op.execute(f"""
        CREATE FUNCTION lessons_refuse_change() RETURNS trigger
        LANGUAGE plpgsql AS $$
        DECLARE
            ids integer[];
            frozen integer;
        BEGIN
            IF TG_OP = 'INSERT' THEN
                ids := ARRAY[NEW.version_id];
            ELSIF TG_OP = 'DELETE' THEN
                ids := ARRAY[OLD.version_id];
            ELSE
                ids := ARRAY[OLD.version_id, NEW.version_id];
            END IF;
            -- Lock first (waiting for a concurrent publish to commit), then read the
            -- status afresh: the statement after the lock sees what that publish wrote.
            PERFORM 1 FROM course_versions WHERE id = ANY(ids) FOR SHARE;
            SELECT id INTO frozen FROM course_versions
            WHERE id = ANY(ids) AND status IN {FROZEN} LIMIT 1;
            IF frozen IS NOT NULL THEN
                {_pg_raise("% of a lesson of version % refused", "TG_OP", "frozen")}
            END IF;
            IF TG_OP = 'DELETE' THEN
                RETURN OLD;
            END IF;
            RETURN NEW;
        END $$
    """)
    op.execute(
        "CREATE TRIGGER lessons_frozen BEFORE INSERT OR UPDATE OR DELETE ON lessons "
        "FOR EACH ROW EXECUTE FUNCTION lessons_refuse_change()"
    )

    op.execute(f"""
        CREATE FUNCTION media_assets_refuse_change() RETURNS trigger
        LANGUAGE plpgsql AS $$
        DECLARE
            frozen integer;
        BEGIN
            PERFORM 1 FROM course_versions
            WHERE id IN (SELECT version_id FROM lessons WHERE media_id = OLD.id) FOR SHARE;
            SELECT id INTO frozen FROM course_versions
            WHERE id IN (SELECT version_id FROM lessons WHERE media_id = OLD.id)
                AND status IN {FROZEN}
            LIMIT 1;
            IF frozen IS NOT NULL THEN
                {_pg_raise("% of media asset % used by version % refused",
                           "TG_OP", "OLD.id", "frozen")}
            END IF;
            IF TG_OP = 'DELETE' THEN
                RETURN OLD;
            END IF;
            RETURN NEW;
        END $$
    """)
    changed = " OR ".join(f"NEW.{c} IS DISTINCT FROM OLD.{c}" for c in MEDIA_COLUMNS)
    op.execute(
        f"CREATE TRIGGER media_assets_frozen_update BEFORE UPDATE OF {', '.join(MEDIA_COLUMNS)} "
        f"ON media_assets FOR EACH ROW WHEN ({changed}) "
        "EXECUTE FUNCTION media_assets_refuse_change()"
    )
    op.execute(
        "CREATE TRIGGER media_assets_frozen_delete BEFORE DELETE ON media_assets "
        "FOR EACH ROW EXECUTE FUNCTION media_assets_refuse_change()"
    )

    op.execute(f"""
        CREATE FUNCTION courses_refuse_code_change() RETURNS trigger
        LANGUAGE plpgsql AS $$
        DECLARE
            frozen integer;
        BEGIN
            PERFORM 1 FROM course_versions WHERE course_id = OLD.id FOR SHARE;
            SELECT id INTO frozen FROM course_versions
            WHERE course_id = OLD.id AND status IN {FROZEN} LIMIT 1;
            IF frozen IS NOT NULL THEN
                {_pg_raise("the code of course % is pinned by version %", "OLD.id", "frozen")}
            END IF;
            RETURN NEW;
        END $$
    """)
    op.execute(
        "CREATE TRIGGER courses_frozen_code BEFORE UPDATE OF code ON courses "
        "FOR EACH ROW WHEN (NEW.code IS DISTINCT FROM OLD.code) "
        "EXECUTE FUNCTION courses_refuse_code_change()"
    )


def _sqlite_trigger(name: str, event: str, when: str, detail: str) -> None:
    op.execute(
        f"CREATE TRIGGER {name} BEFORE {event} FOR EACH ROW WHEN {when} BEGIN "
        f"SELECT RAISE(ABORT, '{MESSAGE}: {detail}'); END"
    )


def _frozen_version(id_expr: str) -> str:
    return (f"EXISTS (SELECT 1 FROM course_versions "
            f"WHERE id IN ({id_expr}) AND status IN {FROZEN})")


def _upgrade_sqlite() -> None:
    unchanged = " AND ".join(f"NEW.{c} IS OLD.{c}" for c in VERSION_COLUMNS)
    _sqlite_trigger(
        "course_versions_frozen_update", "UPDATE ON course_versions",
        f"OLD.status IN {FROZEN} AND NOT (OLD.status = 'published' "
        f"AND NEW.status = 'retired' AND {unchanged})",
        "only retirement (status and retired_at) may change it",
    )
    _sqlite_trigger("course_versions_frozen_delete", "DELETE ON course_versions",
                    f"OLD.status IN {FROZEN}", "it cannot be deleted")
    _sqlite_trigger("lessons_frozen_insert", "INSERT ON lessons",
                    _frozen_version("NEW.version_id"), "lessons cannot be added")
    _sqlite_trigger("lessons_frozen_update", "UPDATE ON lessons",
                    _frozen_version("OLD.version_id, NEW.version_id"),
                    "its lessons cannot change")
    _sqlite_trigger("lessons_frozen_delete", "DELETE ON lessons",
                    _frozen_version("OLD.version_id"), "its lessons cannot be deleted")
    used = _frozen_version("SELECT version_id FROM lessons WHERE media_id = OLD.id")
    changed = " OR ".join(f"NEW.{c} IS NOT OLD.{c}" for c in MEDIA_COLUMNS)
    _sqlite_trigger("media_assets_frozen_update",
                    f"UPDATE OF {', '.join(MEDIA_COLUMNS)} ON media_assets",
                    f"({changed}) AND {used}", "the media assets it uses cannot change")
    _sqlite_trigger("media_assets_frozen_delete", "DELETE ON media_assets", used,
                    "the media assets it uses cannot be deleted")
    _sqlite_trigger(
        "courses_frozen_code", "UPDATE OF code ON courses",
        "NEW.code IS NOT OLD.code AND EXISTS (SELECT 1 FROM course_versions "
        f"WHERE course_id = OLD.id AND status IN {FROZEN})",
        "the course code cannot change",
    )


def upgrade():
    if op.get_bind().dialect.name == "postgresql":
        _upgrade_postgresql()
    else:
        _upgrade_sqlite()


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        for name, table in reversed(PG_TRIGGERS):
            op.execute(f"DROP TRIGGER {name} ON {table}")
        for function in reversed(PG_FUNCTIONS):
            op.execute(f"DROP FUNCTION {function}()")
    else:
        for name in reversed(SQLITE_TRIGGERS):
            op.execute(f"DROP TRIGGER {name}")

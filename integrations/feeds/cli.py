"""``flask --app wsgi feeds poll|add|import``: the feed sources from the command line.

``poll`` polls the due sources (as the tick does) or one source by name at once;
``add`` creates a source; ``import`` ingests a saved feed file without any network
access (a feed copied by hand from a site that blocks servers, or the demo feeds).
"""

from __future__ import annotations

from pathlib import Path

import click
from flask import current_app
from flask.cli import AppGroup
from sqlalchemy import select

from courses.models import RISK_TOPICS
from integrations.feeds import poll
from integrations.feeds.fetch import FetchPolicy
from integrations.feeds.parse import FeedParseError
from integrations.feeds.sources import SourceInput, create_source, source_by_name
from lms.compliance.regulation.models import MAX_POLL_MINUTES, MIN_POLL_MINUTES, FeedSource
from lms.extensions import db
from lms.field_errors import FieldErrors
from lms.workday_overrides import load_calendar
from lms.workdays import UnknownYearError

feeds_cli = AppGroup("feeds", help="Regulation feeds (RSS/Atom sources).")

MAX_IMPORT_BYTES = 20 * 1024 * 1024


def _source(name: str) -> FeedSource:
    source = source_by_name(db.session, name)
    if source is None:
        known = db.session.scalars(select(FeedSource.name).order_by(FeedSource.name)).all()
        hint = f" (known: {', '.join(known)})" if known else " (there are no feed sources yet)"
        raise click.ClickException(f"no feed source named {name!r}{hint}")
    return source


@feeds_cli.command("poll")
@click.argument("name", required=False)
def poll_command(name: str | None) -> None:
    """Poll the due sources, or the source NAME now (due or not)."""
    policy = FetchPolicy.from_config(current_app.config)
    calendar = load_calendar(db.session)
    if name is None:
        report = poll.poll_due_feeds(db.session, now=poll.clock(), calendar=calendar,
                                     commit=db.session.commit, policy=policy)
        for summary in report.summaries:
            click.echo(summary.line(), err=summary.status == "error")
        click.echo(report.line())
        return
    source = _source(name)
    summary = poll.poll_source(db.session, source, now=poll.clock(), calendar=calendar,
                               policy=policy)
    db.session.commit()
    if summary.status == "error":
        raise click.ClickException(summary.line())
    click.echo(summary.line())


@feeds_cli.command("add")
@click.argument("name")
@click.argument("url")
@click.option("--topic", type=click.Choice(RISK_TOPICS), default="other", show_default=True,
              help="Default risk topic of the feed's updates.")
@click.option("--interval", type=click.IntRange(MIN_POLL_MINUTES, MAX_POLL_MINUTES),
              default=60, show_default=True, help="Minutes between polls.")
def add_command(name: str, url: str, topic: str, interval: int) -> None:
    """Add the feed source NAME polling URL."""
    try:
        source = create_source(db.session, SourceInput(name=name, url=url, default_topic=topic,
                                                       poll_minutes=interval),
                               actor_id=None)
        db.session.commit()
    except FieldErrors as exc:
        db.session.rollback()
        raise click.ClickException("; ".join(
            f"{field or 'feed'}: {message}" for field, messages in exc.errors.items()
            for message in messages)) from exc
    click.echo(f"added feed {source.name} ({source.url}), topic {topic}, "
               f"every {interval} minutes")


@feeds_cli.command("import")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--source", "source_name", required=True,
              help="Name of the feed source the items belong to.")
def import_command(file: Path, source_name: str) -> None:
    """Ingest a saved RSS/Atom FILE as if SOURCE had served it (no network)."""
    try:
        size = file.stat().st_size
        if size > MAX_IMPORT_BYTES:
            raise click.ClickException(f"{file}: larger than {MAX_IMPORT_BYTES // 2**20} MB")
        body = file.read_bytes()
    except OSError as exc:
        raise click.ClickException(f"cannot read {file}: {exc.strerror or exc}") from exc
    source = _source(source_name)
    try:
        summary = poll.ingest_bytes(db.session, source, body, {}, now=poll.clock(),
                                    calendar=load_calendar(db.session))
        db.session.commit()
    except (FeedParseError, UnknownYearError) as exc:
        db.session.rollback()
        raise click.ClickException(f"{file}: nothing imported: {exc}") from exc
    click.echo(summary.line())
    for problem in summary.errors:
        click.echo(f"  {problem}", err=True)

"""``flask --app wsgi api token create|list|revoke``: API tokens from the command line.

For scripts and first setup (the README's curl examples): ``create`` prints the secret
once, alone on stdout (the summary goes to stderr), so ``TOKEN=$(flask --app wsgi api token
create ...)`` captures it. The service appends the ledger entry (actor: none, i.e. the command line).
"""

from __future__ import annotations

import click
from flask.cli import AppGroup
from sqlalchemy import select

from integrations.tokens import SCOPES, ApiToken, TokenInputError, issue_token, revoke_token
from lms.dbtypes import utcnow
from lms.extensions import db

api_cli = AppGroup("api", help="The /api/v1 integration API.")
token_cli = AppGroup("token", help="Bearer tokens of the API.")
api_cli.add_command(token_cli)

# the service names form fields; the command's user knows options
OPTION_OF = {"name": "--name", "scopes": "--scope", "expires_in_days": "--expires-days"}


def _state(token: ApiToken) -> str:
    if token.revoked_at is not None:
        return f"revoked {token.revoked_at:%Y-%m-%d %H:%M}Z"
    if not token.is_live(utcnow()):
        return f"expired {token.expires_at:%Y-%m-%d %H:%M}Z"
    return "active"


@token_cli.command("create")
@click.option("--name", required=True, help="Who or what uses the token, e.g. hr-system.")
@click.option("--scope", "scopes", multiple=True, required=True,
              type=click.Choice(list(SCOPES)), help="A scope to grant (repeat for more).")
@click.option("--expires-days", type=int, default=None,
              help="Days until the token expires (default: never).")
def create_command(name: str, scopes: tuple[str, ...], expires_days: int | None) -> None:
    """Create a token and print its secret (shown this once only)."""
    try:
        issued = issue_token(db.session, name=name, scopes=list(scopes), actor_id=None,
                             expires_in_days=expires_days)
        db.session.commit()
    except TokenInputError as exc:
        db.session.rollback()
        raise click.ClickException("; ".join(
            f"{OPTION_OF.get(field, field)}: {message}"
            for field, messages in exc.errors.items() for message in messages)) from exc
    token = issued.token
    expires = f"expires {token.expires_at:%Y-%m-%d %H:%M}Z" if token.expires_at else "no expiry"
    click.echo(f"token {token.id} {token.name} created: scopes {', '.join(token.scope_list)}; "
               f"{expires}. The secret is shown this once:", err=True)
    click.echo(issued.secret)


@token_cli.command("list")
def list_command() -> None:
    """List every token (never its secret)."""
    tokens = db.session.scalars(select(ApiToken).order_by(ApiToken.id)).all()
    if not tokens:
        click.echo("no API tokens")
        return
    for t in tokens:
        used = f"{t.last_used_at:%Y-%m-%d %H:%M}Z" if t.last_used_at else "never"
        click.echo(f"{t.id:>4}  {t.prefix}…  {t.name:<24} {','.join(t.scope_list):<40} "
                   f"last used {used:<18} {_state(t)}")


@token_cli.command("revoke")
@click.argument("token_id", type=int)
def revoke_command(token_id: int) -> None:
    """Revoke the token TOKEN_ID at once."""
    token = db.session.get(ApiToken, token_id)
    if token is None:
        raise click.ClickException(f"no API token with id {token_id}")
    if not revoke_token(db.session, token_id, actor_id=None):
        db.session.rollback()
        raise click.ClickException(f"token {token_id} ({token.name}) was already revoked")
    db.session.commit()
    click.echo(f"token {token_id} ({token.name}) revoked")

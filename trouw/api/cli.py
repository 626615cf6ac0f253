"""`trouw apikey create`: make an API key and print it once (the lead registers the command)."""

from __future__ import annotations

import typer

from trouw.api.auth import SCOPES, UnknownScopeError, create_api_key


def apikey_create(
    name: str = typer.Argument(..., help="Who or what uses the key, e.g. 'pos-gent'."),
    scopes: list[str] = typer.Option(
        ["ingest"], "--scope", help=f"Repeat for several: {', '.join(SCOPES)}."
    ),
) -> None:
    """Create an API key; it is printed once and stored only as a hash."""
    from trouw.db.engine import DatabaseError, get_engine, session_scope
    from trouw.settings import SettingsError, load_settings

    try:
        settings = load_settings()
        engine = get_engine(settings.effective_database_url)
        with session_scope(engine) as session:
            key = create_api_key(session, name=name, scopes=scopes)
    except (SettingsError, DatabaseError, UnknownScopeError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(key)
    typer.echo(
        f"Key {name!r} ({', '.join(dict.fromkeys(scopes))}) created. Keep it safe: it is not "
        "shown again. Send it as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'.",
        err=True,
    )

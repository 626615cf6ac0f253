"""`trouw apikey create`: make an API key and print it once (registered by trouw.cli)."""

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
    from trouw.db.engine import session_scope
    from trouw.terminal import engine_or_fail, fail, settings_or_fail, verbatim, write_out

    engine = engine_or_fail(settings_or_fail())
    try:
        with session_scope(engine) as session:
            key = create_api_key(session, name=name, scopes=scopes)
    except (UnknownScopeError, ValueError) as exc:
        fail(str(exc))
    write_out(key + "\n")
    verbatim(
        f"Key {name!r} ({', '.join(dict.fromkeys(scopes))}) created. Keep it safe: it is not "
        "shown again. Send it as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'."
    )

"""`trouw apikey create`: make an API key and print it once (registered by trouw.commands.cli)."""

from __future__ import annotations

import typer

from trouw.ways_in.api.auth import SCOPES, UnknownScopeError, create_api_key


def apikey_create(
    name: str = typer.Argument(..., help="Who or what uses the key, e.g. 'pos-gent'."),
    scopes: list[str] = typer.Option(
        ["ingest"], "--scope", help=f"Repeat for several: {', '.join(SCOPES)}."
    ),
) -> None:
    """Create an API key; it is printed once and stored only as a hash."""
    from trouw.commands.terminal import engine_or_fail, fail, settings_or_fail, verbatim, write_out
    from trouw.domain.db.engine import session_scope

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


def apikey_list(
    as_json: bool = typer.Option(False, "--json", help="Print one JSON array."),
) -> None:
    """Every key: id, name, scopes, when made and when revoked (never the key or its hash)."""
    import json

    from sqlmodel import col, select

    from trouw.commands.terminal import (
        console,
        engine_or_fail,
        settings_or_fail,
        verbatim,
        write_out,
    )
    from trouw.domain.db.engine import session_scope
    from trouw.domain.db.models import ApiKey

    engine = engine_or_fail(settings_or_fail())
    with session_scope(engine) as session:
        rows = session.exec(select(ApiKey).order_by(col(ApiKey.id))).all()
    keys = [
        {
            "id": row.id,
            "name": row.name,
            "scopes": list(row.scopes or ()),
            "created_at": row.created_at.isoformat(timespec="seconds"),
            "revoked_at": row.revoked_at.isoformat(timespec="seconds") if row.revoked_at else None,
        }
        for row in rows
    ]
    if as_json:
        write_out(json.dumps(keys, indent=2) + "\n")
        return
    if not keys:
        verbatim("no API keys; make one with `trouw apikey create NAME`", to=console)
    for row in rows:
        state = f"revoked {row.revoked_at:%Y-%m-%d %H:%M}" if row.revoked_at else "active"
        verbatim(
            f"{row.id:>4}  {row.name}  {','.join(row.scopes or ())}  "
            f"created {row.created_at:%Y-%m-%d %H:%M}  {state}",
            to=console,
        )


def apikey_revoke(
    key_id: int | None = typer.Argument(None, help="The key's id (see `trouw apikey list`)."),
    name: str | None = typer.Option(None, "--name", help="Revoke every active key of this name."),
) -> None:
    """Revoke a key at once, by id or by name; revoked keys stay listed for the record."""
    from trouw.commands.terminal import console, engine_or_fail, fail, settings_or_fail, verbatim
    from trouw.domain.db.engine import session_scope
    from trouw.ways_in.api.auth import revoke_keys

    if (key_id is None) == (name is None):
        fail("give a key id or --name, not both", code=2)
    engine = engine_or_fail(settings_or_fail())
    with session_scope(engine) as session:
        count = revoke_keys(session, name=name, key_id=key_id)
    which = f"id {key_id}" if key_id is not None else f"name {name!r}"
    if not count:
        fail(f"no active key with {which}")
    verbatim(f"{count} key(s) with {which} revoked", to=console)

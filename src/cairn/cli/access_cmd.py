"""users, groups, keys and acl commands: who may read what."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cairn.cli.app import app, print_json, want_json_errors
from cairn.cli.commands import JsonOpt, err, out
from cairn.cli.context import open_cairn
from cairn.index.access import readers, split_names

users_app = typer.Typer(help="Users and their groups (stored in the database).", no_args_is_help=True)
groups_app = typer.Typer(help="Groups: document readers are named by group.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys for the server (hashed at rest; shown once).", no_args_is_help=True)
acl_app = typer.Typer(help="Change who may read an indexed document.", no_args_is_help=True)
app.add_typer(users_app, name="users")
app.add_typer(groups_app, name="groups")
app.add_typer(keys_app, name="keys")
app.add_typer(acl_app, name="acl")

GroupsOpt = Annotated[list[str] | None, typer.Option("--groups", help="Comma-separated group names (repeatable).")]


@users_app.command("add")
def users_add(
    name: Annotated[str, typer.Argument(help="User name (as the server's auth will report it).")],
    groups: GroupsOpt = None,
    admin: Annotated[bool, typer.Option("--admin", help="May read every document and the audit trail.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Create a user, optionally in some groups (groups are created as needed)."""
    want_json_errors(json_out)
    user = open_cairn().principals.add_user(name, split_names(groups), admin=admin)
    if json_out:
        print_json(user.to_json())
    else:
        out.print(f"added {user.name} ({', '.join(user.groups) or 'no groups'}{', admin' if admin else ''})")


@users_app.command("list")
def users_list(json_out: JsonOpt = False) -> None:
    """Users with their groups."""
    users = open_cairn().principals.list_users()
    if json_out:
        print_json({"users": [u.to_json() for u in users]})
        return
    table = Table("name", "groups", "admin", "disabled")
    for u in users:
        table.add_row(u.name, ", ".join(u.groups), "yes" if u.is_admin else "", "yes" if u.disabled else "")
    out.print(table)


@users_app.command("set")
def users_set(
    name: Annotated[str, typer.Argument(help="User name.")],
    groups: Annotated[
        list[str] | None, typer.Option("--groups", help="Replace the user's groups with these (a,b; '' for none).")
    ] = None,
    admin: Annotated[bool | None, typer.Option("--admin/--no-admin", help="Grant or revoke admin.")] = None,
    disabled: Annotated[
        bool | None, typer.Option("--disable/--enable", help="A disabled user is refused everywhere.")
    ] = None,
) -> None:
    """Change a user's groups, admin flag or status; applies to their next request."""
    user = open_cairn().principals.update_user(
        name, groups=None if groups is None else split_names(groups), admin=admin, disabled=disabled
    )
    out.print(f"{user.name}: groups {', '.join(user.groups) or '-'}; admin {user.is_admin}; disabled {user.disabled}")


@users_app.command("remove")
def users_remove(name: Annotated[str, typer.Argument(help="User name.")]) -> None:
    """Delete a user with their memberships, keys and chat sessions."""
    open_cairn().principals.remove_user(name)
    out.print(f"removed {name}")


@groups_app.command("list")
def groups_list(json_out: JsonOpt = False) -> None:
    """Groups with their members."""
    groups = open_cairn().principals.list_groups()
    if json_out:
        print_json({"groups": groups})
        return
    table = Table("name", "members", "description")
    for g in groups:
        table.add_row(g["name"], ", ".join(g["members"]), g["description"])
    out.print(table)


@groups_app.command("add")
def groups_add(
    name: Annotated[str, typer.Argument(help="Group name.")],
    description: Annotated[str, typer.Option(help="What the group is for.")] = "",
) -> None:
    """Create a group (documents name their readers by group)."""
    open_cairn().principals.add_group(name, description)
    out.print(f"added group {name}")


@groups_app.command("add-member")
def groups_add_member(
    group: Annotated[str, typer.Argument(help="Group name.")],
    user: Annotated[str, typer.Argument(help="User name.")],
) -> None:
    """Put a user in a group."""
    open_cairn().principals.add_member(group, user)
    out.print(f"{user} is now in {group}")


@groups_app.command("remove-member")
def groups_remove_member(
    group: Annotated[str, typer.Argument(help="Group name.")],
    user: Annotated[str, typer.Argument(help="User name.")],
) -> None:
    """Take a user out of a group: their next request no longer sees the group's documents."""
    open_cairn().principals.remove_member(group, user)
    out.print(f"{user} is no longer in {group}")


@groups_app.command("delete")
def groups_delete(name: Annotated[str, typer.Argument(help="Group name.")]) -> None:
    """Delete a group; documents readable only through it become admin-only."""
    open_cairn().principals.delete_group(name)
    out.print(f"deleted group {name}")


@keys_app.command("create")
def keys_create(
    user: Annotated[str, typer.Option("--user", help="The user the key acts for.")],
    name: Annotated[str, typer.Option(help="A label, e.g. the client that will use it.")] = "",
    json_out: JsonOpt = False,
) -> None:
    """Create an API key; it is printed once and only its digest is stored."""
    want_json_errors(json_out)
    key = open_cairn().principals.create_key(user, name)
    if json_out:
        print_json({"key": key, "user": user, "prefix": key.split("_")[1]})
    else:
        out.print(key)
        err.print("Store it now: it cannot be shown again.")


@keys_app.command("list")
def keys_list(
    user: Annotated[str | None, typer.Option("--user", help="Only this user's keys.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Keys by prefix (never the secret), with their owner and last use."""
    keys = open_cairn().principals.list_keys(user)
    if json_out:
        print_json({"keys": [k.to_json() for k in keys]})
        return
    table = Table("prefix", "user", "name", "created", "last used", "revoked")
    for k in keys:
        last = k.last_used_at.isoformat(timespec="seconds") if k.last_used_at else ""
        created = k.created_at.isoformat(timespec="seconds")
        table.add_row(k.prefix, k.user, k.name, created, last, "yes" if k.revoked else "")
    out.print(table)


@keys_app.command("revoke")
def keys_revoke(prefix: Annotated[str, typer.Argument(help="The key's prefix (see `cairn keys list`).")]) -> None:
    """Revoke a key: requests with it are refused from now on."""
    open_cairn().principals.revoke_key(prefix)
    out.print(f"revoked {prefix}")


@acl_app.command("set")
def acl_set(
    source: Annotated[str, typer.Argument(help="The document's source path as stored (see `cairn kb docs`).")],
    kb: Annotated[str, typer.Option("--kb", help="Knowledge base.")] = "default",
    groups: GroupsOpt = None,
    users: Annotated[list[str] | None, typer.Option("--users", help="Comma-separated user names.")] = None,
) -> None:
    """Replace a document's readers (no re-indexing; applies to the next request).

    A later `cairn ingest` applies the .cairn-acl / --groups of that run again.
    """
    acl = readers(split_names(groups), split_names(users))
    stored = str(Path(source).resolve()) if Path(source).exists() else source
    open_cairn().store.set_readers(kb, stored, acl)
    out.print(f"{source}: readers {', '.join(acl) or 'admins only'}")

"""What migrations that encrypt or decrypt stored values share: reading a table in batches by id and
writing back converted values, with the key ring the application bound to the migration's engine."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

BATCH = 500


def ring() -> Any:
    from storage import crypto

    return crypto.keyring_of(op.get_bind().dialect)


def postgres() -> bool:
    return bool(op.get_bind().dialect.name == "postgresql")


def batches(table: sa.TableClause, *columns: str) -> Iterator[list[sa.Row[Any]]]:
    """Every row by ascending id, in batches; the caller may update the rows it was given."""
    connection = op.get_bind()
    last = 0
    while True:
        rows = list(connection.execute(
            sa.select(table.c.id, *[table.c[name] for name in columns])
            .where(table.c.id > last).order_by(table.c.id).limit(BATCH)))
        if not rows:
            return
        yield rows
        last = rows[-1].id


def rewrite(table_name: str, columns: Sequence[str], convert: Callable[[sa.Row[Any]], dict[str, Any]],
             new_columns: Sequence[str] = ()) -> None:
    """Read `columns` of every row and write back what `convert` returns for it."""
    table = sa.table(table_name, sa.column("id", sa.Integer),
                     *[sa.column(name, sa.Text) for name in {*columns, *new_columns}])
    for rows in batches(table, *columns):
        changes = [{"row_id": row.id, **{f"new_{name}": value for name, value in convert(row).items()}}
                   for row in rows]
        written = [key.removeprefix("new_") for key in changes[0] if key != "row_id"]
        statement = (sa.update(table).where(table.c.id == sa.bindparam("row_id"))
                     .values({name: sa.bindparam(f"new_{name}") for name in written}))
        op.get_bind().execute(statement, changes)


def encrypt(value: str | None, purpose: str, *, deterministic: bool = False) -> str | None:
    if value is None:
        return None
    return str(ring().encrypt(value, purpose=purpose, deterministic=deterministic))


def decrypt(value: str | None, purpose: str) -> str | None:
    from storage.crypto import key_id_of_value

    if value is None or key_id_of_value(value) is None:
        return value
    return str(ring().decrypt(value, purpose=purpose))


def widen(table: str, column: str, old: sa.types.TypeEngine[Any], nullable: bool, using: str | None = None) -> None:
    if postgres():
        extra: dict[str, Any] = {"postgresql_using": using} if using else {}
        op.alter_column(table, column, existing_type=old, type_=sa.Text(), existing_nullable=nullable, **extra)


def narrow(table: str, column: str, new: sa.types.TypeEngine[Any], nullable: bool, using: str | None = None) -> None:
    if postgres():
        extra: dict[str, Any] = {"postgresql_using": using} if using else {}
        op.alter_column(table, column, existing_type=sa.Text(), type_=new, existing_nullable=nullable, **extra)

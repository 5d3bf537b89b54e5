"""Tables of user text (file names, reasons, comments, channel names) as Dagster table metadata.

The UI shows a MetadataValue.table cell as plain text, so a name that reads like markdown or HTML
(a link, an image, a tag) stays the characters the user typed; a markdown table would render it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from dagster import MetadataValue, TableColumn, TableRecord, TableSchema

_TYPES = ((bool, "bool"), (int, "int"), (float, "float"))


def _column_type(values: list) -> str:
    kinds = {type(v) for v in values if v is not None}
    for python_type, name in _TYPES:
        if kinds == {python_type}:
            return name
    return "float" if kinds == {int, float} else "string"


def _cell(value, kind: str):
    if value is None:
        return None
    if kind == "string":
        return str(value)
    return float(value) if kind == "float" else value


def metadata_table(rows: Sequence[Mapping], columns: Sequence[str]):
    """`rows` (dicts) as a MetadataValue.table of `columns`; a column whose values are not all one number or bool type is text."""
    kinds = {column: _column_type([row.get(column) for row in rows]) for column in columns}
    records = [TableRecord({column: _cell(row.get(column), kinds[column]) for column in columns}) for row in rows]
    schema = TableSchema(columns=[TableColumn(column, kinds[column]) for column in columns])
    return MetadataValue.table(records=records, schema=schema)

"""Small YAML settings files (branch.yaml, a slide's or stack's `<name>.yaml`), read so that nothing in one can hang a run.

PyYAML's safe loader accepts things no settings file needs, and each hurts:
- an alias (`*a`) of an anchor (`&a`): nine nested aliases stand for 9⁹ values ("billion
  laughs"), loaded instantly as shared references, and whatever walks the result (a message's
  repr, a copy) then runs until killed;
- a key written twice: the later one silently wins (`mpp: 0.5` ... `mpp: 7`);
- a list or mapping where one value belongs, or nesting deeper than any setting.
Each is refused in one line naming the file and the line. The file itself must be a regular
file with one name, at most 64 KiB: opened without following a link and without blocking (a
FIFO would wait for a writer forever), and its bytes are counted before any parsing.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import yaml

from wsi_assets.core.confinement import HardLinkedUpload, refuse_hard_links
from wsi_assets.core.quoting import short_repr

MAX_SETTINGS_BYTES = 64 * 1024  # a settings file is a few lines; a big one is a mistake
# The file's mapping (1) and a value's list or mapping (2): `exports: [csv, coco]`,
# `lymphocyte_rule: {max_area_um2: 20}`. No setting nests deeper.
MAX_DEPTH = 2
_MERGE_TAG = "tag:yaml.org,2002:merge"
_KINDS = {yaml.SequenceNode: "a list", yaml.MappingNode: "a mapping"}


class SettingsFileError(ValueError):
    """A settings file that cannot be used; the one line names the file (and the line where it can)."""


class _Refused(Exception):
    def __init__(self, mark, problem: str):
        super().__init__(problem)
        self.line = mark.line + 1 if mark is not None else None


class _SettingsLoader(yaml.SafeLoader):
    """SafeLoader without aliases, anchors, merge keys, repeated keys or deep nesting."""

    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise _Refused(event.start_mark, "uses a YAML anchor or alias (&name, *name): write each value out in full")
        if not isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
            return super().compose_node(parent, index)
        # Checked before composing: PyYAML composes nested collections by recursion.
        if self._depth >= MAX_DEPTH:
            raise _Refused(
                event.start_mark, "nests lists or mappings deeper than any setting: write 'key: value' or 'key: [a, b]'"
            )
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node, deep=False):
        first_line = {}
        for key_node, _ in node.value:
            if key_node.tag == _MERGE_TAG:
                raise _Refused(key_node.start_mark, "uses a YAML merge key (<<): write each key out in full")
            if not isinstance(key_node, yaml.ScalarNode):
                raise _Refused(key_node.start_mark, f"has {_KINDS[type(key_node)]} as a key: a key is a plain name")
            key = self.construct_object(key_node)
            if key in first_line:
                raise _Refused(
                    key_node.start_mark, f"key {short_repr(key)} is given twice (first on line {first_line[key]}): keep one"
                )
            first_line[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep)

    def construct_object(self, node, deep=False):
        try:
            return super().construct_object(node, deep)
        except (ValueError, OverflowError) as error:  # e.g. an integer of more than 4300 digits, a 13th month
            reason = (str(error).splitlines() or [type(error).__name__])[0]
            raise _Refused(
                node.start_mark, f"has a value that cannot be read ({reason[:60]}{'...' if len(reason) > 60 else ''})"
            ) from None


def _single_values_refused(root: yaml.Node, single_values) -> None:
    for key_node, value_node in root.value:
        if (
            isinstance(key_node, yaml.ScalarNode)
            and key_node.value in single_values
            and not isinstance(value_node, yaml.ScalarNode)
        ):
            raise _Refused(
                value_node.start_mark,
                f"{key_node.value} takes one value, not {_KINDS[type(value_node)]}: write one value after '{key_node.value}:'",
            )


def parse_settings_text(text: str, shown: str, single_values=()) -> dict:
    """The mapping a settings file's text holds; SettingsFileError (one line) for anything else.

    `single_values`: keys whose value must be one scalar (not a list or mapping).
    """
    loader = _SettingsLoader(text)
    try:
        root = loader.get_single_node()
        if root is None or (isinstance(root, yaml.ScalarNode) and loader.construct_document(root) is None):
            return {}
        if not isinstance(root, yaml.MappingNode):
            kind = _KINDS.get(type(root), "a single value")
            raise SettingsFileError(f"{shown} must hold 'key: value' lines (e.g. 'mpp: 0.5'), not {kind}")
        _single_values_refused(root, single_values)
        return loader.construct_document(root)
    except _Refused as refused:
        where = f", line {refused.line}" if refused.line is not None else ""
        raise SettingsFileError(f"{shown}{where}: {refused}") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = f" (line {mark.line + 1})" if mark is not None else ""
        raise SettingsFileError(f"{shown} is not valid YAML{line}: write 'key: value' lines, e.g. 'mpp: 0.5'") from None
    finally:
        loader.dispose()


def _read_at_most(fd: int, size: int) -> bytes:
    chunks, left = [], size
    while left > 0:
        chunk = os.read(fd, left)
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def read_settings_bytes(path: Path, shown: str) -> bytes:
    """The bytes of a settings file that is a regular file with one name and at most MAX_SETTINGS_BYTES."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as error:
        if Path(path).is_symlink():
            raise SettingsFileError(
                f"{shown} is a link: settings files must be real files in the upload folder; copy it in"
            ) from None
        raise SettingsFileError(f"{shown} cannot be read ({error.strerror or error}): fix its permissions") from None
    try:
        facts = os.fstat(fd)
        if not stat.S_ISREG(facts.st_mode):
            raise SettingsFileError(f"{shown} is not a regular file: a settings file holds a few 'key: value' lines")
        try:
            refuse_hard_links(facts.st_nlink, shown)
        except HardLinkedUpload as error:
            raise SettingsFileError(str(error)) from None
        raw = _read_at_most(fd, MAX_SETTINGS_BYTES + 1)
    except OSError as error:
        raise SettingsFileError(f"{shown} cannot be read ({error.strerror or error}): fix its permissions") from None
    finally:
        os.close(fd)
    if len(raw) > MAX_SETTINGS_BYTES:
        raise SettingsFileError(
            f"{shown} is larger than {MAX_SETTINGS_BYTES // 1024} KB: a settings file holds a few 'key: value' lines"
        )
    return raw


def read_settings_text(path: Path, shown: str) -> str:
    """The UTF-8 text of the settings file at `path` (named `shown` in messages)."""
    try:
        return read_settings_bytes(path, shown).decode("utf-8")
    except UnicodeDecodeError:
        raise SettingsFileError(f"{shown} is not UTF-8 text: save it as UTF-8 'key: value' lines, e.g. 'mpp: 0.5'") from None


def read_settings(path: Path, shown: str, single_values=()) -> dict:
    """The mapping in the settings file at `path` (named `shown` in messages); SettingsFileError (one line) for anything else."""
    return parse_settings_text(read_settings_text(path, shown), shown, single_values)

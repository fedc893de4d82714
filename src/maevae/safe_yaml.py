"""YAML as untrusted input: the one reader of config files and ``--set`` values.

A config file may come from anywhere, so reading one is bounded in every direction:

* regular files only: a FIFO, device or folder is refused before anything is read
  (``stat`` first, then ``open(O_NONBLOCK)`` + ``fstat``, so a swap in between cannot block);
* at most :data:`MAX_BYTES` bytes, which must be UTF-8 (the message gives the byte offset);
* at most :data:`MAX_DEPTH` levels of nesting (deeper documents would exhaust the stack) and
  :data:`MAX_NODES` values in all (PyYAML parses ~60 us a value: 1 MiB of ``[0, 0, ...`` would
  take 20 s);
* no anchors or aliases (``&a`` / ``*a``): they are how a 500-byte "billion laughs" file
  expands to gigabytes, and no maevae config needs them;
* duplicate keys are an error (with the line), not "the last one wins";
* mapping keys must be strings.

Every problem is a one-line :class:`~maevae.errors.ConfigError`; no message ever contains the
``repr`` of a whole value.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import yaml

from maevae.errors import ConfigError

__all__ = ["MAX_BYTES", "MAX_DEPTH", "MAX_NODES", "decode_utf8", "loads", "read_bytes_limited"]

MAX_BYTES = 1 << 20  # 1 MiB: the largest preset is under 1 KiB
MAX_DEPTH = 32  # a maevae config nests 3 levels
MAX_NODES = 10_000  # a preset has < 100; parsing costs ~60 us a node, so this bounds the time


def _line(node_or_mark) -> str:
    mark = getattr(node_or_mark, "start_mark", node_or_mark)
    line = getattr(mark, "line", None)
    return f" at line {line + 1}" if line is not None else ""


def _short_key(key: Any) -> str:
    text = repr(key) if isinstance(key, (int, float, bool)) or key is None else type(key).__name__
    return text if len(text) <= 40 else text[:37] + "..."


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses aliases, deep nesting, duplicate and non-string keys."""

    def __init__(self, stream, where: str):
        super().__init__(stream)
        self._where = where
        self._depth = 0
        self._nodes = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise ConfigError(f"{self._where}: YAML aliases (*{event.anchor}){_line(event)} "
                              "are not supported in maevae configs; write the value out")
        event = self.peek_event()
        if getattr(event, "anchor", None) is not None:
            raise ConfigError(f"{self._where}: YAML anchors (&{event.anchor}){_line(event)} "
                              "are not supported in maevae configs; write the value out")
        self._depth += 1
        self._nodes += 1
        if self._nodes > MAX_NODES:
            raise ConfigError(f"{self._where}: more than {MAX_NODES} values{_line(event)}; a "
                              "maevae config has a few dozen")
        if self._depth > MAX_DEPTH:
            raise ConfigError(f"{self._where}: nested more than {MAX_DEPTH} levels deep"
                              f"{_line(event)}; a maevae config nests 3")
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                if not isinstance(key, str):
                    raise ConfigError(f"{self._where}: mapping key {_short_key(key)}"
                                      f"{_line(key_node)} is not a string; config keys are "
                                      "names such as lr")
                if key in seen:
                    raise ConfigError(f"{self._where}: duplicate key {key[:60]!r}"
                                      f"{_line(key_node)} (first at line {seen[key] + 1}); "
                                      "keep one")
                seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def loads(text: str, where: str) -> Any:
    """Parse one YAML document under the limits above; ``where`` names it in errors.

    Syntax errors are raised as :class:`yaml.YAMLError` (callers word them); the limits
    as :class:`ConfigError`."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        raise ConfigError(f"{where} is larger than {MAX_BYTES >> 20} MiB; a config is a few "
                          "hundred bytes")
    loader = _Loader(text, where)
    try:
        return loader.get_single_data()
    except RecursionError:  # pragma: no cover - the depth limit comes first
        raise ConfigError(f"{where}: nested too deeply") from None
    finally:
        loader.dispose()


def read_bytes_limited(path: Path, what: str = "config") -> bytes:
    """The bytes of a regular file of at most :data:`MAX_BYTES`, never blocking on a FIFO."""
    try:
        st = os.stat(path)
    except OSError as e:
        raise ConfigError(f"cannot read {what} {path}: {e.strerror}") from None
    kind = _kind(st.st_mode)
    if kind:
        raise ConfigError(f"cannot read {what} {path}: it is {kind}, not a regular file")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as e:
        raise ConfigError(f"cannot read {what} {path}: {e.strerror}") from None
    try:
        kind = _kind(os.fstat(fd).st_mode)  # replaced between stat and open
        if kind:
            raise ConfigError(f"cannot read {what} {path}: it is {kind}, not a regular file")
        chunks, size = [], 0
        while size <= MAX_BYTES:
            chunk = os.read(fd, MAX_BYTES + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as e:
        raise ConfigError(f"cannot read {what} {path}: {e.strerror}") from None
    finally:
        os.close(fd)
    if size > MAX_BYTES:
        raise ConfigError(f"{what} {path} is larger than {MAX_BYTES >> 20} MiB; a config is a "
                          "few hundred bytes")
    return b"".join(chunks)


def _kind(mode: int) -> str:
    if stat.S_ISREG(mode):
        return ""
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a plain file"


def decode_utf8(data: bytes, where: str) -> str:
    """``data`` as UTF-8 text, or one :class:`~maevae.errors.ConfigError` line naming
    ``where`` and the first bad byte."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{where} is not UTF-8 text (byte 0x{data[e.start]:02x} at offset "
                          f"{e.start}); save it as UTF-8") from None

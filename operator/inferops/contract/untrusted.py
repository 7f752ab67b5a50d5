"""One reader for JSON and YAML that nobody we trust wrote: bounded in size, nesting depth,
number length and (YAML) expanded size, and failing with one `UntrustedInputError` whose
message is a single line (never a RecursionError, never Python's int-digit ValueError,
never a traceback from yaml's internals).

Why each bound:
- depth: `json.loads` and PyYAML's composer recurse once per nesting level, so a few KB of
  `[[[[...` blow Python's stack (RecursionError). JSON is pre-scanned without recursion
  (brackets outside strings, counted by C-level iterators); YAML is composed by a loader
  that counts open collections and stops at the bound before recursing further.
- number length: `int()` of more than 4300 digits raises ValueError (Python's guard
  against quadratic conversion), YAML 1.1's `0x...` and `1:2:3...` integers build huge
  numbers that no one can print later, and a long float literal becomes `inf`.
- YAML aliases: `&a [*a]` is a list that contains itself (any later walk recurses without
  end) and "billion laughs" documents expand a few KB into 10^9 nodes; an alias counts as
  the whole node it names, so both the depth and the node bounds see the expansion.
- unpaired surrogates (`"\\ud800"`): Python keeps them in a str that cannot be encoded, so
  the first write of the value (a file name, a log line) would fail far from the input;
  they are not Unicode text, and I-JSON (RFC 7493) refuses them too.
- size: checked first, so the others work on bounded text.

It imports only the standard library and yaml, so both planes (the CLI, the worker, the
model server) can use it.
"""

from __future__ import annotations

import json
import math
import operator
import re
from collections.abc import Callable
from itertools import accumulate, count
from typing import Any, Final

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

MAX_BYTES: Final = 16 * 1024 * 1024
# Kubernetes manifests nest about 15 levels; model requests (tensors as nested lists) a few.
MAX_DEPTH: Final = 100
# A float64 holds about 17 significant digits and an int64 19; 256 leaves room for
# exact decimal expansions while keeping every integer within float's range.
MAX_NUMBER_DIGITS: Final = 256
# Nodes of a YAML stream after expanding aliases (a 16 MB file has at most ~8M plain nodes).
MAX_YAML_NODES: Final = 1_000_000

_INT_TAG: Final = "tag:yaml.org,2002:int"
_FLOAT_TAG: Final = "tag:yaml.org,2002:float"
# A JSON string literal (escapes included), and anything that is not a bracket.
_JSON_STRING: Final = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET: Final = re.compile(r"[^\[\]{}]+")
# Openers step +1 and closers -1: encoded as 2 and 0 so a running sum stays unsigned.
_STEPS: Final = str.maketrans({"[": "\x02", "{": "\x02", "]": "\x00", "}": "\x00"})
# Only text with an escaped surrogate can yield one (raw ones are not valid UTF-8).
_ESCAPED_SURROGATE: Final = re.compile(r"\\u[dD][89a-fA-F]")


class UntrustedInputError(ValueError):
    """Input refused by the untrusted readers; `str()` is a one-line reason, with the line
    number first when one is known (`line 3: ...`)."""

    def __init__(self, problem: str, line: int | None = None) -> None:
        self.problem = " ".join(problem.split())  # one line, whatever the parser said
        self.line = line
        super().__init__(self.problem if line is None else f"line {line}: {self.problem}")


def _check_size(data: bytes | str, max_bytes: int) -> None:
    size = len(data)
    # A character is 1 to 4 bytes: count exactly only when the cheap bounds disagree.
    if isinstance(data, str) and size <= max_bytes < size * 4:
        size = len(data.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise UntrustedInputError(f"larger than {max_bytes} bytes")


def json_depth(text: str) -> int:
    """How deep the brackets of JSON text nest, outside strings, without recursion."""
    brackets = _NOT_BRACKET.sub("", _JSON_STRING.sub("", text))
    if not brackets:
        return 0
    steps = brackets.translate(_STEPS).encode("latin-1", "replace")
    # After the i-th bracket (from 1) the running sum is 2*openers, so depth = sum - i.
    deepest: int = max(map(operator.sub, accumulate(steps), count(1)), default=0)
    return deepest if deepest > 0 else 0


def _number_hooks(max_digits: int) -> tuple[Callable[[str], int], Callable[[str], float]]:
    def parse_int(token: str) -> int:
        if len(token) > max_digits:
            raise UntrustedInputError(f"a number has more than {max_digits} digits")
        return int(token)

    def parse_float(token: str) -> float:
        if len(token) > max_digits:
            raise UntrustedInputError(f"a number has more than {max_digits} digits")
        value = float(token)
        if not math.isfinite(value):
            raise UntrustedInputError(f"number {token[:40]} is out of range")
        return value

    return parse_int, parse_float


def _check_text(value: str) -> None:
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            bad = ord(value[exc.start])
            raise UntrustedInputError(
                f"a string holds an unpaired surrogate \\u{bad:04x}"
            ) from None


def _check_strings(value: Any) -> None:
    """Refuses unpaired surrogates in every key and string of a parsed value (no recursion)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            _check_text(item)
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _refuse_constant(name: str) -> Any:
    raise UntrustedInputError(f"{name} is not JSON")


def load_json(
    data: bytes | str,
    *,
    max_bytes: int = MAX_BYTES,
    max_depth: int = MAX_DEPTH,
    max_number_digits: int = MAX_NUMBER_DIGITS,
) -> Any:
    """The value of JSON text (bytes are read as UTF-8); UntrustedInputError otherwise.

    NaN, Infinity and numbers beyond float's range are refused: they are not JSON
    (RFC 8259) and no model can score them.
    """
    _check_size(data, max_bytes)
    if isinstance(data, bytes | bytearray):
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise UntrustedInputError(f"not UTF-8 text (byte {exc.start})") from None
    else:
        text = data
    if json_depth(text) > max_depth:
        raise UntrustedInputError(f"nested deeper than {max_depth} levels")
    parse_int, parse_float = _number_hooks(max_number_digits)
    try:
        value = json.loads(
            text, parse_int=parse_int, parse_float=parse_float, parse_constant=_refuse_constant
        )
    except json.JSONDecodeError as exc:
        raise UntrustedInputError(str(exc)) from None
    except RecursionError:  # the pre-scan makes this unreachable; kept as a last guard
        raise UntrustedInputError(f"nested deeper than {max_depth} levels") from None
    if _ESCAPED_SURROGATE.search(text):
        _check_strings(value)
    return value


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader with the bounds of the module doc checked while composing,
    before any recursion goes deeper than `max_depth` or any value is constructed."""

    def __init__(self, text: str, max_depth: int, max_digits: int, max_nodes: int) -> None:
        super().__init__(text)
        self._max_depth = max_depth
        self._max_digits = max_digits
        self._max_nodes = max_nodes
        self._open = 0  # collections being composed around the current node
        self._nodes = 0  # nodes composed so far in the stream, aliases expanded
        # Per document: (height, expanded size) of each composed node, for its aliases.
        self._shape: dict[int, tuple[int, int]] = {}

    def _line(self) -> int:
        event: yaml.Event = self.peek_event()  # type: ignore[no-untyped-call]
        return int(event.start_mark.line) + 1 if event.start_mark is not None else 0

    def compose_document(self) -> Node | None:
        self._shape = {}
        try:
            return super().compose_document()
        finally:
            self._shape = {}

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        line = self._line()
        if self.check_event(yaml.AliasEvent):
            alias = super().compose_node(parent, index)
            shape = self._shape.get(id(alias))
            if shape is None:  # its node is still open: the alias is inside what it names
                raise UntrustedInputError("an alias refers to a node that contains it", line)
            self._count(self._open + shape[0], shape[1], line)
            return alias
        collection = self.check_event(yaml.SequenceStartEvent, yaml.MappingStartEvent)
        self._open += collection
        try:
            if self._open > self._max_depth:
                raise UntrustedInputError(f"nested deeper than {self._max_depth} levels", line)
            node = super().compose_node(parent, index)
        finally:
            self._open -= collection
        if node is not None:
            self._measure(node, line)
        return node

    def _measure(self, node: Node, line: int) -> None:
        if isinstance(node, ScalarNode):
            if node.tag in (_INT_TAG, _FLOAT_TAG) and len(node.value) > self._max_digits:
                raise UntrustedInputError(f"a number has more than {self._max_digits} digits", line)
            try:
                _check_text(node.value)
            except UntrustedInputError as exc:
                raise UntrustedInputError(exc.problem, line) from None
            self._shape[id(node)] = (0, 1)
            self._count(0, 1, line)
            return
        children: list[Node] = []
        if isinstance(node, SequenceNode):
            children = list(node.value)
        elif isinstance(node, MappingNode):
            children = [part for pair in node.value for part in pair]
        shapes = [self._shape.get(id(child), (0, 1)) for child in children]
        height = 1 + max((h for h, _ in shapes), default=0)
        size = 1 + sum(s for _, s in shapes)
        self._shape[id(node)] = (height, size)
        self._count(0, 1, line)
        if size > self._max_nodes:
            raise UntrustedInputError(f"expands to more than {self._max_nodes} nodes", line)

    def _count(self, depth: int, nodes: int, line: int) -> None:
        if depth > self._max_depth:
            raise UntrustedInputError(f"nested deeper than {self._max_depth} levels", line)
        self._nodes += nodes
        if self._nodes > self._max_nodes:
            raise UntrustedInputError(f"expands to more than {self._max_nodes} nodes", line)

    def construct_object(self, node: Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except UntrustedInputError:
            raise
        # PyYAML's constructors let these out for values its resolver took for a type they
        # are not (`2001-02-30`), or for explicit tags on the wrong text (`!!int x`, and
        # `!!int ` empty: IndexError).
        except (ValueError, TypeError, LookupError, AttributeError, ArithmeticError) as exc:
            tag = str(node.tag).rsplit(":", 1)[-1]
            raise UntrustedInputError(
                f"{node.value!r:.60} is not a valid {tag}: {exc}"
                if isinstance(node, ScalarNode)
                else f"cannot build this {tag}: {exc}",
                int(node.start_mark.line) + 1,
            ) from None


def _yaml_error(exc: yaml.YAMLError, text: str) -> UntrustedInputError:
    if isinstance(exc, yaml.reader.ReaderError):  # a character YAML does not allow
        line = text.count("\n", 0, exc.position) + 1
        return UntrustedInputError(str(exc).splitlines()[0], line)
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or (str(exc).splitlines() or ["invalid YAML"])[0]
    context = getattr(exc, "context", None)
    if context and problem != context:
        problem = f"{problem} ({context})"
    return UntrustedInputError(problem, int(mark.line) + 1 if mark is not None else None)


def load_yaml_documents(
    text: str | bytes,
    *,
    max_bytes: int = MAX_BYTES,
    max_depth: int = MAX_DEPTH,
    max_number_digits: int = MAX_NUMBER_DIGITS,
    max_nodes: int = MAX_YAML_NODES,
) -> list[Any]:
    """Every document of a YAML stream (empty documents as None), read with PyYAML's safe
    schema under the bounds above; UntrustedInputError otherwise."""
    _check_size(text, max_bytes)
    if isinstance(text, bytes | bytearray):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise UntrustedInputError(f"not UTF-8 text (byte {exc.start})") from None
    try:
        # The reader checks the characters as the loader is made (ReaderError).
        loader = _BoundedLoader(text, max_depth, max_number_digits, max_nodes)
    except yaml.YAMLError as exc:
        raise _yaml_error(exc, text) from None
    try:
        documents = []
        while loader.check_data():  # type: ignore[no-untyped-call]
            documents.append(loader.get_data())
        return documents
    except yaml.YAMLError as exc:
        raise _yaml_error(exc, text) from None
    except RecursionError:  # the depth bound makes this unreachable; kept as a last guard
        raise UntrustedInputError(f"nested deeper than {max_depth} levels") from None
    finally:
        loader.dispose()


def load_yaml(text: str | bytes, **bounds: int) -> Any:
    """The single document of a YAML text (None when empty); more than one is refused."""
    documents = load_yaml_documents(text, **bounds)
    if len(documents) > 1:
        raise UntrustedInputError(f"expected one YAML document, found {len(documents)}")
    return documents[0] if documents else None

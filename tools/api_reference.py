"""Generate docs/api.md, the API reference, from the docstrings of ``securefl.__all__``.

    python tools/api_reference.py            # write docs/api.md
    python tools/api_reference.py --check    # exit 1, naming what differs, when docs/api.md is stale

For each public name, grouped by topic: its signature (annotations as written in
the source) and its docstring; for a class also its public methods and properties,
inherited ones from securefl classes included. Offline and standard library only.

The output is deterministic: topics in a fixed order, names in the order of
``securefl.__all__``, members sorted by name; a default value is shown by its
``repr`` only when that is stable (literals, enum members, names of functions,
classes and module constants; never a memory address or a hash-ordered set).
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import enum
import functools
import importlib
import inspect
import re
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "api.md"
PACKAGE = "securefl"

# Topics in page order; a public name belongs to the first topic one of whose
# module prefixes is the module ``securefl`` imports it from.
TOPICS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Protocols", ("securefl.protocols",)),
    ("Aggregation", ("securefl.aggregator",)),
    ("Federated learning", ("securefl.fl",)),
    ("Differential privacy", ("securefl.privacy",)),
    ("Encoding and simulation", ("securefl.encoding", "securefl.simulation")),
    ("Errors", ("securefl.errors",)),
)

_ADDRESS = re.compile(r"\bat 0x[0-9a-fA-F]+")
_SCALARS = (type(None), bool, int, float, complex, str, bytes)
WIDTH = 100  # the widest one-line signature; wider ones take one parameter a line


class _Text:
    """A rendered annotation or default: its repr is the text itself."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


# --- rendering values and signatures -------------------------------------------------


def render_annotation(annotation: Any) -> str:
    """An annotation as text: a string annotation as written, an object as ``inspect`` formats it."""
    if isinstance(annotation, str):
        return annotation
    return inspect.formatannotation(annotation)


def _module_constant(value: Any, module_name: str | None) -> str | None:
    """The public name a module binds to exactly this (non-scalar) object, if any (first in sorted order)."""
    module = sys.modules.get(module_name or "")
    if module is None or isinstance(value, _SCALARS):
        return None
    names = sorted(name for name, bound in vars(module).items() if bound is value and not name.startswith("_"))
    return names[0] if names else None


def render_value(value: Any, module_name: str | None = None) -> str:
    """A default value as stable text: repr for literals and containers of them, names for named objects."""
    if value is dataclasses.MISSING:
        return "<missing>"
    constant = _module_constant(value, module_name)
    if constant is not None and not isinstance(value, (types.FunctionType, type)):
        return constant
    if isinstance(value, enum.Enum):
        return f"{type(value).__qualname__}.{value.name}"
    if isinstance(value, _SCALARS):
        return repr(value)
    if isinstance(value, tuple) and not hasattr(value, "_fields"):
        items = [render_value(item, module_name) for item in value]
        return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"
    if isinstance(value, list):
        return "[" + ", ".join(render_value(item, module_name) for item in value) + "]"
    if isinstance(value, (set, frozenset)):  # sorted: a set's own order depends on the hash seed
        items = sorted(render_value(item, module_name) for item in value)
        body = "{" + ", ".join(items) + "}" if items else ""
        return body if isinstance(value, set) and items else f"{type(value).__name__}({body})"
    if isinstance(value, dict):
        pairs = (f"{render_value(k, module_name)}: {render_value(v, module_name)}" for k, v in value.items())
        return "{" + ", ".join(pairs) + "}"
    if isinstance(value, (types.FunctionType, types.BuiltinFunctionType, type)):
        return value.__qualname__
    text = repr(value)
    if _ADDRESS.search(text):
        return f"<{type(value).__qualname__} object>"
    return text


def _dataclass_factories(cls: type | None) -> dict[str, str]:
    """For a dataclass, the fields made by a ``default_factory``, as ``<factory: name>``."""
    if cls is None or not dataclasses.is_dataclass(cls):
        return {}
    factories = {}
    for field in dataclasses.fields(cls):
        if field.default_factory is not dataclasses.MISSING:
            name = getattr(field.default_factory, "__qualname__", type(field.default_factory).__qualname__)
            factories[field.name] = f"<factory: {name}>"
    return factories


def render_signature(
    signature: inspect.Signature,
    *,
    module_name: str | None,
    drop_first: bool = False,
    show_return: bool = True,
    dataclass: type | None = None,
    indent: int = 0,
) -> str:
    """``(a: int, /, b: str = 'x', *, c: float | None = None) -> R`` with annotations as written.

    One parameter a line when ``indent`` (the text before the parenthesis) plus the
    signature is wider than ``WIDTH``.
    """
    parameters = list(signature.parameters.values())
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    if drop_first and parameters and parameters[0].kind in positional:
        parameters = parameters[1:]  # self or cls
    factories = _dataclass_factories(dataclass)
    rendered = []
    for parameter in parameters:
        replacements: dict[str, Any] = {}
        if parameter.annotation is not parameter.empty:
            replacements["annotation"] = _Text(render_annotation(parameter.annotation))
        if parameter.default is not parameter.empty:
            text = factories.get(parameter.name) or render_value(parameter.default, module_name)
            replacements["default"] = _Text(text)
        rendered.append(parameter.replace(**replacements))
    parts = []
    for index, parameter in enumerate(rendered):
        previous = rendered[index - 1].kind if index else None
        if parameter.kind is parameter.KEYWORD_ONLY and (previous is None or previous < parameter.VAR_POSITIONAL):
            parts.append("*")  # the first keyword-only parameter, no *args before it
        parts.append(str(parameter))
        following = rendered[index + 1] if index + 1 < len(rendered) else None
        if parameter.kind is parameter.POSITIONAL_ONLY and (following is None or following.kind > parameter.kind):
            parts.append("/")
    returns = ""
    if show_return and signature.return_annotation is not inspect.Signature.empty:
        returns = " -> " + render_annotation(signature.return_annotation)
    one_line = "(" + ", ".join(parts) + ")" + returns
    if len(one_line) + indent <= WIDTH or not parts:
        return one_line
    return "(\n" + "".join(f"    {part},\n" for part in parts) + ")" + returns  # one parameter a line


# --- what to document ----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Member:
    """One public method or property of a documented class."""

    name: str
    kind: str  # "property" or "method"
    code: str
    doc: str
    owner: str  # qualified name of the class that defines it


def _own_doc(obj: Any) -> str:
    doc = getattr(obj, "__doc__", None)
    return inspect.cleandoc(doc) if isinstance(doc, str) and doc.strip() else ""


def class_doc(cls: type) -> str:
    """The class's own docstring: neither a base's nor the one ``dataclasses`` writes from the signature."""
    doc = cls.__dict__.get("__doc__")
    if not isinstance(doc, str) or not doc.strip():
        return ""
    if dataclasses.is_dataclass(cls):
        try:
            generated = cls.__name__ + str(inspect.signature(cls)).replace(" -> None", "")
        except (TypeError, ValueError):
            generated = None
        if doc == generated:
            return ""
    return inspect.cleandoc(doc)


def _package_classes(cls: type) -> Iterator[type]:
    """The classes of ``cls.__mro__`` that belong to the package, in lookup order."""
    for klass in cls.__mro__:
        if klass.__module__ == PACKAGE or klass.__module__.startswith(PACKAGE + "."):
            yield klass


def _member_doc(cls: type, name: str) -> str:
    """The first docstring of ``name`` along the package part of the MRO (an override may omit it)."""
    for klass in _package_classes(cls):
        if name in klass.__dict__:
            doc = _own_doc(klass.__dict__[name])
            if doc:
                return doc
    return ""


def _property_code(name: str, attribute: Any, module_name: str) -> str | None:
    if isinstance(attribute, property):
        getter, settable = attribute.fget, attribute.fset is not None
    elif isinstance(attribute, functools.cached_property):
        getter, settable = attribute.func, True
    else:
        return None
    annotation = ""
    try:
        returned = inspect.signature(getter).return_annotation if getter is not None else inspect.Signature.empty
    except (TypeError, ValueError):
        returned = inspect.Signature.empty
    if returned is not inspect.Signature.empty:
        annotation = ": " + render_annotation(returned)
    decorator = "@property" + ("  # settable" if settable else "")
    return f"{decorator}\n{name}{annotation}"


def _method_code(name: str, attribute: Any, module_name: str) -> str | None:
    decorators = []
    if isinstance(attribute, staticmethod):
        function, drop_first = attribute.__func__, False
        decorators.append("@staticmethod")
    elif isinstance(attribute, classmethod):
        function, drop_first = attribute.__func__, True
        decorators.append("@classmethod")
    elif inspect.isfunction(attribute):
        function, drop_first = attribute, True
    else:
        return None
    if getattr(function, "__isabstractmethod__", False):
        decorators.append("@abstractmethod")
    prefix = "async def" if inspect.iscoroutinefunction(function) else "def"
    head = f"{prefix} {name}"
    signature = render_signature(
        inspect.signature(function), module_name=module_name, drop_first=drop_first, indent=len(head)
    )
    return "\n".join([*decorators, f"{head}{signature}"])


def class_members(cls: type) -> list[Member]:
    """Public methods and properties of ``cls``, its package bases' included; the nearest definition wins."""
    members: dict[str, Member] = {}
    for klass in _package_classes(cls):
        for name, attribute in klass.__dict__.items():
            if name.startswith("_") or name in members:
                continue
            module_name = klass.__module__
            code = _property_code(name, attribute, module_name)
            kind = "property"
            if code is None:
                code, kind = _method_code(name, attribute, module_name), "method"
            if code is None:
                members[name] = Member(name, "attribute", "", "", "")  # a data attribute shadows nothing below
                continue
            members[name] = Member(name, kind, code, _member_doc(cls, name), f"{klass.__module__}.{klass.__qualname__}")
    return sorted((m for m in members.values() if m.kind != "attribute"), key=lambda m: (m.kind != "property", m.name))


def _has_own_constructor(cls: type) -> bool:
    return any("__init__" in klass.__dict__ or "__new__" in klass.__dict__ for klass in _package_classes(cls))


def _qualified(cls: type) -> str:
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


# --- the page --------------------------------------------------------------------------


def _anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation but ``-`` and ``_`` dropped, spaces to ``-``."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _code(text: str) -> list[str]:
    return ["```python", text, "```", ""]


def _doc(text: str) -> list[str]:
    return [text, ""] if text else ["*No docstring.*", ""]


def document(name: str, obj: Any, module_name: str) -> list[str]:
    """The section of one public name."""
    lines = [f"### `{name}`", ""]
    defined_in = getattr(obj, "__module__", module_name)
    if inspect.isclass(obj):
        bases = ", ".join(_qualified(base) for base in obj.__bases__)
        if _has_own_constructor(obj):
            signature = render_signature(
                inspect.signature(obj),
                module_name=obj.__module__,
                show_return=False,
                dataclass=obj,
                indent=len(f"class {name}"),
            )
            lines += _code(f"class {name}{signature}")
        else:
            lines += _code(f"class {name}({bases})")
        lines += [f"*Defined in* `{defined_in}`; *bases:* `{bases}`.", ""]
        lines += _doc(class_doc(obj))
        for member in class_members(obj):
            lines += [f"#### `{name}.{member.name}`", ""]
            lines += _code(member.code)
            owner = f"{obj.__module__}.{obj.__qualname__}"
            if member.owner != owner:
                lines += [f"*Inherited from* `{member.owner}`.", ""]
            lines += _doc(member.doc)
    elif callable(obj):
        signature = render_signature(inspect.signature(obj), module_name=defined_in, indent=len(f"def {name}"))
        lines += _code(f"def {name}{signature}")
        lines += [f"*Defined in* `{defined_in}`.", ""]
        lines += _doc(_own_doc(obj))
    else:
        lines += _code(f"{name} = {render_value(obj, module_name)}")
        lines += [f"*Defined in* `{module_name}`.", ""]
    return lines


def topic_of(module_name: str) -> str:
    for title, prefixes in TOPICS:
        if any(module_name == prefix or module_name.startswith(prefix + ".") for prefix in prefixes):
            return title
    raise SystemExit(f"api_reference: {module_name} fits no topic; add it to TOPICS in {Path(__file__).name}")


def public_names() -> list[tuple[str, Any, str]]:
    """``(name, object, module securefl takes it from)`` for each name of ``securefl.__all__``, in order."""
    package = importlib.import_module(PACKAGE)
    exports: dict[str, str] = getattr(package, "_EXPORTS", {})
    entries: list[tuple[str, Any, str]] = []
    for name in package.__all__:
        obj = getattr(package, name)
        module_name: str = exports.get(name) or getattr(obj, "__module__", None) or PACKAGE
        entries.append((name, obj, module_name))
    return entries


def generate() -> str:
    """The text of docs/api.md."""
    by_topic: dict[str, list[tuple[str, Any, str]]] = {title: [] for title, _ in TOPICS}
    for name, obj, module_name in public_names():
        by_topic[topic_of(module_name)].append((name, obj, module_name))
    lines = [
        "# API reference",
        "",
        "<!-- Generated from the docstrings by tools/api_reference.py; do not edit by hand."
        " Regenerate with `python tools/api_reference.py`. -->",
        "",
        "Every name on this page is importable from `securefl` (`from securefl import SecAgg`);"
        " the package loads each one's module on first use, so `import securefl` alone imports"
        " neither torch nor flwr. Signatures show annotations as written in the source.",
        "",
    ]
    for title, entries in by_topic.items():
        if entries:
            links = ", ".join(f"[`{name}`](#{_anchor(name)})" for name, _, _ in entries)
            lines += [f"- [{title}](#{_anchor(title)}): {links}"]
    lines.append("")
    for title, entries in by_topic.items():
        if not entries:
            continue
        lines += [f"## {title}", ""]
        for name, obj, module_name in entries:
            lines += document(name, obj, module_name)
    return "\n".join(lines).rstrip("\n") + "\n"


# --- check -----------------------------------------------------------------------------


def _sections(text: str) -> dict[str, str]:
    """Text under each ``###`` heading (one public name), keyed by the heading."""
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("## ") and not line.startswith("### "):
            current = None
        elif line.startswith("### "):
            current = sections.setdefault(line[4:].strip().strip("`"), [])
        elif current is not None:
            current.append(line)
    return {name: "\n".join(body) for name, body in sections.items()}


def differences(expected: str, actual: str, *, path: str, max_diff_lines: int = 200) -> str:
    """A report of how ``actual`` (the page on disk) differs from ``expected`` (what the docstrings give)."""
    want, have = _sections(expected), _sections(actual)
    report = [f"{path} is stale: it is not what the docstrings give now."]
    for label, names in (
        ("missing from the page", sorted(set(want) - set(have))),
        ("on the page but no longer public", sorted(set(have) - set(want))),
        ("changed", sorted(name for name in set(want) & set(have) if want[name] != have[name])),
    ):
        if names:
            report.append(f"  {label}: {', '.join(names)}")
    if len(report) == 1:
        report.append("  the text outside the sections of the public names differs")
    diff = list(difflib.unified_diff(actual.splitlines(), expected.splitlines(), path, "docstrings", lineterm=""))
    report += diff[:max_diff_lines]
    if len(diff) > max_diff_lines:
        report.append(f"... ({len(diff) - max_diff_lines} more diff lines)")
    report.append("Regenerate it with: python tools/api_reference.py")
    return "\n".join(report)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when the page differs from the docstrings")
    parser.add_argument("--output", type=Path, default=PAGE, help=f"the page (default: {PAGE.relative_to(ROOT)})")
    arguments = parser.parse_args(argv)
    expected = generate()
    page: Path = arguments.output.resolve()
    shown = str(page.relative_to(ROOT)) if page.is_relative_to(ROOT) else str(page)
    if arguments.check:
        actual = page.read_text(encoding="utf-8") if page.exists() else ""
        if actual != expected:
            print(differences(expected, actual, path=shown), file=sys.stderr)
            return 1
        print(f"{shown} is up to date")
        return 0
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text(expected, encoding="utf-8")
    print(f"wrote {shown}")
    return 0


if __name__ == "__main__":
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))  # the checkout's securefl, installed or not
    sys.exit(main())

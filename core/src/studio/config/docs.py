"""One-line docs of config fields, written as attribute docstrings (nerfstudio's style)::

    @attrs.define(kw_only=True)
    class Config(BaseModule.Config):
        radius: float = 1.0
        \"\"\"Half the side of the bounding box [-radius, radius]^3.\"\"\"

A string statement right after a field's annotated assignment documents that field. Python keeps
no such strings at run time, so :func:`field_docs` reads them from the class's source (once per
class, cached), along the class's bases so inherited fields keep their docs. A field may also
carry ``metadata={"doc": "..."}``, which wins.
"""

from __future__ import annotations

import ast
import functools
import inspect
import itertools
import textwrap

import attrs


def _first_line(text: str) -> str:
    """The first paragraph of a docstring as one line."""
    paragraph = inspect.cleandoc(text).split("\n\n", 1)[0]
    return " ".join(paragraph.split())


@functools.cache
def _own_docs(cls: type) -> dict[str, str]:
    """Attribute docstrings written in ``cls``'s own body."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return {}
    body = next((n.body for n in tree.body if isinstance(n, ast.ClassDef)), [])
    docs: dict[str, str] = {}
    for node, following in itertools.pairwise(body):
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        if (
            isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            docs[node.target.id] = _first_line(following.value.value)
    return docs


def field_docs(cls: type) -> dict[str, str]:
    """``field name -> one-line doc`` for every documented field of the attrs class ``cls``."""
    docs: dict[str, str] = {}
    for base in reversed(cls.__mro__):
        if base is object:
            continue
        docs.update(_own_docs(base))
    if attrs.has(cls):
        for field in attrs.fields(cls):
            doc = field.metadata.get("doc") if field.metadata else None
            if doc:
                docs[field.name] = _first_line(str(doc))
    return docs

"""What the relay's network layer relies on, so that an upgrade fails here, loudly.

The relay drives httpcore's HTTP/1.1 connection over a network backend of ours
(apps/proxy/pool.py, transport.py) and runs Django's handler in an asgiref context
of its own (handler.py). These pin: every package the code imports is pinned and
installed at its pin; no module of ours imports a private module or Django's
handler internals; every httpcore name used is public; and the signatures the
layer calls or implements are the ones it was written against.
"""

from __future__ import annotations

import ast
import inspect
import re
import sys
from importlib import metadata
from pathlib import Path

import httpcore
import pytest
from asgiref.sync import ThreadSensitiveContext

from apps.proxy.transport import LoopBackend, LoopStream

ROOT = Path(__file__).resolve().parents[2]
# Migrations are frozen and may import only other migration modules, whose helpers
# need a leading underscore so Django's loader does not take them for migrations.
SOURCES = sorted(
    path
    for path in [*ROOT.joinpath("apps").rglob("*.py"), *ROOT.glob("claudemon/**/*.py")]
    if path.parent.name != "migrations"
)


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins(name: str = "requirements.txt") -> dict[str, str]:
    pins = _pins() if name != "requirements.txt" else {}  # dev includes run
    for line in ROOT.joinpath(name).read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.-]+)(\[[^\]]*\])?==(\S+)", line)
        if match:
            pins[_normal(match[1])] = match[3]
    return pins


def _imports(*, typing_only: bool = False) -> set[str]:
    """Modules that our code imports (at run time, or for the type checker only)."""
    return {
        module
        for path in SOURCES
        for module in _imports_of(_tree(path), typing_only=typing_only)
    }


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), str(path))


def _imports_of(tree: ast.AST, *, typing_only: bool = False) -> set[str]:
    """Return the modules a tree imports, or those under `if TYPE_CHECKING:`."""
    checking = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"
    ]
    if typing_only:
        return {m for node in checking for m in _imports_of(ast.Module(node.body, []))}
    hidden = {id(n) for node in checking for n in ast.walk(node) if n is not node}
    modules = set()
    for node in ast.walk(tree):
        if id(node) in hidden:
            continue
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            modules.add(node.module)
    return modules


@pytest.mark.parametrize(("name", "version"), sorted(_pins().items()))
def test_every_pin_is_the_installed_version(name, version):
    assert metadata.version(name) == version


def test_every_package_our_code_imports_is_pinned():
    distributions = metadata.packages_distributions()
    ours = {"apps", "claudemon", "__future__"}
    unpinned = set()
    for module in _imports():
        top = module.split(".")[0]
        if top in ours or top in sys.stdlib_module_names:
            continue
        for distribution in distributions.get(top, [top]):
            if _normal(distribution) not in _pins():
                unpinned.add(distribution)

    assert not unpinned, f"import without a pin in requirements.txt: {unpinned}"


def test_every_package_imported_for_the_type_checker_is_a_pinned_dev_package():
    distributions = metadata.packages_distributions()
    dev = _pins("requirements-dev.txt")
    unpinned = {
        distribution
        for module in _imports(typing_only=True)
        if module.split(".")[0] not in {"apps", "claudemon", *sys.stdlib_module_names}
        for distribution in distributions.get(module.split(".")[0], [module])
        if _normal(distribution) not in dev
    }
    assert _imports(typing_only=True), "no typing-only import: the test tests nothing"
    assert not unpinned, f"typing import without a pin: {unpinned}"


def test_no_module_of_ours_imports_a_private_module_or_djangos_handlers():
    offending = {
        module
        for path in SOURCES
        for module in _imports_of(_tree(path))
        if any(part.startswith("_") for part in module.split(".")[1:])
        or (
            module.startswith("django.core.handlers")
            and not (
                path.name == "handler.py" and module == "django.core.handlers.asgi"
            )
        )
    }

    assert not offending


def test_djangos_handler_still_reads_the_body_through_the_hook_we_override():
    from django.core.handlers.asgi import ASGIHandler

    from apps.proxy.handler import RelayHandler

    # RelayHandler replaces read_body only: Django must still call it, so.
    assert "self.read_body(receive)" in inspect.getsource(ASGIHandler.handle)
    assert _shape(ASGIHandler.read_body) == _shape(RelayHandler.read_body)
    overridden = {name for name, value in vars(RelayHandler).items() if callable(value)}
    assert overridden == {"read_body"}


LAYER = [ROOT / "apps/proxy" / name for name in ("transport.py", "pool.py")]
LAYER += [ROOT / "apps/proxy" / name for name in ("upstream.py", "handler.py")]


@pytest.mark.parametrize("path", LAYER, ids=lambda path: path.name)
def test_the_layer_touches_no_private_attribute_but_its_own(path):
    private = [
        f"{path.name}:{node.lineno}: {ast.unparse(node)}"
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Attribute)
        and re.match(r"_[a-z]", node.attr)
        and not (isinstance(node.value, ast.Name) and node.value.id == "self")
    ]

    assert not private


def test_every_httpcore_name_we_use_is_public():
    used = set()
    for path in SOURCES:
        used.update(re.findall(r"\bhttpcore\.(\w+)", path.read_text()))

    assert used and used <= set(httpcore.__all__), used - set(httpcore.__all__)


def _shape(function: object) -> list[tuple[str, object]]:
    parameters = inspect.signature(function).parameters.values()
    return [(p.name, p.default) for p in parameters]


NONE = None
EMPTY = inspect.Parameter.empty


@pytest.mark.parametrize(
    ("function", "shape"),
    [
        (
            httpcore.AsyncHTTP11Connection.__init__,
            [("self", EMPTY), ("origin", EMPTY), ("stream", EMPTY)]
            + [("keepalive_expiry", NONE)],
        ),
        (
            httpcore.AsyncHTTP11Connection.handle_async_request,
            [("self", EMPTY), ("request", EMPTY)],
        ),
        (httpcore.AsyncHTTP11Connection.is_idle, [("self", EMPTY)]),
        (httpcore.AsyncHTTP11Connection.has_expired, [("self", EMPTY)]),
        (httpcore.AsyncHTTP11Connection.aclose, [("self", EMPTY)]),
        (
            httpcore.Request.__init__,
            [("self", EMPTY), ("method", EMPTY), ("url", EMPTY)]
            + [("headers", NONE), ("content", NONE), ("extensions", NONE)],
        ),
        (
            httpcore.URL.__init__,
            [("self", EMPTY), ("url", ""), ("scheme", b""), ("host", b"")]
            + [("port", NONE), ("target", b"")],
        ),
        (httpcore.Response.aiter_stream, [("self", EMPTY)]),
        (httpcore.Response.aread, [("self", EMPTY)]),
        (httpcore.Response.aclose, [("self", EMPTY)]),
        (
            ThreadSensitiveContext.__init__,
            [("self", EMPTY), ("executor", NONE)],
        ),
    ],
    ids=lambda value: getattr(value, "__qualname__", ""),
)
def test_what_the_layer_calls_has_the_signature_it_was_written_for(function, shape):
    assert _shape(function) == shape


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (LoopStream.read, httpcore.AsyncNetworkStream.read),
        (LoopStream.write, httpcore.AsyncNetworkStream.write),
        (LoopStream.aclose, httpcore.AsyncNetworkStream.aclose),
        (LoopStream.start_tls, httpcore.AsyncNetworkStream.start_tls),
        (LoopStream.get_extra_info, httpcore.AsyncNetworkStream.get_extra_info),
        (LoopBackend.connect_tcp, httpcore.AsyncNetworkBackend.connect_tcp),
    ],
    ids=lambda value: getattr(value, "__qualname__", ""),
)
def test_our_network_backend_implements_httpcores_interface_as_it_is(ours, theirs):
    assert _shape(ours) == _shape(theirs)


def test_a_response_body_is_a_public_attribute_we_may_replace():
    response = httpcore.Response(200, content=b"x")
    replacement = object()

    response.stream = replacement

    assert response.stream is replacement
    assert {"status", "headers", "stream", "extensions"} <= set(vars(response))

"""The static policy: what generated monitor code may contain, checked on its AST before anything runs.

Each rule has a stable id (`RULES`) and every violation carries the line, column and a reason the generator
(human or LLM) can act on. The policy is deliberately narrow: monitor code composes the toolkit, numpy and
a few pure standard-library modules, and nothing else.
"""

from __future__ import annotations

import ast
import functools
import importlib
import re
import types
import warnings
from collections.abc import Iterable
from dataclasses import asdict, dataclass

from monitor_runtime.contract import REQUIRED_METHODS

MAX_CODE_BYTES = 150_000
MAX_AST_NODES = 60_000

# Importable modules (exact names). Submodules are listed explicitly so `numpy.ctypeslib` & co. stay out.
ALLOWED_IMPORTS = frozenset(
    {
        "monitor_runtime.toolkit",
        "numpy",
        "numpy.linalg",
        "numpy.random",
        "numpy.typing",
        "scipy.stats",
        "math",
        "statistics",
        "collections",
        "collections.abc",
        "dataclasses",
        "typing",
        "itertools",
        "functools",
        "bisect",
        "heapq",
        "__future__",
    }
)

FORBIDDEN_BUILTINS = {
    "eval": "evaluates arbitrary code",
    "exec": "executes arbitrary code",
    "compile": "builds code objects at run time",
    "open": "opens files",
    "__import__": "imports modules dynamically",
    "globals": "exposes the module namespace",
    "locals": "exposes the local namespace",
    "vars": "exposes object namespaces",
    "breakpoint": "starts a debugger",
    "input": "reads from the terminal",
    "exit": "ends the process",
    "quit": "ends the process",
    "help": "starts the interactive help",
    "memoryview": "exposes raw memory",
}
DYNAMIC_ATTRIBUTE_BUILTINS = frozenset({"getattr", "setattr", "delattr", "hasattr"})
# Builtins that may only be called directly: passed around as values (`map(getattr, ...)`,
# `functools.reduce(getattr, ...)`, `g = getattr`) their arguments escape the checks on calls.
CALL_ONLY_BUILTINS = frozenset({*DYNAMIC_ATTRIBUTE_BUILTINS, "vars", "globals", "locals", "type", "super"})
# Names that lead to the interpreter, the process or its environment, refused as attributes and as
# imported names whatever object or module they come from (`dataclasses.sys`, `from typing import sys`).
FORBIDDEN_NAMES = {
    "sys": "reaches the interpreter (sys.modules leads to every module)",
    "os": "reaches the operating system",
    "modules": "reaches every loaded module",
    "builtins": "reaches the unrestricted builtins",
    "environ": "reads the process environment",
}
# The toolkit reaches monitor code as a value anyway (the `toolkit` argument of Monitor), so the module may be
# stored and passed like one; its public members are the point of it.
VALUE_MODULES = frozenset({"monitor_runtime.toolkit"})
# Roots whose private (`_x`) attributes monitor code may use: its own instances and classes.
PRIVATE_ROOTS = frozenset({"self", "cls"})

ALLOWED_DUNDER_ATTRIBUTES = frozenset({"__init__", "__name__", "__qualname__", "__doc__"})
ALLOWED_DUNDER_NAMES = frozenset({"__name__", "__doc__", "__all__", "__slots__", "__post_init__"})
FORBIDDEN_DUNDER_METHODS = frozenset(
    {
        "__del__",
        "__getattribute__",
        "__getattr__",
        "__setattr__",
        "__delattr__",
        "__reduce__",
        "__reduce_ex__",
        "__init_subclass__",
        "__set_name__",
        "__class_getitem__",
        "__subclasshook__",
        "__instancecheck__",
        "__subclasscheck__",
        "__prepare__",
    }
)
# Attributes that reach native memory or interpreter frames, whatever object they are looked up on.
FORBIDDEN_ATTRIBUTES = {
    "ctypes": "exposes raw memory",
    "cffi": "exposes raw memory",
    "tofile": "writes files",
    "f_globals": "reaches interpreter frames",
    "f_locals": "reaches interpreter frames",
    "f_back": "reaches interpreter frames",
    "f_builtins": "reaches interpreter frames",
    "gi_frame": "reaches interpreter frames",
    "cr_frame": "reaches interpreter frames",
    "ag_frame": "reaches interpreter frames",
    "tb_frame": "reaches interpreter frames",
    "gi_code": "reaches code objects",
    "cr_code": "reaches code objects",
    "ag_code": "reaches code objects",
    "dump": "writes files",
    "set_event_sink": "replaces the runtime's event sink (use toolkit.emit to send events)",
}
# Members of numpy/scipy that read or write files, load native code or reach internals; checked on attribute
# chains that start at an imported module (`np.save`, `numpy.lib.format`) and on from-imports.
FORBIDDEN_MODULE_MEMBERS = {
    "ctypeslib": "loads native libraries",
    "fromfile": "reads files",
    "memmap": "maps files into memory",
    "load": "reads files",
    "loadtxt": "reads files",
    "genfromtxt": "reads files",
    "fromregex": "reads files",
    "save": "writes files",
    "savez": "writes files",
    "savez_compressed": "writes files",
    "savetxt": "writes files",
    "DataSource": "opens files and URLs",
    "f2py": "compiles native code",
    "distutils": "compiles native code",
    "testing": "runs test tooling",
    "lib": "reaches numpy internals (file formats, stride tricks)",
    "show_config": "prints build internals",
    "get_type_hints": "evaluates annotation strings as code",
    "ForwardRef": "evaluates annotation strings as code",
    "make_dataclass": "builds classes from a namespace dict (a way to define hooks)",
    "seterrcall": "installs a callback that may run outside the guard",
    "set_printoptions": "installs formatters that may run outside the guard",
}
_FORMAT_DUNDER = re.compile(r"\{[^{}]*\.__\w+")
RULES = {
    "syntax": "the code must parse as Python 3.11",
    "size": f"the code must be at most {MAX_CODE_BYTES} bytes and {MAX_AST_NODES} AST nodes",
    "import-not-allowed": "only the toolkit, numpy, scipy.stats and a few pure standard-library modules",
    "relative-import": "relative imports are not allowed",
    "wildcard-import": "`from x import *` is not allowed",
    "forbidden-builtin": "eval, exec, compile, open, __import__, globals, vars and similar are not allowed",
    "dynamic-attribute": (
        "getattr/setattr/delattr/hasattr/vars/type/super may only be called directly; getattr & co need a "
        "constant, non-dunder attribute name (setattr also a public one); type() takes one argument"
    ),
    "module-alias": "an imported module may only start an attribute chain (`np.mean`), never be a value",
    "private-attribute": "`_private` attributes only on `self`, `cls` or `super()`",
    "dunder-key": "dict keys and keyword arguments may not be dunder names (they build interpreter hooks)",
    "string-annotation": "annotations may not contain strings (typing evaluates them as code)",
    "dunder-attribute": "dunder attributes other than __init__/__name__/__qualname__/__doc__ are not allowed",
    "dunder-name": "dunder names such as __builtins__ or __file__ are not allowed",
    "dunder-method": "defining hooks such as __getattr__, __del__ or __reduce__ is not allowed",
    "forbidden-attribute": (
        "attributes reaching files, native memory, frames, sys, os, modules, builtins or environ are refused"
    ),
    "forbidden-module-member": "library members that read or write files, load native code or are private",
    "format-dunder": "format strings may not look up dunder attributes; .format only on a literal string",
    "contract": "the module must define CONTRACT = 1 and class Monitor with every contract method",
}
CONTRACT_METHODS = REQUIRED_METHODS  # the contract module is the one place that lists them


@dataclass(frozen=True)
class Violation:
    """One broken rule: where (line, column) and why."""

    rule: str
    line: int
    col: int
    message: str

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return asdict(self)

    def __str__(self) -> str:
        return f"line {self.line}: [{self.rule}] {self.message}"


def _dunder(name: str) -> bool:
    return len(name) > 4 and name.startswith("__") and name.endswith("__")


@functools.lru_cache(maxsize=256)
def _resolve(dotted: str) -> object | None:
    """The object `dotted` names when its root is an allowed module (imported here, in the operator), or
    None when it cannot be resolved statically (an unknown attribute; the sandbox reports it at run time)."""
    parts = dotted.split(".")
    root = next(
        (".".join(parts[:i]) for i in range(len(parts), 0, -1) if ".".join(parts[:i]) in ALLOWED_IMPORTS),
        None,
    )
    if root is None:
        return None
    try:
        value: object = importlib.import_module(root)
    except ImportError:
        return None
    for attr in parts[len(root.split(".")) :]:
        try:
            with warnings.catch_warnings():  # deprecated members warn on access; resolving is not using
                warnings.simplefilter("ignore")
                value = getattr(value, attr)
        except Exception:  # a library's lazy __getattr__ may raise anything; unresolved is the answer
            return None
    return value


def _disallowed_module(dotted: str) -> str | None:
    """The module name when `dotted` resolves to a module that is not on the allow-list."""
    value = _resolve(dotted)
    if (
        isinstance(value, types.ModuleType)
        and value.__name__ not in ALLOWED_IMPORTS
        and dotted not in (ALLOWED_IMPORTS)
    ):
        return value.__name__
    return None


def _chain(node: ast.AST) -> tuple[ast.AST, list[str]]:
    """The root of an attribute chain and the attribute names after it (`np`, [`lib`, `format`])."""
    attrs: list[str] = []
    while isinstance(node, ast.Attribute):
        attrs.append(node.attr)
        node = node.value
    return node, attrs[::-1]


def _chain_root(node: ast.AST) -> str | None:
    """The name an attribute chain starts from (`np` for `np.lib.format`), if it starts from a name."""
    root, _ = _chain(node)
    return root.id if isinstance(root, ast.Name) else None


def _private_root(node: ast.AST) -> bool:
    """True when an attribute chain starts at `self`, `cls` or `super()`: the code's own objects."""
    root, _ = _chain(node)
    if isinstance(root, ast.Name):
        return root.id in PRIVATE_ROOTS
    return isinstance(root, ast.Call) and isinstance(root.func, ast.Name) and root.func.id == "super"


def _parents(tree: ast.AST) -> dict[ast.AST, ast.AST]:
    return {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}


class _PolicyVisitor(ast.NodeVisitor):
    def __init__(self, parents: dict[ast.AST, ast.AST]) -> None:
        self.violations: list[Violation] = []
        self.parents = parents
        # Names bound to imported modules (np, numpy, stats, toolkit) and the module each one is.
        self.module_names: dict[str, str] = {}

    def _add(self, node: ast.AST, rule: str, message: str) -> None:
        self.violations.append(
            Violation(rule, getattr(node, "lineno", 0), getattr(node, "col_offset", 0), message)
        )

    def collect_modules(self, tree: ast.AST) -> None:
        """Find every name an import binds to a module first, so uses before the import are seen too."""
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.asname:
                        self.module_names[alias.asname] = alias.name
                    else:
                        root = alias.name.split(".")[0]
                        self.module_names[root] = root
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    if full in ALLOWED_IMPORTS or isinstance(_resolve(full), types.ModuleType):
                        self.module_names[alias.asname or alias.name] = full

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.name not in ALLOWED_IMPORTS:
                self._add(
                    node, "import-not-allowed", f"import of {alias.name!r} is not allowed; {_allowed_text()}"
                )
        self.generic_visit(node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            self._add(
                node, "relative-import", "relative imports are not allowed; import allowed modules by name"
            )
            return
        module = node.module or ""
        for alias in node.names:
            if alias.name == "*":
                self._add(
                    node,
                    "wildcard-import",
                    f"`from {module} import *` is not allowed; import names explicitly",
                )
                continue
            # `from scipy import stats` and `from monitor_runtime import toolkit` name an allowed module.
            target = f"{module}.{alias.name}"
            allowed = module in ALLOWED_IMPORTS or target in ALLOWED_IMPORTS
            if not allowed or alias.name in FORBIDDEN_NAMES:
                self._add(
                    node,
                    "import-not-allowed",
                    f"import from {module!r} ({target}) is not allowed; {_allowed_text()}",
                )
            elif _dunder(alias.name) and module != "__future__":
                self._add(node, "dunder-name", f"importing {alias.name!r} is not allowed")
            elif alias.name.startswith("_") and module != "__future__":
                self._add(
                    node, "forbidden-module-member", f"{module}.{alias.name} is private; use the public API"
                )
            elif alias.name in FORBIDDEN_MODULE_MEMBERS:
                self._add(
                    node,
                    "forbidden-module-member",
                    f"{module}.{alias.name} is not allowed: it {FORBIDDEN_MODULE_MEMBERS[alias.name]}",
                )
            elif hidden := _disallowed_module(target):
                self._add(
                    node,
                    "import-not-allowed",
                    f"import from {module!r} ({target}) is not allowed: it is the module {hidden!r}; "
                    + _allowed_text(),
                )
        self.generic_visit(node)

    def _check_dynamic_call(self, node: ast.Call, func: str) -> None:
        if func == "type":
            if len(node.args) != 1 or node.keywords:
                self._add(node, "dynamic-attribute", "type() takes exactly one argument; classes use `class`")
            return
        if func not in DYNAMIC_ATTRIBUTE_BUILTINS:
            return
        name_arg = node.args[1] if len(node.args) > 1 else None
        if not (isinstance(name_arg, ast.Constant) and isinstance(name_arg.value, str)):
            self._add(
                node,
                "dynamic-attribute",
                f"{func}() needs a constant attribute name; use the attribute directly or a dict",
            )
            return
        name = name_arg.value
        own = bool(node.args) and _private_root(node.args[0])
        if _dunder(name) and name not in ALLOWED_DUNDER_ATTRIBUTES:
            self._add(node, "dynamic-attribute", f"{func}() of dunder attribute {name!r}")
        elif name in FORBIDDEN_ATTRIBUTES or name in FORBIDDEN_MODULE_MEMBERS or name in FORBIDDEN_NAMES:
            self._add(node, "dynamic-attribute", f"{func}() of forbidden attribute {name!r}")
        elif name.startswith("_") and (func == "setattr" or not own):
            self._add(
                node,
                "dynamic-attribute",
                f"{func}() of private attribute {name!r}"
                + ("" if func == "setattr" else "; private attributes only on self/cls"),
            )

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if isinstance(func, ast.Name) and func.id in CALL_ONLY_BUILTINS:
            self._check_dynamic_call(node, func.id)
        if isinstance(func, ast.Attribute) and func.attr in ("format", "format_map"):
            value = func.value
            if not (isinstance(value, ast.Constant) and isinstance(value.value, str)):
                self._add(
                    node,
                    "format-dunder",
                    f".{func.attr}() only on a literal string (a built string could look up dunder "
                    "attributes); use an f-string",
                )
        for keyword in node.keywords:
            if keyword.arg and _dunder(keyword.arg):
                self._add(node, "dunder-key", f"keyword argument {keyword.arg!r} is not allowed")
        self.generic_visit(node)

    def visit_Dict(self, node: ast.Dict) -> None:
        for key in node.keys:
            if isinstance(key, ast.Constant) and isinstance(key.value, str) and _dunder(key.value):
                self._add(key, "dunder-key", f"dict key {key.value!r} is not allowed (it could build a hook)")
        self.generic_visit(node)

    def _is_chain_root(self, node: ast.Name) -> bool:
        parent = self.parents.get(node)
        return isinstance(parent, ast.Attribute) and parent.value is node

    def _is_called(self, node: ast.Name) -> bool:
        parent = self.parents.get(node)
        return isinstance(parent, ast.Call) and parent.func is node

    def visit_Name(self, node: ast.Name) -> None:
        if node.id in FORBIDDEN_BUILTINS:
            self._add(
                node, "forbidden-builtin", f"{node.id!r} is not allowed: it {FORBIDDEN_BUILTINS[node.id]}"
            )
        elif _dunder(node.id) and node.id not in ALLOWED_DUNDER_NAMES:
            self._add(node, "dunder-name", f"name {node.id!r} is not allowed")
        elif node.id in CALL_ONLY_BUILTINS and not self._is_called(node):
            self._add(
                node,
                "dynamic-attribute",
                f"{node.id!r} may only be called directly, not passed around or stored",
            )
        elif node.id in self.module_names and self.module_names[node.id] not in VALUE_MODULES:
            if not isinstance(node.ctx, ast.Load):
                self._add(
                    node,
                    "module-alias",
                    f"{node.id!r} names the imported module {self.module_names[node.id]!r}; use another name",
                )
            elif not self._is_chain_root(node):
                self._add(
                    node,
                    "module-alias",
                    f"module {node.id!r} used as a value; only `{node.id}.<member>` is allowed",
                )
        self.generic_visit(node)

    def visit_arg(self, node: ast.arg) -> None:
        if node.arg in self.module_names and self.module_names[node.arg] not in VALUE_MODULES:
            self._add(
                node,
                "module-alias",
                f"parameter {node.arg!r} shadows the imported module {self.module_names[node.arg]!r}",
            )
        if node.annotation is not None:
            self._check_annotation(node.annotation)
        self.generic_visit(node)

    def _check_annotation(self, annotation: ast.AST) -> None:
        for sub in ast.walk(annotation):
            if isinstance(sub, ast.Constant) and isinstance(sub.value, str):
                self._add(
                    sub,
                    "string-annotation",
                    "string annotations are evaluated as code by typing; write the type itself "
                    "(`from __future__ import annotations` allows forward references)",
                )
                return

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        self._check_annotation(node.annotation)
        self.generic_visit(node)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        root, attrs = _chain(node)
        if _dunder(node.attr) and node.attr not in ALLOWED_DUNDER_ATTRIBUTES:
            self._add(
                node,
                "dunder-attribute",
                f"attribute {node.attr!r} is not allowed (reaches interpreter internals)",
            )
        elif node.attr in FORBIDDEN_ATTRIBUTES:
            reason = FORBIDDEN_ATTRIBUTES[node.attr]
            self._add(node, "forbidden-attribute", f"attribute {node.attr!r} is not allowed: it {reason}")
        elif node.attr in FORBIDDEN_NAMES:
            self._add(
                node,
                "forbidden-attribute",
                f"attribute {node.attr!r} is not allowed: it {FORBIDDEN_NAMES[node.attr]}",
            )
        elif isinstance(root, ast.Name) and root.id in self.module_names:
            self._check_module_member(node, self.module_names[root.id], attrs)
        elif node.attr.startswith("_") and not _dunder(node.attr) and not _private_root(node):
            self._add(
                node,
                "private-attribute",
                f"{ast.unparse(node)}: private attributes only on self/cls; use the public API",
            )
        self.generic_visit(node)

    def _check_module_member(self, node: ast.Attribute, module: str, attrs: list[str]) -> None:
        if not isinstance(node.ctx, ast.Load):
            # A patched library function (`math.isclose = ...`) would change what the checks themselves see.
            self._add(
                node,
                "forbidden-module-member",
                f"{ast.unparse(node)} may not be assigned or deleted: modules are shared, not monitor state",
            )
        elif node.attr in FORBIDDEN_MODULE_MEMBERS:
            reason = FORBIDDEN_MODULE_MEMBERS[node.attr]
            self._add(node, "forbidden-module-member", f"{ast.unparse(node)} is not allowed: it {reason}")
        elif node.attr.startswith("_"):
            self._add(
                node,
                "forbidden-module-member",
                f"{ast.unparse(node)} is a private member of a library; use its public API",
            )
        else:
            hidden = _disallowed_module(".".join([module, *attrs]))
            if hidden:
                self._add(
                    node,
                    "forbidden-module-member",
                    f"{ast.unparse(node)} is the module {hidden!r}, which is not allowed; {_allowed_text()}",
                )

    def _check_def(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        if node.name in FORBIDDEN_DUNDER_METHODS:
            self._add(
                node,
                "dunder-method",
                f"defining {node.name!r} is not allowed (it hooks interpreter internals)",
            )
        if node.name in self.module_names:
            self._add(node, "module-alias", f"function {node.name!r} shadows an imported module")
        if node.returns is not None:
            self._check_annotation(node.returns)
        self.generic_visit(node)

    visit_FunctionDef = _check_def
    visit_AsyncFunctionDef = _check_def

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        for keyword in node.keywords:
            if keyword.arg == "metaclass":
                self._add(node, "dunder-method", "metaclasses are not allowed (they hook class creation)")
        for base in node.bases:
            if isinstance(base, ast.Name) and base.id == "type":
                self._add(node, "dunder-method", "subclassing `type` is not allowed (it builds classes)")
        if node.name in self.module_names:
            self._add(node, "module-alias", f"class {node.name!r} shadows an imported module")
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        if isinstance(node.value, str) and _FORMAT_DUNDER.search(node.value):
            self._add(
                node,
                "format-dunder",
                "format string looks up a dunder attribute; format plain values instead",
            )

    def visit_MatchClass(self, node: ast.MatchClass) -> None:
        for name in node.kwd_attrs:
            if _dunder(name):
                self._add(node, "dunder-attribute", f"match pattern reads dunder attribute {name!r}")
            elif name in FORBIDDEN_NAMES or name in FORBIDDEN_ATTRIBUTES:
                self._add(node, "forbidden-attribute", f"match pattern reads attribute {name!r}")
            elif name.startswith("_"):
                self._add(node, "private-attribute", f"match pattern reads private attribute {name!r}")
        self.generic_visit(node)


def _allowed_text() -> str:
    names = sorted(n for n in ALLOWED_IMPORTS if n != "__future__")
    return "allowed: " + ", ".join(names) + " (the toolkit also arrives as Monitor's `toolkit` argument)"


def _class_methods(
    cls: ast.ClassDef, classes: dict[str, ast.ClassDef], seen: frozenset[int] = frozenset()
) -> tuple[dict[str, ast.FunctionDef | ast.AsyncFunctionDef], bool]:
    """Methods of `cls` including those inherited from classes of the same module; `complete` is False
    when a base lies outside the module (its methods cannot be seen statically; the sandbox checks them)."""
    methods: dict[str, ast.FunctionDef | ast.AsyncFunctionDef] = {}
    complete = True
    for base in reversed(cls.bases):  # later bases first, so earlier ones win as in the MRO
        parent = classes.get(base.id) if isinstance(base, ast.Name) else None
        if parent is None or id(parent) in seen:
            complete = complete and isinstance(base, ast.Name) and base.id == "object"
            continue
        inherited, parent_complete = _class_methods(parent, classes, seen | {id(cls)})
        methods.update(inherited)
        complete = complete and parent_complete
    for stmt in cls.body:
        if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef):
            methods[stmt.name] = stmt
    return methods, complete


def _contract_violations(tree: ast.Module) -> list[Violation]:
    violations: list[Violation] = []
    contract_value = None
    monitor: ast.ClassDef | None = None
    classes: dict[str, ast.ClassDef] = {}  # top-level names bound to module classes (aliases included)
    for stmt in tree.body:
        if (
            isinstance(stmt, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "CONTRACT" for t in stmt.targets)
        ) or (
            isinstance(stmt, ast.AnnAssign)
            and isinstance(stmt.target, ast.Name)
            and stmt.target.id == "CONTRACT"
        ):
            contract_value = stmt.value.value if isinstance(stmt.value, ast.Constant) else "non-constant"
        elif isinstance(stmt, ast.ClassDef):
            classes[stmt.name] = stmt
        elif isinstance(stmt, ast.Assign) and isinstance(stmt.value, ast.Name) and stmt.value.id in classes:
            for target in stmt.targets:
                if isinstance(target, ast.Name):
                    classes[target.id] = classes[stmt.value.id]
    monitor = classes.get("Monitor")
    if contract_value != 1:
        violations.append(
            Violation(
                "contract", 1, 0, f"module must define `CONTRACT = 1` at top level (found {contract_value!r})"
            )
        )
    if monitor is None:
        violations.append(Violation("contract", 1, 0, "module must define `class Monitor` at top level"))
        return violations
    methods, complete = _class_methods(monitor, classes)
    missing = [name for name in ("__init__", *CONTRACT_METHODS) if name not in methods]
    if missing and complete:
        violations.append(
            Violation(
                "contract",
                monitor.lineno,
                monitor.col_offset,
                f"class Monitor lacks {', '.join(missing)}; every contract method must be defined on it",
            )
        )
    init = methods.get("__init__")
    if init is not None:
        positional = len(init.args.posonlyargs) + len(init.args.args)
        if positional < 3 and init.args.vararg is None:
            violations.append(
                Violation(
                    "contract",
                    init.lineno,
                    init.col_offset,
                    "Monitor.__init__ must accept (self, spec, toolkit)",
                )
            )
    for name in CONTRACT_METHODS:
        method = methods.get(name)
        if isinstance(method, ast.AsyncFunctionDef):
            violations.append(
                Violation("contract", method.lineno, method.col_offset, f"Monitor.{name} must not be async")
            )
    return violations


def check_code(
    code: str, *, max_bytes: int = MAX_CODE_BYTES, require_contract: bool = True
) -> list[Violation]:
    """All policy violations of `code`, sorted by line; empty when the code may go on to the sandbox."""
    size = len(code.encode("utf-8"))
    if size > max_bytes:
        return [
            Violation("size", 1, 0, f"code is {size} bytes, over the {max_bytes}-byte limit; simplify it")
        ]
    try:
        tree = ast.parse(code, filename="monitor.py", type_comments=False)
    except SyntaxError as exc:
        return [Violation("syntax", exc.lineno or 0, (exc.offset or 1) - 1, f"syntax error: {exc.msg}")]
    except (RecursionError, MemoryError, ValueError) as exc:
        return [Violation("syntax", 0, 0, f"code cannot be parsed ({type(exc).__name__}); reduce nesting")]
    n_nodes = sum(1 for _ in ast.walk(tree))
    if n_nodes > MAX_AST_NODES:
        return [
            Violation(
                "size", 1, 0, f"code has {n_nodes} AST nodes, over the {MAX_AST_NODES} limit; simplify it"
            )
        ]
    visitor = _PolicyVisitor(_parents(tree))
    visitor.collect_modules(tree)
    visitor.visit(tree)
    violations = visitor.violations
    if require_contract:
        violations = violations + _contract_violations(tree)
    return sorted(violations, key=lambda v: (v.line, v.col, v.rule))


def format_violations(violations: Iterable[Violation]) -> str:
    """One line per violation, for logs and for the repair prompt."""
    return "\n".join(str(v) for v in violations)


__all__ = [
    "ALLOWED_IMPORTS",
    "FORBIDDEN_BUILTINS",
    "MAX_CODE_BYTES",
    "RULES",
    "Violation",
    "check_code",
    "format_violations",
]

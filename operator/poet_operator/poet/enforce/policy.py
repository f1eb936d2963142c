"""The static policy: what generated monitor code may contain, checked on its AST before anything runs.

Each rule has a stable id (`RULES`) and every violation carries the line, column and a reason the generator
(human or LLM) can act on. The policy is deliberately narrow: monitor code composes the toolkit, numpy and
a few pure standard-library modules, and nothing else.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass

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
    "tofile": "writes files",
    "f_globals": "reaches interpreter frames",
    "f_locals": "reaches interpreter frames",
    "f_back": "reaches interpreter frames",
    "f_builtins": "reaches interpreter frames",
    "gi_frame": "reaches interpreter frames",
    "cr_frame": "reaches interpreter frames",
    "ag_frame": "reaches interpreter frames",
    "tb_frame": "reaches interpreter frames",
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
}
_FORMAT_DUNDER = re.compile(r"\{[^{}]*\.__\w+")
RULES = {
    "syntax": "the code must parse as Python 3.11",
    "size": f"the code must be at most {MAX_CODE_BYTES} bytes and {MAX_AST_NODES} AST nodes",
    "import-not-allowed": "only the toolkit, numpy, scipy.stats and a few pure standard-library modules",
    "relative-import": "relative imports are not allowed",
    "wildcard-import": "`from x import *` is not allowed",
    "forbidden-builtin": "eval, exec, compile, open, __import__, globals, vars and similar are not allowed",
    "dynamic-attribute": "getattr/setattr/delattr/hasattr need a constant, non-dunder attribute name",
    "dunder-attribute": "dunder attributes other than __init__/__name__/__qualname__/__doc__ are not allowed",
    "dunder-name": "dunder names such as __builtins__ or __file__ are not allowed",
    "dunder-method": "defining hooks such as __getattr__, __del__ or __reduce__ is not allowed",
    "forbidden-attribute": "attributes that reach files, native memory or frames are not allowed",
    "forbidden-module-member": "library members that read or write files, load native code or are private",
    "format-dunder": "format strings may not look up dunder attributes",
    "contract": "the module must define CONTRACT = 1 and class Monitor with every contract method",
}
CONTRACT_METHODS = (
    "detect_drift",
    "monitor_features",
    "monitor_predictions",
    "update_reference_window",
    "state",
    "restore",
)


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


class _PolicyVisitor(ast.NodeVisitor):
    def __init__(self) -> None:
        self.violations: list[Violation] = []
        self.module_names: set[str] = set()  # names bound to imported modules (np, numpy, stats, ...)

    def _add(self, node: ast.AST, rule: str, message: str) -> None:
        self.violations.append(
            Violation(rule, getattr(node, "lineno", 0), getattr(node, "col_offset", 0), message)
        )

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.name not in ALLOWED_IMPORTS:
                self._add(
                    node, "import-not-allowed", f"import of {alias.name!r} is not allowed; {_allowed_text()}"
                )
            self.module_names.add(alias.asname or alias.name.split(".")[0])
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
            allowed = module in ALLOWED_IMPORTS or f"{module}.{alias.name}" in ALLOWED_IMPORTS
            if not allowed:
                target = f"{module}.{alias.name}"
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
            self.module_names.add(alias.asname or alias.name)
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if isinstance(func, ast.Name) and func.id in DYNAMIC_ATTRIBUTE_BUILTINS:
            name_arg = node.args[1] if len(node.args) > 1 else None
            if not (isinstance(name_arg, ast.Constant) and isinstance(name_arg.value, str)):
                self._add(
                    node,
                    "dynamic-attribute",
                    f"{func.id}() needs a constant attribute name; use the attribute directly or a dict",
                )
            elif _dunder(name_arg.value) and name_arg.value not in ALLOWED_DUNDER_ATTRIBUTES:
                self._add(node, "dynamic-attribute", f"{func.id}() of dunder attribute {name_arg.value!r}")
            elif name_arg.value in FORBIDDEN_ATTRIBUTES or name_arg.value in FORBIDDEN_MODULE_MEMBERS:
                self._add(node, "dynamic-attribute", f"{func.id}() of forbidden attribute {name_arg.value!r}")
        self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> None:
        if node.id in FORBIDDEN_BUILTINS:
            self._add(
                node, "forbidden-builtin", f"{node.id!r} is not allowed: it {FORBIDDEN_BUILTINS[node.id]}"
            )
        elif _dunder(node.id) and node.id not in ALLOWED_DUNDER_NAMES:
            self._add(node, "dunder-name", f"name {node.id!r} is not allowed")
        self.generic_visit(node)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if _dunder(node.attr) and node.attr not in ALLOWED_DUNDER_ATTRIBUTES:
            self._add(
                node,
                "dunder-attribute",
                f"attribute {node.attr!r} is not allowed (reaches interpreter internals)",
            )
        elif node.attr in FORBIDDEN_ATTRIBUTES:
            reason = FORBIDDEN_ATTRIBUTES[node.attr]
            self._add(node, "forbidden-attribute", f"attribute {node.attr!r} is not allowed: it {reason}")
        elif node.attr in FORBIDDEN_MODULE_MEMBERS and _chain_root(node) in self.module_names:
            reason = FORBIDDEN_MODULE_MEMBERS[node.attr]
            self._add(node, "forbidden-module-member", f"{ast.unparse(node)} is not allowed: it {reason}")
        elif node.attr.startswith("_") and _chain_root(node) in self.module_names:
            self._add(
                node,
                "forbidden-module-member",
                f"{ast.unparse(node)} is a private member of a library; use its public API",
            )
        self.generic_visit(node)

    def _check_def(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        if node.name in FORBIDDEN_DUNDER_METHODS:
            self._add(
                node,
                "dunder-method",
                f"defining {node.name!r} is not allowed (it hooks interpreter internals)",
            )
        self.generic_visit(node)

    visit_FunctionDef = _check_def
    visit_AsyncFunctionDef = _check_def

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
        self.generic_visit(node)


def _chain_root(node: ast.AST) -> str | None:
    """The name an attribute chain starts from (`np` for `np.lib.format`), if it starts from a name."""
    while isinstance(node, ast.Attribute):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


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
    visitor = _PolicyVisitor()
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

"""The static policy: every rule has a sample it must reject and a close sample it must accept."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from poet_operator.poet.enforce.policy import MAX_CODE_BYTES, RULES, check_code, format_violations

GOOD = (Path(__file__).parent / "enforce_samples" / "good_monitor.py").read_text()

CONTRACT_STUB = textwrap.dedent(
    """
    CONTRACT = 1


    class Monitor:
        def __init__(self, spec, toolkit):
            self.toolkit = toolkit

        def detect_drift(self, current):
            return {}

        def monitor_features(self, batch):
            return {}

        def monitor_predictions(self, predictions, actuals):
            return {}

        def update_reference_window(self, new_data):
            return None

        def state(self):
            return {}

        def restore(self, state):
            return None
    """
)


def _body(snippet: str) -> str:
    """A complete contract module with `snippet` (a few statements) at the top."""
    return textwrap.dedent(snippet).strip() + "\n" + CONTRACT_STUB


# rule -> (rejected snippet, accepted snippet that is as close as possible)
CASES: dict[str, list[tuple[str, str]]] = {
    "import-not-allowed": [
        ("import os", "import math"),
        ("import subprocess as sp", "import statistics as st"),
        ("from scipy import io", "from scipy import stats"),
        ("import numpy.ctypeslib", "import numpy.linalg"),
        ("from monitor_runtime import guard", "from monitor_runtime import toolkit"),
        ("import importlib", "import functools"),
        # Modules hidden as attributes of allowed modules may not be imported by name either.
        ("from dataclasses import sys", "from dataclasses import field"),
        ("from typing import sys", "from typing import Any"),
        ("from numpy import ma", "from numpy import linalg"),
        ("from dataclasses import inspect", "from dataclasses import dataclass"),
    ],
    "relative-import": [("from . import toolkit", "from monitor_runtime import toolkit")],
    "wildcard-import": [("from math import *", "from math import sqrt")],
    "forbidden-builtin": [
        ("x = eval('1')", "x = int('1')"),
        ("exec('x = 1')", "x = 1"),
        ("c = compile('1', 'f', 'eval')", "c = complex(1, 0)"),
        ("f = open('/etc/passwd')", "f = sorted(['b', 'a'])"),
        ("m = __import__('os')", "m = abs(-1)"),
        ("g = globals()", "g = dict()"),
        ("v = vars()", "v = list()"),
        ("breakpoint()", "print()"),
        ("i = input()", "i = str()"),
        ("fn = open", "fn = len"),
    ],
    "dynamic-attribute": [
        ("y = getattr(len, '__self__')", "y = getattr(len, 'name', None)"),
        ("name = 'x'\ny = getattr(len, name)", "y = getattr(len, 'x', None)"),
        ("setattr(len, '__doc__x__', 1)", "d = {}\nd['x'] = 1"),
        ("import numpy as np\nf = getattr(np, 'save')", "import numpy as np\nf = np.mean"),
        # getattr & co as values: their arguments would escape the checks on direct calls.
        ("_g = getattr", "_g = len"),
        ("x = list(map(getattr, [()], ['real']))", "x = list(map(len, [()]))"),
        (
            "import functools\nx = functools.reduce(getattr, ['real'], 1)",
            "import functools\nx = functools.reduce(max, [1], 1)",
        ),
        (
            "import functools\np = functools.partial(setattr, len)",
            "import functools\np = functools.partial(max, 1)",
        ),
        ("t = type", "t = int"),
        ("s = super", "s = int"),
        ("setattr(len, '_policy', None)", "class A:\n    pass\nsetattr(A, 'policy', None)"),
        (
            "class A:\n    def f(self):\n        setattr(self, '_x', 1)",
            "class A:\n    def f(self):\n        self._x = 1",
        ),
        (
            "y = getattr(len, '_x', None)",
            "class A:\n    def f(self):\n        return getattr(self, '_x', None)",
        ),
        ("y = getattr(len, 'environ', None)", "y = getattr(len, 'environment', None)"),
        ("X = type('X', (), {})", "X = type(1)"),
    ],
    "dunder-attribute": [
        ("x = ().__class__.__bases__", "x = type(())"),
        (
            "class A:\n    def f(self):\n        return self._x.__dict__",
            "class A:\n    def f(self):\n        return self._x",
        ),
        ("y = len.__globals__", "y = len.__name__"),
        ("z = (lambda: 0).__code__", "z = (lambda: 0).__doc__"),
    ],
    "dunder-name": [
        ("b = __builtins__", "b = __name__"),
        ("f = __file__", "f = __doc__"),
    ],
    "dunder-method": [
        (
            "class A:\n    def __getattr__(self, name):\n        return 1",
            "class A:\n    def __repr__(self):\n        return 'A'",
        ),
        (
            "class B:\n    def __del__(self):\n        pass",
            "class B:\n    def __len__(self):\n        return 0",
        ),
        (
            "class C:\n    def __reduce__(self):\n        return ()",
            "class C:\n    def __eq__(self, other):\n        return True",
        ),
        ("class M(type):\n    pass", "class M(object):\n    pass"),
        ("class A(metaclass=len):\n    pass", "class A(object):\n    pass"),
    ],
    "forbidden-attribute": [
        ("import numpy as np\np = np.zeros(3).ctypes", "import numpy as np\np = np.zeros(3).shape"),
        (
            "import numpy as np\np = np.random.default_rng(0).bit_generator.cffi",
            "import numpy as np\np = np.random.default_rng(0).bit_generator.state",
        ),
        ("import numpy as np\nnp.zeros(3).tofile", "import numpy as np\nnp.zeros(3).tolist"),
        ("def f(tb):\n    return tb.tb_frame", "def f(tb):\n    return tb.tb_lineno"),
        ("def f(toolkit):\n    toolkit.set_event_sink(None)", "def f(toolkit):\n    toolkit.emit('x')"),
        ("import dataclasses\ns = dataclasses.sys", "import dataclasses\ns = dataclasses.field"),
        ("import typing\ns = typing.sys", "import typing\ns = typing.Any"),
        ("import statistics\ns = statistics.sys", "import statistics\ns = statistics.mean"),
        ("def f(o):\n    return o.environ", "def f(o):\n    return o.environment"),
        ("def f(o):\n    return o.modules", "def f(o):\n    return o.module"),
        ("def f(o):\n    return o.os.getpid", "def f(o):\n    return o.ok"),
        ("def f(o):\n    return o.builtins", "def f(o):\n    return o.builtin"),
        ("match 1:\n    case int(environ=y):\n        pass", "match 1:\n    case int(real=y):\n        pass"),
    ],
    "forbidden-module-member": [
        ("import numpy as np\nnp.save('x', np.zeros(1))", "import numpy as np\nnp.sum(np.zeros(1))"),
        ("import numpy as np\nd = np.load", "import numpy as np\nd = np.mean"),
        ("import numpy\nf = numpy.lib.format", "import numpy\nf = numpy.linalg.norm"),
        ("from numpy import fromfile", "from numpy import frombuffer"),
        ("import numpy as np\nm = np.memmap", "import numpy as np\nm = np.array"),
        ("import numpy as np\nc = np._core", "import numpy as np\nc = np.linalg"),
        ("from scipy.stats import _stats_py", "from scipy.stats import ks_2samp"),
        # Attribute chains from a module may not reach a module that is not itself allowed.
        ("import numpy as np\nc = np.ma.masked", "import numpy as np\nc = np.linalg.norm"),
        ("from scipy import stats\nd = stats.distributions", "from scipy import stats\nd = stats.norm"),
        ("import typing\nh = typing.get_type_hints", "import typing\nh = typing.cast"),
        (
            "import dataclasses\nm = dataclasses.make_dataclass",
            "import dataclasses\nm = dataclasses.dataclass",
        ),
        ("import numpy as np\nnp.seterrcall(print)", "import numpy as np\nnp.seterr(all='ignore')"),
        # Patching a shared module would change what the contract checks themselves compute.
        ("import math\nmath.isclose = max", "import math\nclose = math.isclose"),
        ("import numpy as np\nnp.random.seed = len", "import numpy as np\nseed = np.random.seed"),
        ("import math\ndel math.pi", "import math\npi = math.pi"),
        (
            "from monitor_runtime import toolkit\ntoolkit.emit = print",
            "from monitor_runtime import toolkit\ne = toolkit.emit",
        ),
    ],
    "format-dunder": [
        ("s = '{0.__class__}'.format(1)", "s = '{0.real}'.format(1)"),
        ("s = '{x.__init__.__globals__}'", "s = '{x}'"),
        # A format string built at run time hides the dunder from the literal check.
        ("s = ('{0.' + '__class__.__mro__}').format(1)", "s = ('{0.' + 'real}') + '{0.real}'.format(1)"),
        ("f = '{0.real}'\ns = f.format(1)", "s = '{0.real}'.format(1)"),
        ("s = str.format('{}', 1)", "s = '{}'.format(1)"),
        ("f = '{x}'\ns = f.format_map({'x': 1})", "s = '{x}'.format_map({'x': 1})"),
    ],
    "module-alias": [
        ("import numpy as np\n_n = np\n_n.mean([1])", "import numpy as np\n_n = np.mean\n_n([1])"),
        ("import numpy as np\nx = [np][0].mean", "import numpy as np\nx = [np.mean][0]"),
        (
            "import numpy as np\ndef f(m=np):\n    return m",
            "import numpy as np\ndef f(m=np.mean):\n    return m",
        ),
        (
            "import numpy as np\ndef f(np):\n    return 1",
            "import numpy as np\ndef f(arr):\n    return np.asarray(arr)",
        ),
        ("from scipy import stats\nstats = 1", "from scipy import stats\nstat = stats.norm"),
        ("import numpy as np\nx = (np,)", "from monitor_runtime import toolkit\nx = (toolkit,)"),
        ("from numpy import random\nr = random", "from numpy import random\nr = random.default_rng"),
    ],
    "private-attribute": [
        ("def f(x):\n    return x._exit", "class A:\n    def f(self):\n        return self._exit"),
        (
            "class A:\n    def f(self, other):\n        return other._x",
            "class A:\n    def f(self, other):\n        return super()._x",
        ),
        ("match 1:\n    case int(_x=y):\n        pass", "match 1:\n    case int(real=y):\n        pass"),
    ],
    "dunder-key": [
        ("d = {'__getattr__': len}", "d = {'getattr': len}"),
        ("d = dict(__del__=len)", "d = dict(delete=len)"),
    ],
    "string-annotation": [
        ("def f(x: 'int') -> int:\n    return x", "def f(x: int) -> int:\n    return x"),
        ("def f(x) -> 'int':\n    return x", "def f(x) -> int:\n    return x"),
        ("x: 'list[int]' = []", "x: list[int] = []"),
        ("def f(x: list['int']):\n    return x", "def f(x: list[int]):\n    return x"),
    ],
}


def _cases() -> list[tuple[str, str, str]]:
    return [(rule, bad, good) for rule, pairs in CASES.items() for bad, good in pairs]


@pytest.mark.parametrize(
    ("rule", "bad", "good"), _cases(), ids=[f"{r}-{i}" for i, (r, _, _) in enumerate(_cases())]
)
def test_rule_rejects_the_bad_sample_and_accepts_the_good_one(rule: str, bad: str, good: str) -> None:
    rejected = check_code(_body(bad))
    assert rule in {v.rule for v in rejected}, format_violations(rejected)
    hit = next(v for v in rejected if v.rule == rule)
    assert hit.line >= 1 and hit.message
    accepted = check_code(_body(good))
    assert accepted == [], format_violations(accepted)


def test_every_rule_is_covered() -> None:
    covered = set(CASES) | {"syntax", "size", "contract"}
    assert covered == set(RULES)


def test_syntax_error_reports_the_line() -> None:
    violations = check_code("CONTRACT = 1\n\ndef broken(:\n    pass\n")
    assert [(v.rule, v.line) for v in violations] == [("syntax", 3)]
    assert check_code(_body("x = 1")) == []


def test_size_limits() -> None:
    too_big = _body("x = 1") + "#" * MAX_CODE_BYTES
    assert [v.rule for v in check_code(too_big)] == ["size"]
    assert check_code(too_big, max_bytes=len(too_big.encode()) + 1) == []
    deep = _body("x = " + "(" * 500 + "1" + ")" * 500)
    assert {v.rule for v in check_code(deep)} <= {"syntax", "size"} and check_code(deep)


@pytest.mark.parametrize(
    ("code", "fragment"),
    [
        ("class Monitor:\n    pass\n", "module must define `CONTRACT = 1`"),
        ("CONTRACT = 2\n" + CONTRACT_STUB.replace("CONTRACT = 1", ""), "found 2"),
        ("CONTRACT = 1\n", "module must define `class Monitor`"),
        (CONTRACT_STUB.replace("    def state(self):\n        return {}\n", ""), "class Monitor lacks state"),
        (
            CONTRACT_STUB.replace("def __init__(self, spec, toolkit)", "def __init__(self)"),
            "(self, spec, toolkit)",
        ),
        (CONTRACT_STUB.replace("def detect_drift", "async def detect_drift"), "must not be async"),
    ],
)
def test_contract_shape(code: str, fragment: str) -> None:
    violations = check_code(code)
    assert any(v.rule == "contract" and fragment in v.message for v in violations), format_violations(
        violations
    )


def test_good_monitor_passes_and_violations_are_sorted_with_lines() -> None:
    assert check_code(GOOD) == []
    code = _body("import os\nx = eval('1')\nimport socket")
    violations = check_code(code)
    assert [(v.line, v.rule) for v in violations] == [
        (1, "import-not-allowed"),
        (2, "forbidden-builtin"),
        (3, "import-not-allowed"),
    ]
    assert "line 1: [import-not-allowed] import of 'os' is not allowed" in format_violations(violations)
    assert violations[0].to_dict()["line"] == 1

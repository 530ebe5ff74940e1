"""The runner the client suites share (tests/src/clients.rs runs them): checks registered with
`@check` run in order, each printing one JSON line {"fn", "ok", "detail"}; the process exits 1
if any failed. A failed check is any exception: a client error counts against the check."""
import json
import sys
import traceback

CHECKS = []


def check(fn):
    CHECKS.append(fn)
    return fn


def expect(cond, detail):
    if not cond:
        raise AssertionError(detail)


def _line(name, error=None):
    if error is None:
        return json.dumps({"fn": name, "ok": True, "detail": ""})
    where = traceback.format_exc().splitlines()[-3][:200]
    return json.dumps({"fn": name, "ok": False,
                       "detail": f"{type(error).__name__}: {error}"[:600] + " | " + where})


def run(before=None):
    """Runs `before` (setup; its failure ends the suite), then every check."""
    if before is not None:
        try:
            before()
        except Exception as e:
            print(_line(before.__name__, e), flush=True)
            sys.exit(1)
    failed = 0
    for fn in CHECKS:
        try:
            fn()
            print(_line(fn.__name__), flush=True)
        except Exception as e:
            failed += 1
            print(_line(fn.__name__, e), flush=True)
    sys.exit(1 if failed else 0)

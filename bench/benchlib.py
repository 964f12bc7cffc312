"""Shared by the bench/ drivers: run a child benchmark and collect the JSON lines it prints; stand-ins for the peers
when their venv is absent (smoke tests only); the machine a figure was measured on."""
import importlib.util, json, os, subprocess


def run_json(cmd, env=None):
    """Runs cmd (raising on a non-zero exit) and returns every stdout line that is a JSON object, parsed."""
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def one(rows, **match):
    """The single row of run_json's output whose keys equal `match` (a driver's table reads named rows, never a
    position in the list: children print extra rows, such as the machine)."""
    found = [r for r in rows if all(r.get(k) == v for k, v in match.items())]
    if len(found) != 1:
        raise RuntimeError(f"expected one row with {match}, found {len(found)} in {rows}")
    return found[0]


def have(module):
    return importlib.util.find_spec(module) is not None


def peer_json(cmd, module, stub_rows, smoke, env=None):
    """The peer's rows. In a smoke test (CI, no bench venv) a peer whose module is missing is replaced by stub_rows,
    marked stub=True, so that the driver's own code (parsing, tables, ratios) still runs; outside a smoke test a
    missing peer is an error naming the venv script."""
    if have(module):
        return run_json(cmd, env)
    if not smoke:
        raise SystemExit(f"the peer needs the Python module '{module}': run bench/setup_bench_venv.sh and use "
                         f".venv-bench/bin/python")
    return [dict(r, stub=True) for r in stub_rows]


def machine(threads):
    """CPU model, core count and load, for the header of every table (figures are meaningless without them)."""
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"{cpu}, {os.cpu_count()} CPUs, {threads} threads, load {load:.2f}"

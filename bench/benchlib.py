"""Shared by the bench/ drivers: run a child benchmark and collect the JSON lines it prints."""
import json, subprocess


def run_json(cmd, env=None):
    """Runs cmd (raising on a non-zero exit) and returns every stdout line that is a JSON object, parsed."""
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]

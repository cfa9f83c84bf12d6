# The two commands of README.md. Both create or reuse .venv from uv.lock.
.PHONY: run test lint venv bench browser

venv:
	@bash scripts/ensure-venv

browser:
	@bash scripts/ensure-chromium

## The main job on the embedded default (no servers needed).
run: venv
	.venv/bin/rekindle run

## The whole test suite, linter and type checker (what CI runs).
test: venv browser
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy
	.venv/bin/lint-imports
	.venv/bin/pytest --durations=15

bench: venv
	.venv/bin/python benchmarks/simulate.py

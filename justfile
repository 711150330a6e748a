# roi — everyday commands. `pip install -e '.[dev]'` brings `just` (rust-just).

venv := ".venv/bin/"

# Install and start the service (embedded PostgreSQL and Valkey when no URLs are set)
serve *ARGS:
    {{venv}}roi serve {{ARGS}}

# Run the whole test suite
test *ARGS:
    {{venv}}pytest {{ARGS}}

# Browser tests of the console and the API docs (headless Chromium: apt-get install chromium chromium-driver)
test-browser *ARGS:
    {{venv}}pytest tests/browser {{ARGS}}

# Lint, type-check, and check the import contracts (pyproject.toml [tool.importlinter])
lint:
    {{venv}}ruff check .
    {{venv}}ruff format --check .
    {{venv}}mypy
    {{venv}}lint-imports --no-cache

# Benchmark every scenario (see `roi bench --help`)
bench *ARGS:
    {{venv}}roi bench {{ARGS}}

# One report of every scenario, mixed load included: the table, and JSON + PNG under bench-results/ (try --quick)
bench-all *ARGS:
    {{venv}}roi bench --all {{ARGS}}

# Migrate the database to the newest schema
db-upgrade:
    {{venv}}roi db upgrade

# Run job workers alone
worker *ARGS:
    {{venv}}roi worker {{ARGS}}

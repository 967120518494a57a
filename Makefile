# The two set-up commands of the README. Both work on a fresh Debian machine.
.PHONY: run test topology bench lint format messages manage clean-demo screenshots

run:
	@scripts/bootstrap.sh run
	@.venv/bin/python scripts/devstack.py run

# An operator command against the running `make run`: make manage ARGS="add_node …"
manage:
	@.venv/bin/python scripts/devstack.py manage $(ARGS)

# Remove what make run's demo GPU node put on this machine (accounts, sudo rule, agent, keys)
clean-demo:
	@.venv/bin/python scripts/devstack.py clean-demo

test:
	@scripts/bootstrap.sh test
	@.venv/bin/python scripts/devstack.py test $(PYTEST_ARGS)

# The main pages in English and Korean as PNGs in docs/screenshots/ (headless chromium, test data)
screenshots:
	@scripts/bootstrap.sh test
	@.venv/bin/python scripts/devstack.py test tests/e2e/screenshots.py -q

# nginx + two gunicorns + three RQ workers + rqcron + PostgreSQL + redis-server on this machine
# (docs/deployment.md, "The topology test"); `make test` runs it too.
topology:
	@scripts/bootstrap.sh test
	@.venv/bin/python scripts/devstack.py test tests/deploy/test_topology.py -v $(PYTEST_ARGS)

bench:
	@scripts/bootstrap.sh bench
	@.venv/bin/python scripts/devstack.py bench

lint:
	.venv/bin/ruff check . && .venv/bin/ruff format --check .

format:
	.venv/bin/ruff check --fix . && .venv/bin/ruff format .

messages:
	.venv/bin/python manage.py makemessages -l ko --ignore .venv --no-obsolete

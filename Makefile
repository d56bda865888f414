# The two commands of the README: `make run` (the app on the embedded default gallery) and `make test`.
.PHONY: run test bench
ARGS ?=

run:
	scripts/setup.sh run
	.venv/bin/python app.py $(ARGS)

test:
	scripts/setup.sh test
	.venv/bin/python -m pytest $(ARGS)

# The two commands of the README. Everything else is in scripts/.
.PHONY: run test fast lint
run:   ## set up, index data/docs, open the chat UI on http://localhost:8501
	scripts/run.sh
test:  ## set up and run every test (what CI runs)
	scripts/test.sh
fast:  ## the quick subset while editing
	scripts/test.sh -m "not slow"
lint:  ## ruff and mypy (strict on rag/), as CI runs them
	scripts/lint.sh

"""`python -m rag.search`: the command line lives in rag.cli.search."""
if __name__ == "__main__":
    from rag.cli.search import main

    raise SystemExit(main())

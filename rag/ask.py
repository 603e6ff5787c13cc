"""`python -m rag.ask`: the command line lives in rag.cli.ask."""
if __name__ == "__main__":
    from rag.cli.ask import main

    raise SystemExit(main())

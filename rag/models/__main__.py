from rag.cli.models import main

raise SystemExit(main())

from prunetune.cli import main

raise SystemExit(main())

from fuzzer.cli import main

raise SystemExit(main())

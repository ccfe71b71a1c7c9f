from otp.cli import main

raise SystemExit(main())

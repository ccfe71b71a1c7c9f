import sys

from otp.devtools.twilio_stub.cli import main

sys.exit(main())

import sys

from proxy.server import main

sys.exit(main())

from prefixlab import storage
from prefixlab.cli import main

storage.exit_job(main())

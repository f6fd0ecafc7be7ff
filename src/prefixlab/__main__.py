from prefixlab import jobserver

# Before the imports below: where a local run's job server answers, it runs this job in a
# process that has imported them already, and this process only waits for it.
jobserver.delegate("prefixlab")

from prefixlab import storage  # noqa: E402
from prefixlab.cli import main  # noqa: E402

storage.exit_job(main())

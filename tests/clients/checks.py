"""What the Python client scripts share: named checks, each run once, every failure reported."""

import sys
import traceback


class Checks:
    """Runs each decorated function as a check; `done()` exits 1 when any failed."""

    def __init__(self, client):
        self.client = client
        self.failed = []

    def check(self, name):
        def run(function):
            try:
                function()
                print(f"ok: {self.client}: {name}", flush=True)
            except Exception as error:  # every failure is reported, the next check still runs
                self.failed.append(name)
                print(f"FAILED: {self.client}: {name}: {error!r}", flush=True)
                traceback.print_exc(limit=3)
            return function

        return run

    def done(self):
        if self.failed:
            print(f"{self.client}: {len(self.failed)} checks failed", flush=True)
            sys.exit(1)
        print(f"{self.client}: every check passed", flush=True)

"""The e2e tests' fleet is the package's local fleet (also behind `modelfleet demo`)."""

from modelfleet_testbed.local.fleet import BIN, BackgroundLoop, eventually
from modelfleet_testbed.local.fleet import LocalFleet as Fleet

__all__ = ["BIN", "BackgroundLoop", "Fleet", "eventually"]

"""Run the integration suite; print one summary line per test and a
closing 'N passed, N failed' line."""
import os
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def main():
    pattern = os.environ.get("QUIRE_TEST_PATTERN", "test_*.py")
    suite = unittest.defaultTestLoader.discover(HERE, pattern=pattern)
    runner = unittest.TextTestRunner(verbosity=2, stream=sys.stdout)
    result = runner.run(suite)
    failed = len(result.failures) + len(result.errors)
    passed = result.testsRun - failed - len(result.skipped)
    print("integration: %d passed, %d failed, %d skipped" % (
        passed, failed, len(result.skipped)))
    return 0 if failed == 0 and passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main())

"""Markers of the integration tests."""


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "flower: needs Flower (pip install 'securefl[flower]'); the deployment test starts a SuperLink and "
        "SuperNodes as processes",
    )
    config.addinivalue_line(
        "markers",
        "deployment: starts a Flower SuperLink and SuperNodes as processes; run alone, without xdist: "
        "python -m pytest -q -m deployment tests/integrations",
    )

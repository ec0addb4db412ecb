"""dnslab: hands-on DNS security labs made of real daemons in isolated network worlds."""

__version__ = "0.1.0"


def attach(instance: str | None = None):
    """The lab this notebook's kernel runs in: see :mod:`dnslab.trainee`."""
    from .trainee import attach as _attach
    return _attach(instance)

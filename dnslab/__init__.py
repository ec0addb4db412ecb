"""dnslab: hands-on DNS security labs made of real daemons in isolated network worlds."""

__version__ = "0.1.0"

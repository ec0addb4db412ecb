#!/usr/bin/env python3
"""The dnslab command line, runnable from a checkout: ./orchestrate.py up dns-basics"""
import sys

from dnslab.cli import main

if __name__ == "__main__":
    sys.exit(main())

"""Kubernetes' DNS-1123 name rules, the one copy: manifest checks and the CLI's name checks
(kernel/paths.py, before any path is formed) use the same rules and words. Tiny on purpose:
the monitor loads it."""
import re

DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def dns_label_problem(value):
    if len(value) > 63:
        return f"must be at most 63 characters (it has {len(value)})"
    if not DNS_LABEL.fullmatch(value):
        return ("must be lowercase letters, digits and '-', starting and ending with a letter or "
                "digit (a DNS-1123 label)")
    return None


def dns_subdomain_problem(value):
    if len(value) > 253:
        return f"must be at most 253 characters (it has {len(value)})"
    if not DNS_SUBDOMAIN.fullmatch(value):
        return ("must be lowercase letters, digits, '-' and '.', starting and ending with a "
                "letter or digit (a DNS-1123 subdomain)")
    return None

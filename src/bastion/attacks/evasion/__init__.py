"""Evasion attacks, one algorithm per file. Look them up with ``bastion.attacks.get(name)``."""

"""The secure serving gateway (``bastion serve``): API keys with scopes, rate limits and quotas, input
validation, output policies, a hash-chained audit log, per-key attack detection and monitoring, in front
of any bastion model. Needs the ``serve`` extra (``pip install 'bastion[serve]'``); nothing here is
imported by ``import bastion``.
"""

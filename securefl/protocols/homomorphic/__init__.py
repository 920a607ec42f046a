"""What the homomorphic-summation protocols (``Paillier``, ``BFV``) share, written once.

Modules, one concern each:

- ``keyholder``: the key holder's rules (which aggregates it decrypts, once per session and round);
- ``messages``: the message schema and wire constants each protocol subclasses with its own kinds;
- ``engines``: the client, server and decryptor engines, around a scheme's arithmetic;
- ``summation``: ``HomomorphicSummation``, the configuration's scheme-free part.
"""

"""Floor 2: read landing files, normalize them, and generate synthetic campaign exports.

Raw values (names, emails, phones) exist only here, on this side of the hand-off to
``privacy.pseudonymize``. Nothing in this package imports ``privacy``.
"""

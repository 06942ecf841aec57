"""Floor 3: privacy primitives, and nothing that schedules them.

Pseudonyms and identity (``keys``, ``pseudonymize``, ``identity``); DP plans, bounding, engine
and release (``plan``, ``bounding``, ``engine``, ``release``, ``publish``); budget, ledger,
signing and audit (``accountant``, ``ledger``, ``signing``, ``audit``). No Airflow, process
pools, pipeline or report imports: the ``privacy-primitives`` import contract checks it.
"""

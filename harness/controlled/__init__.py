"""The controlled latent-vs-vocabulary experiment: the same recipe, data, steps and budget for
every head (`python -m harness.controlled`; conf/controlled.yaml). `plan` composes and checks the
commands, `__main__` runs them and writes the record, `report` writes `controlled_run.md` and the
figures.
"""

"""Fuzzing kept in the repository: the corrupter (run by ``make test``) and the atheris targets (``make fuzz``)."""

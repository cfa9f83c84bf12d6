"""Experiments: research scripts that answer a modelling question on a simulated world (which variant of
the response model is better, what any model of these features could reach). They use the public
functions of the layers only and print their findings; docs/training.md records the answers.
Benchmarks, which measure speed and size, are in benchmarks/."""

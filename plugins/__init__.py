"""Built-in plugins: evals, interventions, backends, judges, report sections."""
